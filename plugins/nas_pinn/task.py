"""The PINN task: a problem, the symmetry constraint, per-point hardware costs and the DeepXDE estimator.

Options (``task_options`` of a study, ``--task-option`` on the CLI):

* ``problem`` -- built-in name (``poisson``, ``plate``, ``poisson-rect``) or
  ``"module:attribute"`` of your own :class:`~nas_pinn.problems.Problem`
  (default: the problem the space entry was made for);
* training: ``iterations`` (Adam steps, default 2000), ``lbfgs`` (max L-BFGS
  iterations after Adam, default 0; ``true`` = 1000), ``lr`` (1e-3), ``decay``
  (``none`` | ``cosine``), ``num_domain`` (1024), ``num_boundary`` (256, soft BC
  only), ``bc_weight`` (1.0), ``corner_margin`` (0: drop collocation points within
  this fraction of the smaller side from a corner), ``restore_best`` (true),
  ``threads`` (1);
  ``iterations``, ``lbfgs``, ``lr`` and ``num_domain`` may also be given per study as the fidelity;
* scoring: ``eval_n`` (101: error grid), ``residual_n`` (64: residual grid);
* costs: ``grid_n`` (64: ``grid_latency_ms`` is for an ``grid_n x grid_n`` field).

Physics as a constraint: :meth:`PinnTask.rejections` rejects, before any
training, a candidate whose symmetry group is not a subgroup of the problem's,
naming the group element the solution lacks. The problem's declared symmetry
is itself checked against its reference solution (:func:`check_symmetry`)
when the task is created.
"""

from __future__ import annotations

from typing import Any, Mapping

from nas_core.constraints import Constraint
from nas_core.errors import ConfigError
from nas_core.hardware import HardwareTarget
from nas_core.space import Architecture, SearchSpace
from nas_core.strategies.base import Objective
from nas_core.task import Task

from .equivariant import is_subgroup
from .network import pinn_cost_names, pinn_costs
from .problems import Problem, check_symmetry, elements_outside
from .space import PinnSpace
from .train import PinnEstimator, TrainConfig

__all__ = ["PinnTask"]


class PinnTask(Task):
    """Train and score PINN candidates of a :class:`~nas_pinn.space.PinnSpace` on one problem."""

    name = "pinn"
    #: ``problem`` may be ``"module:attribute"`` of the user's own problem (never imported from a store)
    code_options = ("problem",)
    OPTIONS = ("problem", "grid_n", "check_symmetry") + TrainConfig.names()

    def __init__(self, space: SearchSpace, **options: Any):
        unknown = set(options) - set(self.OPTIONS)
        if unknown:
            raise ConfigError(f"pinn task: unknown option(s) {sorted(unknown)}; allowed: {list(self.OPTIONS)}")
        if "problem" in options:
            if not isinstance(space, PinnSpace):
                raise ConfigError("pinn task: option 'problem' needs a PinnSpace")
            space = space.for_problem(options["problem"])
        elif not isinstance(space, PinnSpace):
            raise ConfigError(f"pinn task: expected a PinnSpace, got {type(space).__name__}")
        super().__init__(space, **options)
        self.problem_spec = space.problem_spec
        self.train_config = TrainConfig(**{k: v for k, v in options.items() if k in TrainConfig.names()})
        grid_n = options.get("grid_n", 64)
        if isinstance(grid_n, bool) or not isinstance(grid_n, int) or grid_n < 1:
            raise ConfigError(f"pinn task: option 'grid_n' must be a positive integer, got {grid_n!r}")
        self.grid_n = grid_n
        if options.get("check_symmetry", True):
            check_symmetry(self.problem)

    @property
    def problem(self) -> Problem:
        return self.space.problem  # type: ignore[attr-defined]

    def input_shape(self, arch: Architecture) -> tuple:
        return (2,)

    def estimator(self) -> PinnEstimator:
        return PinnEstimator(self.problem_spec, self.train_config)

    def default_objectives(self) -> list[Objective]:
        return [Objective("rel_l2", "min"), Objective("params", "min")]

    def default_constraints(self, target: HardwareTarget | None) -> list[Constraint]:
        if target is None:
            return []
        arena = int(target.extra.get("arena_bytes", target.sram_bytes))
        return [Constraint("flash_fp32_bytes", "<=", float(target.flash_bytes),
                           why=f"float32 weights must fit the {target.name} flash"),
                Constraint("peak_act_bytes", "<=", float(arena),
                           why=f"one point's activations must fit the {target.name} RAM")]

    def static_metrics(self, arch: Architecture, model: Any, target: HardwareTarget | None) -> dict[str, float]:
        return pinn_costs(model, target, grid_n=self.grid_n)

    def static_metric_names(self, target: HardwareTarget | None) -> set[str]:
        return pinn_cost_names(target)

    def rejections(self, arch: Architecture, static: Mapping[str, float], target=None) -> list[str]:
        group, symmetry = arch["group"], self.problem.symmetry
        if is_subgroup(group, symmetry):
            return []
        missing = elements_outside(group, symmetry)
        return [f"group {group} is not a subgroup of the symmetry {symmetry} of problem '{self.problem.name}': "
                f"the solution is not invariant under the {missing[0]}, which a {group}-invariant network "
                "cannot represent"]

    def describe(self) -> Mapping[str, Any]:
        return {"task": self.name, "problem": self.problem.describe(), "options": dict(self.options)}

