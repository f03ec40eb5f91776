"""Grouped K-fold cross-validation: every group scored once by a model that never saw it.

When the unit of generalisation is a group -- a patient, a recording, a subject,
a site -- a random split leaks: beats of one patient land on both sides, and the
score measures memory of that patient. A single held-out set of a few groups is
honest but small, and its score then depends more on the training seed than on
the architecture. :class:`GroupedCVEstimator` keeps whole groups together and
uses every group of the training split once for scoring:

1. :func:`assign_folds` puts each group into one of ``K`` folds, stratified so
   that every fold's validation part holds each required class (rare classes
   that sit in few groups are spread first; see its docstring for the rule).
2. For each fold ``f`` a fresh copy of the candidate (same initial weights) is
   trained on the other folds' groups for a fixed number of epochs and predicts
   fold ``f``. No fold is ever used to choose its own epoch (no early stopping
   on the scored fold): the epoch count is part of the fidelity and is chosen
   once, on the training split only.
3. The scores are computed on the **pooled out-of-fold predictions** (one
   confusion matrix over all groups), plus the per-fold mean and standard
   deviation of the main score.

The number of folds trained is a fidelity (``folds``, 1..K): successive halving,
Hyperband and BOHB can score many candidates on one fold and the survivors on
all ``K`` (``--strategy hyperband --strategy-option fidelity_key=folds``). With
``refit=True`` the candidate is finally trained on every group (at the same
``data_fraction`` and epochs) and those weights are kept and saved (``model.pt``);
the cross-validated metrics estimate how that model does on groups it has not seen.
The folds are ordered most representative first, so ``folds=1`` scores on a
typical fold.

Example::

    from nas_core.estimators.crossval import GroupedCVEstimator, GroupedData

    def load():                       # picklable factory: workers call it themselves
        return GroupedData(x, y, groups=subject_id, n_classes=4)

    est = GroupedCVEstimator(load, folds=5, epochs=8, class_weights="balanced",
                             scores={"macro_f1": (0, 1, 2, 3), "macro_f1_nsv": (0, 1, 2)})
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence, cast

import numpy as np
import numpy.typing as npt

from nas_core.errors import ConfigError, TrialFailed
from nas_core.estimators.base import EvalContext
from nas_core.estimators.lightning_trainer import ClassificationData, TrainingEstimator, _as_tuple, _stratified_fraction
from nas_core.metrics import accuracy, confusion_matrix, macro_f1, per_class

__all__ = ["GroupedData", "FoldPlan", "assign_folds", "GroupedCVEstimator", "pooled_scores", "pooled_prob_scores"]

#: kinds of threshold-free pooled scores (one-vs-rest, averaged over the listed classes)
PROB_SCORE_KINDS = ("ap", "auroc")


@dataclass(frozen=True)
class GroupedData:
    """Samples with a class label and a group label each. ``x`` is an array or a tuple of arrays."""

    x: Any
    y: np.ndarray
    groups: np.ndarray
    n_classes: int

    def __post_init__(self) -> None:
        n = len(np.asarray(self.y))
        if len(np.asarray(self.groups)) != n:
            raise ConfigError(f"GroupedData: {len(self.groups)} group labels for {n} samples")
        for i, part in enumerate(_as_tuple(self.x)):
            if len(part) != n:
                raise ConfigError(f"GroupedData: input {i} has {len(part)} samples, the labels {n}")


@dataclass(frozen=True)
class FoldPlan:
    """Which fold each group is scored in; ``folds[f]`` lists fold ``f``'s groups."""

    folds: tuple[tuple[str, ...], ...]

    @property
    def k(self) -> int:
        return len(self.folds)

    def fold_of(self, group: Any) -> int:
        g = str(group)
        for f, members in enumerate(self.folds):
            if g in members:
                return f
        raise KeyError(group)

    def to_dict(self) -> dict[str, list[list[str]]]:
        return {"folds": [list(f) for f in self.folds]}


def assign_folds(groups: Sequence[Any] | np.ndarray, y: npt.ArrayLike, k: int, *, n_classes: int | None = None,
                 require_classes: Sequence[int] | None = None, separate: Sequence[Any] = (),
                 seed: int = 0) -> FoldPlan:
    """Assign whole groups to ``k`` folds, stratified on the classes.

    The rule (deterministic under ``seed``):

    * per group, the share of each class's samples it holds;
    * groups are placed one at a time: the ``separate`` groups first, then (for
      ``seed = 0``) the most "concentrated" first (the largest share of any
      class the group holds), or (any other seed) in an order drawn from the
      seed, so another seed gives another valid assignment (repeated CV);
    * each goes to the fold that keeps the folds closest to ``1/k`` of every
      class and of the samples (least sum of squared deviations), among the
      folds that hold none of the ``separate`` groups when it is one of them.

    So a class held mostly by one group (MIT-BIH DS1: record 208 holds 373 of
    the 415 F beats, 209 holds 383 of the S beats) has that group placed first,
    in its own fold, and the class's other groups spread over the other folds.

    Raises:
        ConfigError: ``k`` below 2 or above the number of groups; a class in
            ``require_classes`` absent from some fold's validation part (the
            message names the class, the fold and the groups that hold it).
    """
    g = np.asarray([str(v) for v in groups])
    yy = np.asarray(y, dtype=np.int64)
    if len(g) != len(yy):
        raise ConfigError(f"assign_folds: {len(g)} group labels for {len(yy)} samples")
    names = list(dict.fromkeys(g.tolist()))
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise ConfigError(f"cv_folds must be an integer >= 2, got {k!r}")
    if k < 2:
        raise ConfigError(f"cv_folds must be >= 2 (got {k}): one fold leaves nothing to train on")
    if k > len(names):
        raise ConfigError(f"cv_folds = {k} is more than the {len(names)} groups (records) of the training split; "
                          f"each fold needs at least one whole group")
    nc = int(n_classes if n_classes is not None else (yy.max() + 1 if len(yy) else 1))
    counts = np.zeros((len(names), nc))
    index = {name: i for i, name in enumerate(names)}
    np.add.at(counts, (np.asarray([index[v] for v in g]), yy), 1)
    totals = np.maximum(counts.sum(0), 1)
    share = counts / totals  # (groups, classes)
    sizes = counts.sum(1) / max(1.0, counts.sum())
    sep = {str(s) for s in separate}
    unknown = sep - set(names)
    if unknown:
        raise ConfigError(f"assign_folds: groups to separate {sorted(unknown)} are not in the training split")
    if len(sep) > k:
        raise ConfigError(f"cannot put {len(sep)} groups to separate into {k} different folds")
    rng = np.random.default_rng(seed)
    tiebreak = rng.permutation(len(names))
    if seed == 0:
        order = sorted(range(len(names)), key=lambda i: (-(names[i] in sep), -share[i].max(), tiebreak[i]))
    else:  # another valid assignment: the groups to separate first, the others in a random order
        order = sorted(range(len(names)), key=lambda i: (-(names[i] in sep), tiebreak[i]))
    fold_share = np.zeros((k, nc))
    fold_size = np.zeros(k)
    members: list[list[str]] = [[] for _ in range(k)]
    present = share.sum(0) > 0
    for i in order:
        best, best_cost = None, math.inf
        for f in rng.permutation(k) if seed else range(k):
            if names[i] in sep and any(m in sep for m in members[f]):
                continue
            fs = fold_share.copy()
            fs[f] += share[i]
            fz = fold_size.copy()
            fz[f] += sizes[i]
            cost = float(((fs[:, present] - 1.0 / k) ** 2).sum() + ((fz - 1.0 / k) ** 2).sum())
            if cost < best_cost - 1e-12:
                best, best_cost = f, cost
        assert best is not None
        fold_share[best] += share[i]
        fold_size[best] += sizes[i]
        members[best].append(names[i])
    # the most representative fold first (closest to 1/k of every class and of the samples), so that the
    # ``folds`` fidelity's cheapest rung (one fold) scores candidates on a typical fold, not an extreme one
    dev = ((fold_share[:, present] - 1.0 / k) ** 2).sum(1) + (fold_size - 1.0 / k) ** 2
    plan = FoldPlan(tuple(tuple(members[f]) for f in sorted(range(k), key=lambda f: (dev[f], f))))
    for c in require_classes or ():
        holders = [names[i] for i in range(len(names)) if counts[i, c] > 0]
        for f, m in enumerate(plan.folds):
            if not any(counts[index[n], c] > 0 for n in m):
                raise ConfigError(
                    f"cv_folds = {k}: fold {f} (groups {' '.join(m)}) would hold no samples of class {c}, which only "
                    f"{len(holders)} group(s) hold ({' '.join(holders)}); use fewer folds or drop class {c} from "
                    f"the required classes")
    return plan


def pooled_scores(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int, scores: Mapping[str, Sequence[int] | None],
                  class_names: Sequence[str] | None = None, prefix: str = "cv_") -> dict[str, float]:
    """Scores of one confusion matrix: ``{prefix}{name}`` macro-F1 over each class set, accuracy, per-class figures."""
    cm = confusion_matrix(y_true, y_pred, n_classes)
    out = {f"{prefix}{name}": macro_f1(cm, None if classes is None else list(classes))
           for name, classes in scores.items()}
    out[f"{prefix}accuracy"] = accuracy(cm)
    if class_names:
        for name, st in zip(class_names, per_class(cm)):
            out.update({f"{prefix}{name}_{key}": float(st[key]) for key in ("se", "ppv", "f1")})
    return out


def pooled_prob_scores(y_true: np.ndarray, proba: np.ndarray, scores: Mapping[str, tuple[str, Sequence[int]]],
                       prefix: str = "cv_") -> dict[str, float]:
    """Threshold-free scores of pooled class probabilities: ``{prefix}{name}`` is the mean over the listed
    classes of the one-vs-rest average precision (``"ap"``, area under the precision-recall curve as
    scikit-learn computes it) or ROC AUC (``"auroc"``). A class absent from ``y_true`` scores 0 (AP) or 0.5."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    y_true = np.asarray(y_true)
    out = {}
    for name, (kind, classes) in scores.items():
        vals = []
        for c in classes:
            pos = y_true == c
            if not pos.any() or pos.all():
                vals.append(0.0 if kind == "ap" else 0.5)
            elif kind == "ap":
                vals.append(float(average_precision_score(pos, proba[:, c])))
            else:
                vals.append(float(roc_auc_score(pos, proba[:, c])))
        out[f"{prefix}{name}"] = float(np.mean(vals))
    return out


class GroupedCVEstimator(TrainingEstimator):
    """Grouped K-fold cross-validation of a classifier, scored on pooled out-of-fold predictions.

    ``data`` is a picklable factory of :class:`GroupedData` (override
    :meth:`grouped_dataset` when the data depend on the architecture). Training
    options are those of :class:`TrainingEstimator` (``epochs`` is the fixed
    epoch count of every fold; ``early_stopping_patience`` is not allowed, see
    the module docstring). ``scores`` maps a score name to the classes whose
    F1 it averages; the first one is the main score, reported per fold too.
    ``prob_scores`` maps a name to ``(kind, classes)`` for threshold-free scores
    of the pooled out-of-fold class probabilities (:func:`pooled_prob_scores`:
    ``"ap"`` average precision, ``"auroc"``); they do not depend on where the
    argmax puts the decision boundary, so they vary less with the seed.

    Fidelity keys: ``epochs``, ``data_fraction`` (of each fold's training part,
    stratified, fixed permutation) and ``folds`` (how many of the ``K`` folds
    to train and score; the first ``folds`` of the plan).

    Metrics: ``cv_<score>`` for each score and ``cv_accuracy`` on the pooled
    predictions, per-class ``cv_<class>_se|ppv|f1`` when ``class_names`` are
    given, ``cv_<main>_fold_mean`` and ``cv_<main>_fold_std``, ``cv_folds_run``
    and ``cv_samples_scored``. With ``repeats = r`` every fold is trained under
    ``r`` seeds; each pooled score is the mean over seeds, and
    ``cv_<main>_seed_std`` tells how much the seeds disagree.
    """

    def __init__(self, data: Callable[[], GroupedData] | None = None, *, folds: int = 5, fold_seed: int = 0,
                 scores: Mapping[str, Sequence[int]] | None = None, require_classes: Sequence[int] | None = None,
                 separate: Sequence[Any] = (), refit: bool = False,
                 prob_scores: Mapping[str, tuple[str, Sequence[int]]] | None = None, **kwargs: Any):
        if kwargs.get("early_stopping_patience"):
            raise ConfigError("cross-validation trains a fixed number of epochs per fold; early stopping on the "
                              "scored fold would leak it into the score (drop 'patience')")
        kwargs["early_stopping_patience"] = None
        # this subclass's factory gives GroupedData, which grouped_dataset() reads (TrainingEstimator.dataset() is
        # not used: evaluate() is overridden)
        super().__init__(cast("Callable[[], ClassificationData]", data or _no_data), **kwargs)
        if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
            raise ConfigError(f"cv_folds must be an integer >= 2, got {folds!r}")
        self.k = folds
        self.fold_seed = int(fold_seed)
        if scores is not None and (not scores or not all(scores.values())):
            raise ConfigError(f"scores must map each score name to a non-empty list of classes, got {scores!r}")
        # None: macro-F1 over every class with support or predictions
        self.scores: dict[str, tuple[int, ...] | None] = ({k: tuple(v) for k, v in scores.items()} if scores
                                                          else {"macro_f1": self.macro_f1_classes})
        self.main = next(iter(self.scores))
        self.prob_scores: dict[str, tuple[str, tuple[int, ...]]] = {}
        for name, spec in (prob_scores or {}).items():
            if (not isinstance(spec, (tuple, list)) or len(spec) != 2 or spec[0] not in PROB_SCORE_KINDS
                    or not spec[1]):
                raise ConfigError(f"prob_scores[{name!r}] must be (kind, classes) with kind in {PROB_SCORE_KINDS} "
                                  f"and a non-empty class list, got {spec!r}")
            if name in self.scores:
                raise ConfigError(f"score name {name!r} is both an F1 score and a probability score")
            self.prob_scores[name] = (spec[0], tuple(int(c) for c in spec[1]))
        self.require_classes = tuple(require_classes) if require_classes is not None else None
        self.separate = tuple(str(s) for s in separate)
        self.refit = bool(refit)
        self._grouped: GroupedData | None = None
        self._plans: dict[str, FoldPlan] = {}
        names = [f"cv_{s}" for s in self.scores] + [f"cv_{s}" for s in self.prob_scores] + ["cv_accuracy", f"cv_{self.main}_fold_mean",
                                                    f"cv_{self.main}_fold_std", "cv_folds_run", "cv_samples_scored",
                                                    "epochs_run"]
        if self.class_names:
            names += [f"cv_{c}_{k}" for c in self.class_names for k in ("se", "ppv", "f1")]
        if self.repeats > 1:
            names.append(f"cv_{self.main}_seed_std")
        self.metric_names = tuple(names)

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state["_grouped"] = None
        return state

    def default_fidelity(self) -> dict[str, Any]:
        return {**super().default_fidelity(), "folds": self.k}

    def fidelity_errors(self, fidelity: Mapping[str, Any]) -> list[str]:
        errors = super().fidelity_errors(fidelity)
        if not errors and "folds" in fidelity and not 1 <= fidelity["folds"] <= self.k:
            errors.append(f"fidelity folds must be in 1..{self.k} (the cv_folds), got {fidelity['folds']!r}")
        return errors

    def grouped_dataset(self, ctx: EvalContext) -> GroupedData:
        """The grouped training split for this candidate (override when it depends on the architecture)."""
        if self._grouped is None:
            grouped: object = self.data()
            if not isinstance(grouped, GroupedData):
                raise ConfigError("GroupedCVEstimator: the data factory must return GroupedData")
            self._grouped = grouped
        return self._grouped

    def plan(self, data: GroupedData) -> FoldPlan:
        """The fold assignment of ``data`` (computed once per estimator)."""
        import hashlib

        key = hashlib.sha256(np.asarray(data.y).tobytes() + "|".join(map(str, data.groups)).encode()).hexdigest()
        if key not in self._plans:
            self._plans = {key: assign_folds(data.groups, data.y, self.k, n_classes=data.n_classes,
                                             require_classes=self.require_classes, separate=self.separate,
                                             seed=self.fold_seed)}
        return self._plans[key]

    def evaluate(self, ctx: EvalContext) -> dict[str, float]:
        import torch
        from torch.utils.data import TensorDataset

        self._quiet_lightning()
        fid = {**self.default_fidelity(), **dict(ctx.fidelity)}
        epochs, fraction = int(fid["epochs"]), float(fid["data_fraction"])
        n_folds = fid["folds"]
        if isinstance(n_folds, float) and n_folds.is_integer():
            n_folds = int(n_folds)
        if isinstance(n_folds, bool) or not isinstance(n_folds, int) or not 1 <= n_folds <= self.k:
            raise ConfigError(f"fidelity folds must be an integer in 1..{self.k}, got {n_folds!r}")
        data = self.grouped_dataset(ctx)
        plan = self.plan(data)
        groups = np.asarray([str(v) for v in data.groups])
        xs = [np.asarray(p) for p in _as_tuple(data.x)]
        y = np.asarray(data.y, dtype=np.int64)

        def subset(idx: np.ndarray) -> TensorDataset:
            return TensorDataset(*[torch.as_tensor(p[idx], dtype=torch.float32) for p in xs],
                                 torch.as_tensor(y[idx], dtype=torch.long))

        initial = copy.deepcopy(ctx.model)
        scored_idx: list[np.ndarray] = []
        preds: list[list[np.ndarray]] = [[] for _ in range(self.repeats)]
        fold_main: list[float] = []
        epochs_run = 0.0
        for f in range(n_folds):
            val_idx = np.flatnonzero(np.isin(groups, plan.folds[f]))
            tr_idx = np.flatnonzero(~np.isin(groups, plan.folds[f]))
            if fraction < 1.0:
                tr_idx = tr_idx[_stratified_fraction(y[tr_idx], fraction)]
            train_ds, val_ds = subset(tr_idx), subset(val_idx)
            weight = self.class_weight(y[tr_idx], data.n_classes)
            scored_idx.append(val_idx)
            for r in range(self.repeats):
                model = copy.deepcopy(initial)
                seed = ctx.seed + r
                if r:
                    torch.manual_seed(seed)
                    for m in model.modules():
                        if hasattr(m, "reset_parameters"):
                            m.reset_parameters()
                _, _, ran = self._fit_named(f"fold{f + 1}" + (f"-repeat{r + 1}" if r else ""), ctx, model, seed,
                                            train_ds, None, weight, data.n_classes, epochs)
                epochs_run += ran
                proba = _predict(model, val_ds)
                pred = proba.argmax(1)
                preds[r].append(proba)
                if r == 0:
                    cm = confusion_matrix(y[val_idx], pred, data.n_classes)
                    main = self.scores[self.main]
                    fold_main.append(macro_f1(cm, None if main is None else list(main)))
        idx = np.concatenate(scored_idx)
        per_seed = []
        for p in preds:
            proba = np.concatenate(p)
            sc = pooled_scores(y[idx], proba.argmax(1), data.n_classes, self.scores, self.class_names)
            if self.prob_scores:
                sc.update(pooled_prob_scores(y[idx], proba, self.prob_scores))
            per_seed.append(sc)
        out = {k: float(np.mean([s[k] for s in per_seed])) for k in per_seed[0]}
        if not all(math.isfinite(v) for v in out.values()):
            raise TrialFailed("cross-validation produced a non-finite score")
        out.update({f"cv_{self.main}_fold_mean": float(np.mean(fold_main)),
                    f"cv_{self.main}_fold_std": float(np.std(fold_main)),
                    "cv_folds_run": float(n_folds), "cv_samples_scored": float(len(idx)),
                    "epochs_run": epochs_run})
        if self.repeats > 1:
            out[f"cv_{self.main}_seed_std"] = float(np.std([s[f"cv_{self.main}"] for s in per_seed]))
        if self.refit:
            all_idx = np.arange(len(y))
            if fraction < 1.0:
                all_idx = all_idx[_stratified_fraction(y, fraction)]
            ctx.model.load_state_dict(initial.state_dict())
            _, state, _ = self._fit_named("refit", ctx, ctx.model, ctx.seed, subset(all_idx), None,
                                          self.class_weight(y[all_idx], data.n_classes), data.n_classes, epochs)
            ctx.model.load_state_dict(state)
            self._save(ctx)
        return out

    def _save(self, ctx: EvalContext) -> None:
        if not ctx.artifact_dir:
            return
        import torch
        from pathlib import Path

        out = Path(ctx.artifact_dir)
        out.mkdir(parents=True, exist_ok=True)
        tmp = out / "model.pt.tmp"
        torch.save(ctx.model.state_dict(), tmp)
        tmp.replace(out / "model.pt")


def _no_data() -> GroupedData:
    raise ConfigError("GroupedCVEstimator: no data factory given; pass data= or override grouped_dataset()")


def _predict(model: Any, ds: Any, batch_size: int = 2048) -> np.ndarray:
    """Class probabilities (softmax of the logits), one row per sample."""
    import torch

    model.eval()
    out = []
    with torch.no_grad():
        n = len(ds)
        for b in range(0, n, batch_size):
            parts = [t[b:b + batch_size] for t in ds.tensors[:-1]]
            out.append(torch.softmax(model(*parts).float(), 1).cpu().numpy())
    model.train()
    return np.concatenate(out) if out else np.zeros((0, 0), dtype=np.float32)
