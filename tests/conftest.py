# tests/firmware/ holds MicroPython test scripts: tests/test_firmware_mp.py runs them under the
# `micropython` interpreter, so pytest must not import them under CPython.
collect_ignore_glob = ["firmware/*"]
