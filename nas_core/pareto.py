"""Pareto dominance utilities for multi-objective search.

Objectives are columns of an ``(n, m)`` array-like of points, each with a
direction ``"min"`` or ``"max"``. Point ``a`` dominates ``b`` when it is at least
as good in every objective and strictly better in at least one.

* :func:`non_dominated_sort` - fronts of indices, front 0 first (Deb et al. 2002).
* :func:`pareto_front` - indices of front 0.
* :func:`crowding_distance` - NSGA-II crowding distance within one front.
* :func:`hypervolume` - exact dominated hypervolume w.r.t. a reference point.
* :func:`best_under_budget` - best record whose costs are within budgets.

Example::

    >>> pts = [[0.90, 120.0], [0.85, 40.0], [0.80, 60.0]]   # accuracy, energy_uj
    >>> non_dominated_sort(pts, ["max", "min"])
    [[0, 1], [2]]
    >>> hypervolume(pts, reference=[0.0, 200.0], directions=["max", "min"])
    140.0
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from nas_core.errors import ConfigError

__all__ = ["best_under_budget", "crowding_distance", "hypervolume", "non_dominated_sort", "pareto_front"]

_DIRECTIONS = ("min", "max")
R = TypeVar("R", bound=Mapping[str, Any])


def _signs(directions: Sequence[str], m: int) -> npt.NDArray[np.float64]:
    if isinstance(directions, str):
        raise ConfigError(f"directions must be a sequence like ['max', 'min'], got the string {directions!r}")
    dirs = list(directions)
    if len(dirs) != m:
        raise ConfigError(f"got {len(dirs)} directions {dirs!r} for points with {m} objectives")
    for i, d in enumerate(dirs):
        if d not in _DIRECTIONS:
            raise ConfigError(f"direction {i} is {d!r}; each direction must be 'min' or 'max'")
    return np.array([1.0 if d == "min" else -1.0 for d in dirs])


def _as_points(points: Any, m: int | None = None) -> npt.NDArray[np.float64]:
    try:
        arr = np.asarray(points, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"points must be an (n, m) array of numbers ({exc})") from None
    if arr.size == 0:
        return arr.reshape(0, m if m is not None else (arr.shape[-1] if arr.ndim == 2 else 0))
    if arr.ndim != 2:
        raise ConfigError(f"points must be a 2-D (n, m) array, got shape {arr.shape}")
    if np.isnan(arr).any():
        row = int(np.argwhere(np.isnan(arr))[0][0])
        raise ConfigError(f"points contain NaN (row {row}); drop failed candidates first")
    return arr


def _to_min(points: Any, directions: Sequence[str]) -> npt.NDArray[np.float64]:
    """Points as an (n, m) array where every objective is minimised."""
    m = len(directions) if not isinstance(directions, str) else None
    arr = _as_points(points, m)
    signs = _signs(directions, arr.shape[1])
    return arr * signs


def _dominates_row(p: np.ndarray, others: np.ndarray) -> np.ndarray:
    """Boolean vector: does minimisation point ``p`` dominate each row of ``others``."""
    out: npt.NDArray[np.bool_] = np.all(p <= others, axis=1) & np.any(p < others, axis=1)
    return out


def non_dominated_sort(points: Any, directions: Sequence[str]) -> list[list[int]]:
    """Fronts of point indices, front 0 (non-dominated) first; O(m n^2).

    Equal points share a front. Indices within a front are ascending.
    """
    pts = _to_min(points, directions)
    n = pts.shape[0]
    if n == 0:
        return []
    dominated_by_count = np.zeros(n, dtype=int)
    dominates: list[np.ndarray] = []
    for i in range(n):
        row = _dominates_row(pts[i], pts)
        dominates.append(np.flatnonzero(row))
        dominated_by_count += row
    fronts: list[list[int]] = []
    current = np.flatnonzero(dominated_by_count == 0)
    while current.size:
        fronts.append([int(i) for i in current])
        for k in current:
            dominated_by_count[dominates[k]] -= 1
        nxt = np.concatenate([dominates[i] for i in current])
        current = np.unique(nxt[dominated_by_count[nxt] == 0])
    return fronts


def pareto_front(points: Any, directions: Sequence[str]) -> list[int]:
    """Indices of the non-dominated points (ascending); ``[]`` for no points."""
    fronts = non_dominated_sort(points, directions)
    return fronts[0] if fronts else []


def crowding_distance(points: Any) -> np.ndarray:
    """NSGA-II crowding distance of each point of one front (direction-independent).

    Boundary points of every objective get ``inf``; interior points the sum over
    objectives of the gap between their neighbours divided by the objective's
    range. Objectives with zero or non-finite range add nothing to interior points.
    """
    pts = _as_points(points)
    n, m = pts.shape
    dist = np.zeros(n)
    if n <= 2:
        dist[:] = np.inf
        return dist
    for j in range(m):
        order = np.argsort(pts[:, j], kind="stable")
        col = pts[order, j]
        dist[order[0]] = dist[order[-1]] = np.inf
        span = col[-1] - col[0]
        if not np.isfinite(span) or span <= 0:
            continue
        gaps = (col[2:] - col[:-2]) / span
        dist[order[1:-1]] += gaps
    return dist


def hypervolume(points: Any, reference: Sequence[float], directions: Sequence[str]) -> float:
    """Exact volume dominated by ``points`` and bounded by ``reference``.

    Two objectives use a sweep (O(n log n)); more use recursive slicing along the
    last objective (exact, exponential in m, fine for the few hundred points of a
    study). Points that do not strictly dominate the reference in every objective
    contribute nothing.
    """
    pts = _to_min(points, directions)
    m = pts.shape[1]
    try:
        ref_raw = np.asarray(reference, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"reference must be a sequence of {m} numbers ({exc})") from None
    if ref_raw.shape != (m,):
        raise ConfigError(f"reference has shape {ref_raw.shape}, expected ({m},) to match the points")
    if not np.all(np.isfinite(ref_raw)):
        raise ConfigError(f"reference must be finite, got {ref_raw.tolist()}")
    ref = ref_raw * _signs(directions, m)
    pts = pts[np.all(pts < ref, axis=1)]
    if pts.shape[0] == 0:
        return 0.0
    if not np.all(np.isfinite(pts)):
        raise ConfigError("points inside the reference box must be finite to have a finite hypervolume")
    return float(_hv(pts, ref))


def _hv(pts: np.ndarray, ref: np.ndarray) -> float:
    n, m = pts.shape
    if n == 0:
        return 0.0
    if m == 1:
        return float(ref[0] - pts[:, 0].min())
    if m == 2:
        order = np.lexsort((pts[:, 1], pts[:, 0]))
        area, best_y = 0.0, ref[1]
        for x, y in pts[order]:
            if y < best_y:
                area += (ref[0] - x) * (best_y - y)
                best_y = y
        return area
    pts = pts[np.argsort(pts[:, -1], kind="stable")]
    volume = 0.0
    for i in range(n):
        upper = pts[i + 1, -1] if i + 1 < n else ref[-1]
        depth = upper - pts[i, -1]
        if depth > 0:
            # the slice [z_i, z_{i+1}) is dominated by the projections of points 0..i
            layer = pts[: i + 1, :-1]
            layer = layer[_nondominated_mask(layer)]
            volume += _hv(layer, ref[:-1]) * depth
    return volume


def _nondominated_mask(pts: np.ndarray) -> np.ndarray:
    """Mask of the non-dominated rows of a minimisation array (duplicates kept once)."""
    n = pts.shape[0]
    keep = np.ones(n, dtype=bool)
    for i in range(n):
        if not keep[i]:
            continue
        dominated = _dominates_row(pts[i], pts)
        keep &= ~dominated
        # drop later exact duplicates of i so they are not swept twice (harmless but slower)
        dup = np.all(pts == pts[i], axis=1)
        dup[: i + 1] = False
        keep &= ~dup
    return keep


def best_under_budget(
    records: Iterable[R],
    objective: str,
    direction: str,
    budgets: Mapping[str, float],
) -> R | None:
    """The record with the best ``objective`` among those with ``record[k] <= budgets[k]`` for all k.

    Records lacking the objective or a budgeted metric, or holding NaN there, are
    skipped (they cannot be shown to qualify). Ties go to the earliest record.
    Returns ``None`` when no record qualifies.

    >>> recs = [{"acc": 0.9, "energy_uj": 50.0}, {"acc": 0.8, "energy_uj": 10.0}]
    >>> best_under_budget(recs, "acc", "max", {"energy_uj": 20.0})
    {'acc': 0.8, 'energy_uj': 10.0}
    """
    if direction not in _DIRECTIONS:
        raise ConfigError(f"direction is {direction!r}; it must be 'min' or 'max'")
    if not isinstance(objective, str) or not objective:
        raise ConfigError(f"objective must be a metric name, got {objective!r}")
    if not isinstance(budgets, Mapping):
        raise ConfigError(f"budgets must be a mapping metric -> max allowed value, got {type(budgets).__name__}")
    limits: dict[str, float] = {}
    for key, limit in budgets.items():
        if isinstance(limit, bool) or not isinstance(limit, (int, float)) or math.isnan(limit):
            raise ConfigError(f"budget for {key!r} must be a number, got {limit!r}")
        limits[key] = float(limit)

    def value(record: Mapping[str, Any], key: str) -> float | None:
        v = record.get(key)
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
            return None
        v = float(v)
        return None if math.isnan(v) else v

    best: R | None = None
    best_score = -math.inf
    for record in records:
        if not isinstance(record, Mapping):
            raise ConfigError(f"records must be mappings of metric name -> value, got {type(record).__name__}")
        score = value(record, objective)
        if score is None:
            continue
        ok = True
        for key, limit in limits.items():
            v = value(record, key)
            if v is None or v > limit:
                ok = False
                break
        if not ok:
            continue
        signed = score if direction == "max" else -score
        if best is None or signed > best_score:
            best, best_score = record, signed
    return best
