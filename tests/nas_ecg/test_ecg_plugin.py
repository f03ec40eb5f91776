"""The ECG plugin: space scaling, budgets as constraints, the task, a real study on MIT-BIH, export."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest

from nas_core.errors import ConfigError
from nas_core.plugins import Registry
from nas_core.space import Architecture
from nas_core.store import Store, TrialState
from nas_core.study import StudyConfig, run_study
from nas_core.testing import check_plugin
from nas_ecg.plugin import plugin
from nas_ecg.space import CompoundECGSpace, scaled

MITDB = Path(os.environ.get("MITDB_DIR") or Path(__file__).resolve().parents[2].parent / "shared" / "data" / "mitdb")
needs_data = pytest.mark.skipif(not (MITDB / "100.hea").is_file(), reason=f"MIT-BIH not found at {MITDB}; set MITDB_DIR")


def arch(phi=0, alpha=1.2, beta=1.1, gamma=1.15, blocks=("plain", "separable"), head=16, down="max"):
    stages = []
    for b in blocks:
        st = {"block": b, "kernel": 5, "downsample": down}
        if b == "inverted":
            st["expansion"] = 2
        stages.append(st)
    return Architecture({"phi": phi, "alpha": alpha, "beta": beta, "gamma": gamma, "stages": stages, "head_hidden": head})


def test_compound_scaling_by_hand():
    # phi = 2: fs = round(180 * 1.15^2) = round(238.05) = 238 Hz; window round(0.25*238)+round(0.45*238) = 60+107
    s = scaled(arch(phi=2))
    assert s["fs_hz"] == 238.0 and s["length"] == 167
    # depth ceil(1 * 1.2^2 = 1.44) = 2 per stage; width round4(8 * 1.21 = 9.68) = 8, round4(16 * 1.21 = 19.36) = 20
    assert [st["depth"] for st in s["stages"]] == [2, 2]
    assert [st["channels"] for st in s["stages"]] == [8, 20]
    # phi = -2: fs = round(180 / 1.3225) = 136 Hz; depth ceil(0.694) = 1
    s = scaled(arch(phi=-2))
    assert s["fs_hz"] == 136.0 and [st["depth"] for st in s["stages"]] == [1, 1]


def test_models_build_for_every_block_and_take_two_inputs():
    import torch

    for blocks in (("plain", "plain"), ("separable", "inverted", "inverted"), ("inverted", "separable")):
        for down in ("max", "avg", "stride"):
            a = arch(blocks=blocks, down=down)
            m = CompoundECGSpace().build(a).eval()
            length = scaled(a)["length"]
            out = m(torch.randn(3, 2, length), torch.randn(3, 8))
            assert out.shape == (3, 5)


def test_conformance_kit():
    check_plugin(plugin(), task_options={"data_dir": str(MITDB)})


def test_task_rejects_bad_options_clearly():
    space = CompoundECGSpace()
    from nas_ecg.task import ECGTask

    with pytest.raises(ConfigError, match="375"):
        ECGTask(space, band="diagnostic")  # 2.5 x 150 Hz = 375 Hz > 360 Hz of MIT-BIH
    with pytest.raises(ConfigError, match="unknown option"):
        ECGTask(space, batterydays=3)
    with pytest.raises(ConfigError, match="battery_days must be > 0"):
        ECGTask(space, battery_days=0)


def test_constraints_reject_before_training_with_reasons(tmp_path):
    # a huge energy budget cut (1 day of battery for a very long mission) and the Nyquist limit
    from nas_ecg.task import ECGTask

    task = ECGTask(CompoundECGSpace(), battery_days=7)
    reg = Registry([plugin()], discover=False)
    _, target = reg.target("ecg/nrf52840")
    cons = task.default_constraints(target)
    low = arch(phi=-3, gamma=1.25)  # fs = round(180 / 1.953) = 92 Hz < 100 Hz
    model = CompoundECGSpace().build(low)
    static = task.static_metrics(low, model, target)
    reasons = [r for r in (c.violation(static) for c in cons) if r]
    assert static["fs_hz"] == 92.0
    # ecg/compound-cnn is the "any integer rate" space: no front-end rate check unless asked for
    assert reasons == ["fs_hz = 92 violates fs_hz >= 100 (Nyquist: 2.5 x 40 Hz monitoring band)"]
    strict = ECGTask(CompoundECGSpace(), battery_days=7, front_end_rates=True).default_constraints(target)
    assert [r for r in (c.violation(static) for c in strict) if r][0].startswith("fs_supported = 0")
    ok = arch(phi=0)
    static = task.static_metrics(ok, CompoundECGSpace().build(ok), target)
    assert all(c.violation(static) is None for c in cons)
    assert static["energy_uj_per_beat"] < static["energy_budget_uj_per_beat"]
    assert math.isclose(static["peak_ram_kb"], static["arena_int8_bytes"] / 1024)
    assert static["arena_int8_bytes"] > static["peak_act_bytes"] and static["tflite_int8_bytes"] > static["params"]


@needs_data
def test_a_real_search_on_ds1_trains_scores_and_exports(tmp_path):
    from nas_core.export import export_trial
    from nas_core.report import make_report

    cfg = StudyConfig(space="ecg/efficient-cnn", budget=2, strategy="random", seed=3, target="ecg/nrf52840",
                      restrict={"dimensions": [
                          {"type": "categorical", "name": "phi", "choices": [0.0]},
                          {"type": "categorical", "name": "alpha", "choices": [1.1]},
                          {"type": "categorical", "name": "beta", "choices": [1.1]},
                          {"type": "categorical", "name": "gamma", "choices": [1.6]},
                          {"type": "categorical", "name": "rates", "choices": ["max30003"]},
                          {"type": "repeat", "name": "stages", "min_count": 2, "max_count": 2, "block": [
                              {"type": "categorical", "name": "block", "choices": ["plain", "separable"]},
                              {"type": "categorical", "name": "expansion", "choices": [2], "when": {"block": ["inverted"]}},
                              {"type": "categorical", "name": "kernel", "choices": [5]},
                              {"type": "categorical", "name": "downsample", "choices": ["max"]}]},
                          {"type": "categorical", "name": "head_hidden", "choices": [0]}]},
                      task_options={"data_dir": str(MITDB), "cache_dir": str(tmp_path / "cache"), "epochs": 1,
                                    "data_fraction": 0.05, "battery_days": 7})
    s = run_study(cfg, tmp_path / "study", registry=Registry([plugin()], discover=False))
    assert s.complete == 2
    with Store.open(tmp_path / "study" / "study.db") as st:
        t = st.trials([TrialState.COMPLETE])[0]
    m = t.all_metrics()
    assert 0 <= m["val_macro_f1"] <= 1 and m["fs_hz"] == 125.0
    for c in "NSVF":
        assert 0 <= m[f"val_{c}_se"] <= 1 and 0 <= m[f"val_{c}_ppv"] <= 1
    report = make_report(tmp_path / "study")
    assert report["pareto"]
    res = export_trial(tmp_path / "study", t.number, "onnx", registry=Registry([plugin()], discover=False))
    assert res.path.is_file() and res.max_abs_diff < 1e-4
    # the search never opened DS2
    assert not (tmp_path / "cache" / "mitdb" / "ds2_access.log").exists()


@needs_data
def test_data_checksums_cover_ds1_and_change_with_the_files(tmp_path):
    import shutil

    from nas_data.mitdb import DS1
    from nas_ecg.task import ECGTask

    sums = ECGTask(CompoundECGSpace(), data_dir=str(MITDB)).data_checksums()
    assert sorted(sums) == sorted(f"mitdb/{r}" for r in DS1) and all(len(v) == 64 for v in sums.values())
    for ext in ("hea", "dat", "atr"):
        shutil.copy(MITDB / f"101.{ext}", tmp_path / f"101.{ext}")
    from nas_data.mitdb import MitBih

    mit = MitBih(tmp_path, cache_dir=tmp_path / "c")
    assert mit.checksums(["101"])["101"] == sums["mitdb/101"]
    with open(tmp_path / "101.atr", "r+b") as f:
        f.seek(100)
        b = f.read(1)
        f.seek(100)
        f.write(bytes([b[0] ^ 1]))
    assert MitBih(tmp_path, cache_dir=tmp_path / "c").checksums(["101"])["101"] != sums["mitdb/101"]


@needs_data
def test_export_hooks_give_ds1_validation_beats_and_calibration_beats(tmp_path):
    from nas_ecg.task import ECGTask
    # a cross-validated task (as the ECG benchmark runs it) has no plain validation split in its estimator;
    # the hooks give nas export the DS1 validation records and 256 training beats at the candidate's rate
    from nas_ecg.space import EfficientECGSpace

    task = ECGTask(EfficientECGSpace(), cv_folds=3, data_dir=str(MITDB), cache_dir=str(tmp_path / "cache"))
    a = EfficientECGSpace().sample(np.random.default_rng(0))
    (x, rr), y = task.validation_data(a)
    cal_x, cal_rr = task.calibration_data(a)
    length = task.input_shape(a)[0][1]
    assert x.shape[1:] == (2, length) and rr.shape[1:] == (8,) and len(x) == len(rr) == len(y) > 1000
    assert cal_x.shape == (256, 2, length) and cal_rr.shape == (256, 8)
    assert set(np.unique(y)) <= set(range(5))
    assert "_data_at" not in task.__getstate__()
