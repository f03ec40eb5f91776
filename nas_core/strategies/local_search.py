"""Local search over the space's neighbourhood, as in White, Nolen-Deutsch & Savani
2021, "Exploring the Loss Landscape in Neural Architecture Search" (UAI), who
found this simple method competitive on tabulated NAS benchmarks.

It starts from the best of ``n_initial`` random architectures and evaluates the
neighbours of the current centre (``space.neighbours``: every architecture one
elementary change away) in a random order. With ``improvement="first"`` it moves
to the first neighbour that beats the centre; with ``"best"`` it evaluates the
whole neighbourhood and then moves to the best one if it beats the centre. At a
local optimum (no neighbour better) it restarts from a random, never-evaluated
architecture. Results of neighbours of an old centre that arrive late (parallel
workers) still move the centre if they beat it. Fitness is the first objective;
failed and rejected candidates are never centres and are never proposed again.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

from nas_core.errors import ConfigError
from nas_core.space import Architecture, SearchSpace
from nas_core.strategies.base import Objective, Strategy, TrialResult


class LocalSearch(Strategy):
    """Hill climbing over neighbours with random restarts. Options: ``n_initial`` (10), ``improvement`` ("first"/"best")."""

    name = "local_search"

    def __init__(self, space: SearchSpace, objectives: Sequence[Objective], *, seed: int = 0, n_initial: int = 10,
                 improvement: str = "first"):
        super().__init__(space, objectives, seed=seed)
        if n_initial < 1:
            raise ConfigError(f"local_search: n_initial must be >= 1, got {n_initial}")
        if improvement not in ("first", "best"):
            raise ConfigError(f"local_search: improvement must be 'first' or 'best', got {improvement!r}")
        self.n_initial = int(n_initial)
        self.improvement = improvement
        self.center: Architecture | None = None
        self.center_fitness = -math.inf
        self.queue: list[str] = []  # neighbours of the centre still to propose (canonical strings)
        self.waiting: set[str] = set()  # hashes proposed around the current centre, results not yet told
        self.sweep_best: tuple[float, str] | None = None  # best neighbour of this sweep ("best" mode)
        self.phase = "initial"  # "initial" | "climb" | "restart"
        self.initial_left = self.n_initial
        self.initial_told = 0
        self.seen: set[str] = set()
        self.fitness_of: dict[str, float] = {}
        self.n_asked = 0
        self.restarts = 0

    def _set_center(self, arch: Architecture, fitness: float) -> None:
        self.center, self.center_fitness = arch, fitness
        nbs = [a for a in self.space.neighbours(arch) if a.hash not in self.seen]
        order = self.rng.permutation(len(nbs))
        self.queue = [nbs[int(i)].canonical for i in order]
        self.waiting = set()
        self.sweep_best = None
        self.phase = "climb"

    def ask(self) -> Architecture:
        self.n_asked += 1
        if self.phase in ("initial", "restart"):
            if self.phase == "initial" and self.initial_left > 0:
                self.initial_left -= 1
            return self.sample_unseen(self.seen)
        while self.queue:
            arch = Architecture.from_json(self.queue.pop(0))
            if arch.hash not in self.seen:
                self.waiting.add(arch.hash)
                return arch
        # neighbourhood exhausted while results are outstanding: explore meanwhile
        return self.sample_unseen(self.seen)

    def _local_optimum_check(self) -> None:
        if self.phase != "climb" or self.queue or self.waiting:
            return
        if self.improvement == "best" and self.sweep_best is not None and self.sweep_best[0] > self.center_fitness:
            f, canon = self.sweep_best
            self._set_center(Architecture.from_json(canon), f)
            self._local_optimum_check()
            return
        self.phase = "restart"
        self.restarts += 1

    def tell(self, arch: Architecture, result: TrialResult) -> None:
        self.seen.add(arch.hash)
        self.waiting.discard(arch.hash)
        f = self.fitness(result.metrics) if result.ok else -math.inf
        if math.isfinite(f):
            self.fitness_of[arch.hash] = f
        if self.phase == "initial":
            self.initial_told += 1
            if math.isfinite(f) and (self.center is None or f > self.center_fitness):
                self.center, self.center_fitness = arch, f
            if self.initial_told >= self.n_initial and self.center is not None:
                self._set_center(self.center, self.center_fitness)
                self._local_optimum_check()
            return
        if self.phase == "restart":
            if math.isfinite(f):
                self._set_center(arch, f)
                self._local_optimum_check()
            return
        # climbing
        if math.isfinite(f) and f > self.center_fitness:
            if self.improvement == "first":
                self._set_center(arch, f)
            elif self.sweep_best is None or f > self.sweep_best[0]:
                self.sweep_best = (f, arch.canonical)
        self._local_optimum_check()

    def _extra_state(self) -> dict[str, Any]:
        return {"center": self.center.canonical if self.center else None, "center_fitness": self.center_fitness if self.center else None,
                "queue": self.queue, "waiting": sorted(self.waiting),
                "sweep_best": list(self.sweep_best) if self.sweep_best else None, "phase": self.phase,
                "initial_left": self.initial_left, "initial_told": self.initial_told, "seen": sorted(self.seen),
                "fitness_of": self.fitness_of, "n_asked": self.n_asked, "restarts": self.restarts}

    def _load_extra_state(self, state: Mapping[str, Any]) -> None:
        self.center = Architecture.from_json(state["center"]) if state["center"] else None
        self.center_fitness = float(state["center_fitness"]) if self.center else -math.inf
        self.queue = list(state["queue"])
        self.waiting = set(state["waiting"])
        sb = state["sweep_best"]
        self.sweep_best = (float(sb[0]), str(sb[1])) if sb else None
        self.phase = state["phase"]
        self.initial_left = int(state["initial_left"])
        self.initial_told = int(state["initial_told"])
        self.seen = set(state["seen"])
        self.fitness_of = {k: float(v) for k, v in state["fitness_of"].items()}
        self.n_asked = int(state["n_asked"])
        self.restarts = int(state["restarts"])
