"""ECG cross-validation options, the compound-scaling workflow and the selection rule."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nas_core.constraints import Constraint
from nas_core.errors import ConfigError
from nas_core.selection import best_feasible
from nas_ecg import compound
from nas_ecg.space import FRONT_END_RATES_HZ, EfficientECGSpace, scaled, snap_rate
from nas_ecg.task import ECGTask


def test_grid_keeps_the_cost_doubling_rule():
    triples = compound.grid(tolerance=0.1)
    assert triples
    for a, b, g in triples:
        assert abs(a * b * b * g - 2.0) <= 0.2 + 1e-12
        assert min(a, b, g) >= 1.0
    # hand-checked members: (1, 1, 2) is exactly 2; (1.4, 1.2, 1) is 2.016; (1.2, 1.2, 1.6) = 2.765 is out
    assert (1.0, 1.0, 2.0) in triples and (1.4, 1.2, 1.0) in triples
    assert (1.2, 1.2, 1.6) not in triples
    with pytest.raises(ConfigError):
        compound.grid(tolerance=0.0)


def test_cost_exponent_matches_measured_macs_within_rounding():
    # depth x width^2 x rate: the measured MACs ratio phi=1 / phi=0 follows alpha beta^2 gamma up to rounding
    rows = compound.cost_check(compound.DEFAULT_BASE, [(1.0, 1.0, 2.0), (2.0, 1.0, 1.0), (1.0, 1.4, 1.0)])
    for r in rows:
        assert 0.75 * r["ideal_factor"] <= r["measured_factor"] <= 1.3 * r["ideal_factor"]
    # gamma = 2 doubles the rate 125 -> 250 Hz and (nearly) exactly doubles the MACs
    assert rows[0]["measured_factor"] == pytest.approx(250 / 125 * (round(0.25 * 250) + round(0.45 * 250))
                                                       / (round(0.25 * 125) + round(0.45 * 125)) / 2, rel=0.05)


def test_distinct_drops_triples_that_build_the_same_network():
    triples = compound.grid()
    d = compound.distinct(compound.DEFAULT_BASE, triples)
    specs = [json.dumps(scaled(compound.arch_at(compound.DEFAULT_BASE, 1.0, *t)), sort_keys=True) for t in d]
    assert len(set(specs)) == len(specs) and len(d) < len(triples)


def test_front_end_rates_and_the_efficient_space():
    assert snap_rate(160.0) == 128.0 and snap_rate(125 * 1.6) == 200.0 and snap_rate(400.0) == 256.0
    space = EfficientECGSpace()
    import numpy as np

    rng = np.random.default_rng(0)
    for _ in range(30):
        a = space.sample(rng)
        assert scaled(a)["fs_hz"] in FRONT_END_RATES_HZ
        assert a["alpha"] == space.coefficients["alpha"]
    # the free space keeps any integer rate
    free = {"phi": 2, "alpha": 1.0, "beta": 1.0, "gamma": 1.15, "stages": [], "head_hidden": 0}
    assert scaled(free)["fs_hz"] == 238.0


@pytest.mark.parametrize("k", [0, 1, 23, "3", True])
def test_bad_cv_folds(k):
    with pytest.raises(ConfigError, match="cv_folds"):
        ECGTask(EfficientECGSpace(), cv_folds=k)


def test_cv_options_are_checked():
    with pytest.raises(ConfigError, match="exclude each other"):
        ECGTask(EfficientECGSpace(), cv_folds=3, val_records=["101"])
    with pytest.raises(ConfigError, match="patience"):
        ECGTask(EfficientECGSpace(), cv_folds=3, patience=2).estimator()
    with pytest.raises(ConfigError, match="rr_features"):
        ECGTask(EfficientECGSpace(), rr_features="seconds")
    task = ECGTask(EfficientECGSpace(), cv_folds=4)
    est = task.estimator()
    assert est.k == 4 and est.default_fidelity()["folds"] == 4
    # the measured search defaults (benchmarks/results/ecg_search_repeatability.md)
    assert task.default_objectives()[0].name == "cv_sv_auroc"
    assert (est.epochs, est.data_fraction, est.repeats) == (6, 0.3, 2)
    assert "cv_S_se" in est.metric_names and "cv_macro_f1_nsv" in est.metric_names and "cv_sv_auroc" in est.metric_names
    assert ECGTask(EfficientECGSpace(), cv_folds=3, repeats=1, epochs=4).estimator().repeats == 1


class _T:
    def __init__(self, number, **m):
        self.number, self._m = number, m

    def all_metrics(self):
        return self._m


def test_selection_rule_picks_exactly_one_by_score_then_energy():
    trials = [_T(1, cv=0.7, energy=5.0, params=60_000), _T(2, cv=0.6, energy=1.0, params=100),
              _T(3, cv=0.65, energy=3.0, params=100), _T(4, cv=0.65, energy=2.0, params=100),
              _T(5, cv=float("nan"), energy=0.1, params=10)]
    cons = [Constraint.parse("params<=50000")]
    # trial 1 breaks the parameter budget; 3 and 4 tie on the score, 4 uses less energy
    assert best_feasible(trials, score="cv", constraints=cons, tie_break="energy").number == 4
    assert best_feasible(trials, score="cv").number == 1
    with pytest.raises(ConfigError, match="no trial"):
        best_feasible(trials, score="cv", constraints=[Constraint.parse("params<=1")])


def test_compound_workflow_runs_and_resumes(tmp_path: Path, monkeypatch):
    """The workflow end to end with a stub estimator (no data): grid, sweep, binding budgets, resume."""
    calls = []

    class Stub:
        metric_names = ("cv_macro_f1", "cv_sv_auroc")

        def evaluate(self, ctx):
            calls.append(ctx.arch.hash)
            s = scaled(ctx.arch)
            v = 0.5 + 0.01 * ctx.arch["alpha"] + 0.001 * s["fs_hz"] / 100
            return {"cv_macro_f1": v, "cv_sv_auroc": v}  # the workflow scores the default objective

    monkeypatch.setattr(ECGTask, "estimator", lambda self: Stub())
    kw = dict(options={"cv_folds": 3}, constraints=[Constraint.parse("params<=50000")],
              triples=[(1.0, 1.0, 2.0), (2.0, 1.0, 1.0)], phi_step=1.0, phi_max=6.0, progress=lambda m: None)
    res = compound.run("nrf52840", 14.0, tmp_path, **kw)
    assert res["coefficients"] == {"alpha": 2.0, "beta": 1.0, "gamma": 1.0}
    sw = res["sweep"]
    assert sw["largest_feasible_phi"] is not None
    # the parameter budget binds at some phi, and every infeasible phi was not trained
    assert any(name.startswith("params") for name in sw["binds_at_phi"])
    assert all(r["cv_sv_auroc"] is None for r in sw["rows"] if not r["feasible"])
    n = len(calls)
    again = compound.run("nrf52840", 14.0, tmp_path, **kw)
    assert len(calls) == n and again["sweep"]["binds_at_phi"] == sw["binds_at_phi"]  # resumed: nothing retrained


class _ConstantEstimator:
    """Scores every network 0.5 without training: the workflow's logic, no data."""

    metric_names = ("cv_macro_f1", "cv_sv_auroc")

    def evaluate(self, ctx):
        return {"cv_macro_f1": 0.5, "cv_sv_auroc": 0.5}


@pytest.fixture
def constant_estimator(monkeypatch):
    monkeypatch.setattr(ECGTask, "estimator", lambda self: _ConstantEstimator())


def test_sweep_stops_when_only_a_capped_rate_scales(tmp_path: Path, constant_estimator):
    """alpha = beta = 1: once the rate reaches the front end's cap, larger phi builds the same network."""

    res = compound.run("nrf52840", 14.0, tmp_path, options={"cv_folds": 3}, triples=[(1.0, 1.0, 2.0)],
                       phi_step=0.5, phi_max=6.0, progress=lambda m: None)
    sw = res["sweep"]
    # phi 0: 125 Hz, 0.5: 125*sqrt(2) = 177 -> 200 Hz, 1: 250 Hz, 1.5: 354 -> 256 Hz, 2: 500 -> 256 Hz again
    assert [r["fs_hz"] for r in sw["rows"]] == [125.0, 200.0, 250.0, 256.0]
    assert sw["saturated_after_phi"] == 1.5 and sw["same_network_as"] == {2.0: 1.5}


def test_a_rate_the_front_end_cannot_deliver_is_rejected_with_its_rates():
    from nas_core.space import Architecture
    from nas_ecg.budget import load_ecg_target
    from nas_ecg.space import CompoundECGSpace

    space = CompoundECGSpace()
    task = ECGTask(space, battery_days=14, front_end_rates=True)
    target = load_ecg_target("nrf52840")
    cons = task.default_constraints(target)
    stages = [{"block": "plain", "kernel": 3, "downsample": "max"}] * 2
    bad = Architecture({"phi": 2, "alpha": 1.0, "beta": 1.0, "gamma": 1.15, "stages": stages, "head_hidden": 0})
    m = task.static_metrics(bad, space.build(bad), target)  # round(180 * 1.15^2) = 238 Hz: not a MAX30003 rate
    reasons = [v for c in cons if (v := c.violation(m))]
    assert m["fs_hz"] == 238.0 and any("fs_supported" in r and "125, 128, 200, 250, 256" in r for r in reasons)
    ok = Architecture({"phi": 0, "alpha": 1.0, "beta": 1.0, "gamma": 1.0, "stages": stages, "head_hidden": 0,
                       "rates": "max30003"})
    m = task.static_metrics(ok, space.build(ok), target)
    assert m["fs_supported"] == 1.0


def test_ble_events_option_moves_the_budget():
    from nas_ecg.budget import load_ecg_target

    target = load_ecg_target("nrf52840")
    quiet = ECGTask(EfficientECGSpace(), battery_days=14, ble_events_per_hour=0).energy_budget(target)
    chatty = ECGTask(EfficientECGSpace(), battery_days=14).energy_budget(target)
    assert quiet.per_beat_budget_j(125.0) > chatty.per_beat_budget_j(125.0)


MITDB = Path(__import__("os").environ.get("MITDB_DIR") or Path(__file__).resolve().parents[2].parent / "shared" / "data"
             / "mitdb")
needs_data = pytest.mark.skipif(not (MITDB / "100.hea").is_file(), reason=f"MIT-BIH not found at {MITDB}; set MITDB_DIR")


@needs_data
def test_record_folds_keep_records_whole_cover_ds1_once_and_never_touch_ds2(tmp_path):
    import numpy as np
    from nas_data.mitdb import DS1, DS2

    from nas_ecg.crossval import SEPARATE_RECORDS, ds1_grouped

    task = ECGTask(EfficientECGSpace(), cv_folds=5, data_dir=str(MITDB), cache_dir=str(tmp_path / "c"))
    est = task.estimator()
    data = ds1_grouped(125.0, data_dir=str(MITDB), cache_dir=str(tmp_path / "c"))
    plan = est.plan(data)
    members = [r for fold in plan.folds for r in fold]
    assert sorted(members) == sorted(DS1) and len(members) == len(set(members))  # whole records, each once
    assert not set(members) & set(DS2) and not set(np.unique(data.groups)) & set(DS2)
    assert plan.fold_of(SEPARATE_RECORDS[0]) != plan.fold_of(SEPARATE_RECORDS[1])  # 208 (F) and 209 (S)
    for fold in plan.folds:  # N, S, V in every fold's validation part
        y = data.y[np.isin(data.groups, fold)]
        assert all((y == c).any() for c in (0, 1, 2))
    assert len(data.y) == 51021  # every DS1 beat (45866 N + 944 S + 3788 V + 415 F + 8 Q)
    from nas_data.mitdb import ACCESS_LOG_NAME, MitBih

    log = MitBih(MITDB, cache_dir=tmp_path / "c").access_log
    assert log == tmp_path / "c" / ACCESS_LOG_NAME and not log.exists()
    # too many folds for the S-holding records: refused when the study starts, not inside every trial
    with pytest.raises(ConfigError, match="would hold no samples of class 1"):
        ECGTask(EfficientECGSpace(), cv_folds=14, data_dir=str(MITDB), cache_dir=str(tmp_path / "c")).prepare()
    ECGTask(EfficientECGSpace(), cv_folds=5, data_dir=str(MITDB), cache_dir=str(tmp_path / "c")).prepare()


def test_fine_phi_steps_do_not_stop_the_sweep_before_the_rate_cap(tmp_path: Path, constant_estimator):
    res = compound.run("nrf52840", 14.0, tmp_path, options={"cv_folds": 3}, triples=[(1.0, 1.0, 2.0)],
                       phi_step=0.1, phi_max=3.0, progress=lambda m: None)
    rates = [r["fs_hz"] for r in res["sweep"]["rows"]]
    assert rates[-1] == 256.0 and 200.0 in rates and res["sweep"]["saturated_after_phi"] is not None


def test_compound_out_dir_with_other_settings_is_refused(tmp_path: Path, constant_estimator):
    kw = dict(triples=[(1.0, 1.0, 2.0)], phi_step=1.0, phi_max=2.0, progress=lambda m: None)
    compound.run("nrf52840", 14.0, tmp_path, options={"cv_folds": 3}, **kw)
    with pytest.raises(ConfigError, match="other settings"):
        compound.run("nrf52840", 14.0, tmp_path, options={"cv_folds": 3, "epochs": 2}, **kw)
    with pytest.raises(ConfigError, match="not a metric"):
        compound.run("nrf52840", 14.0, tmp_path / "b", options={"cv_folds": 3}, score="val_macro_f1", **kw)


def test_default_coefficients_keep_the_cost_doubling_rule():
    from nas_ecg.space import COMPOUND_COEFFICIENTS

    c = COMPOUND_COEFFICIENTS
    assert abs(compound.flops_factor(c["alpha"], c["beta"], c["gamma"]) - 2.0) <= 0.2
    assert (c["alpha"], c["beta"], c["gamma"]) in compound.grid()
    row = compound.cost_check(compound.DEFAULT_BASE, [(c["alpha"], c["beta"], c["gamma"])])[0]
    assert 1.6 <= row["measured_factor"] <= 2.5
