"""The networks a PINN candidate is made of, and their per-point hardware costs.

:class:`PinnNet` is what the search space builds: a *core* network from points
``(N, 2)`` to raw outputs, then the output transform

    ``y = core(p) * output_scale``            (soft boundary conditions)
    ``y = core(p) * output_scale * d(p)``     (hard boundary conditions)

with ``d`` the box factor of :meth:`nas_pinn.problems.Problem.distance`
(``(1 - x^2)(1 - y^2)`` on ``[-1, 1]^2``), which vanishes on the boundary and is
invariant under every symmetry of the box about its centre. So a
``G``-invariant core gives a ``G``-invariant field with either kind of boundary
condition, and the transform is part of the module (costs, export and the
invariance tests see the whole network). DeepXDE gets this module wrapped in a
``deepxde.nn.pytorch.NN`` by the estimator.

Cores:

* :class:`nas_pinn.equivariant.EquivariantMLP` for every group (``none``
  included), ``channels = width_mult * |G|`` per hidden layer;
* :class:`FourierMLP` -- random Fourier features ``[sin 2 pi B p, cos 2 pi B p]``
  followed by a dense MLP. Offered **only with the group 'none'**: a dense layer
  after generic Fourier features breaks every symmetry, and making them
  symmetric would need a permutation-representation input field (orbits of
  frequencies) that the coordinate-typed equivariant input layer does not take.
* any ``nn.Module`` with ``nn.Linear`` layers in order, e.g. DeepXDE's ``FNN``
  (the benchmark's reference network).

Costs (:func:`pinn_costs`) are for the *exported* dense network evaluated in
float32 at one query point: MACs are ``sum in * out`` over the dense layers
(what :func:`nas_pinn.equivariant.macs_per_point` counts), plus the Fourier
projection ``2 * n_features`` and the hard-BC transform (4 multiplies for
``d(p)`` and one per output; the output scale folds into the last layer).
Nonlinearities (tanh, sin, SiLU, GELU, and the Fourier sin/cos) are counted
separately as ``activations_per_point``, because on a microcontroller one costs
tens of cycles, far more than a MAC. A target's speed model is
``cycles = cycles_per_mac * MACs + cycles_per_activation * activations +
layer_overhead_cycles * layers`` (``cycles_per_activation`` from the target's
``[extra]`` table, 0 when it has none), see :func:`pinn_costs` for the grid.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from nas_core.hardware import HardwareTarget

from .equivariant import ACTIVATIONS, EquivariantMLP, count_params

__all__ = ["FourierMLP", "PinnNet", "dense_layout", "pinn_costs", "pinn_cost_names"]

#: multiplies of the hard-BC factor d(p) = (x - x0)(x1 - x)(y - y0)(y1 - y) / norm
HARD_BC_FACTOR_MACS = 4


class FourierMLP(nn.Module):
    """Random Fourier features then a dense MLP (group 'none' only, see the module docstring).

    ``B`` (``n_features x 2``) is drawn from ``N(0, sigma^2)`` with torch's global
    generator when the module is built (the study seeds it per trial) and kept
    as a buffer. Dense layers use Glorot-uniform weights and zero biases, like
    DeepXDE's ``FNN``.
    """

    def __init__(self, n_features: int, depth: int, width: int, activation: str, residual: bool, n_out: int,
                 *, sigma: float = 1.0, center: tuple[float, float] = (0.0, 0.0)) -> None:
        super().__init__()
        self.n_features, self.depth, self.width = n_features, depth, width
        self.activation, self.residual, self.sigma = activation, residual, sigma
        self.register_buffer("B", torch.randn(n_features, 2) * sigma)
        self.register_buffer("center", torch.tensor(center, dtype=torch.float32))
        sizes = [2 * n_features] + [width] * depth + [n_out]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        for layer in self.layers:
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = 2 * math.pi * (x - self.center.to(x.dtype)) @ self.B.to(x.dtype).T
        h = torch.cat([torch.sin(z), torch.cos(z)], dim=1)
        act = ACTIVATIONS[self.activation]
        h = act(self.layers[0](h))
        for layer in self.layers[1:-1]:
            h = h + act(layer(h)) if self.residual else act(layer(h))
        return self.layers[-1](h)


class PinnNet(nn.Module):
    """``core`` followed by the output scale and (optionally) the hard-BC factor of ``box``."""

    def __init__(self, core: nn.Module, *, box: tuple[float, float, float, float], output_scale: tuple[float, ...],
                 hard_bc: bool, group: str = "none") -> None:
        super().__init__()
        self.core = core
        self.box = tuple(float(v) for v in box)
        self.hard_bc = bool(hard_bc)
        self.group = group
        self.register_buffer("output_scale", torch.tensor(output_scale, dtype=torch.float32))

    @property
    def n_out(self) -> int:
        return int(self.output_scale.numel())

    def distance(self, x: torch.Tensor) -> torch.Tensor:
        x0, x1, y0, y1 = self.box
        hx2, hy2 = ((x1 - x0) / 2) ** 2, ((y1 - y0) / 2) ** 2
        return (x[:, 0:1] - x0) * (x1 - x[:, 0:1]) * (x[:, 1:2] - y0) * (y1 - x[:, 1:2]) / (hx2 * hy2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.core(x) * self.output_scale.to(x.dtype)
        if self.hard_bc:
            y = y * self.distance(x)
        return y

    def extra_repr(self) -> str:
        return f"group={self.group}, hard_bc={self.hard_bc}, box={self.box}"


# ----------------------------------------------------------------------------
# costs


def dense_layout(core: nn.Module) -> dict[str, Any]:
    """Shapes of the exported dense network: ``layers`` [(in, out)], ``residual``, ``extra_macs``, ``extra_acts``.

    ``extra_macs``/``extra_acts`` cover the Fourier projection and its sin/cos.
    """
    if isinstance(core, EquivariantMLP):
        c = core.config
        ch, n_out = c.hidden_channels, c.n_out + 2 * c.n_vector_out
        layers = [(2, ch)] + [(ch, ch)] * (c.depth - 1) + [(ch, n_out)]
        return {"layers": layers, "residual": c.residual, "extra_macs": 0, "extra_acts": 0, "extra_floats": 0}
    if isinstance(core, FourierMLP):
        layers = [(lin.in_features, lin.out_features) for lin in core.layers]
        nf = core.n_features
        return {"layers": layers, "residual": core.residual, "extra_macs": 2 * nf, "extra_acts": 2 * nf,
                "extra_floats": 2 * nf}
    linears = [m for m in core.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise TypeError(f"cannot cost a {type(core).__name__}: it has no nn.Linear layers")
    return {"layers": [(m.in_features, m.out_features) for m in linears], "residual": False, "extra_macs": 0,
            "extra_acts": 0, "extra_floats": 0}


def pinn_cost_names(target: HardwareTarget | None) -> set[str]:
    names = {"params", "params_dense", "macs", "macs_per_point", "activations_per_point", "layers",
             "peak_act_bytes", "flash_fp32_bytes", "flash_int8_bytes"}
    if target is not None:
        names |= {"latency_ms", "latency_us_per_point", "grid_latency_ms"}
        if target.has_energy_model:
            names |= {"energy_uj", "grid_energy_uj"}
    return names


def pinn_costs(model: PinnNet, target: HardwareTarget | None = None, *, grid_n: int = 64) -> dict[str, float]:
    """Per-point costs of ``model`` exported to dense float32 layers, and on ``target`` if given.

    * ``params`` -- trainable parameters (for an equivariant core, the free
      intertwiner coefficients and invariant biases: what the search optimises);
    * ``params_dense`` -- weights and biases of the exported dense layers (what
      is stored on the device); ``flash_fp32_bytes = 4 * (params_dense + Fourier
      matrix)``, ``flash_int8_bytes`` one byte per dense parameter (int8 is given
      for comparison: a PINN needs float accuracy);
    * ``macs_per_point`` (also as ``macs``), ``activations_per_point``,
      ``layers`` (dense layers plus the Fourier projection);
    * ``peak_act_bytes`` -- float32 activations live at once for one point:
      ``max(in + out)`` over the layers, ``in + 2 out`` for a residual layer;
    * with a target: ``latency_ms``/``latency_us_per_point``/``energy_uj`` for one
      point, and ``grid_latency_ms``/``grid_energy_uj`` for the field on an
      ``grid_n x grid_n`` grid, evaluated in tiles of as many points as fit in
      ``extra.arena_bytes`` (default ``sram_bytes``), each tile paying the
      per-layer overhead once.
    """
    layout = dense_layout(model.core)
    layers = layout["layers"]
    n_out = layers[-1][1]
    params_dense = sum(i * o + o for i, o in layers)
    macs = sum(i * o for i, o in layers) + layout["extra_macs"]
    if model.hard_bc:
        macs += HARD_BC_FACTOR_MACS + n_out
    acts = sum(o for _, o in layers[:-1]) + layout["extra_acts"]
    n_layers = len(layers) + (1 if layout["extra_macs"] else 0)
    peak_floats = 0
    for k, (i, o) in enumerate(layers):
        live = i + o + (o if layout["residual"] and 0 < k < len(layers) - 1 else 0)
        peak_floats = max(peak_floats, live)
    if layout["extra_macs"]:
        peak_floats = max(peak_floats, 2 + 2 * layout["extra_macs"])
    out: dict[str, float] = {
        "params": float(count_params(model)),
        "params_dense": float(params_dense),
        "macs": float(macs),
        "macs_per_point": float(macs),
        "activations_per_point": float(acts),
        "layers": float(n_layers),
        "peak_act_bytes": float(4 * peak_floats),
        "flash_fp32_bytes": float(4 * (params_dense + layout["extra_floats"])),
        "flash_int8_bytes": float(params_dense),
    }
    if target is not None:
        cpa = float(target.extra.get("cycles_per_activation", 0.0))
        per_point = target.cycles_per_mac * macs + cpa * acts
        cycles = per_point + target.layer_overhead_cycles * n_layers
        arena = float(target.extra.get("arena_bytes", target.sram_bytes))
        n_points = grid_n * grid_n
        tile = max(1, min(n_points, int(arena // (4 * peak_floats))))
        grid_cycles = n_points * per_point + math.ceil(n_points / tile) * target.layer_overhead_cycles * n_layers
        out["latency_ms"] = cycles / target.clock_hz * 1e3
        out["latency_us_per_point"] = cycles / target.clock_hz * 1e6
        out["grid_latency_ms"] = grid_cycles / target.clock_hz * 1e3
        if target.has_energy_model:
            e = target.energy_per_cycle()
            out["energy_uj"] = cycles * e * 1e6
            out["grid_energy_uj"] = grid_cycles * e * 1e6
    return out
