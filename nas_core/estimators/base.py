"""Estimators turn an architecture, at a fidelity, into measured metrics.

An estimator is a picklable object (it may be sent to a worker process) with one
method, :meth:`Estimator.evaluate`. To fail a trial it raises; the study records
the error text and goes on. It should check ``ctx.deadline`` during long work and
raise :class:`~nas_core.errors.TrialTimeout` once it has passed (the process-pool
executor also kills a trial that overruns its limit).
"""

from __future__ import annotations

import math
import os
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from nas_core.errors import TrialTimeout
from nas_core.space import Architecture


@dataclass(frozen=True)
class EvalContext:
    arch: Architecture
    model: Any  # torch.nn.Module built by the space
    seed: int
    fidelity: Mapping[str, Any] = field(default_factory=dict)
    deadline: float | None = None  # time.monotonic() value, or None for no limit
    artifact_dir: str | None = None  # where the estimator may save this trial's weights (model.pt) and logs/
    trial: int | None = None  # the trial's number in its study (None outside a study)

    def check_deadline(self, where: str = "") -> None:
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise TrialTimeout(f"per-trial time limit exceeded{(' ' + where) if where else ''}")

    def epoch_done(self, epoch: int, epochs: int, stage: str = "") -> None:
        """Tell the progress display that training finished ``epoch`` of ``epochs`` (``stage``: e.g. ``fold 2``)."""
        if self.trial is not None:
            report_epoch(self.trial, epoch, epochs, stage)


#: ``listener(trial, epoch, epochs, stage)``, called as in-process training finishes an epoch
EpochListener = Callable[[int, int, int, str], None]
_listener: tuple[int, EpochListener] | None = None


def set_epoch_listener(listener: EpochListener | None) -> None:
    """Install (``None``: remove) the listener of epoch ends; it is called only in the process that installed it
    (a worker process of the process or Ray executor reports nothing)."""
    global _listener
    _listener = None if listener is None else (os.getpid(), listener)


def report_epoch(trial: int, epoch: int, epochs: int, stage: str = "") -> None:
    """Call the installed epoch listener, if any, in this process."""
    if _listener is not None and _listener[0] == os.getpid():
        _listener[1](trial, epoch, epochs, stage)


class Estimator(ABC):
    """Base class of performance estimators."""

    #: names of the metrics :meth:`evaluate` returns (used to validate objectives)
    metric_names: tuple[str, ...] = ()

    @abstractmethod
    def evaluate(self, ctx: EvalContext) -> dict[str, float]:
        """Return named metrics for ``ctx.model``; raise to fail the trial."""

    def default_fidelity(self) -> dict[str, Any]:
        return {}

    def fidelity_errors(self, fidelity: Mapping[str, Any]) -> list[str]:
        """What is wrong with a fidelity (empty when it is usable), one sentence each.

        The default checks names and types against :meth:`default_fidelity` (an estimator that declares no
        fidelity accepts any); subclasses add ranges.
        """
        declared = self.default_fidelity()
        if not declared:
            return []
        errors = []
        for key, value in fidelity.items():
            if key not in declared:
                errors.append(f"unknown fidelity {key!r}; this estimator's fidelities are "
                              f"{', '.join(sorted(declared))}")
                continue
            want = declared[key]
            numeric = isinstance(want, (int, float)) and not isinstance(want, bool)
            if numeric and (isinstance(value, bool) or not isinstance(value, (int, float))
                            or not math.isfinite(float(value))):
                errors.append(f"fidelity {key} must be a finite number, got {value!r}")
            elif isinstance(want, int) and not isinstance(want, bool) and isinstance(value, float) \
                    and not value.is_integer():
                errors.append(f"fidelity {key} must be a whole number, got {value!r}")
        return errors
