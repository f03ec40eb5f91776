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

def _discover() -> dict[str, type[Strategy]]:
    """Every strategy class defined in a module of this package (one file per strategy, no table to
    keep): a Strategy subclass that sets its own ``name`` and does not set ``registered = False``."""
    import importlib
    import pkgutil

    from nas_core.errors import ConfigError

    found: dict[str, type[Strategy]] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_") or info.name == "base":
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        for obj in vars(module).values():
            if (isinstance(obj, type) and issubclass(obj, Strategy) and obj.__module__ == module.__name__
                    and "name" in obj.__dict__ and obj.__dict__.get("registered", True)):
                if obj.name in found and found[obj.name] is not obj:
                    raise ConfigError(f"two strategies are named '{obj.name}': {found[obj.name].__module__}."
                                      f"{found[obj.name].__qualname__} and {obj.__module__}.{obj.__qualname__}")
                found[obj.name] = obj
    return dict(sorted(found.items()))


#: the core's strategies by name, found in this package; plugins add theirs through the registry
CORE_STRATEGIES: dict[str, type[Strategy]] = _discover()

__all__ = ["BOHB", "CORE_STRATEGIES", "BayesianOptimization", "Generative", "Hyperband", "LocalSearch", "NSGA2",
           "Objective", "OptunaCmaEs", "OptunaGP", "OptunaNSGA2", "OptunaStrategy", "OptunaTPE", "PredictorGuided", "Proposal",
           "RandomSearch", "RegularizedEvolution", "Reinforce", "Strategy", "SuccessiveHalving", "TrialResult"]
