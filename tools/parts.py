"""The registry of parts on the host: firmware/drivers/registry.py's table (the one place a part
is named), with what the host derives from each line: the driver class and the wire channels it
fills, the simulator model, the golden-vector file, the `envbox decode` name and the protocol page.

Used by `envbox decode` (tools/decode.py), the simulator's kits (simulator/run.py), the verifier
(tools/verify.py) and the contract tests (tests/test_models_driver_contract.py).
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass
from pathlib import Path

from .firmware import wire
from .firmware.drivers import registry

REPO = Path(__file__).resolve().parent.parent
VECTORS = REPO / "tests" / "vectors"
DOCS = REPO / "docs" / "sensors"

# The GNSS receiver's model is named after what it is, not after its driver's protocol module.
_MODEL_MODULE = {"nmea": "gnss"}


@dataclass(frozen=True)
class Part:
    name: str           # the part's name everywhere (sim.json, boards, ground truth)
    module: str         # firmware/drivers/<module>.py
    cls: str            # the driver class (and the model class)
    bus: str            # "uart" or "i2c"
    address: int | None  # default 7-bit I2C address
    cfg: dict           # the driver's (and the model's) cfg for this part
    protocol: str       # vectors, decoder and protocol page name

    def driver_module_text(self) -> str:
        return (REPO / "firmware" / "drivers" / f"{self.module}.py").read_text()

    def driver_class(self):
        m = importlib.import_module(f"{registry.__name__.rpartition('.')[0]}.{self.module}")
        return getattr(m, self.cls)

    def make(self, bus, cfg=None):
        """The driver on `bus` with the registry's cfg updated with `cfg`."""
        return registry.make(self.name, bus, cfg)

    @property
    def channels(self) -> tuple[str, ...]:
        """The wire channels (names as in wire.CHANNELS) the driver fills with this cfg."""
        d = self.driver_class()(None, dict(self.cfg))
        return tuple(wire.CHANNELS[ch][0] for ch in getattr(d, "CHANNELS", ()))

    @property
    def model(self) -> str:
        """The simulator model, "module.Class" under simulator/models/."""
        return f"{_MODEL_MODULE.get(self.module, self.module)}.{self.cls}"

    def model_class(self):
        mod, _, cls = self.model.rpartition(".")
        return getattr(importlib.import_module(f"envbox.simulator.models.{mod}"), cls)

    def model_kwargs(self) -> dict:
        """The part's cfg keys its model takes too (a ZE03's gas)."""
        params = inspect.signature(self.model_class()).parameters
        return {k: v for k, v in self.cfg.items() if k in params}

    @property
    def vectors(self) -> Path:
        return VECTORS / f"{self.protocol}.json"

    @property
    def page(self) -> Path:
        """docs/sensors/<page>.md: the protocol page, named like the model."""
        return DOCS / f"{_MODEL_MODULE.get(self.module, self.module)}.md"


def _part(fields) -> Part:
    mod, _, cls = fields[1].partition(".")
    return Part(fields[0], mod, cls, fields[2].partition("@")[0], registry.address_of(fields),
                registry.cfg_of(fields), fields[4])


PARTS: dict[str, Part] = {p.name: p for p in (_part(line.split()) for line in registry.PARTS)}


def get(name: str) -> Part:
    try:
        return PARTS[name]
    except KeyError:
        raise ValueError(f"no part {name!r} (known: {', '.join(PARTS)})") from None


def protocols() -> tuple[str, ...]:
    """The `envbox decode` names, in registry order."""
    return tuple(dict.fromkeys(p.protocol for p in PARTS.values()))


def by_protocol(protocol: str) -> list[Part]:
    return [p for p in PARTS.values() if p.protocol == protocol]
