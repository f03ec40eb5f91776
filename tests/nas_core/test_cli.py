"""The command line, run as real subprocesses."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nas_core.store import Store, TrialState

NAS = [sys.executable, "-m", "nas_core.cli"]
FAST = ["--option", "epochs=1", "--option", "data_fraction=0.3"]


def nas(*args, cwd=None, timeout=300):
    return subprocess.run([*NAS, *args], capture_output=True, text=True, cwd=cwd, timeout=timeout,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})


def test_plugins_lists_the_builtin_example():
    r = nas("plugins")
    assert r.returncode == 0, r.stderr
    assert "digits/cnn" in r.stdout and "digits/cortex-m4" in r.stdout and "evolution" in r.stdout


def test_run_then_report_writes_store_report_and_plot(tmp_path):
    out = tmp_path / "study"
    cfg = tmp_path / "study.yaml"
    cfg.write_text("space: digits/cnn\nstrategy: nsga2\nbudget: 4\nseed: 2\ntarget: digits/cortex-m4\n"
                   "objectives: [val_accuracy:max, energy_uj:min]\nstrategy_options: {population_size: 2}\n"
                   "constraints: ['params<=30000']\n")
    r = nas("run", "--config", str(cfg), *FAST, "--out", str(out), "--quiet")
    assert r.returncode == 0, r.stderr
    for name in ("study.db", "report.md", "report.json", "pareto.png"):
        assert (out / name).is_file(), name
    summary = json.loads((out / "report.json").read_text())
    assert summary["counts"]["complete"] == 4 and summary["strategy"] == "nsga2" and summary["pareto"]
    r = nas("report", str(out))
    assert r.returncode == 0 and "Pareto front" in r.stdout


def test_sigkill_mid_search_then_resume_gives_exactly_the_budget(tmp_path):
    out = tmp_path / "killed"
    budget = 8
    proc = subprocess.Popen([*NAS, "run", "digits/cnn", "--strategy", "evolution", "--budget", str(budget),
                             "--seed", "4", *FAST, "--out", str(out), "--quiet"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    db = out / "study.db"
    deadline = time.time() + 240
    try:
        while time.time() < deadline:
            if db.exists():
                try:
                    n = sqlite3.connect(db).execute("SELECT COUNT(*) FROM trials WHERE state='complete'").fetchone()[0]
                except sqlite3.Error:
                    n = 0
                if n >= 3:
                    break
            if proc.poll() is not None:
                pytest.fail("the search ended before it could be killed")
            time.sleep(0.05)
        else:
            pytest.fail("the search made no progress")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    with Store.open(db) as st:
        before = {t.number: t for t in st.trials([TrialState.COMPLETE])}
    assert 3 <= len(before) < budget
    r = nas("resume", str(out), "--quiet")
    assert r.returncode == 0, r.stderr
    with Store.open(db) as st:
        done = st.trials([TrialState.COMPLETE, TrialState.FAILED])
        assert st.count(TrialState.RUNNING) == 0
    assert len(done) == budget
    assert len({t.arch.hash for t in done}) == budget          # none duplicated
    for number, t in before.items():                             # none lost, none redone
        again = next(x for x in done if x.number == number)
        assert again.metrics == t.metrics and again.finished == t.finished


BAD = [
    (["run", "nothere/cnn"], "unknown plugin 'nothere'"),
    (["run", "digits/nope"], "unknown space 'digits/nope'"),
    (["run", "digits/cnn", "--strategy", "sideways"], "unknown strategy 'sideways'"),
    (["run", "digits/cnn", "--target", "abacus"], "unknown target 'abacus'"),
    (["run", "digits/cnn", "--budget", "0"], "budget must be a positive integer, got 0"),
    (["run", "digits/cnn", "--budget", "-3"], "budget must be a positive integer, got -3"),
    (["run", "digits/cnn", "--constraint", "wingspan<=3"], "unknown metric 'wingspan'"),
    (["run", "digits/cnn", "--constraint", "params<<3"], "must look like 'metric<=value'"),
    (["run", "digits/cnn", "--objective", "accuracy"], "must look like 'metric:max'"),
    (["run", "digits/cnn", "--option", "epochz=3"], "unknown option(s) ['epochz']"),
    (["run", "digits/cnn", "--budget", "many"], "invalid int value: 'many'"),
    (["resume", "/nonexistent/study"], "no study directory at /nonexistent/study"),
    (["run", "digits/cnn", "--max-retries", "-1"], "max_retries must be an integer in 0..100, got -1"),
    (["run", "digits/cnn", "--retry-on", "died,gremlins"], "retry_on: unknown failure kind 'gremlins'"),
    (["run", "digits/cnn", "--time-limit", "nan"], "time_limit_s must be a finite number of seconds > 0, got nan"),
    (["run", "digits/cnn", "--address", "10.0.0.1:6379"], "ray_address '10.0.0.1:6379' needs executor 'ray'"),
    (["run", "digits/cnn", "--executor", "ray", "--address", "127.0.0.1:1"], "cannot reach the Ray cluster"),
    (["export", "/nonexistent/study", "--trial", "1"], "no study store at /nonexistent/study/study.db"),
]


@pytest.mark.parametrize("args, needle", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_is_one_clear_line_and_nonzero_exit(args, needle, tmp_path):
    r = nas(*args, "--out", str(tmp_path / "o")) if args[0] == "run" else nas(*args)
    assert r.returncode == 2
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert needle in lines[0]
    assert "Traceback" not in r.stderr


def test_malformed_space_definition_corrupt_and_foreign_stores(tmp_path):
    bad_space = tmp_path / "space.json"
    bad_space.write_text(json.dumps({"dimensions": [{"type": "categorical", "name": "head", "choices": []}]}))
    r = nas("run", "digits/cnn", "--space-file", str(bad_space), "--out", str(tmp_path / "a"))
    assert r.returncode == 2 and "categorical dimension 'head' needs at least one choice" in r.stderr
    narrow = tmp_path / "narrow.json"
    narrow.write_text(json.dumps({"dimensions": [{"type": "categorical", "name": "head", "choices": ["avg"]}]}))
    r = nas("run", "digits/cnn", "--space-file", str(narrow), "--out", str(tmp_path / "b"))
    assert r.returncode == 2 and "'stages' is missing" in r.stderr

    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "study.db").write_bytes(b"\x00garbage" * 500)
    for args in (["resume", str(corrupt)], ["report", str(corrupt)], ["run", "digits/cnn", "--out", str(corrupt)]):
        r = nas(*args)
        assert r.returncode == 2 and "corrupt" in r.stderr and "Traceback" not in r.stderr, (args, r.stderr)

    own = tmp_path / "own"
    assert nas("run", "digits/cnn", "--budget", "1", *FAST, "--out", str(own), "--quiet").returncode == 0
    r = nas("run", "digits/cnn", "--budget", "1", "--seed", "9", *FAST, "--out", str(own))
    assert r.returncode == 2 and "belongs to a different study" in r.stderr


def test_verbose_shows_the_traceback(tmp_path):
    r = nas("run", "digits/nope", "--verbose")
    assert r.returncode == 2 and "Traceback" in r.stderr and "unknown space" in r.stderr


def test_bad_config_files_are_one_clear_line(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("space: digits/cnn\ntask_options: [1, 2]\n")
    r = nas("run", "--config", str(cfg), "--option", "epochs=1", "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "task_options in" in r.stderr and "must be a mapping" in r.stderr
    assert "Traceback" not in r.stderr
    long_int = tmp_path / "long.json"
    long_int.write_text('{"dimensions": [{"type": "integer", "name": "w", "low": 1, "high": ' + "9" * 5000 + "}]}")
    r = nas("run", "digits/cnn", "--space-file", str(long_int), "--out", str(tmp_path / "o2"))
    assert r.returncode == 2 and "not valid JSON" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr) < 1000
    huge = tmp_path / "huge.json"
    huge.write_text('{"dimensions": [{"type": "categorical", "name": "c", "choices": [' +
                    ",".join(str(i) for i in range(300_000)) + "]}]}")
    r = nas("run", "digits/cnn", "--space-file", str(huge), "--out", str(tmp_path / "o3"))
    assert r.returncode == 2 and "bytes are refused" in r.stderr and len(r.stderr) < 1000
    r = nas("run", "digits/cnn", "--out", "")
    assert r.returncode == 2 and "out must be a directory path" in r.stderr
