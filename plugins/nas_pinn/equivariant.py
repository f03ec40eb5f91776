"""Pointwise group-equivariant networks for physics-informed NNs on the plane.

A PINN evaluates its network at query points ``p = (x, y)``. If the problem is
symmetric under a finite group ``G`` of rotations/reflections of the plane
(about ``center``), the solution ``u`` satisfies ``u(g·p) = u(p)`` and a network
that is invariant by construction searches a smaller, better-suited function
space. :class:`EquivariantMLP` builds such a network from e2cnn's steerable
layers (obtained only through :func:`nas_pinn.e2compat.import_e2cnn`):

* every query point is one batch element on a 1x1 spatial grid, so an
  ``R2Conv`` with ``kernel_size=1`` is a dense layer whose weight matrix is
  constrained to commute with the group action (an *intertwiner*);
* the input field is the point itself, typed with the group's action on the
  plane (:func:`group_elements` gives those 2x2 matrices);
* hidden fields are ``width_mult`` copies of the regular representation
  (``width_mult * |G|`` channels);
* elementwise nonlinearities act on the regular fields (see
  :func:`pointwise_activation` for why that is equivariant);
* the output is ``n_out`` invariant scalars (trivial representation) and
  optionally ``n_vector_out`` vector fields that rotate/reflect with the plane.

Groups, by name (:data:`GROUPS`)::

    "none"  trivial group                  e2cnn TrivialOnR2()
    "C2"    rotations by 0, 180 deg        e2cnn Rot2dOnR2(2)
    "C4"    rotations by multiples of 90   e2cnn Rot2dOnR2(4)
    "D2"    C2 + the two axis mirrors      e2cnn FlipRot2dOnR2(2)
    "D4"    C4 + four mirrors (square)     e2cnn FlipRot2dOnR2(4)

Geometry (all matrices act on column vectors ``(x, y)``, x to the right, y up,
rotations counter-clockwise). e2cnn's ``FlipRot2dOnR2`` reflects across the
line at angle ``axis`` to the x axis, default ``axis = pi/2``: its flip element
``f`` is the mirror across the *y axis*, ``(x, y) -> (-x, y)``, and the dihedral
element ``(a, k)`` is ``R(2 pi k / N) @ F**a`` (flip first, then rotate). So D2 =
{I, -I, diag(-1, 1), diag(1, -1)}: invariance under D2 means symmetry under both
axis mirrors (and hence under the 180 deg rotation). C2 is {I, -I}: its
non-trivial element is the 180 deg rotation, which e2cnn represents by its
one-dimensional sign irrep, so the plane carries two copies of that irrep.
e2cnn 0.2.3 has no ``gspace.basespace_action`` representation (escnn has), and
its 2-dim dihedral irrep represents ``f`` as ``diag(1, -1)`` whatever the gspace
``axis`` is, so :func:`_plane_repr` assembles the plane action from irreps with
the change of basis that matches the geometric matrices above; the tests check
it element by element against :func:`group_elements`.

Costs: :func:`count_params` counts trainable parameters (for an equivariant
layer, the coefficients of the intertwiner basis and the invariant biases, about
``|G|`` times fewer than a dense layer of the same channel count).
:func:`macs_per_point` counts the multiply-accumulates that run at inference:
each 1x1 ``R2Conv`` is expanded once into a dense ``out_size x in_size`` matrix
(what ``R2Conv.export()`` turns into a plain ``Conv2d``, and what
:meth:`EquivariantMLP.export` turns into ``Linear`` layers), so it costs
``in_size * out_size`` MACs per point; biases, activations and residual adds are
not counted.

Example::

    >>> import torch
    >>> from nas_pinn.equivariant import EquivariantMLP, count_params, macs_per_point
    >>> net = EquivariantMLP("D4", depth=3, width_mult=2, activation="tanh")
    >>> net(torch.rand(5, 2)).shape
    torch.Size([5, 1])
    >>> count_params(net), macs_per_point(net)
    (77, 560)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from nas_core.errors import ConfigError

from .e2compat import import_e2cnn

__all__ = [
    "ACTIVATIONS",
    "GROUPS",
    "EquivariantMLP",
    "EquivariantMLPConfig",
    "count_params",
    "group_elements",
    "group_order",
    "is_subgroup",
    "macs_per_point",
    "pointwise_activation",
]

#: Symmetry groups by name, smallest first.
GROUPS: tuple[str, ...] = ("none", "C2", "C4", "D2", "D4")

#: Elementwise nonlinearities by name. All are smooth, so derivatives of any
#: order (PINN residuals need up to 4th for a biharmonic operator) exist.
ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "tanh": torch.tanh,
    "sin": torch.sin,
    "silu": F.silu,
    "gelu": F.gelu,
}

# (number of rotations N, has reflections) for each group name.
_STRUCTURE: dict[str, tuple[int, bool]] = {
    "none": (1, False),
    "C2": (2, False),
    "C4": (4, False),
    "D2": (2, True),
    "D4": (4, True),
}

# Buffers in which e2cnn's R2Conv caches its expanded filter in eval mode.
_R2CONV_CACHES = ("filter", "expanded_bias")

# e2cnn's default FlipRot2dOnR2 reflection axis (radians from the x axis).
_E2CNN_FLIP_AXIS = math.pi / 2


def _check_group(group: str) -> str:
    if not isinstance(group, str) or group not in _STRUCTURE:
        raise ConfigError(f"unknown symmetry group {group!r}; choose one of {', '.join(GROUPS)}")
    return group


def _rotation(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    # Every angle used here is a multiple of 90 degrees: round to exact integers
    # (+ 0.0 turns -0.0 into 0.0).
    return np.rint(np.array([[c, -s], [s, c]])) + 0.0


def _mirror(axis: float) -> np.ndarray:
    """Reflection across the line through the origin at angle ``axis``."""
    c, s = math.cos(2 * axis), math.sin(2 * axis)
    return np.rint(np.array([[c, s], [s, -c]])) + 0.0


def group_elements(group: str) -> list[np.ndarray]:
    """The 2x2 matrices by which the elements of ``group`` act on ``(x, y)``.

    Order matches e2cnn's ``fibergroup.elements``: rotations ``R(2 pi k / N)``
    for ``k = 0..N-1``, then (dihedral groups) ``R(2 pi k / N) @ M`` where ``M``
    is the mirror ``(x, y) -> (-x, y)`` (e2cnn's default flip axis, the y axis).

    >>> [m.tolist() for m in group_elements("C2")]
    [[[1.0, 0.0], [0.0, 1.0]], [[-1.0, 0.0], [0.0, -1.0]]]
    """
    n, flips = _STRUCTURE[_check_group(group)]
    rotations = [_rotation(2 * math.pi * k / n) for k in range(n)]
    if not flips:
        return rotations
    mirror = _mirror(_E2CNN_FLIP_AXIS)
    return rotations + [r @ mirror + 0.0 for r in rotations]


def group_order(group: str) -> int:
    """Number of elements of ``group`` (the size of its regular representation)."""
    n, flips = _STRUCTURE[_check_group(group)]
    return n * (2 if flips else 1)


def is_subgroup(a: str, b: str) -> bool:
    """Whether group ``a`` is a subgroup of ``b`` as transformations of the plane.

    Reflexive (every group is a subgroup of itself). Decided from the matrices
    of :func:`group_elements`, so it agrees with the geometry by construction:
    none < C2 < C4 < D4 and C2 < D2 < D4; C4 and D2 are not comparable.
    """
    in_b = {tuple(m.ravel()) for m in group_elements(b)}
    return all(tuple(m.ravel()) in in_b for m in group_elements(a))


# ----------------------------------------------------------------------------
# e2cnn side


@lru_cache(maxsize=None)
def _gspace(group: str) -> Any:
    """The e2cnn gspace of ``group`` (cached: e2cnn caches its groups too)."""
    gspaces = import_e2cnn().gspaces
    _check_group(group)
    if group == "none":
        return gspaces.TrivialOnR2()
    n, flips = _STRUCTURE[group]
    if flips:
        gspace = gspaces.FlipRot2dOnR2(n)
        if not math.isclose(gspace.axis, _E2CNN_FLIP_AXIS):
            raise ConfigError(f"e2cnn FlipRot2dOnR2 axis is {gspace.axis}, expected pi/2")
        return gspace
    return gspaces.Rot2dOnR2(n)


_PLANE_REPR_NAME = "nas_pinn_plane"


def _plane_repr(group: str) -> Any:
    """The e2cnn representation by which ``group`` acts on the coordinates ``(x, y)``.

    Built from irreps so that ``rho(elements[i]) == group_elements(group)[i]``:

    * none: two trivial irreps;
    * C2: two copies of the sign irrep (the 180 deg rotation is ``-I``);
    * C4: the frequency-1 irrep, which is the rotation matrix itself;
    * D2: all irreps are 1-d; ``x`` changes sign under the rotation and the
      y-axis mirror (irrep (1,1)), ``y`` only under the rotation (irrep (0,1));
    * D4: the 2-d irrep (1,1), which represents the flip as ``diag(1, -1)``
      (x-axis mirror), conjugated by ``R(axis)`` to make it the y-axis mirror
      that e2cnn's gspace uses; rotations commute with ``R(axis)``.
    """
    gspace = _gspace(group)
    fiber = gspace.fibergroup
    if _PLANE_REPR_NAME in fiber.representations:
        return fiber.representations[_PLANE_REPR_NAME]
    directsum = import_e2cnn().group.directsum
    if group == "none":
        parts, basis = [fiber.trivial_representation] * 2, None
    elif group == "C2":
        parts, basis = [fiber.irrep(1)] * 2, None
    elif group == "C4":
        parts, basis = [fiber.irrep(1)], None
    elif group == "D2":
        parts, basis = [fiber.irrep(1, 1), fiber.irrep(0, 1)], None
    else:
        parts, basis = [fiber.irrep(1, 1)], _rotation(gspace.axis)
    return directsum(parts, change_of_basis=basis, name=_PLANE_REPR_NAME)


def _elements(group: str) -> list[Any]:
    """e2cnn's group elements, in the order of :func:`group_elements`."""
    return list(_gspace(group).fibergroup.elements)


def pointwise_activation(field_type: Any, name: str) -> Any:
    """An e2cnn ``EquivariantModule`` applying ``ACTIVATIONS[name]`` elementwise.

    Why this is equivariant: e2cnn's regular representation maps every group
    element to a *permutation* matrix ``P`` (the fibre holds one value per group
    element and ``g`` shuffles them), and an elementwise function ``s``
    commutes with any permutation, ``s(P v) = P s(v)``. The same holds for
    trivial fields (``P = 1``). It would not hold for, e.g., the 2-d rotation
    irrep, so field types whose representations do not declare ``"pointwise"``
    support are rejected with a :class:`~nas_core.errors.ConfigError`.
    """
    return _make_activation_class()(field_type, name)


@lru_cache(maxsize=None)
def _make_activation_class() -> type:
    e2nn = import_e2cnn().nn

    class PointwiseActivation(e2nn.EquivariantModule):
        __doc__ = pointwise_activation.__doc__

        def __init__(self, field_type: Any, name: str) -> None:
            super().__init__()
            if name not in ACTIVATIONS:
                raise ConfigError(
                    f"unknown activation {name!r}; choose one of {', '.join(ACTIVATIONS)}"
                )
            for rep in field_type.representations:
                if "pointwise" not in rep.supported_nonlinearities:
                    raise ConfigError(
                        f"representation {rep.name!r} does not admit pointwise activations; "
                        "use regular or trivial fields"
                    )
            self.in_type = field_type
            self.out_type = field_type
            self.name = name
            self._fn = ACTIVATIONS[name]

        def forward(self, x: Any) -> Any:
            assert x.type == self.in_type
            return e2nn.GeometricTensor(self._fn(x.tensor), self.out_type)

        def evaluate_output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
            return input_shape

        def extra_repr(self) -> str:
            return f"{self.name}, {self.in_type.size} channels"

    return PointwiseActivation


@lru_cache(maxsize=None)
def _make_residual_class() -> type:
    e2nn = import_e2cnn().nn

    class Residual(e2nn.EquivariantModule):
        """``x + body(x)``; equivariant because sums of equivariant maps of one type are."""

        def __init__(self, body: Any) -> None:
            super().__init__()
            if body.in_type != body.out_type:
                raise ConfigError("a residual block needs matching input and output field types")
            self.in_type = body.in_type
            self.out_type = body.out_type
            self.body = body

        def forward(self, x: Any) -> Any:
            return x + self.body(x)

        def evaluate_output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
            return input_shape

    return Residual


@lru_cache(maxsize=None)
def _make_head_class() -> type:
    e2nn = import_e2cnn().nn

    class Head(e2nn.EquivariantModule):
        """Final 1x1 layers: one ``R2Conv`` to the scalars, one to the vector fields.

        Separate convolutions rather than one to the mixed type, because e2cnn
        0.2.3 assembles a filter with several (input, output) type pairs in a
        ``torch.zeros`` of the *default* dtype, which breaks ``.double()``.
        """

        def __init__(self, hidden: Any, out_type: Any, n_scalar: int, n_vector: int) -> None:
            super().__init__()
            self.in_type = hidden
            self.out_type = out_type
            gspace, reps = out_type.gspace, out_type.representations
            parts = [reps[:n_scalar], reps[n_scalar : n_scalar + n_vector]]
            self.convs = torch.nn.ModuleList(
                e2nn.R2Conv(hidden, e2nn.FieldType(gspace, part), kernel_size=1, recompute=True)
                for part in parts
                if part
            )

        def forward(self, x: Any) -> Any:
            outs = [conv(x).tensor for conv in self.convs]
            return e2nn.GeometricTensor(torch.cat(outs, dim=1), self.out_type)

        def evaluate_output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
            return (input_shape[0], self.out_type.size, *input_shape[2:])

    return Head


# ----------------------------------------------------------------------------
# the network


@dataclass(frozen=True)
class EquivariantMLPConfig:
    """Everything that defines an :class:`EquivariantMLP`; validated on creation.

    ``depth`` is the number of hidden layers (each a 1x1 ``R2Conv`` followed by
    the activation); a final ``R2Conv`` maps to the outputs, so the network
    has ``depth + 1`` linear layers. Weights use e2cnn's generalised He
    initialisation; biases are drawn like ``torch.nn.Linear``'s (see
    ``EquivariantMLP._init_biases``). With ``residual=True`` hidden layers 2..depth
    compute ``h + act(conv(h))`` (the first changes the field type, so it cannot
    be residual); parameter counts do not change.
    """

    group: str = "C4"
    in_type: str = "coords"
    depth: int = 3
    width_mult: int = 2
    activation: str = "tanh"
    residual: bool = False
    n_out: int = 1
    n_vector_out: int = 0
    center: tuple[float, float] = (0.0, 0.0)

    def __post_init__(self) -> None:
        _check_group(self.group)
        if self.in_type != "coords":
            raise ConfigError(f"unknown in_type {self.in_type!r}; only 'coords' (x, y) is supported")
        for field, low in (("depth", 1), ("width_mult", 1), ("n_out", 0), ("n_vector_out", 0)):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"{field} must be an integer >= {low}, got {value!r}")
        if not isinstance(self.residual, bool):
            raise ConfigError(f"residual must be True or False, got {self.residual!r}")
        if self.n_out + self.n_vector_out < 1:
            raise ConfigError("the network needs an output: set n_out >= 1 or n_vector_out >= 1")
        if self.activation not in ACTIVATIONS:
            raise ConfigError(
                f"unknown activation {self.activation!r}; choose one of {', '.join(ACTIVATIONS)}"
            )
        if len(self.center) != 2:
            raise ConfigError(f"center must be a pair (x, y), got {self.center!r}")
        object.__setattr__(self, "center", (float(self.center[0]), float(self.center[1])))

    @property
    def hidden_channels(self) -> int:
        """Channels per hidden layer: ``width_mult * |G|``."""
        return self.width_mult * group_order(self.group)


class EquivariantMLP(torch.nn.Module):
    """A pointwise ``group``-equivariant MLP mapping points ``(N, 2)`` to ``(N, n_out + 2 n_vector_out)``.

    Columns ``[0, n_out)`` of the output are invariant, ``f(c + g(p - c)) =
    f(p)`` for every ``g`` of :func:`group_elements` and the ``center`` ``c``;
    each following pair is a vector field, ``v(c + g(p - c)) = g v(p)``.
    Callers (DeepXDE) see an ordinary module on plain tensors: :meth:`forward`
    runs the expanded e2cnn filters as dense products, and
    :meth:`forward_geometric` is the same network on e2cnn ``GeometricTensor`` s
    through the equivariant :attr:`blocks`. Autograd w.r.t. the input works
    to any order (all activations are smooth).

    In eval mode e2cnn caches each layer's expanded filter; this class builds
    that cache under ``torch.no_grad()`` (so train in train mode, as DeepXDE
    does), refreshes it after ``load_state_dict`` and keeps it out of the
    state dict, whose keys are therefore the same in both modes.

    >>> net = EquivariantMLP("C4", depth=2, width_mult=1, activation="sin", residual=True)
    >>> p = torch.tensor([[0.3, -0.7]], dtype=torch.float32)
    >>> q = p @ torch.tensor([[0.0, 1.0], [-1.0, 0.0]])   # p rotated by 90 degrees
    >>> bool(torch.allclose(net(p), net(q), atol=1e-6))
    True
    """

    def __init__(
        self,
        group: str = "C4",
        in_type: str = "coords",
        depth: int = 3,
        width_mult: int = 2,
        activation: str = "tanh",
        residual: bool = False,
        n_out: int = 1,
        *,
        n_vector_out: int = 0,
        center: tuple[float, float] = (0.0, 0.0),
    ) -> None:
        super().__init__()
        self.config = EquivariantMLPConfig(
            group=group,
            in_type=in_type,
            depth=depth,
            width_mult=width_mult,
            activation=activation,
            residual=residual,
            n_out=n_out,
            n_vector_out=n_vector_out,
            center=center,
        )
        e2nn = import_e2cnn().nn
        gspace = _gspace(group)
        plane = _plane_repr(group)
        #: e2cnn field types of the input points and of the outputs.
        self.in_field = e2nn.FieldType(gspace, [plane])
        hidden = e2nn.FieldType(gspace, [gspace.regular_repr] * width_mult)
        outputs = [gspace.trivial_repr] * n_out + [plane] * n_vector_out
        self.out_field = e2nn.FieldType(gspace, outputs)
        residual_cls = _make_residual_class()

        def layer(in_field: Any) -> Any:
            # recompute=True: e2cnn would otherwise share one basis module (with
            # its buffers) between all layers and networks of equal types, so
            # `.double()` or `.to(device)` on one network would change the others.
            conv = e2nn.R2Conv(in_field, hidden, kernel_size=1, recompute=True)
            return e2nn.SequentialModule(conv, pointwise_activation(hidden, activation))

        blocks = [layer(self.in_field)]
        for _ in range(depth - 1):
            block = layer(hidden)
            blocks.append(residual_cls(block) if residual else block)
        blocks.append(_make_head_class()(hidden, self.out_field, n_out, n_vector_out))
        #: The equivariant blocks, each an e2cnn ``EquivariantModule`` with
        #: ``in_type``/``out_type``: lift, ``depth - 1`` hidden blocks, head.
        self.blocks = torch.nn.ModuleList(blocks)
        self.register_buffer("center", torch.tensor(self.config.center), persistent=False)
        self._init_biases()
        self.train(True)  # drops the zero filter caches e2cnn registers at construction
        self.register_load_state_dict_post_hook(self._refresh_caches)

    def _init_biases(self) -> None:
        """Draw biases like ``torch.nn.Linear`` does, ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``.

        e2cnn starts biases at zero. With an odd activation (tanh, sin) and a
        group containing -I (C2, C4, D2, D4) zero biases make every hidden layer
        an odd function of the point, whose invariant part vanishes: the network
        would start as the constant 0, a symmetric saddle of the loss.
        """
        with torch.no_grad():
            for conv in self._convs():
                if conv.bias is not None:
                    bound = 1.0 / math.sqrt(conv.in_type.size)
                    conv.bias.uniform_(-bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Evaluate at points ``x`` of shape ``(N, 2)``; returns ``(N, n_out + 2 n_vector_out)``.

        Runs the e2cnn layers' expanded filters as dense matrix products (the
        filters are rebuilt from the weights at every call in train mode, as
        ``R2Conv`` does, so gradients reach the weights). This computes exactly
        :meth:`forward_geometric` (tested) at about half the cost of going
        through e2cnn's ``conv2d`` on 1x1 grids and its type checks.
        """
        if x.ndim != 2 or x.shape[1] != 2:
            raise ValueError(f"EquivariantMLP expects points of shape (N, 2), got {tuple(x.shape)}")
        act = ACTIVATIONS[self.config.activation]
        layers = self._dense_layers()
        h = act(F.linear(x - self.center.to(x.dtype), *layers[0]))
        for weight, bias in layers[1:-1]:
            z = act(F.linear(h, weight, bias))
            h = h + z if self.config.residual else z
        return F.linear(h, *layers[-1])

    def forward_geometric(self, x: Any) -> Any:
        """The same network on e2cnn ``GeometricTensor`` s: ``in_field`` (N, 2, 1, 1) to ``out_field``.

        Takes coordinates relative to ``center`` (``forward`` subtracts it first).

        Runs the equivariant blocks (:attr:`blocks`) one after the other; the
        reference implementation that :meth:`forward` reproduces.
        """
        for block in self.blocks:
            x = block(x)
        return x

    def _dense_layers(self) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
        """(weight, bias) of each layer as dense matrices; the head's convs are stacked."""
        layers = []
        for conv in self._convs():
            if conv.training:
                weight, bias = conv.expand_parameters()
            else:  # e2cnn's eval-mode cache, see train()
                weight, bias = conv.filter, conv.expanded_bias
            layers.append((weight[:, :, 0, 0], bias))
        depth = self.config.depth
        head = layers[depth:]
        if len(head) > 1:
            weight = torch.cat([w for w, _ in head], dim=0)
            bias = torch.cat([w.new_zeros(w.shape[0]) if b is None else b for w, b in head], dim=0)
            head = [(weight, bias)]
        return layers[:depth] + head

    def train(self, mode: bool = True) -> EquivariantMLP:
        # e2cnn's R2Conv expands its filter into cached buffers when switched to
        # eval mode and deletes them in train mode. We expand under no_grad (so
        # the cache holds no graph to the weights) and keep the cache out of
        # state_dict (so its keys do not depend on the mode).
        if mode:
            super().train(True)
        else:
            with torch.no_grad():
                super().train(False)
        for conv in self._convs():
            conv._non_persistent_buffers_set.update(
                name for name in _R2CONV_CACHES if name in conv._buffers
            )
        return self

    def _convs(self) -> list[Any]:
        return [m for m in self.modules() if type(m).__name__ == "R2Conv"]

    def _refresh_caches(self, *_: Any) -> None:
        """Re-expand eval-mode filters, e.g. after ``load_state_dict`` changed the weights."""
        if not self.training:
            for conv in self._convs():
                conv.train(True)
            self.train(False)

    def export(self) -> torch.nn.Module:
        """A plain-PyTorch copy for inference: dense ``Linear`` layers, no e2cnn.

        The dense weights are the expanded filters at the time of the call; the
        copy computes the same function (and has ``count_params`` equal to the
        dense layer sizes, unlike this module).
        """
        linears = []
        with torch.no_grad():
            for weight, bias in self._dense_layers():
                linear = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
                linear = linear.to(dtype=weight.dtype)
                linear.weight.copy_(weight)
                if bias is not None:
                    linear.bias.copy_(bias)
                linears.append(linear)
        return _ExportedMLP(linears, self.config.activation, self.config.residual, self.center.clone())

    def extra_repr(self) -> str:
        c = self.config
        return (
            f"group={c.group}, depth={c.depth}, width_mult={c.width_mult} "
            f"({c.hidden_channels} channels), activation={c.activation}, residual={c.residual}, "
            f"n_out={c.n_out}, n_vector_out={c.n_vector_out}"
        )


class _ExportedMLP(torch.nn.Module):
    """Dense twin of an :class:`EquivariantMLP` (see :meth:`EquivariantMLP.export`)."""

    def __init__(
        self, linears: list[torch.nn.Linear], activation: str, residual: bool, center: torch.Tensor
    ) -> None:
        super().__init__()
        self.layers = torch.nn.ModuleList(linears)
        self.activation = activation
        self.residual = residual
        self.register_buffer("center", center)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        act = ACTIVATIONS[self.activation]
        h = act(self.layers[0](x - self.center.to(x.dtype)))
        for layer in self.layers[1:-1]:
            h = h + act(layer(h)) if self.residual else act(layer(h))
        return self.layers[-1](h)


def count_params(module: torch.nn.Module) -> int:
    """Trainable parameters of ``module`` (buffers such as e2cnn's sampled bases excluded)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def macs_per_point(module: torch.nn.Module) -> int:
    """Multiply-accumulates per query point at inference.

    Sums ``in_size * out_size`` over the 1x1 ``R2Conv`` layers (equivalently the
    ``Linear`` layers of an exported network): the expanded dense filter is what
    runs once the weights are fixed. Biases, activations and residual adds are
    not counted.
    """
    total = 0
    for m in module.modules():
        if type(m).__name__ == "R2Conv":
            total += m.in_type.size * m.out_type.size * m.kernel_size**2
        elif isinstance(m, torch.nn.Linear):
            total += m.in_features * m.out_features
    return total
