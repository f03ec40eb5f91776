"""Executors run trial evaluations: in the driver process, or in a pool of worker processes.

Both take :class:`Job` objects and hand back :class:`JobResult` objects; only the
study's driver writes the store, so workers never contend for it.

The driver builds every candidate once to measure its static metrics
(:func:`seeded_build`, under the trial's seed). The in-process executor trains that
same network (a :class:`Prebuilt` passed to :meth:`Executor.submit`); the process
and Ray executors never ship a model: their workers build it again from
``Job.arch_json`` under the same seed, so both paths start from the same weights.

* :class:`InProcessExecutor` evaluates one job at a time in the driver. The
  per-trial time limit is enforced cooperatively: the estimator receives a
  deadline and raises once it has passed.
* :class:`ProcessExecutor` keeps ``workers`` persistent processes (``spawn``
  start method, so no state leaks from the driver). A worker that dies
  (segfault, ``os._exit``, out-of-memory kill) turns its job into a failed result
  naming the exit code or signal, and a fresh worker takes its place. A job that
  overruns its time limit (plus a grace period for the cooperative check) has its
  worker killed and fails with the cause. Workers exit on their own when the
  driver dies (even by ``SIGKILL``), so a resumed study never races an orphan.
* :class:`~nas_core.ray_executor.RayExecutor` (``nas_core.executor_factory.make_executor("ray", ...)``) does
  the same with Ray actors, on a local Ray or an existing cluster.

Every failed :class:`JobResult` carries a ``kind``: ``"error"`` (the candidate
raised, or its loss was NaN), ``"timeout"`` (per-trial limit) or ``"died"`` (its
worker process died). The study retries ``died`` and ``timeout`` failures
according to its retry policy; the others are final.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import signal
import time
import traceback
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import TYPE_CHECKING, Any, Mapping

from nas_core.errors import ConfigError, TrialFailed, TrialTimeout
from nas_core.estimators.base import Estimator, EvalContext
from nas_core.space import Architecture

if TYPE_CHECKING:
    from nas_core.task import Task


@dataclass(frozen=True)
class Job:
    number: int
    arch_json: str
    seed: int
    fidelity: Mapping[str, Any] = field(default_factory=dict)
    time_limit_s: float | None = None
    artifact_dir: str | None = None


#: kinds of failure a :class:`JobResult` reports
FAILURE_KINDS = ("error", "timeout", "died", "io")


def is_io_failure(exc: BaseException) -> bool:
    """An exception caused by the file system (no space, quota, I/O error), not by the candidate: a failed
    weight save surfaces from torch.save as ``RuntimeError: [enforce fail at inline_container.cc] ...``."""
    import errno

    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS):
        return True
    text = str(exc)
    return "No space left on device" in text or ("inline_container" in text and "unexpected pos" in text) or \
        "database or disk is full" in text


@dataclass(frozen=True)
class JobResult:
    number: int
    ok: bool
    metrics: Mapping[str, float] = field(default_factory=dict)
    error: str | None = None
    duration_s: float = 0.0
    #: "ok", or why it failed: "error" (raised / NaN), "timeout" or "died" (worker process died)
    kind: str = ""

    def __post_init__(self) -> None:
        if not self.kind:
            object.__setattr__(self, "kind", "ok" if self.ok else "error")


@dataclass(frozen=True)
class Prebuilt:
    """A candidate the driver already built under its trial's seed (see :func:`seeded_build`).

    ``rng_state`` is torch's CPU generator state right after the build: the evaluator restores it, so
    training the prebuilt network draws the same random numbers as training a fresh build would.
    """

    model: Any
    rng_state: Any


def seeded_build(space: Any, arch: Architecture, seed: int) -> Prebuilt:
    """Build ``arch`` as :class:`Evaluator` does (torch seeded with ``seed``); the caller's torch RNG is kept."""
    import torch

    saved = torch.random.get_rng_state()
    try:
        torch.default_generator.manual_seed(seed)
        model = space.build(arch)
        return Prebuilt(model, torch.random.get_rng_state())
    finally:
        torch.random.set_rng_state(saved)


class Evaluator:
    """Builds a candidate from its architecture (or takes the driver's build) and runs the task's estimator
    on it (picklable)."""

    def __init__(self, task: Task):
        self.task = task
        self._estimator: Estimator | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"task": self.task, "_estimator": None}

    def __call__(self, job: Job, prebuilt: Prebuilt | None = None) -> JobResult:
        import torch

        t0 = time.monotonic()
        deadline = t0 + job.time_limit_s if job.time_limit_s else None
        try:
            if self._estimator is None:
                self._estimator = self.task.estimator()
            arch = Architecture.from_json(job.arch_json)
            torch.manual_seed(job.seed)  # deterministic initial weights
            if prebuilt is None:
                model = self.task.space.build(arch)
            else:  # the same network and random stream as a build here (see seeded_build)
                model = prebuilt.model
                torch.random.set_rng_state(prebuilt.rng_state)
            metrics = self._estimator.evaluate(EvalContext(arch, model, job.seed, dict(job.fidelity), deadline,
                                                             job.artifact_dir, job.number))
            clean: dict[str, float] = {}
            for k, v in metrics.items():
                v = float(v)
                if math.isnan(v):
                    raise TrialFailed(f"metric '{k}' is NaN")
                clean[k] = v
            return JobResult(job.number, True, clean, None, time.monotonic() - t0)
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure of a candidate is recorded, the study goes on
            text = f"{type(exc).__name__}: {exc}"
            io = is_io_failure(exc)
            if io:
                text = f"I/O failure writing the trial's files (is the disk full?): {text}"
            if not isinstance(exc, TrialFailed):
                text += "\n" + "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)[-6:])
            kind = "timeout" if isinstance(exc, TrialTimeout) else ("io" if io else "error")
            return JobResult(job.number, False, {}, text.strip(), time.monotonic() - t0, kind)


def overdue(job: Job, started: float, now: float, grace_s: float) -> bool:
    """True when a job has run past its per-trial time limit plus the grace period (its worker is killed)."""
    return bool(job.time_limit_s) and now > started + float(job.time_limit_s or 0) + grace_s


def timeout_result(job: Job, started: float, now: float) -> JobResult:
    """The result of a job whose worker was killed for running past its time limit."""
    return JobResult(job.number, False, {}, f"TrialTimeout: per-trial time limit of {job.time_limit_s:g} s "
                     "exceeded; worker killed", now - started, "timeout")


class Executor(ABC):
    name = "executor"

    @property
    @abstractmethod
    def capacity(self) -> int:
        """How many jobs may be in flight at once."""

    @abstractmethod
    def submit(self, job: Job, prebuilt: Prebuilt | None = None) -> None:
        """Queue ``job``; ``prebuilt`` is the driver's build of its network, used only by an executor that
        evaluates in the driver's process (the others ignore it: their workers build from the architecture)."""

    @abstractmethod
    def wait(self) -> list[JobResult]:
        """Block until at least one submitted job has finished; return the finished ones."""

    @property
    @abstractmethod
    def in_flight(self) -> int: ...

    def shutdown(self) -> None:
        pass

    def __enter__(self) -> "Executor":
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


class InProcessExecutor(Executor):
    name = "inprocess"

    def __init__(self, evaluator: Evaluator):
        self.evaluator = evaluator
        self._queue: list[tuple[Job, Prebuilt | None]] = []

    @property
    def capacity(self) -> int:
        return 1

    @property
    def in_flight(self) -> int:
        return len(self._queue)

    def submit(self, job: Job, prebuilt: Prebuilt | None = None) -> None:
        self._queue.append((job, prebuilt))

    def wait(self) -> list[JobResult]:
        jobs, self._queue = self._queue, []
        return [self.evaluator(job, prebuilt) for job, prebuilt in jobs]


def _exit_with_parent(parent_pid: int, period_s: float = 0.5) -> None:
    """Exit this worker as soon as the driver is gone (a killed driver must leave no orphan training)."""
    import threading

    def watch() -> None:
        while True:
            time.sleep(period_s)
            if os.getppid() != parent_pid:
                os._exit(3)

    threading.Thread(target=watch, name="nas-parent-watchdog", daemon=True).start()


def _worker_main(conn: Connection, evaluator: Evaluator, threads: int, parent_pid: int | None = None) -> None:
    import torch

    torch.set_num_threads(max(1, threads))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the driver decides when workers stop
    if parent_pid is not None:
        _exit_with_parent(parent_pid)
    try:
        conn.send("ready")  # start-up (imports, unpickling the task) does not count against any trial's time limit
        while True:
            try:
                job = conn.recv()
            except EOFError:
                return
            if job is None:
                return
            conn.send(evaluator(job))
    except (BrokenPipeError, ConnectionResetError):  # the driver is gone (killed or shut down): exit quietly
        return


@dataclass
class _Worker:
    process: Any
    conn: Connection
    job: Job | None = None
    started: float = 0.0
    ready: bool = False


class ProcessExecutor(Executor):
    name = "process"

    #: seconds past the time limit before a trial's worker is killed
    grace_s: float = 5.0

    def __init__(self, evaluator: Evaluator, workers: int = 2, *, threads_per_worker: int | None = None):
        if workers < 1:
            raise ConfigError(f"workers must be >= 1, got {workers}")
        self.evaluator = evaluator
        self.n_workers = int(workers)
        self.threads = threads_per_worker or max(1, (os.cpu_count() or 1) // self.n_workers)
        self._ctx = mp.get_context("spawn")
        self._workers: list[_Worker] = []
        self._queue: list[Job] = []
        self._start_failures = 0

    #: consecutive worker start-up failures after which the executor gives up
    max_start_failures = 3

    def _spawn(self) -> _Worker:
        parent, child = self._ctx.Pipe()
        p = self._ctx.Process(target=_worker_main, args=(child, self.evaluator, self.threads, os.getpid()),
                              daemon=True)
        p.start()
        child.close()
        return _Worker(p, parent)

    def _ensure_workers(self) -> None:
        while len(self._workers) < self.n_workers:
            self._workers.append(self._spawn())

    @property
    def capacity(self) -> int:
        return self.n_workers

    @property
    def in_flight(self) -> int:
        return len(self._queue) + sum(1 for w in self._workers if w.job is not None)

    def submit(self, job: Job, prebuilt: Prebuilt | None = None) -> None:
        self._queue.append(job)  # a worker builds the network itself: ``prebuilt`` stays in the driver

    def _dispatch(self) -> None:
        self._ensure_workers()
        for w in self._workers:
            if w.ready and w.job is None and self._queue:
                w.job = self._queue.pop(0)
                w.started = time.monotonic()
                try:
                    w.conn.send(w.job)
                except (BrokenPipeError, OSError):
                    pass  # the death is noticed through the sentinel below

    def _replace(self, w: _Worker) -> None:
        try:
            if w.process.is_alive():
                w.process.kill()
            w.process.join(timeout=5)
        finally:
            w.conn.close()
            self._workers[self._workers.index(w)] = self._spawn()

    @staticmethod
    def _death_cause(exitcode: int | None) -> str:
        if exitcode is None:
            return "worker process died"
        if exitcode < 0:
            try:
                name = signal.Signals(-exitcode).name
            except ValueError:
                name = f"signal {-exitcode}"
            hint = " (killed: possibly out of memory)" if -exitcode == signal.SIGKILL else ""
            return f"worker process died from {name}{hint}"
        return f"worker process exited with code {exitcode}"

    def _check_starting(self, w: _Worker, ready: list[Any]) -> None:
        if w.conn in ready:
            try:
                msg = w.conn.recv()
            except (EOFError, OSError):
                msg = None
            if msg == "ready":
                w.ready = True
                self._start_failures = 0
                return
        if w.process.sentinel in ready or not w.process.is_alive():
            w.process.join(timeout=1)
            cause = self._death_cause(w.process.exitcode)
            self._start_failures += 1
            if self._start_failures >= self.max_start_failures:
                self.shutdown()
                raise ConfigError(f"worker processes die while starting ({cause}); check that the task and its "
                                  "plugin can be imported in a fresh Python process")
            self._replace(w)

    def wait(self) -> list[JobResult]:
        self._dispatch()
        if not self._queue and not any(w.job is not None for w in self._workers):
            return []
        results: list[JobResult] = []
        while not results:
            now = time.monotonic()
            busy = [w for w in self._workers if w.job is not None]
            starting = [w for w in self._workers if not w.ready] if self._queue else []
            timeouts = [w.started + w.job.time_limit_s + self.grace_s - now for w in busy
                        if w.job is not None and w.job.time_limit_s]
            timeout = max(0.0, min(timeouts)) if timeouts else None
            watch = busy + starting
            ready = wait([w.conn for w in watch] + [w.process.sentinel for w in watch], timeout=timeout)
            now = time.monotonic()
            for w in starting:
                self._check_starting(w, ready)
            for w in busy:
                job = w.job
                assert job is not None
                if w.conn in ready:
                    try:
                        res = w.conn.recv()
                    except (EOFError, OSError):
                        res = None
                    if isinstance(res, JobResult):
                        results.append(res)
                        w.job = None
                        continue
                if w.process.sentinel in ready or not w.process.is_alive():
                    w.process.join(timeout=1)
                    results.append(JobResult(job.number, False, {}, self._death_cause(w.process.exitcode),
                                             now - w.started, "died"))
                    w.job = None
                    self._replace(w)
                elif overdue(job, w.started, now, self.grace_s):
                    results.append(timeout_result(job, w.started, now))
                    w.job = None
                    self._replace(w)
            self._dispatch()
        return results

    def shutdown(self) -> None:
        for w in self._workers:
            try:
                w.conn.send(None)
            except (BrokenPipeError, OSError):
                pass
        for w in self._workers:
            w.process.join(timeout=2)
            if w.process.is_alive():
                w.process.kill()
                w.process.join(timeout=2)
            w.conn.close()
        self._workers = []


EXECUTORS = ("inprocess", "process", "ray")
