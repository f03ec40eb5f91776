"""The report's summary of rejection reasons says below/above its limit correctly."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from nas_core.constraints import Constraint
from nas_core.report import _reason_counts, _reason_key
from nas_core.store import TrialState


@pytest.mark.parametrize(
    ("reason", "key"),
    [
        # lower bounds (>=, >) are violated from below
        ("fs_hz = 92 violates fs_hz >= 100 (Nyquist: 2.5 x 40 Hz monitoring band)", "fs_hz below limit"),
        ("energy_margin_uj = -12.5 violates energy_margin_uj >= 0 (energy per beat within budget)",
         "energy_margin_uj below limit"),
        ("energy_budget_uj_per_beat = -3 violates energy_budget_uj_per_beat > 0", "energy_budget_uj_per_beat below limit"),
        # upper bounds (<=, <) from above
        ("params = 30000 violates params <= 20000", "params above limit"),
        ("latency_ms = 332.031 violates latency_ms < 300 (real time)", "latency_ms above limit"),
        ("layers = 33 violates layers == 32", "layers not at required value"),
        # domain reasons in words (nas_ecg.budget.nyquist_violation and friends)
        ("fs_hz = 92 Hz is below the Nyquist limit 100 Hz = 2.5 x 40 Hz, the upper edge of the monitoring band "
         "(0.67-40 Hz)", "fs_hz below limit"),
        ("weights = 500000 exceeds the weight memory", "weights above limit"),
        ("fs_hz = 281 Hz is not an output rate of the MAX30003 front end (125, 128, 200, 250, 256, 500, 512 sps)",
         "fs_hz outside limits"),
        # no "metric = value": kept whole
        ("macs is unknown for this candidate", "macs is unknown for this candidate"),
    ],
)
def test_reason_key_direction(reason, key):
    assert _reason_key(reason) == key


def test_constraint_messages_summarise_by_direction():
    # the exact strings Constraint.violation writes
    low = Constraint("fs_hz", ">=", 100.0, "Nyquist").violation({"fs_hz": 92.0})
    high = Constraint("fs_hz", "<=", 360.0, "MIT-BIH rate").violation({"fs_hz": 400.0})
    assert (_reason_key(low), _reason_key(high)) == ("fs_hz below limit", "fs_hz above limit")


def test_reason_counts_split_and_count():
    trials = [
        SimpleNamespace(state=TrialState.REJECTED,
                        reason="fs_hz = 92 violates fs_hz >= 100 (Nyquist); params = 9 violates params <= 5"),
        SimpleNamespace(state=TrialState.REJECTED, reason="fs_hz = 92 Hz is below the Nyquist limit 100 Hz"),
        SimpleNamespace(state=TrialState.COMPLETE, reason=None),
    ]
    assert _reason_counts(trials) == {"fs_hz below limit": 2, "params above limit": 1}
