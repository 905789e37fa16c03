# The registry of parts: every sensor module the box can be fitted with, one line each
# (docs/contracts.md "Parts", "Adding a part"). The line's name is the part's name everywhere: a
# board's module list, sim.json "serial"/"i2c", the simulator's model and its ground-truth kind.
#
#   name          the part
#   driver        module.Class in firmware/drivers/ (the simulator's model: the same module.Class
#                 in simulator/models/, except the GNSS receiver's, simulator/models/gnss.py)
#   bus           uart, or i2c@<default 7-bit address>
#   cfg           the driver's cfg for this part, key=value[,key=value] (- for none)
#   protocol      tests/vectors/<protocol>.json, `envbox decode <protocol>`, docs/sensors/
#
# A board imports it to fit its parts (drivers themselves do not, so a box pays for it only
# where it is used). It is one tuple of strings: no table is built at import, a lookup splits
# one line, at board start-up only. Host tools read it through tools/parts.py, which adds the
# channels, the model and the vector file of each part.

PARTS = (
    # name       driver                     bus        cfg        protocol
    "pms5003     pms5003.PMS5003            uart       -          pms5003",
    "sds011      sds011.SDS011              uart       -          sds011",
    "mhz19b      mhz19b.MHZ19B              uart       -          mhz19b",
    "ze03_o3     ze03.ZE03                  uart       gas=o3     ze03",
    "ze03_no2    ze03.ZE03                  uart       gas=no2    ze03",
    "ze03_so2    ze03.ZE03                  uart       gas=so2    ze03",
    "ze03_co     ze03.ZE03                  uart       gas=co     ze03",
    "ze08        ze08.ZE08                  uart       -          ze08",
    "scd4x       scd4x.SCD4x                i2c@0x62   -          scd4x",
    "sht3x       sht3x.SHT3x                i2c@0x44   -          sht3x",
    "sht4x       sht4x.SHT4x                i2c@0x44   -          sht4x",
    "modbus_noise modbus_noise.ModbusNoise  uart       -          modbus",
    "gnss        nmea.GNSS                  uart       -          nmea",
)


def spec(name):
    """The registry line of part `name` as [name, driver, bus, cfg, protocol], or None."""
    for line in PARTS:
        f = line.split()
        if f[0] == name:
            return f
    return None


def cfg_of(f):
    """The driver cfg of a registry line (a dict; numbers as int)."""
    cfg = {}
    if f[3] != "-":
        for item in f[3].split(","):
            k, _, v = item.partition("=")
            cfg[k] = int(v) if v.isdigit() else v
    return cfg


def address_of(f):
    """The default I2C address of a registry line (None for a UART part)."""
    bus, _, addr = f[2].partition("@")
    return int(addr, 16) if addr else None


def make(name, bus, cfg=None):
    """The driver of part `name` on `bus` (a machine.UART or machine.I2C-like object), its cfg the
    registry's updated with `cfg`. The driver module is imported here, so a part that is not
    fitted costs no RAM. Raises ValueError for a name the registry does not know."""
    f = spec(name)
    if f is None:
        raise ValueError("no part %r in the registry (firmware/drivers/registry.py)" % name)
    c = cfg_of(f)
    if cfg:
        c.update(cfg)
    mod, _, cls = f[1].partition(".")
    m = __import__("envbox.firmware.drivers." + mod, None, None, (cls,))
    return getattr(m, cls)(bus, c)
