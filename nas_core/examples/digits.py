"""Built-in example plugin: small CNNs on scikit-learn's 8x8 handwritten digits.

It needs no download (the 1,797 images ship with scikit-learn), trains a
candidate in a second or two on a CPU, and so serves the test suite, the
conformance kit's examples and a quick first search. The data are split once,
stratified with seed 0: 60 % training, 20 % validation (what the search sees) and
20 % test, which the search never touches (:func:`digits_test_split`).

Space ``digits/cnn``: 1-3 convolution stages (channels, kernel, plain or
depthwise-separable block, optional max-pooling), a global-average or flatten
head, an optional hidden layer whose dropout is a conditional dimension, and the
activation.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from nas_core.estimators.lightning_trainer import ClassificationData, TrainingEstimator
from nas_core.hardware import load_target
from nas_core.plugins import Plugin, SpaceEntry
from nas_core.space import Architecture, Categorical, Float, Repeat, SearchSpace
from nas_core.task import Task

if TYPE_CHECKING:
    from torch import nn

    from nas_core.examples.digits_oneshot import DigitsMixedSupport
    from nas_core.hardware import HardwareTarget

TARGETS_DIR = Path(__file__).resolve().parents[1] / "hardware" / "targets"


@lru_cache(maxsize=1)
def split_indices() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices of the training, validation and test images (stratified, seed 0)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    y = load_digits().target
    idx = np.arange(len(y))
    rest, test = train_test_split(idx, test_size=0.2, stratify=y, random_state=0)
    train, val = train_test_split(rest, test_size=0.25, stratify=y[rest], random_state=0)
    return train, val, test


@lru_cache(maxsize=1)
def _splits() -> tuple[np.ndarray, ...]:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[:, None, :, :]
    y = d.target.astype(np.int64)
    out: list[np.ndarray] = []
    for part in split_indices():
        out += [x[part], y[part]]
    return tuple(out)


def digits_search_data() -> ClassificationData:
    """Training and validation splits (the only data a search sees)."""
    x_tr, y_tr, x_val, y_val, _, _ = _splits()
    return ClassificationData(x_tr, y_tr, x_val, y_val, n_classes=10)


def digits_test_split() -> tuple[np.ndarray, np.ndarray]:
    """The held-out test split, for evaluating chosen models once after a search."""
    _, _, _, _, x_te, y_te = _splits()
    return x_te, y_te


class DigitsCNNSpace(SearchSpace):
    def mixed_support(self, **options: Any) -> DigitsMixedSupport:
        """Mixed-op support for DARTS and weight-sharing supernets (see :mod:`nas_core.examples.digits_oneshot`)."""
        from nas_core.examples.digits_oneshot import DigitsMixedSupport

        return DigitsMixedSupport(self, **options)

    def __init__(self) -> None:
        super().__init__("digits-cnn", [
            Repeat("stages", [
                Categorical("channels", [8, 16, 24, 32]),
                Categorical("kernel", [3, 5]),
                Categorical("block", ["plain", "dwsep"]),
                Categorical("pool", [False, True]),
            ], min_count=1, max_count=3),
            Categorical("head", ["avg", "flatten"]),
            Categorical("hidden", [0, 32, 64]),
            Float("dropout", 0.0, 0.3, step=0.1, when={"hidden": [32, 64]}),
            Categorical("activation", ["relu", "gelu"]),
        ])

    def build(self, arch: Architecture) -> nn.Sequential:
        import torch.nn as nn

        act = {"relu": nn.ReLU, "gelu": nn.GELU}[arch["activation"]]
        layers: list[nn.Module] = []
        ch, size = 1, 8
        for st in arch["stages"]:
            k, out = st["kernel"], st["channels"]
            if st["block"] == "plain":
                layers += [nn.Conv2d(ch, out, k, padding=k // 2, bias=False)]
            else:
                layers += [nn.Conv2d(ch, ch, k, padding=k // 2, groups=ch, bias=False),
                           nn.Conv2d(ch, out, 1, bias=False)]
            layers += [nn.BatchNorm2d(out), act()]
            if st["pool"] and size >= 2:
                layers.append(nn.MaxPool2d(2))
                size //= 2
            ch = out
        if arch["head"] == "avg":
            layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
            feat = ch
        else:
            layers += [nn.Flatten()]
            feat = ch * size * size
        if arch["hidden"]:
            layers += [nn.Linear(feat, arch["hidden"]), act(), nn.Dropout(arch["dropout"])]
            feat = arch["hidden"]
        layers.append(nn.Linear(feat, 10))
        return nn.Sequential(*layers)


class DigitsTask(Task):
    """Classify the 8x8 digits; options: epochs, data_fraction, batch_size, lr, repeats, accelerator, devices."""

    name = "digits"
    n_outputs = 10
    OPTIONS = ("epochs", "data_fraction", "batch_size", "lr", "repeats", "accelerator", "devices")

    def __init__(self, space: SearchSpace, **options: Any):
        from nas_core.errors import ConfigError

        unknown = set(options) - set(self.OPTIONS)
        if unknown:
            raise ConfigError(f"digits task: unknown option(s) {sorted(unknown)}; allowed: {list(self.OPTIONS)}")
        super().__init__(space, **options)

    def input_shape(self, arch: Architecture) -> tuple[int, ...]:
        return (1, 8, 8)

    def estimator(self) -> TrainingEstimator:
        o = self.options
        return TrainingEstimator(digits_search_data, epochs=int(o.get("epochs", 8)),
                                 data_fraction=float(o.get("data_fraction", 1.0)),
                                 batch_size=int(o.get("batch_size", 64)), lr=float(o.get("lr", 3e-3)),
                                 repeats=o.get("repeats", 1), accelerator=o.get("accelerator", "auto"),
                                 devices=o.get("devices", "auto"))


def _target(name: str) -> Callable[[], HardwareTarget]:
    return lambda: load_target(TARGETS_DIR / name)


def _cell_space() -> SearchSpace:
    from nas_core.examples.cells import DigitsCellSpace

    return DigitsCellSpace()


def plugin() -> Plugin:
    return Plugin(
        name="digits",
        version="0.1.0",
        description="Example: small CNNs on scikit-learn's 8x8 digits (no download)",
        spaces={"cnn": SpaceEntry(DigitsCNNSpace, DigitsTask, "1-3 conv stages, head, hidden layer"),
                "cells": SpaceEntry(_cell_space, DigitsTask, "cell-based (NASNet/DARTS style): a normal and a "
                                    "reduction cell, stacked")},
        targets={"cortex-m4": _target("cortex_m4_64mhz.toml"), "cortex-m7": _target("cortex_m7_480mhz.toml")},
    )
