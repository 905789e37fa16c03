"""`envbox`: the technician's and analyst's command.

    envbox demo [--minutes N] [--sink influx1|influx2]   a simulated patrol, end to end
    envbox simulate [--world F] [--vehicles K] [--days D] a fleet over weeks into the database
    envbox report --run DIR | --influx URL  --out DIR     the street map and hotspot report
    envbox payload HEX|-                                  print a wire payload as JSON
    envbox decode SENSOR FILE [--hex]                     decode a raw sensor capture
    envbox chaos [--boxes K] [--minutes N] [--seed S]       a fleet run with every hop killed
    envbox partitions [--bin FILE]                          the ESP32 partition table the box needs
    envbox provision BOXES.CSV --fleet DIR [--broker H:P --ca CA.pem] [--rotate [IDS]]
                                                          per-device logins, keys, config.json
    envbox flash --fleet DIR --device-id ID [--port P] [--micropython FILE]
                                                          build, check the board, copy the image
    envbox bench-check PORT                               bus scan, modem, one sample, as JSON
    envbox config push DEVICE FILE --fleet DIR [--wait S] validated, signed remote config
"""

from __future__ import annotations

import json
import sys

USAGE = __doc__


def cmd_payload(argv) -> int:
    from .firmware import wire

    if not argv or argv[0] in ("-h", "--help"):
        print("usage: envbox payload HEX   (or - to read hex lines from standard input)\n"
              "Decodes envbox wire payloads (as printed by `mosquitto_sub -F %x`) to JSON.")
        return 0 if argv else 2
    lines = sys.stdin.read().split() if argv[0] == "-" else argv
    rc = 0
    for h in lines:
        try:
            d = wire.decode(bytes.fromhex(h))
            print(json.dumps({"ok": True, "bytes": len(h) // 2, **d}))
        except (ValueError, wire.WireError) as e:
            print(json.dumps({"ok": False, "error": str(e)}))
            rc = 1
    return rc


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0 if argv else 2
    cmd, rest = argv[0], argv[1:]
    if cmd == "demo":
        from .demo import main as demo_main
        return demo_main(rest)
    if cmd == "simulate":
        from .simulate import main as simulate_main
        return simulate_main(rest)
    if cmd == "report":
        from .report.cli import main as report_main
        return report_main(rest)
    if cmd == "payload":
        return cmd_payload(rest)
    if cmd == "decode":
        from .decode import main as decode_main
        return decode_main(rest)
    if cmd == "partitions":
        from .partitions import main as partitions_main
        return partitions_main(rest)
    if cmd == "chaos":
        from .chaos import main as chaos_main
        return chaos_main(rest)
    if cmd == "flash":
        from .provision import main as provision_main
        return provision_main(rest)
    if cmd == "provision":
        from .fleet import main as fleet_main
        return fleet_main(rest)
    if cmd == "bench-check":
        from .bench import main as bench_main
        return bench_main(rest)
    if cmd == "config":
        from .configpush import main as config_main
        return config_main(rest)
    print(f"envbox: unknown command {cmd!r}\n{USAGE}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
