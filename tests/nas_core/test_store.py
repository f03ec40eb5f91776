from __future__ import annotations

import sqlite3

import pytest

from nas_core.errors import StoreError
from nas_core.space import Architecture
from nas_core.store import Store, TrialState


def _store(tmp_path, sid="s1"):
    return Store.create(tmp_path / "study.db", study_id=sid, study_name="n", config={"a": 1})


def test_trial_rows_hold_everything(tmp_path):
    st = _store(tmp_path)
    a = Architecture({"x": 1})
    n = st.add_trial(a, state=TrialState.RUNNING, seed=5, fidelity={"epochs": 2}, costs={"params": 10.0},
                     strategy_state={"k": 1})
    st.finish_trial(n, state=TrialState.COMPLETE, metrics={"acc": 0.5}, duration_s=1.5, strategy_state={"k": 2})
    r = st.trial(n)
    assert (r.arch, r.state, r.seed, dict(r.fidelity), dict(r.costs), dict(r.metrics), r.duration_s, r.attempts) == \
        (a, TrialState.COMPLETE, 5, {"epochs": 2}, {"params": 10.0}, {"acc": 0.5}, 1.5, 1)
    assert r.arch_hash == a.hash and st.find(a.hash)[0].number == n
    assert st.strategy_state() == {"k": 2}
    rej = st.add_trial(Architecture({"x": 2}), state=TrialState.REJECTED, seed=1, reason="params = 9 violates params <= 1")
    assert st.trial(rej).reason.startswith("params")
    assert st.count(TrialState.COMPLETE) == 1 and st.count() == 2


def test_a_trial_cannot_finish_twice_and_failed_writes_leave_no_trace(tmp_path):
    st = _store(tmp_path)
    n = st.add_trial(Architecture({"x": 1}), state=TrialState.RUNNING, seed=0)
    st.finish_trial(n, state=TrialState.FAILED, error="boom", strategy_state={"v": 1})
    with pytest.raises(StoreError, match="cannot be finished twice"):
        st.finish_trial(n, state=TrialState.COMPLETE, metrics={"a": 1.0}, strategy_state={"v": 2})
    # the failed transaction rolled back: strategy state unchanged
    assert st.strategy_state() == {"v": 1} and st.trial(n).error == "boom"


def test_reopen_sees_committed_rows(tmp_path):
    st = _store(tmp_path)
    st.add_trial(Architecture({"x": 1}), state=TrialState.RUNNING, seed=0)
    st.close()
    again = Store.open(tmp_path / "study.db")
    assert again.trials()[0].state == TrialState.RUNNING
    assert again.config == {"a": 1}


def test_other_study_corrupt_and_foreign_files_are_refused(tmp_path):
    _store(tmp_path, "s1").close()
    with pytest.raises(StoreError, match="belongs to a different study"):
        Store.create(tmp_path / "study.db", study_id="s2", study_name="n", config={})
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(StoreError, match="corrupt"):
        Store.open(bad)
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE x(a)").connection.commit()
    with pytest.raises(StoreError, match="corrupt or not a study store"):
        Store.open(other)
    with pytest.raises(StoreError, match="no study store"):
        Store.open(tmp_path / "missing.db")


def test_incompatible_schema_version_is_refused(tmp_path):
    st = _store(tmp_path)
    st.set_meta("schema_version", "99")
    st.close()
    with pytest.raises(StoreError, match="schema version 99"):
        Store.open(tmp_path / "study.db")
