"""The study: the loop that asks a strategy, checks constraints, evaluates and records.

This module holds the config (:class:`StudyConfig`, validation only), the building of
a study from it (:func:`build`: space, task, estimator, strategy and target from the
registries), the loop (:meth:`Study.optimize`: ask, check, run, tell) and the entry
points that drive one run under the study's lock (:func:`run_study`,
:func:`resume_study`; each opens the store once). What happens to one trial --
constraints, store rows, staging of its files, retries -- is
:class:`nas_core.runner.TrialRunner`'s.

Python API::

    from nas_core.study import StudyConfig, run_study
    cfg = StudyConfig(space="digits/cnn", strategy="evolution", budget=20, seed=0,
                      objectives=("val_accuracy:max", "macs:min"), constraints=("params<=20000",),
                      target="digits/cortex-m4")
    summary = run_study(cfg, "runs/digits")          # creates runs/digits/study.db
    summary = resume_study("runs/digits")            # continues it after a kill

Guarantees:

* Hard constraints are checked on metrics known before training (hardware costs
  and the task's domain figures); a rejected candidate is stored with its reason
  and never trained. A candidate is built once in the driver for those metrics
  (under its trial's seed); the in-process executor trains that network, process
  and Ray workers build their own from the architecture.
* Every transition is one atomic store write together with the strategy's
  state, so a killed study resumes with nothing completed lost and nothing
  evaluated twice; trials that were running when the driver died are re-run.
* ``budget`` counts evaluated trials (complete or failed); rejected candidates
  and repeated proposals of an already evaluated architecture cost nothing.
* Infrastructure failures -- a worker process that died, a trial killed at its
  time limit -- are retried up to ``max_retries`` times (kinds in ``retry_on``)
  with the same trial number and seed; ordinary failures (an exception, a NaN
  loss) are final. Every attempt is counted in the trial's ``attempts``.
* Files a trial saves (``model.pt``) are written to a staging directory and moved
  to ``trials/NNNNN`` by the driver when the trial completes, so a retried,
  killed or orphaned attempt never leaves half-written weights behind.
* The store records the study's provenance (code and package versions, data
  checksums, seed, config, hardware target) when it is created, and each run.
* With the in-process executor, the same config and seed give the same sequence of
  architectures and the same metrics. With several workers results arrive in
  timing-dependent order, so the sequence may differ.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from nas_core.constraints import Constraint
from nas_core.errors import ConfigError, StoreError
from nas_core.executor_factory import make_executor
from nas_core.executors import EXECUTORS, FAILURE_KINDS, Evaluator, Executor
from nas_core.hardware import HardwareTarget
from nas_core.lock import StudyLock
from nas_core.plugins import Registry
from nas_core.runner import Candidate, Progress, TrialRunner, trial_seed
from nas_core.safety import confined
from nas_core.space import restrict
from nas_core.store import Store, TrialState
from nas_core.strategies import CORE_STRATEGIES
from nas_core.strategies.base import Objective, Proposal, Strategy

if TYPE_CHECKING:
    from nas_core.task import Task

__all__ = ["STORE_NAME", "Progress", "Study", "StudyConfig", "StudySummary", "build", "check_stored_code",
           "config_from_stored", "load_config", "resume_study", "run_study", "study_id", "trial_seed",
           "validate_metrics"]

STORE_NAME = "study.db"


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_json(v: Any) -> bool:
    try:
        json.dumps(v, allow_nan=True)
    except (TypeError, ValueError, RecursionError):
        return False
    return True


def _check_options(field_name: str, value: Any) -> None:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{field_name} must be a mapping of option names to values, got {value!r}")
    for k, v in value.items():
        if not isinstance(k, str) or not k:
            raise ConfigError(f"{field_name}: option names must be non-empty strings, got {k!r}")
        if not _is_json(v):
            raise ConfigError(f"{field_name}: value of '{k}' must be a JSON value (number, string, list, mapping), "
                              f"got {v!r}")


def _string_list(field_name: str, value: Any, example: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = (value,)
    if not isinstance(value, (list, tuple)) or not all(isinstance(x, str) for x in value):
        raise ConfigError(f"{field_name} must be a list of strings such as {example!r}, got {value!r}")
    return tuple(value)


def _positive_seconds(field_name: str, value: Any) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{field_name} must be a finite number of seconds > 0, got {value!r}")


#: most workers a study may ask for (a guard against typos such as --workers 20000)
MAX_WORKERS = 1024
#: most retries of one trial
MAX_RETRIES = 100


@dataclass(frozen=True)
class StudyConfig:
    """Everything that defines a study; serialisable, and the basis of its identity.

    Every field is checked on construction: a bad value raises a one-line
    :class:`~nas_core.errors.ConfigError` naming the field and the value.
    """

    space: str
    budget: int = 20
    strategy: str = "evolution"
    strategy_options: Mapping[str, Any] = field(default_factory=dict)
    objectives: tuple[str, ...] = ()
    constraints: tuple[str, ...] = ()
    seed: int = 0
    target: str | None = None
    task_options: Mapping[str, Any] = field(default_factory=dict)
    fidelity: Mapping[str, Any] = field(default_factory=dict)
    executor: str = "inprocess"
    workers: int = 1
    time_limit_s: float | None = None
    #: wall-time budget of this run in seconds: no new trial starts after it (in-flight ones finish)
    max_time_s: float | None = None
    name: str = ""
    #: optional space definition narrowing the plugin's space (see :func:`nas_core.space.restrict`)
    restrict: Mapping[str, Any] | None = None
    #: how often a trial whose failure is of a kind in ``retry_on`` runs again before it is recorded as failed
    max_retries: int = 1
    #: failure kinds that are retried: "died" (its worker process died), "timeout", "error" (raised / NaN)
    retry_on: tuple[str, ...] = ("died", "timeout")
    #: address of an existing Ray cluster (executor "ray"); None starts a local Ray
    ray_address: str | None = None
    #: how candidates are scored: "train" (the task's own estimator) or "zero-cost[:proxy,proxy...]"
    #: (zero-cost proxies instead of training, metrics ``zc_<proxy>``; see :mod:`nas_core.estimators.zero_cost`)
    estimator: str = "train"

    #: fields that may change between a run and its resume without making it another study
    OPERATIONAL = ("budget", "executor", "workers", "time_limit_s", "max_time_s", "max_retries", "retry_on",
                   "ray_address")

    def __post_init__(self) -> None:
        if not isinstance(self.space, str) or not self.space.strip():
            raise ConfigError(f"space must be a 'plugin/space' name such as 'digits/cnn', got {self.space!r}")
        if not _is_int(self.budget) or self.budget <= 0:
            raise ConfigError(f"budget must be a positive integer, got {self.budget!r}")
        if not isinstance(self.strategy, str) or not self.strategy.strip():
            raise ConfigError(f"strategy must be a strategy name such as 'evolution', got {self.strategy!r}")
        if not _is_int(self.seed) or not 0 <= self.seed < 2 ** 64:
            raise ConfigError(f"seed must be an integer in 0..2**64-1, got {self.seed!r}")
        if self.target is not None and (not isinstance(self.target, str) or not self.target.strip()):
            raise ConfigError(f"target must be a target name such as 'digits/cortex-m4' (or absent), got {self.target!r}")
        for name in ("strategy_options", "task_options", "fidelity"):
            _check_options(name, getattr(self, name))
        if self.restrict is not None:
            if not isinstance(self.restrict, Mapping):
                raise ConfigError(f"restrict must be a space definition mapping (or absent), got {self.restrict!r}")
            if not _is_json(dict(self.restrict)):
                raise ConfigError(f"restrict must be a JSON space definition, got {self.restrict!r}")
        if not isinstance(self.executor, str) or self.executor not in EXECUTORS:
            raise ConfigError(f"unknown executor {self.executor!r}; use one of {', '.join(EXECUTORS)}")
        if not _is_int(self.workers) or not 1 <= self.workers <= MAX_WORKERS:
            raise ConfigError(f"workers must be an integer in 1..{MAX_WORKERS}, got {self.workers!r}")
        _positive_seconds("time_limit_s", self.time_limit_s)
        _positive_seconds("max_time_s", self.max_time_s)
        if not isinstance(self.name, str):
            raise ConfigError(f"name must be a string, got {self.name!r}")
        if not _is_int(self.max_retries) or not 0 <= self.max_retries <= MAX_RETRIES:
            raise ConfigError(f"max_retries must be an integer in 0..{MAX_RETRIES}, got {self.max_retries!r}")
        retry_on = _string_list("retry_on", self.retry_on, "died")
        bad = [k for k in retry_on if k not in FAILURE_KINDS]
        if bad:
            raise ConfigError(f"retry_on: unknown failure kind {bad[0]!r}; use any of {', '.join(FAILURE_KINDS)}")
        if self.ray_address is not None:
            if not isinstance(self.ray_address, str) or not self.ray_address.strip():
                raise ConfigError(f"ray_address must be an address such as 'auto' or 'HOST:6379', got "
                                  f"{self.ray_address!r}")
            if self.executor != "ray":
                raise ConfigError(f"ray_address {self.ray_address!r} needs executor 'ray', not {self.executor!r}")
        _check_estimator(self.estimator)
        object.__setattr__(self, "objectives", _string_list("objectives", self.objectives, "val_accuracy:max"))
        object.__setattr__(self, "constraints", _string_list("constraints", self.constraints, "params<=20000"))
        object.__setattr__(self, "retry_on", tuple(dict.fromkeys(retry_on)))

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for key in ("objectives", "constraints", "retry_on"):
            d[key] = list(getattr(self, key))
        for key in ("strategy_options", "task_options", "fidelity"):
            d[key] = dict(getattr(self, key))
        if self.restrict is not None:
            d["restrict"] = dict(self.restrict)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "StudyConfig":
        if not isinstance(d, Mapping):
            raise ConfigError(f"a study config must be a mapping, got {type(d).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = [k for k in d if k not in names]
        if unknown:
            raise ConfigError(f"unknown config field(s) {sorted(map(repr, unknown))}; allowed: {sorted(names)}")
        if "space" not in d:
            raise ConfigError("the config needs 'space' (e.g. digits/cnn)")
        kwargs: dict[str, Any] = {k: (tuple(v) if k in ("objectives", "constraints", "retry_on") and isinstance(v, list)
                                      else v) for k, v in d.items()}
        return cls(**kwargs)

    def identity(self) -> dict[str, Any]:
        ident = {k: v for k, v in self.to_dict().items() if k not in self.OPERATIONAL}
        if ident.get("estimator") == "train":  # the default: studies made before the field existed keep their id
            del ident["estimator"]
        return ident


def _check_estimator(value: Any) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"estimator must be 'train' or 'zero-cost[:proxy,...]', got {value!r}")
    if value == "train":
        return
    kind, _, names = value.partition(":")
    if kind != "zero-cost":
        raise ConfigError(f"unknown estimator {value!r}; use 'train' or 'zero-cost[:proxy,...]'")
    from nas_core.estimators.zero_cost import parse_proxies

    parse_proxies(names)


@dataclass(frozen=True)
class StudySummary:
    path: Path
    complete: int
    failed: int
    rejected: int
    budget: int
    stopped_early: str | None = None


class Study:
    """Runs trials of a task with a strategy into a store: the loop of ask, check, run and tell.

    Everything that happens to one trial (constraints, store rows, staging of its files,
    retries) is the :class:`~nas_core.runner.TrialRunner`'s; this class decides when to ask
    and when to stop.
    """

    def __init__(self, *, task: Task, strategy: Strategy, objectives: Sequence[Objective], store: Store,
                 constraints: Sequence[Constraint] = (), target: HardwareTarget | None = None,
                 executor: Executor | None = None, seed: int = 0, fidelity: Mapping[str, Any] | None = None,
                 time_limit_s: float | None = None, progress: Progress | None = None,
                 max_idle_proposals: int | None = None, max_time_s: float | None = None,
                 max_retries: int = 1, retry_on: Sequence[str] = ("died", "timeout")):
        objectives = tuple(objectives)
        if not objectives:
            raise ConfigError("a study needs at least one objective, such as Objective('val_accuracy', 'max')")
        validate_metrics(task, target, objectives, constraints)
        self.space = task.space
        self.strategy = strategy
        self.store = store
        self.executor = executor or make_executor("inprocess", Evaluator(task))
        self.fidelity = dict(fidelity or {})
        self.progress = progress or Progress()
        self.max_idle_proposals = max_idle_proposals
        self.max_time_s = max_time_s
        self.runner = TrialRunner(task=task, strategy=strategy, store=store, executor=self.executor,
                                  objective=objectives[0], constraints=constraints, target=target, seed=seed,
                                  time_limit_s=time_limit_s, progress=self.progress, max_retries=max_retries,
                                  retry_on=retry_on)

    def _ask(self) -> Candidate:
        """The strategy's next proposal with its fidelity (the study's, overridden by the proposal's)."""
        proposal = self.strategy.ask()
        if isinstance(proposal, Proposal):
            arch, fidelity = proposal.arch, {**self.fidelity, **dict(proposal.fidelity)}
        else:
            arch, fidelity = proposal, dict(self.fidelity)
        errs = self.space.errors(arch)
        if errs:
            raise RuntimeError(f"strategy '{self.strategy.name}' proposed an architecture outside the space: "
                               f"{errs[0]}")
        return arch, fidelity

    def optimize(self, budget: int) -> StudySummary:
        """Run until ``budget`` trials are evaluated (complete or failed), or a stop rule ends the run."""
        if isinstance(budget, bool) or not isinstance(budget, int) or budget <= 0:
            raise ConfigError(f"budget must be a positive integer, got {budget!r}")
        state = self.store.strategy_state()
        if state is not None:
            self.strategy.load_state_dict(state)
        runner = self.runner
        pending = runner.resume()
        done = self.store.count(TrialState.COMPLETE, TrialState.FAILED)
        self.progress.start(budget, done)
        idle = 0  # proposals in a row that cost nothing (rejected or repeated)
        max_idle = self.max_idle_proposals or max(1000, 50 * budget)
        stopped: str | None = None
        t_start = time.monotonic()
        try:
            while True:
                if stopped is None and self.max_time_s is not None and time.monotonic() - t_start > self.max_time_s:
                    stopped = (f"the wall-time budget of {self.max_time_s:g} s was reached after {done} evaluated "
                               f"trials; 'nas resume' continues the study")
                while stopped is None and len(pending) < self.executor.capacity and done + len(pending) < budget:
                    arch, fidelity = self._ask()
                    if (arch, fidelity) in pending.values():
                        idle += 1
                    elif (known := runner.known(arch, fidelity)) is not None:
                        idle += 1
                        runner.tell_known(arch, known)
                    else:
                        verdict = runner.check(arch)
                        number = runner.start(arch, fidelity, verdict)
                        if number is not None:
                            pending[number] = (arch, fidelity)
                        if verdict.error is not None:
                            done += 1  # a candidate that cannot be built is a failed trial: it costs budget
                        idle = idle + 1 if verdict.reasons else 0
                    if idle >= max_idle:
                        stopped = (f"the strategy proposed {idle} candidates in a row that were rejected by the "
                                   "constraints or already evaluated; loosen the constraints or enlarge the space")
                if not pending:
                    break
                for res in self.executor.wait():
                    if not runner.retry(res, pending[res.number]):
                        runner.finish(res, pending.pop(res.number))
                        done += 1
        finally:
            self.progress.close()
        return StudySummary(self.store.path, self.store.count(TrialState.COMPLETE), self.store.count(TrialState.FAILED),
                            self.store.count(TrialState.REJECTED), budget, stopped)


def validate_metrics(task: Task, target: HardwareTarget | None, objectives: Sequence[Objective],
                     constraints: Sequence[Constraint]) -> None:
    """Objectives must name known metrics; constraints only metrics known before training."""
    static = set(task.static_metric_names(target))
    measured = set(task.estimator().metric_names)
    for c in constraints:
        if c.metric not in static:
            raise ConfigError(f"constraint '{c}' is on unknown metric '{c.metric}'; constraints are checked before "
                              f"training, on: {', '.join(sorted(static))}")
    for o in objectives:
        if o.name not in static | measured:
            raise ConfigError(f"objective '{o}' names unknown metric '{o.name}'; known: "
                              f"{', '.join(sorted(static | measured))}")


# -- building a study from a config ------------------------------------------------------------

def _strategy_class(name: str, registry: Registry) -> Callable[..., Any]:
    if name in CORE_STRATEGIES:
        return CORE_STRATEGIES[name]
    extra = registry.plugin_strategies()
    if name in extra:
        return extra[name]
    raise ConfigError(f"unknown strategy '{name}'; available: {', '.join(sorted(CORE_STRATEGIES) + sorted(extra))}")


@dataclass
class _Built:
    config: StudyConfig
    space_key: str
    task: Task
    target: HardwareTarget | None
    target_key: str | None
    strategy: Strategy
    objectives: list[Objective]
    constraints: list[Constraint]
    plugin: Any = None


def _plugin_call(what: str, fn: Callable[[], Any]) -> Any:
    """Run plugin code on user-given options; a TypeError/ValueError it raises is the options' fault."""
    try:
        return fn()
    except ConfigError:
        raise
    except (TypeError, ValueError, KeyError) as exc:
        first = (str(exc).strip().splitlines() or [""])[0]
        raise ConfigError(f"{what} ({type(exc).__name__}: {first})") from None


def build(config: StudyConfig, registry: Registry | None = None) -> _Built:
    registry = registry or Registry()
    space_key, entry = registry.space(config.space)
    space = entry.space()
    if config.restrict is not None:
        space = restrict(space, config.restrict)
    opts = dict(config.task_options)
    task = _plugin_call(f"space '{space_key}': bad task option in {opts!r}", lambda: entry.task(space, **opts))
    if config.estimator != "train":
        from nas_core.estimators.zero_cost import ZeroCostTask, parse_proxies

        task = ZeroCostTask(task, parse_proxies(config.estimator.partition(":")[2]))
    estimator = _plugin_call(f"space '{space_key}': bad task option in {opts!r}", task.estimator)
    errors = estimator.fidelity_errors(dict(config.fidelity))
    if errors:
        raise ConfigError(f"space '{space_key}': {errors[0]}")
    target_key, target = (None, None)
    if config.target:
        target_key, target = registry.target(config.target)
        missing = [k for k in getattr(task, "target_keys", {}) if k not in (target.extra or {})]
        if missing:
            raise ConfigError(f"target '{target_key}' lacks " + ", ".join(
                f"extra.{k} ({task.target_keys[k]})" for k in missing) + f" that space '{space_key}' needs; add "
                "it to the [extra] table of the target file, or choose one of that plugin's targets")
    objectives = [Objective.parse(o) for o in config.objectives] or task.default_objectives()
    constraints = [Constraint.parse(c) for c in config.constraints] + list(task.default_constraints(target))
    cls = _strategy_class(config.strategy, registry)
    sopts = dict(config.strategy_options)
    strategy = _plugin_call(f"strategy '{config.strategy}': bad option in {sopts!r}",
                            lambda: cls(space, objectives, seed=config.seed, **sopts))
    key, budgets = getattr(strategy, "fidelity_key", None), getattr(strategy, "budgets", None)
    if isinstance(key, str) and budgets:  # multi-fidelity strategies: every rung must be a usable fidelity
        for b in budgets:
            errors = estimator.fidelity_errors({**dict(config.fidelity), key: b})
            if errors:
                raise ConfigError(f"strategy '{config.strategy}' (fidelity_key={key!r}, budget {b!r}): {errors[0]}")
    validate_metrics(task, target, objectives, constraints)
    task.prepare()
    plugin = registry.plugins().get(space_key.split("/", 1)[0])
    return _Built(config, space_key, task, target, target_key, strategy, objectives, constraints, plugin)


def study_id(config: StudyConfig, space_json: str) -> str:
    ident = {**config.identity(), "space_definition": json.loads(space_json)}
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]


def _run(b: _Built, out_dir: Path, progress: Progress | None, store: Store | None = None) -> StudySummary:
    """Drive the study ``b`` into ``out_dir/study.db`` under the driver lock; the store is opened once per run.

    ``store`` is the study's store when the caller already has it open (``resume_study``, which checked its
    identity; it stays the caller's to close). Otherwise an existing store is opened, and refused if it
    belongs to another study, before any worker starts; a new one is created only once the executor is up,
    so a Ray that cannot be reached leaves no store behind.
    """
    from nas_core import provenance

    config = b.config
    path = out_dir / STORE_NAME
    stored = {**config.to_dict(), "space_key": b.space_key, "target_key": b.target_key,
              "objectives_resolved": [str(o) for o in b.objectives],
              "constraints_resolved": [str(c) for c in b.constraints],
              "space_definition": json.loads(b.task.space.to_json())}
    sid, name = study_id(config, b.task.space.to_json()), config.name or b.space_key
    # one driver per study; a second one is refused before it writes anything
    with StudyLock(out_dir), contextlib.ExitStack() as closing:
        confined(out_dir, "trials", ".staging")  # a trials/ leading out of the directory: refused before any write
        if store is None and path.exists():
            store = closing.enter_context(Store.create(path, study_id=sid, study_name=name, config=stored))
        record = None if store is not None else provenance.collect(config=stored, seed=config.seed, task=b.task,
                                                                      target=b.target, plugin=b.plugin)
        executor = closing.enter_context(make_executor(config.executor, Evaluator(b.task), config.workers,
                                                       address=config.ray_address, time_limit_s=config.time_limit_s))
        if store is None:
            store = closing.enter_context(Store.create(path, study_id=sid, study_name=name, config=stored,
                                                       provenance=record))
        if store.config.get("budget") != config.budget:
            store.set_meta("config", json.dumps({**store.config, "budget": config.budget}, sort_keys=True))
        store.add_run(provenance.run_record({k: config.to_dict()[k] for k in StudyConfig.OPERATIONAL}))
        study = Study(task=b.task, strategy=b.strategy, objectives=b.objectives, store=store,
                      constraints=b.constraints, target=b.target, executor=executor, seed=config.seed,
                      fidelity=config.fidelity, time_limit_s=config.time_limit_s, progress=progress,
                      max_time_s=config.max_time_s, max_retries=config.max_retries, retry_on=config.retry_on)
        return study.optimize(config.budget)


def run_study(config: StudyConfig, out_dir: str | Path, *, registry: Registry | None = None,
              progress: Progress | None = None) -> StudySummary:
    """Run (or continue, if ``out_dir`` holds the same study) a study into ``out_dir/study.db``."""
    return _run(build(config, registry), Path(out_dir), progress)


def stored_code_references(config: StudyConfig, registry: Registry) -> dict[str, str]:
    """Task options of a stored config that name code (``"module:attribute"`` in the task's ``code_options``)."""
    _, entry = registry.space(config.space)
    keys = getattr(entry.task, "code_options", ())
    return {k: v for k, v in dict(config.task_options).items() if k in keys and isinstance(v, str) and ":" in v}


def check_stored_code(config: StudyConfig, registry: Registry, given: Mapping[str, Any] | None, where: str) -> None:
    """Refuse a stored study that names code unless the user gave the same option again (before any import).

    A study directory may come from elsewhere; its store names data, never code that ``nas`` would import on
    its own. ``given`` are the task options the user re-stated (``--option problem=my_module:my_problem``).
    """
    given = dict(given or {})
    refs = stored_code_references(config, registry)
    extra = sorted(set(given) - set(refs))
    if extra:
        raise ConfigError(f"{where}: --option only re-states a stored 'module:attribute' task option; the study "
                          f"has none named {', '.join(extra)}" + (f" (it names {', '.join(refs)})" if refs else ""))
    for key, value in refs.items():
        if given.get(key) != value:
            raise ConfigError(f"{where}: the stored study names code in task option {key}={value!r}; nas never "
                              f"imports code a store names. If you trust it, give it yourself: --option "
                              f"{key}={value}")


def _open_store(out_dir: str | Path) -> Store:
    if not Path(out_dir).is_dir():
        raise StoreError(f"no study directory at {out_dir}")
    return Store.open(Path(out_dir) / STORE_NAME)


def load_config(out_dir: str | Path) -> StudyConfig:
    """The config of the study stored in ``out_dir``."""
    with _open_store(out_dir) as store:
        return config_from_stored(store.config)


def config_from_stored(stored: Mapping[str, Any]) -> StudyConfig:
    """The StudyConfig of a store's ``config`` record (which also holds resolved fields the config has not)."""
    fields = {f.name for f in dataclasses.fields(StudyConfig)}
    return StudyConfig.from_dict({k: v for k, v in stored.items() if k in fields})


def resume_study(out_dir: str | Path, *, budget: int | None = None, registry: Registry | None = None,
                 progress: Progress | None = None, code_options: Mapping[str, Any] | None = None,
                 **operational: Any) -> StudySummary:
    """Continue a killed (or finished) study; ``budget`` may raise its total budget.

    ``code_options`` re-state the stored task options that name code (see :func:`check_stored_code`); a
    stored Ray address is used only when ``ray_address`` is given again.
    """
    with _open_store(out_dir) as store:  # the one store of this run: read here, then driven by _run
        config = config_from_stored(store.config)
        bad = set(operational) - set(StudyConfig.OPERATIONAL)
        if bad:
            raise ConfigError(f"only {', '.join(StudyConfig.OPERATIONAL)} may change on resume, not {sorted(bad)}")
        check_stored_code(config, registry or Registry(), code_options, f"nas resume {out_dir}")
        changes = {**operational, **({"budget": budget} if budget is not None else {})}
        if "ray_address" not in changes:
            changes["ray_address"] = None  # a store never chooses the cluster a resume connects to
        config = dataclasses.replace(config, **changes)
        b = build(config, registry)  # the study id is checked before any worker starts or anything is written
        if store.study_id != study_id(config, b.task.space.to_json()):
            raise StoreError(f"study store in {out_dir} does not match the installed plugin's space definition or "
                             "the config it was created with; it belongs to a different study")
        return _run(b, Path(out_dir), progress, store)
