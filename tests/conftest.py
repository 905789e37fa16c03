# tests/firmware/ holds MicroPython test scripts: tests/test_firmware_mp.py runs them under the
# `micropython` interpreter, so pytest must not import them under CPython.
collect_ignore_glob = ["firmware/*"]


import pytest  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def _firmware_compiled(tmp_path_factory):
    """Compile the firmware once, before any test starts a simulated patrol: tests build the
    .mpy files after the simulator's clock has started, and a first compile of the whole tree
    (seconds on a busy machine) would eat minutes of virtual time there (tools/mpybuild.py keeps
    the compiled files; later builds copy them)."""
    from envbox import mpybuild
    mpybuild.build(tmp_path_factory.mktemp("mpy-warm"))
