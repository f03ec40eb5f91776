"""Zero-cost estimation: score candidates with zero-cost proxies instead of training them.

The proxies themselves (synflow, snip, grad_norm, fisher, jacob_cov, naswot and
the params/MACs baselines) are in :mod:`nas_core.estimators.proxies`. Here:
:class:`ZeroCostEstimator` (metrics ``zc_<proxy>``, e.g.
``ZeroCostEstimator.for_task(task)``), :class:`ZeroCostTask` (a task whose
estimator is replaced by the proxies: ``nas run --estimator zero-cost:...``),
:func:`prefilter` and :func:`proxy_scorer` (the pre-filter that
:class:`nas_core.strategies.prefilter.PrefilterStrategy` runs), and
:func:`check_proxies`, the conformance check: every proxy on every space of a
plugin, finite and deterministic under a seed.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from nas_core.errors import ConfigError, TrialFailed
from nas_core.estimators.base import EvalContext, Estimator
from nas_core.estimators.proxies import (BASELINES as BASELINES, PROXIES as PROXIES, ProxyBatch as ProxyBatch,
                                         _params, classification_batch as classification_batch,
                                         compute_proxy as compute_proxy, random_batch as random_batch)
from nas_core.space import Architecture, SearchSpace

if TYPE_CHECKING:
    from nas_core.task import Task
    from nas_core.strategies.base import Objective

__all__ = ["BASELINES", "PROXIES", "ProxyBatch", "ZeroCostEstimator", "ZeroCostTask", "check_proxies",
           "classification_batch", "compute_proxy", "parse_proxies", "prefilter", "proxy_scorer", "random_batch"]


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
    def for_task(cls, task: Task, proxies: Sequence[str] = PROXIES + BASELINES, *, batch_size: int = 64,
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

    def __init__(self, task: Task):
        self.task = task

    def __call__(self, arch: Architecture, model: Any) -> float:
        return float(self.task.static_metrics(arch, model, None)["macs"])


class _TaskBatch:
    """Picklable batch factory bound to a task (see :meth:`ZeroCostEstimator.for_task`)."""

    def __init__(self, task: Task, batch_size: int, use_data: bool):
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

    def __init__(self, task: Task, proxies: Sequence[str]):
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
