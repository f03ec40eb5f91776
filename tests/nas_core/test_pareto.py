"""Pareto utilities on small hand-worked examples."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nas_core.errors import ConfigError
from nas_core.pareto import best_under_budget, crowding_distance, hypervolume, non_dominated_sort, pareto_front

# (1,5), (2,3), (4,1) are mutually non-dominated;
# (3,4) is dominated only by (2,3); (2,6) only by (1,5); (5,5) also by (3,4).
MINMIN = [[1, 5], [2, 3], [3, 4], [4, 1], [2, 6], [5, 5]]


def test_non_dominated_sort_2d_min() -> None:
    assert non_dominated_sort(MINMIN, ["min", "min"]) == [[0, 1, 3], [2, 4], [5]]
    assert pareto_front(MINMIN, ["min", "min"]) == [0, 1, 3]


def test_non_dominated_sort_2d_max_min_with_duplicates() -> None:
    # accuracy (max), energy (min)
    pts = [[0.9, 10.0], [0.8, 5.0], [0.85, 12.0], [0.9, 10.0], [0.7, 20.0]]
    # 0 and 3 are equal (neither dominates the other); (0.85, 12) is dominated by (0.9, 10);
    # (0.7, 20) by (0.85, 12)
    assert non_dominated_sort(pts, ["max", "min"]) == [[0, 1, 3], [2], [4]]
    # flipping both directions turns the ranking around
    assert non_dominated_sort(pts, ["min", "max"]) == [[4], [1, 2], [0, 3]]


def test_non_dominated_sort_3d_mixed() -> None:
    # objectives: latency (min), accuracy (max), flash (min)
    pts = [
        [10, 0.90, 100],  # 0: front 0
        [5, 0.80, 100],  # 1: front 0 (faster)
        [10, 0.85, 100],  # 2: dominated by 0
        [5, 0.80, 50],  # 3: dominates 1 (smaller flash) -> front 0
        [20, 0.95, 500],  # 4: front 0 (most accurate)
        [20, 0.80, 500],  # 5: dominated by every other point, among them 1 and 2 of front 1
    ]
    assert non_dominated_sort(pts, ["min", "max", "min"]) == [[0, 3, 4], [1, 2], [5]]


def test_non_dominated_sort_edge_cases() -> None:
    assert non_dominated_sort([], ["min", "max"]) == []
    assert pareto_front(np.empty((0, 2)), ["min", "max"]) == []
    assert non_dominated_sort([[1.0]], ["max"]) == [[0]]
    assert non_dominated_sort([[1.0], [3.0], [2.0]], ["max"]) == [[1], [2], [0]]


@pytest.mark.parametrize(
    ("points", "directions", "needle"),
    [
        ([[1, 2]], ["min", "minimize"], "'minimize'"),
        ([[1, 2]], ["min"], "1 directions"),
        ([[1, 2]], "mm", "string"),
        ([1, 2], ["min"], "2-D"),
        ([[1, float("nan")]], ["min", "min"], "NaN"),
        ([[1, 2], [3]], ["min", "min"], "array"),
    ],
)
def test_non_dominated_sort_validation(points: object, directions: object, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        non_dominated_sort(points, directions)  # type: ignore[arg-type]


def test_crowding_distance() -> None:
    front = [[1, 5], [2, 3], [4, 1]]
    # (2,3) is interior in both objectives: (4-1)/(4-1) + (5-1)/(5-1) = 2; ends are inf
    d = crowding_distance(front)
    assert d[1] == pytest.approx(2.0)
    assert math.isinf(d[0]) and math.isinf(d[2])
    assert np.all(np.isinf(crowding_distance([[1, 2], [3, 4]])))
    # a constant objective adds nothing: (2-0)/(3-0) for interior point 1, (3-1)/(3-0) for point 2
    d = crowding_distance([[0, 7], [1, 7], [2, 7], [3, 7]])
    assert d[1] == pytest.approx(2 / 3) and d[2] == pytest.approx(2 / 3)


def test_hypervolume_2d_by_hand() -> None:
    pts = [[1, 5], [2, 3], [4, 1]]
    # slices along y with reference (6, 6): y in [5,6]: x from 1 -> 5*1; y in [3,5]: x from 2 -> 4*2;
    # y in [1,3]: x from 4 -> 2*2; total 5 + 8 + 4 = 17
    assert hypervolume(pts, [6, 6], ["min", "min"]) == pytest.approx(17.0)
    # dominated points and points outside the reference box add nothing
    more = pts + [[3, 4], [7, 0], [6, 2], [0, 6]]
    assert hypervolume(more, [6, 6], ["min", "min"]) == pytest.approx(17.0)
    assert hypervolume([[7, 7]], [6, 6], ["min", "min"]) == 0.0
    assert hypervolume([], [6, 6], ["min", "min"]) == 0.0


def test_hypervolume_2d_max_min() -> None:
    # accuracy (max), energy (min), reference accuracy 0, energy 200:
    # (0.9, 120): 0.9 * (200 - 120) = 72; (0.85, 40) adds 0.85 * (120 - 40) = 68; (0.8, 60) is dominated
    pts = [[0.9, 120.0], [0.85, 40.0], [0.8, 60.0]]
    assert hypervolume(pts, [0.0, 200.0], ["max", "min"]) == pytest.approx(140.0)


THREE_D = [[1, 2, 3], [2, 1, 2], [3, 3, 1]]


def test_hypervolume_3d_by_hand() -> None:
    # boxes up to (4,4,4): A = 3*2*1 = 6, B = 2*3*2 = 12, C = 1*1*3 = 3;
    # A&B = 2*2*1 = 4, A&C = 1, B&C = 1*1*2 = 2, A&B&C = 1 -> 6 + 12 + 3 - 4 - 1 - 2 + 1 = 15
    assert hypervolume(THREE_D, [4, 4, 4], ["min", "min", "min"]) == pytest.approx(15.0)
    # the same front with the second objective maximised as 10 - y (reference 10 - 4 = 6)
    mixed = [[x, 10 - y, z] for x, y, z in THREE_D]
    assert hypervolume(mixed, [4, 6, 4], ["min", "max", "min"]) == pytest.approx(15.0)
    # a dominated point changes nothing
    assert hypervolume(THREE_D + [[3, 3, 3]], [4, 4, 4], ["min"] * 3) == pytest.approx(15.0)


def test_hypervolume_general_matches_2d_sweep_and_single_box() -> None:
    pts = [[1, 5], [2, 3], [4, 1]]
    lifted = [[x, y, 0] for x, y in pts]  # third objective contributes a factor 1
    assert hypervolume(lifted, [6, 6, 1], ["min"] * 3) == pytest.approx(17.0)
    # one point in 4-D: a box (5-1)(5-2)(5-3)(5-4) = 24
    assert hypervolume([[1, 2, 3, 4]], [5, 5, 5, 5], ["min"] * 4) == pytest.approx(24.0)


def test_hypervolume_3d_matches_monte_carlo() -> None:
    rng = np.random.default_rng(1234)
    pts = rng.uniform(0.0, 1.0, size=(15, 3))
    exact = hypervolume(pts, [1.0, 1.0, 1.0], ["min", "min", "min"])
    samples = rng.uniform(0.0, 1.0, size=(200_000, 3))
    dominated = np.zeros(len(samples), dtype=bool)
    for p in pts:
        dominated |= np.all(samples >= p, axis=1)
    estimate = dominated.mean()  # unit box, so the dominated fraction is the volume
    # standard error <= 0.5 / sqrt(200000) ~ 0.0011; allow about 5 standard errors
    assert exact == pytest.approx(estimate, abs=0.006)
    # maximising 1 - x is the same problem
    flipped = 1.0 - pts
    assert hypervolume(flipped, [0.0, 0.0, 0.0], ["max"] * 3) == pytest.approx(exact)


def test_hypervolume_validation() -> None:
    with pytest.raises(ConfigError, match="reference"):
        hypervolume([[1, 2]], [3], ["min", "min"])
    with pytest.raises(ConfigError, match="reference must be finite"):
        hypervolume([[1, 2]], [3, float("inf")], ["min", "min"])
    with pytest.raises(ConfigError, match="'up'"):
        hypervolume([[1, 2]], [3, 3], ["min", "up"])


RECORDS = [
    {"trial": 0, "accuracy": 0.95, "energy_uj": 120.0, "peak_act_bytes": 30_000},
    {"trial": 1, "accuracy": 0.91, "energy_uj": 40.0, "peak_act_bytes": 20_000},
    {"trial": 2, "accuracy": 0.93, "energy_uj": 60.0, "peak_act_bytes": 90_000},
    {"trial": 3, "accuracy": 0.93, "energy_uj": 55.0, "peak_act_bytes": 10_000},
    {"trial": 4, "accuracy": float("nan"), "energy_uj": 1.0, "peak_act_bytes": 1},
    {"trial": 5, "energy_uj": 1.0},  # failed trial: no accuracy
    {"trial": 6, "accuracy": 0.99},  # no energy measured: cannot be shown to fit
]


def test_best_under_budget() -> None:
    best = best_under_budget(RECORDS, "accuracy", "max", {"energy_uj": 60.0})
    assert best is not None and best["trial"] == 2  # 0.93 at 60 uJ (<= is allowed), ahead of trial 3
    best = best_under_budget(RECORDS, "accuracy", "max", {"energy_uj": 60.0, "peak_act_bytes": 50_000})
    assert best is not None and best["trial"] == 3
    assert best_under_budget(RECORDS, "accuracy", "max", {"energy_uj": 10.0}) is None
    best = best_under_budget(RECORDS, "energy_uj", "min", {"peak_act_bytes": 25_000})
    assert best is not None and best["trial"] == 4  # objective energy; NaN accuracy is irrelevant
    assert best_under_budget(RECORDS, "accuracy", "max", {})["trial"] == 6  # type: ignore[index]
    assert best_under_budget([], "accuracy", "max", {"energy_uj": 1.0}) is None


def test_best_under_budget_validation() -> None:
    with pytest.raises(ConfigError, match="'maximize'"):
        best_under_budget(RECORDS, "accuracy", "maximize", {})
    with pytest.raises(ConfigError, match="budget for 'energy_uj'"):
        best_under_budget(RECORDS, "accuracy", "max", {"energy_uj": "low"})  # type: ignore[dict-item]
