"""Embedded hardware targets as data.

A :class:`HardwareTarget` describes one device the searched network must run
on: clock, memories, an analytic speed model (cycles per multiply-accumulate plus
a fixed overhead per layer) and an energy model (energy per cycle, given directly
or as active current times supply voltage divided by the clock). Targets are
plain data loaded from a versioned TOML or JSON file that the owning plugin
ships; nothing is read at import time.

File format (TOML shown; JSON uses the same keys)::

    schema_version = 1                  # optional, only version 1 exists
    name = "cortex_m4_64mhz"
    description = "Generic Cortex-M4F at 64 MHz"
    clock_hz = 64_000_000
    sram_bytes = 262_144
    flash_bytes = 1_048_576
    cycles_per_mac = 2.0
    layer_overhead_cycles = 2000        # optional, default 0
    active_current_a = 0.0033           # either this and voltage_v ...
    voltage_v = 3.0
    # energy_per_cycle_j = 1.5e-10      # ... or this, not both
    sleep_current_a = 1.5e-6            # optional
    battery_mah = 225.0                 # optional, together with battery_voltage_v
    battery_voltage_v = 3.0
    max_weights = 442_368               # optional (e.g. an accelerator's weight memory)
    sources = ["where each constant comes from", "..."]

    [extra]                             # optional plugin-specific float constants
    adc_current_a = 0.0005

Example::

    >>> from nas_core.hardware import load_builtin_target
    >>> t = load_builtin_target("cortex_m4_64mhz")
    >>> round(t.energy_per_cycle() * 1e12, 1)   # picojoule per cycle
    154.7
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any

from nas_core.errors import ConfigError

__all__ = [
    "SCHEMA_VERSION",
    "HardwareTarget",
    "builtin_target_names",
    "load_builtin_target",
    "load_target",
]

#: version of the target file format written by :meth:`HardwareTarget.to_dict`
SCHEMA_VERSION = 1


class _ReadOnlyFloatMap(Mapping[str, float]):
    """An immutable, hashable, picklable ``str -> float`` mapping (for ``extra``)."""

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[str, float] | None = None) -> None:
        self._data: dict[str, float] = dict(data or {})

    def __getitem__(self, key: str) -> float:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __hash__(self) -> int:
        return hash(frozenset(self._data.items()))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Mapping):
            return dict(self._data) == dict(other)
        return NotImplemented

    def __repr__(self) -> str:
        return f"{{{', '.join(f'{k!r}: {v!r}' for k, v in self._data.items())}}}"

    def __getstate__(self) -> dict[str, float]:
        return self._data

    def __setstate__(self, state: dict[str, float]) -> None:
        self._data = dict(state)


_REQUIRED = ("name", "description", "clock_hz", "sram_bytes", "flash_bytes", "cycles_per_mac")
_FLOAT_FIELDS = (
    "clock_hz",
    "cycles_per_mac",
    "layer_overhead_cycles",
    "energy_per_cycle_j",
    "active_current_a",
    "voltage_v",
    "sleep_current_a",
    "battery_mah",
    "battery_voltage_v",
)
_INT_FIELDS = ("sram_bytes", "flash_bytes", "max_weights")
_STR_FIELDS = ("name", "description")
# fields that must be > 0 when given (the rest of the numeric ones must be >= 0)
_POSITIVE = (
    "clock_hz",
    "sram_bytes",
    "flash_bytes",
    "cycles_per_mac",
    "energy_per_cycle_j",
    "active_current_a",
    "voltage_v",
    "battery_mah",
    "battery_voltage_v",
    "max_weights",
)


@dataclass(frozen=True)
class HardwareTarget:
    """One embedded device: memories, an analytic speed model and an energy model.

    Latency of a network with ``M`` MACs in ``L`` MAC-carrying layers is
    ``(cycles_per_mac * M + layer_overhead_cycles * L) / clock_hz`` seconds and
    its energy is that cycle count times :meth:`energy_per_cycle`.

    All values are SI units (Hz, bytes, joules, amperes, volts) except
    ``battery_mah`` (milliampere-hours). Construction validates every field and
    raises :class:`~nas_core.errors.ConfigError` naming the bad one.
    """

    name: str
    description: str
    clock_hz: float
    sram_bytes: int
    flash_bytes: int
    cycles_per_mac: float
    layer_overhead_cycles: float = 0.0
    energy_per_cycle_j: float | None = None
    active_current_a: float | None = None
    voltage_v: float | None = None
    sleep_current_a: float | None = None
    battery_mah: float | None = None
    battery_voltage_v: float | None = None
    max_weights: int | None = None
    sources: tuple[str, ...] = ()
    extra: Mapping[str, float] = field(default_factory=_ReadOnlyFloatMap)

    def __post_init__(self) -> None:
        label = f"hardware target {self.name!r}" if isinstance(self.name, str) else "hardware target"
        for fname in _STR_FIELDS:
            value = getattr(self, fname)
            if not isinstance(value, str):
                raise ConfigError(f"{label}: field '{fname}' must be a string, got {value!r}")
        if not self.name.strip():
            raise ConfigError(f"{label}: field 'name' must not be empty")
        for fname in _FLOAT_FIELDS:
            value = getattr(self, fname)
            if value is None and fname not in _REQUIRED and fname != "layer_overhead_cycles":
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"{label}: field '{fname}' must be a number, got {value!r}")
            if not math.isfinite(value):
                raise ConfigError(f"{label}: field '{fname}' must be finite, got {value!r}")
            object.__setattr__(self, fname, float(value))
        for fname in _INT_FIELDS:
            value = getattr(self, fname)
            if value is None and fname not in _REQUIRED:
                continue
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"{label}: field '{fname}' must be an integer, got {value!r}")
        for fname in _FLOAT_FIELDS + _INT_FIELDS:
            value = getattr(self, fname)
            if value is None:
                continue
            if fname in _POSITIVE and value <= 0:
                raise ConfigError(f"{label}: field '{fname}' must be > 0, got {value!r}")
            if value < 0:
                raise ConfigError(f"{label}: field '{fname}' must be >= 0, got {value!r}")
        if self.energy_per_cycle_j is not None and self.active_current_a is not None:
            raise ConfigError(
                f"{label}: give either field 'energy_per_cycle_j' or 'active_current_a' (with 'voltage_v'), not both"
            )
        if self.active_current_a is not None and self.voltage_v is None:
            raise ConfigError(f"{label}: field 'active_current_a' needs field 'voltage_v' as well")
        if (self.battery_mah is None) != (self.battery_voltage_v is None):
            raise ConfigError(f"{label}: fields 'battery_mah' and 'battery_voltage_v' must be given together")

        sources: Any = self.sources  # from a file: any value until checked here
        if isinstance(sources, str) or not isinstance(sources, (list, tuple)):
            raise ConfigError(f"{label}: field 'sources' must be a list of strings, got {sources!r}")
        for s in sources:
            if not isinstance(s, str):
                raise ConfigError(f"{label}: field 'sources' must contain only strings, got {s!r}")
        object.__setattr__(self, "sources", tuple(sources))

        extra = self.extra
        if not isinstance(extra, Mapping):
            raise ConfigError(f"{label}: field 'extra' must be a table of name = number, got {extra!r}")
        clean: dict[str, float] = {}
        for key, value in extra.items():
            if not isinstance(key, str):
                raise ConfigError(f"{label}: field 'extra' has a non-string key {key!r}")
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ConfigError(f"{label}: field 'extra.{key}' must be a finite number, got {value!r}")
            clean[key] = float(value)
        object.__setattr__(self, "extra", _ReadOnlyFloatMap(clean))

    # -- derived quantities ---------------------------------------------------------
    @property
    def has_energy_model(self) -> bool:
        """True when :meth:`energy_per_cycle` can be computed."""
        return self.energy_per_cycle_j is not None or self.active_current_a is not None

    def energy_per_cycle(self) -> float:
        """Energy of one clock cycle in joules: ``energy_per_cycle_j`` or ``I * V / f``."""
        if self.energy_per_cycle_j is not None:
            return self.energy_per_cycle_j
        if self.active_current_a is not None and self.voltage_v is not None:
            return self.active_current_a * self.voltage_v / self.clock_hz
        raise ConfigError(
            f"hardware target {self.name!r} has no energy model: "
            "set 'energy_per_cycle_j' or both 'active_current_a' and 'voltage_v'"
        )

    def battery_energy_j(self) -> float:
        """Energy stored in the battery in joules (``mAh / 1000 * 3600 * V``)."""
        if self.battery_mah is None or self.battery_voltage_v is None:
            raise ConfigError(
                f"hardware target {self.name!r} has no battery: set 'battery_mah' and 'battery_voltage_v'"
            )
        return self.battery_mah * 3.6 * self.battery_voltage_v

    # -- (de)serialisation ------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (``None`` fields left out) that :meth:`from_dict` reads back."""
        out: dict[str, Any] = {"schema_version": SCHEMA_VERSION}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            if f.name == "sources":
                value = list(value)
            elif f.name == "extra":
                value = dict(value)
            out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "<dict>") -> HardwareTarget:
        """Build a target from a parsed file; errors name ``source`` and the field."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"{source}: a hardware target must be a table/object, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        for key in data:
            if key != "schema_version" and key not in known:
                raise ConfigError(
                    f"{source}: unknown field {key!r} (known fields: {', '.join(sorted(known))}; "
                    "put plugin-specific constants in the [extra] table)"
                )
        version = data.get("schema_version", SCHEMA_VERSION)
        if isinstance(version, bool) or version != SCHEMA_VERSION:
            raise ConfigError(
                f"{source}: field 'schema_version' is {version!r}, this version of nas_core reads {SCHEMA_VERSION}"
            )
        missing = [k for k in _REQUIRED if k not in data]
        if missing:
            raise ConfigError(f"{source}: missing required field {missing[0]!r}")
        kwargs = {k: v for k, v in data.items() if k != "schema_version"}
        if "extra" in kwargs and not isinstance(kwargs["extra"], Mapping):
            raise ConfigError(f"{source}: field 'extra' must be a table of name = number, got {kwargs['extra']!r}")
        try:
            return cls(**kwargs)
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from None


def load_target(path: str | Path) -> HardwareTarget:
    """Read a hardware target from a ``.toml`` or ``.json`` file."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in (".toml", ".json"):
        raise ConfigError(f"{p}: hardware target files must end in .toml or .json, got {p.suffix!r}")
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{p}: hardware target file not found") from None
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read hardware target file ({exc.strerror or exc})") from None
    return _parse(text, suffix, str(p))


def _parse(text: str, suffix: str, source: str) -> HardwareTarget:
    if suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{source}: invalid JSON ({exc})") from None
    else:
        try:
            import tomllib
        except ModuleNotFoundError:  # Python 3.10
            try:
                import tomli as tomllib  # type: ignore[no-redef]
            except ModuleNotFoundError:
                raise ConfigError(
                    f"{source}: reading TOML on Python 3.10 needs the 'tomli' package (or use a .json target)"
                ) from None
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{source}: invalid TOML ({exc})") from None
    return HardwareTarget.from_dict(data, source=source)


def _builtin_dir() -> Any:
    # data files next to this module (nas_core/hardware/targets/*.toml)
    return resources.files("nas_core.hardware").joinpath("targets")


def builtin_target_names() -> tuple[str, ...]:
    """Names of the generic targets shipped with nas_core (file stems)."""
    root = _builtin_dir()
    if not root.is_dir():
        return ()
    return tuple(sorted(e.name[: -len(".toml")] for e in root.iterdir() if e.name.endswith(".toml")))


def load_builtin_target(name: str) -> HardwareTarget:
    """Load one of :func:`builtin_target_names`, e.g. ``"cortex_m4_64mhz"``."""
    names = builtin_target_names()
    if name not in names:
        raise ConfigError(f"unknown built-in hardware target {name!r}; choose one of {', '.join(names)}")
    entry = _builtin_dir().joinpath(f"{name}.toml")
    return _parse(entry.read_text(encoding="utf-8"), ".toml", f"<built-in target {name}.toml>")
