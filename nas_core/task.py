"""A task binds a search space to data, training and domain constraints.

The study asks the task for a model's input shape (to measure hardware costs
before any training), for domain metrics that need no training (for example an
ECG network's sampling rate and energy per beat), for its default objectives and
constraints, and for the estimator that trains and scores a candidate.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Mapping

from nas_core.constraints import Constraint
from nas_core.estimators.base import Estimator
from nas_core.hardware import HardwareTarget, measure_costs
from nas_core.space import Architecture, SearchSpace
from nas_core.values import Objective


class Task(ABC):
    """Subclass per domain; instances must be picklable (they travel to workers)."""

    name: str = "task"
    #: outputs per sample every network of the space must produce (the classes of a classifier); None: not checked
    n_outputs: int | None = None
    #: keys of a target's ``[extra]`` table the task needs (key -> meaning); ``check_plugin`` checks every target
    target_keys: Mapping[str, str] = {}
    #: task options whose ``"module:attribute"`` values name code the task imports. A study store never
    #: makes ``nas`` import them: resuming or exporting such a study needs the user to give the option again
    code_options: tuple[str, ...] = ()

    def __init__(self, space: SearchSpace, **options: Any):
        self.space = space
        self.options = dict(options)

    @abstractmethod
    def input_shape(self, arch: Architecture) -> tuple[int, ...] | tuple[tuple[int, ...], ...]:
        """Shape of one input without the batch dimension, or a tuple of shapes."""

    @abstractmethod
    def estimator(self) -> Estimator:
        """The estimator that trains and scores a candidate."""

    def default_objectives(self) -> list[Objective]:
        return [Objective("val_accuracy", "max"), Objective("macs", "min")]

    def default_constraints(self, target: HardwareTarget | None) -> list[Constraint]:
        return []

    def static_metrics(self, arch: Architecture, model: Any, target: HardwareTarget | None) -> dict[str, float]:
        """Metrics known before training: hardware costs plus domain figures."""
        return measure_costs(model, self.input_shape(arch), target).as_metrics()

    def static_metric_names(self, target: HardwareTarget | None) -> set[str]:
        names = {"params", "macs", "layers", "peak_act_bytes", "flash_fp32_bytes", "flash_int8_bytes",
                 "arena_int8_bytes", "tflite_int8_bytes"}
        if target is not None:
            names.add("latency_ms")
            if target.has_energy_model:
                names.add("energy_uj")
        return names

    def prepare(self) -> None:
        """Check (or fetch) what training needs before a study starts; raise ConfigError if it is missing.

        Called once by the study before anything is written; not by the conformance
        kit, so plugins can be checked on machines without their data.
        """

    def data_checksums(self) -> dict[str, str]:
        """Checksums of the data a study trains on (name -> hex digest), for provenance records."""
        return {}

    def rejections(self, arch: Architecture, static: Mapping[str, float],
                   target: HardwareTarget | None = None) -> list[str]:
        """Domain reasons to reject a candidate before training (each one clear sentence).

        Use this for rules that are not a bound on one metric, e.g. a symmetry
        group that is not a subgroup of the problem's, or a rule that needs the
        ``target`` (the study's hardware target, None without one). Bounds on
        metrics belong in :meth:`default_constraints`.
        """
        return []

    def describe(self) -> Mapping[str, Any]:
        return {"task": self.name, "options": self.options}

    # -- optional hooks read by the model card and by export (None: the core's default) --------------
    def intended_use(self) -> str | None:
        """What the searched models are for, quoted by the model card (None: a generic text)."""
        return None

    def limitations(self) -> list[str] | None:
        """Known limitations of the task's data or metrics, added to the model card."""
        return None

    def validation_data(self, arch: Architecture) -> tuple[Any, Any] | None:
        """``(x, y)`` held-out inputs and integer labels for ``arch`` (``nas export --quantize``'s accuracy
        check); None: the estimator's validation split when it has one."""
        return None

    def calibration_data(self, arch: Architecture) -> Any | None:
        """Training inputs (a few hundred) to calibrate int8 quantization; None: drawn from the estimator."""
        return None
