"""What happens to one trial between the study's ask and its tell.

:class:`~nas_core.study.Study` runs the loop (ask, check, run, tell); a :class:`TrialRunner`
does the per-trial work and keeps the guarantees listed in :mod:`nas_core.study`:

* :meth:`TrialRunner.check` builds the candidate once, in the driver, under its trial's
  seed, measures its static metrics and applies the constraints and the task's
  rejections (nothing is written).
* :meth:`TrialRunner.start` stores the verdict: a rejected candidate with its reasons, a
  candidate that could not be built as a failed trial, any other as a running trial,
  which it submits to the executor. The in-process executor trains the network
  :meth:`~TrialRunner.check` built; process and Ray workers build it again from the
  architecture (the driver never ships a model).
* Each attempt saves its files into its own staging directory; :meth:`TrialRunner.finish`
  moves them to ``trials/NNNNN`` when the trial completes (removes them otherwise), then
  tells the strategy and stores the result with the strategy's state in one write. The
  training logs an attempt wrote (its ``logs/`` folder) move to ``logs/trial-NNNNN`` either
  way, so a failed trial's logs remain (the last attempt's, when it was retried).
* :meth:`TrialRunner.retry` runs an infrastructure failure (a kind in ``retry_on``) again,
  up to ``max_retries`` times, under the same number and seed; the final record keeps
  the earlier attempt's error.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from nas_core.constraints import Constraint
from nas_core.errors import ConfigError
from nas_core.executors import Executor, Job, JobResult, Prebuilt, seeded_build
from nas_core.hardware import HardwareTarget
from nas_core.safety import confined
from nas_core.space import Architecture
from nas_core.store import Store, TrialRecord, TrialState
from nas_core.strategies.base import Objective, Strategy, TrialResult

if TYPE_CHECKING:
    from nas_core.task import Task

log = logging.getLogger(__name__)

#: an architecture and the fidelity it is evaluated at
Candidate = tuple[Architecture, dict[str, Any]]


def trial_seed(study_seed: int, number: int) -> int:
    """Per-trial seed derived from the study seed and trial number (same in every process)."""
    digest = hashlib.sha256(f"{study_seed}:{number}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


class Progress:
    """Callbacks for a running study; the CLI shows a bar, tests may collect events."""

    def start(self, total: int, done: int) -> None: ...

    def submitted(self, number: int) -> None:
        """Trial ``number`` was handed to the executor (it runs, or waits for a free worker)."""

    def trial(self, record: TrialRecord, best: str | None) -> None: ...

    def retry(self, number: int, attempt: int, error: str) -> None:
        """Trial ``number``'s attempt ``attempt`` failed for an infrastructure reason and runs again."""

    def close(self) -> None: ...


@dataclass(frozen=True)
class Verdict:
    """What :meth:`TrialRunner.check` found out about a proposal before anything was written."""

    #: the number the trial gets when it is stored
    number: int
    static: Mapping[str, float]
    #: why the constraints or the task reject it (empty: it may run)
    reasons: tuple[str, ...] = ()
    #: why it could not be built or measured (a failed trial)
    error: str | None = None
    #: the network built for the static metrics, handed to an in-process executor
    prebuilt: Prebuilt | None = None


class TrialRunner:
    """Checks, starts, retries and finishes the trials of one study run (the driver's side of a trial)."""

    def __init__(self, *, task: Task, strategy: Strategy, store: Store, executor: Executor,
                 objective: Objective, constraints: Sequence[Constraint] = (), target: HardwareTarget | None = None,
                 seed: int = 0, time_limit_s: float | None = None, progress: Progress | None = None,
                 max_retries: int = 1, retry_on: Sequence[str] = ("died", "timeout")):
        self.task = task
        self.strategy = strategy
        self.store = store
        self.executor = executor
        self.objective = objective  # the first objective: the progress line shows its best value
        self.constraints = tuple(constraints)
        self.target = target
        self.seed = int(seed)
        self.time_limit_s = time_limit_s
        self.progress = progress or Progress()
        self.max_retries = int(max_retries)
        self.retry_on = tuple(retry_on)
        self._attempts: dict[int, int] = {}   # infrastructure failures so far, per running trial
        self._staging: dict[int, Path] = {}   # where the current attempt of a running trial saves its files

    # -- resuming and repeated proposals -----------------------------------------------------------
    def resume(self) -> dict[int, Candidate]:
        """Clear what a killed driver left and submit the trials it had running again; returns them."""
        # files of attempts a killed driver left (confined: a symlinked trials/ or .staging is refused)
        shutil.rmtree(confined(self.store.path.parent, "trials", ".staging"), ignore_errors=True)
        pending: dict[int, Candidate] = {}
        for t in self.store.trials([TrialState.RUNNING]):  # in flight when the driver died: run again
            pending[t.number] = (t.arch, dict(t.fidelity))
            self._attempts[t.number] = t.attempts  # infrastructure retries it already used
            self._submit(t.number, t.arch, t.fidelity)
        return pending

    def known(self, arch: Architecture, fidelity: Mapping[str, Any]) -> TrialRecord | None:
        """The stored outcome that answers this proposal, if any.

        The same architecture at the same fidelity is never evaluated twice; a rejection (on figures
        known before training) holds at every fidelity.
        """
        prior = [t for t in self.store.find(arch.hash) if t.state == TrialState.REJECTED
                 or (t.state != TrialState.RUNNING and dict(t.fidelity) == dict(fidelity))]
        return prior[-1] if prior else None

    def tell_known(self, arch: Architecture, record: TrialRecord) -> None:
        """Tell the strategy the stored outcome of a repeated proposal (nothing is evaluated)."""
        self.strategy.tell(arch, TrialResult(record.state, record.all_metrics(), record.number,
                                             dict(record.fidelity)))
        self.store.save_strategy_state(self.strategy.state_dict())

    # -- a new proposal ----------------------------------------------------------------------------
    def check(self, arch: Architecture) -> Verdict:
        """Build ``arch`` (under its trial's seed), measure its static metrics and apply the constraints."""
        number = self.store.count() + 1
        try:
            prebuilt = seeded_build(self.task.space, arch, trial_seed(self.seed, number))
            static = {k: float(v) for k, v in self.task.static_metrics(arch, prebuilt.model, self.target).items()}
        except Exception as exc:  # noqa: BLE001 - a candidate that cannot be built is a failed trial
            return Verdict(number, {}, error=f"building the candidate failed: {type(exc).__name__}: {exc}")
        reasons = [r for r in (c.violation(static) for c in self.constraints) if r]
        try:
            reasons += list(self.task.rejections(arch, static, target=self.target))
        except Exception as exc:  # noqa: BLE001 - a bug in plugin code stops the study with one clear line
            first = (str(exc).strip().splitlines() or [""])[0][:200]
            raise ConfigError(f"the task of space '{self.task.space.name}' ({type(self.task).__module__}."
                              f"{type(self.task).__name__}) raised {type(exc).__name__} in rejections() on "
                              f"{arch.to_json()[:200]}: {first}; fix the plugin (nas_core.testing.check_plugin "
                              "finds this)") from exc
        return Verdict(number, static, tuple(reasons), None, None if reasons else prebuilt)

    def start(self, arch: Architecture, fidelity: Mapping[str, Any], verdict: Verdict) -> int | None:
        """Store the verdict; submit a runnable trial and return its number (None: rejected or failed)."""
        number, seed = verdict.number, trial_seed(self.seed, verdict.number)
        if verdict.error is not None:
            self.strategy.tell(arch, TrialResult(TrialState.FAILED, {}, number, dict(fidelity)))
            stored = self.store.add_trial(arch, state=TrialState.FAILED, seed=seed, fidelity=fidelity,
                                          error=verdict.error, strategy_state=self.strategy.state_dict())
            log.info("trial %d failed %s: %s", number, arch.hash, verdict.error.splitlines()[0])
            self.progress.trial(self.store.trial(stored), self._best_text())
            return None
        if verdict.reasons:
            self.strategy.tell(arch, TrialResult(TrialState.REJECTED, dict(verdict.static), number, dict(fidelity)))
            self.store.add_trial(arch, state=TrialState.REJECTED, seed=seed, fidelity=fidelity,
                                 costs=verdict.static, reason="; ".join(verdict.reasons),
                                 strategy_state=self.strategy.state_dict())
            log.info("trial %d rejected %s: %s", number, arch.hash, "; ".join(verdict.reasons))
            return None
        stored = self.store.add_trial(arch, state=TrialState.RUNNING, seed=seed, fidelity=fidelity,
                                      costs=verdict.static, strategy_state=self.strategy.state_dict())
        assert stored == number, "the store changed between check() and start()"
        self._submit(number, arch, fidelity, verdict.prebuilt)
        return number

    # -- results -----------------------------------------------------------------------------------
    def retry(self, res: JobResult, proposal: Candidate) -> bool:
        """Submit a failed trial again if its failure is an infrastructure one with retries left."""
        attempt = self._attempts.get(res.number, 0) + 1
        if res.ok or res.kind not in self.retry_on or attempt > self.max_retries:
            return False
        self._settle_files(res.number, keep=False)
        self.store.note_retry(res.number, f"attempt {attempt} failed ({res.kind}): {res.error or ''}")
        self._attempts[res.number] = attempt
        log.warning("trial %d attempt %d failed (%s), running it again: %s", res.number, attempt, res.kind,
                    ((res.error or "").splitlines() or [""])[0])
        self.progress.retry(res.number, attempt, res.error or "")
        self._submit(res.number, *proposal)
        return True

    def finish(self, res: JobResult, proposal: Candidate) -> None:
        """Settle the trial's files, tell the strategy and store the result with the strategy's state."""
        arch, fidelity = proposal
        state = TrialState.COMPLETE if res.ok else TrialState.FAILED
        record = self.store.trial(res.number)
        error = res.error
        retries = self._attempts.pop(res.number, 0)
        if error and retries:
            first, _, rest = error.partition("\n")
            earlier = ((record.error or "").splitlines() or [""])[0]
            error = f"{first} [attempt {retries + 1} of {retries + 1}; earlier: {earlier}]" + (
                f"\n{rest}" if rest else "")
        # files first: a driver killed between the two steps leaves a running trial, which is re-run
        self._settle_files(res.number, keep=res.ok)
        self.strategy.tell(arch, TrialResult(state, {**record.costs, **res.metrics}, res.number, fidelity))
        self.store.finish_trial(res.number, state=state, metrics=res.metrics, error=error,
                                duration_s=res.duration_s, strategy_state=self.strategy.state_dict())
        if res.ok:
            log.info("trial %d complete %s in %.1f s: %s", res.number, arch.hash, res.duration_s,
                     ", ".join(f"{k}={v:.4g}" for k, v in sorted(res.metrics.items())[:6]))
        else:
            log.info("trial %d failed %s: %s", res.number, arch.hash, ((error or "").splitlines() or [""])[0])
        self.progress.trial(self.store.trial(res.number), self._best_text())

    # -- submission and trial files: staged per attempt, moved into trials/NNNNN on completion --------
    def _submit(self, number: int, arch: Architecture, fidelity: Mapping[str, Any],
                prebuilt: Prebuilt | None = None) -> None:
        attempt = self._attempts.setdefault(number, 0)
        staging = confined(self.store.path.parent, "trials", ".staging", f"{number:05d}-{os.getpid()}-{attempt}")
        confined(self.store.path.parent, "logs", f"trial-{number:05d}")  # refused now, not after training
        self._staging[number] = staging
        log.debug("trial %d attempt %d submitted: %s", number, attempt + 1, arch.hash)
        self.executor.submit(Job(number, arch.to_json(), trial_seed(self.seed, number), dict(fidelity),
                                 self.time_limit_s, str(staging)), prebuilt)
        submitted = getattr(self.progress, "submitted", None)  # a progress object written before it existed
        if submitted is not None:
            submitted(number)

    def _settle_files(self, number: int, keep: bool) -> None:
        staging = self._staging.pop(number, None)
        if staging is None or not staging.exists():
            return
        logs = staging / "logs"
        if logs.is_dir() and not logs.is_symlink():
            dest = confined(self.store.path.parent, "logs", f"trial-{number:05d}")
            dest.parent.mkdir(exist_ok=True)
            if dest.exists():
                shutil.rmtree(dest)
            os.replace(logs, dest)
        if keep:
            final = confined(self.store.path.parent, "trials", f"{number:05d}")
            if final.exists():
                shutil.rmtree(final)
            os.replace(staging, final)
        else:
            shutil.rmtree(staging, ignore_errors=True)

    def _best_text(self) -> str | None:
        obj = self.objective
        best = None
        for t in self.store.trials([TrialState.COMPLETE]):
            v = t.all_metrics().get(obj.name)
            if v is not None and (best is None or obj.score({obj.name: v}) > obj.score({obj.name: best})):
                best = v
        return None if best is None else f"{obj.name}={best:.4g}"
