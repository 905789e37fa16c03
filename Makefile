# envbox: the two commands a new machine needs (both install what they need first).
#   make demo    a simulated patrol end to end (own broker and database), prints the summary
#   make test    every test suite (CPython, MicroPython, real servers)
.PHONY: setup demo test test-fast bench chaos clean

setup:
	@bash scripts/setup.sh

demo: setup
	.venv/bin/envbox demo $(ARGS)

test: setup
	.venv/bin/python -m pytest $(ARGS)

test-fast: setup
	.venv/bin/python -m pytest -m "not slow" $(ARGS)

# the fleet chaos run of issue 9 at full length: 4 boxes, 40 virtual minutes, two seeds
chaos: setup
	.venv/bin/envbox chaos --boxes 4 --minutes 40 --warp 25 --seed 1,2 $(ARGS)

bench: setup
	.venv/bin/python benchmarks/firmware_footprint.py
	.venv/bin/python benchmarks/gateway_throughput.py

clean:
	rm -rf envbox-demo envbox-chaos .pytest_cache build
