"""Classification metrics from a confusion matrix (rows: true class, columns: predicted)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import numpy.typing as npt


def confusion_matrix(y_true: npt.ArrayLike, y_pred: npt.ArrayLike, n_classes: int) -> np.ndarray:
    yt = np.asarray(y_true, dtype=np.int64)
    yp = np.asarray(y_pred, dtype=np.int64)
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (yt, yp), 1)
    return cm


def _div(a: float, b: float) -> float:
    return float(a) / float(b) if b else 0.0


def per_class(cm: np.ndarray) -> list[dict[str, float]]:
    """Sensitivity (recall), positive predictivity (precision), specificity and F1 per class."""
    cm = np.asarray(cm)
    total = cm.sum()
    out = []
    for k in range(cm.shape[0]):
        tp = cm[k, k]
        fn = cm[k].sum() - tp
        fp = cm[:, k].sum() - tp
        tn = total - tp - fn - fp
        se, ppv = _div(tp, tp + fn), _div(tp, tp + fp)
        out.append({"se": se, "ppv": ppv, "spec": _div(tn, tn + fp), "f1": _div(2 * se * ppv, se + ppv),
                    "support": int(tp + fn)})
    return out


def macro_f1(cm: np.ndarray, classes: Sequence[int] | None = None) -> float:
    """Mean F1 over ``classes`` (default: every class with support or predictions)."""
    stats = per_class(cm)
    cm = np.asarray(cm)
    if classes is None:
        classes = [k for k in range(cm.shape[0]) if cm[k].sum() + cm[:, k].sum() > 0]
    if not classes:
        return 0.0
    return float(np.mean([stats[k]["f1"] for k in classes]))


def accuracy(cm: np.ndarray) -> float:
    cm = np.asarray(cm)
    return _div(np.trace(cm), cm.sum())
