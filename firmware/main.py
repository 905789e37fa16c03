# Entry point. On a device, the provisioning tool copies boards/<name>.py to /board.py and the
# firmware package to /lib/envbox/firmware: it imports as envbox.firmware there as on a host (one
# name everywhere); under the Unix port (tests, demo) ENVBOX_BOARD names the board module in
# envbox.boards (default `sim`).
#
# Safe mode (docs/boards.md, "Safe mode"): before anything that could fail or arm the watchdog,
# the box checks for a reason to start no app and leave the REPL to mpremote:
#   - the file /safe_mode exists (`envbox flash --safe-mode`, or `mpremote fs touch :safe_mode`;
#     remove it with `mpremote fs rm :safe_mode`), or
#   - the button is held while the box starts: ESP32 boards GPIO0 (the BOOT button) low,
#     Pico W the BOOTSEL button.
# On a device an exception while building the board or running the app is written to
# /last_crash.txt and the box resets after 10 s (the time to interrupt it with mpremote): a box in
# a vehicle must not stay at the REPL. Only the Unix port reads the environment.
import sys

SAFE_FLAG = "/safe_mode"
CRASH_LOG = "/last_crash.txt"
CRASH_RESET_DELAY_S = 10
PLATFORM = sys.platform


def _button_held():
    p = PLATFORM
    try:
        if p == "esp32":
            import machine
            return machine.Pin(0, machine.Pin.IN, machine.Pin.PULL_UP).value() == 0
        if p == "rp2":
            import rp2
            return rp2.bootsel_button() == 1
    except Exception:  # noqa: BLE001 - no button: no safe mode by button
        pass
    return False


def safe_mode():
    """The reason to stay in safe mode ("flag" or "button"), or None."""
    import os
    try:
        os.stat(SAFE_FLAG)
        return "flag"
    except OSError:
        pass
    return "button" if _button_held() else None


def _crashed(e):
    try:
        with open(CRASH_LOG, "w") as f:
            sys.print_exception(e, f)
    except Exception:  # noqa: BLE001
        pass
    sys.print_exception(e)
    import time
    import machine
    time.sleep(CRASH_RESET_DELAY_S)
    machine.reset()


def main():
    if PLATFORM == "linux":
        # the Unix port: tests, the demo; errors propagate (the harness reads them)
        import os
        name = os.getenv("ENVBOX_BOARD") or "sim"
        board = __import__("envbox.boards." + name, None, None, (name,))
        from envbox.firmware import app
        app.run(board.make())
        return
    why = safe_mode()
    if why:
        print("envbox: safe mode (%s): no app; the REPL is free for mpremote" % why)
        return
    try:
        import board  # pyright: ignore[reportMissingImports]  (the provisioned /board.mpy)
        from envbox.firmware import app
        b = board.make()
    except Exception as e:  # noqa: BLE001 - before the watchdog: reset rather than sit at REPL
        _crashed(e)
        return
    try:
        app.run(b)
    except Exception as e:  # noqa: BLE001
        _crashed(e)


if __name__ == "__main__":
    main()
