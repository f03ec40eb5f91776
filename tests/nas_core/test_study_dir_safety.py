"""A study directory nobody can corrupt or turn against its user: one driver at a time, no code named by a
store, no write or delete outside the directory through symlinks."""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
import time

import pytest

import toy
from nas_core.errors import ConfigError, StoreError
from nas_core.lock import LOCK_NAME, StudyLock
from nas_core.plugins import Plugin, Registry, SpaceEntry
from nas_core.store import Store, TrialState
from nas_core.study import StudyConfig, resume_study, run_study

CFG = StudyConfig(space="toy/safe", budget=2, objectives=("score:max",))


def reg(*extra):
    return Registry([toy.toy_plugin(), *extra], discover=False)


def _hold(path, ready, release):
    with StudyLock(path):
        ready.set()
        release.wait(30)


@contextlib.contextmanager
def _holding(path):
    """Another process holding the driver lock of ``path``."""
    ctx = mp.get_context("spawn")
    ready, release = ctx.Event(), ctx.Event()
    p = ctx.Process(target=_hold, args=(str(path), ready, release))
    p.start()
    try:
        assert ready.wait(30)
        yield p
    finally:
        release.set()
        p.join(30)


@pytest.fixture
def holder(tmp_path):
    with _holding(tmp_path / "study") as p:
        yield p


def test_a_second_driver_is_refused_naming_the_holder_and_writes_nothing(tmp_path, holder):
    with pytest.raises(StoreError, match=rf"another nas process is driving .*pid {holder.pid} on .* since "):
        run_study(CFG, tmp_path / "study", registry=reg())
    assert sorted(os.listdir(tmp_path / "study")) == [LOCK_NAME]  # no store was created


def test_a_resume_is_refused_while_a_run_holds_the_study_and_the_store_is_untouched(tmp_path):
    out = tmp_path / "study"
    run_study(CFG, out, registry=reg())
    before = (out / "study.db").read_bytes()
    with _holding(out):
        with pytest.raises(StoreError, match="another nas process is driving"):
            resume_study(out, budget=4, registry=reg())
        assert (out / "study.db").read_bytes() == before
        from nas_core.report import make_report

        make_report(out)  # readers need no lock
    assert resume_study(out, budget=4, registry=reg()).complete == 4  # the holder is gone: resume works


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    ctx = mp.get_context("spawn")
    ready, release = ctx.Event(), ctx.Event()
    p = ctx.Process(target=_hold, args=(str(tmp_path / "study"), ready, release))
    p.start()
    assert ready.wait(30)
    os.kill(p.pid, signal.SIGKILL)
    p.join(30)
    with StudyLock(tmp_path / "study"):  # the kernel released the dead holder's lock
        pass


def test_the_lock_file_is_never_followed_through_a_symlink(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("keep")
    (tmp_path / "study").mkdir()
    (tmp_path / "study" / LOCK_NAME).symlink_to(victim)
    with pytest.raises(StoreError, match="symbolic link"):
        run_study(CFG, tmp_path / "study", registry=reg())
    assert victim.read_text() == "keep"


# -- a store names data, never code ---------------------------------------------------------------

BUILT: list[dict] = []


class CodeTask(toy.ToyTask):
    """A task whose ``hook`` option may name code (``module:attribute``), like the PINN task's ``problem``."""

    code_options = ("hook",)

    def __init__(self, space, **options):
        BUILT.append(dict(options))
        super().__init__(space, **options)


def code_plugin():
    return Plugin(name="code", version="1", spaces={"safe": SpaceEntry(toy.SafeToySpace, CodeTask)})


def test_a_stored_code_reference_is_never_imported_on_resume_or_export(tmp_path):
    from nas_core.export import export_trial

    out = tmp_path / "study"
    cfg = StudyConfig(space="code/safe", budget=1, objectives=("score:max",),
                      task_options={"hook": "tempfile:mkdtemp"})
    run_study(cfg, out, registry=reg(code_plugin()))  # the user's own command: accepted
    before = (out / "study.db").read_bytes()
    BUILT.clear()
    with pytest.raises(ConfigError, match=r"names code in task option hook='tempfile:mkdtemp'.*--option "
                                          r"hook=tempfile:mkdtemp"):
        resume_study(out, budget=2, registry=reg(code_plugin()))
    with pytest.raises(ConfigError, match="names code"):
        export_trial(out, 1, "onnx", registry=reg(code_plugin()))
    assert BUILT == []  # the task (which would resolve the reference) was never built
    assert (out / "study.db").read_bytes() == before
    with pytest.raises(ConfigError, match="only re-states"):
        resume_study(out, budget=2, registry=reg(code_plugin()), code_options={"other": "x:y"})
    # re-stated by the user: resumed
    assert resume_study(out, budget=2, registry=reg(code_plugin()),
                        code_options={"hook": "tempfile:mkdtemp"}).complete == 2


def test_the_pinn_problem_option_is_a_code_option():
    from nas_pinn.task import PinnTask

    assert "problem" in PinnTask.code_options


def test_a_stored_ray_address_is_not_used_unless_given_again(tmp_path, monkeypatch):
    import nas_core.study as study_mod

    out = tmp_path / "study"
    run_study(CFG, out, registry=reg())
    with Store.open(out / "study.db") as st:  # a received store that names a cluster
        import json

        st.set_meta("config", json.dumps({**st.config, "executor": "ray", "ray_address": "10.9.8.7:6379"}))
    seen = []
    real = study_mod.make_executor

    def spy(kind, evaluator, workers, address=None, time_limit_s=None):
        seen.append((kind, address))
        return real("inprocess", evaluator, 1)

    monkeypatch.setattr(study_mod, "make_executor", spy)
    resume_study(out, budget=3, registry=reg())
    assert seen == [("ray", None)]
    resume_study(out, budget=4, registry=reg(), ray_address="auto")
    assert seen[-1] == ("ray", "auto")


# -- symlinks out of the directory ----------------------------------------------------------------

def test_an_export_sidecar_symlink_is_refused_and_the_outside_file_kept(tmp_path):
    from nas_core.export import export_trial

    out = tmp_path / "study"
    run_study(CFG, out, registry=reg())
    victim = tmp_path / "victim.json"
    victim.write_text("keep me")
    (out / "exports").mkdir()
    (out / "exports" / "trial-00001.onnx.json").symlink_to(victim)
    with pytest.raises(ConfigError, match="outside the study directory"):
        export_trial(out, 1, "onnx", registry=reg())
    assert victim.read_text() == "keep me"


def test_a_symlinked_trials_dir_is_refused_before_anything_outside_is_deleted(tmp_path):
    out = tmp_path / "study"
    run_study(CFG, out, registry=reg())
    outside = tmp_path / "outside"
    (outside / ".staging" / "keep").mkdir(parents=True)
    import shutil

    shutil.rmtree(out / "trials")
    (out / "trials").symlink_to(outside, target_is_directory=True)
    before = (out / "study.db").read_bytes()
    with pytest.raises(ConfigError, match="outside the study directory"):
        resume_study(out, budget=3, registry=reg())
    assert (outside / ".staging" / "keep").is_dir()
    assert (out / "study.db").read_bytes() == before  # refused before the new budget or a run record is written


# -- time limits under the default executor -------------------------------------------------------

def test_a_hung_trial_under_the_default_executor_ends_as_a_timeout(tmp_path, monkeypatch):
    from nas_core.executors import ProcessExecutor

    monkeypatch.setattr(ProcessExecutor, "grace_s", 0.5)
    t0 = time.monotonic()
    summary = run_study(StudyConfig(space="toy/only-hang", budget=6, strategy="random", seed=2,
                                    objectives=("score:max",), time_limit_s=0.5, max_retries=0),
                        tmp_path / "study", registry=reg())
    assert time.monotonic() - t0 < 120  # each hang sleeps 600 s: they were killed
    with Store.open(tmp_path / "study" / "study.db") as st:
        trials = st.trials()
    hung = [t for t in trials if t.arch["mode"] == "hang"]
    assert hung and summary.complete + summary.failed == 6
    for t in hung:
        assert t.state == TrialState.FAILED and "time limit of 0.5 s exceeded; worker killed" in (t.error or "")


# -- fidelities checked against what the estimator declares -----------------------------------------

def test_fidelities_are_validated_against_the_estimator():
    from nas_core.estimators.crossval import GroupedCVEstimator
    from nas_core.estimators.lightning_trainer import TrainingEstimator

    est = TrainingEstimator(lambda: None, epochs=3)
    assert est.fidelity_errors({"epochs": 2, "data_fraction": 0.5}) == []
    assert "unknown fidelity 'epoch'" in est.fidelity_errors({"epoch": 2})[0]
    assert "finite number" in est.fidelity_errors({"epochs": "2"})[0]
    assert "finite number" in est.fidelity_errors({"epochs": True})[0]
    assert "whole number" in est.fidelity_errors({"epochs": 2.5})[0]
    assert ">= 1" in est.fidelity_errors({"epochs": 0})[0]
    assert "(0, 1]" in est.fidelity_errors({"data_fraction": 1.5})[0]
    cv = GroupedCVEstimator(folds=3, epochs=2)
    assert cv.fidelity_errors({"folds": 2}) == []
    assert "1..3" in cv.fidelity_errors({"folds": 4})[0]


def test_a_study_with_a_bad_fidelity_is_refused_before_it_starts(tmp_path):
    from nas_core.examples.digits import plugin as digits_plugin

    r = Registry([digits_plugin()], discover=False)
    with pytest.raises(ConfigError, match="unknown fidelity 'epoch'"):
        run_study(StudyConfig(space="digits/cnn", budget=1, fidelity={"epoch": 1}), tmp_path / "a", registry=r)
    with pytest.raises(ConfigError, match=r"strategy 'hyperband' \(fidelity_key='data_fraction', budget 3\).*\(0, 1\]"):
        run_study(StudyConfig(space="digits/cnn", budget=1, strategy="hyperband",
                              strategy_options={"fidelity_key": "data_fraction", "budgets": [0.5, 1, 3]}),
                  tmp_path / "b", registry=r)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


class AllRaiseSpace(toy.SafeToySpace):
    MODES = ["raise"]


def test_the_cli_exits_non_zero_when_every_trial_failed(tmp_path, capsys):
    from nas_core.cli import _finish

    out = tmp_path / "study"
    p = Plugin(name="bad", version="1", spaces={"raise": SpaceEntry(AllRaiseSpace, toy.ToyTask)})
    summary = run_study(StudyConfig(space="bad/raise", budget=3, strategy="random", objectives=("score:max",)), out,
                        registry=reg(p))
    assert summary.complete == 0 and summary.failed == 3
    assert _finish(summary, out, quiet=True) == 4
    assert "every evaluated trial failed (3)" in capsys.readouterr().err


def test_a_retried_trial_that_completes_keeps_the_first_attempts_error(tmp_path):
    from nas_core.space import Architecture

    with Store.create(tmp_path / "study.db", study_id="x", study_name="x", config={}) as st:
        n = st.add_trial(Architecture({"a": 1}), state=TrialState.RUNNING, seed=0)
        st.note_retry(n, "attempt 1 failed (died): worker process died from SIGKILL")
        st.finish_trial(n, state=TrialState.COMPLETE, metrics={"score": 1.0})
        assert "SIGKILL" in st.trial(n).error and st.trial(n).state == TrialState.COMPLETE


def test_the_refusal_of_a_checkpoint_holding_code_does_not_repeat_the_unsafe_advice(tmp_path):
    import torch

    from nas_core.export import load_weights

    class Evil:
        def __reduce__(self):
            return (os.getcwd, ())

    p = tmp_path / "model.pt"
    torch.save({"w": Evil()}, p)
    with pytest.raises(StoreError) as info:
        load_weights(p, 1)
    msg = str(info.value)
    assert "never load such a file" in msg and "will likely succeed" not in msg and "getcwd" in msg


# -- broken stores are refused before anything is written --------------------------------------------

def _bytes(d):
    return {p.name: p.read_bytes() for p in sorted(d.iterdir()) if p.is_file() and p.name != LOCK_NAME}


@pytest.mark.parametrize("damage", ["empty", "bad-state", "bad-json", "bad-strategy"])
def test_a_broken_store_is_refused_and_left_byte_identical(tmp_path, damage):
    import sqlite3

    out = tmp_path / "study"
    run_study(CFG, out, registry=reg())
    db = out / "study.db"
    if damage == "empty":
        for p in out.glob("study.db*"):
            p.unlink()
        db.write_bytes(b"")
    else:
        with sqlite3.connect(db) as c:
            c.execute("PRAGMA journal_mode=DELETE")
            if damage == "bad-state":
                c.execute("UPDATE trials SET state = 'zombie' WHERE number = 1")
            elif damage == "bad-json":
                c.execute("UPDATE trials SET metrics = '{not json' WHERE number = 2")
            else:
                c.execute("UPDATE strategy SET state = '[[['")
    before = _bytes(out)
    with pytest.raises(StoreError, match="empty file|corrupt"):
        resume_study(out, budget=4, registry=reg())
    with pytest.raises(StoreError, match="empty file|corrupt"):
        run_study(CFG, out, registry=reg())
    assert _bytes(out) == before


# -- a full disk -------------------------------------------------------------------------------------

def test_a_full_disk_while_saving_a_trial_is_an_io_failure_that_can_be_retried():
    import errno

    import numpy as np

    from nas_core.estimators.base import Estimator
    from nas_core.executors import FAILURE_KINDS, Evaluator, Job

    class FullDisk(Estimator):
        metric_names = ("score",)

        def evaluate(self, ctx):
            raise OSError(errno.ENOSPC, "No space left on device", "model.pt")

    class Task(toy.ToyTask):
        def estimator(self):
            return FullDisk()

    arch = toy.SafeToySpace().sample(np.random.default_rng(0))
    res = Evaluator(Task(toy.SafeToySpace()))(Job(1, arch.to_json(), 0, {}))
    assert not res.ok and res.kind == "io" and "is the disk full?" in (res.error or "")
    assert "io" in FAILURE_KINDS  # --retry-on io


class _FullConn:
    """A connection whose writes fail as SQLite's do on a full disk."""

    def __init__(self, conn):
        self.conn = conn

    def execute(self, sql, *a):
        if sql.lstrip().upper().startswith(("INSERT", "UPDATE")):
            import sqlite3

            raise sqlite3.OperationalError("database or disk is full")
        return self.conn.execute(sql, *a)

    def __getattr__(self, name):
        return getattr(self.conn, name)


def test_a_full_disk_while_writing_the_store_is_one_clear_error_and_nothing_half_written(tmp_path):
    from nas_core.space import Architecture

    with Store.create(tmp_path / "study.db", study_id="x", study_name="x", config={}) as st:
        st.add_trial(Architecture({"a": 1}), state=TrialState.COMPLETE, seed=0)
        real = st._conn
        st._conn = _FullConn(real)
        with pytest.raises(StoreError, match=r"cannot write the study store .*database or disk is full .*MB free.*"
                                             r"nothing was half-written.*nas resume"):
            st.add_trial(Architecture({"a": 2}), state=TrialState.COMPLETE, seed=0)
        st._conn = real
        assert len(st.trials()) == 1


def test_an_out_path_that_is_a_file_is_one_clear_error_and_the_file_is_kept(tmp_path):
    out = tmp_path / "new"
    out.write_text("a file")
    with pytest.raises(StoreError, match="exists and is not a directory; give another --out"):
        run_study(StudyConfig(space="toy/safe", budget=1, strategy="random", objectives=("score:max",)), out,
                  registry=reg())
    assert out.read_text() == "a file"


def test_a_full_disk_when_opening_the_store_says_so_not_corrupt(tmp_path, monkeypatch):
    import sqlite3

    with Store.create(tmp_path / "study.db", study_id="x", study_name="x", config={}):
        pass
    real_connect = Store._connect

    class _IOErrorConn:
        def __init__(self, conn):
            self.conn = conn

        def execute(self, sql, *args):
            if "quick_check" in sql:
                raise sqlite3.OperationalError("disk I/O error")  # what SQLite says when WAL's -shm cannot grow
            return self.conn.execute(sql, *args)

        def __getattr__(self, name):
            return getattr(self.conn, name)

    monkeypatch.setattr(Store, "_connect", staticmethod(lambda p, **kw: _IOErrorConn(real_connect(p, **kw))))
    with pytest.raises(StoreError, match=r"cannot open the study store .*disk I/O error .*MB free on its disk"):
        Store.open(tmp_path / "study.db")
