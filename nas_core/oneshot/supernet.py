"""Weight-sharing supernets and single-path one-shot search (Guo et al., ECCV 2020).

A :class:`Supernet` is one network whose sub-networks are the architectures it
covers; all of them share its weights. It can make one sub-network *active*
(the module's forward then runs just that path), sample one uniformly, and
*extract* one as a standalone ``nn.Module`` whose outputs equal the
supernet's on that path.

* :class:`MixedPathSupernet` turns any space with mixed-op support
  (:class:`~nas_core.oneshot.mixed.MixedOpSupport`) into a single-path supernet:
  each mixed op runs exactly one candidate, chosen uniformly per decision.
* Elastic supernets (Once-for-All) implement the same interface with weight
  slicing; the ECG plugin ships one (``nas_ecg.supernet``), the digits example
  another (``nas_core.examples.digits_oneshot``).

Training (:func:`train_supernet`) samples one sub-network per batch (uniform
sampling by default, any sampler for progressive shrinking) and updates only
its weights. Because BatchNorm statistics are shared by every path, a
sub-network is scored after re-estimating them on training data
(:func:`evaluate_subnet`, Guo et al.'s BN recalibration).
:class:`SinglePathOneShot` trains a supernet and then runs an evolutionary
search (:func:`evolve`) over its sub-networks scored with inherited weights;
:class:`SupernetEstimator` exposes the inherited score as an
:class:`~nas_core.estimators.base.Estimator` for any strategy.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from nas_core.errors import ConfigError, TrialFailed
from nas_core.estimators.base import EvalContext, Estimator
from nas_core.estimators.lightning_trainer import ClassificationData
from nas_core.oneshot._data import (
    Split,
    class_weight,
    predict,
    recalibrate_bn,
    resolve,
    scores,
    stratified_subset,
    to_split,
)
from nas_core.oneshot.base import OneShotResult, OneShotSearcher
from nas_core.oneshot.mixed import MixedOpSupport, decisions, extract_path, set_path
from nas_core.space import Architecture, SearchSpace

__all__ = [
    "MixedPathSupernet",
    "SinglePathOneShot",
    "Supernet",
    "SupernetEstimator",
    "SupernetTrainConfig",
    "evaluate_subnet",
    "evolve",
    "sliced_batch_norm",
    "train_supernet",
]


def sliced_batch_norm(m: nn.modules.batchnorm._BatchNorm, x: torch.Tensor, c: int) -> torch.Tensor:
    """``m`` applied to the first ``c`` channels of its parameters and statistics (elastic width).

    In training mode it updates those running statistics exactly as ``m`` would
    (``momentum=None`` gives the cumulative average used for BN recalibration).
    """
    # a norm without affine parameters or without running statistics has None there (as nn.BatchNorm, it then
    # normalises with the batch statistics in eval mode too)
    mean, var, weight, bias = (None if t is None else t[:c] for t in (m.running_mean, m.running_var, m.weight, m.bias))
    if m.training and m.track_running_stats:
        assert m.num_batches_tracked is not None  # tracked with the running statistics
        m.num_batches_tracked += 1
        mom = 1.0 / float(m.num_batches_tracked) if m.momentum is None else m.momentum
        return F.batch_norm(x, mean, var, weight, bias, True, mom, m.eps)
    return F.batch_norm(x, mean, var, weight, bias, m.training or mean is None, 0.0, m.eps)


class Supernet(ABC):
    """A weight-sharing network over (part of) a space. ``module`` runs the active sub-network."""

    space: SearchSpace
    module: nn.Module

    @abstractmethod
    def sample_active(self, rng: np.random.Generator) -> Architecture:
        """Activate a uniformly sampled sub-network and return its architecture."""

    @abstractmethod
    def set_active(self, arch: Architecture) -> None:
        """Activate the sub-network of ``arch`` (``ConfigError`` if it is not covered)."""

    @abstractmethod
    def extract(self, arch: Architecture) -> nn.Module:
        """A standalone copy of the sub-network of ``arch`` with the supernet's weights (and BN statistics)."""

    def covers(self, arch: Architecture) -> bool:
        return True

    def sample(self, rng: np.random.Generator) -> Architecture:
        """A covered architecture, sampled as :meth:`sample_active` does (the active one may change)."""
        return self.sample_active(rng)


class MixedPathSupernet(Supernet):
    """Single-path supernet over a mixed network: one candidate per decision, uniformly sampled."""

    def __init__(self, support: MixedOpSupport, *, seed: int = 0):
        self.support = support
        self.space = support.space
        torch.manual_seed(seed)
        self.module = support.build_mixed()
        self.names = decisions(self.module)

    def sample_path(self, rng: np.random.Generator) -> dict[str, str]:
        return {k: v[int(rng.integers(len(v)))] for k, v in self.names.items()}

    def sample_active(self, rng: np.random.Generator) -> Architecture:
        path = self.sample_path(rng)
        set_path(self.module, path)
        return self.support.derive(path)

    def _path(self, arch: Architecture) -> dict[str, str]:
        path = self.support.path_of(arch)
        if path is None:
            raise ConfigError(f"architecture {arch.hash} is not covered by this mixed network (its fixed dimensions differ)")
        return path

    def covers(self, arch: Architecture) -> bool:
        return self.support.path_of(arch) is not None

    def set_active(self, arch: Architecture) -> None:
        set_path(self.module, self._path(arch))

    def set_path(self, path: Mapping[str, str]) -> None:
        set_path(self.module, path)

    def extract(self, arch: Architecture) -> nn.Module:
        return extract_path(self.module, self._path(arch))


@dataclass(frozen=True)
class SupernetTrainConfig:
    epochs: int = 10
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 0.0
    data_fraction: float = 1.0
    class_weights: str | None = None
    class_weight_cap: float | None = None
    grad_clip: float = 5.0
    max_time_s: float | None = None
    threads: int | None = None
    #: weight of knowledge distillation from the largest sub-network (Once-for-All); 0 disables it
    kd_weight: float = 0.0


def train_supernet(supernet: Supernet, data: ClassificationData | Callable[[], ClassificationData] | Split,
                   config: SupernetTrainConfig | None = None, *, seed: int = 0,
                   sampler: Callable[[np.random.Generator], Architecture] | None = None,
                   teacher: Callable[[], None] | None = None, n_classes: int | None = None,
                   progress: Callable[[Mapping[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """Train shared weights, one sampled sub-network per batch; returns per-epoch figures.

    ``sampler(rng)`` activates a sub-network and returns its architecture
    (default: :meth:`Supernet.sample_active`, uniform sampling). ``teacher()``
    activates the teacher for distillation when ``config.kd_weight > 0``.
    """
    cfg = config or SupernetTrainConfig()
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    if isinstance(data, Split):
        split, n_cls = data, int(n_classes or int(data.y.max()) + 1)
    else:
        d = resolve(data)
        idx = stratified_subset(np.asarray(d.y_train), cfg.data_fraction, rng)
        split, n_cls = to_split(d.x_train, d.y_train, idx), d.n_classes
    weight = class_weight(split.y.numpy(), n_cls, cfg.class_weights, cfg.class_weight_cap)
    module = supernet.module
    module.train()
    params = [p for p in module.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sample = sampler or supernet.sample_active
    t0 = time.monotonic()
    history = []
    for epoch in range(cfg.epochs):
        total, nb = 0.0, 0
        stop = False
        for xs, y in split.batches(cfg.batch_size, rng):
            soft = None
            if cfg.kd_weight and teacher is not None:
                teacher()
                with torch.no_grad():
                    soft = torch.softmax(module(*xs), dim=1)
            sample(rng)
            opt.zero_grad(set_to_none=True)
            logits = module(*xs)
            loss = nn.functional.cross_entropy(logits, y, weight=weight)
            if soft is not None:
                loss = loss + cfg.kd_weight * nn.functional.kl_div(torch.log_softmax(logits, 1), soft, reduction="batchmean")
            loss.backward()
            nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            opt.step()
            total += float(loss.detach())
            nb += 1
            if cfg.max_time_s is not None and time.monotonic() - t0 > cfg.max_time_s:
                stop = True
                break
        entry = {"epoch": epoch, "loss": total / max(1, nb), "batches": nb, "elapsed_s": time.monotonic() - t0}
        history.append(entry)
        if progress:
            progress(dict(entry))
        if stop:
            break
    return history


def evaluate_subnet(supernet: Supernet, arch: Architecture, calib: Split, val: Split, n_classes: int, *,
                    f1_classes: Sequence[int] | None = None, calib_samples: int = 2000, seed: int = 0) -> dict[str, float]:
    """Inherited-weight scores of ``arch``: BN statistics re-estimated on ``calib``, then scored on ``val``.

    The supernet's own BN statistics are restored afterwards.
    """
    module = supernet.module
    saved = {k: v.clone() for k, v in module.state_dict().items() if "running_" in k or "num_batches" in k}
    try:
        supernet.set_active(arch)
        recalibrate_bn(module, calib, n=calib_samples, seed=seed)
        return scores(predict(module, val), val.y, n_classes, f1_classes)
    finally:
        module.load_state_dict(saved, strict=False)


def evolve(sample: Callable[[np.random.Generator], Architecture],
           mutate: Callable[[Architecture, np.random.Generator], Architecture],
           crossover: Callable[[Architecture, Architecture, np.random.Generator], Architecture] | None,
           score: Callable[[Architecture], float], *, feasible: Callable[[Architecture], bool] = lambda a: True,
           population: int = 16, generations: int = 10, parents: int = 6, mutate_share: float = 0.5,
           seed: int = 0, max_time_s: float | None = None,
           max_tries: int = 200) -> tuple[Architecture, float, list[dict[str, Any]]]:
    """Evolutionary search (as in single-path one-shot and Once-for-All): keep the top ``parents``,
    refill by mutation and crossover, only ever admitting feasible architectures.

    Returns ``(best, best_score, history)``; scores are cached per architecture.
    """
    rng = np.random.default_rng(seed)
    t0 = time.monotonic()
    cache: dict[Architecture, float] = {}

    def scored(a: Architecture) -> float:
        if a not in cache:
            cache[a] = float(score(a))
        return cache[a]

    def draw(make: Callable[[], Architecture]) -> Architecture | None:
        for _ in range(max_tries):
            a = make()
            if feasible(a):
                return a
        return None

    pop: list[Architecture] = []
    for _ in range(population):
        a = draw(lambda: sample(rng))
        if a is None:
            raise ConfigError(f"evolve: no feasible architecture in {max_tries} samples; relax the constraints")
        pop.append(a)
    history = []
    for gen in range(generations + 1):
        ranked = sorted(set(pop), key=lambda a: -scored(a))
        history.append({"generation": gen, "best": scored(ranked[0]), "evaluated": len(cache),
                        "elapsed_s": time.monotonic() - t0})
        if gen == generations or (max_time_s is not None and time.monotonic() - t0 > max_time_s):
            break
        top = ranked[:parents]
        children: list[Architecture] = []
        n_mut = int(round(mutate_share * (population - len(top))))
        for i in range(population - len(top)):
            if i < n_mut or crossover is None or len(top) < 2:
                child = draw(lambda: mutate(top[int(rng.integers(len(top)))], rng))
            else:
                def cross() -> Architecture:
                    i, j = rng.choice(len(top), 2, replace=False)
                    return crossover(top[i], top[j], rng)

                child = draw(cross)
            if child is not None:
                children.append(child)
        pop = top + children
    best = max(cache, key=lambda a: cache[a])
    return best, cache[best], history


class SinglePathOneShot(OneShotSearcher):
    """Train a supernet with uniform path sampling, then evolve sub-networks scored with inherited weights.

    Args:
        supernet: e.g. ``MixedPathSupernet(mixed_support(space))``.
        data: the task's training and validation data; the supernet trains on the
            training split and sub-networks are scored on the validation split.
        train: :class:`SupernetTrainConfig`.
        metric: ``accuracy`` or ``macro_f1`` (maximised).
        feasible: hard constraints on an architecture (e.g. the task's, on its static metrics).
    """

    def __init__(self, supernet: Supernet, data: ClassificationData | Callable[[], ClassificationData],
                 train: SupernetTrainConfig | None = None, *, metric: str = "accuracy",
                 feasible: Callable[[Architecture], bool] = lambda a: True, f1_classes: Sequence[int] | None = None,
                 population: int = 16, generations: int = 8, calib_samples: int = 2000, seed: int = 0):
        self.supernet, self.data, self.train = supernet, data, train or SupernetTrainConfig()
        self.metric, self.feasible, self.f1_classes = metric, feasible, f1_classes
        self.population, self.generations, self.calib_samples, self.seed = population, generations, calib_samples, seed

    def search(self, progress: Callable[[Mapping[str, Any]], None] | None = None) -> OneShotResult:
        t0 = time.monotonic()
        data = resolve(self.data)
        history = train_supernet(self.supernet, data, self.train, seed=self.seed, progress=progress)
        train_s = time.monotonic() - t0
        calib, val = to_split(data.x_train, data.y_train), to_split(data.x_val, data.y_val)
        space = self.supernet.space

        def score(a: Architecture) -> float:
            return evaluate_subnet(self.supernet, a, calib, val, data.n_classes, f1_classes=self.f1_classes,
                                   calib_samples=self.calib_samples, seed=self.seed)[self.metric]

        def mutate(a: Architecture, rng: np.random.Generator) -> Architecture:
            return space.mutate(a, rng)

        def crossover(a: Architecture, b: Architecture, rng: np.random.Generator) -> Architecture:
            return space.crossover(a, b, rng)

        best, best_score, evo = evolve(self.supernet.sample, mutate, crossover, score,
                                       feasible=lambda a: self.supernet.covers(a) and self.feasible(a),
                                       population=self.population, generations=self.generations, seed=self.seed)
        return OneShotResult(best, time.monotonic() - t0, {"score": best_score, "metric": self.metric,
                                                            "train_history": history, "train_s": train_s,
                                                            "evolution": evo})


class SupernetEstimator(Estimator):
    """Inherited-weight score of an architecture from a trained supernet (no training per candidate).

    ``data`` is the task's data, or ``data_for(arch)`` when the data depend on the
    architecture (e.g. an ECG candidate's sampling rate). Metrics:
    ``supernet_accuracy``, ``supernet_macro_f1``, ``supernet_loss``.
    """

    metric_names = ("supernet_accuracy", "supernet_macro_f1", "supernet_loss")

    def __init__(self, supernet: Supernet, data: ClassificationData | Callable[[], ClassificationData] | None = None,
                 *, data_for: Callable[[Architecture], ClassificationData] | None = None,
                 f1_classes: Sequence[int] | None = None, calib_samples: int = 2000):
        if (data is None) == (data_for is None):
            raise ConfigError("SupernetEstimator needs exactly one of data or data_for")
        self.supernet, self.data, self.data_for = supernet, data, data_for
        self.f1_classes, self.calib_samples = f1_classes, calib_samples
        self._splits: dict[int, tuple[Split, Split, int]] = {}

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_splits"] = {}
        return state

    def _data(self, arch: Architecture) -> tuple[Split, Split, int]:
        if self.data_for is not None:
            d = self.data_for(arch)
        else:
            assert self.data is not None  # __init__ needs exactly one of data and data_for
            d = resolve(self.data)
        key = id(d)
        if key not in self._splits:
            self._splits = {key: (to_split(d.x_train, d.y_train), to_split(d.x_val, d.y_val), d.n_classes)}
        return self._splits[key]

    def evaluate(self, ctx: EvalContext) -> dict[str, float]:
        if not self.supernet.covers(ctx.arch):
            raise TrialFailed(f"architecture {ctx.arch.hash} is not covered by the supernet")
        calib, val, n = self._data(ctx.arch)
        s = evaluate_subnet(self.supernet, ctx.arch, calib, val, n, f1_classes=self.f1_classes,
                            calib_samples=self.calib_samples, seed=ctx.seed)
        return {"supernet_accuracy": s["accuracy"], "supernet_macro_f1": s["macro_f1"], "supernet_loss": s["loss"]}
