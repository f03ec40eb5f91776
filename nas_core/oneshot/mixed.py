"""Mixed operations and the protocol of a space that supports them.

A :class:`MixedOp` holds the candidate operations of one decision (one edge of
a cell, one layer of a macro network) and runs in one of two modes:

* **weighted** (DARTS): ``sum_i w_i * candidate_i(x)`` with weights the
  searcher sets, usually ``softmax(alpha)`` of the decision;
* **single path** (single-path one-shot): only the chosen candidate runs.

Several mixed ops may share one decision *key* (for example every layer of a
stage whose blocks the space ties together); they then share its weights and
its choice. A network that contains mixed ops is an ordinary ``nn.Module``; the
functions here find its mixed ops, set their weights or their path, measure the
cost of every candidate and cut a standalone sub-network out of it
(:func:`extract_path`), whose outputs equal the mixed network's on that path.

A space *declares mixed-op support* with a :class:`MixedOpSupport`: it builds
the mixed network, names the candidates of each decision and turns one choice
per decision back into an :class:`~nas_core.space.Architecture` of the space.
:func:`mixed_support` finds it: the space's own ``mixed_support()`` method if it
has one (the digits and ECG spaces have), else a factory registered with
:func:`register_mixed_support` (for a space class one cannot edit).

Example::

    >>> import torch, torch.nn as nn
    >>> op = MixedOp("k", {"a": nn.Linear(3, 3), "skip": nn.Identity()})
    >>> x = torch.randn(2, 3)
    >>> op.set_weights(torch.tensor([0.25, 0.75]))
    >>> torch.allclose(op(x), 0.25 * op.candidates[0](x) + 0.75 * x)
    True
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence, cast

import torch
from torch import nn

from nas_core.errors import ConfigError
from nas_core.space import Architecture, SearchSpace

__all__ = [
    "CandidateCost",
    "MixedOp",
    "MixedOpSupport",
    "candidate_costs",
    "decisions",
    "expected_cost",
    "extract_path",
    "mixed_ops",
    "mixed_support",
    "register_mixed_support",
    "set_path",
    "set_weights",
]


class MixedOp(nn.Module):
    """Candidate operations of one decision, run weighted (DARTS) or along one path.

    Args:
        key: the decision this op belongs to (ops sharing a key share its weights and choice).
        candidates: ``{name: module}`` in a fixed order; every candidate maps the
            op's input to an output of the same shape (needed for the weighted sum;
            single-path use tolerates differing shapes).
    """

    def __init__(self, key: str, candidates: Mapping[str, nn.Module] | Sequence[tuple[str, nn.Module]]):
        super().__init__()
        items = list(candidates.items()) if isinstance(candidates, Mapping) else list(candidates)
        if not items:
            raise ConfigError(f"mixed op '{key}' needs at least one candidate")
        names = [str(n) for n, _ in items]
        if len(set(names)) != len(names):
            raise ConfigError(f"mixed op '{key}' has duplicate candidate names {names}")
        self.key = str(key)
        self.names: tuple[str, ...] = tuple(names)
        self.candidates = nn.ModuleList([m for _, m in items])
        #: candidates without parameters (skip, pooling, zero): what DARTS collapses into
        self.param_free: tuple[bool, ...] = tuple(next(m.parameters(), None) is None for _, m in items)
        self._weights: torch.Tensor | None = None
        self._index: int | None = None

    def set_weights(self, weights: torch.Tensor | None) -> None:
        """Weighted mode with these (differentiable) weights, one per candidate."""
        if weights is not None and tuple(weights.shape) != (len(self.names),):
            raise ConfigError(f"mixed op '{self.key}': expected {len(self.names)} weights, got shape {tuple(weights.shape)}")
        self._weights, self._index = weights, None

    def set_index(self, index: int | None) -> None:
        """Single-path mode: only candidate ``index`` runs."""
        if index is not None and not 0 <= int(index) < len(self.names):
            raise ConfigError(f"mixed op '{self.key}': candidate index {index} outside 0..{len(self.names) - 1}")
        self._index, self._weights = (None if index is None else int(index)), None

    def forward(self, x: Any) -> Any:
        if self._index is not None:
            return self.candidates[self._index](x)
        if self._weights is None:
            raise RuntimeError(f"mixed op '{self.key}' has neither weights nor a path; call set_weights or set_path first")
        w = self._weights
        out = None
        for i, cand in enumerate(self.candidates):
            y = w[i] * cand(x)
            out = y if out is None else out + y
        return out

    def extra_repr(self) -> str:
        return f"key={self.key!r}, candidates={list(self.names)}"


def mixed_ops(module: nn.Module) -> list[MixedOp]:
    """The mixed ops of ``module`` in module order."""
    return [m for m in module.modules() if isinstance(m, MixedOp)]


def decisions(module: nn.Module) -> "OrderedDict[str, tuple[str, ...]]":
    """Decision key -> candidate names, in order of first appearance; ops sharing a key must agree."""
    out: OrderedDict[str, tuple[str, ...]] = OrderedDict()
    for op in mixed_ops(module):
        if op.key in out and out[op.key] != op.names:
            raise ConfigError(f"mixed ops sharing decision '{op.key}' disagree on candidates: {out[op.key]} vs {op.names}")
        out.setdefault(op.key, op.names)
    if not out:
        raise ConfigError(f"{type(module).__name__} contains no MixedOp")
    return out


def set_weights(module: nn.Module, weights: Mapping[str, torch.Tensor]) -> None:
    """Weighted mode for every mixed op: ``weights[op.key]`` (one tensor per decision)."""
    for op in mixed_ops(module):
        if op.key not in weights:
            raise ConfigError(f"no weights for decision '{op.key}'")
        op.set_weights(weights[op.key])


def _index_of(op: MixedOp, choice: int | str) -> int:
    if isinstance(choice, str):
        if choice not in op.names:
            raise ConfigError(f"decision '{op.key}' has no candidate {choice!r}; candidates: {list(op.names)}")
        return op.names.index(choice)
    return int(choice)


def set_path(module: nn.Module, path: Mapping[str, int | str]) -> None:
    """Single-path mode: decision key -> candidate index or name."""
    for op in mixed_ops(module):
        if op.key not in path:
            raise ConfigError(f"path has no choice for decision '{op.key}'")
        op.set_index(_index_of(op, path[op.key]))


def extract_path(module: nn.Module, path: Mapping[str, int | str]) -> nn.Module:
    """A standalone copy of ``module`` with every mixed op replaced by its chosen candidate.

    The copy shares nothing with ``module`` (weights are copied) and contains no
    :class:`MixedOp`; on the same inputs, in the same train/eval mode, it computes
    exactly what ``module`` computes with ``set_path(module, path)``.
    """
    chosen = {}
    for op in mixed_ops(module):
        if op.key not in path:
            raise ConfigError(f"path has no choice for decision '{op.key}'")
        chosen[id(op)] = op.candidates[_index_of(op, path[op.key])]
    memo: dict[int, Any] = {}
    new = copy.deepcopy(module, memo)

    def replace(parent: nn.Module, parent_old: nn.Module) -> None:
        for name, child in list(parent_old.named_children()):
            if isinstance(child, MixedOp):
                setattr(parent, name, memo[id(chosen[id(child)])])
            else:
                replace(getattr(parent, name), child)

    if isinstance(module, MixedOp):
        return cast(nn.Module, memo[id(chosen[id(module)])])  # the copy of the chosen candidate
    replace(new, module)
    return new


# -- costs -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CandidateCost:
    """Per-candidate costs of one mixed op (per sample), measured on the input the op sees."""

    key: str
    macs: tuple[float, ...]
    layers: tuple[float, ...]
    params: tuple[float, ...]

    def metric(self, name: str, target: Any = None) -> tuple[float, ...]:
        """``macs``, ``params``, or with a target ``latency_ms`` / ``energy_uj`` (linear in MACs and layers)."""
        if name in ("macs", "params"):
            return self.macs if name == "macs" else self.params
        if target is None:
            raise ConfigError(f"cost metric '{name}' needs a hardware target; use 'macs' or 'params' without one")
        from nas_core.hardware import estimate_latency_energy

        out = []
        for m, n in zip(self.macs, self.layers):
            lat, en = estimate_latency_energy(int(m), int(n), target)
            if name == "latency_ms":
                out.append(lat)
            elif name == "energy_uj":
                if en is None:
                    raise ConfigError(f"target {target.name!r} has no energy model; use 'latency_ms' or 'macs'")
                out.append(en)
            else:
                raise ConfigError(f"unknown cost metric {name!r}; use macs, params, latency_ms or energy_uj")
        return tuple(out)


def _dummy(shape: Any) -> tuple[torch.Tensor, ...]:
    if shape and isinstance(shape[0], (tuple, list)):
        return tuple(torch.zeros(1, *s) for s in shape)
    return (torch.zeros(1, *shape),)


def candidate_costs(module: nn.Module, input_shape: Any) -> tuple[list[CandidateCost], dict[str, float]]:
    """Per mixed op, the MACs, MAC layers and parameters of each candidate; and the fixed rest.

    One forward pass (batch 1, eval mode, uniform weights) records the input shape
    of every mixed op; each candidate is then measured alone on that shape with
    :func:`~nas_core.hardware.measure_costs`. The fixed part is the cost of the
    network along the first path minus the cost of the candidates on that path.
    """
    from nas_core.hardware import measure_costs

    ops = mixed_ops(module)
    shapes: dict[int, tuple[int, ...]] = {}

    def record(m: nn.Module, args: tuple[Any, ...]) -> None:
        shapes.setdefault(id(m), tuple(args[0].shape[1:]))

    handles = [op.register_forward_pre_hook(record) for op in ops]
    was = module.training
    try:
        module.eval()
        for op in ops:
            op.set_weights(torch.full((len(op.names),), 1.0 / len(op.names)))
        with torch.no_grad():
            module(*_dummy(input_shape))
    finally:
        for h in handles:
            h.remove()
        module.train(was)
    out = []
    for op in ops:
        if id(op) not in shapes:
            raise ConfigError(f"mixed op '{op.key}' was not called in a forward pass")
        reps = [measure_costs(c, shapes[id(op)], strict=False) for c in op.candidates]
        out.append(CandidateCost(op.key, tuple(float(r.macs) for r in reps), tuple(float(r.layers) for r in reps),
                                 tuple(float(r.params) for r in reps)))
    first = extract_path(module, {op.key: 0 for op in ops})
    total = measure_costs(first, input_shape, strict=False)
    fixed = {"macs": float(total.macs) - sum(c.macs[0] for c in out),
             "layers": float(total.layers) - sum(c.layers[0] for c in out),
             "params": float(total.params) - sum(c.params[0] for c in out)}
    return out, fixed


def expected_cost(costs: Sequence[CandidateCost], probs: Mapping[str, torch.Tensor], metric: str = "macs",
                  target: Any = None, fixed: float = 0.0) -> torch.Tensor:
    """``fixed + sum over ops of sum_i p_i c_i``: differentiable in ``probs`` (one tensor per decision)."""
    total = torch.as_tensor(float(fixed), dtype=torch.float32)
    for c in costs:
        values = torch.as_tensor(c.metric(metric, target), dtype=torch.float32)
        total = total + (probs[c.key] * values).sum()
    return total


# -- the protocol of a space with mixed-op support ---------------------------------------------------


class MixedOpSupport(ABC):
    """How a space becomes a network of mixed ops, and how a choice per decision becomes an architecture.

    Implementations fix the dimensions they do not search (a *template*) and
    expose the rest as decisions. ``path_of`` is the inverse of ``derive`` on the
    architectures the mixed network covers (``None`` for the others).
    """

    space: SearchSpace

    @abstractmethod
    def build_mixed(self) -> nn.Module:
        """A fresh network containing :class:`MixedOp` s (its forward takes the task's inputs)."""

    @abstractmethod
    def derive(self, choices: Mapping[str, str]) -> Architecture:
        """The architecture of the space for one candidate name per decision key."""

    @abstractmethod
    def input_shape(self) -> Any:
        """Input shape(s) of the mixed network without the batch dimension (for cost measurement)."""

    def path_of(self, arch: Architecture) -> dict[str, str] | None:
        """Candidate name per decision for ``arch``, or ``None`` if the mixed network does not cover it."""
        return None


_REGISTRY: dict[type, Callable[..., MixedOpSupport]] = {}


def register_mixed_support(space_type: type, factory: Callable[..., MixedOpSupport]) -> None:
    """Declare mixed-op support for ``space_type`` (and subclasses): ``factory(space, **options)``."""
    if not isinstance(space_type, type) or not issubclass(space_type, SearchSpace):
        raise ConfigError(f"register_mixed_support: {space_type!r} is not a SearchSpace subclass")
    known = _REGISTRY.get(space_type)
    if known is not None and known is not factory:
        raise ConfigError(f"register_mixed_support: {space_type.__qualname__} already has mixed-op support from "
                          f"{getattr(known, '__module__', '?')}.{getattr(known, '__qualname__', known)}; "
                          f"{getattr(factory, '__module__', '?')}.{getattr(factory, '__qualname__', factory)} would "
                          "replace it (register each space once)")
    _REGISTRY[space_type] = factory


def mixed_support(space: SearchSpace, **options: Any) -> MixedOpSupport:
    """The space's :class:`MixedOpSupport` (its ``mixed_support(**options)`` method, else a registered factory)."""
    own = getattr(space, "mixed_support", None)
    if callable(own):
        return cast(MixedOpSupport, own(**options))  # the space's own factory
    for cls in type(space).__mro__:
        if cls in _REGISTRY:
            return _REGISTRY[cls](space, **options)
    raise ConfigError(
        f"search space '{space.name}' ({type(space).__qualname__}) declares no mixed-op support: give it a "
        "mixed_support() method returning a nas_core.oneshot.MixedOpSupport, or call "
        "nas_core.oneshot.register_mixed_support(SpaceClass, factory)")
