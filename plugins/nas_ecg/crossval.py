"""Record-level cross-validation on DS1: every DS1 record scored once by a model that never saw it.

``nas run ecg/compound-cnn --option cv_folds=5 ...`` (or ``task_options:
{cv_folds: 5}`` in YAML) replaces the 4 held-out validation records by
:class:`~nas_core.estimators.crossval.GroupedCVEstimator` over the 22 DS1
records, grouped by record (one record is one patient in MIT-BIH, except 201
and 202, of which only 201 is in DS1). DS2 never enters: the data come from
:meth:`nas_data.mitdb.MitBih.beats` on DS1's record list, which refuses DS2.

Fold placement (:func:`~nas_core.estimators.crossval.assign_folds`): records
are placed most "concentrated" first, so 208 (373 of DS1's 415 F beats) and
209 (383 of its S beats) are placed first and are kept in different folds
(``separate``), and every fold must hold N, S and V beats (else a clear error
naming the fold). F is required too for K <= 4 (F beats sit mostly in 208 and
in a few beats of 9 other DS1 records, too few to give every fold a meaningful F
count beyond that); for K > 4 the F requirement is dropped and the pooled score
still includes every F beat. 16 DS1 records hold S beats, so K <= 11 in practice
(the task checks the assignment when a study starts). MIT-BIH records 201 (DS1)
and 202 (DS2) come from one patient: that is de Chazal's split, kept as published.

Scores (pooled out-of-fold): ``cv_macro_f1`` (N, S, V, F), ``cv_macro_f1_nsv``
(N, S, V), ``cv_sv_f1`` (mean of S-F1 and V-F1), per-class Se/+P/F1, and the
per-fold mean/std of the first; threshold-free, from the pooled out-of-fold
class probabilities: ``cv_sv_ap`` (mean one-vs-rest average precision of S and
V) and ``cv_sv_auroc`` (mean one-vs-rest ROC AUC of S and V).
"""

from __future__ import annotations

from typing import Any

from nas_core.estimators.base import EvalContext
from nas_core.estimators.crossval import GroupedCVEstimator, GroupedData

#: pooled out-of-fold scores: name -> classes whose F1 is averaged (N=0, S=1, V=2, F=3)
ECG_CV_SCORES = {"macro_f1": (0, 1, 2, 3), "macro_f1_nsv": (0, 1, 2), "sv_f1": (1, 2)}
#: threshold-free pooled out-of-fold scores: name -> (kind, classes)
ECG_CV_PROB_SCORES = {"sv_ap": ("ap", (1, 2)), "sv_auroc": ("auroc", (1, 2))}
#: the search defaults under cross-validation, chosen by the rule of benchmarks/ecg_search.py from its
#: repeatability measurement (benchmarks/results/ecg_search_repeatability.md: 12 architectures, 8 seeds):
#: the cheapest fidelity meeting seed-to-seed Spearman >= 0.7 and partial Spearman >= 0.5 is 2 seeds at 6 epochs
#: on 30 % of each fold's training beats, and there the S/V ROC AUC has the highest partial Spearman
#: (Spearman 0.77, partial 0.62, mean of two disjoint pairs of 2-seed means)
CV_SEARCH_DEFAULTS = {"epochs": 6, "data_fraction": 0.3, "repeats": 2}
DEFAULT_CV_OBJECTIVE = "cv_sv_auroc"
#: DS1 records that hold most of a rare class; kept in different folds
SEPARATE_RECORDS = ("208", "209")


def ds1_grouped(fs_hz: float, *, data_dir=None, cache_dir=None, download=False, band=None,
                rr_features: str | None = None) -> GroupedData:
    """All DS1 beats at ``fs_hz`` with their record as the group."""
    from nas_data.mitdb import DS1

    from nas_ecg import data as ecg_data
    from nas_ecg.data import CLASSES, _loader

    mit = _loader(data_dir, cache_dir, download)
    kwargs = {} if band is None else {"band": band}
    beats = mit.beats(DS1, fs_hz, **kwargs)
    arrays = ecg_data._arrays(beats, rr_features or "normalised")
    return GroupedData((arrays.x, arrays.rr), arrays.y, arrays.record, n_classes=len(CLASSES))


def required_classes(folds: int) -> tuple[int, ...]:
    """Classes every fold must hold: N, S, V, and F for up to 4 folds."""
    return (0, 1, 2, 3) if folds <= 4 else (0, 1, 2)


def check_folds(folds: int, *, fold_seed: int = 0, data_dir=None, cache_dir=None, download=False) -> None:
    """Fail before a study starts when ``folds`` cannot give every fold its required classes (annotations only)."""
    import numpy as np
    from nas_data.mitdb import DS1

    from nas_core.estimators.crossval import assign_folds
    from nas_ecg.data import _loader

    mit = _loader(data_dir, cache_dir, download)
    groups, labels = [], []
    for rec in DS1:
        counts = mit.class_counts([rec])
        for c, name in enumerate(counts):
            groups += [rec] * counts[name]
            labels += [c] * counts[name]
    assign_folds(np.array(groups), np.array(labels), folds, n_classes=5, require_classes=required_classes(folds),
                 separate=SEPARATE_RECORDS, seed=fold_seed)


class ECGCVEstimator(GroupedCVEstimator):
    """Grouped cross-validation over DS1 records at the candidate's own sampling rate."""

    def __init__(self, *, data_dir=None, cache_dir=None, download=False, band=None, rr_features=None,
                 folds: int = 5, **kwargs: Any):
        from nas_ecg.data import CLASSES, F1_CLASSES

        require = required_classes(folds)
        super().__init__(None, folds=folds, scores=ECG_CV_SCORES, prob_scores=ECG_CV_PROB_SCORES,
                         require_classes=require,
                         separate=SEPARATE_RECORDS, class_weights="balanced", class_weight_cap=50.0,
                         macro_f1_classes=F1_CLASSES, class_names=CLASSES, **kwargs)
        self.data_dir, self.cache_dir, self.download = data_dir, cache_dir, download
        self.band, self.rr_features = band, rr_features
        self._by_fs: dict[float, GroupedData] = {}

    def __getstate__(self) -> dict:
        state = super().__getstate__()
        state["_by_fs"] = {}
        return state

    def grouped_dataset(self, ctx: EvalContext) -> GroupedData:
        from nas_ecg.space import scaled

        fs = float(ctx.arch["fs_hz"]) if "fs_hz" in ctx.arch else scaled(ctx.arch)["fs_hz"]
        return self.grouped_at(fs)

    def grouped_at(self, fs: float) -> GroupedData:
        if fs not in self._by_fs:
            self._by_fs.clear()  # one rate in memory at a time
            self._by_fs[fs] = ds1_grouped(fs, data_dir=self.data_dir, cache_dir=self.cache_dir,
                                          download=self.download, band=self.band, rr_features=self.rr_features)
        return self._by_fs[fs]

    def plan_for(self, fs: float):
        """The fold plan (the same at every rate: it depends on the beat labels only)."""
        return self.plan(self.grouped_at(fs))
