"""Fault-injection matrix: every fault ends in a store where each budgeted trial is accounted for once.

Each case runs a real parallel study (process executor, two worker processes) on a toy space
whose candidates either succeed or carry one fault, then checks the final store: exactly
``budget`` evaluated trials, none still running, no architecture evaluated twice, each failure
recorded with its cause, and infrastructure failures (a dead worker, a time-out) retried once
while ordinary ones (an exception, a NaN loss) are not. The last case SIGKILLs a real
``nas run --executor process --workers 2`` driver mid-run and resumes it.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

import toy
from nas_core.executors import ProcessExecutor
from nas_core.plugins import Registry
from nas_core.store import Store, TrialState
from nas_core.study import StudyConfig, run_study

BUDGET = 5


def reg():
    return Registry([toy.toy_plugin()], discover=False)


def check_accounted(path: Path, budget: int) -> list:
    """Every budgeted trial is in the store exactly once, finished; returns the evaluated trials."""
    with Store.open(path / "study.db") as st:
        assert st.count(TrialState.RUNNING) == 0
        trials = st.trials()
    evaluated = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.FAILED)]
    assert len(evaluated) == budget
    assert [t.number for t in trials] == list(range(1, len(trials) + 1))
    keys = [(t.arch.hash, tuple(sorted(t.fidelity.items()))) for t in evaluated]
    assert len(keys) == len(set(keys)), "an architecture was evaluated twice"
    assert not (path / "trials" / ".staging").exists() or not any((path / "trials" / ".staging").iterdir())
    for t in evaluated:
        assert (path / "trials" / f"{t.number:05d}" / "model.pt").is_file() == (t.state == TrialState.COMPLETE)
    return evaluated


# fault -> (expected text of the failure, retried?, extra config)
MATRIX = {
    "raise": ("RuntimeError: candidate exploded", False, {}),
    "nan": ("non-finite training loss", False, {}),
    "slow": ("TrialTimeout: per-trial time limit exceeded", True, {"time_limit_s": 0.5}),
    "hang": ("per-trial time limit of 0.5 s exceeded; worker killed", True, {"time_limit_s": 0.5}),
    "exit": ("worker process exited with code 7", True, {}),
    "sigkill": ("worker process died from SIGKILL (killed: possibly out of memory)", True, {}),
}


@pytest.mark.parametrize("fault", list(MATRIX))
def test_fault_matrix_parallel_study_accounts_for_every_trial(fault, tmp_path, monkeypatch):
    monkeypatch.setattr(ProcessExecutor, "grace_s", 0.5)
    needle, retried, extra = MATRIX[fault]
    cfg = StudyConfig(space=f"toy/only-{fault}", budget=BUDGET, strategy="random", seed=2, objectives=("score:max",),
                      executor="process", workers=2, max_retries=1, **extra)
    s = run_study(cfg, tmp_path, registry=reg())
    assert s.complete + s.failed == BUDGET and s.failed >= 1 and s.complete >= 1
    for t in check_accounted(tmp_path, BUDGET):
        if t.arch["mode"] == fault:
            assert t.state == TrialState.FAILED and needle in t.error, t.error
            assert t.attempts == (2 if retried else 1)
            if retried:
                assert "attempt 2 of 2" in t.error and "earlier: attempt 1 failed" in t.error
        else:
            assert t.state == TrialState.COMPLETE and t.attempts == 1 and t.error is None


def test_a_retry_recovers_a_transient_worker_death(tmp_path):
    cfg = StudyConfig(space="toy/only-flaky", budget=BUDGET, strategy="random", seed=2, objectives=("score:max",),
                      executor="process", workers=2, max_retries=1, task_options={"marker_dir": str(tmp_path)})
    s = run_study(cfg, tmp_path / "study", registry=reg())
    assert s.complete == BUDGET and s.failed == 0
    flaky = [t for t in check_accounted(tmp_path / "study", BUDGET) if t.arch["mode"] == "flaky"]
    assert flaky and all(t.attempts == 2 and t.state == TrialState.COMPLETE for t in flaky)


def test_retry_policy_is_configurable(tmp_path):
    # no retries: a dead worker fails its trial at once
    cfg = StudyConfig(space="toy/only-flaky", budget=BUDGET, strategy="random", seed=2, objectives=("score:max",),
                      executor="process", workers=2, max_retries=0, task_options={"marker_dir": str(tmp_path)})
    s = run_study(cfg, tmp_path / "a", registry=reg())
    flaky = [t for t in check_accounted(tmp_path / "a", BUDGET) if t.arch["mode"] == "flaky"]
    assert s.failed == len(flaky) >= 1 and all(t.attempts == 1 for t in flaky)
    # ordinary exceptions are retried only when asked for (in-process executor: no worker to lose)
    cfg = StudyConfig(space="toy/only-raise", budget=BUDGET, strategy="random", seed=2, objectives=("score:max",),
                      max_retries=2, retry_on=("error",))
    run_study(cfg, tmp_path / "b", registry=reg())
    raised = [t for t in check_accounted(tmp_path / "b", BUDGET) if t.arch["mode"] == "raise"]
    assert raised and all(t.attempts == 3 and "attempt 3 of 3" in t.error for t in raised)


def _children(pid: int) -> set[int]:
    out = set()
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.add(int(d.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc to find the driver's worker processes")
def test_driver_sigkill_mid_parallel_run_then_resume(tmp_path):
    out = tmp_path / "killed"
    budget = 10
    env = {**os.environ, "PYTHONPATH": toy.install_entry_point(tmp_path / "site"), "PYTHONWARNINGS": "ignore"}
    nas = [sys.executable, "-m", "nas_core.cli"]
    proc = subprocess.Popen([*nas, "run", "toy/safe", "--strategy", "random", "--budget", str(budget), "--seed", "3",
                             "--objective", "score:max", "--option", "sleep=0.4", "--executor", "process",
                             "--workers", "2", "--out", str(out), "--quiet"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    db = out / "study.db"
    deadline = time.time() + 180
    workers: set[int] = set()
    try:
        while time.time() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"the search ended before it could be killed: {proc.stderr.read().decode()[-2000:]}")
            if db.exists():
                try:
                    with sqlite3.connect(db) as c:
                        counts = dict(c.execute("SELECT state, COUNT(*) FROM trials GROUP BY state").fetchall())
                except sqlite3.Error:
                    counts = {}
                if counts.get("complete", 0) >= 3 and counts.get("running", 0) >= 1:
                    workers = _children(proc.pid)
                    break
            time.sleep(0.05)
        else:
            pytest.fail("the search made no progress")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # the driver's worker processes notice it is gone and exit: nothing keeps training into the study directory
    end = time.time() + 15
    while time.time() < end and any(_alive(p) for p in workers):
        time.sleep(0.2)
    assert workers and not any(_alive(p) for p in workers)

    with Store.open(db) as st:
        before = {t.number: t for t in st.trials([TrialState.COMPLETE])}
        in_flight = {t.number: t for t in st.trials([TrialState.RUNNING])}
    assert len(before) >= 3 and in_flight and len(before) < budget

    r = subprocess.run([*nas, "resume", str(out), "--quiet"], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    done = check_accounted(out, budget)
    by_number = {t.number: t for t in done}
    for number, t in before.items():                   # no completed trial lost or redone
        assert by_number[number].metrics == t.metrics and by_number[number].finished == t.finished
    for number, t in in_flight.items():                # the ones in flight ran again, under the same number
        again = by_number[number]
        assert again.state == TrialState.COMPLETE and again.arch == t.arch and again.seed == t.seed
    with Store.open(db) as st:
        runs = st.runs()
    assert len(runs) == 2 and runs[1]["operational"]["executor"] == "process"
