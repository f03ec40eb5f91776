"""Search strategies (ask/tell). Core strategies are registered by name."""

from __future__ import annotations

from nas_core.strategies.base import Objective, Proposal, Strategy, TrialResult
from nas_core.strategies.evolution import RegularizedEvolution
from nas_core.strategies.nsga2 import NSGA2
from nas_core.strategies.random_search import RandomSearch

#: the core's strategies by name; plugins add theirs through the registry
CORE_STRATEGIES: dict[str, type[Strategy]] = {
    RandomSearch.name: RandomSearch,
    RegularizedEvolution.name: RegularizedEvolution,
    NSGA2.name: NSGA2,
}

__all__ = ["CORE_STRATEGIES", "NSGA2", "Objective", "Proposal", "RandomSearch", "RegularizedEvolution", "Strategy", "TrialResult"]
