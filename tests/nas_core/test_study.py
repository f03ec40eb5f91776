from __future__ import annotations

import pytest

import toy
from nas_core.errors import ConfigError, StoreError
from nas_core.executors import Evaluator, ProcessExecutor
from nas_core.plugins import Registry
from nas_core.store import Store, TrialState
from nas_core.study import StudyConfig, resume_study, run_study


def reg():
    return Registry([toy.toy_plugin()], discover=False)


def cfg(**kw):
    base = dict(space="toy/safe", budget=12, strategy="evolution", seed=0, objectives=("score:max",),
                strategy_options={"population_size": 4, "sample_size": 2})
    base.update(kw)
    return StudyConfig(**base)


def evaluated(path):
    with Store.open(path / "study.db") as st:
        return [(t.number, t.arch.hash, t.state, dict(t.metrics)) for t in st.trials()
                if t.state in (TrialState.COMPLETE, TrialState.FAILED)]


def test_budget_counts_evaluations_and_rejected_are_never_trained(tmp_path):
    calls = []
    orig = toy.ToyEstimator.evaluate
    toy.ToyEstimator.evaluate = lambda self, ctx: (calls.append(ctx.arch.hash), orig(self, ctx))[1]
    try:
        s = run_study(cfg(constraints=("params<=600",)), tmp_path, registry=reg())
    finally:
        toy.ToyEstimator.evaluate = orig
    assert s.complete + s.failed == 12 and s.rejected > 0
    with Store.open(tmp_path / "study.db") as st:
        rejected = st.trials([TrialState.REJECTED])
        assert all("params" in r.reason and "violates params <= 600" in r.reason for r in rejected)
        assert all(r.costs["params"] > 600 and not r.metrics for r in rejected)
        assert not {r.arch.hash for r in rejected} & set(calls)
        done = st.trials([TrialState.COMPLETE])
        assert sorted(t.arch.hash for t in done) == sorted(calls)
        assert len(set(calls)) == len(calls)  # nothing evaluated twice


def test_same_seed_gives_same_hashes_and_metrics(tmp_path):
    run_study(cfg(), tmp_path / "a", registry=reg())
    run_study(cfg(), tmp_path / "b", registry=reg())
    run_study(cfg(seed=1), tmp_path / "c", registry=reg())
    a, b, c = evaluated(tmp_path / "a"), evaluated(tmp_path / "b"), evaluated(tmp_path / "c")
    assert a == b
    assert [x[1] for x in a] != [x[1] for x in c]


def test_failures_are_recorded_and_the_study_goes_on(tmp_path):
    s = run_study(cfg(space="toy/faults", budget=30, strategy="random", strategy_options={},
                       time_limit_s=0.3), tmp_path, registry=reg())
    assert s.complete + s.failed == 30 and s.failed > 0 and s.complete > 0
    with Store.open(tmp_path / "study.db") as st:
        errors = {t.arch["mode"]: t.error for t in st.trials([TrialState.FAILED])}
    assert set(errors) <= {"raise", "nan", "slow"}
    assert "candidate exploded" in errors["raise"]
    assert "non-finite training loss" in errors["nan"]
    assert "TrialTimeout" in errors["slow"] and "time limit" in errors["slow"]


def test_kill_mid_trial_then_resume_loses_nothing_and_matches_an_uninterrupted_run(tmp_path):
    run_study(cfg(budget=15), tmp_path / "ref", registry=reg())
    calls = {"n": 0}
    orig = toy.ToyEstimator.evaluate

    def dying(self, ctx):
        calls["n"] += 1
        if calls["n"] == 7:
            raise KeyboardInterrupt  # the driver dies while trial 7 runs
        return orig(self, ctx)

    toy.ToyEstimator.evaluate = dying
    try:
        with pytest.raises(KeyboardInterrupt):
            run_study(cfg(budget=15), tmp_path / "k", registry=reg())
    finally:
        toy.ToyEstimator.evaluate = orig
    with Store.open(tmp_path / "k" / "study.db") as st:
        assert st.count(TrialState.COMPLETE) == 6 and st.count(TrialState.RUNNING) == 1
    s = resume_study(tmp_path / "k", registry=reg())
    assert s.complete == 15
    got, ref = evaluated(tmp_path / "k"), evaluated(tmp_path / "ref")
    assert [x[1:] for x in got] == [x[1:] for x in ref]  # same architectures, states and metrics
    hashes = [x[1] for x in got]
    assert len(hashes) == len(set(hashes))


def test_resume_can_raise_the_budget_and_refuses_another_study(tmp_path):
    run_study(cfg(budget=5), tmp_path, registry=reg())
    s = resume_study(tmp_path, budget=8, registry=reg())
    assert s.complete == 8
    with pytest.raises(StoreError, match="different study"):
        run_study(cfg(budget=5, seed=3), tmp_path, registry=reg())


def test_process_executor_records_worker_death_and_kills_overruns():
    from nas_core.executors import Job
    from nas_core.space import Architecture

    ex = ProcessExecutor(Evaluator(toy.ToyTask(toy.ExitToySpace())), workers=2)
    ex.grace_s = 0.2
    base = {"layers": [{"width": 8, "act": "relu"}]}
    try:
        for number, mode, limit in [(1, "exit", None), (2, "hang", 1.0), (3, "ok", None), (4, "ok", None)]:
            ex.submit(Job(number, Architecture({**base, "mode": mode}).to_json(), 0, {}, limit))
        results = {}
        while len(results) < 4:
            for r in ex.wait():
                results[r.number] = r
    finally:
        ex.shutdown()
    assert not results[1].ok and "exited with code 7" in results[1].error
    assert not results[2].ok and "time limit of 1 s exceeded; worker killed" in results[2].error
    assert results[3].ok and results[4].ok  # fresh workers replaced the dead ones


def test_process_executor_study_completes_the_budget(tmp_path):
    s = run_study(cfg(space="toy/exit", budget=6, strategy="random", strategy_options={}, executor="process",
                      workers=2, time_limit_s=1.0, max_retries=0), tmp_path, registry=reg())
    assert s.complete + s.failed == 6
    with Store.open(tmp_path / "study.db") as st:
        for t in st.trials([TrialState.FAILED]):
            assert ("exited with code 7" in t.error) if t.arch["mode"] == "exit" else ("time limit" in t.error)


def test_bad_study_input_is_one_line(tmp_path):
    with pytest.raises(ConfigError, match="budget must be a positive integer"):
        cfg(budget=0)
    with pytest.raises(ConfigError, match="unknown metric 'nope'"):
        run_study(cfg(constraints=("nope<=1",)), tmp_path / "x", registry=reg())
    assert not (tmp_path / "x").exists()  # nothing written for a study that was refused
    with pytest.raises(ConfigError, match="unknown metric 'acc'"):
        run_study(cfg(objectives=("acc:max",)), tmp_path / "y", registry=reg())


def test_wall_time_budget_stops_new_trials_and_resume_continues(tmp_path):
    s = run_study(cfg(budget=50, strategy="random", strategy_options={}, task_options={"sleep": 0.05},
                      max_time_s=0.3), tmp_path, registry=reg())
    assert s.stopped_early and "wall-time budget" in s.stopped_early
    assert 1 <= s.complete < 50
    s2 = resume_study(tmp_path, registry=reg(), max_time_s=None)
    assert s2.complete == 50 and s2.stopped_early is None


def test_multi_fidelity_proposals_are_stored_and_deduplicated_per_fidelity(tmp_path):
    from nas_core.strategies.base import Proposal, Strategy

    class TwoRungs(Strategy):
        name = "two-rungs"

        def __init__(self, space, objectives, *, seed=0):
            super().__init__(space, objectives, seed=seed)
            self.queue = []
            self.told = []

        def ask(self):
            if not self.queue:
                a = self.space.sample(self.rng)
                self.queue = [Proposal(a, {"rung": 1}), Proposal(a, {"rung": 2}), Proposal(a, {"rung": 1})]
            return self.queue.pop(0)

        def tell(self, arch, result):
            self.told.append((arch.hash, dict(result.fidelity)))

    from nas_core.plugins import Plugin

    p = Plugin(name="toy", spaces=toy.toy_plugin().spaces, strategies={"two-rungs": TwoRungs})
    s = run_study(cfg(strategy="toy/two-rungs", strategy_options={}, budget=6), tmp_path,
                  registry=Registry([p], discover=False))
    assert s.complete == 6
    with Store.open(tmp_path / "study.db") as st:
        trials = st.trials([TrialState.COMPLETE])
    keys = [(t.arch.hash, t.fidelity["rung"]) for t in trials]
    assert len(set(keys)) == 6  # the repeated rung-1 proposal was answered from the store, not re-run
    assert {t.fidelity["rung"] for t in trials} == {1, 2}


def test_retry_and_ray_settings_are_operational_so_old_studies_keep_their_identity(tmp_path):
    ident = cfg().identity()
    assert not {"max_retries", "retry_on", "ray_address", "executor", "workers"} & set(ident)
    run_study(cfg(budget=3), tmp_path, registry=reg())
    s = resume_study(tmp_path, budget=4, registry=reg(), max_retries=3, retry_on=["died"])
    assert s.complete == 4
    with Store.open(tmp_path / "study.db") as st:  # each run records the settings it used
        runs = st.runs()
    assert [(r["operational"]["max_retries"], r["operational"]["retry_on"]) for r in runs] == [
        (1, ["died", "timeout"]), (3, ["died"])]
