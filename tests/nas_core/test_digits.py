"""The built-in digits example: real Lightning training, deterministic under a seed."""

from __future__ import annotations

import numpy as np
import pytest

from nas_core.examples.digits import _splits, digits_search_data, digits_test_split, split_indices
from nas_core.plugins import Registry
from nas_core.store import Store, TrialState
from nas_core.study import StudyConfig, run_study


def test_splits_are_disjoint_and_the_test_split_is_not_searched():
    train, val, test = split_indices()
    assert len(train) + len(val) + len(test) == 1797
    assert not set(train) & set(val) and not set(train) & set(test) and not set(val) & set(test)
    x_tr, _, x_val, _, x_te, _ = _splits()
    d = digits_search_data()
    assert d.x_train is x_tr and d.x_val is x_val and len(d.y_train) == len(train)
    x_test, _ = digits_test_split()
    assert x_test is x_te


def test_same_seed_twice_gives_same_architectures_and_metrics(tmp_path):
    def run(d, seed):
        cfg = StudyConfig(space="digits/cnn", budget=3, strategy="evolution", seed=seed, target="digits/cortex-m4",
                          task_options={"epochs": 2, "data_fraction": 0.3},
                          strategy_options={"population_size": 2, "sample_size": 1})
        run_study(cfg, tmp_path / d, registry=Registry())
        with Store.open(tmp_path / d / "study.db") as st:
            return [(t.arch.hash, dict(t.metrics), dict(t.costs)) for t in st.trials([TrialState.COMPLETE])]

    a, b, c = run("a", 11), run("b", 11), run("c", 12)
    assert len(a) == 3 and a == b
    assert [x[0] for x in a] != [x[0] for x in c]
    assert all(0.0 < m["val_accuracy"] <= 1.0 for _, m, _ in a)


def test_kept_weights_are_the_best_epoch_and_reproduce_the_reported_metric(tmp_path):
    import torch

    from nas_core.examples.digits import DigitsCNNSpace, DigitsTask
    from nas_core.estimators.base import EvalContext
    from nas_core.space import Architecture

    space = DigitsCNNSpace()
    arch = Architecture({"stages": [{"channels": 8, "kernel": 3, "block": "plain", "pool": True}], "head": "avg",
                         "hidden": 0, "activation": "relu"})
    est = DigitsTask(space, epochs=3).estimator()
    torch.manual_seed(0)
    model = space.build(arch)
    m = est.evaluate(EvalContext(arch, model, 0, {}, None, str(tmp_path / "t1")))
    state = torch.load(tmp_path / "t1" / "model.pt", weights_only=True)
    fresh = space.build(arch)
    fresh.load_state_dict(state)
    fresh.eval()
    d = digits_search_data()
    with torch.no_grad():
        pred = fresh(torch.as_tensor(d.x_val)).argmax(1).numpy()
    assert np.mean(pred == d.y_val) == pytest.approx(m["val_accuracy"])
    assert 0 <= m["best_epoch"] <= 2


def test_lightning_estimator_fails_nan_loss_and_overrun_deadline():
    import time

    import torch

    from nas_core.errors import TrialFailed, TrialTimeout
    from nas_core.estimators.base import EvalContext
    from nas_core.examples.digits import DigitsCNNSpace, DigitsTask
    from nas_core.space import Architecture

    class NaNNet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(64, 10)

        def forward(self, x):
            return self.lin(x.flatten(1)) * float("nan")

    arch = Architecture({"stages": [{"channels": 8, "kernel": 3, "block": "plain", "pool": True}], "head": "avg",
                         "hidden": 0, "activation": "relu"})
    est = DigitsTask(DigitsCNNSpace(), epochs=2).estimator()
    with pytest.raises(TrialFailed, match="non-finite training loss"):
        est.evaluate(EvalContext(arch, NaNNet(), 0, {}))
    model = DigitsCNNSpace().build(arch)
    with pytest.raises(TrialTimeout, match="time limit"):
        est.evaluate(EvalContext(arch, model, 0, {}, deadline=time.monotonic() - 1.0))
