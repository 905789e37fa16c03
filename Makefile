# envbox: the two commands a new machine needs (both install what they need first).
#   make demo    a simulated patrol end to end (own broker and database), prints the summary
#   make test    every test suite (CPython, MicroPython, real servers)
.PHONY: setup demo test test-fast bench chaos clean

setup:
	@bash scripts/setup.sh

demo: setup
	.venv/bin/envbox demo $(ARGS)

# one pytest worker per core, at most 4 (JOBS=0: one process, one test at a time); a test file
# stays on one worker, so its servers start once
JOBS ?= $(shell n=$$(nproc 2>/dev/null || echo 2); [ $$n -gt 4 ] && n=4; echo $$n)

test: setup
	.venv/bin/python -m pytest -n $(JOBS) --dist loadfile $(ARGS)

test-fast: setup
	.venv/bin/python -m pytest -n $(JOBS) --dist loadfile -m "not slow" $(ARGS)

# the fleet chaos run of issue 9 at full length: 4 boxes, 40 virtual minutes, two seeds
chaos: setup
	.venv/bin/envbox chaos --boxes 4 --minutes 40 --warp 25 --seed 1,2 $(ARGS)

bench: setup
	.venv/bin/python benchmarks/firmware_footprint.py
	.venv/bin/python benchmarks/gateway_throughput.py

clean:
	rm -rf envbox-demo envbox-chaos .pytest_cache build
