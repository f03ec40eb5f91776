"""Search strategies (ask/tell). Core strategies are registered by name."""

from __future__ import annotations

from nas_core.strategies.base import Objective, Proposal, Strategy, TrialResult
from nas_core.strategies.bayesopt import BayesianOptimization
from nas_core.strategies.evolution import RegularizedEvolution
from nas_core.strategies.generative import Generative
from nas_core.strategies.hyperband import BOHB, Hyperband, SuccessiveHalving
from nas_core.strategies.local_search import LocalSearch
from nas_core.strategies.nsga2 import NSGA2
from nas_core.strategies.predictor_guided import PredictorGuided
from nas_core.strategies.optuna_adapter import OptunaCmaEs, OptunaGP, OptunaNSGA2, OptunaStrategy, OptunaTPE
from nas_core.strategies.random_search import RandomSearch
from nas_core.strategies.reinforce import Reinforce

#: the core's strategies by name; plugins add theirs through the registry
CORE_STRATEGIES: dict[str, type[Strategy]] = {
    cls.name: cls
    for cls in (RandomSearch, RegularizedEvolution, NSGA2, Reinforce, BayesianOptimization, LocalSearch,
                SuccessiveHalving, Hyperband, BOHB, Generative, OptunaStrategy, OptunaTPE, OptunaCmaEs, OptunaNSGA2,
                OptunaGP, PredictorGuided)
}

__all__ = ["BOHB", "CORE_STRATEGIES", "BayesianOptimization", "Generative", "Hyperband", "LocalSearch", "NSGA2",
           "Objective", "OptunaCmaEs", "OptunaGP", "OptunaNSGA2", "OptunaStrategy", "OptunaTPE", "PredictorGuided", "Proposal",
           "RandomSearch", "RegularizedEvolution", "Reinforce", "Strategy", "SuccessiveHalving", "TrialResult"]
