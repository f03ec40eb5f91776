"""Zero-cost proxies: score an untrained network from one minibatch, in well under a second.

Proxies (Abdelfattah et al., ICLR 2021, "Zero-Cost Proxies for Lightweight NAS",
and the papers each one comes from); larger is better for all of them:

* ``grad_norm`` -- sum over weight tensors of the Euclidean norm of the loss gradient;
* ``snip`` -- connection sensitivity ``sum |theta * dL/dtheta|`` (Lee et al. 2019);
* ``synflow`` -- synaptic flow ``sum theta * dR/dtheta`` with every parameter
  replaced by its absolute value, an all-ones input, ``R = sum(output)``, in
  float64, BatchNorm acting as identity (eval mode, reset statistics) and
  dropout off, no data and no labels (Tanaka et al. 2020);
* ``fisher`` -- sum over activation channels of
  ``0.5 * mean_batch((sum_positions a * dL/da)^2)`` (Turner et al. 2020);
* ``jacob_cov`` -- from the correlation matrix of the per-sample input
  Jacobians (of the summed output), ``-sum_i log(v_i + k) + 1 / (v_i + k)`` over its
  eigenvalues, ``k = 1e-5`` (Mellor et al. 2020, v1);
* ``naswot`` -- ``log |det K|`` of the Hamming-similarity kernel of the binary
  activation codes of the batch (Mellor et al. ICML 2021);

and two baselines: ``params`` (trainable parameters) and ``macs`` (the core cost
model's MACs). Parameter count is often as good a predictor as any proxy.

*Weights* are all parameters except biases and normalisation layers (every
parameter if that leaves none: e.g. e2cnn layers keep basis coefficients).
*Activations* are the outputs (``naswot``: the inputs, as ReLU codes) of the
activation modules -- ``nn.ReLU``, ``nn.GELU``, ``nn.Tanh`` ... or any
parameter-free leaf whose class name names a non-linearity -- else the
outputs of the weight layers. Gradient proxies run the network in training
mode (BatchNorm with batch statistics). Losses: cross-entropy for
classification, mean squared error to a fixed random target otherwise.

Every proxy works on a deep copy of the model, re-initialised under the seed
(``reinit=True``, the default), on a batch drawn under the seed: the score is a
deterministic function of (architecture, seed).

This module holds the proxies themselves (:func:`compute_proxy`, the batches);
:mod:`nas_core.estimators.zero_cost` uses them as an estimator and a task wrapper,
:mod:`nas_core.strategies.prefilter` as a pre-filtering strategy.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from nas_core.errors import ConfigError

if TYPE_CHECKING:
    import torch
    from torch import Tensor

__all__ = ["BASELINES", "PROXIES", "ProxyBatch", "classification_batch", "compute_proxy", "random_batch"]


PROXIES = ("synflow", "snip", "grad_norm", "fisher", "jacob_cov", "naswot")
BASELINES = ("params", "macs")

_ACT_NAME = re.compile(r"relu|elu|gelu|silu|swish|tanh|sigmoid|softplus|mish|nonlinearity|activation", re.I)


@dataclass(frozen=True)
class ProxyBatch:
    """One minibatch: model inputs, targets (class labels or regression targets) and the task kind."""

    inputs: tuple[torch.Tensor, ...]
    target: torch.Tensor
    kind: str = "classification"  # or "regression"


def _torch() -> ModuleType:
    import torch

    return torch


def classification_batch(x: Any, y: np.ndarray, batch_size: int, seed: int) -> ProxyBatch:
    """A random batch (drawn under ``seed``) from arrays ``x`` (or a tuple of input arrays) and labels ``y``."""
    torch = _torch()
    xs = tuple(x) if isinstance(x, (tuple, list)) else (x,)
    n = len(y)
    idx = np.sort(np.random.default_rng(seed).permutation(n)[: min(batch_size, n)])
    inputs = tuple(torch.as_tensor(np.asarray(a)[idx], dtype=torch.float32) for a in xs)
    return ProxyBatch(inputs, torch.as_tensor(np.asarray(y)[idx], dtype=torch.long), "classification")


def random_batch(model: Any, input_shape: Any, batch_size: int, seed: int, kind: str = "classification") -> ProxyBatch:
    """Standard-normal inputs of ``input_shape`` and random targets shaped after the model's output."""
    torch = _torch()
    gen = torch.Generator().manual_seed(int(seed))
    shapes = input_shape if input_shape and isinstance(input_shape[0], (tuple, list)) else (input_shape,)
    inputs = tuple(torch.randn(batch_size, *s, generator=gen) for s in shapes)
    m = copy.deepcopy(model).eval()
    with torch.no_grad():
        out = m(*inputs)
    if kind == "classification":
        if out.dim() != 2 or out.shape[1] < 2:
            raise ConfigError(f"classification proxies need (batch, classes) logits, got output shape {tuple(out.shape)}")
        target = torch.randint(0, out.shape[1], (batch_size,), generator=gen)
    else:
        target = torch.randn(out.shape, generator=gen)
    return ProxyBatch(inputs, target, kind)


# -- helpers --------------------------------------------------------------------------------------------


def _reinit(model: Any, seed: int) -> None:
    torch = _torch()
    torch.manual_seed(int(seed))
    for m in model.modules():
        if hasattr(m, "reset_parameters") and callable(m.reset_parameters):
            m.reset_parameters()


def _is_norm(m: Any) -> bool:
    torch = _torch()
    nn = torch.nn
    return isinstance(m, (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm))


def _weights(model: Any) -> list[torch.nn.Parameter]:
    out = []
    for mod in model.modules():
        if _is_norm(mod):
            continue
        for name, p in mod.named_parameters(recurse=False):
            if p.requires_grad and not name.endswith("bias"):
                out.append(p)
    return out or [p for p in model.parameters() if p.requires_grad]


def _tensor_of(obj: Any) -> Any:
    torch = _torch()
    if isinstance(obj, torch.Tensor):
        return obj
    t = getattr(obj, "tensor", None)  # e2cnn GeometricTensor
    if isinstance(t, torch.Tensor):
        return t
    if isinstance(obj, (tuple, list)) and obj:
        return _tensor_of(obj[0])
    return None


def _activation_modules(model: Any) -> list[torch.nn.Module]:
    torch = _torch()
    nn = torch.nn
    known = (nn.ReLU, nn.ReLU6, nn.GELU, nn.SiLU, nn.ELU, nn.LeakyReLU, nn.Tanh, nn.Sigmoid, nn.Hardswish, nn.Mish,
             nn.Softplus, nn.PReLU)
    acts = []
    for m in model.modules():
        if isinstance(m, known):
            acts.append(m)
        elif next(m.children(), None) is None and next(m.parameters(), None) is None and _ACT_NAME.search(type(m).__name__):
            acts.append(m)
    if acts:
        return acts
    return [m for m in model.modules() if next(m.children(), None) is None and next(m.parameters(recurse=False), None) is not None
            and not _is_norm(m)]


def _loss(out: Any, batch: ProxyBatch) -> Any:
    torch = _torch()
    out = _tensor_of(out)
    if batch.kind == "classification":
        return torch.nn.functional.cross_entropy(out, batch.target)
    return torch.nn.functional.mse_loss(out, batch.target.to(out.dtype))


def _forward_loss(model: Any, batch: ProxyBatch) -> Any:
    model.train()
    model.zero_grad(set_to_none=True)
    loss = _loss(model(*batch.inputs), batch)
    loss.backward()
    return loss


# -- proxies --------------------------------------------------------------------------------------------


def _grad_norm(model: Any, batch: ProxyBatch) -> float:
    _forward_loss(model, batch)
    return float(sum(float(p.grad.norm()) for p in _weights(model) if p.grad is not None))


def _snip(model: Any, batch: ProxyBatch) -> float:
    _forward_loss(model, batch)
    return float(sum(float((p.detach() * p.grad).abs().sum()) for p in _weights(model) if p.grad is not None))


def _synflow(model: Any, batch: ProxyBatch) -> float:
    torch = _torch()
    model = model.double()
    with torch.no_grad():
        for p in model.parameters():
            p.abs_()
    # training mode (layers such as e2cnn's only build differentiable filters in training mode), but
    # BatchNorm as identity (eval mode, reset statistics) and no dropout
    model.train()
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.eval()
        elif isinstance(m, torch.nn.modules.dropout._DropoutNd):
            m.eval()
    model.zero_grad(set_to_none=True)
    ones = tuple(torch.ones_like(x, dtype=torch.float64)[:1] for x in batch.inputs)
    out = _tensor_of(model(*ones))
    out.sum().backward()
    total = 0.0
    for p in _weights(model):
        if p.grad is not None:
            total += float((p.detach() * p.grad).sum())
    return total


def _fisher(model: Any, batch: ProxyBatch) -> float:
    torch = _torch()
    acts: list[Tensor] = []

    def hook(m: Any, inputs: Any, output: Any) -> None:
        t = _tensor_of(output)
        if t is not None and t.requires_grad:
            t.retain_grad()
            acts.append(t)

    handles = [m.register_forward_hook(hook) for m in _activation_modules(model)]
    try:
        _forward_loss(model, batch)
    finally:
        for h in handles:
            h.remove()
    total = 0.0
    for a in acts:
        if a.grad is None:
            continue
        prod = (a.detach() * a.grad)
        per = prod.reshape(prod.shape[0], prod.shape[1], -1).sum(-1) if prod.dim() > 2 else prod
        total += float(0.5 * per.pow(2).mean(0).sum())
    return total


def _jacob_cov(model: Any, batch: ProxyBatch) -> float:
    torch = _torch()
    model.train()
    model.zero_grad(set_to_none=True)
    xs = tuple(x.detach().clone().requires_grad_(True) for x in batch.inputs)
    out = _tensor_of(model(*xs))
    out.backward(torch.ones_like(out))
    jac = torch.cat([x.grad.reshape(x.shape[0], -1) for x in xs if x.grad is not None], dim=1).double().numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.corrcoef(jac)
    corr = np.nan_to_num(corr, nan=0.0)
    np.fill_diagonal(corr, 1.0)
    v = np.linalg.eigvalsh(corr)
    k = 1e-5
    return float(-np.sum(np.log(np.abs(v) + k) + 1.0 / (np.abs(v) + k)))


def _naswot(model: Any, batch: ProxyBatch) -> float:
    torch = _torch()
    n = batch.inputs[0].shape[0]
    codes: list[Tensor] = []

    def hook(m: Any, inputs: Any) -> None:
        t = _tensor_of(inputs)
        if t is not None:
            codes.append((t.detach().reshape(n, -1) > 0).double())

    mods = _activation_modules(model)
    handles = [m.register_forward_pre_hook(hook) for m in mods]
    try:
        model.train()
        with torch.no_grad():
            out = model(*batch.inputs)
        if not codes:  # the fallback layers: their outputs are the codes
            codes.append((_tensor_of(out).detach().reshape(n, -1) > 0).double())
    finally:
        for h in handles:
            h.remove()
    c = torch.cat(codes, dim=1)
    k = c @ c.t() + (1 - c) @ (1 - c).t()
    sign, logdet = np.linalg.slogdet(k.numpy())
    return float(logdet) if sign != 0 else -1e9


_FUNCS: dict[str, Callable[[Any, ProxyBatch], float]] = {
    "grad_norm": _grad_norm, "snip": _snip, "synflow": _synflow, "fisher": _fisher, "jacob_cov": _jacob_cov,
    "naswot": _naswot,
}


def compute_proxy(name: str, model: Any, batch: ProxyBatch, *, seed: int = 0, reinit: bool = True) -> float:
    """The zero-cost proxy ``name`` of ``model`` on ``batch`` (the model itself is left untouched)."""
    torch = _torch()
    if name not in _FUNCS:
        raise ConfigError(f"unknown zero-cost proxy {name!r}; available: {', '.join(PROXIES)}")
    m = copy.deepcopy(model)
    if reinit:
        _reinit(m, seed)
    torch.manual_seed(int(seed))  # dropout masks
    return float(_FUNCS[name](m, batch))


def _params(model: Any) -> float:
    return float(sum(p.numel() for p in model.parameters() if p.requires_grad))
