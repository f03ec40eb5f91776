"""Small helpers shared by the strategies of this package (not public API)."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from nas_core.pareto import crowding_distance, non_dominated_sort
from nas_core.space import Architecture, SearchSpace


def arrays_to_json(arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    """Float arrays as nested lists (JSON floats round-trip float64 exactly)."""
    return {k: v.tolist() for k, v in arrays.items()}


def arrays_from_json(d: dict[str, Any]) -> dict[str, np.ndarray]:
    return {k: np.asarray(v, dtype=np.float64) for k, v in d.items()}


def first_unseen(make: Callable[[], Architecture], seen: set[str], tries: int = 32,
                 on_repeat: Callable[[], None] | None = None) -> Architecture:
    """The first of up to ``tries`` candidates from ``make`` whose hash is not in ``seen``; else the last one,
    after calling ``on_repeat`` (the strategy records that fallback, see :meth:`Strategy.fallback`)."""
    arch = make()
    for _ in range(tries - 1):
        if arch.hash not in seen:
            return arch
        arch = make()
    if arch.hash in seen and on_repeat is not None:
        on_repeat()
    return arch


def sample_unseen(space: SearchSpace, rng: np.random.Generator, seen: set[str], tries: int = 32,
                  on_repeat: Callable[[], None] | None = None) -> Architecture:
    return first_unseen(lambda: space.sample(rng), seen, tries, on_repeat)


def mo_order(points: Sequence[Sequence[float]]) -> list[int]:
    """Indices from best to worst for maximised objectives: non-domination rank, then crowding, then index."""
    pts = np.asarray(points, dtype=float)
    if len(pts) == 0:
        return []
    fronts = non_dominated_sort(pts, ["max"] * pts.shape[1])
    order: list[int] = []
    for front in fronts:
        d = crowding_distance(pts[front])
        order.extend(idx for _, idx in sorted(zip((-x for x in d), front)))
    return order


def rank_scores(scores: Sequence[Sequence[float]]) -> list[int]:
    """Best-first order of score vectors (single objective: by value, ties by index)."""
    if not scores:
        return []
    if len(scores[0]) == 1:
        return sorted(range(len(scores)), key=lambda i: (-scores[i][0], i))
    return mo_order(scores)
