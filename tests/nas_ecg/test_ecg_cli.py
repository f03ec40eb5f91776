"""ECG bad input through the command line: one clear line, exit status 2, nothing written."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


def nas(*args, env=None):
    # the timeout only guards against a hang: the first run on a fresh machine also builds the MIT-BIH cache
    return subprocess.run([sys.executable, "-m", "nas_core.cli", *args], capture_output=True, text=True, timeout=900,
                          env={**os.environ, **(env or {})})


@pytest.mark.parametrize("args, env, needle", [
    (["--data-dir", "/nonexistent/mitdb"], {}, "MIT-BIH records not found in /nonexistent/mitdb"),
    (["--band", "diagnostic"], {}, "needs fs_hz >= 375"),
    (["--band", "ultrasonic"], {}, "ultrasonic"),
    (["--nyquist-k", "1.5"], {}, "1.5"),
    (["--battery-days", "-1"], {}, "battery_days must be > 0"),
    ([], {"MITDB_DIR": ""}, "set MITDB_DIR or --data-dir"),
])
def test_bad_ecg_input(args, env, needle, tmp_path):
    out = tmp_path / "o"
    r = nas("run", "ecg/compound-cnn", "--target", "nrf52840", *args, "--out", str(out), env=env)
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert needle in lines[0] and "Traceback" not in r.stderr
    assert not out.exists()


@pytest.mark.parametrize("args, needle", [
    (["--option", "cv_folds=1"], "cv_folds must be an integer in 2..22"),
    (["--option", "cv_folds=30"], "cv_folds must be an integer in 2..22"),
    (["--option", "cv_folds=3", "--option", "patience=2"], "drop 'patience'"),
    (["--option", "rr_features=seconds"], "rr_features"),
    (["--battery-days", "0"], "battery_days must be > 0"),
])
def test_bad_cv_and_scenario_input(args, needle, tmp_path):
    out = tmp_path / "o"
    r = nas("run", "ecg/efficient-cnn", "--target", "nrf52840", *args, "--out", str(out))
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert needle in lines[0] and "Traceback" not in r.stderr
    assert not out.exists()


def test_cv_search_from_the_command_line(tmp_path):
    """--option cv_folds=K end to end: a trained trial with pooled out-of-fold metrics and refit weights."""
    from pathlib import Path

    mitdb = Path(os.environ.get("MITDB_DIR") or Path(__file__).resolve().parents[2].parent / "shared" / "data" / "mitdb")
    if not (mitdb / "100.hea").is_file():
        pytest.skip("MIT-BIH not available")
    out = tmp_path / "study"
    r = nas("run", "ecg/efficient-cnn", "--target", "nrf52840", "--battery-days", "14", "--budget", "1", "--seed", "1",
            "--option", "cv_folds=2", "--option", "epochs=1", "--option", "data_fraction=0.02",
            "--data-dir", str(mitdb), "--option", f"cache_dir={tmp_path / 'cache'}", "--quiet", "--out", str(out))
    assert r.returncode == 0, r.stderr
    from nas_core.store import Store, TrialState

    with Store.open(out / "study.db") as st:
        t = st.trials([TrialState.COMPLETE])[0]
    m = t.all_metrics()
    assert 0 <= m["cv_macro_f1"] <= 1 and m["cv_folds_run"] == 2 and m["cv_samples_scored"] == 51021
    assert (out / "trials" / f"{t.number:05d}" / "model.pt").is_file()
    assert not (tmp_path / "cache" / "ds2_access.log").exists()
