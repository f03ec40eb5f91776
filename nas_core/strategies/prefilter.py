"""Random search behind a zero-cost pre-filter (see :mod:`nas_core.estimators.zero_cost`)."""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

from nas_core.errors import ConfigError
from nas_core.estimators.zero_cost import prefilter
from nas_core.space import Architecture, SearchSpace
from nas_core.strategies.base import Strategy

__all__ = ["PrefilterStrategy"]


class PrefilterStrategy(Strategy):
    """Random search behind a zero-cost pre-filter: sample ``pool`` architectures, propose the best ``keep``.

    Each round draws ``pool`` random architectures, scores them with ``score``
    (e.g. :func:`proxy_scorer`), and asks for the ``keep`` best in order; then the
    next round. ``tell`` is ignored (the filter needs no feedback).
    """

    name = "prefilter"
    registered = False  # needs a scoring function: built in Python, not by name from a study config

    def __init__(self, space: SearchSpace, objectives: Sequence[Any], *, score: Callable[[Architecture], float],
                 pool: int = 50, keep: int = 5, seed: int = 0):
        super().__init__(space, objectives, seed=seed)
        if keep < 1 or pool < keep:
            raise ConfigError(f"PrefilterStrategy needs 1 <= keep <= pool, got keep={keep}, pool={pool}")
        self.score, self.pool, self.keep = score, int(pool), int(keep)
        self._queue: list[Architecture] = []
        self._seen: set[str] = set()

    def ask(self) -> Architecture:
        if not self._queue:
            cands = []
            for _ in range(self.pool * 4):
                a = self.space.sample(self.rng)
                if a.canonical not in self._seen and a not in cands:
                    cands.append(a)
                if len(cands) >= self.pool:
                    break
            self._queue = prefilter(cands, self.score, self.keep)
        a = self._queue.pop(0)
        self._seen.add(a.canonical)
        return a

    def tell(self, arch: Architecture, result: Any) -> None:
        return None

    def _extra_state(self) -> dict[str, Any]:
        return {"queue": [a.to_json() for a in self._queue], "seen": sorted(self._seen)}

    def _load_extra_state(self, state: Mapping[str, Any]) -> None:
        self._queue = [Architecture.from_json(t) for t in state.get("queue", [])]
        self._seen = set(state.get("seen", []))
