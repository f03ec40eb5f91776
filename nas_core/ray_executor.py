"""Run trials on Ray: a local Ray started on demand, or an existing (multi-node) cluster.

``make_executor("ray", evaluator, workers, address=None)`` (``nas run ... --executor ray
--workers N [--address HOST:PORT]``) keeps ``workers`` persistent Ray actors, each
holding one copy of the task's evaluator (so data loaded by the first trial is reused),
each reserving one CPU and running torch with one thread per reserved CPU.

* The study's driver stays the only writer of the SQLite store: actors return results
  (and the files a trial saved, such as ``model.pt``) to the driver, which writes them
  into the study directory. Actors therefore need no shared file system, and several
  actors never contend for the store.
* Strategies that propose one architecture at a time still keep every actor busy: the
  study asks for the next proposal as soon as an actor is free, while the others run.
* A per-trial time limit is enforced twice: cooperatively inside the trial (the
  estimator's deadline) and, ``grace_s`` later, by killing the actor. An actor whose
  process dies (segfault, ``os._exit``, killed by the OOM killer or Ray's memory
  monitor, its node lost) turns its trial into a failed one naming the cause
  (``kind="died"``); a fresh actor takes its place.
* Without ``address`` a local Ray is started with ``workers`` CPUs, no dashboard and
  worker logs kept out of the driver's output; it is shut down with the executor. With
  ``address`` (``"auto"``, ``"HOST:6379"`` or ``"ray://HOST:10001"``) the executor
  connects to a running cluster and disconnects at the end, leaving the cluster up.
  If Ray is already initialised in this process (a notebook, a test fixture), that
  Ray is used and left running.

See ``docs/ray-cluster.md`` for running on several machines.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nas_core.errors import ConfigError
from nas_core.executors import Evaluator, Executor, Job, JobResult, Prebuilt, overdue, timeout_result

#: largest total size of the files one trial may ship back to the driver
MAX_ARTIFACT_BYTES = 512 * 1024 * 1024


def _ray() -> Any:
    try:
        import ray
    except ImportError:  # pragma: no cover - ray is an optional extra
        raise ConfigError("the ray executor needs Ray: pip install 'nas-core[distributed]'") from None
    return ray


def _check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail fast on a ``HOST:PORT`` (or ``ray://HOST:PORT``) nobody listens on (Ray itself retries for minutes)."""
    import socket

    hostport = address.split("://", 1)[1] if "://" in address else address
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit() or not host:
        if address != "auto" and "://" not in address:
            raise ConfigError(f"Ray address {address!r} must be 'auto', 'HOST:PORT' or 'ray://HOST:PORT'")
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        raise ConfigError(f"cannot reach the Ray cluster at {address!r} ({reason}); start it with 'ray start --head' "
                          "or check --address") from None


class _RayWorker:
    """The actor: one evaluator, one job at a time; files saved by a trial travel back with its result."""

    def __init__(self, evaluator: Evaluator, threads: int):
        import torch

        torch.set_num_threads(max(1, int(threads)))
        self.evaluator = evaluator

    def ready(self) -> tuple[int, str]:
        import socket

        return os.getpid(), socket.gethostname()

    def run(self, job: Job) -> tuple[JobResult, dict[str, bytes]]:
        if not job.artifact_dir:
            return self.evaluator(job), {}
        with tempfile.TemporaryDirectory(prefix="nas-trial-") as tmp:
            result = self.evaluator(dataclasses.replace(job, artifact_dir=tmp))
            files: dict[str, bytes] = {}
            if result.ok:
                total = 0
                for p in sorted(Path(tmp).rglob("*")):
                    if p.is_file() and not p.is_symlink():
                        total += p.stat().st_size
                        if total > MAX_ARTIFACT_BYTES:
                            break
                        files[p.relative_to(tmp).as_posix()] = p.read_bytes()
            return result, files


@dataclass
class _Slot:
    actor: Any
    ready_ref: Any
    ready: bool = False
    job: Job | None = None
    ref: Any = None
    started: float = 0.0


def _first_sentence(text: str, start: str) -> str | None:
    i = text.find(start)
    if i < 0:
        return None
    rest = " ".join(text[i:].split())
    end = rest.find(". ")
    return rest if end < 0 else rest[: end + 1]


def death_cause(exc: BaseException) -> str:
    """One line naming why a Ray actor's trial died."""
    ray = _ray()
    text = str(exc)
    if isinstance(exc, getattr(ray.exceptions, "OutOfMemoryError", ())):
        return "worker process killed by Ray's memory monitor (out of memory)"
    parts = [p for p in (_first_sentence(text, "The actor is dead because"),
                         _first_sentence(text, "Worker exit detail:")) if p]
    if not parts:
        parts = [" ".join(text.split())[:300]]
    hint = ""
    low = text.lower()
    if "oom" in low or "memory" in low:
        hint = " (possibly out of memory)"
    return f"worker process died{hint} (Ray {type(exc).__name__}: {' '.join(parts)})"


class RayExecutor(Executor):
    name = "ray"

    #: seconds past the time limit before a trial's actor is killed
    grace_s: float = 5.0
    #: consecutive actor start-up failures after which the executor gives up
    max_start_failures = 3

    def __init__(self, evaluator: Evaluator, workers: int = 1, *, address: str | None = None,
                 threads_per_worker: int | None = None, cpus_per_worker: float = 1.0,
                 init_options: dict[str, Any] | None = None):
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ConfigError(f"workers must be a positive integer, got {workers!r}")
        if not cpus_per_worker > 0:
            raise ConfigError(f"cpus_per_worker must be > 0, got {cpus_per_worker!r}")
        ray = _ray()
        self.n_workers = int(workers)
        self.address = address
        self._owns_ray = False
        self._connected = False
        self._reaper: Any = None
        if not ray.is_initialized():
            opts: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                    "logging_level": logging.WARNING, **(init_options or {})}
            try:
                if address:
                    _check_reachable(address)
                    ray.init(address=address, **opts)
                    self._connected = True
                else:
                    ray.init(num_cpus=max(1, math.ceil(self.n_workers * cpus_per_worker)), **opts)
                    self._owns_ray = True
                    from nas_core import reaper

                    self._reaper = reaper.start()  # a killed driver leaves no Ray processes behind
            except ConfigError:
                raise
            except Exception as exc:  # noqa: BLE001 - any failure to start or reach Ray is the user's setup
                where = f"the Ray cluster at {address!r}" if address else "a local Ray"
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise ConfigError(f"cannot start or reach {where}: {type(exc).__name__}: {first}") from None
        if threads_per_worker is None:
            threads_per_worker = max(1, int(cpus_per_worker)) if address else max(
                1, (os.cpu_count() or 1) // self.n_workers)
        self.threads = int(threads_per_worker)
        self._actor_cls = ray.remote(num_cpus=cpus_per_worker, max_restarts=0, max_task_retries=0)(_RayWorker)
        self._evaluator_ref = ray.put(evaluator)
        self._slots: list[_Slot] = []
        self._queue: list[Job] = []
        self._start_failures = 0

    # -- actors -------------------------------------------------------------------------
    def _new_slot(self) -> _Slot:
        actor = self._actor_cls.remote(self._evaluator_ref, self.threads)
        return _Slot(actor, actor.ready.remote())

    def _ensure_workers(self) -> None:
        while len(self._slots) < self.n_workers:
            self._slots.append(self._new_slot())

    def _replace(self, slot: _Slot) -> None:
        ray = _ray()
        try:
            ray.kill(slot.actor, no_restart=True)
        except Exception:  # noqa: BLE001 - already dead
            pass
        self._slots[self._slots.index(slot)] = self._new_slot()

    def _check_ready(self, refs_ready: set[Any]) -> None:  # ray ObjectRefs
        ray = _ray()
        for slot in self._slots:
            if not slot.ready and slot.ready_ref in refs_ready:
                try:
                    ray.get(slot.ready_ref)
                except Exception as exc:  # noqa: BLE001
                    # the actor could not start: the task does not unpickle on that node, or its process died
                    self._start_failures += 1
                    if self._start_failures < self.max_start_failures:
                        self._replace(slot)
                        continue
                    self.shutdown()
                    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                    raise ConfigError(f"Ray workers could not start ({type(exc).__name__}: {first}); nas-core and "
                                      "the plugin must be installed on every node (see docs/ray-cluster.md)") from None
                slot.ready = True
                self._start_failures = 0

    # -- Executor interface -----------------------------------------------------------------
    @property
    def capacity(self) -> int:
        return self.n_workers

    @property
    def in_flight(self) -> int:
        return len(self._queue) + sum(1 for s in self._slots if s.job is not None)

    def submit(self, job: Job, prebuilt: Prebuilt | None = None) -> None:
        self._queue.append(job)  # an actor builds the network itself: ``prebuilt`` stays in the driver

    def _dispatch(self) -> None:
        ray = _ray()
        self._ensure_workers()
        waiting = [s.ready_ref for s in self._slots if not s.ready]
        if waiting and self._queue:
            done, _ = ray.wait(waiting, num_returns=len(waiting), timeout=0)
            self._check_ready(set(done))
        for slot in self._slots:
            if slot.ready and slot.job is None and self._queue:
                slot.job = self._queue.pop(0)
                slot.ref = slot.actor.run.remote(slot.job)
                slot.started = time.monotonic()

    def _write_files(self, job: Job, files: dict[str, bytes]) -> None:
        from nas_core.safety import confined

        if not job.artifact_dir:
            return
        for name, data in files.items():
            path = confined(job.artifact_dir, name)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".part")
            tmp.write_bytes(data)
            os.replace(tmp, path)

    def wait(self) -> list[JobResult]:
        ray = _ray()
        self._dispatch()
        if not any(s.job is not None for s in self._slots) and not self._queue:
            return []
        results: list[JobResult] = []
        while not results:
            now = time.monotonic()
            busy = [s for s in self._slots if s.job is not None]
            refs = [s.ref for s in busy]
            if self._queue:
                refs += [s.ready_ref for s in self._slots if not s.ready]
            limits = [s.started + s.job.time_limit_s + self.grace_s - now for s in busy
                      if s.job is not None and s.job.time_limit_s]
            timeout = max(0.0, min(limits)) if limits else None
            done, _ = ray.wait(refs, num_returns=1, timeout=timeout)
            if done:
                done, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
            done_set = set(done)
            now = time.monotonic()
            for slot in busy:
                job = slot.job
                assert job is not None
                if slot.ref in done_set:
                    try:
                        res, files = ray.get(slot.ref)
                        self._write_files(job, files)
                        results.append(res)
                        slot.job, slot.ref = None, None
                    except ConfigError as exc:
                        results.append(JobResult(job.number, False, {}, f"saving the trial's files failed: {exc}",
                                                 now - slot.started, "error"))
                        slot.job, slot.ref = None, None
                    except ray.exceptions.RayTaskError as exc:  # the actor is alive; the call itself failed
                        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                        results.append(JobResult(job.number, False, {}, f"Ray task failed: {first}",
                                                 now - slot.started, "error"))
                        slot.job, slot.ref = None, None
                    except Exception as exc:  # noqa: BLE001 - actor died, OOM-killed, node lost, ...
                        results.append(JobResult(job.number, False, {}, death_cause(exc), now - slot.started, "died"))
                        slot.job, slot.ref = None, None
                        self._replace(slot)
                elif overdue(job, slot.started, now, self.grace_s):
                    results.append(timeout_result(job, slot.started, now))
                    slot.job, slot.ref = None, None
                    self._replace(slot)
            self._check_ready(done_set)
            self._dispatch()
        return results

    def shutdown(self) -> None:
        try:
            ray = _ray()
        except ConfigError:  # pragma: no cover
            return
        if not ray.is_initialized():
            self._slots = []
            return
        for slot in self._slots:
            try:
                ray.kill(slot.actor, no_restart=True)
            except Exception:  # noqa: BLE001
                pass
        self._slots = []
        self._queue = []
        if self._owns_ray or self._connected:
            ray.shutdown()
            self._owns_ray = self._connected = False
        if self._reaper is not None:
            self._reaper.stop()
            self._reaper = None
