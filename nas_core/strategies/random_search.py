"""Random search: uniform samples of the space (the baseline every strategy must beat)."""

from __future__ import annotations

from nas_core.space import Architecture
from nas_core.strategies.base import Strategy, TrialResult


class RandomSearch(Strategy):
    name = "random"

    def ask(self) -> Architecture:
        return self.space.sample(self.rng)

    def tell(self, arch: Architecture, result: TrialResult) -> None:
        pass
