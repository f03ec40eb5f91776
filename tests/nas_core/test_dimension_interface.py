"""Dimensions are an open interface: a new kind is one class, and every strategy, the space definition
format and the tabular enumeration work with it without changes elsewhere."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pytest

from nas_core.plugins import Registry
from nas_core.space import Categorical, Dimension, SearchSpace, dimension_from_dict
from nas_core.store import TrialState
from nas_core.strategies.base import Objective, Proposal, TrialResult


@dataclass(frozen=True)
class PowerOfTwo(Dimension):
    """Channel counts 2**low_exp .. 2**high_exp: a kind the core does not know."""

    low_exp: int = 2
    high_exp: int = 6
    when: Any = None

    kind: ClassVar[str] = "power_of_two"
    fields: ClassVar[frozenset[str]] = frozenset({"low_exp", "high_exp"})

    def values(self, limit: int | None = None) -> list[Any] | None:
        vals = [2 ** k for k in range(self.low_exp, self.high_exp + 1)]
        return vals if limit is None or len(vals) <= limit else None

    def sample(self, rng: np.random.Generator) -> int:
        return 2 ** int(rng.integers(self.low_exp, self.high_exp + 1))

    def validate(self, value: Any) -> bool:
        return isinstance(value, int) and value in (self.values() or [])

    def count(self) -> float:
        return float(self.high_exp - self.low_exp + 1)

    def neighbours(self, value: int) -> list[int]:
        return [v for v in (value // 2, value * 2) if self.validate(v)]

    def encoding_size(self) -> int:
        return 1

    def encode(self, value: int) -> list[float]:
        return [self.to_unit(value)]

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.kind, "name": self.name, "low_exp": self.low_exp, "high_exp": self.high_exp}


class Pow2Space(SearchSpace):
    def __init__(self) -> None:
        super().__init__("pow2", [PowerOfTwo("width"), Categorical("act", ["relu", "tanh"]),
                                  PowerOfTwo("hidden", 3, 7)])


def score(arch) -> float:
    return -abs(arch["width"] - 16) / 16 - abs(arch["hidden"] - 64) / 64 + (0.1 if arch["act"] == "tanh" else 0.0)


def test_the_new_kind_round_trips_through_a_space_definition():
    space = Pow2Space()
    again = SearchSpace.from_json(space.to_json())
    assert again.to_dict() == space.to_dict()
    assert isinstance(dimension_from_dict({"type": "power_of_two", "name": "w", "low_exp": 1, "high_exp": 3}),
                      PowerOfTwo)
    rng = np.random.default_rng(0)
    for _ in range(20):
        assert space.contains(space.sample(rng))


@pytest.mark.parametrize("name", sorted(Registry().strategies()))
def test_every_strategy_searches_a_space_with_the_new_kind(name):
    import torch

    torch.set_num_threads(1)
    cls = Registry().strategies()[name]
    objectives = [Objective("score", "max")] + ([Objective("cost", "min")] if cls.multi_objective else [])
    strategy = cls(Pow2Space(), objectives, seed=0, **dict(cls.check_options))
    for i in range(min(12, cls.check_steps)):
        p = strategy.ask()
        arch, fid = (p.arch, dict(p.fidelity)) if isinstance(p, Proposal) else (p, {})
        assert strategy.space.contains(arch), strategy.space.errors(arch)
        strategy.tell(arch, TrialResult(TrialState.COMPLETE, {"score": score(arch), "cost": float(arch["width"])},
                                        i, fid))


def test_the_tabular_enumeration_covers_the_new_kind():
    from nas_core.estimators.tabular import enumerate_architectures

    archs = enumerate_architectures(Pow2Space())
    assert len(archs) == 5 * 2 * 5 and len({a.hash for a in archs}) == 50
