"""Ask/tell search strategies.

A strategy proposes architectures with :meth:`Strategy.ask` and learns from
results with :meth:`Strategy.tell`. It is deterministic under its seed and its
whole state is a JSON-able dict (:meth:`state_dict` / :meth:`load_state_dict`),
which the study stores with every trial transition so a killed study resumes
exactly where it stopped.

Writing a strategy::

    class MyStrategy(Strategy):
        name = "mine"
        def ask(self) -> Architecture:
            return self.space.sample(self.rng)
        def tell(self, arch, result) -> None:
            ...

Results carry the trial state, so a strategy can tell a rejected candidate
(which violated a hard constraint) from a failed one.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Mapping, Sequence, cast

import numpy as np

from nas_core.errors import ConfigError
from nas_core.space import Architecture, SearchSpace
# the value types live in nas_core.values (the bottom layer); re-exported here for existing imports
from nas_core.values import Objective as Objective
from nas_core.values import Proposal as Proposal
from nas_core.values import TrialResult as TrialResult
from nas_core.values import TrialState as TrialState


class StrategyFallback(UserWarning):
    """A strategy proposed a random or already-seen architecture instead of what its method would."""


def rng_state(rng: np.random.Generator) -> dict[str, Any]:
    return dict(rng.bit_generator.state)


def rng_from_state(state: Mapping[str, Any]) -> np.random.Generator:
    bg = np.random.PCG64()
    bg.state = cast(Any, dict(state))  # numpy types the setter as PCG64's TypedDict; the mapping came from rng_state
    return np.random.Generator(bg)


class Strategy(ABC):
    """Base class: holds the space, objectives and a seeded generator."""

    name: str = "strategy"
    #: True when the strategy needs at least two objectives
    multi_objective: bool = False
    #: small options for the contract check (:func:`nas_core.testing.check_strategy`), e.g. a short warm-up
    check_options: Mapping[str, Any] = {}
    #: ask/tell steps of the contract check before its state round trip (fewer for slow samplers)
    check_steps: int = 24
    #: False for a strategy a study cannot build by name (it needs objects, e.g. a scoring function)
    registered: bool = True

    def __init__(self, space: SearchSpace, objectives: Sequence[Objective], *, seed: int = 0):
        if not objectives:
            raise ConfigError(f"strategy '{self.name}' needs at least one objective")
        if self.multi_objective and len(objectives) < 2:
            raise ConfigError(f"strategy '{self.name}' is multi-objective; give at least two objectives")
        self.space = space
        self.objectives = tuple(objectives)
        self.seed = int(seed)
        self.rng = np.random.default_rng(self.seed)
        #: how often each kind of fallback happened (kept in the state, shown by the report)
        self.fallbacks: dict[str, int] = {}

    @abstractmethod
    def ask(self) -> Architecture | Proposal:
        """Propose the next architecture to evaluate (optionally at a fidelity, as a :class:`Proposal`)."""

    @abstractmethod
    def tell(self, arch: Architecture, result: TrialResult) -> None:
        """Learn from the result of a proposal."""

    def fallback(self, kind: str, message: str) -> None:
        """Record that the strategy fell back (proposed a random or an already-seen architecture instead of
        what its method would): counted in :attr:`fallbacks`, and a :class:`StrategyFallback` warning the
        first time each kind happens. Never silent: the study report lists the counts."""
        self.fallbacks[kind] = self.fallbacks.get(kind, 0) + 1
        if self.fallbacks[kind] == 1:
            import warnings

            warnings.warn(f"strategy '{self.name}': {message} (counted as fallback '{kind}'; the report lists "
                          "the counts)", StrategyFallback, stacklevel=2)

    def sample_unseen(self, seen: set[str], tries: int = 32) -> Architecture:
        """A random architecture not in ``seen``; a repeat only after ``tries`` draws, recorded as a fallback."""
        from nas_core.strategies._common import sample_unseen

        return sample_unseen(self.space, self.rng, seen, tries, on_repeat=lambda: self.fallback(
            "repeat", f"{tries} random draws were all already seen; proposing a seen architecture again"))

    def fitness(self, metrics: Mapping[str, float]) -> float:
        """Scalar fitness (larger is better) from the first objective."""
        return self.objectives[0].score(metrics)

    # -- persistence ---------------------------------------------------------------
    # A stateful strategy keeps everything its next proposals depend on in ``_extra_state`` (JSON:
    # lists, dicts, numbers, strings) and restores it in ``_load_extra_state``. The store saves the
    # state after every tell; a resumed study loads it and must propose exactly what the uninterrupted
    # one would. ``check_strategy`` holds every registered strategy to that.
    def state_dict(self) -> dict[str, Any]:
        return {"name": self.name, "rng": rng_state(self.rng), "fallbacks": dict(self.fallbacks),
                **self._extra_state()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state.get("name") != self.name:
            raise ConfigError(f"stored strategy state is for '{state.get('name')}', not '{self.name}'")
        self.rng = rng_from_state(state["rng"])
        self.fallbacks = {str(k): int(v) for k, v in dict(state.get("fallbacks") or {}).items()}
        self._load_extra_state(state)

    def _extra_state(self) -> dict[str, Any]:
        return {}

    def _load_extra_state(self, state: Mapping[str, Any]) -> None:
        pass
