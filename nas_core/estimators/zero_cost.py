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

Use them as an :class:`~nas_core.estimators.base.Estimator`
(:class:`ZeroCostEstimator`, e.g. ``ZeroCostEstimator.for_task(task)``) with any
strategy, or as a pre-filter (:func:`prefilter`, :class:`PrefilterStrategy`).
:func:`check_proxies` is the conformance check: every proxy on every space of
a plugin, finite and deterministic under a seed.
"""

from __future__ import annotations

import copy
import math
import re
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from nas_core.errors import ConfigError, TrialFailed
from nas_core.estimators.base import EvalContext, Estimator
from nas_core.space import Architecture, SearchSpace

if TYPE_CHECKING:
    import torch
    from torch import Tensor

    from nas_core.strategies.base import Objective, Strategy

__all__ = [
    "BASELINES",
    "PROXIES",
    "PrefilterStrategy",
    "ProxyBatch",
    "ZeroCostEstimator",
    "check_proxies",
    "classification_batch",
    "compute_proxy",
    "prefilter",
    "random_batch",
]

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


# -- estimator ------------------------------------------------------------------------------------------


class ZeroCostEstimator(Estimator):
    """Zero-cost proxies (and the params/MACs baselines) as metrics ``zc_<name>``; nothing is trained.

    Args:
        proxies: names from :data:`PROXIES` and :data:`BASELINES`.
        batch: ``(arch, model, seed) -> ProxyBatch``; see :meth:`for_task` for the usual choice.
        input_shape: ``arch -> input shape`` (for ``macs``, measured with the core cost model).
        macs: ``(arch, model) -> MACs`` instead of ``input_shape`` (e.g. a task's static metrics).
        reinit: re-initialise a copy of the model under the trial seed before scoring.
    """

    def __init__(self, proxies: Sequence[str] = PROXIES + BASELINES, *,
                 batch: Callable[[Architecture, Any, int], ProxyBatch],
                 input_shape: Callable[[Architecture], Any] | None = None,
                 macs: Callable[[Architecture, Any], float] | None = None, reinit: bool = True):
        bad = [p for p in proxies if p not in PROXIES + BASELINES]
        if bad:
            raise ConfigError(f"unknown zero-cost proxies {bad}; available: {', '.join(PROXIES + BASELINES)}")
        if "macs" in proxies and input_shape is None and macs is None:
            raise ConfigError("the 'macs' baseline needs input_shape (arch -> shape) or macs ((arch, model) -> MACs)")
        self.proxies = tuple(proxies)
        self.batch = batch
        self.input_shape = input_shape
        self.macs = macs
        self.reinit = reinit
        self.metric_names = tuple(f"zc_{p}" for p in self.proxies)

    @classmethod
    def for_task(cls, task: Any, proxies: Sequence[str] = PROXIES + BASELINES, *, batch_size: int = 64,
                 use_data: bool = True, reinit: bool = True) -> "ZeroCostEstimator":
        """Batches from the task's training data when its estimator trains a classifier on
        :class:`~nas_core.estimators.lightning_trainer.ClassificationData` or cross-validates one on
        :class:`~nas_core.estimators.crossval.GroupedData` (and ``use_data``), else
        random inputs of the task's input shape (classification if the task's estimator is a
        training estimator, regression to random targets otherwise)."""
        return cls(proxies, batch=_TaskBatch(task, batch_size, use_data), macs=_TaskMacs(task), reinit=reinit)

    def evaluate(self, ctx: EvalContext) -> dict[str, float]:
        out: dict[str, float] = {}
        batch = None
        for p in self.proxies:
            if p == "params":
                out["zc_params"] = _params(ctx.model)
                continue
            if p == "macs":
                if self.macs is not None:
                    out["zc_macs"] = float(self.macs(ctx.arch, ctx.model))
                else:
                    from nas_core.hardware import measure_costs

                    assert self.input_shape is not None  # __init__ refuses 'macs' without either
                    out["zc_macs"] = float(measure_costs(ctx.model, self.input_shape(ctx.arch), strict=False).macs)
                continue
            if batch is None:
                batch = self.batch(ctx.arch, ctx.model, ctx.seed)
            ctx.check_deadline(f"before proxy {p}")
            v = compute_proxy(p, ctx.model, batch, seed=ctx.seed, reinit=self.reinit)
            if not math.isfinite(v):
                raise TrialFailed(f"zero-cost proxy {p} is not finite ({v})")
            out[f"zc_{p}"] = v
        return out


class _TaskMacs:
    """MACs from the task's static metrics (its own cost model and MAC counters)."""

    def __init__(self, task: Any):
        self.task = task

    def __call__(self, arch: Architecture, model: Any) -> float:
        return float(self.task.static_metrics(arch, model, None)["macs"])


class _TaskBatch:
    """Picklable batch factory bound to a task (see :meth:`ZeroCostEstimator.for_task`)."""

    def __init__(self, task: Any, batch_size: int, use_data: bool):
        self.task, self.batch_size, self.use_data = task, batch_size, use_data
        self._est: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_est": None}

    def __call__(self, arch: Architecture, model: Any, seed: int) -> ProxyBatch:
        from nas_core.estimators.crossval import GroupedCVEstimator
        from nas_core.estimators.lightning_trainer import TrainingEstimator

        if self._est is None:  # one estimator, so that its data cache is reused across architectures
            self._est = self.task.estimator()
        est = self._est
        if isinstance(est, GroupedCVEstimator) and self.use_data:  # its factory gives GroupedData, not train/val
            grouped = est.grouped_dataset(EvalContext(arch, model, seed))
            return classification_batch(grouped.x, grouped.y, self.batch_size, seed)
        if isinstance(est, TrainingEstimator) and self.use_data:
            data = est.dataset(EvalContext(arch, model, seed))
            return classification_batch(data.x_train, data.y_train, self.batch_size, seed)
        kind = "classification" if isinstance(est, TrainingEstimator) else "regression"
        return random_batch(model, self.task.input_shape(arch), self.batch_size, seed, kind)


def parse_proxies(names: str) -> tuple[str, ...]:
    """``"synflow,params"`` -> ``("synflow", "params")``; empty -> every proxy and baseline."""
    out = tuple(n.strip() for n in (names or "").split(",") if n.strip()) or PROXIES + BASELINES
    bad = [n for n in out if n not in PROXIES + BASELINES]
    if bad:
        raise ConfigError(f"estimator: unknown zero-cost proxy {bad[0]!r}; available: {', '.join(PROXIES + BASELINES)}")
    return out


class ZeroCostTask:
    """A task whose candidates are scored by zero-cost proxies instead of being trained.

    What a study uses for ``StudyConfig(estimator="zero-cost:synflow,params")`` (CLI
    ``--estimator zero-cost:synflow,params``): every other part of the task (space,
    input shape, constraints, static metrics, data checks) is the wrapped task's.
    The metrics are ``zc_<proxy>``; the default objective is the first proxy, maximised.
    """

    def __init__(self, task: Any, proxies: Sequence[str]):
        self._inner = task
        self._proxies = tuple(proxies)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("_inner", "_proxies"):  # also keeps unpickling from recursing
            raise AttributeError(name)
        return getattr(self._inner, name)

    def estimator(self) -> ZeroCostEstimator:
        return ZeroCostEstimator.for_task(self._inner, self._proxies)

    def default_objectives(self) -> list[Objective]:
        from nas_core.strategies.base import Objective

        return [Objective(f"zc_{self._proxies[0]}", "max")]


# -- pre-filter -----------------------------------------------------------------------------------------


def prefilter(archs: Iterable[Architecture], score: Callable[[Architecture], float], keep: int) -> list[Architecture]:
    """The ``keep`` best of ``archs`` by ``score`` (larger is better), best first; ties keep input order."""
    scored = [(a, float(score(a)), i) for i, a in enumerate(archs)]
    scored.sort(key=lambda t: (-t[1], t[2]))
    return [a for a, _, _ in scored[:keep]]


def proxy_scorer(space: SearchSpace, task: Any, proxy: str = "synflow", *, seed: int = 0, batch_size: int = 64,
                 use_data: bool = True) -> Callable[[Architecture], float]:
    """``arch -> score`` of one proxy (or baseline) for a space and task: the model is built under ``seed``."""
    est = ZeroCostEstimator.for_task(task, (proxy,), batch_size=batch_size, use_data=use_data)

    def score(arch: Architecture) -> float:
        import torch

        torch.manual_seed(seed)
        model = space.build(arch)
        return est.evaluate(EvalContext(arch, model, seed))[f"zc_{proxy}"]

    return score


def _strategy_base() -> type[Strategy]:
    from nas_core.strategies.base import Strategy

    return Strategy


class PrefilterStrategy(_strategy_base()):  # type: ignore[misc]
    """Random search behind a zero-cost pre-filter: sample ``pool`` architectures, propose the best ``keep``.

    Each round draws ``pool`` random architectures, scores them with ``score``
    (e.g. :func:`proxy_scorer`), and asks for the ``keep`` best in order; then the
    next round. ``tell`` is ignored (the filter needs no feedback).
    """

    name = "prefilter"

    def __init__(self, space: SearchSpace, objectives: Sequence[Any], *, score: Callable[[Architecture], float],
                 pool: int = 50, keep: int = 5, seed: int = 0):
        super().__init__(space, objectives, seed=seed)
        if keep < 1 or pool < keep:
            raise ConfigError(f"PrefilterStrategy needs 1 <= keep <= pool, got keep={keep}, pool={pool}")
        self.score, self.pool, self.keep = score, int(pool), int(keep)
        self._queue: list[Architecture] = []
        self._seen: set[str] = set()

    def ask(self) -> Architecture:
        if not self._queue:
            cands = []
            for _ in range(self.pool * 4):
                a = self.space.sample(self.rng)
                if a.canonical not in self._seen and a not in cands:
                    cands.append(a)
                if len(cands) >= self.pool:
                    break
            self._queue = prefilter(cands, self.score, self.keep)
        a = self._queue.pop(0)
        self._seen.add(a.canonical)
        return a

    def tell(self, arch: Architecture, result: Any) -> None:
        return None

    def _extra_state(self) -> dict[str, Any]:
        return {"queue": [a.to_json() for a in self._queue], "seen": sorted(self._seen)}

    def _load_extra_state(self, state: Mapping[str, Any]) -> None:
        self._queue = [Architecture.from_json(t) for t in state.get("queue", [])]
        self._seen = set(state.get("seen", []))


# -- conformance ------------------------------------------------------------------------------------------


def check_proxies(plugin: Any, *, proxies: Sequence[str] = PROXIES + BASELINES, n_archs: int = 2, seed: int = 0,
                  batch_size: int = 16, task_options: Mapping[str, Any] | None = None) -> dict[str, dict[str, list[float]]]:
    """Every proxy on every space of ``plugin``: finite, and the same twice under a seed, different seeds allowed.

    Uses random inputs of each task's input shape (no data needed), like
    :func:`nas_core.testing.check_plugin`. Raises ``AssertionError`` naming the
    plugin, space, architecture and proxy that failed; returns the scores
    (space key -> proxy -> one score per architecture).
    """
    import torch

    from nas_core.plugins import Registry

    Registry([plugin], discover=False)  # validates the plugin
    results: dict[str, dict[str, list[float]]] = {}
    for key, entry in plugin.spaces.items():
        space = entry.space()
        task = entry.task(space, **dict(task_options or {}))
        est = ZeroCostEstimator.for_task(task, proxies, batch_size=batch_size, use_data=False)
        rng = np.random.default_rng(seed)
        scores: dict[str, list[float]] = {p: [] for p in proxies}
        for i in range(n_archs):
            arch = space.sample(rng)
            where = f"plugin '{plugin.name}' space '{key}' arch {arch.hash}"
            torch.manual_seed(seed)
            model = space.build(arch)
            before = {k: v.detach().clone() for k, v in model.state_dict().items()}
            a = est.evaluate(EvalContext(arch, model, seed + i))
            b = est.evaluate(EvalContext(arch, model, seed + i))
            for p in proxies:
                va, vb = a[f"zc_{p}"], b[f"zc_{p}"]
                if not (isinstance(va, float) and math.isfinite(va)):
                    raise AssertionError(f"{where}: proxy {p} gave {va!r}, not a finite number")
                if va != vb:
                    raise AssertionError(f"{where}: proxy {p} is not deterministic under seed {seed + i}: {va!r} != {vb!r}")
                scores[p].append(va)
            after = model.state_dict()
            if any(not torch.equal(before[k], after[k]) for k in before):
                raise AssertionError(f"{where}: a proxy modified the caller's model")
        results[key] = scores
    return results
