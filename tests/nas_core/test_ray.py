"""The Ray executor: parallel trials on Ray actors, failures with their cause, clean start and stop.

Ray starts slowly, so the module shares one local Ray (2 CPUs, no dashboard) for all tests but
the first, which starts and stops its own through the CLI in a subprocess.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

import toy  # noqa: E402
from nas_core.cli import main  # noqa: E402
from nas_core.errors import ConfigError  # noqa: E402
from nas_core.executors import Job  # noqa: E402
from nas_core.plugins import Registry  # noqa: E402
from nas_core.ray_executor import RayExecutor  # noqa: E402
from nas_core.store import Store, TrialState  # noqa: E402
from nas_core.study import StudyConfig, run_study  # noqa: E402

SUPPORT = str(Path(toy.__file__).resolve().parent)


def reg():
    return Registry([toy.toy_plugin()], discover=False)


def _cmdlines_containing(text: str) -> list[str]:
    found = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if text in cmd:
                found.append(f"{d.name}: {cmd[:120]}")
    return found


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc to look for left-over Ray processes")
def test_cli_starts_a_local_ray_on_demand_and_shuts_it_down(tmp_path):
    out = tmp_path / "study"
    ray_tmp = tempfile.mkdtemp(prefix="nasray", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    env = {**os.environ, "PYTHONPATH": toy.install_entry_point(tmp_path / "site"), "RAY_TMPDIR": ray_tmp,
           "PYTHONWARNINGS": "ignore"}
    r = subprocess.run([sys.executable, "-m", "nas_core.cli", "run", "toy/safe", "--strategy", "random", "--budget",
                        "4", "--objective", "score:max", "--executor", "ray", "--workers", "2", "--out", str(out),
                        "--quiet"], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    with Store.open(out / "study.db") as st:
        done = st.trials([TrialState.COMPLETE])
        assert len(done) == 4 and st.count(TrialState.RUNNING) == 0
        assert st.runs()[0]["operational"]["executor"] == "ray"
    for t in done:  # files a trial saved on an actor were shipped back and written by the driver
        assert (out / "trials" / f"{t.number:05d}" / "model.pt").is_file()
    end = time.time() + 20
    while time.time() < end and _cmdlines_containing(ray_tmp):
        time.sleep(0.5)
    assert not _cmdlines_containing(ray_tmp), "Ray processes outlived the study"


@pytest.fixture(scope="module")
def local_ray():
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([SUPPORT, *([old] if old else [])])  # actors import the toy plugin
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        yield ray
    finally:
        ray.shutdown()
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old


def test_ray_study_records_deaths_and_timeouts_with_their_cause(local_ray, tmp_path, monkeypatch):
    monkeypatch.setattr(RayExecutor, "grace_s", 0.5)
    cfg = StudyConfig(space="toy/exit", budget=6, strategy="random", seed=0, objectives=("score:max",),
                      executor="ray", workers=2, time_limit_s=0.5, max_retries=1)
    s = run_study(cfg, tmp_path, registry=reg())
    assert s.complete + s.failed == 6
    with Store.open(tmp_path / "study.db") as st:
        assert st.count(TrialState.RUNNING) == 0
        trials = st.trials([TrialState.COMPLETE, TrialState.FAILED])
    assert len({t.arch.hash for t in trials}) == 6
    modes = {t.arch["mode"] for t in trials}
    assert modes - {"ok"}, "the seed should give failing candidates"
    for t in trials:
        if t.arch["mode"] == "ok":
            assert t.state == TrialState.COMPLETE and t.attempts == 1
        else:
            assert t.state == TrialState.FAILED and t.attempts == 2
            assert ("worker process died" in t.error) if t.arch["mode"] == "exit" else ("time limit" in t.error)
    assert local_ray.is_initialized()  # a Ray the executor did not start is left running


def test_ray_executor_runs_jobs_in_parallel_and_replaces_dead_actors(local_ray):
    from nas_core.executors import Evaluator
    from nas_core.space import Architecture

    ex = RayExecutor(Evaluator(toy.ToyTask(toy.SigkillToySpace())), workers=2)
    base = {"layers": [{"width": 8, "act": "relu"}]}
    try:
        for number, mode in [(1, "sigkill"), (2, "ok"), (3, "ok"), (4, "ok")]:
            ex.submit(Job(number, Architecture({**base, "mode": mode}).to_json(), number, {}, None))
        assert ex.in_flight == 4 and ex.capacity == 2
        results = {}
        while len(results) < 4:
            for r in ex.wait():
                results[r.number] = r
    finally:
        ex.shutdown()
    assert not results[1].ok and results[1].kind == "died" and "worker process died" in results[1].error
    assert all(results[n].ok for n in (2, 3, 4))


def test_cli_ray_executor_in_process(local_ray, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(toy.install_entry_point(tmp_path / "site").split(os.pathsep)[0])
    out = tmp_path / "study"
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(["run", "toy/safe", "--strategy", "evolution", "--strategy-option", "population_size=2",
                     "--strategy-option", "sample_size=1", "--budget", "4", "--objective", "score:max",
                     "--option", "sleep=0.2", "--executor", "ray", "--workers", "2", "--out", str(out), "--quiet"])
    assert code == 0, err.getvalue()
    assert (out / "model_card.md").is_file() and (out / "model_card.html").is_file()
    with Store.open(out / "study.db") as st:
        trials = st.trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4
    # a one-at-a-time strategy still keeps both workers busy: trial 2 was proposed while trial 1 ran
    assert trials[1].created < trials[0].finished


def test_artifact_names_from_workers_cannot_leave_the_trial_directory(tmp_path):
    job = Job(1, "{}", 0, {}, None, str(tmp_path / "trials" / "00001"))
    for name in ("../../evil.txt", "/etc/evil", "a/../../evil"):
        with pytest.raises(ConfigError, match="inside the study directory"):
            RayExecutor._write_files(None, job, {name: b"x"})  # type: ignore[arg-type]
    assert not (tmp_path / "evil.txt").exists()


def test_bad_ray_address_is_one_line():
    with pytest.raises(ConfigError, match="ray_address 'localhost:1' needs executor 'ray'"):
        StudyConfig(space="toy/safe", executor="process", ray_address="localhost:1")
