from __future__ import annotations

import json
import math

import numpy as np
import pytest

from toy import SafeToySpace, toy_score
from nas_core.errors import ConfigError
from nas_core.pareto import pareto_front
from nas_core.store import TrialState
from nas_core.strategies import NSGA2, RandomSearch, RegularizedEvolution
from nas_core.strategies.base import Objective, TrialResult

OBJ = [Objective("score", "max")]
OBJ2 = [Objective("score", "max"), Objective("width_sum", "min")]


def _metrics(arch):
    return {"score": toy_score(arch), "width_sum": float(sum(l["width"] for l in arch["layers"]))}


def _run(strategy, n, start=0):
    hashes = []
    for i in range(n):
        a = strategy.ask()
        hashes.append(a.hash)
        strategy.tell(a, TrialResult(TrialState.COMPLETE, _metrics(a), start + i))
    return hashes


FACTORIES = {
    "random": lambda seed: RandomSearch(SafeToySpace(), OBJ, seed=seed),
    "evolution": lambda seed: RegularizedEvolution(SafeToySpace(), OBJ, seed=seed, population_size=8, sample_size=3),
    "nsga2": lambda seed: NSGA2(SafeToySpace(), OBJ2, seed=seed, population_size=8),
}


# determinism under a seed and the JSON state round trip of every registered strategy: test_contracts.py


def test_evolution_penalty_fitness_a_minus_lambda_c():
    ev = RegularizedEvolution(SafeToySpace(), OBJ, penalty_metric="macs", penalty_budget=100.0, penalty_lambda=2.0)
    assert ev.fitness({"score": 0.8, "macs": 50}) == pytest.approx(0.8)        # inside the budget: C = 0
    assert ev.fitness({"score": 0.8, "macs": 150}) == pytest.approx(0.8 - 2.0 * 0.5)  # 50 % over: C = 0.5
    soft = RegularizedEvolution(SafeToySpace(), OBJ, penalty_metric="macs", penalty_lambda=0.01)
    assert soft.fitness({"score": 0.8, "macs": 10}) == pytest.approx(0.8 - 0.1)


def test_evolution_ages_out_oldest_and_ignores_failures():
    ev = RegularizedEvolution(SafeToySpace(), OBJ, population_size=3, sample_size=2)
    archs = [ev.ask() for _ in range(5)]
    for i, a in enumerate(archs):
        ev.tell(a, TrialResult(TrialState.COMPLETE, {"score": float(i)}))
    assert [f for _, f in ev.population] == [2.0, 3.0, 4.0]
    ev.tell(archs[0], TrialResult(TrialState.FAILED, {}))
    ev.tell(archs[0], TrialResult(TrialState.REJECTED, {"score": 9.0}))
    assert len(ev.population) == 3 and max(f for _, f in ev.population) == 4.0


def test_evolution_beats_random_on_a_known_optimum_over_seeds():
    # best-so-far after 60 proposals over 11 seeds; the optimum of toy_score is 0.5
    def _score_run(strategy, n):
        out = []
        for _ in range(n):
            a = strategy.ask()
            m = _metrics(a)
            out.append(m["score"])
            strategy.tell(a, TrialResult(TrialState.COMPLETE, m))
        return out

    evo = [max(_score_run(FACTORIES["evolution"](s), 60)) for s in range(11)]
    rnd = [max(_score_run(FACTORIES["random"](s), 60)) for s in range(11)]
    assert np.median(evo) >= np.median(rnd)
    assert np.mean(evo) > np.mean(rnd) - 1e-9


def test_nsga2_population_is_the_pareto_set_of_what_it_saw():
    s = NSGA2(SafeToySpace(), OBJ2, seed=1, population_size=6)
    seen = []
    for _ in range(60):
        a = s.ask()
        m = _metrics(a)
        seen.append((m["score"], m["width_sum"]))
        s.tell(a, TrialResult(TrialState.COMPLETE, m))
    assert s.generation >= 8
    front = {seen[i] for i in pareto_front(seen, ["max", "min"])}
    parents = {(p[1][0], -p[1][1]) for p in s.parents}
    # every point of the true front that the parents could hold (6 slots) is among them, or the parents are all front points
    assert parents <= front or len(front) > len(parents)
    assert len(parents & front) >= min(len(front), 2)


def test_bad_options_are_clear_errors():
    with pytest.raises(ConfigError, match="sample_size"):
        RegularizedEvolution(SafeToySpace(), OBJ, population_size=4, sample_size=9)
    with pytest.raises(ConfigError, match="multi-objective"):
        NSGA2(SafeToySpace(), OBJ)
    with pytest.raises(ConfigError, match="direction"):
        Objective.parse("acc:up")
