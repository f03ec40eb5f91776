"""Building an executor by name: ``inprocess``, ``process`` or ``ray``.

Kept apart from :mod:`nas_core.executors` (the in-process and process executors) and
:mod:`nas_core.ray_executor` so that neither imports the other's module back.
"""

from __future__ import annotations

from nas_core.errors import ConfigError
from nas_core.executors import EXECUTORS, Evaluator, Executor, InProcessExecutor, ProcessExecutor

__all__ = ["make_executor"]


def make_executor(name: str, evaluator: Evaluator, workers: int = 1, *, address: str | None = None,
                  time_limit_s: float | None = None) -> Executor:
    """``inprocess``, ``process`` (``workers`` processes) or ``ray`` (``workers`` Ray actors; ``address`` of an
    existing cluster, else a local Ray is started on demand).

    A per-trial ``time_limit_s`` with ``inprocess`` runs each trial in one killable child process instead
    (same results, one trial at a time): a trial that ignores its deadline cannot be stopped inside the
    driver's own process, so it is killed there and recorded as failed with kind ``timeout``.
    """
    if address is not None and name != "ray":
        raise ConfigError(f"a Ray address ({address!r}) needs the ray executor (--executor ray), not '{name}'")
    if name == "inprocess" and time_limit_s:
        import logging

        logging.getLogger(__name__).info("per-trial time limit %g s: each trial runs in a killable child process",
                                         time_limit_s)
        return ProcessExecutor(evaluator, 1)
    if name == "inprocess":
        return InProcessExecutor(evaluator)
    if name == "process":
        return ProcessExecutor(evaluator, workers)
    if name == "ray":
        from nas_core.ray_executor import RayExecutor

        return RayExecutor(evaluator, workers, address=address)
    raise ConfigError(f"unknown executor {name!r}; use one of {', '.join(EXECUTORS)}")
