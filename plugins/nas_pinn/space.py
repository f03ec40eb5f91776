"""The PINN search space: symmetry group, depth, width, activation, block, boundary conditions, Fourier features.

Dimensions (in this order):

* ``group`` -- ``none``, ``C2``, ``C4``, ``D2``, ``D4``: the symmetry the network
  has by construction (e2cnn equivariant layers, see :mod:`nas_pinn.equivariant`);
* ``depth`` -- hidden layers, 2..5;
* ``channels`` -- hidden channels per layer, 8..64 in multiples of 8: the width in
  multiples of the group's regular representation is ``width_mult = channels /
  |G|`` (every |G| divides 8), so one value means the same layer size, and
  about the same MACs per point, for every group, while an equivariant layer
  has about ``|G|`` times fewer free parameters than a dense one;
* ``activation`` -- ``tanh``, ``sin``, ``silu``, ``gelu``;
* ``block`` -- ``plain`` or ``residual`` (``h + act(W h)`` on hidden layers 2..depth);
* ``bc`` -- ``hard`` (output transform ``d(p) * N(p)``, exact zero boundary values)
  or ``soft`` (boundary penalty in the loss);
* ``fourier`` -- number of random Fourier features (0 = none), only when
  ``group == 'none'`` (generic Fourier features are not symmetric; see
  :mod:`nas_pinn.network`).

The space is bound to a problem (built-in name, ``module:attribute`` path or
:class:`~nas_pinn.problems.Problem`), which sets the number of outputs, the box
of the hard-BC factor, the output scale and the centre of the group action.
"""

from __future__ import annotations

import copy
from typing import Any

from nas_core.errors import ConfigError
from nas_core.space import Architecture, Categorical, Integer, SearchSpace

from .equivariant import GROUPS, EquivariantMLP, group_order
from .network import FourierMLP, PinnNet
from .problems import Problem, resolve_problem

__all__ = ["PinnSpace", "build_network"]

CHANNELS = (8, 16, 24, 32, 48, 64)
FOURIER = (0, 16, 32)


def build_network(arch: Architecture | dict, problem: Problem) -> PinnNet:
    """The :class:`PinnNet` of ``arch`` for ``problem`` (weights drawn from torch's global generator)."""
    a = arch.to_dict() if isinstance(arch, Architecture) else dict(arch)
    group, channels = a["group"], int(a["channels"])
    order = group_order(group)
    if channels % order:
        raise ConfigError(f"channels={channels} is not a multiple of |{group}| = {order}")
    center = tuple(float(c) for c in problem.center_point)
    residual = a["block"] == "residual"
    if a.get("fourier", 0):
        if group != "none":
            raise ConfigError(f"Fourier features need group 'none' (they are not {group}-symmetric)")
        core: Any = FourierMLP(int(a["fourier"]), int(a["depth"]), channels, a["activation"], residual,
                               problem.n_out, center=center)
    else:
        core = EquivariantMLP(group, depth=int(a["depth"]), width_mult=channels // order, activation=a["activation"],
                              residual=residual, n_out=problem.n_out, center=center)
    return PinnNet(core, box=problem.box, output_scale=problem.output_scale, hard_bc=a["bc"] == "hard", group=group)


class PinnSpace(SearchSpace):
    """Equivariant PINN networks for one problem (default: the built-in ``poisson``)."""

    def __init__(self, problem: Any = "poisson") -> None:
        super().__init__("pinn-equivariant-mlp", [
            Categorical("group", list(GROUPS)),
            Integer("depth", 2, 5),
            Categorical("channels", list(CHANNELS)),
            Categorical("activation", ["tanh", "sin", "silu", "gelu"]),
            Categorical("block", ["plain", "residual"]),
            Categorical("bc", ["hard", "soft"]),
            Categorical("fourier", list(FOURIER), when={"group": ["none"]}),
        ])
        self.problem_spec = problem
        self._problem: Problem | None = problem if isinstance(problem, Problem) else None

    @property
    def problem(self) -> Problem:
        if self._problem is None:
            self._problem = resolve_problem(self.problem_spec)
        return self._problem

    def for_problem(self, problem: Any) -> "PinnSpace":
        """A copy with the same (possibly restricted) dimensions, bound to another problem."""
        out = copy.copy(self)
        out.problem_spec = problem
        out._problem = problem if isinstance(problem, Problem) else None
        return out

    def build(self, arch: Architecture) -> PinnNet:
        return build_network(arch, self.problem)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        if not isinstance(self.problem_spec, Problem):
            state["_problem"] = None  # rebuilt from the spec in the worker
        return state
