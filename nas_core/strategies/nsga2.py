"""NSGA-II, Deb et al. 2002, "A fast and elitist multiobjective genetic
algorithm: NSGA-II" (IEEE TEC 6(2)), in ask/tell form.

The first ``population_size`` proposals are random. Afterwards each proposal is
bred from the current parent population: two binary tournaments (lower
non-domination rank wins, then larger crowding distance), uniform crossover with
probability ``crossover_prob``, then mutation. Once ``population_size`` new
results have come back, parents and offspring are merged and the next parents
are chosen front by front, the last front cut by crowding distance (elitism).
Results arriving while the next generation is being bred (parallel workers) simply
join the next merge. Failed and rejected candidates never enter the population:
under a hard constraint every feasible point dominates every infeasible one.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import numpy as np

from nas_core.errors import ConfigError
from nas_core.pareto import crowding_distance, non_dominated_sort
from nas_core.space import Architecture, SearchSpace
from nas_core.strategies.base import Objective, Strategy, TrialResult


class NSGA2(Strategy):
    name = "nsga2"
    check_options = {"population_size": 8}
    multi_objective = True

    def __init__(self, space: SearchSpace, objectives: Sequence[Objective], *, seed: int = 0,
                 population_size: int = 20, crossover_prob: float = 0.9):
        super().__init__(space, objectives, seed=seed)
        if population_size < 2:
            raise ConfigError(f"nsga2: population_size must be >= 2, got {population_size}")
        self.population_size = int(population_size)
        self.crossover_prob = float(crossover_prob)
        self.parents: list[tuple[Architecture, list[float]]] = []
        self.offspring: list[tuple[Architecture, list[float]]] = []
        self.rank: list[int] = []
        self.crowd: list[float] = []
        self.n_asked = 0
        self.generation = 0

    def _scores(self, metrics: Mapping[str, float]) -> list[float]:
        return [o.score(metrics) for o in self.objectives]

    def _rank_and_crowd(self, pts: np.ndarray) -> tuple[list[list[int]], list[int], list[float]]:
        fronts = non_dominated_sort(pts, ["max"] * pts.shape[1])
        rank = [0] * len(pts)
        crowd = [0.0] * len(pts)
        for r, front in enumerate(fronts):
            d = crowding_distance(pts[front])
            for i, idx in enumerate(front):
                rank[idx] = r
                crowd[idx] = float(d[i])
        return fronts, rank, crowd

    def _select(self) -> Architecture:
        i, j = (int(x) for x in self.rng.integers(len(self.parents), size=2))
        key: Callable[[int], tuple[int, float]] = lambda k: (-self.rank[k], self.crowd[k])  # noqa: E731
        return self.parents[i if key(i) >= key(j) else j][0]

    def ask(self) -> Architecture:
        self.n_asked += 1
        if not self.parents:
            return self.space.sample(self.rng)
        a = self._select()
        if self.rng.random() < self.crossover_prob:
            a = self.space.crossover(a, self._select(), self.rng)
        return self.space.mutate(a, self.rng)

    def tell(self, arch: Architecture, result: TrialResult) -> None:
        if not result.ok:
            return
        scores = self._scores(result.metrics)
        if any(s == -np.inf for s in scores):
            return
        self.offspring.append((arch, scores))
        if len(self.offspring) >= self.population_size:
            self._next_generation()

    def _next_generation(self) -> None:
        merged = self.parents + self.offspring
        pts = np.asarray([s for _, s in merged], dtype=float)
        fronts, rank, crowd = self._rank_and_crowd(pts)
        chosen: list[int] = []
        for front in fronts:
            if len(chosen) + len(front) <= self.population_size:
                chosen.extend(front)
            else:
                rest = sorted(front, key=lambda k: (-crowd[k], k))
                chosen.extend(rest[: self.population_size - len(chosen)])
                break
        self.parents = [merged[k] for k in chosen]
        self.offspring = []
        _, self.rank, self.crowd = self._rank_and_crowd(np.asarray([s for _, s in self.parents], dtype=float))
        self.generation += 1

    def _extra_state(self) -> dict[str, Any]:
        enc: Callable[[list[tuple[Architecture, list[float]]]], list[list[Any]]] = \
            lambda rows: [[a.to_json(), s] for a, s in rows]  # noqa: E731
        return {"parents": enc(self.parents), "offspring": enc(self.offspring), "rank": self.rank,
                "crowd": self.crowd, "n_asked": self.n_asked, "generation": self.generation}

    def _load_extra_state(self, state: Mapping[str, Any]) -> None:
        dec: Callable[[Sequence[Sequence[Any]]], list[tuple[Architecture, list[float]]]] = \
            lambda rows: [(Architecture.from_json(a), [float(x) for x in s]) for a, s in rows]  # noqa: E731
        self.parents = dec(state["parents"])
        self.offspring = dec(state["offspring"])
        self.rank = [int(r) for r in state["rank"]]
        self.crowd = [float(c) for c in state["crowd"]]
        self.n_asked = int(state["n_asked"])
        self.generation = int(state["generation"])
