"""Run any Optuna sampler as a strategy of this framework.

:class:`OptunaStrategy` keeps an in-memory ``optuna`` study and maps the search
space onto Optuna's define-by-run API on each trial:

* a categorical dimension -> ``suggest_categorical`` (over the choices when they
  are plain numbers, strings, booleans or null, else over their indices) or, with
  ``categorical_as="index"``, ``suggest_int`` over the choice index (ordinal, which
  CMA-ES needs);
* an integer dimension -> ``suggest_int(low, high, step)``; a float ->
  ``suggest_float(low, high, step=..., log=...)``;
* a repeat -> ``suggest_int("<name>#n", min_count, max_count)``, then its block
  once per copy with the prefix ``<name>[i].``; nested repeats nest the prefix;
* conditions: a conditional dimension is suggested only when it is active.

Samplers that model a *fixed* set of parameters (CMA-ES, GP, QMC) sample
parameters outside the intersection of all trials' parameters independently,
i.e. at random. With ``static_space=True`` (the default for those samplers) every
parameter is suggested in every trial, repeat copies up to ``max_count`` and
inactive conditional dimensions included, and the architecture is read from the
active ones, so the sampler models the whole space instead of silently falling
back to random sampling.

Results: a complete result is told with the objectives' raw values (the Optuna
study has the objectives' directions). A failed or rejected one is told, with
``infeasible="penalty"`` (the default), the worst value of each objective seen so
far, so that every sampler learns to leave the region (samplers ignore ``FAIL``
trials, and a deterministic one such as the GP then proposes the same point
again); with ``infeasible="fail"`` it is told as ``FAIL``. When the sampler
proposes an architecture this strategy already knows the result of (Optuna does
not deduplicate), that trial is told the known result at once and the sampler is
asked again; after ``max_redraws`` (10) repeats in a row a random never-seen
architecture is enqueued as the next Optuna trial (counted in
:attr:`n_fallbacks`, so it is never silent), and the framework's study never
spends a proposal on a repeat. A result for an
architecture this strategy did not propose (e.g. a trial re-run on resume) is
added to Optuna as a finished trial.

State: Optuna samplers keep Python objects (random states, CMA-ES internals,
trial caches) that are not JSON. The state is therefore the *event log* (every
``ask`` and every ``tell`` with its result); :meth:`load_state_dict` builds a
fresh Optuna study with the same seed and replays the log, which reproduces the
sampler exactly, so a resumed study continues identically. Resuming costs one
replay of all proposals (for TPE, a few seconds per thousand trials).

Example::

    >>> from nas_core.strategies.optuna_adapter import OptunaStrategy   # doctest: +SKIP
    >>> s = OptunaStrategy(space, [Objective("val_accuracy", "max")], sampler="tpe", seed=0)  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import importlib.util
import math
import warnings
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np

from nas_core.errors import ConfigError
from nas_core.space import Architecture, Categorical, Dimension, Float, Integer, Repeat, SearchSpace
from nas_core.strategies.base import Objective, Strategy, TrialResult, rng_from_state

#: sampler name -> (optuna class name, static_space default, categorical_as default, multi-objective support)
SAMPLERS: dict[str, tuple[str, bool, str, bool]] = {
    "tpe": ("TPESampler", False, "categorical", True),
    "cmaes": ("CmaEsSampler", True, "index", False),
    "nsga2": ("NSGAIISampler", False, "categorical", True),
    "nsga3": ("NSGAIIISampler", False, "categorical", True),
    "gp": ("GPSampler", True, "categorical", True),
    "qmc": ("QMCSampler", True, "categorical", True),
    "random": ("RandomSampler", False, "categorical", True),
}

_PRIMITIVE = (str, int, float, bool, type(None))


@contextlib.contextmanager
def _quiet(on_fallback: Callable[[str], None] | None = None) -> Iterator[None]:
    """Silence Optuna's per-trial INFO log and experimental warnings for the duration of a call; Optuna's own
    fallback warnings (independent sampling, "fall back to") go to ``on_fallback`` instead of being lost."""
    import optuna

    old = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            yield
        for w in caught:
            text = str(w.message)
            if on_fallback is not None and ("independent sampl" in text or "fall back to" in text):
                on_fallback(text.splitlines()[0][:200])
            else:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    finally:
        optuna.logging.set_verbosity(old)


class OptunaStrategy(Strategy):
    """An Optuna sampler as a strategy.

    Options: ``sampler`` (``"tpe"``, ``"cmaes"``, ``"nsga2"``, ``"nsga3"``, ``"gp"``,
    ``"qmc"``, ``"random"``), ``sampler_options`` (keyword arguments of the Optuna
    sampler, JSON values), ``static_space`` and ``categorical_as`` (see the module
    docstring; defaults depend on the sampler), ``max_redraws`` (10), ``infeasible``
    (``"penalty"`` or ``"fail"``, see the module docstring). From Python,
    ``sampler_factory=lambda seed: optuna.samplers.XSampler(seed=seed, ...)`` runs
    any sampler object (it must be seeded by its argument for reproducibility).
    """

    name = "optuna"
    default_sampler = "tpe"

    def __init__(self, space: SearchSpace, objectives: Sequence[Objective], *, seed: int = 0,
                 sampler: str | None = None, sampler_options: Mapping[str, Any] | None = None,
                 static_space: bool | None = None, categorical_as: str | None = None, max_redraws: int = 10,
                 infeasible: str = "penalty", sampler_factory: Callable[[int], Any] | None = None):
        super().__init__(space, objectives, seed=seed)
        sampler = sampler or self.default_sampler
        if sampler_factory is None and sampler not in SAMPLERS:
            raise ConfigError(f"optuna: unknown sampler {sampler!r}; use one of {', '.join(SAMPLERS)} "
                              "(or pass sampler_factory from Python)")
        cls_name, static_default, cat_default, multi = SAMPLERS.get(sampler, ("", False, "categorical", True))
        if len(self.objectives) > 1 and not multi and sampler_factory is None:
            raise ConfigError(f"optuna: the {sampler} sampler optimises one objective; give one objective or use "
                              "'tpe', 'nsga2' or 'gp'")
        needs = {"cmaes": "cmaes", "gp": "torch"}.get(sampler) if sampler_factory is None else None
        if needs and importlib.util.find_spec(needs) is None:
            raise ConfigError(f"optuna: the {sampler} sampler needs the '{needs}' package; pip install {needs}")
        if categorical_as not in (None, "categorical", "index"):
            raise ConfigError(f"optuna: categorical_as must be 'categorical' or 'index', got {categorical_as!r}")
        self.sampler_name = sampler
        self.sampler_options = dict(sampler_options or {})
        self.sampler_factory = sampler_factory
        self.static_space = static_default if static_space is None else bool(static_space)
        self.categorical_as = categorical_as or cat_default
        self.max_redraws = max(1, int(max_redraws))
        if infeasible not in ("penalty", "fail"):
            raise ConfigError(f"optuna: infeasible must be 'penalty' or 'fail', got {infeasible!r}")
        self.infeasible = infeasible
        self._cls_name = cls_name
        self._reset()

    # -- the Optuna study ------------------------------------------------------------------------
    def _make_sampler(self) -> Any:
        import optuna

        if self.sampler_factory is not None:
            return self.sampler_factory(self.seed)
        cls = getattr(optuna.samplers, self._cls_name)
        try:
            return cls(seed=self.seed, **self.sampler_options)
        except TypeError as exc:
            raise ConfigError(f"optuna: bad sampler_options for {self._cls_name}: {exc}") from None

    def _reset(self) -> None:
        import optuna

        with _quiet(lambda m: self.fallback("optuna", f"Optuna fell back: {m}")):
            self.study = optuna.create_study(
                directions=["maximize" if o.direction == "max" else "minimize" for o in self.objectives],
                sampler=self._make_sampler())
        self.log: list[list[Any]] = []  # ["ask"] | ["tell", canonical, state, values]
        self.pending: dict[str, list[int]] = {}  # canonical -> open Optuna trial numbers
        self.known: dict[str, tuple[str, list[float] | None]] = {}  # hash -> ("complete"|"fail", values)
        self.worst: list[float] | None = None  # worst value of each objective told so far
        self.n_asked = 0
        self.n_fallbacks = 0
        self.rng = np.random.default_rng(self.seed)

    # -- space <-> Optuna parameters -------------------------------------------------------------------
    def _by_index(self, dim: Categorical) -> bool:
        return not all(isinstance(c, _PRIMITIVE) for c in dim.choices)

    def _cat_choices(self, dim: Categorical) -> list[Any]:
        return list(range(len(dim.choices))) if self._by_index(dim) else list(dim.choices)

    def _suggest_dim(self, trial: Any, dim: Dimension, name: str) -> Any:
        if isinstance(dim, Categorical):
            if self.categorical_as == "index":
                return dim.choices[trial.suggest_int(name, 0, len(dim.choices) - 1)]
            v = trial.suggest_categorical(name, self._cat_choices(dim))
            return dim.choices[v] if self._by_index(dim) else v
        if isinstance(dim, Integer):
            return int(trial.suggest_int(name, dim.low, dim.high, step=dim.step))
        if isinstance(dim, Float):
            if dim.step is not None:
                return dim.snap(trial.suggest_float(name, dim.low, dim.high, step=dim.step))
            return dim.snap(trial.suggest_float(name, dim.low, dim.high, log=dim.log))
        # any other kind, through the public Dimension interface: an index into its values, else a unit float
        vals = dim.values()
        if vals is not None:
            return vals[trial.suggest_int(name, 0, len(vals) - 1)]
        return dim.from_unit(trial.suggest_float(name, 0.0, 1.0))

    def _suggest_scope(self, trial: Any, dims: Sequence[Dimension], prefix: str, active: bool) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for dim in dims:
            cond = dim.condition
            on = active and (cond is None or cond.holds(out))
            if not on and not self.static_space:
                continue
            name = f"{prefix}{dim.name}"
            if isinstance(dim, Repeat):
                n = int(trial.suggest_int(f"{name}#n", dim.min_count, dim.max_count))
                copies = []
                upto = dim.max_count if self.static_space else n
                for i in range(upto):
                    block = self._suggest_scope(trial, dim.block, f"{name}[{i}].", on and i < n)
                    if i < n:
                        copies.append(block)
                if on:
                    out[dim.name] = copies
            else:
                v = self._suggest_dim(trial, dim, name)
                if on:
                    out[dim.name] = v
        return out

    def _params_of(self, arch: Architecture) -> tuple[dict[str, Any], dict[str, Any]]:
        """Optuna parameters and distributions describing ``arch`` (active dimensions only)."""
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        params: dict[str, Any] = {}
        dists: dict[str, Any] = {}

        def walk(dims: Sequence[Dimension], values: Mapping[str, Any], prefix: str) -> None:
            for dim in dims:
                if dim.name not in values:
                    continue
                name, v = f"{prefix}{dim.name}", values[dim.name]
                if isinstance(dim, Repeat):
                    params[f"{name}#n"] = len(v)
                    dists[f"{name}#n"] = IntDistribution(dim.min_count, dim.max_count)
                    for i, block in enumerate(v):
                        walk(dim.block, block, f"{name}[{i}].")
                elif isinstance(dim, Categorical):
                    if self.categorical_as == "index":
                        params[name] = dim.index(v)
                        dists[name] = IntDistribution(0, len(dim.choices) - 1)
                    else:
                        params[name] = dim.index(v) if self._by_index(dim) else v
                        dists[name] = CategoricalDistribution(self._cat_choices(dim))
                elif isinstance(dim, Integer):
                    params[name] = int(v)
                    dists[name] = IntDistribution(dim.low, dim.high, step=dim.step)
                elif isinstance(dim, Float):
                    params[name] = float(v)
                    dists[name] = FloatDistribution(dim.low, dim.high, step=dim.step) if dim.step is not None \
                        else FloatDistribution(dim.low, dim.high, log=dim.log)
                elif (vals := dim.values()) is not None:  # another kind: as in _suggest_dim
                    params[name] = dim.index(v)
                    dists[name] = IntDistribution(0, len(vals) - 1)
                else:
                    params[name] = float(dim.to_unit(v))
                    dists[name] = FloatDistribution(0.0, 1.0)

        walk(self.space.dimensions, arch.to_dict(), "")
        return params, dists

    # -- ask / tell -------------------------------------------------------------------------------------
    def _tell_optuna(self, number: int, state: str, values: list[float] | None) -> None:
        from optuna.trial import TrialState as OTS

        if state != "complete" and self.infeasible == "penalty" and self.worst is not None:
            values = list(self.worst)
        if values is not None:
            self.study.tell(number, values if len(values) > 1 else values[0])
        else:
            self.study.tell(number, state=OTS.FAIL)

    def _ask(self) -> Architecture:
        for _ in range(self.max_redraws):
            trial = self.study.ask()
            arch = self.space.validate(self._suggest_scope(trial, self.space.dimensions, "", True))
            known = self.known.get(arch.hash)
            if known is None:
                self.pending.setdefault(arch.canonical, []).append(trial.number)
                return arch
            self._tell_optuna(trial.number, *known)
        # the sampler keeps proposing architectures whose results it has: enqueue a random new one
        self.n_fallbacks += 1
        self.fallback("random", f"the Optuna sampler proposed known architectures {self.max_redraws} times in a "
                                "row; a random unseen one was enqueued")
        arch = self.sample_unseen(set(self.known) | {Architecture.from_json(c).hash for c in self.pending})
        self.study.enqueue_trial(self._params_of(arch)[0])
        trial = self.study.ask()
        arch = self.space.validate(self._suggest_scope(trial, self.space.dimensions, "", True))
        self.pending.setdefault(arch.canonical, []).append(trial.number)
        return arch

    def ask(self) -> Architecture:
        self.n_asked += 1
        self.log.append(["ask"])
        with _quiet(lambda m: self.fallback("optuna", f"Optuna fell back: {m}")):
            return self._ask()

    def _tell(self, canon: str, state: str, values: list[float] | None) -> None:
        import optuna

        arch = Architecture.from_json(canon)
        self.known[arch.hash] = (state, values)
        if values is not None:
            self.worst = list(values) if self.worst is None else [
                min(w, v) if o.direction == "max" else max(w, v) for w, v, o in zip(self.worst, values, self.objectives)]
        numbers = self.pending.pop(canon, [])
        for number in numbers:
            self._tell_optuna(number, state, values)
        if not numbers:
            params, dists = self._params_of(arch)
            if state != "complete" and self.infeasible == "penalty" and self.worst is not None:
                values = list(self.worst)
            if values is not None:
                t = optuna.trial.create_trial(params=params, distributions=dists, values=values)
            else:
                t = optuna.trial.create_trial(params=params, distributions=dists,
                                              state=optuna.trial.TrialState.FAIL)
            self.study.add_trial(t)

    def tell(self, arch: Architecture, result: TrialResult) -> None:
        values: list[float] | None = None
        if result.ok:
            raw = [result.metrics.get(o.name) for o in self.objectives]
            if all(isinstance(v, (int, float)) and math.isfinite(v) for v in raw):
                values = [float(v) for v in raw]  # type: ignore[arg-type]
        state = "complete" if values is not None else "fail"
        self.log.append(["tell", arch.canonical, state, values])
        with _quiet(lambda m: self.fallback("optuna", f"Optuna fell back: {m}")):
            self._tell(arch.canonical, state, values)

    # -- persistence (event-log replay) -------------------------------------------------------------
    def _extra_state(self) -> dict[str, Any]:
        return {"seed": self.seed, "sampler": self.sampler_name, "static_space": self.static_space,
                "categorical_as": self.categorical_as, "infeasible": self.infeasible, "log": self.log}

    def _load_extra_state(self, state: Mapping[str, Any]) -> None:
        if (state["sampler"], state["static_space"], state["categorical_as"], state["infeasible"]) != (
                self.sampler_name, self.static_space, self.categorical_as, self.infeasible):
            raise ConfigError(f"optuna: stored state is for sampler {state['sampler']!r} "
                              f"(static_space={state['static_space']}, categorical_as={state['categorical_as']!r}), "
                              f"not {self.sampler_name!r}")
        self.seed = int(state["seed"])  # the sampler's seed: the replay must draw the same numbers
        self._reset()
        with _quiet(lambda m: self.fallback("optuna", f"Optuna fell back: {m}")):
            for ev in state["log"]:
                if ev[0] == "ask":
                    self.n_asked += 1
                    self.log.append(["ask"])
                    self._ask()
                else:
                    _, canon, st, values = ev
                    self.log.append(["tell", canon, st, values])
                    self._tell(canon, st, values)
        self.rng = rng_from_state(state["rng"])


class OptunaTPE(OptunaStrategy):
    """Optuna's TPE sampler (``optuna`` with ``sampler="tpe"``)."""

    name = "optuna_tpe"
    default_sampler = "tpe"


class OptunaCmaEs(OptunaStrategy):
    """Optuna's CMA-ES sampler on the static, index-encoded space (one objective)."""

    name = "optuna_cmaes"
    default_sampler = "cmaes"


class OptunaNSGA2(OptunaStrategy):
    """Optuna's NSGA-II sampler."""

    name = "optuna_nsga2"
    check_options = {"sampler_options": {"population_size": 8}}
    default_sampler = "nsga2"


class OptunaGP(OptunaStrategy):
    """Optuna's Gaussian-process sampler on the static space."""

    name = "optuna_gp"
    check_options = {"sampler_options": {"n_startup_trials": 5}}
    check_steps = 6
    default_sampler = "gp"
