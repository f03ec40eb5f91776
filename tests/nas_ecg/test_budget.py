"""ECG domain constraints (nas_ecg.budget) and target files, against hand-computed budgets.

Every expected number below is worked out by hand in the comment above it from
the constants of the target files (plugins/nas_ecg/targets/*.toml).
"""

from __future__ import annotations

import doctest
import math
import subprocess
import sys
from pathlib import Path

import pytest

from nas_core.constraints import Constraint
from nas_core.errors import ConfigError
from nas_core.hardware import estimate_latency_energy, load_target
from nas_ecg import budget as B
from nas_ecg.budget import (
    BANDS,
    CR2032_PULSE_DERATING,
    DEFAULT_BLE_EVENTS_PER_HOUR,
    DEFAULT_HEART_RATE_BPM,
    DEFAULT_NYQUIST_K,
    PATCH_SCENARIOS_DAYS,
    EnergyBudget,
    coin_cell_usable_fraction,
    ecg_constraints,
    ecg_static_metrics,
    ecg_target_names,
    load_ecg_target,
    min_sampling_rate,
    nyquist_violation,
    rate_violation,
    require_band_supported,
    require_supported_rate,
    scenario_budgets,
    supported_rates,
    target_peak_current_a,
)

REPO = Path(__file__).resolve().parents[2]
TARGETS = REPO / "plugins" / "nas_ecg" / "targets"
NAMES = ("apollo4", "max78000", "nrf52840", "stm32l4")
# MAX30003 ECG output rates (datasheet CNFG_ECG.ECG_RATE x CNFG_GEN.FMSTR; 199.8 sps left out)
MAX30003_RATES = (125.0, 128.0, 200.0, 250.0, 256.0, 500.0, 512.0)
# the base model without the radio and the coin-cell derating (the figures before they were added)
BASE = {"ble_events_per_hour": 0, "usable_fraction": 1.0}

# a network of 1 M MACs in 10 MAC layers with 30 k parameters, 20,000 B of peak
# activations and 30,000 B of int8 weights, a 32,000 B TFLM arena and a 50,000 B
# .tflite (the shape of CostReport.as_metrics())
COSTS = {
    "params": 30_000.0,
    "macs": 1_000_000.0,
    "layers": 10.0,
    "peak_act_bytes": 20_000.0,
    "flash_fp32_bytes": 120_000.0,
    "flash_int8_bytes": 30_000.0,
    "arena_int8_bytes": 32_000.0,
    "tflite_int8_bytes": 50_000.0,
}


def rel(x: float) -> object:
    return pytest.approx(x, rel=1e-9)


@pytest.fixture(scope="module")
def nrf():
    return load_target(TARGETS / "nrf52840.toml")


@pytest.fixture(scope="module")
def max78k():
    return load_target(TARGETS / "max78000.toml")


def violations(cons: list[Constraint], metrics: dict[str, float]) -> list[str]:
    return [v for c in cons if (v := c.violation(metrics)) is not None]


# --------------------------------------------------------------------------------------
# Nyquist


@pytest.mark.parametrize(
    ("band", "k", "limit"),
    [
        # monitoring 0.67-40 Hz: 2.5 x 40 = 100, 2 x 40 = 80, 3 x 40 = 120, 2.2 x 40 = 88
        ("monitoring", 2.5, 100.0),
        ("monitoring", 2.0, 80.0),
        ("monitoring", 3.0, 120.0),
        ("monitoring", 2.2, 88.0),
        # diagnostic 0.05-150 Hz: 2.5 x 150 = 375, 2 x 150 = 300, 3 x 150 = 450
        ("diagnostic", 2.5, 375.0),
        ("diagnostic", 2.0, 300.0),
        ("diagnostic", 3.0, 450.0),
        # an explicit band: paediatric up to 250 Hz, 2.5 x 250 = 625
        ((0.05, 250.0), 2.5, 625.0),
    ],
)
def test_min_sampling_rate_is_k_times_upper_edge(band, k, limit):
    assert min_sampling_rate(band, k) == limit
    assert nyquist_violation(limit, band, k) is None  # the limit itself is admissible
    reason = nyquist_violation(limit - 1, band, k)
    assert reason is not None and f"{limit:g} Hz" in reason and f"fs_hz = {limit - 1:g}" in reason


def test_default_k_and_bands():
    assert DEFAULT_NYQUIST_K == 2.5
    assert BANDS == {"monitoring": (0.67, 40.0), "diagnostic": (0.05, 150.0)}
    assert min_sampling_rate("monitoring") == 100.0
    assert B.MIN_NYQUIST_K == 2.0


def test_nyquist_reason_names_rate_band_and_limit():
    assert nyquist_violation(90, "monitoring") == (
        "fs_hz = 90 Hz is below the Nyquist limit 100 Hz = 2.5 x 40 Hz, "
        "the upper edge of the monitoring band (0.67-40 Hz)"
    )
    # MIT-BIH's own 360 Hz is below the diagnostic limit of 375 Hz
    assert "375 Hz" in nyquist_violation(360, "diagnostic")


def test_nyquist_constraint_reads_clearly(nrf):
    (fs_con,) = [c for c in ecg_constraints(nrf, "monitoring", 2.5) if c.metric == "fs_hz"]
    assert (fs_con.op, fs_con.value) == (">=", 100.0)
    assert fs_con.violation({"fs_hz": 90.0}) == "fs_hz = 90 violates fs_hz >= 100 (Nyquist: 2.5 x 40 Hz monitoring band)"
    assert fs_con.violation({"fs_hz": 100.0}) is None
    (diag,) = [c for c in ecg_constraints(nrf, "diagnostic", 2.0) if c.metric == "fs_hz"]
    assert diag.value == 300.0 and diag.violation({"fs_hz": 250.0}).endswith("(Nyquist: 2 x 150 Hz diagnostic band)")


def test_band_supported_by_source_rate():
    assert require_band_supported("monitoring", 360.0) == 100.0
    # diagnostic needs 375 Hz > 360 Hz of MIT-BIH: never upsampled, so rejected
    with pytest.raises(ConfigError, match=r"375.*360 Hz"):
        require_band_supported("diagnostic", 360.0)
    assert require_band_supported("diagnostic", 360.0, k=2.0) == 300.0


@pytest.mark.parametrize("bad", ["ambulatory", "Monitoring", ""])
def test_unknown_band_is_named(bad):
    with pytest.raises(ConfigError, match=repr(bad)):
        min_sampling_rate(bad)


@pytest.mark.parametrize("bad", [(40.0, 0.67), (-1.0, 40.0), (0.5,), "x", 40.0])
def test_malformed_band(bad):
    with pytest.raises(ConfigError):
        min_sampling_rate(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("k", [1.9, 1.0, 0.0, -2.5])
def test_k_below_two_is_rejected_with_its_value(k):
    with pytest.raises(ConfigError, match=rf"k = {k:g} is below 2"):
        min_sampling_rate("monitoring", k)
    with pytest.raises(ConfigError, match=rf"k = {k:g}"):
        ecg_constraints(load_ecg_target("nrf52840"), "monitoring", k)


@pytest.mark.parametrize("k", [math.nan, math.inf, "2.5", True])
def test_k_not_a_number(k):
    with pytest.raises(ConfigError, match="Nyquist factor k"):
        min_sampling_rate("monitoring", k)


@pytest.mark.parametrize("fs", [0, -100, math.nan, "100"])
def test_bad_sampling_rate(fs):
    with pytest.raises(ConfigError, match="fs_hz"):
        nyquist_violation(fs, "monitoring")


# --------------------------------------------------------------------------------------
# energy budget


def test_round_number_budget():
    # battery 100 mAh x 3.6 x 3 V = 1080 J; one day = 86,400 s
    # AFE 100 uW x 86,400 s = 8.64 J; no sleep current
    # ADC 1e-7 J x 100 samples/s x 86,400 s = 0.864 J
    # left 1080 - 8.64 - 0.864 = 1070.496 J; 60 bpm -> 86,400 beats
    # per beat 1070.496 / 86,400 = 12.39 mJ = 0.01239 J
    b = EnergyBudget(
        battery_mah=100,
        battery_voltage_v=3,
        afe_power_w=100e-6,
        adc_energy_per_sample_j=1e-7,
        sleep_current_a=0,
        supply_voltage_v=3,
        days=1,
        heart_rate_bpm=60,
    )
    assert b.battery_energy_j == rel(1080.0)
    assert b.per_beat_budget_j(100) == rel(1070.496 / 86_400)
    assert b.per_beat_budget_j(100) == rel(0.01239)
    # doubling fs doubles the ADC energy: (1080 - 8.64 - 1.728) / 86,400
    assert b.per_beat_budget_j(200) == rel((1080 - 8.64 - 1.728) / 86_400)


def test_nrf52840_per_beat_budget_by_hand(nrf):
    # battery: 235 mAh x 3.6 x 3 V                     = 2538 J
    # mission: 7 d x 86,400 s                          = 604,800 s
    # AFE:     85 uW x 604,800 s                       = 51.408 J
    # sleep:   3 uA x 3 V x 604,800 s                  = 5.4432 J
    # energy per cycle: 3.3 mA x 3 V / 64 MHz          = 1.546875e-10 J
    # per sample: ADC 50 nJ + DSP 200 cyc x 1.546875e-10 J = 50 + 30.9375 = 80.9375 nJ
    # beats: 80 bpm / 60 x 604,800 s                   = 806,400
    # (the base model: radio off, cell not derated; the full model is tested below)
    b = EnergyBudget.from_target(nrf, days=7, **BASE)
    assert b.heart_rate_bpm == DEFAULT_HEART_RATE_BPM == 80.0
    assert b.radio_power_w == 0.0 and b.energy_breakdown_j(100)["radio"] == 0.0
    assert b.battery_energy_j == rel(2538.0)
    assert b.dsp_energy_per_sample_j == rel(30.9375e-9)
    br = b.energy_breakdown_j(100)
    assert br["afe"] == rel(51.408)
    assert br["sleep"] == rel(5.4432)
    assert br["beats"] == rel(806_400)
    # 100 Hz: per-sample 80.9375 nJ x 100 x 604,800 = 4.8951 J
    #         left 2538 - 51.408 - 5.4432 - 4.8951 = 2476.2537 J -> / 806,400 = 3070.75 uJ
    assert br["adc"] + br["dsp"] == rel(4.8951)
    assert b.per_beat_budget_j(100) == rel(2476.2537 / 806_400)
    assert b.per_beat_budget_j(100) * 1e6 == pytest.approx(3070.75, abs=0.01)
    # 360 Hz: per-sample 80.9375 nJ x 360 x 604,800 = 17.62236 J
    #         left 2538 - 51.408 - 5.4432 - 17.62236 = 2463.52644 J -> 3054.97 uJ
    assert b.per_beat_budget_j(360) == rel(2463.52644 / 806_400)
    # the budget shrinks as fs grows (acquisition and DSP energy grow with it)
    rates = (100, 125, 180, 360)
    budgets = [b.per_beat_budget_j(fs) for fs in rates]
    assert budgets == sorted(budgets, reverse=True)
    assert b.infeasibility_reason(360) is None


def test_battery_days_is_the_inverse_of_the_budget(nrf):
    b = EnergyBudget.from_target(nrf, days=7)
    for fs in (100, 125, 180, 360):
        assert b.battery_days(b.per_beat_budget_j(fs), fs) == rel(7.0)
    b14 = EnergyBudget.from_target(nrf, days=14, heart_rate_bpm=120)
    assert b14.battery_days(b14.per_beat_budget_j(250), 250) == rel(14.0)
    # base model, no inference at all: 2538 J / (85 + 9 + 80.9375 nJ x 100) uW / 86,400 s
    #   = 2538 / 102.09375e-6 / 86,400 = 287.73 days
    base = EnergyBudget.from_target(nrf, days=7, **BASE)
    assert base.battery_days(0.0, 100) == rel(2538 / 102.09375e-6 / 86_400)
    # full model: 2099.2886 J (derated, see the 14-day test) / (102.09375 + 18 radio) uW / 86,400 s = 202.3 days
    assert b.battery_days(0.0, 100) == rel(2538 * (0.9 - 0.15 * 3.4 / 7) / 120.09375e-6 / 86_400)


def test_worst_case_heart_rate_shrinks_the_budget(nrf):
    # 200 bpm instead of 80: 2.5x the beats, so the same energy left buys 1/2.5 per beat
    typical = EnergyBudget.from_target(nrf)
    worst = EnergyBudget.from_target(nrf, heart_rate_bpm=B.WORST_CASE_HEART_RATE_BPM)
    assert worst.per_beat_budget_j(100) == rel(typical.per_beat_budget_j(100) * 80 / 200)


def test_infeasible_budget_is_reported(nrf):
    # without inference the (derated) cell lasts 202.3 days at 100 Hz: a 300-day mission is infeasible
    b = EnergyBudget.from_target(nrf, days=300)
    assert b.per_beat_budget_j(100) < 0
    reason = b.infeasibility_reason(100)
    assert reason is not None and "fs_hz = 100" in reason and "300 days" in reason and "2099 J" in reason
    # the radio's share is named: 18 uW x 300 x 86,400 s = 466.56 J
    assert "BLE radio (466.6 J)" in reason and "ble_events_per_hour" in reason
    m = ecg_static_metrics(COSTS, nrf, 100, b)
    msgs = violations(ecg_constraints(nrf, "monitoring", 2.5, b), m)
    assert msgs[0].startswith("energy_budget_uj_per_beat = -")
    assert "leave no energy for inference" in msgs[0]
    assert any(msg.startswith("energy_margin_uj = -") for msg in msgs)


def test_overrides_and_usable_fraction(nrf):
    # a further load of 20 uW for 7 days takes 20e-6 x 604,800 = 12.096 J more
    base = EnergyBudget.from_target(nrf)
    other = EnergyBudget.from_target(nrf, other_power_w=20e-6)
    assert (base.per_beat_budget_j(100) - other.per_beat_budget_j(100)) * 806_400 == rel(12.096)
    # 90 % usable capacity given explicitly: 2538 x 0.9 = 2284.2 J
    assert EnergyBudget.from_target(nrf, usable_fraction=0.9).battery_energy_j == rel(2284.2)
    # 220 mAh (low end of the CR2032 range), not derated: 220 x 3.6 x 3 = 2376 J
    assert EnergyBudget.from_target(nrf, battery_mah=220.0, usable_fraction=1.0).battery_energy_j == rel(2376.0)
    # ... and derated for the nRF52840's 6.4 mA radio pulses: 2376 x 0.827143 = 1965.29 J
    assert EnergyBudget.from_target(nrf, battery_mah=220.0).battery_energy_j == rel(2376 * (0.9 - 0.15 * 3.4 / 7))


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("days", 0, "days must be > 0"),
        ("days", -7, "days must be > 0"),
        ("days", math.nan, "days"),
        ("heart_rate_bpm", 1.2, "heart_rate_bpm = 1.2"),
        ("heart_rate_bpm", 400, "heart_rate_bpm = 400"),
        ("usable_fraction", 1.5, "usable_fraction"),
        ("afe_power_w", -1e-6, "afe_power_w must be >= 0"),
        ("battery_mah", 0, "battery_mah must be > 0"),
        ("ble_event_energy_j", -1e-6, "ble_event_energy_j must be >= 0"),
        ("usable_fraction", 0.0, "usable_fraction must be in"),
    ],
)
def test_bad_budget_values_are_named(nrf, field, value, match):
    kwargs = {"days": 7, "heart_rate_bpm": 80, field: value}
    days, hr = kwargs.pop("days"), kwargs.pop("heart_rate_bpm")
    with pytest.raises(ConfigError, match=match):
        EnergyBudget.from_target(nrf, days=days, heart_rate_bpm=hr, **kwargs)


def test_unknown_override_is_named(nrf):
    with pytest.raises(ConfigError, match="'radio_w'"):
        EnergyBudget.from_target(nrf, radio_w=1e-5)


def _target_without(tmp_path: Path, key: str) -> Path:
    text = (TARGETS / "nrf52840.toml").read_text(encoding="utf-8")
    kept = [line for line in text.splitlines() if not line.startswith(f"{key} =")]
    assert len(kept) == len(text.splitlines()) - 1, key
    path = tmp_path / f"no_{key}.toml"
    path.write_text("\n".join(kept) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "key", ["afe_power_w", "adc_energy_per_sample_j", "dsp_cycles_per_sample", "ble_event_energy_j", "radio_peak_current_a"]
)
def test_missing_budget_constant_is_named(tmp_path, key):
    target = load_target(_target_without(tmp_path, key))
    with pytest.raises(ConfigError, match=rf"'nrf52840' lacks extra\.{key}"):
        EnergyBudget.from_target(target)


def test_missing_beat_overhead_is_named(tmp_path, nrf):
    target = load_target(_target_without(tmp_path, "beat_overhead_cycles"))
    with pytest.raises(ConfigError, match=r"extra\.beat_overhead_cycles"):
        ecg_static_metrics(COSTS, target, 125, EnergyBudget.from_target(nrf))


def test_missing_sleep_current_is_named(tmp_path):
    target = load_target(_target_without(tmp_path, "sleep_current_a"))
    with pytest.raises(ConfigError, match="sleep_current_a"):
        EnergyBudget.from_target(target)


# --------------------------------------------------------------------------------------
# radio, pulse derating and the 7/14/30-day scenarios


def test_14_day_budget_binds_by_hand(nrf):
    # CR2032 + nRF52840, monitoring band at fs = 125 Hz, 80 bpm, BLE notification once a second.
    # peak battery current: max(CPU 3.3 mA, radio TX 0 dBm 6.4 mA)   = 6.4 mA
    # derating between (3 mA, 0.90) and (10 mA, 0.75):
    #   0.90 - 0.15 x (6.4 - 3) / (10 - 3) = 0.90 - 0.0728571        = 0.8271429
    # battery: 2538 J x 0.8271429 = 2284.2 - 184.9114                = 2099.2886 J
    # 14 days: 14 x 86,400                                           = 1,209,600 s
    # AFE    85 uW x 1,209,600 s                                      = 102.816 J
    # sleep  3 uA x 3 V = 9 uW x 1,209,600 s                          = 10.8864 J
    # radio  18 uJ x 3600 events/h / 3600 s = 18 uW x 1,209,600 s     = 21.7728 J
    # per sample 80.9375 nJ x 125 /s = 10.1171875 uW x 1,209,600 s    = 12.23775 J
    # loads 102.816 + 10.8864 + 21.7728 + 12.23775                    = 147.71295 J
    # left 2099.2886 - 147.71295                                      = 1951.5756 J
    # beats 80 / 60 x 1,209,600                                       = 1,612,800
    # budget 1951.5756 J / 1,612,800                                  = 1210.05 uJ per beat
    # 7 days: loads 73.856475 J, left 2025.4321 J / 806,400 beats     = 2511.70 uJ per beat
    b14 = EnergyBudget.from_target(nrf, days=14)
    assert b14.ble_events_per_hour == DEFAULT_BLE_EVENTS_PER_HOUR == 3600.0
    assert b14.ble_event_energy_j == rel(18e-6) and b14.radio_power_w == rel(18e-6)
    assert b14.usable_fraction == pytest.approx(0.8271429, abs=1e-7)
    assert b14.battery_energy_j == pytest.approx(2099.2886, abs=1e-4)
    br = b14.energy_breakdown_j(125)
    assert (br["afe"], br["sleep"], br["radio"]) == (rel(102.816), rel(10.8864), rel(21.7728))
    assert br["adc"] + br["dsp"] == rel(12.23775)
    assert br["left_for_inference"] == pytest.approx(1951.5756, abs=1e-4)
    assert b14.per_beat_budget_j(125) * 1e6 == pytest.approx(1210.05, abs=0.01)
    b7 = EnergyBudget.from_target(nrf, days=7)
    assert b7.per_beat_budget_j(125) * 1e6 == pytest.approx(2511.70, abs=0.01)

    # A network of 1.5 M MACs in 10 layers:
    #   cycles 7 x 1.5e6 + 25,000 x 10 = 10.75 M -> x 1.546875e-10 J = 1662.89 uJ
    #   + beat overhead 5,000 cycles = 0.7734 uJ                    -> 1663.66 uJ per beat
    # 1663.66 > 1210.05 (rejected at 14 days); 1663.66 < 2511.70 (accepted at 7 days).
    # Its battery life: P = 85 + 9 + 18 + 10.1171875 + 80/60 x 1663.664 uW = 2340.34 uW
    #   -> 2099.2886 J / 2340.34e-6 W / 86,400 s = 10.38 days
    costs = {**COSTS, "macs": 1.5e6}
    m14 = ecg_static_metrics(costs, nrf, 125, b14)
    m7 = ecg_static_metrics(costs, nrf, 125, b7)
    assert m14["energy_uj_per_beat"] == pytest.approx(1663.66, abs=0.01)
    assert m14["battery_days"] == pytest.approx(10.38, abs=0.01)
    cons14 = ecg_constraints(nrf, "monitoring", 2.5, b14)
    cons7 = ecg_constraints(nrf, "monitoring", 2.5, b7)
    (msg,) = violations(cons14, m14)
    assert msg.startswith("energy_margin_uj = -453.6") and "for 14 d at 80 bpm, 3600 BLE events/h" in msg
    assert violations(cons7, m7) == []
    assert 7.0 < m14["battery_days"] < 14.0


def test_scenarios_are_7_14_30_days(nrf):
    # 30 days: 2,592,000 s; loads 220.32 + 23.328 + 46.656 + 26.22375 = 316.52775 J
    #   left 2099.2886 - 316.52775 = 1782.7608 J / 3,456,000 beats = 515.85 uJ per beat
    assert PATCH_SCENARIOS_DAYS == (7.0, 14.0, 30.0)
    table = scenario_budgets(nrf, 125)
    assert list(table) == [7.0, 14.0, 30.0]
    assert [round(v * 1e6, 2) for v in table.values()] == [2511.70, 1210.05, 515.85]
    # keyword arguments reach from_target: the base model at 7 days is the 3069.23 uJ of before
    assert scenario_budgets(nrf, 125, days=(7,), **BASE)[7.0] * 1e6 == pytest.approx(3069.23, abs=0.01)
    with pytest.raises(ConfigError, match="non-empty sequence"):
        scenario_budgets(nrf, 125, days=14)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="days must be > 0"):
        scenario_budgets(nrf, 125, days=(7, 0))


@pytest.mark.parametrize(("peak_a", "fraction"), CR2032_PULSE_DERATING)
def test_derating_at_its_breakpoints(peak_a, fraction):
    assert coin_cell_usable_fraction(peak_a) == pytest.approx(fraction, abs=1e-12)


def test_derating_curve():
    # the cited points: rated at 0.2 mA, 3 mA max continuous 0.90 (ESTIMATE), Maxell 10 mA pulses -25 %,
    # SWRA349 15 mA mid-range 0.75 and 30 mA 9 % lower: 0.75 x 0.91 = 0.6825
    assert [p for p, _ in CR2032_PULSE_DERATING] == [0.2e-3, 3e-3, 10e-3, 15e-3, 30e-3]
    assert [f for _, f in CR2032_PULSE_DERATING] == [1.0, 0.90, 0.75, 0.75, 0.6825]
    # between breakpoints: 6.5 mA is halfway from 3 to 10 mA -> (0.90 + 0.75) / 2 = 0.825
    assert coin_cell_usable_fraction(6.5e-3) == pytest.approx(0.825)
    # 1.6 mA is halfway from 0.2 to 3 mA -> 0.95; 22.5 mA halfway from 15 to 30 mA -> 0.71625
    assert coin_cell_usable_fraction(1.6e-3) == pytest.approx(0.95)
    assert coin_cell_usable_fraction(22.5e-3) == pytest.approx(0.71625)
    # held constant outside the table
    assert coin_cell_usable_fraction(0.0) == coin_cell_usable_fraction(0.1e-3) == 1.0
    assert coin_cell_usable_fraction(50e-3) == 0.6825
    grid = [i * 0.5e-3 for i in range(80)]
    values = [coin_cell_usable_fraction(i) for i in grid]
    assert values == sorted(values, reverse=True)  # never more capacity for a larger pulse
    for bad in (-1e-3, math.nan, "3 mA"):
        with pytest.raises(ConfigError, match="peak_current_a"):
            coin_cell_usable_fraction(bad)  # type: ignore[arg-type]


def test_peak_current_of_each_target(nrf, max78k):
    # nRF52840: CPU 3.3 mA, radio TX 6.4 mA; STM32L475: CPU 10 mA; MAX78000 accelerator
    # 2.5e-10 J x 50 MHz / 3 V = 4.167 mA, below the companion radio's 6.4 mA
    assert target_peak_current_a(nrf) == 6.4e-3
    assert target_peak_current_a(nrf, radio=False) == 3.3e-3
    assert target_peak_current_a(load_ecg_target("stm32l4")) == 10e-3
    assert target_peak_current_a(max78k, radio=False) == rel(2.5e-10 * 50e6 / 3.0)
    assert target_peak_current_a(max78k) == 6.4e-3
    # STM32L475's 10 mA -> 0.75; radio off on the nRF52840: 3.3 mA -> 0.90 - 0.15 x 0.3 / 7 = 0.893571
    assert EnergyBudget.from_target(load_ecg_target("stm32l4")).usable_fraction == rel(0.75)
    off = EnergyBudget.from_target(nrf, ble_events_per_hour=0)
    assert off.usable_fraction == rel(0.9 - 0.15 * 0.3 / 7) and off.radio_power_w == 0.0
    assert EnergyBudget.from_target(nrf, peak_current_a=10e-3).usable_fraction == rel(0.75)
    assert EnergyBudget.from_target(nrf, usable_fraction=0.5).usable_fraction == 0.5


def test_radio_events_per_hour(nrf):
    # one summary a minute: 18 uJ x 60 / 3600 s = 0.3 uW; over 14 days 0.3 uW x 1,209,600 s = 0.36288 J,
    #   instead of 21.7728 J: (21.7728 - 0.36288) J / 1,612,800 beats = 13.275 uJ more per beat
    once_a_second = EnergyBudget.from_target(nrf, days=14)
    once_a_minute = EnergyBudget.from_target(nrf, days=14, ble_events_per_hour=60)
    assert once_a_minute.radio_power_w == rel(0.3e-6)
    gain = once_a_minute.per_beat_budget_j(125) - once_a_second.per_beat_budget_j(125)
    assert gain == rel((21.7728 - 0.36288) / 1_612_800)
    # the radio term is linear in events per hour
    twice = EnergyBudget.from_target(nrf, days=14, ble_events_per_hour=7200)
    assert twice.energy_breakdown_j(125)["radio"] == rel(2 * 21.7728)
    assert "3600 BLE events/h" in once_a_second.describe()
    assert "BLE" not in EnergyBudget.from_target(nrf, ble_events_per_hour=0).describe()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"days": 0}, "days must be > 0"),
        ({"days": -14}, "days must be > 0"),
        ({"days": math.inf}, "days must be a finite number"),
        ({"ble_events_per_hour": -1}, "ble_events_per_hour must be >= 0"),
        ({"ble_events_per_hour": 1e6}, "exceeds 480000"),
        ({"ble_events_per_hour": "3600"}, "ble_events_per_hour must be a finite number"),
        ({"peak_current_a": -0.001}, "peak_current_a must be >= 0"),
        ({"peak_current_a": 0.01, "usable_fraction": 0.8}, "not both"),
        ({"days": 7, "ble_event_energy_j": -1e-6}, "ble_event_energy_j must be >= 0"),
    ],
)
def test_bad_scenario_inputs_are_config_errors(nrf, kwargs, match):
    with pytest.raises(ConfigError, match=match) as info:
        EnergyBudget.from_target(nrf, **kwargs)
    assert "\n" not in str(info.value)  # one line


# --------------------------------------------------------------------------------------
# front-end output rates


def test_supported_rates_of_the_targets(nrf):
    assert supported_rates(nrf) == MAX30003_RATES
    for fs in MAX30003_RATES:
        assert rate_violation(fs, nrf) is None
        assert require_supported_rate(fs, nrf) == fs
    assert rate_violation(250.0 + 1e-9, nrf) is None  # float noise from a resampling ratio


@pytest.mark.parametrize("fs", [281, 100, 360, 199.8, 127])
def test_rate_violation_names_rate_and_front_end(nrf, fs):
    assert rate_violation(fs, nrf) == (
        f"fs_hz = {fs:g} Hz is not an output rate of the MAX30003 front end (125, 128, 200, 250, 256, 500, 512 sps)"
    )


def test_bad_user_rate_is_a_config_error(nrf):
    with pytest.raises(ConfigError, match=r"fs_hz = 281 Hz is not an output rate .* choose one of those rates"):
        require_supported_rate(281, nrf)
    for bad in (0, -125, math.nan, "125"):
        with pytest.raises(ConfigError, match="fs_hz"):
            rate_violation(bad, nrf)


def test_target_without_rates_accepts_any_rate(tmp_path):
    text = (TARGETS / "nrf52840.toml").read_text(encoding="utf-8")
    kept = "\n".join(line for line in text.splitlines() if not line.startswith("afe_rate_"))
    path = tmp_path / "any_rate.toml"
    path.write_text(kept + "\n", encoding="utf-8")
    t = load_target(path)
    assert supported_rates(t) == ()
    assert rate_violation(281, t) is None and require_supported_rate(281, t) == 281.0
    # a non-positive listed rate is an error in the file
    path.write_text(kept + "\nafe_rate_1_hz = 0\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"extra\.afe_rate_1_hz must be a positive rate"):
        supported_rates(load_target(path))


# --------------------------------------------------------------------------------------
# per-candidate metrics


def test_static_metrics_nrf52840_by_hand(nrf):
    # cycles  = 7.0 x 1,000,000 + 25,000 x 10            = 7,250,000
    # latency = 7.25e6 / 64e6 s                          = 113.28125 ms
    # energy  = 7.25e6 x 1.546875e-10 J                  = 1121.484375 uJ
    # beat overhead = 5,000 cycles x 1.546875e-10 J      = 0.7734375 uJ
    # per beat = 1121.484375 + 0.7734375                 = 1122.2578125 uJ
    # budget at 125 Hz: per-sample 80.9375 nJ x 125 x 604,800 = 6.118875 J
    #   left 2538 - 51.408 - 5.4432 - 6.118875 = 2475.029925 J / 806,400 = 3069.2335 uJ
    # battery days: P = 85 + 9 + 10.1171875 uW + (80/60) x 1122.2578125 uJ/s
    #   = 104.1171875 + 1496.34375 = 1600.4609375 uW -> 2538 J / P / 86,400 = 18.354 d
    # (base model: radio off, cell not derated)
    b = EnergyBudget.from_target(nrf, **BASE)
    m = ecg_static_metrics(COSTS, nrf, 125, b)
    assert m["fs_hz"] == 125.0
    assert m["latency_ms"] == rel(113.28125)
    assert m["inference_energy_uj"] == rel(1121.484375)
    assert m["beat_overhead_uj"] == rel(0.7734375)
    assert m["energy_uj_per_beat"] == rel(1122.2578125)
    assert m["energy_budget_uj_per_beat"] == rel(2475.029925 / 806_400 * 1e6)
    assert m["energy_margin_uj"] == rel(2475.029925 / 806_400 * 1e6 - 1122.2578125)
    assert m["avg_power_uw"] == rel(1600.4609375)
    assert m["battery_days"] == rel(2538 / 1600.4609375e-6 / 86_400)
    assert m["battery_days"] == pytest.approx(18.354, abs=1e-3)
    # memory: the TFLM arena estimate 32,000 B / 1024 = 31.25 KiB, the .tflite 50,000 B / 1024 = 48.83 KiB
    assert m["peak_ram_kb"] == rel(32_000 / 1024)
    assert m["flash_kb_int8"] == rel(50_000 / 1024)
    assert (m["weights"], m["layers"]) == (30_000.0, 10.0)
    assert "weight_memory_fraction" not in m  # the nRF52840 has no weight-memory limit
    # the inference part agrees with the core's cost model
    lat, e_uj = estimate_latency_energy(1_000_000, 10, nrf)
    assert (m["latency_ms"], m["inference_energy_uj"]) == (rel(lat), rel(e_uj))
    assert violations(ecg_constraints(nrf, "monitoring", 2.5, b), m) == []


def test_static_metrics_max78000_by_hand(max78k):
    # accelerator: cycles = 1,000,000 / 32 + 500 x 10   = 36,250
    # latency = 36,250 / 50 MHz                          = 0.725 ms
    # energy  = 36,250 x 2.5e-10 J                       = 9.0625 uJ
    # Arm core per beat: (20,000 + 1.0 x 30,000 weights reloaded) x 3e-11 J = 1.5 uJ
    # per beat = 10.5625 uJ; weights 30,000 / 442,368 = 6.78 % of the weight memory
    b = EnergyBudget.from_target(max78k)
    m = ecg_static_metrics(COSTS, max78k, 100, b)
    assert m["latency_ms"] == rel(0.725)
    assert m["inference_energy_uj"] == rel(9.0625)
    assert m["beat_overhead_uj"] == rel(1.5)
    assert m["energy_uj_per_beat"] == rel(10.5625)
    assert m["weight_memory_fraction"] == rel(30_000 / 442_368)
    # MAX78000 DSP runs on the Arm core: 200 cycles x 3e-11 J = 6 nJ per sample
    assert b.dsp_energy_per_sample_j == rel(6e-9)
    assert b.supply_voltage_v == 3.0


@pytest.mark.parametrize("missing", ["macs", "layers", "params", "peak_act_bytes", "flash_int8_bytes",
                                     "arena_int8_bytes", "tflite_int8_bytes"])
def test_missing_cost_metric_is_named(nrf, missing):
    costs = {k: v for k, v in COSTS.items() if k != missing}
    with pytest.raises(ConfigError, match=f"cost metrics lack '{missing}'"):
        ecg_static_metrics(costs, nrf, 125, EnergyBudget.from_target(nrf))


def test_energy_constraint_binds_for_large_networks(nrf):
    # budget at 125 Hz for 7 days (full model, worked out in test_14_day_budget_binds_by_hand)
    #   = 2025.4321 J / 806,400 = 2511.69 uJ; minus 0.7734 uJ overhead leaves
    #   2510.92 uJ / 1.546875e-10 J = 16.232 M cycles; with 10 layers (250 k cycles)
    #   (16.232e6 - 250,000) / 7 = 2.283 M MACs is the largest network that fits 7 days
    b = EnergyBudget.from_target(nrf)
    cons = ecg_constraints(nrf, "monitoring", 2.5, b, realtime_heart_rate_bpm=None)
    fits = ecg_static_metrics({**COSTS, "macs": 2.27e6}, nrf, 125, b)
    over = ecg_static_metrics({**COSTS, "macs": 2.30e6}, nrf, 125, b)
    assert violations(cons, fits) == []
    (msg,) = violations(cons, over)
    assert msg.startswith("energy_margin_uj = -") and "violates energy_margin_uj >= 0" in msg
    assert "235 mAh x 3 V battery (83% usable) for 7 d at 80 bpm, 3600 BLE events/h" in msg
    assert over["battery_days"] < 7.0 < fits["battery_days"]


def test_realtime_constraint(nrf):
    # 60,000 / 200 bpm = 300 ms = 19.2 M cycles at 64 MHz; 3 M MACs x 7 + 250 k = 21.25 M cycles = 332 ms
    cons = ecg_constraints(nrf, "monitoring")
    (rt,) = [c for c in cons if c.metric == "latency_ms"]
    assert (rt.op, rt.value) == ("<=", 300.0)
    m = ecg_static_metrics({**COSTS, "macs": 3e6}, nrf, 125, EnergyBudget.from_target(nrf))
    assert m["latency_ms"] == rel(21.25e6 / 64e6 * 1e3)
    assert rt.violation(m) == (
        "latency_ms = 332.031 violates latency_ms <= 300 (real time: inference within the 300 ms RR interval at 200 bpm)"
    )
    assert not [c for c in ecg_constraints(nrf, realtime_heart_rate_bpm=None) if c.metric == "latency_ms"]


# --------------------------------------------------------------------------------------
# memory


def test_memory_constraints_nrf52840(nrf):
    # SRAM 262,144 B - 32,768 B reserved = 229,376 B for the TFLM arena
    # flash 1,048,576 B - 262,144 B reserved = 786,432 B for the .tflite
    cons = {c.metric: c for c in ecg_constraints(nrf, "monitoring")}
    assert (cons["arena_int8_bytes"].op, cons["arena_int8_bytes"].value) == ("<=", 229_376)
    assert (cons["tflite_int8_bytes"].op, cons["tflite_int8_bytes"].value) == ("<=", 786_432)
    # the deployment estimates bind, not the ideal activation peak or one byte per parameter
    assert "peak_act_bytes" not in cons and "flash_int8_bytes" not in cons
    assert "weights" not in cons and "layers" not in cons
    assert cons["arena_int8_bytes"].violation({"arena_int8_bytes": 229_376}) is None
    assert cons["arena_int8_bytes"].violation({"arena_int8_bytes": 229_377}) == (
        "arena_int8_bytes = 229377 violates arena_int8_bytes <= 229376 "
        "(estimated TFLM int8 tensor arena within nrf52840 SRAM: 262144 B - 32768 B reserved)"
    )
    assert cons["tflite_int8_bytes"].violation({"tflite_int8_bytes": 786_432}) is None
    assert "786432" in cons["tflite_int8_bytes"].violation({"tflite_int8_bytes": 786_433})


def test_memory_metrics_report_the_deployment_estimates(nrf):
    m = ecg_static_metrics(COSTS, nrf, 125, EnergyBudget.from_target(nrf))
    assert m["peak_ram_kb"] == rel(32_000 / 1024) and m["flash_kb_int8"] == rel(50_000 / 1024)
    assert (m["arena_int8_bytes"], m["tflite_int8_bytes"]) == (32_000.0, 50_000.0)
    assert (m["peak_act_bytes"], m["flash_int8_bytes"]) == (20_000.0, 30_000.0)


def test_memory_constraints_stm32l4():
    # SRAM 131,072 - 16,384 = 114,688 B; flash 1,048,576 - 131,072 = 917,504 B
    cons = {c.metric: c for c in ecg_constraints(load_ecg_target("stm32l4"))}
    assert cons["arena_int8_bytes"].value == 114_688
    assert cons["tflite_int8_bytes"].value == 917_504


def test_max78000_weight_and_layer_limits(max78k):
    # weight memory 768 x 64 x 9 = 442,368 8-bit weights; at most 32 layers;
    # CNN data memory 16 x 32 KiB = 524,288 B (nothing reserved); flash 524,288 - 131,072 = 393,216 B
    assert max78k.max_weights == 768 * 64 * 9 == 442_368
    cons = {c.metric: c for c in ecg_constraints(max78k)}
    assert (cons["weights"].op, cons["weights"].value) == ("<=", 442_368)
    assert (cons["layers"].op, cons["layers"].value) == ("<=", 32.0)
    assert cons["arena_int8_bytes"].value == 524_288
    assert cons["tflite_int8_bytes"].value == 393_216
    b = EnergyBudget.from_target(max78k)
    full = ecg_static_metrics({**COSTS, "params": 442_368.0, "flash_int8_bytes": 300_000.0}, max78k, 100, b)
    assert full["weight_memory_fraction"] == 1.0
    assert cons["weights"].violation(full) is None
    over = ecg_static_metrics({**COSTS, "params": 442_369.0}, max78k, 100, b)
    assert cons["weights"].violation(over) == (
        "weights = 442369 violates weights <= 442368 "
        "(max78000 weight memory holds 442368 8-bit weights (parameters counted as weights))"
    )
    deep = ecg_static_metrics({**COSTS, "layers": 33.0}, max78k, 100, b)
    assert cons["layers"].violation(deep) == "layers = 33 violates layers <= 32 (max78000 runs at most 32 layers)"


def test_bad_reserve_is_named(tmp_path):
    text = (TARGETS / "nrf52840.toml").read_text(encoding="utf-8")
    path = tmp_path / "big_reserve.toml"
    path.write_text(text.replace("ram_reserved_bytes = 32_768", "ram_reserved_bytes = 300_000"), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"extra\.ram_reserved_bytes = 300000"):
        ecg_constraints(load_target(path))


# --------------------------------------------------------------------------------------
# target files


def test_target_names():
    assert ecg_target_names() == NAMES
    with pytest.raises(ConfigError, match="'nrf52832'"):
        load_ecg_target("nrf52832")


@pytest.mark.parametrize("name", NAMES)
def test_target_file_loads_with_plausible_constants(name):
    t = load_target(TARGETS / f"{name}.toml")
    assert t.name == name and t.description
    assert 1e6 <= t.clock_hz <= 500e6
    assert 64 * 1024 <= t.sram_bytes <= 4 * 1024 * 1024
    assert 256 * 1024 <= t.flash_bytes <= 4 * 1024 * 1024
    assert 0.001 <= t.cycles_per_mac <= 20
    assert 0 <= t.layer_overhead_cycles <= 100_000
    assert 1e-12 <= t.energy_per_cycle() <= 1e-9  # 1 pJ .. 1 nJ per cycle
    assert 1e-7 <= t.sleep_current_a <= 1e-4
    assert 220 <= t.battery_mah <= 235 and t.battery_voltage_v == 3.0  # CR2032
    for key in B.ECG_EXTRA_KEYS:
        assert key in t.extra, key
    assert 10e-6 <= t.extra["afe_power_w"] <= 1e-3
    assert 1e-9 <= t.extra["adc_energy_per_sample_j"] <= 1e-6
    assert 10 <= t.extra["dsp_cycles_per_sample"] <= 10_000
    assert 100 <= t.extra["beat_overhead_cycles"] <= 1_000_000
    assert 1e-6 <= t.extra["ble_event_energy_j"] <= 1e-4  # one BLE connection event: a few to tens of uJ
    assert 1e-3 <= t.extra["radio_peak_current_a"] <= 30e-3
    assert supported_rates(t) == MAX30003_RATES  # every ECG target has a MAX30003 front end
    assert len(t.sources) >= 3 and any("ESTIMATE" in s for s in t.sources)
    assert t == load_ecg_target(name)
    # 7 days, 80 bpm, monitoring band at 100 Hz, radio once a second, derated CR2032: 2.0-2.6 mJ per beat
    # (the base model without radio and derating left 2.5-3.2 mJ)
    assert 2.0e-3 <= EnergyBudget.from_target(t).per_beat_budget_j(100) <= 2.6e-3
    assert 2.5e-3 <= EnergyBudget.from_target(t, **BASE).per_beat_budget_j(100) <= 3.2e-3


def test_target_datasheet_values():
    nrf, stm, apollo, mx = (load_target(TARGETS / f"{n}.toml") for n in ("nrf52840", "stm32l4", "apollo4", "max78000"))
    assert (nrf.clock_hz, nrf.sram_bytes, nrf.flash_bytes) == (64e6, 256 * 1024, 1024 * 1024)
    assert nrf.energy_per_cycle() == rel(3.3e-3 * 3.0 / 64e6)
    assert (stm.clock_hz, stm.sram_bytes, stm.flash_bytes) == (80e6, 128 * 1024, 1024 * 1024)
    assert "STM32L475" in stm.description
    assert apollo.clock_hz == 192e6
    assert (mx.clock_hz, mx.sram_bytes, mx.max_weights, mx.extra["max_layers"]) == (50e6, 512 * 1024, 442_368, 32.0)
    assert mx.extra["mcu_energy_per_cycle_j"] < mx.energy_per_cycle()  # the control core, not the accelerator
    # the accelerator spends far less per MAC than the Cortex-M4 software model
    assert mx.cycles_per_mac * mx.energy_per_cycle() * 100 < nrf.cycles_per_mac * nrf.energy_per_cycle()


# --------------------------------------------------------------------------------------
# module hygiene


def test_budget_module_does_not_import_torch():
    # loads budget.py on its own (not through the nas_ecg package, whose __init__ may
    # import torch) and checks that neither it nor its nas_core imports pull torch in
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('ecg_budget_isolated', {str(REPO / 'plugins/nas_ecg/budget.py')!r})\n"
        "mod = importlib.util.module_from_spec(spec); sys.modules[spec.name] = mod; spec.loader.exec_module(mod)\n"
        "assert mod.min_sampling_rate('monitoring') == 100.0\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_docstring_examples_run():
    result = doctest.testmod(B, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted >= 5
