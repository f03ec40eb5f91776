"""Regularized (aging) evolution, Real et al. 2019, "Regularized Evolution for
Image Classifier Architecture Search" (AAAI).

The population is a queue of the ``population_size`` most recently evaluated
architectures. Each proposal picks a parent by a tournament among ``sample_size``
random members (best fitness wins); with probability ``crossover_prob`` a second
tournament picks another parent and the child is their uniform crossover; the
child is then mutated. Every new result joins the queue and the *oldest* member
leaves, whatever its fitness (aging), which regularizes against lucky
evaluations.

Fitness is ``A - λ·C``: ``A`` is the first objective (signed so larger is better)
and ``C`` a constraint penalty. With ``penalty_metric`` and ``penalty_budget``
``C = max(0, value / budget - 1)`` (zero inside the budget, the relative excess
outside); with ``penalty_metric`` only, ``C = value`` (a soft cost term). Rejected
and failed candidates never join the population.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any, Mapping, Sequence

from nas_core.errors import ConfigError
from nas_core.space import Architecture, SearchSpace
from nas_core.strategies.base import Objective, Strategy, TrialResult


class RegularizedEvolution(Strategy):
    name = "evolution"
    check_options = {"population_size": 8, "sample_size": 3}

    def __init__(self, space: SearchSpace, objectives: Sequence[Objective], *, seed: int = 0,
                 population_size: int = 20, sample_size: int = 5, crossover_prob: float = 0.3,
                 penalty_metric: str | None = None, penalty_budget: float | None = None, penalty_lambda: float = 1.0):
        super().__init__(space, objectives, seed=seed)
        if population_size < 2:
            raise ConfigError(f"evolution: population_size must be >= 2, got {population_size}")
        if not 1 <= sample_size <= population_size:
            raise ConfigError(f"evolution: sample_size must be in 1..population_size ({population_size}), got {sample_size}")
        if not 0.0 <= crossover_prob <= 1.0:
            raise ConfigError(f"evolution: crossover_prob must be in [0, 1], got {crossover_prob}")
        if penalty_budget is not None and (penalty_metric is None or penalty_budget <= 0):
            raise ConfigError("evolution: penalty_budget needs penalty_metric and must be > 0")
        self.population_size = int(population_size)
        self.sample_size = int(sample_size)
        self.crossover_prob = float(crossover_prob)
        self.penalty_metric = penalty_metric
        self.penalty_budget = penalty_budget
        self.penalty_lambda = float(penalty_lambda)
        self.population: deque[tuple[Architecture, float]] = deque()
        self.n_asked = 0

    def fitness(self, metrics: Mapping[str, float]) -> float:
        a = self.objectives[0].score(metrics)
        if self.penalty_metric is None:
            return a
        value = metrics.get(self.penalty_metric)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return -math.inf
        c = max(0.0, float(value) / self.penalty_budget - 1.0) if self.penalty_budget else float(value)
        return a - self.penalty_lambda * c

    def _tournament(self) -> Architecture:
        idx = self.rng.choice(len(self.population), size=self.sample_size, replace=False)
        best = max(idx, key=lambda i: (self.population[i][1], -i))
        return self.population[best][0]

    def ask(self) -> Architecture:
        self.n_asked += 1
        if len(self.population) < self.population_size:
            return self.space.sample(self.rng)
        parent = self._tournament()
        if self.rng.random() < self.crossover_prob:
            other = self._tournament()
            parent = self.space.crossover(parent, other, self.rng)
        return self.space.mutate(parent, self.rng)

    def tell(self, arch: Architecture, result: TrialResult) -> None:
        if not result.ok:
            return
        f = self.fitness(result.metrics)
        if f == -math.inf:
            return
        self.population.append((arch, f))
        while len(self.population) > self.population_size:
            self.population.popleft()

    def _extra_state(self) -> dict[str, Any]:
        return {"population": [[a.to_json(), f] for a, f in self.population], "n_asked": self.n_asked}

    def _load_extra_state(self, state: Mapping[str, Any]) -> None:
        self.population = deque((Architecture.from_json(a), float(f)) for a, f in state["population"])
        self.n_asked = int(state["n_asked"])
