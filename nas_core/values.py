"""The value types every layer shares: trial states, objectives, proposals and results.

They sit at the bottom of the package (they import nothing of it but the error
types), so the store, the strategies, the study loop and plugins all point down
to them. ``nas_core.store.TrialState`` and ``nas_core.strategies.base.Objective``
(and the others) remain importable from their old places.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

from nas_core.errors import ConfigError
from nas_core.space import Architecture

__all__ = ["Objective", "Proposal", "TrialResult", "TrialState"]


class TrialState(str, enum.Enum):
    RUNNING = "running"      # asked and submitted; re-run on resume if the driver died
    COMPLETE = "complete"
    FAILED = "failed"        # raised, NaN loss, timed out or its worker died
    REJECTED = "rejected"    # violated a hard constraint; never trained

    @property
    def finished(self) -> bool:
        return self in (TrialState.COMPLETE, TrialState.FAILED)


@dataclass(frozen=True)
class Objective:
    """A named metric and whether it is minimised or maximised."""

    name: str
    direction: str = "max"

    def __post_init__(self) -> None:
        if self.direction not in ("min", "max"):
            raise ConfigError(f"objective '{self.name}': direction must be 'min' or 'max', got {self.direction!r}")
        if not self.name:
            raise ConfigError("an objective needs a metric name")

    @classmethod
    def parse(cls, text: str) -> "Objective":
        """``"accuracy:max"`` or ``"macs:min"``."""
        if not isinstance(text, str) or text.count(":") != 1:
            raise ConfigError(f"objective {text!r} must look like 'metric:max' or 'metric:min'")
        name, direction = (t.strip() for t in text.split(":"))
        return cls(name, direction)

    def __str__(self) -> str:
        return f"{self.name}:{self.direction}"

    def score(self, metrics: Mapping[str, float]) -> float:
        """The metric signed so that larger is better (``-inf`` when missing or NaN)."""
        v = metrics.get(self.name)
        if v is None or not isinstance(v, (int, float)) or math.isnan(v):
            return -math.inf
        return float(v) if self.direction == "max" else -float(v)


@dataclass(frozen=True)
class Proposal:
    """An architecture to evaluate at a given fidelity (multi-fidelity strategies return these from ``ask``).

    The fidelity is merged over the study's own, e.g. ``Proposal(arch, {"epochs": 2})``.
    """

    arch: Architecture
    fidelity: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TrialResult:
    """What a strategy is told about one proposal."""

    state: TrialState
    metrics: Mapping[str, float] = field(default_factory=dict)
    number: int | None = None
    fidelity: Mapping[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.state == TrialState.COMPLETE
