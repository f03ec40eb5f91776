"""``repeats``: a candidate trained under several seeds; the kept weights and usual metrics stay the first run's."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nas_core.errors import ConfigError
from nas_core.estimators.base import EvalContext
from nas_core.examples.digits import DigitsCNNSpace, DigitsTask
from nas_core.store import Store, TrialState
from nas_core.study import StudyConfig, run_study

torch.set_num_threads(1)
FAST = {"epochs": 2, "data_fraction": 0.3}


def _evaluate(repeats: int, tmp_path, seed: int = 3):
    space = DigitsCNNSpace()
    arch = space.sample(np.random.default_rng(1))
    torch.manual_seed(seed)
    model = space.build(arch)
    est = DigitsTask(space, **FAST, repeats=repeats).estimator()
    out = est.evaluate(EvalContext(arch, model, seed, {}, artifact_dir=str(tmp_path / f"r{repeats}")))
    return est, out, torch.load(tmp_path / f"r{repeats}" / "model.pt", weights_only=True)


def test_repeats_add_mean_and_spread_and_keep_the_first_run(tmp_path):
    est1, one, w1 = _evaluate(1, tmp_path)
    est2, two, w2 = _evaluate(2, tmp_path)
    assert "val_macro_f1_mean" not in one and "val_macro_f1_mean" not in est1.metric_names
    assert {"val_macro_f1_mean", "val_macro_f1_std", "val_accuracy_mean"} <= set(est2.metric_names) & set(two)
    # the first run is untouched by the extra one: same metrics, same saved weights
    assert {k: two[k] for k in one} == one
    assert all(torch.equal(w1[k], w2[k]) for k in w1)
    # the second run by hand: the same network re-initialised under seed + 1, trained under seed + 1
    space = DigitsCNNSpace()
    arch = space.sample(np.random.default_rng(1))
    torch.manual_seed(3)
    model = space.build(arch)
    torch.manual_seed(4)
    for m in model.modules():
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()
    other = DigitsTask(space, **FAST).estimator().evaluate(EvalContext(arch, model, 4, {}))
    f1 = [one["val_macro_f1"], other["val_macro_f1"]]
    assert two["val_macro_f1_mean"] == pytest.approx(np.mean(f1))
    assert two["val_macro_f1_std"] == pytest.approx(np.std(f1))
    assert two["val_accuracy_mean"] == pytest.approx((one["val_accuracy"] + other["val_accuracy"]) / 2)


def test_repeats_are_deterministic(tmp_path):
    _, a, _ = _evaluate(2, tmp_path / "a")
    _, b, _ = _evaluate(2, tmp_path / "b")
    assert a == b


@pytest.mark.parametrize("value", [0, 21, 1.5, "2", True])
def test_bad_repeats_are_clear_errors(value):
    with pytest.raises(ConfigError, match="repeats"):
        DigitsTask(DigitsCNNSpace(), repeats=value).estimator()


def test_a_study_can_rank_on_the_mean(tmp_path):
    cfg = StudyConfig(space="digits/cnn", budget=2, strategy="random", seed=0, objectives=("val_macro_f1_mean:max",),
                      task_options={**FAST, "repeats": 2})
    assert run_study(cfg, tmp_path).complete == 2
    with Store.open(tmp_path / "study.db") as st:
        assert all("val_macro_f1_mean" in t.metrics for t in st.trials([TrialState.COMPLETE]))


def test_the_ecg_task_takes_repeats():
    from nas_ecg.space import CompoundECGSpace
    from nas_ecg.task import ECGTask

    assert "val_macro_f1_mean" in ECGTask(CompoundECGSpace(), repeats=3).estimator().metric_names
    with pytest.raises(ConfigError, match="repeats"):
        ECGTask(CompoundECGSpace(), repeats="3").estimator()
