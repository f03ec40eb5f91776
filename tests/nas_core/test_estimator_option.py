"""``StudyConfig.estimator`` / ``nas run --estimator``: a study scored by zero-cost proxies instead of training."""

from __future__ import annotations

import subprocess
import sys

import pytest

import toy
from nas_core.errors import ConfigError
from nas_core.estimators.zero_cost import ZeroCostTask, parse_proxies
from nas_core.plugins import Registry
from nas_core.store import Store, TrialState
from nas_core.study import StudyConfig, run_study


def _reg():
    return Registry([toy.toy_plugin()], discover=False)


def _trials(path):
    with Store.open(path / "study.db") as st:
        return list(st.trials())


@pytest.mark.parametrize("executor,workers", [("inprocess", 1), ("process", 2)])
def test_zero_cost_study_scores_every_candidate_without_training(tmp_path, executor, workers):
    cfg = StudyConfig(space="toy/safe", budget=6, strategy="random", seed=0, estimator="zero-cost:synflow,params",
                      constraints=("params<=300",), executor=executor, workers=workers)
    summary = run_study(cfg, tmp_path, registry=_reg())
    assert summary.complete == 6 and summary.failed == 0
    done = [t for t in _trials(tmp_path) if t.state == TrialState.COMPLETE]
    assert len(done) == 6
    for t in done:
        assert set(t.metrics) == {"zc_synflow", "zc_params"}  # the toy estimator's own metric is never produced
        assert t.metrics["zc_params"] == t.costs["params"]  # the proxy baseline counts what the cost model counts
        assert t.metrics["zc_synflow"] > 0


def test_zero_cost_default_objective_is_the_first_proxy_and_objectives_are_checked(tmp_path):
    run_study(StudyConfig(space="toy/safe", budget=3, strategy="evolution", seed=0, estimator="zero-cost:snip",
                          strategy_options={"population_size": 2, "sample_size": 2}), tmp_path / "a", registry=_reg())
    assert all("zc_snip" in t.metrics for t in _trials(tmp_path / "a") if t.state == TrialState.COMPLETE)
    with pytest.raises(ConfigError, match="objective 'score:max' names unknown metric 'score'"):
        run_study(StudyConfig(space="toy/safe", budget=3, estimator="zero-cost:snip", objectives=("score:max",)),
                  tmp_path / "b", registry=_reg())


@pytest.mark.parametrize("value,match", [
    ("zero-cost:bogus", "unknown zero-cost proxy 'bogus'"),
    ("predict", "unknown estimator 'predict'"),
    ("", "estimator must be"),
    (3, "estimator must be"),
])
def test_bad_estimator_values_are_one_clear_line(value, match):
    with pytest.raises(ConfigError, match=match):
        StudyConfig(space="toy/safe", estimator=value)


def test_default_estimator_keeps_the_identity_of_existing_studies():
    assert "estimator" not in StudyConfig(space="toy/safe").identity()
    assert StudyConfig(space="toy/safe", estimator="zero-cost").identity()["estimator"] == "zero-cost"
    assert parse_proxies("") == parse_proxies(" , ") and "synflow" in parse_proxies("")


def test_zero_cost_task_delegates_and_pickles():
    import pickle

    inner = toy.ToyTask(toy.SafeToySpace())
    task = ZeroCostTask(inner, ("grad_norm",))
    again = pickle.loads(pickle.dumps(task))
    assert again.space.name == inner.space.name and again.estimator().metric_names == ("zc_grad_norm",)
    assert [o.name for o in again.default_objectives()] == ["zc_grad_norm"]


def test_cli_estimator_option(tmp_path):
    out = tmp_path / "cli"
    r = subprocess.run([sys.executable, "-m", "nas_core.cli", "run", "digits/cnn", "--estimator", "zero-cost:params,synflow",
                        "--budget", "3", "--strategy", "random", "--quiet", "--out", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert all(set(t.metrics) == {"zc_params", "zc_synflow"} for t in _trials(out) if t.state == TrialState.COMPLETE)
    r = subprocess.run([sys.executable, "-m", "nas_core.cli", "run", "digits/cnn", "--estimator", "zero-cost:nope",
                        "--budget", "3", "--out", str(tmp_path / "bad")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "'nope'" in r.stderr, r.stderr


def test_report_marks_zero_cost_models_untrained_and_export_refuses_them(tmp_path):
    from nas_core.errors import StoreError
    from nas_core.export import export_trial
    from nas_core.report import make_report

    reg = Registry()  # digits ships with the core
    run_study(StudyConfig(space="digits/cells", budget=3, strategy="random", seed=0, estimator="zero-cost:synflow",
                          target="digits/cortex-m4", objectives=("zc_synflow:max", "energy_uj:min")),
              tmp_path, registry=reg)
    make_report(tmp_path, plot=False)
    card = (tmp_path / "model_card.md").read_text()
    assert "These networks are untrained" in card and "`zero-cost:synflow`" in card
    first = next(t.number for t in _trials(tmp_path) if t.state == TrialState.COMPLETE)
    with pytest.raises(StoreError, match="never trained"):
        export_trial(tmp_path, first, "onnx", registry=reg)


def test_report_of_a_trained_study_says_training(tmp_path):
    from nas_core.report import make_report

    run_study(StudyConfig(space="toy/safe", budget=2, strategy="random", seed=0), tmp_path, registry=_reg())
    make_report(tmp_path, plot=False)
    card = (tmp_path / "model_card.md").read_text()
    assert "- estimator: training" in card and "untrained" not in card


def test_zero_cost_study_resumes_with_its_estimator(tmp_path):
    from nas_core.study import resume_study

    cfg = StudyConfig(space="toy/safe", budget=3, strategy="random", seed=0, estimator="zero-cost:params")
    run_study(cfg, tmp_path, registry=_reg())
    summary = resume_study(tmp_path, budget=5, registry=_reg())
    assert summary.complete == 5
    assert all(set(t.metrics) == {"zc_params"} for t in _trials(tmp_path) if t.state == TrialState.COMPLETE)
    from nas_core.errors import StoreError

    with pytest.raises(StoreError, match="different study"):  # the same directory, another estimator: refused
        run_study(StudyConfig(space="toy/safe", budget=3, strategy="random", seed=0), tmp_path, registry=_reg())
