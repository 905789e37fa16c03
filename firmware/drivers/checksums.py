# Checksums and CRCs of the box's sensor protocols, one per protocol family; the family's frame
# parser calls it (docs/sensors/README.md lists the families and their test vectors).
#
# Every function takes a buffer plus a start index and an end index (exclusive), so a driver can
# check a frame in place inside its receive buffer without slicing (a slice allocates). Integer
# arithmetic only, no tables, no allocation: safe inside micropython.heap_lock().
#
#   plantower_sum16  PMS5003 family: sum of all bytes before the checksum, & 0xFFFF
#   nova_sum8        SDS011: sum of the data bytes, & 0xFF
#   winsen_cs        MH-Z19B, ZE03, ZE07/08, ZE25...: (0x100 - sum(b1..b7)) & 0xFF (byte 0 = 0xFF excluded)
#   sensirion_crc8   SCD4x, SHT3x, SHT4x: CRC-8 poly 0x31, init 0xFF, no reflection, xorout 0
#   modbus_crc16     Modbus RTU: CRC-16 poly 0xA001 (0x8005 reflected), init 0xFFFF; sent low byte first
#   nmea_xor         NMEA 0183: XOR of the characters between '$' and '*'


def plantower_sum16(buf, start, end):
    s = 0
    for i in range(start, end):
        s += buf[i]
    return s & 0xFFFF


def nova_sum8(buf, start, end):
    s = 0
    for i in range(start, end):
        s += buf[i]
    return s & 0xFF


def winsen_cs(buf, start, end):
    """Winsen "FucCheckSum": two's complement of the byte sum (pass start=1, end=8 for a frame)."""
    s = 0
    for i in range(start, end):
        s += buf[i]
    return (0x100 - (s & 0xFF)) & 0xFF


def sensirion_crc8(buf, start, end):
    c = 0xFF
    for i in range(start, end):
        c ^= buf[i]
        for _ in range(8):
            if c & 0x80:
                c = ((c << 1) ^ 0x31) & 0xFF
            else:
                c = (c << 1) & 0xFF
    return c


def modbus_crc16(buf, start, end):
    c = 0xFFFF
    for i in range(start, end):
        c ^= buf[i]
        for _ in range(8):
            if c & 1:
                c = (c >> 1) ^ 0xA001
            else:
                c >>= 1
    return c


def nmea_xor(buf, start, end):
    x = 0
    for i in range(start, end):
        x ^= buf[i]
    return x
