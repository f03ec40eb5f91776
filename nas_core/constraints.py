"""Hard constraints on metrics known before training (checked before any training)."""

from __future__ import annotations

import math
import operator
import re
from dataclasses import dataclass
from typing import Mapping

from nas_core.errors import ConfigError

_OPS = {"<=": operator.le, ">=": operator.ge, "<": operator.lt, ">": operator.gt, "==": operator.eq}
_PATTERN = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_.]*)\s*(<=|>=|==|<|>)\s*([-+0-9.eE]+)\s*$")


@dataclass(frozen=True)
class Constraint:
    """``metric op value``, e.g. ``Constraint("params", "<=", 5000)``; ``why`` explains it in reports."""

    metric: str
    op: str
    value: float
    why: str = ""

    def __post_init__(self) -> None:
        if self.op not in _OPS:
            raise ConfigError(f"constraint on '{self.metric}': operator {self.op!r} is not one of {sorted(_OPS)}")
        if not isinstance(self.value, (int, float)) or math.isnan(self.value):
            raise ConfigError(f"constraint on '{self.metric}': value {self.value!r} is not a number")

    @classmethod
    def parse(cls, text: str) -> "Constraint":
        """``"params<=5000"``, ``"energy_uj < 12.5"``."""
        m = _PATTERN.match(text) if isinstance(text, str) else None
        if not m:
            raise ConfigError(f"constraint {text!r} must look like 'metric<=value' (operators: <=, >=, <, >, ==)")
        try:
            value = float(m.group(3))
        except ValueError:
            raise ConfigError(f"constraint {text!r}: {m.group(3)!r} is not a number") from None
        return cls(m.group(1), m.group(2), value)

    def violation(self, metrics: Mapping[str, float]) -> str | None:
        """``None`` when satisfied, else a reason naming the metric, its value and the bound."""
        if self.metric not in metrics:
            return f"{self.metric} is unknown for this candidate"
        v = metrics[self.metric]
        if v is None or (isinstance(v, float) and math.isnan(v)) or not _OPS[self.op](v, self.value):
            text = f"{self.metric} = {_fmt(v)} violates {self.metric} {self.op} {_fmt(self.value)}"
            return f"{text} ({self.why})" if self.why else text
        return None

    def __str__(self) -> str:
        return f"{self.metric}{self.op}{_fmt(self.value)}"


def _fmt(v: float) -> str:
    return f"{v:.6g}" if isinstance(v, float) else str(v)
