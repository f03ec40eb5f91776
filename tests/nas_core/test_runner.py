"""TrialRunner: what happens to one trial between the study's ask and its tell."""

from __future__ import annotations

import os

import pytest

import toy
from nas_core.constraints import Constraint
from nas_core.errors import ConfigError
from nas_core.executors import Evaluator, Executor, InProcessExecutor, Job, JobResult, Prebuilt, seeded_build
from nas_core.runner import TrialRunner, trial_seed
from nas_core.space import Architecture
from nas_core.store import Store, TrialState
from nas_core.strategies.base import Objective
from nas_core.strategies.random_search import RandomSearch
from nas_core.study import Study

OBJ = Objective("score", "max")


class Recorder(Executor):
    """Records submissions; results are handed to the runner by the test."""

    name = "recorder"

    def __init__(self) -> None:
        self.jobs: list[Job] = []
        self.prebuilt: list[Prebuilt | None] = []

    @property
    def capacity(self) -> int:
        return 1

    @property
    def in_flight(self) -> int:
        return 0

    def submit(self, job: Job, prebuilt: Prebuilt | None = None) -> None:
        self.jobs.append(job)
        self.prebuilt.append(prebuilt)

    def wait(self) -> list[JobResult]:
        return []


class TellingStrategy(RandomSearch):
    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.told: list[tuple[str, TrialState]] = []

    def tell(self, arch, result):
        self.told.append((arch.hash, result.state))


class CountingSpace(toy.SafeToySpace):
    builds = 0

    def build(self, arch):
        CountingSpace.builds += 1
        return super().build(arch)


class BrokenSpace(toy.SafeToySpace):
    def build(self, arch):
        raise ValueError("no such layer")


class Events:
    def __init__(self):
        self.trials, self.retries = [], []

    def start(self, total, done): ...

    def trial(self, record, best):
        self.trials.append((record.number, record.state))

    def retry(self, number, attempt, error):
        self.retries.append((number, attempt))

    def close(self): ...


@pytest.fixture
def store(tmp_path):
    st = Store.create(tmp_path / "study.db", study_id="t", study_name="t", config={})
    yield st
    st.close()


def runner_for(store, space=None, constraints=(), **kw):
    task = toy.ToyTask(space or toy.SafeToySpace())
    strategy = TellingStrategy(task.space, [OBJ], seed=0)
    ex = Recorder()
    r = TrialRunner(task=task, strategy=strategy, store=store, executor=ex, objective=OBJ,
                    constraints=constraints, seed=5, progress=Events(), **kw)
    return r, ex, strategy


ARCH = Architecture({"layers": [{"width": 32, "act": "tanh"}, {"width": 32, "act": "relu"}], "mode": "ok"})


def test_a_rejected_proposal_is_stored_with_its_reason_and_never_submitted(store):
    r, ex, strategy = runner_for(store, constraints=[Constraint.parse("params<=100")])
    verdict = r.check(ARCH)
    assert verdict.reasons and "violates params <= 100" in verdict.reasons[0] and verdict.prebuilt is None
    assert r.start(ARCH, {}, verdict) is None
    assert ex.jobs == []
    (t,) = store.trials()
    assert t.state == TrialState.REJECTED and "violates params <= 100" in t.reason and t.costs["params"] > 100
    assert strategy.told == [(ARCH.hash, TrialState.REJECTED)]
    assert r.known(ARCH, {"epochs": 3}) is not None  # a rejection holds at every fidelity


def test_a_candidate_that_cannot_be_built_is_a_failed_trial(store):
    r, ex, strategy = runner_for(store, space=BrokenSpace())
    verdict = r.check(ARCH)
    assert verdict.error == "building the candidate failed: ValueError: no such layer"
    assert r.start(ARCH, {"epochs": 2}, verdict) is None
    assert ex.jobs == []
    (t,) = store.trials()
    assert t.state == TrialState.FAILED and t.error == verdict.error and t.seed == trial_seed(5, 1)
    assert strategy.told == [(ARCH.hash, TrialState.FAILED)]
    assert r.progress.trials == [(1, TrialState.FAILED)]


def test_a_bug_in_rejections_stops_the_study_with_one_line(store):
    r, _, _ = runner_for(store)
    r.task.rejections = lambda arch, static, target=None: 1 / 0
    with pytest.raises(ConfigError, match="raised ZeroDivisionError in rejections()"):
        r.check(ARCH)
    assert store.trials() == []


def test_a_runnable_proposal_is_stored_running_and_submitted_with_its_seed_and_staging_dir(store):
    r, ex, _ = runner_for(store, time_limit_s=7.0)
    verdict = r.check(ARCH)
    assert r.start(ARCH, {"epochs": 2}, verdict) == 1
    (job,) = ex.jobs
    assert (job.number, job.seed, dict(job.fidelity), job.time_limit_s) == (1, trial_seed(5, 1), {"epochs": 2}, 7.0)
    assert job.artifact_dir.endswith(f"trials/.staging/00001-{os.getpid()}-0")
    assert ex.prebuilt[0] is verdict.prebuilt and verdict.prebuilt is not None
    t = store.trial(1)
    assert t.state == TrialState.RUNNING and t.costs == dict(verdict.static)


def test_a_retry_resubmits_under_the_same_number_and_the_final_record_keeps_the_earlier_error(store):
    r, ex, _ = runner_for(store, max_retries=1)
    r.start(ARCH, {}, r.check(ARCH))
    died = JobResult(1, False, {}, "worker process died from SIGKILL", 1.0, "died")
    assert r.retry(died, (ARCH, {}))
    assert r.progress.retries == [(1, 1)]
    first, second = ex.jobs
    assert second.number == first.number and second.seed == first.seed
    assert second.artifact_dir != first.artifact_dir and second.artifact_dir.endswith("-1")
    assert ex.prebuilt[1] is None  # the first attempt may have changed the network: a retry builds afresh
    again = JobResult(1, False, {}, "worker process died from SIGSEGV\ndetails", 1.0, "died")
    assert not r.retry(again, (ARCH, {}))  # max_retries used up
    r.finish(again, (ARCH, {}))
    t = store.trial(1)
    assert t.state == TrialState.FAILED and t.attempts == 2
    assert t.error == ("worker process died from SIGSEGV [attempt 2 of 2; earlier: attempt 1 failed (died): worker "
                       "process died from SIGKILL]\ndetails")


def test_ordinary_failures_are_not_retried(store):
    r, ex, _ = runner_for(store, max_retries=3)
    r.start(ARCH, {}, r.check(ARCH))
    assert not r.retry(JobResult(1, False, {}, "RuntimeError: boom", 0.1, "error"), (ARCH, {}))
    assert len(ex.jobs) == 1


def _write_weights(job: Job) -> None:
    os.makedirs(job.artifact_dir, exist_ok=True)
    with open(os.path.join(job.artifact_dir, "model.pt"), "w") as f:
        f.write("weights")


def test_staging_dirs_are_removed_on_failure_and_moved_on_success(store):
    r, ex, _ = runner_for(store, max_retries=1)
    trials = store.path.parent / "trials"
    r.start(ARCH, {}, r.check(ARCH))
    _write_weights(ex.jobs[0])
    assert r.retry(JobResult(1, False, {}, "worker process died", 1.0, "died"), (ARCH, {}))
    assert not os.path.exists(ex.jobs[0].artifact_dir)  # the failed attempt's files are gone
    _write_weights(ex.jobs[1])
    r.finish(JobResult(1, True, {"score": 0.5}, None, 1.0), (ARCH, {}))
    assert (trials / "00001" / "model.pt").read_text() == "weights"
    assert not os.path.exists(ex.jobs[1].artifact_dir)
    assert store.trial(1).state == TrialState.COMPLETE and store.trial(1).metrics == {"score": 0.5}
    assert "worker process died" in store.trial(1).error  # the earlier attempt's error is kept

    other = Architecture({"layers": [{"width": 8, "act": "relu"}], "mode": "ok2"})
    r.start(other, {}, r.check(other))
    _write_weights(ex.jobs[2])
    r.finish(JobResult(2, False, {}, "RuntimeError: boom", 1.0, "error"), (other, {}))
    assert not os.path.exists(ex.jobs[2].artifact_dir) and not (trials / "00002").exists()
    assert store.trial(2).state == TrialState.FAILED and store.trial(2).error == "RuntimeError: boom"


def test_resume_clears_stale_staging_and_resubmits_running_trials_with_their_attempts(store):
    r, ex, _ = runner_for(store, max_retries=1)
    r.start(ARCH, {"epochs": 2}, r.check(ARCH))
    store.note_retry(1, "attempt 1 failed (died): worker process died")
    stale = store.path.parent / "trials" / ".staging" / "00001-999-0"
    stale.mkdir(parents=True)
    fresh, ex2, _ = runner_for(store, max_retries=1)  # a new driver on the same store
    pending = fresh.resume()
    assert pending == {1: (ARCH, {"epochs": 2})}
    assert not stale.exists()
    (job,) = ex2.jobs
    assert job.number == 1 and job.artifact_dir.endswith("-1") and ex2.prebuilt == [None]
    assert not fresh.retry(JobResult(1, False, {}, "worker process died", 1.0, "died"), pending[1])  # retries used


def test_seeded_build_gives_the_evaluators_network_and_random_stream():
    import torch

    space = toy.SafeToySpace()
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    pre = seeded_build(space, ARCH, 77)
    assert torch.equal(torch.random.get_rng_state(), before)  # the caller's stream is untouched
    torch.manual_seed(77)
    fresh = space.build(ARCH)
    assert torch.equal(torch.random.get_rng_state(), pre.rng_state)
    for (k, a), (_, b) in zip(pre.model.state_dict().items(), fresh.state_dict().items()):
        assert torch.equal(a, b), k


@pytest.mark.parametrize("constraints", [(), ("params<=600",)])
def test_the_network_is_built_once_per_trial_in_process(tmp_path, constraints):
    seen = []

    class Spy(toy.ToyEstimator):
        def evaluate(self, ctx):
            seen.append(ctx.model)
            return super().evaluate(ctx)

    class SpyTask(toy.ToyTask):
        def estimator(self):
            return Spy()

    CountingSpace.builds = 0
    task = SpyTask(CountingSpace())
    with Store.create(tmp_path / "study.db", study_id="t", study_name="t", config={}) as st:
        s = Study(task=task, strategy=RandomSearch(task.space, [OBJ], seed=1), objectives=[OBJ], store=st,
                  executor=InProcessExecutor(Evaluator(task)), constraints=[Constraint.parse(c) for c in constraints])
        summary = s.optimize(6)
        checked = st.count()  # every stored trial was checked (built) once: evaluated and rejected ones
    assert summary.complete == 6 and len(seen) == 6 and (summary.rejected > 0) == bool(constraints)
    assert CountingSpace.builds == checked == 6 + summary.rejected
    assert len({id(m) for m in seen}) == 6


class Meddling(toy.ToyTask):
    def static_metrics(self, arch, model, target):
        import torch

        with torch.no_grad():
            next(model.parameters()).add_(1.0)  # e.g. a forward pass that trains, a weight "fix-up"
        return super().static_metrics(arch, model, target)


def test_the_conformance_kit_refuses_static_metrics_that_change_the_network():
    from nas_core.plugins import Plugin, SpaceEntry
    from nas_core.testing import check_plugin

    good = Plugin(name="good", version="1", spaces={"safe": SpaceEntry(toy.SafeToySpace, toy.ToyTask)})
    check_plugin(good, n_samples=2, proxies=False)
    bad = Plugin(name="bad", version="1", spaces={"safe": SpaceEntry(toy.SafeToySpace, Meddling)})
    with pytest.raises(AssertionError, match=r"static_metrics\(\) changed the network .*0\.weight changed"):
        check_plugin(bad, n_samples=2, proxies=False)


def test_a_run_and_a_resume_open_the_store_once(tmp_path, monkeypatch):
    import dataclasses

    from nas_core.plugins import Registry
    from nas_core.study import StudyConfig, resume_study, run_study

    opened = []
    real = Store._connect
    monkeypatch.setattr(Store, "_connect", staticmethod(lambda path, **kw: (opened.append(path), real(path, **kw))[1]))
    reg = Registry([toy.toy_plugin()], discover=False)
    cfg = StudyConfig(space="toy/safe", budget=3, strategy="random", objectives=("score:max",))
    counts = []
    for run in (lambda: run_study(cfg, tmp_path, registry=reg),                                   # a new store
                lambda: run_study(dataclasses.replace(cfg, budget=4), tmp_path, registry=reg),    # continued
                lambda: resume_study(tmp_path, budget=5, registry=reg)):
        opened.clear()
        run()
        counts.append(len(opened))
    assert counts == [1, 1, 1]
    with Store.open(tmp_path / "study.db") as st:
        assert st.count(TrialState.COMPLETE) == 5 and len(st.runs()) == 3
