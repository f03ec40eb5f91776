"""The study: the loop that asks a strategy, checks constraints, evaluates and records.

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
  and never trained.
* Every transition is one atomic store write together with the strategy's
  state, so a killed study resumes with nothing completed lost and nothing
  evaluated twice; trials that were running when the driver died are re-run.
* ``budget`` counts evaluated trials (complete or failed); rejected candidates
  and repeated proposals of an already evaluated architecture cost nothing.
* With the in-process executor, the same config and seed give the same sequence of
  architectures and the same metrics. With several workers results arrive in
  timing-dependent order, so the sequence may differ.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from nas_core.constraints import Constraint
from nas_core.errors import ConfigError, StoreError
from nas_core.executors import Evaluator, Executor, Job, JobResult, make_executor
from nas_core.hardware import HardwareTarget
from nas_core.plugins import Registry
from nas_core.space import Architecture, restrict
from nas_core.store import Store, TrialRecord, TrialState
from nas_core.strategies import CORE_STRATEGIES
from nas_core.strategies.base import Objective, Proposal, Strategy, TrialResult

STORE_NAME = "study.db"


def trial_seed(study_seed: int, number: int) -> int:
    """Per-trial seed derived from the study seed and trial number (same in every process)."""
    digest = hashlib.sha256(f"{study_seed}:{number}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


@dataclass(frozen=True)
class StudyConfig:
    """Everything that defines a study; serialisable, and the basis of its identity."""

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

    #: fields that may change between a run and its resume without making it another study
    OPERATIONAL = ("budget", "executor", "workers", "time_limit_s", "max_time_s")

    def __post_init__(self) -> None:
        if isinstance(self.budget, bool) or not isinstance(self.budget, int) or self.budget <= 0:
            raise ConfigError(f"budget must be a positive integer, got {self.budget!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ConfigError(f"seed must be an integer, got {self.seed!r}")
        if self.workers < 1:
            raise ConfigError(f"workers must be >= 1, got {self.workers}")
        if self.time_limit_s is not None and self.time_limit_s <= 0:
            raise ConfigError(f"time_limit_s must be > 0, got {self.time_limit_s}")
        if self.max_time_s is not None and self.max_time_s <= 0:
            raise ConfigError(f"max_time_s must be > 0, got {self.max_time_s}")
        if self.executor not in ("inprocess", "process"):
            raise ConfigError(f"unknown executor '{self.executor}'; use 'inprocess' or 'process'")
        object.__setattr__(self, "objectives", tuple(self.objectives))
        object.__setattr__(self, "constraints", tuple(self.constraints))

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["objectives"] = list(self.objectives)
        d["constraints"] = list(self.constraints)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "StudyConfig":
        if not isinstance(d, Mapping):
            raise ConfigError(f"a study config must be a mapping, got {type(d).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ConfigError(f"unknown config field(s) {sorted(unknown)}; allowed: {sorted(names)}")
        if "space" not in d:
            raise ConfigError("the config needs 'space' (e.g. digits/cnn)")
        return cls(**{k: (tuple(v) if k in ("objectives", "constraints") and isinstance(v, list) else v)
                      for k, v in d.items()})

    def identity(self) -> dict[str, Any]:
        return {k: v for k, v in self.to_dict().items() if k not in self.OPERATIONAL}


@dataclass(frozen=True)
class StudySummary:
    path: Path
    complete: int
    failed: int
    rejected: int
    budget: int
    stopped_early: str | None = None


class Progress:
    """Callbacks for a running study; the CLI shows a bar, tests may collect events."""

    def start(self, total: int, done: int) -> None: ...

    def trial(self, record: TrialRecord, best: str | None) -> None: ...

    def close(self) -> None: ...


class Study:
    """Runs trials of a task with a strategy into a store."""

    def __init__(self, *, task: Any, strategy: Strategy, objectives: Sequence[Objective], store: Store,
                 constraints: Sequence[Constraint] = (), target: HardwareTarget | None = None,
                 executor: Executor | None = None, seed: int = 0, fidelity: Mapping[str, Any] | None = None,
                 time_limit_s: float | None = None, progress: Progress | None = None,
                 max_idle_proposals: int | None = None, max_time_s: float | None = None):
        self.task = task
        self.space = task.space
        self.strategy = strategy
        self.objectives = tuple(objectives)
        self.constraints = tuple(constraints)
        self.store = store
        self.target = target
        self.executor = executor or make_executor("inprocess", Evaluator(task))
        self.seed = int(seed)
        self.fidelity = dict(fidelity or {})
        self.time_limit_s = time_limit_s
        self.progress = progress or Progress()
        self.max_idle_proposals = max_idle_proposals
        self.max_time_s = max_time_s
        validate_metrics(task, target, self.objectives, self.constraints)

    # -- the loop ------------------------------------------------------------------------
    def _best_text(self) -> str | None:
        obj = self.objectives[0]
        best = None
        for t in self.store.trials([TrialState.COMPLETE]):
            v = t.all_metrics().get(obj.name)
            if v is not None and (best is None or obj.score({obj.name: v}) > obj.score({obj.name: best})):
                best = v
        return None if best is None else f"{obj.name}={best:.4g}"

    def _result_of(self, record: TrialRecord) -> TrialResult:
        return TrialResult(record.state, record.all_metrics(), record.number, dict(record.fidelity))

    def _submit(self, number: int, arch: Architecture, fidelity: Mapping[str, Any]) -> None:
        artifacts = self.store.path.parent / "trials" / f"{number:05d}"
        self.executor.submit(Job(number, arch.to_json(), trial_seed(self.seed, number), dict(fidelity),
                                 self.time_limit_s, str(artifacts)))

    def optimize(self, budget: int) -> StudySummary:
        if isinstance(budget, bool) or not isinstance(budget, int) or budget <= 0:
            raise ConfigError(f"budget must be a positive integer, got {budget!r}")
        state = self.store.strategy_state()
        if state is not None:
            self.strategy.load_state_dict(state)
        pending: dict[int, tuple[Architecture, dict[str, Any]]] = {}
        for t in self.store.trials([TrialState.RUNNING]):  # in flight when the driver died: run again
            pending[t.number] = (t.arch, dict(t.fidelity))
            self._submit(t.number, t.arch, t.fidelity)
        done = self.store.count(TrialState.COMPLETE, TrialState.FAILED)
        self.progress.start(budget, done)
        idle = 0
        max_idle = self.max_idle_proposals or max(1000, 50 * budget)
        stopped: str | None = None
        t_start = time.monotonic()
        try:
            while True:
                if stopped is None and self.max_time_s is not None and time.monotonic() - t_start > self.max_time_s:
                    stopped = (f"the wall-time budget of {self.max_time_s:g} s was reached after {done} evaluated "
                               f"trials; 'nas resume' continues the study")
                while stopped is None and len(pending) < self.executor.capacity and done + len(pending) < budget:
                    proposal = self.strategy.ask()
                    if isinstance(proposal, Proposal):
                        arch, fidelity = proposal.arch, {**self.fidelity, **dict(proposal.fidelity)}
                    else:
                        arch, fidelity = proposal, dict(self.fidelity)
                    errs = self.space.errors(arch)
                    if errs:
                        raise RuntimeError(f"strategy '{self.strategy.name}' proposed an architecture outside the "
                                           f"space: {errs[0]}")
                    if (arch, fidelity) in pending.values():
                        idle += 1
                    else:
                        # the same architecture at the same fidelity is never evaluated twice; a rejection
                        # (on figures known before training) holds at every fidelity
                        prior = [t for t in self.store.find(arch.hash) if t.state == TrialState.REJECTED
                                 or (t.state != TrialState.RUNNING and dict(t.fidelity) == fidelity)]
                        if prior:
                            idle += 1
                            self.strategy.tell(arch, self._result_of(prior[-1]))
                            self.store.save_strategy_state(self.strategy.state_dict())
                        else:
                            number, evaluated = self._start(arch, fidelity)
                            if number is not None:
                                pending[number] = (arch, fidelity)
                                idle = 0
                            elif evaluated:
                                done += 1
                                idle = 0
                            else:
                                idle += 1
                    if idle >= max_idle:
                        stopped = (f"the strategy proposed {idle} candidates in a row that were rejected by the "
                                   "constraints or already evaluated; loosen the constraints or enlarge the space")
                if not pending:
                    break
                for res in self.executor.wait():
                    self._finish(res, pending.pop(res.number))
                    done += 1
        finally:
            self.progress.close()
        return StudySummary(self.store.path, self.store.count(TrialState.COMPLETE), self.store.count(TrialState.FAILED),
                            self.store.count(TrialState.REJECTED), budget, stopped)

    def _start(self, arch: Architecture, fidelity: Mapping[str, Any]) -> tuple[int | None, bool]:
        """Check a new proposal; returns (number of a submitted trial, whether it consumed budget)."""
        number_hint = self.store.count() + 1
        try:
            model = self.space.build(arch)
            static = {k: float(v) for k, v in self.task.static_metrics(arch, model, self.target).items()}
        except Exception as exc:  # noqa: BLE001 - a candidate that cannot be built is a failed trial
            error = f"building the candidate failed: {type(exc).__name__}: {exc}"
            self.strategy.tell(arch, TrialResult(TrialState.FAILED, {}, number_hint, dict(fidelity)))
            number = self.store.add_trial(arch, state=TrialState.FAILED, seed=trial_seed(self.seed, number_hint),
                                          fidelity=fidelity, error=error, strategy_state=self.strategy.state_dict())
            self.progress.trial(self.store.trial(number), self._best_text())
            return None, True
        reasons = [r for r in (c.violation(static) for c in self.constraints) if r]
        reasons += list(self.task.rejections(arch, static))
        if reasons:
            self.strategy.tell(arch, TrialResult(TrialState.REJECTED, static, number_hint, dict(fidelity)))
            self.store.add_trial(arch, state=TrialState.REJECTED, seed=trial_seed(self.seed, number_hint),
                                 fidelity=fidelity, costs=static, reason="; ".join(reasons),
                                 strategy_state=self.strategy.state_dict())
            return None, False
        number = self.store.add_trial(arch, state=TrialState.RUNNING, seed=trial_seed(self.seed, number_hint),
                                      fidelity=fidelity, costs=static, strategy_state=self.strategy.state_dict())
        assert number == number_hint
        self._submit(number, arch, fidelity)
        return number, False

    def _finish(self, res: JobResult, proposal: tuple[Architecture, dict[str, Any]]) -> None:
        arch, fidelity = proposal
        state = TrialState.COMPLETE if res.ok else TrialState.FAILED
        record = self.store.trial(res.number)
        self.strategy.tell(arch, TrialResult(state, {**record.costs, **res.metrics}, res.number, fidelity))
        self.store.finish_trial(res.number, state=state, metrics=res.metrics, error=res.error,
                                duration_s=res.duration_s, strategy_state=self.strategy.state_dict())
        self.progress.trial(self.store.trial(res.number), self._best_text())


def validate_metrics(task: Any, target: HardwareTarget | None, objectives: Sequence[Objective],
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

def _strategy_class(name: str, registry: Registry) -> type:
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
    task: Any
    target: HardwareTarget | None
    target_key: str | None
    strategy: Strategy
    objectives: list[Objective]
    constraints: list[Constraint]


def build(config: StudyConfig, registry: Registry | None = None) -> _Built:
    registry = registry or Registry()
    space_key, entry = registry.space(config.space)
    space = entry.space()
    if config.restrict is not None:
        space = restrict(space, config.restrict)
    try:
        task = entry.task(space, **dict(config.task_options))
    except TypeError as exc:
        raise ConfigError(f"space '{space_key}': bad task option ({exc})") from None
    target_key, target = (None, None)
    if config.target:
        target_key, target = registry.target(config.target)
    objectives = [Objective.parse(o) for o in config.objectives] or task.default_objectives()
    constraints = [Constraint.parse(c) for c in config.constraints] + list(task.default_constraints(target))
    cls = _strategy_class(config.strategy, registry)
    try:
        strategy = cls(space, objectives, seed=config.seed, **dict(config.strategy_options))
    except TypeError as exc:
        raise ConfigError(f"strategy '{config.strategy}': bad option ({exc})") from None
    validate_metrics(task, target, objectives, constraints)
    task.prepare()
    return _Built(config, space_key, task, target, target_key, strategy, objectives, constraints)


def study_id(config: StudyConfig, space_json: str) -> str:
    ident = {**config.identity(), "space_definition": json.loads(space_json)}
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]


def _open_and_run(b: _Built, out_dir: Path, progress: Progress | None, budget: int | None) -> StudySummary:
    config = b.config
    sid = study_id(config, b.task.space.to_json())
    stored = {**config.to_dict(), "space_key": b.space_key, "target_key": b.target_key,
              "objectives_resolved": [str(o) for o in b.objectives],
              "constraints_resolved": [str(c) for c in b.constraints],
              "space_definition": json.loads(b.task.space.to_json())}
    store = Store.create(out_dir / STORE_NAME, study_id=sid, study_name=config.name or b.space_key, config=stored)
    try:
        if store.config.get("budget") != config.budget:
            store.set_meta("config", json.dumps({**store.config, "budget": config.budget}, sort_keys=True))
        executor = make_executor(config.executor, Evaluator(b.task), config.workers)
        with executor:
            study = Study(task=b.task, strategy=b.strategy, objectives=b.objectives, store=store,
                          constraints=b.constraints, target=b.target, executor=executor, seed=config.seed,
                          fidelity=config.fidelity, time_limit_s=config.time_limit_s, progress=progress,
                          max_time_s=config.max_time_s)
            return study.optimize(budget or config.budget)
    finally:
        store.close()


def run_study(config: StudyConfig, out_dir: str | Path, *, registry: Registry | None = None,
              progress: Progress | None = None) -> StudySummary:
    """Run (or continue, if ``out_dir`` holds the same study) a study into ``out_dir/study.db``."""
    return _open_and_run(build(config, registry), Path(out_dir), progress, None)


def load_config(out_dir: str | Path) -> StudyConfig:
    path = Path(out_dir) / STORE_NAME
    if not Path(out_dir).is_dir():
        raise StoreError(f"no study directory at {out_dir}")
    store = Store.open(path)
    try:
        stored = store.config
    finally:
        store.close()
    fields = {f.name for f in dataclasses.fields(StudyConfig)}
    return StudyConfig.from_dict({k: v for k, v in stored.items() if k in fields})


def resume_study(out_dir: str | Path, *, budget: int | None = None, registry: Registry | None = None,
                 progress: Progress | None = None, **operational: Any) -> StudySummary:
    """Continue a killed (or finished) study; ``budget`` may raise its total budget."""
    config = load_config(out_dir)
    bad = set(operational) - set(StudyConfig.OPERATIONAL)
    if bad:
        raise ConfigError(f"only {', '.join(StudyConfig.OPERATIONAL)} may change on resume, not {sorted(bad)}")
    changes = {**operational, **({"budget": budget} if budget is not None else {})}
    config = dataclasses.replace(config, **changes)
    b = build(config, registry)
    store = Store.open(Path(out_dir) / STORE_NAME)
    try:
        if store.study_id != study_id(config, b.task.space.to_json()):
            raise StoreError(f"study store in {out_dir} does not match the installed plugin's space definition or "
                             "the config it was created with; it belongs to a different study")
    finally:
        store.close()
    return _open_and_run(b, Path(out_dir), progress, None)
