"""Grouped cross-validation: whole groups per fold, stratified, pooled out-of-fold scores."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nas_core.errors import ConfigError
from nas_core.estimators.base import EvalContext
from nas_core.estimators.crossval import GroupedCVEstimator, GroupedData, assign_folds, pooled_scores
from nas_core.space import Architecture


def _groups(counts: dict[str, tuple[int, ...]]):
    g, y = [], []
    for name, per_class in counts.items():
        for c, n in enumerate(per_class):
            g += [name] * n
            y += [c] * n
    return np.array(g), np.array(y)


# a DS1-like layout: class 2 held almost entirely by "g8", class 1 mostly by "g9"
LAYOUT = {"g1": (300, 2, 0), "g2": (280, 0, 1), "g3": (310, 5, 0), "g4": (290, 1, 2), "g5": (305, 0, 0),
          "g6": (295, 3, 1), "g7": (300, 20, 0), "g8": (250, 2, 90), "g9": (260, 80, 0), "g10": (290, 10, 2)}


def test_folds_keep_groups_whole_and_cover_each_once():
    g, y = _groups(LAYOUT)
    plan = assign_folds(g, y, 4, n_classes=3)
    members = [m for fold in plan.folds for m in fold]
    assert sorted(members) == sorted(LAYOUT)  # every group exactly once
    assert len(members) == len(set(members))
    assert plan.k == 4 and all(plan.folds)
    # the groups that dominate a class are placed first, in different folds
    assert plan.fold_of("g8") != plan.fold_of("g9")


def test_folds_are_deterministic_and_seed_changes_them():
    g, y = _groups(LAYOUT)
    assert assign_folds(g, y, 3, seed=0) == assign_folds(g, y, 3, seed=0)
    plans = {assign_folds(g, y, 3, seed=s).folds for s in range(6)}
    assert len(plans) > 1


def test_folds_stratify_rare_classes():
    g, y = _groups(LAYOUT)
    plan = assign_folds(g, y, 3, n_classes=3, require_classes=(1, 2))
    for fold in plan.folds:
        sel = np.isin(g, fold)
        assert (y[sel] == 1).any() and (y[sel] == 2).any()


def test_separate_groups_go_to_different_folds():
    g, y = _groups(LAYOUT)
    plan = assign_folds(g, y, 3, separate=("g1", "g2", "g3"))
    assert len({plan.fold_of(n) for n in ("g1", "g2", "g3")}) == 3
    with pytest.raises(ConfigError, match="different folds"):
        assign_folds(g, y, 2, separate=("g1", "g2", "g3"))
    with pytest.raises(ConfigError, match="not in the training split"):
        assign_folds(g, y, 2, separate=("nope",))


@pytest.mark.parametrize("k", [0, 1, 11, True, 2.5])
def test_bad_fold_counts(k):
    g, y = _groups(LAYOUT)
    with pytest.raises(ConfigError, match="cv_folds"):
        assign_folds(g, y, k)


def test_class_absent_from_a_fold_is_a_clear_error():
    g, y = _groups({"a": (10, 5), "b": (10, 0), "c": (10, 0), "d": (10, 0)})
    with pytest.raises(ConfigError, match="class 1, which only 1 group"):
        assign_folds(g, y, 2, require_classes=(1,))
    assign_folds(g, y, 2)  # without the requirement it is allowed


def test_pooled_scores_hand_computed():
    # truth 0 0 0 1 1 2 ; prediction 0 0 1 1 2 2
    yt = np.array([0, 0, 0, 1, 1, 2])
    yp = np.array([0, 0, 1, 1, 2, 2])
    s = pooled_scores(yt, yp, 3, {"all": (0, 1, 2), "first": (0, 1)}, class_names=("A", "B", "C"))
    # class 0: tp 2, fn 1, fp 0 -> se 2/3, ppv 1, f1 0.8
    # class 1: tp 1, fn 1, fp 1 -> se 1/2, ppv 1/2, f1 0.5
    # class 2: tp 1, fn 0, fp 1 -> se 1, ppv 1/2, f1 2/3
    assert s["cv_A_f1"] == pytest.approx(0.8)
    assert s["cv_B_se"] == pytest.approx(0.5) and s["cv_B_ppv"] == pytest.approx(0.5)
    assert s["cv_C_ppv"] == pytest.approx(0.5)
    assert s["cv_all"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    assert s["cv_first"] == pytest.approx(0.65)
    assert s["cv_accuracy"] == pytest.approx(4 / 6)


def test_pooled_probability_scores_hand_computed():
    from nas_core.estimators.crossval import pooled_prob_scores

    y = np.array([1, 0, 1, 0])
    proba = np.array([[0.1, 0.9], [0.2, 0.8], [0.3, 0.7], [0.9, 0.1]])
    s = pooled_prob_scores(y, proba, {"ap1": ("ap", (1,)), "auc1": ("auroc", (1,)), "ap01": ("ap", (0, 1))})
    # class 1 ranked: pos 0.9, neg 0.8, pos 0.7, neg 0.1 -> AP = (1/1 + 2/3) / 2; AUROC: 3 of 4 pairs ordered
    assert s["cv_ap1"] == pytest.approx((1 + 2 / 3) / 2)
    assert s["cv_auc1"] == pytest.approx(0.75)
    # class 0 ranked: pos 0.9 (sample 3), neg 0.3, pos 0.2 (sample 1), neg 0.1 -> the same AP
    assert s["cv_ap01"] == pytest.approx((1 + 2 / 3) / 2)
    # a class with no positives in the pooled labels scores 0 (AP) or chance (AUROC)
    absent = pooled_prob_scores(np.zeros(4, int), proba, {"a": ("ap", (1,)), "b": ("auroc", (1,))})
    assert absent == {"cv_a": 0.0, "cv_b": 0.5}


def test_probability_scores_reach_the_metrics_and_bad_specs_are_refused():
    x = np.array([[0, 0], [1, 0], [0, 1], [0, 1], [2, 2], [1, 2], [1, 3], [2, 3]], dtype=np.float32)
    y = np.array([0, 1, 0, 1, 2, 2, 1, 2])
    data = GroupedData(x, y, np.array(["0", "0", "1", "1", "2", "2", "3", "3"]), 3)
    est = _NoTraining(lambda: data, folds=2, epochs=1, scores={"f1": (0, 1, 2)},
                      prob_scores={"ap2": ("ap", (2,))})
    est.seen = []
    assert "cv_ap2" in est.metric_names
    m = est.evaluate(EvalContext(Architecture({"a": 1}), _Rule(), seed=0))
    # the rule gives class 2 a high probability on samples 4 and 7 (both class 2) and 0/1 ties elsewhere:
    # from sklearn's step-wise AP: the two top-ranked are positive (precision 1 at recall 2/3), then the
    # third positive comes with the 5 tied negatives (precision 3/8 at recall 1): AP = 2/3 + 1/3 * 3/8
    assert m["cv_ap2"] == pytest.approx(2 / 3 + 1 / 3 * 3 / 8)
    for bad in ({"x": ("f1", (1,))}, {"x": ("ap", ())}, {"x": "ap"}, {"f1": ("ap", (1,))}):
        with pytest.raises(ConfigError, match="prob"):
            _NoTraining(lambda: data, folds=2, epochs=1, scores={"f1": (0, 1, 2)}, prob_scores=bad)


class _Rule(torch.nn.Module):
    """Predicts class round(x[:, 0]); its parameter never changes the argmax."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x):
        cls = x[:, 0].round().long().clamp(0, 2)
        return torch.nn.functional.one_hot(cls, 3).float() + 0 * self.w


class _NoTraining(GroupedCVEstimator):
    def _fit(self, ctx, model, seed, train_ds, val_ds, weight, n_classes, epochs):
        self.seen.append(sorted(set(train_ds.tensors[0][:, 1].long().tolist())))
        return {}, model.state_dict(), float(epochs)


def test_pooled_out_of_fold_predictions_hand_computed():
    # four groups (group id in column 1); the "model" predicts round(column 0)
    x = np.array([[0, 0], [1, 0], [0, 1], [0, 1], [2, 2], [1, 2], [1, 3], [2, 3]], dtype=np.float32)
    y = np.array([0, 1, 0, 1, 2, 2, 1, 2])
    groups = np.array(["0", "0", "1", "1", "2", "2", "3", "3"])
    data = GroupedData(x, y, groups, 3)
    est = _NoTraining(lambda: data, folds=2, epochs=1, scores={"f1": (0, 1, 2)})
    est.seen = []
    ctx = EvalContext(Architecture({"a": 1}), _Rule(), seed=0)
    m = est.evaluate(ctx)
    plan = est.plan(est.grouped_dataset(ctx))
    # each fold's model was trained on the other fold's groups only
    for fold, seen in zip(plan.folds, est.seen):
        assert not set(map(int, fold)) & set(seen)
    # pooled predictions: 0 1 0 0 2 1 1 2 against truth 0 1 0 1 2 2 1 2
    # class 0: tp 2 fp 1 fn 0 -> f1 0.8; class 1: tp 2 fp 1 fn 1 -> f1 2/3; class 2: tp 2 fp 0 fn 1 -> 0.8
    assert m["cv_f1"] == pytest.approx((0.8 + 2 / 3 + 0.8) / 3)
    assert m["cv_accuracy"] == pytest.approx(6 / 8)
    assert m["cv_samples_scored"] == 8 and m["cv_folds_run"] == 2
    # the folds fidelity: one fold scores only that fold's groups
    one = est.evaluate(EvalContext(Architecture({"a": 1}), _Rule(), seed=0, fidelity={"folds": 1}))
    assert one["cv_samples_scored"] == np.isin(groups, plan.folds[0]).sum()
    with pytest.raises(ConfigError, match="fidelity folds"):
        est.evaluate(EvalContext(Architecture({"a": 1}), _Rule(), seed=0, fidelity={"folds": 3}))


def test_early_stopping_on_the_scored_fold_is_refused():
    with pytest.raises(ConfigError, match="early stopping"):
        GroupedCVEstimator(lambda: None, folds=3, early_stopping_patience=2)
    with pytest.raises(ConfigError, match="cv_folds"):
        GroupedCVEstimator(lambda: None, folds=1)


def _separable(seed=0, n_groups=6, per=60):
    rng = np.random.default_rng(seed)
    xs, ys, gs = [], [], []
    for gi in range(n_groups):
        y = rng.integers(0, 3, per)
        x = rng.normal(0, 0.3, (per, 4)).astype(np.float32)
        x[np.arange(per), y] += 2.0
        x += rng.normal(0, 0.2, 4).astype(np.float32)  # a per-group offset
        xs.append(x)
        ys.append(y)
        gs += [f"s{gi}"] * per
    return GroupedData(np.concatenate(xs), np.concatenate(ys), np.array(gs), 3)


def test_real_training_scores_separable_groups_and_refits(tmp_path):
    data = _separable()
    est = GroupedCVEstimator(lambda: data, folds=3, epochs=8, batch_size=32, lr=0.05, refit=True,
                             scores={"macro_f1": (0, 1, 2), "first_two": (0, 1)}, class_names=("a", "b", "c"),
                             repeats=2)
    model = torch.nn.Linear(4, 3)
    m = est.evaluate(EvalContext(Architecture({"a": 1}), model, seed=3, artifact_dir=str(tmp_path)))
    assert m["cv_macro_f1"] > 0.9
    assert set(est.metric_names) <= set(m)
    assert m["epochs_run"] == 3 * 2 * 8
    assert (tmp_path / "model.pt").exists()
    # per-fold (and per-seed) Lightning CSV logs, and the refit's
    logged = sorted(p.parent.relative_to(tmp_path / "logs").as_posix() for p in (tmp_path / "logs").rglob("metrics.csv"))
    assert logged == ["fold1", "fold1-repeat2", "fold2", "fold2-repeat2", "fold3", "fold3-repeat2", "refit"]
    assert "train_loss" in (tmp_path / "logs" / "fold2" / "metrics.csv").read_text().splitlines()[0]
    # deterministic under the seed
    again = est.evaluate(EvalContext(Architecture({"a": 1}), torch.nn.Linear(4, 3), seed=3))
    assert again["cv_macro_f1"] == pytest.approx(m["cv_macro_f1"])


def test_folds_are_a_fidelity_for_successive_halving():
    """One fold for every candidate, all folds for the survivors."""
    from nas_core.space import Categorical, SearchSpace
    from nas_core.store import TrialState
    from nas_core.strategies.base import Objective, Proposal, TrialResult
    from nas_core.strategies.hyperband import SuccessiveHalving

    x = np.array([[0, 0], [1, 0], [0, 1], [0, 1], [2, 2], [1, 2], [1, 3], [2, 3]], dtype=np.float32)
    data = GroupedData(x, np.array([0, 1, 0, 1, 2, 2, 1, 2]), np.array(["0", "0", "1", "1", "2", "2", "3", "3"]), 3)
    est = _NoTraining(lambda: data, folds=2, epochs=1, scores={"f1": (0, 1, 2)})
    est.seen = []
    space = SearchSpace("toy", [Categorical("a", list(range(9)))])
    sh = SuccessiveHalving(space, [Objective("cv_f1", "max")], seed=0, fidelity_key="folds", budgets=[1, 2], eta=2,
                           n_configs=4)
    runs = []
    for number in range(6):
        p = sh.ask()
        arch, fid = (p.arch, dict(p.fidelity)) if isinstance(p, Proposal) else (p, {})
        m = est.evaluate(EvalContext(arch, _Rule(), seed=0, fidelity=fid))
        runs.append((fid.get("folds"), m["cv_folds_run"], arch.hash))
        sh.tell(arch, TrialResult(TrialState.COMPLETE, m, number, fid))
    assert [r[0] for r in runs] == [1, 1, 1, 1, 2, 2]
    assert all(r[0] == r[1] for r in runs)
    assert {r[2] for r in runs[4:]} <= {r[2] for r in runs[:4]}  # survivors of the one-fold rung
