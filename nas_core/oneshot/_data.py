"""Small data helpers shared by the one-shot searchers (arrays -> tensors, splits, batches, scores)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch

from nas_core.errors import ConfigError
from nas_core.estimators.lightning_trainer import ClassificationData


def resolve(data: ClassificationData | Callable[[], ClassificationData]) -> ClassificationData:
    out = data() if callable(data) and not isinstance(data, ClassificationData) else data
    if not isinstance(out, ClassificationData):
        raise ConfigError(f"expected ClassificationData (or a factory returning it), got {type(out).__name__}")
    return out


def as_tuple(x: Any) -> tuple[Any, ...]:
    return tuple(x) if isinstance(x, (tuple, list)) else (x,)


@dataclass
class Split:
    """Input tensors (one per model input) and labels."""

    xs: tuple[torch.Tensor, ...]
    y: torch.Tensor

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def take(self, idx: np.ndarray | torch.Tensor) -> "Split":
        i = torch.as_tensor(np.asarray(idx), dtype=torch.long)
        return Split(tuple(x[i] for x in self.xs), self.y[i])

    def batches(self, batch_size: int, rng: np.random.Generator | None) -> Iterator[tuple[tuple[torch.Tensor, ...], torch.Tensor]]:
        n = len(self)
        order = rng.permutation(n) if rng is not None else np.arange(n)
        for s in range(0, n, batch_size):
            i = torch.as_tensor(order[s:s + batch_size], dtype=torch.long)
            if rng is not None and len(i) < 2:  # BatchNorm needs two samples in training mode
                continue
            yield tuple(x[i] for x in self.xs), self.y[i]


def to_split(xs: Any, y: np.ndarray, idx: np.ndarray | None = None) -> Split:
    parts = []
    for x in as_tuple(xs):
        a = np.asarray(x)
        parts.append(torch.as_tensor(a if idx is None else a[idx], dtype=torch.float32))
    yy = np.asarray(y) if idx is None else np.asarray(y)[idx]
    return Split(tuple(parts), torch.as_tensor(yy, dtype=torch.long))


def stratified_subset(y: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """A stratified random ``fraction`` of the indices (at least one per class), sorted."""
    if not 0.0 < fraction <= 1.0:
        raise ConfigError(f"data_fraction must be in (0, 1], got {fraction}")
    y = np.asarray(y)
    if fraction >= 1.0:
        return np.arange(len(y))
    keep = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        keep.append(rng.permutation(idx)[: max(1, int(math.ceil(fraction * len(idx))))])
    return np.sort(np.concatenate(keep))


def stratified_halves(y: np.ndarray, share: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint stratified index sets: ``1 - share`` of each class, then ``share`` (each non-empty if the class has 2+)."""
    y = np.asarray(y)
    a, b = [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        k = int(round(share * len(idx)))
        if len(idx) >= 2:
            k = min(max(k, 1), len(idx) - 1)
        b.append(idx[:k])
        a.append(idx[k:])
    return np.sort(np.concatenate(a)), np.sort(np.concatenate(b))


def class_weight(y: np.ndarray, n_classes: int, mode: str | None, cap: float | None) -> torch.Tensor | None:
    """Balanced class weights (optionally capped at ``cap`` times the smallest), as the training estimator does."""
    if mode is None:
        return None
    if mode != "balanced":
        raise ConfigError(f"class_weights must be None or 'balanced', got {mode!r}")
    counts = np.bincount(np.asarray(y), minlength=n_classes).astype(float)
    w = np.where(counts > 0, counts.sum() / (n_classes * np.maximum(counts, 1)), 0.0)
    if cap:
        w = np.minimum(w, cap * w[w > 0].min())
    return torch.as_tensor(w, dtype=torch.float32)


def predict(model: torch.nn.Module, split: Split, batch_size: int = 2048) -> torch.Tensor:
    """Logits of ``model`` (eval mode, no grad) on every sample of ``split``."""
    was = model.training
    model.eval()
    outs = []
    with torch.no_grad():
        for xs, _ in split.batches(batch_size, None):
            outs.append(model(*xs))
    model.train(was)
    return torch.cat(outs)


def scores(logits: torch.Tensor, y: torch.Tensor, n_classes: int, f1_classes: Sequence[int] | None = None) -> dict[str, float]:
    from nas_core.metrics import accuracy, confusion_matrix, macro_f1

    cm = confusion_matrix(y.numpy(), logits.argmax(1).numpy(), n_classes)
    return {"accuracy": accuracy(cm), "macro_f1": macro_f1(cm, f1_classes),
            "loss": float(torch.nn.functional.cross_entropy(logits, y))}


def recalibrate_bn(model: torch.nn.Module, split: Split, *, n: int = 2000, batch_size: int = 500,
                   seed: int = 0, forward: Callable[..., Any] | None = None) -> None:
    """Reset BatchNorm running statistics and re-estimate them (cumulative average) on ``n`` samples.

    Needed for sub-networks of a weight-sharing supernet: the shared statistics
    belong to no single sub-network (single-path one-shot, Once-for-All).
    """
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    saved = [(m.momentum, m.training) for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average over the calibration batches
    was = model.training
    model.eval()
    for m in bns:
        m.train()
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(split))[: min(n, len(split))]
    sub = split.take(np.sort(idx))
    fwd = forward or model
    with torch.no_grad():
        for xs, _ in sub.batches(batch_size, None):
            if len(xs[0]) >= 2:
                fwd(*xs)
    for m, (mom, tr) in zip(bns, saved):
        m.momentum = mom
        m.train(tr)
    model.train(was)
