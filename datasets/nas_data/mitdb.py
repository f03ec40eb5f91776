"""MIT-BIH Arrhythmia Database: beats, RR features and the inter-patient split.

The data layer of the ECG plugin. It reads the 48 records of the MIT-BIH
Arrhythmia Database (Moody & Mark 2001) through :mod:`wfdb`, keeps every
annotated beat, labels it with the five AAMI EC57 classes and cuts one window
of the MLII lead around each annotated R peak, at any sampling rate up to the
database's 360 Hz. The lead is band-limited to a declared clinical band
(default the monitoring band 0.67-40 Hz, zero-phase Butterworth at 360 Hz)
before it is resampled, so a model at any rate sees that band and no more. Splits follow the inter-patient protocol of de Chazal et al.
(2004): DS1 for training and validation (whole records held out), DS2 for the
final test only, reachable through :meth:`MitBih.final_test_set` with an
explicit confirmation and logged at every access.

Example (needs the database; ``MITDB_DIR`` points at the folder with ``100.hea``)::

    from nas_data.mitdb import MitBih, FINAL_EVALUATION

    db = MitBih()                                  # data_dir from MITDB_DIR
    train, val = db.search_splits(180.0)           # DS1 only, band 0.67-40 Hz
    train.x.shape, train.rr.shape, train.y[:5]     # (n, 126), (n, 5), labels 0..4
    # once, at the very end of a project:
    test = db.final_test_set(180.0, confirm=FINAL_EVALUATION, purpose="model card v1")

See ``datasets/nas_data/README.md`` for the preprocessing, the RR features, the
cache and the literature behind each choice.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import numbers
import os
import re
import tempfile
import zipfile
from datetime import datetime, timezone
from fractions import Fraction
from pathlib import Path
from types import MappingProxyType
from typing import Iterable, Mapping, Sequence, Union

import numpy as np

from nas_core.errors import ConfigError

#: A record name: ``"101"`` or ``101``.
RecordName = Union[str, int]

__all__ = [
    "AAMI_CLASSES",
    "ACCESS_LOG_NAME",
    "BAND_FILTER",
    "BASELINE_WINDOWS_S",
    "BeatSet",
    "DEFAULT_BAND",
    "DEFAULT_VAL_RECORDS",
    "DEFAULT_WINDOW",
    "DS1",
    "DS2",
    "Ds2Access",
    "FINAL_EVALUATION",
    "LEAD",
    "LOCAL_RR_BEATS",
    "MONITORING_BAND",
    "MitBih",
    "NATIVE_FS_HZ",
    "PACED_RECORDS",
    "PREPROCESS_VERSION",
    "RR_FEATURES",
    "SYMBOL_TO_CLASS",
    "band_filter",
    "band_limit",
    "beat_windows",
    "check_band",
    "preprocess_signal",
    "remove_baseline",
    "resample",
    "resample_ratio",
    "rr_features",
]

# --------------------------------------------------------------------------- constants

#: Sampling rate of every MIT-BIH record.
NATIVE_FS_HZ = 360

#: The lead the loader uses, chosen by name (record 114 stores V5 first).
LEAD = "MLII"

#: Training records of the inter-patient protocol (de Chazal et al. 2004).
DS1: tuple[str, ...] = (
    "101", "106", "108", "109", "112", "114", "115", "116", "118", "119", "122",
    "124", "201", "203", "205", "207", "208", "209", "215", "220", "223", "230",
)

#: Test records of the inter-patient protocol; only :meth:`MitBih.final_test_set` reads them.
DS2: tuple[str, ...] = (
    "100", "103", "105", "111", "113", "117", "121", "123", "200", "202", "210",
    "212", "213", "214", "219", "221", "222", "228", "231", "232", "233", "234",
)

#: Paced records, excluded from both DS1 and DS2 (AAMI EC57).
PACED_RECORDS: tuple[str, ...] = ("102", "104", "107", "217")

#: AAMI EC57 class names; a label ``y`` indexes this tuple.
AAMI_CLASSES: tuple[str, ...] = ("N", "S", "V", "F", "Q")

#: Annotation symbol -> AAMI class index. Symbols not listed are not beats.
SYMBOL_TO_CLASS: Mapping[str, int] = MappingProxyType(
    {
        **{s: 0 for s in ("N", "L", "R", "e", "j")},
        **{s: 1 for s in ("A", "a", "J", "S")},
        **{s: 2 for s in ("V", "E")},
        "F": 3,
        **{s: 4 for s in ("/", "f", "Q")},
    }
)

#: Seconds before and after the annotated R peak cut for each beat.
DEFAULT_WINDOW: tuple[float, float] = (0.25, 0.45)

#: DS1 records held out whole for validation by :meth:`MitBih.search_splits`.
#: Each holds S and V beats and a few F beats (216 S, 785 V, 31 F, 8071 N in
#: all), none is the only DS1 source of a morphology (LBBB 109/207, RBBB
#: 118/124/207), of most F beats (208) or of 40 % of S beats (209), and 201 has
#: atrial fibrillation, so the validation score sees false S alarms the way
#: DS2's irregular-rhythm records produce them.
DEFAULT_VAL_RECORDS: tuple[str, ...] = ("114", "201", "205", "223")

#: The value ``confirm`` must take for :meth:`MitBih.final_test_set` to open DS2.
FINAL_EVALUATION = "final-evaluation"

#: File in the cache directory with one line per opening of DS2.
ACCESS_LOG_NAME = "ds2_access.log"

#: Columns of :attr:`BeatSet.rr` (all in seconds or dimensionless ratios).
RR_FEATURES: tuple[str, ...] = (
    "rr_prev",        # R(i) - R(i-1), s
    "rr_next",        # R(i+1) - R(i), s (needs one beat of latency on a device)
    "rr_local",       # mean of the <= LOCAL_RR_BEATS intervals ending at R(i), s (causal)
    "rr_prev_ratio",  # rr_prev / rr_local
    "rr_next_ratio",  # rr_next / rr_local
)

#: Number of preceding RR intervals averaged into ``rr_local``.
LOCAL_RR_BEATS = 10

#: Median-filter lengths of the baseline estimate (de Chazal et al. 2004), seconds.
BASELINE_WINDOWS_S: tuple[float, float] = (0.2, 0.6)

#: The monitoring band of the AHA recommendations, ``(f_low, f_high)`` in Hz.
#: The same pair as ``nas_ecg.budget.BANDS["monitoring"]`` (the data layer does
#: not import the plugin; a test keeps the two equal).
MONITORING_BAND: tuple[float, float] = (0.67, 40.0)

#: Band the loader filters to unless told otherwise (``band=None``: no band filter).
DEFAULT_BAND: tuple[float, float] | None = MONITORING_BAND

#: The band-limiting filter of :func:`band_filter` (part of every cache key):
#: Butterworth high-pass of order ``highpass_order`` at ``f_low`` and low-pass
#: of order ``lowpass_order`` at ``f_high``, designed at 360 Hz as second-order
#: sections and run forward and backward (:func:`scipy.signal.sosfiltfilt`), so
#: the applied magnitude is ``|H|^2`` and the phase is zero. The design corner
#: frequencies are moved outward so that ``|H|^2`` is -3 dB exactly at
#: ``f_low`` and ``f_high`` (see :func:`band_filter`).
BAND_FILTER: Mapping[str, object] = MappingProxyType(
    {
        "design": "butterworth",
        "highpass_order": 2,
        "lowpass_order": 4,
        "application": "sosfiltfilt",
        "edge_db": -3.0,
        "pad_s_times_f_low": 3.0,
    }
)

#: Bumped whenever the preprocessing changes; part of every cache key.
#: 1: median baseline removal only. 2: band-limiting to ``band`` instead (median
#: baseline removal only with ``band=None``), before resampling.
PREPROCESS_VERSION = 2

_MAX_DENOMINATOR = 1000
_RECORD_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


# --------------------------------------------------------------------------- results


@dataclasses.dataclass(frozen=True, eq=False)
class BeatSet:
    """Beats of one or more records as parallel numpy arrays.

    Attributes:
        x: ``float32 (n, L)`` MLII windows in mV (band-limited; baseline
            removed by median filters with ``band=None``; per-beat
            standardised if asked), the annotated R peak at column
            ``round(window[0] * fs_hz)``.
        rr: ``float32 (n, 5)`` RR features, columns named by :data:`RR_FEATURES`.
        y: ``int64 (n,)`` AAMI class indices into :data:`AAMI_CLASSES`.
        record: ``(n,)`` record name of each beat (numpy unicode strings).
        fs_hz: sampling rate of ``x`` in Hz (the exact rate made by the
            rational resampling ratio; equals the requested rate for integers).
        sample: ``int64 (n,)`` R-peak sample index at 360 Hz in the original
            record (to trace a beat back to its annotation), or ``None``.

    Arrays are not copied; treat them as read-only.
    """

    x: np.ndarray
    rr: np.ndarray
    y: np.ndarray
    record: np.ndarray
    fs_hz: float
    sample: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.y)
        if self.x.ndim != 2 or self.rr.ndim != 2 or self.y.ndim != 1 or self.record.ndim != 1:
            raise ValueError(
                f"BeatSet arrays need shapes x (n, L), rr (n, k), y (n,), record (n,); got "
                f"{self.x.shape}, {self.rr.shape}, {self.y.shape}, {self.record.shape}"
            )
        lengths = {len(self.x), len(self.rr), len(self.record), n}
        if self.sample is not None:
            lengths.add(len(self.sample))
        if len(lengths) != 1:
            raise ValueError(f"BeatSet arrays disagree on the number of beats: {sorted(lengths)}")

    def __len__(self) -> int:
        return len(self.y)

    def class_counts(self) -> dict[str, int]:
        """Number of beats per AAMI class, every class present (zeros included)."""
        counts = np.bincount(self.y, minlength=len(AAMI_CLASSES))
        return {name: int(counts[i]) for i, name in enumerate(AAMI_CLASSES)}

    @classmethod
    def concatenate(cls, parts: Sequence[BeatSet]) -> BeatSet:
        """Join beat sets of the same rate and window length, in order."""
        if not parts:
            raise ValueError("BeatSet.concatenate needs at least one BeatSet")
        rates = {p.fs_hz for p in parts}
        widths = {p.x.shape[1] for p in parts}
        if len(rates) != 1 or len(widths) != 1:
            raise ValueError(
                f"cannot concatenate BeatSets of different rates {sorted(rates)} "
                f"or window lengths {sorted(widths)}"
            )
        samples = None
        if all(p.sample is not None for p in parts):
            samples = np.concatenate([p.sample for p in parts])  # type: ignore[misc]
        return cls(
            x=np.concatenate([p.x for p in parts]),
            rr=np.concatenate([p.rr for p in parts]),
            y=np.concatenate([p.y for p in parts]),
            record=np.concatenate([p.record for p in parts]),
            fs_hz=parts[0].fs_hz,
            sample=samples,
        )


@dataclasses.dataclass(frozen=True)
class Ds2Access:
    """One line of the DS2 access log."""

    timestamp: str
    fs_hz: float
    purpose: str
    #: ``(f_low, f_high)`` the beats were band-limited to; ``None`` for no band
    #: filter (also for lines written before preprocessing version 2).
    band: tuple[float, float] | None = None


# --------------------------------------------------------------------------- signal functions


def resample_ratio(fs_hz: float) -> Fraction:
    """The ratio ``up/down`` that takes 360 Hz to ``fs_hz`` (``0 < fs_hz <= 360``).

    Integer rates are exact (``180 -> 1/2``, ``125 -> 25/72``, ``128 -> 16/45``);
    other rates use the nearest fraction with a denominator up to 1000.

    Raises:
        ConfigError: if ``fs_hz`` is not a number in ``(0, 360]``, or so low
            that no such fraction lies within 0.1 % of it.
    """
    if isinstance(fs_hz, bool) or not isinstance(fs_hz, numbers.Real):
        raise ConfigError(f"fs_hz={fs_hz!r} is not a number; give a sampling rate in Hz, 0 < fs_hz <= 360")
    fs = float(fs_hz)
    if not math.isfinite(fs) or fs <= 0:
        raise ConfigError(f"fs_hz={fs_hz!r} must be a positive sampling rate in Hz (0 < fs_hz <= 360)")
    if fs > NATIVE_FS_HZ:
        raise ConfigError(
            f"fs_hz={fs_hz!r} is above MIT-BIH's native {NATIVE_FS_HZ} Hz; upsampling adds no "
            f"information, choose 0 < fs_hz <= {NATIVE_FS_HZ}"
        )
    ratio = Fraction(fs / NATIVE_FS_HZ).limit_denominator(_MAX_DENOMINATOR)
    if ratio.numerator == 0 or abs(float(ratio) * NATIVE_FS_HZ - fs) > 1e-3 * fs:
        raise ConfigError(
            f"fs_hz={fs_hz!r} cannot be reached from {NATIVE_FS_HZ} Hz with a resampling ratio "
            f"of denominator <= {_MAX_DENOMINATOR}; choose a rate such as 100, 125, 180 or 250 Hz"
        )
    return ratio


def remove_baseline(signal: np.ndarray, fs_hz: float = NATIVE_FS_HZ) -> np.ndarray:
    """Subtract the baseline estimated by two cascaded median filters.

    The baseline is the 200 ms median of the signal, filtered again by a 600 ms
    median (de Chazal et al. 2004); kernel lengths are rounded to odd sample
    counts (73 and 217 at 360 Hz) and the edges replicated.
    """
    from scipy.ndimage import median_filter

    x = np.asarray(signal, dtype=np.float64)
    baseline = x
    for seconds in BASELINE_WINDOWS_S:
        size = int(round(seconds * fs_hz)) // 2 * 2 + 1
        baseline = median_filter(baseline, size=size, mode="nearest")
    return x - baseline


def check_band(band: Sequence[float] | None, fs_hz: float) -> tuple[float, float] | None:
    """Validate a clinical band ``(f_low, f_high)`` in Hz for a signal sampled at ``fs_hz``.

    ``None`` means "no band filter" and is returned as is. Otherwise the band
    must be two finite numbers with ``0 <= f_low < f_high < fs_hz / 2`` (the
    upper edge below the Nyquist frequency of the rate the beats are made at);
    ``f_low = 0`` asks for a low-pass only. Returns ``(float(f_low), float(f_high))``.

    Raises:
        ConfigError: naming the band, the rule it breaks and the rate.
    """
    if band is None:
        return None
    if isinstance(band, (str, bytes)) or not isinstance(band, Sequence) or len(band) != 2:
        raise ConfigError(
            f"band={band!r} must be a pair (f_low, f_high) in Hz, e.g. the monitoring band "
            f"{MONITORING_BAND}, or None for no band filter"
        )
    for value in band:
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
            raise ConfigError(f"band={tuple(band)!r}: the edges must be finite numbers in Hz, got {value!r}")
    lo, hi = float(band[0]), float(band[1])
    if lo < 0:
        raise ConfigError(f"band={tuple(band)!r}: f_low = {lo:g} Hz is negative; give 0 <= f_low < f_high")
    if lo >= hi:
        raise ConfigError(f"band={tuple(band)!r}: f_low = {lo:g} Hz is not below f_high = {hi:g} Hz; give f_low < f_high")
    nyquist = float(fs_hz) / 2
    if hi >= nyquist:
        raise ConfigError(
            f"band={tuple(band)!r}: f_high = {hi:g} Hz is not below the Nyquist frequency {nyquist:g} Hz "
            f"of fs_hz={float(fs_hz):g}; lower f_high or raise the sampling rate (fs_hz > 2 x f_high)"
        )
    return lo, hi


def _corner(f_edge: float, order: int, fs_hz: float, highpass: bool) -> float:
    """Butterworth design corner whose forward-backward response is -3 dB at ``f_edge``.

    A Butterworth filter of order ``n`` is -3 dB at its corner; run forward and
    backward its magnitude is squared, ``1 / (1 + (W / Wc)^(2n))`` for a
    low-pass in the bilinear-warped frequency ``W = 2 fs tan(pi f / fs)``, which
    is ``1/sqrt(2)`` at ``W = c Wc`` with ``c = (sqrt(2) - 1)^(1/(2n))``. So the
    low-pass corner is ``W(f_edge) / c`` and the high-pass corner ``W(f_edge) * c``,
    mapped back through the warping.
    """
    c = (math.sqrt(2.0) - 1.0) ** (1.0 / (2 * order))
    warped = 2 * fs_hz * math.tan(math.pi * f_edge / fs_hz)
    warped = warped * c if highpass else warped / c
    return fs_hz / math.pi * math.atan(warped / (2 * fs_hz))


def band_filter(band: Sequence[float], fs_hz: float = NATIVE_FS_HZ) -> np.ndarray:
    """Second-order sections of the band-limiting filter for ``band`` at ``fs_hz``.

    A Butterworth high-pass of order ``BAND_FILTER["highpass_order"]`` (2) at
    ``f_low`` (left out when ``f_low == 0``) cascaded with a Butterworth
    low-pass of order ``BAND_FILTER["lowpass_order"]`` (4) at ``f_high``, as
    ``scipy.signal`` SOS rows. It is meant to be run forward and backward
    (:func:`band_limit`): the corners are placed (:func:`_corner`) so that the
    *squared* magnitude, the response of the zero-phase filter, is -3 dB at
    ``f_low`` and ``f_high``. ``scipy.signal.sosfreqz(sos, worN=f, fs=fs_hz)``
    gives ``H``; the applied response is ``|H|^2``.

    For the monitoring band at 360 Hz, ``|H|^2`` is -3.0 dB at 0.67 and 40 Hz,
    0.0 dB at 10 Hz, -7.4 dB at 0.5 Hz, -34.5 dB at 0.2 Hz (respiratory
    baseline wander), -24.9 dB at 60 Hz (mains), -50.4 dB at 80 Hz and -74.8 dB
    at 100 Hz.

    Raises:
        ConfigError: a band :func:`check_band` rejects at ``fs_hz``.
    """
    from scipy.signal import butter

    checked = check_band(band, fs_hz)
    if checked is None:
        raise ConfigError("band_filter needs a band (f_low, f_high); band=None means no filter")
    lo, hi = checked
    n_hp, n_lp = int(BAND_FILTER["highpass_order"]), int(BAND_FILTER["lowpass_order"])  # type: ignore[call-overload]
    sections = [butter(n_lp, _corner(hi, n_lp, fs_hz, highpass=False), "lowpass", fs=fs_hz, output="sos")]
    if lo > 0:
        sections.insert(0, butter(n_hp, _corner(lo, n_hp, fs_hz, highpass=True), "highpass", fs=fs_hz, output="sos"))
    return np.vstack(sections)


def band_limit(signal: np.ndarray, band: Sequence[float], fs_hz: float = NATIVE_FS_HZ) -> np.ndarray:
    """Band-limit ``signal`` to ``band`` with the zero-phase filter of :func:`band_filter`.

    Runs :func:`scipy.signal.sosfiltfilt` (forward and backward, so no phase
    shift: the annotated R peaks stay where they are). The signal is extended
    at both ends by odd reflection over ``3 / f_low`` seconds (4.5 s for
    0.67 Hz), about three time constants of the high-pass, so beats near the
    start or end of a record see no start-up transient.

    Zero phase is an offline choice: a device filters causally (an IIR such as
    these sections run once, or a Butterworth of twice the orders designed at
    the band edges, which has the same -3 dB points and asymptotic roll-off).
    A causal filter delays and distorts the waveform by its group delay (a few
    milliseconds at the QRS frequencies, hundreds near 0.67 Hz), which would
    move every beat off its annotated R peak and change the training windows
    by an amount that depends on the record's content; the zero-phase filter
    keeps the annotations aligned, and the AHA recommendations accept the
    0.67 Hz low edge for filters without phase distortion.
    """
    from scipy.signal import sosfiltfilt

    x = np.asarray(signal, dtype=np.float64)
    sos = band_filter(band, fs_hz)
    lo = float(band[0])
    pad_s = float(BAND_FILTER["pad_s_times_f_low"]) / lo if lo > 0 else 0.1  # type: ignore[arg-type]
    padlen = min(len(x) - 1, int(math.ceil(pad_s * fs_hz)))
    return sosfiltfilt(sos, x, padlen=max(padlen, 0))


def preprocess_signal(
    signal: np.ndarray, fs_hz: float, band: Sequence[float] | None = DEFAULT_BAND
) -> tuple[np.ndarray, float]:
    """The loader's signal chain for one 360 Hz lead: filter at 360 Hz, then resample to ``fs_hz``.

    - With a ``band`` (default :data:`DEFAULT_BAND`, the monitoring band):
      :func:`band_limit` only. Its high-pass edge removes the baseline wander,
      so the median filters are not applied, and the chain before the
      resampler is one linear, zero-phase filter whose response is the
      declared band (-3 dB at both edges), as :func:`band_filter` states.
    - With ``band=None``: :func:`remove_baseline` (median filters) and no band
      filter, the chain of preprocessing version 1; content up to the
      resampler's cut-off at ``fs_hz / 2`` is kept.

    Then :func:`resample`. Returns the signal and the exact output rate.

    Why not both: the median baseline estimate is nonlinear and, on a
    sinusoid, acts as a high-pass near 1.5 Hz (-17.9 dB at 0.67 Hz, -9.7 dB at
    1 Hz, +2.5 dB at 2 Hz), so in front of the band-pass it would cut the
    0.67-1.5 Hz part of the band the label promises and make the response
    signal-dependent. The price: the level 250-167 ms before the R peak varies
    more from beat to beat (median over the 22 DS1 records 0.050 mV with the
    band-pass against 0.041 mV with the median filters).

    Raises:
        ConfigError: a bad rate, or a band :func:`check_band` rejects at the output rate.
    """
    ratio = resample_ratio(fs_hz)
    checked = check_band(band, NATIVE_FS_HZ * ratio.numerator / ratio.denominator)
    if checked is None:
        filtered = remove_baseline(signal, NATIVE_FS_HZ)
    else:
        filtered = band_limit(signal, checked, NATIVE_FS_HZ)
    return resample(filtered, fs_hz)


def resample(signal: np.ndarray, fs_hz: float) -> tuple[np.ndarray, float]:
    """Resample a 360 Hz signal to ``fs_hz`` with an anti-aliasing polyphase filter.

    Uses :func:`scipy.signal.resample_poly` (Kaiser-windowed FIR, cut-off at the
    new Nyquist rate, delay compensated so sample ``k`` of the output lies at
    time ``k / fs``). Returns the signal and the exact output rate.
    """
    ratio = resample_ratio(fs_hz)
    x = np.asarray(signal, dtype=np.float64)
    if ratio == 1:
        return x, float(NATIVE_FS_HZ)
    from scipy.signal import resample_poly

    out = resample_poly(x, ratio.numerator, ratio.denominator, padtype="line")
    return out, NATIVE_FS_HZ * ratio.numerator / ratio.denominator


def beat_windows(signal: np.ndarray, peaks: np.ndarray, before: int, after: int) -> np.ndarray:
    """Cut ``signal[p - before : p + after]`` for every peak ``p``, edges replicated.

    Every peak yields a window, also one at sample 0 or the last sample: the
    signal is padded by repeating its first and last values.
    """
    x = np.asarray(signal)
    p = np.asarray(peaks, dtype=np.int64)
    if before < 0 or after < 1:
        raise ValueError(f"beat_windows needs before >= 0 and after >= 1, got {before}, {after}")
    if len(p) and (p.min() < 0 or p.max() >= len(x)):
        raise ValueError(f"peaks must lie in [0, {len(x)}), got [{p.min()}, {p.max()}]")
    padded = np.pad(x, (before, after), mode="edge")
    index = p[:, None] + np.arange(before + after)[None, :]
    return padded[index]


def rr_features(
    r_samples: np.ndarray, fs_hz: float = NATIVE_FS_HZ, *, local_beats: int = LOCAL_RR_BEATS
) -> np.ndarray:
    """RR features of consecutive beats, columns as in :data:`RR_FEATURES`.

    For beat ``i`` at time ``t[i] = r_samples[i] / fs_hz``:

    - ``rr_prev = t[i] - t[i-1]``; the first beat takes the first interval.
    - ``rr_next = t[i+1] - t[i]``; the last beat takes the last interval.
    - ``rr_local`` = mean of the up to ``local_beats`` intervals ending at or
      before ``t[i]`` (causal: only past beats); the first beat takes the first
      interval.
    - ``rr_prev_ratio = rr_prev / rr_local``, ``rr_next_ratio = rr_next / rr_local``.

    Raises:
        ConfigError: with fewer than two beats or R peaks not strictly increasing.
    """
    t = np.asarray(r_samples, dtype=np.float64) / float(fs_hz)
    n = len(t)
    if n < 2:
        raise ConfigError(f"RR features need at least 2 beats, got {n}")
    d = np.diff(t)
    if np.any(d <= 0):
        raise ConfigError("RR features need strictly increasing R-peak positions")
    prev = np.concatenate([d[:1], d])
    nxt = np.concatenate([d, d[-1:]])
    cum = np.concatenate([[0.0], np.cumsum(d)])
    i = np.arange(n)
    lo = np.maximum(0, i - local_beats)
    count = np.maximum(i - lo, 1)
    local = np.where(i == 0, d[0], (cum[i] - cum[lo]) / count)
    return np.stack([prev, nxt, local, prev / local, nxt / local], axis=1).astype(np.float32)


# --------------------------------------------------------------------------- record reading


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _read_annotations(stem: Path) -> tuple[np.ndarray, np.ndarray]:
    """Beat positions (360 Hz samples) and AAMI labels of ``<stem>.atr``."""
    import wfdb

    atr = stem.with_name(stem.name + ".atr")
    if not atr.is_file():
        raise ConfigError(f"annotation file {atr} is missing; restore it or pass download=True")
    try:
        ann = wfdb.rdann(str(stem), "atr")
    except Exception as exc:
        raise ConfigError(
            f"cannot read annotation file {atr} ({_one_line(exc)}); the file is corrupt, "
            f"restore it from PhysioNet"
        ) from exc
    keep = [i for i, s in enumerate(ann.symbol) if s in SYMBOL_TO_CLASS]
    samples = np.asarray(ann.sample, dtype=np.int64)[keep]
    labels = np.array([SYMBOL_TO_CLASS[ann.symbol[i]] for i in keep], dtype=np.int64)
    return samples, labels


def _read_lead(stem: Path) -> np.ndarray:
    """The MLII lead of a record in mV at 360 Hz."""
    import wfdb

    name = stem.name
    hea = stem.with_name(name + ".hea")
    dat = stem.with_name(name + ".dat")
    for path in (hea, dat):
        if not path.is_file():
            raise ConfigError(f"record file {path} is missing; restore it or pass download=True")
    try:
        header = wfdb.rdheader(str(stem))
    except Exception as exc:
        raise ConfigError(
            f"cannot parse header {hea} ({_one_line(exc)}); the file is corrupt, restore it from "
            f"PhysioNet (wfdb.dl_database('mitdb', ...))"
        ) from exc
    if header.fs != NATIVE_FS_HZ:
        raise ConfigError(
            f"header {hea} gives a sampling rate of {header.fs} Hz as wfdb reads it, MIT-BIH "
            f"records are {NATIVE_FS_HZ} Hz; the file is corrupt or not from mitdb"
        )
    leads = list(header.sig_name or [])
    if not leads:
        raise ConfigError(f"header {hea} declares no signals; the file is corrupt, restore it from PhysioNet")
    if LEAD not in leads:
        raise ConfigError(
            f"record {name} has no {LEAD} lead (it has {', '.join(map(str, leads))}); the loader "
            f"reads {LEAD} only, so leave {name} out (paced records 102 and 104 lack it)"
        )
    try:
        record = wfdb.rdrecord(str(stem), channels=[leads.index(LEAD)])
    except Exception as exc:
        raise ConfigError(
            f"cannot read record {name} from {dat} and {hea} ({_one_line(exc)}); the files are "
            f"corrupt or truncated, restore them from PhysioNet"
        ) from exc
    signal = np.asarray(record.p_signal, dtype=np.float64)[:, 0]
    if len(signal) == 0 or not np.all(np.isfinite(signal)):
        raise ConfigError(f"signal file {dat} holds no valid {LEAD} samples; restore it from PhysioNet")
    return signal


def _preprocess_record(
    stem: Path, fs_hz: float, before: int, after: int, standardize: bool,
    band: tuple[float, float] | None = DEFAULT_BAND,
) -> dict[str, np.ndarray]:
    """Read, filter, resample and cut one record into beat arrays (no cache)."""
    samples, labels = _read_annotations(stem)
    signal = _read_lead(stem)
    if len(samples) and (samples.min() < 0 or samples.max() >= len(signal)):
        raise ConfigError(
            f"annotation file {stem.name}.atr has beats outside the signal's "
            f"{len(signal)} samples; the files do not belong together"
        )
    rr = rr_features(samples, NATIVE_FS_HZ)
    resampled, fs_out = preprocess_signal(signal, fs_hz, band)
    peaks = np.floor(samples * (fs_out / NATIVE_FS_HZ) + 0.5).astype(np.int64)
    peaks = np.clip(peaks, 0, len(resampled) - 1)
    x = beat_windows(resampled, peaks, before, after)
    if standardize:
        x = (x - x.mean(axis=1, keepdims=True)) / np.maximum(x.std(axis=1, keepdims=True), 1e-6)
    return {
        "x": x.astype(np.float32),
        "rr": rr,
        "y": labels,
        "sample": samples,
        "fs_hz": np.float64(fs_out),
    }


# --------------------------------------------------------------------------- the database


def _normalise_records(records: Iterable[RecordName] | RecordName) -> tuple[str, ...]:
    if isinstance(records, (str, int)) and not isinstance(records, bool):
        records = [records]
    names: list[str] = []
    for r in records:  # type: ignore[union-attr]
        if isinstance(r, bool) or not isinstance(r, (str, int)):
            raise ConfigError(f"record {r!r} is not a record name; give names such as '101'")
        name = str(r)
        if not _RECORD_NAME.match(name):
            raise ConfigError(f"record {name!r} is not a record name; give names such as '101'")
        if name in names:
            raise ConfigError(f"record {name} is listed twice; give each record once")
        names.append(name)
    if not names:
        raise ConfigError("no records given; pass record names such as DS1 or ['101', '106']")
    return tuple(names)


def _check_window(window: Sequence[float], fs_hz: float) -> tuple[float, float, int, int]:
    try:
        before, after = (float(w) for w in window)
    except (TypeError, ValueError):
        raise ConfigError(
            f"window={window!r} must be two numbers (seconds before, seconds after the R peak)"
        ) from None
    if not (math.isfinite(before) and math.isfinite(after)) or before < 0 or after <= 0:
        raise ConfigError(
            f"window={window!r} must be (seconds before >= 0, seconds after > 0) the R peak, "
            f"e.g. {DEFAULT_WINDOW}"
        )
    b, a = int(round(before * fs_hz)), int(round(after * fs_hz))
    if a < 1:
        raise ConfigError(f"window={window!r} holds no sample after the R peak at {fs_hz} Hz; widen it")
    return before, after, b, a


class MitBih:
    """The MIT-BIH Arrhythmia Database on disk, with a cache of preprocessed beats.

    Args:
        data_dir: folder holding ``100.hea``, ``100.dat``, ``100.atr`` ...;
            default: environment variable ``MITDB_DIR``.
        download: if the folder lacks the records, fetch them from PhysioNet
            with ``wfdb.dl_database("mitdb", data_dir)``.
        cache_dir: where preprocessed beats and the DS2 access log go; default
            ``$NAS_CACHE_DIR/mitdb``, else ``~/.cache/nas_core/mitdb``. Nothing
            is ever written into or next to ``data_dir``.

    Raises:
        ConfigError: no folder given, or a folder without records and
            ``download=False``, or a failed download.

    Example::

        db = MitBih("/data/mitdb", cache_dir="/tmp/nas-cache")
        db.class_counts(DS1)        # {'N': 45866, 'S': 944, 'V': 3788, 'F': 415, 'Q': 8}
        beats = db.beats(["101", "106"], 125.0)
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str] | None = None,
        *,
        download: bool = False,
        cache_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        if data_dir is None:
            env = os.environ.get("MITDB_DIR", "").strip()
            if not env:
                raise ConfigError(
                    "no MIT-BIH directory given: set MITDB_DIR or --data-dir to the folder holding "
                    "100.hea, or pass MitBih(data_dir=..., download=True) to fetch it from PhysioNet"
                )
            data_dir = env
        self._data_dir = Path(data_dir).expanduser().resolve()
        if self._data_dir.exists() and not self._data_dir.is_dir():
            raise ConfigError(
                f"MIT-BIH path {self._data_dir} is a file, not a folder; set MITDB_DIR or "
                f"--data-dir to the folder holding 100.hea"
            )
        if download and self._missing_protocol_records():
            self._download()
        if not self._data_dir.is_dir() or not any(self._data_dir.glob("*.hea")):
            raise ConfigError(
                f"MIT-BIH records not found in {self._data_dir} (no .hea files): set MITDB_DIR "
                f"or --data-dir to the folder holding 100.hea, or pass download=True"
            )
        if cache_dir is None:
            env_cache = os.environ.get("NAS_CACHE_DIR", "").strip()
            cache_dir = (
                Path(env_cache) / "mitdb" if env_cache else Path.home() / ".cache" / "nas_core" / "mitdb"
            )
        self._cache_dir = Path(cache_dir).expanduser().resolve()
        self._fingerprints: dict[tuple[str, int, int], str] = {}

    def __repr__(self) -> str:
        return f"MitBih(data_dir={str(self._data_dir)!r}, cache_dir={str(self._cache_dir)!r})"

    @property
    def data_dir(self) -> Path:
        """The folder the records are read from."""
        return self._data_dir

    @property
    def cache_dir(self) -> Path:
        """The folder of the beat cache and of :data:`ACCESS_LOG_NAME`."""
        return self._cache_dir

    @property
    def access_log(self) -> Path:
        """Path of the DS2 access log (may not exist yet)."""
        return self._cache_dir / ACCESS_LOG_NAME

    # ----------------------------------------------------------------- public API

    def class_counts(self, records: Iterable[RecordName] | RecordName) -> dict[str, int]:
        """Beats per AAMI class in ``records``, from the annotations alone.

        Reads only the ``.atr`` files (milliseconds per record). DS2 is allowed
        here: the counts are published and reveal no signal.
        """
        counts = np.zeros(len(AAMI_CLASSES), dtype=np.int64)
        for name in _normalise_records(records):
            _, labels = _read_annotations(self._data_dir / name)
            counts += np.bincount(labels, minlength=len(AAMI_CLASSES))
        return {c: int(counts[i]) for i, c in enumerate(AAMI_CLASSES)}

    def beats(
        self,
        records: Iterable[RecordName] | RecordName,
        fs_hz: float,
        *,
        window: Sequence[float] = DEFAULT_WINDOW,
        standardize: bool = False,
        band: Sequence[float] | None = DEFAULT_BAND,
    ) -> BeatSet:
        """Every annotated beat of ``records`` as windows, RR features and labels.

        Args:
            records: record names (``"101"`` or ``101``), any but DS2's.
            fs_hz: output sampling rate, ``0 < fs_hz <= 360``.
            window: seconds before and after the R peak; the window holds
                ``round(before*fs) + round(after*fs)`` samples, the R peak at
                index ``round(before*fs)``.
            standardize: z-score each window (zero mean, unit deviation).
                Default ``False``: windows stay in mV after filtering,
                so amplitude, which separates many V beats, is kept.
            band: ``(f_low, f_high)`` in Hz the lead is band-limited to at
                360 Hz before resampling (zero-phase Butterworth,
                :func:`band_limit`, -3 dB at both edges; its high-pass edge
                replaces the median baseline removal); default the monitoring
                band :data:`MONITORING_BAND` ``(0.67, 40.0)``. ``None``: no
                band filter, the median baseline removal of preprocessing
                version 1 instead (content up to ``fs_hz / 2`` is kept).

        Raises:
            ConfigError: a DS2 record (use :meth:`final_test_set`), a bad rate,
                window or band, a missing or corrupt file, a record without MLII.
        """
        return self._beats(records, fs_hz, window=window, standardize=standardize, band=band, allow_ds2=False)

    def search_splits(
        self,
        fs_hz: float,
        *,
        val_records: Iterable[RecordName] = DEFAULT_VAL_RECORDS,
        window: Sequence[float] = DEFAULT_WINDOW,
        standardize: bool = False,
        band: Sequence[float] | None = DEFAULT_BAND,
    ) -> tuple[BeatSet, BeatSet]:
        """Training and validation beats for a search, from DS1 only.

        ``val_records`` (default :data:`DEFAULT_VAL_RECORDS`) are held out whole;
        the other DS1 records train. Validation never shares a patient with
        training, as the inter-patient protocol requires. ``window``,
        ``standardize`` and ``band`` are as in :meth:`beats`.

        Raises:
            ConfigError: a validation record outside DS1, or all DS1 held out.
        """
        val = _normalise_records(val_records)
        for name in val:
            if name not in DS1:
                where = "is a DS2 (test) record" if name in DS2 else "is not a DS1 record"
                raise ConfigError(
                    f"validation record {name} {where}; choose val_records from DS1: {' '.join(DS1)}"
                )
        train = tuple(r for r in DS1 if r not in val)
        if not train:
            raise ConfigError("val_records hold out every DS1 record; leave some DS1 records for training")
        train_set = self._beats(train, fs_hz, window=window, standardize=standardize, band=band, allow_ds2=False)
        val_set = self._beats(val, fs_hz, window=window, standardize=standardize, band=band, allow_ds2=False)
        return train_set, val_set

    def final_test_set(
        self,
        fs_hz: float,
        *,
        confirm: str,
        purpose: str = "unspecified",
        window: Sequence[float] = DEFAULT_WINDOW,
        standardize: bool = False,
        band: Sequence[float] | None = DEFAULT_BAND,
    ) -> BeatSet:
        """The DS2 test beats, for the final evaluation of chosen models only.

        Every call appends
        ``<UTC time>\\tfs_hz=<fs>\\twindow=<b>,<a>\\tband=<lo>,<hi>|none\\tpurpose=<purpose>``
        to :attr:`access_log`, so a report can state how often the test set
        was opened (see :meth:`ds2_accesses`).

        Args:
            confirm: must equal :data:`FINAL_EVALUATION` (``"final-evaluation"``).
            purpose: why the test set is opened, written to the log.
            window, standardize, band: as in :meth:`beats`; evaluate a model
                with the same values it was searched and trained with.

        Raises:
            ConfigError: ``confirm`` is not :data:`FINAL_EVALUATION`, or a bad
                rate, window or band (checked before anything is logged).
        """
        if confirm != FINAL_EVALUATION:
            raise ConfigError(
                f"final_test_set() opens DS2, the held-out test records of the inter-patient "
                f"protocol; a search that looks at them reports optimistic figures. Pass "
                f"confirm=FINAL_EVALUATION ({FINAL_EVALUATION!r}) only to evaluate the final "
                f"models (got confirm={confirm!r})"
            )
        ratio = resample_ratio(fs_hz)
        fs_out = NATIVE_FS_HZ * ratio.numerator / ratio.denominator
        before, after, _, _ = _check_window(window, fs_out)
        checked = check_band(band, fs_out)
        self._log_access(fs_out, before, after, checked, purpose)
        return self._beats(DS2, fs_hz, window=window, standardize=standardize, band=checked, allow_ds2=True)

    def ds2_accesses(self) -> tuple[Ds2Access, ...]:
        """Every opening of DS2 recorded in :attr:`access_log`, oldest first."""
        if not self.access_log.is_file():
            return ()
        out = []
        for line in self.access_log.read_text(encoding="utf-8").splitlines():
            fields = line.split("\t")
            if len(fields) < 4:
                continue
            values = dict(f.split("=", 1) for f in fields[1:] if "=" in f)
            band: tuple[float, float] | None = None
            try:
                lo, hi = (float(v) for v in values.get("band", "none").split(","))
                band = (lo, hi)
            except ValueError:
                band = None
            out.append(
                Ds2Access(
                    timestamp=fields[0],
                    fs_hz=float(values.get("fs_hz", "nan")),
                    purpose=values.get("purpose", ""),
                    band=band,
                )
            )
        return tuple(out)

    # ----------------------------------------------------------------- internals

    def _missing_protocol_records(self) -> list[str]:
        missing = []
        for name in DS1 + DS2:
            for ext in (".hea", ".dat", ".atr"):
                if not (self._data_dir / (name + ext)).is_file():
                    missing.append(name + ext)
        return missing

    def _download(self) -> None:
        import wfdb

        try:
            self._data_dir.mkdir(parents=True, exist_ok=True)
            wfdb.dl_database("mitdb", str(self._data_dir))
        except Exception as exc:
            raise ConfigError(
                f"could not download mitdb from PhysioNet into {self._data_dir} ({_one_line(exc)}); "
                f"check the network, or download it elsewhere and set MITDB_DIR / --data-dir"
            ) from exc
        missing = self._missing_protocol_records()
        if missing:
            raise ConfigError(
                f"download of mitdb into {self._data_dir} is incomplete ({len(missing)} files "
                f"missing, e.g. {missing[0]}); run it again or fetch the files by hand"
            )

    def _beats(
        self,
        records: Iterable[RecordName] | RecordName,
        fs_hz: float,
        *,
        window: Sequence[float],
        standardize: bool,
        band: Sequence[float] | None,
        allow_ds2: bool,
    ) -> BeatSet:
        names = _normalise_records(records)
        if not allow_ds2:
            for name in names:
                if name in DS2:
                    raise ConfigError(
                        f"record {name} belongs to DS2, the held-out test set of the inter-patient "
                        f"protocol, and beats() refuses it so a search cannot see it; use DS1 records "
                        f"(search_splits) and open DS2 only through final_test_set(..., "
                        f"confirm=FINAL_EVALUATION)"
                    )
        ratio = resample_ratio(fs_hz)
        fs_out = NATIVE_FS_HZ * ratio.numerator / ratio.denominator
        before, after, b, a = _check_window(window, fs_out)
        checked = check_band(band, fs_out)
        parts = [self._record_beats(n, ratio, before, after, b, a, bool(standardize), checked) for n in names]
        return BeatSet.concatenate(parts)

    def _record_beats(
        self, name: str, ratio: Fraction, before: float, after: float, b: int, a: int, standardize: bool,
        band: tuple[float, float] | None,
    ) -> BeatSet:
        stem = self._data_dir / name
        key = {
            "record": name,
            "files": self._fingerprint(stem),
            "ratio": [ratio.numerator, ratio.denominator],
            "window_s": [before, after],
            "window_n": [b, a],
            "lead": LEAD,
            "standardize": standardize,
            "preprocess_version": PREPROCESS_VERSION,
            "baseline_s": list(BASELINE_WINDOWS_S),
            "local_rr_beats": LOCAL_RR_BEATS,
            "band_hz": None if band is None else list(band),
            "band_filter": dict(BAND_FILTER),
        }
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
        fs_tag = f"{NATIVE_FS_HZ * float(ratio):g}".replace(".", "p")
        path = self._cache_dir / f"{name}_{fs_tag}hz_{digest}.npz"
        arrays = self._load_cached(path)
        if arrays is None:
            arrays = _preprocess_record(stem, NATIVE_FS_HZ * float(ratio), b, a, standardize, band)
            self._store(path, arrays)
        n = len(arrays["y"])
        return BeatSet(
            x=arrays["x"],
            rr=arrays["rr"],
            y=arrays["y"],
            record=np.full(n, name),
            fs_hz=float(arrays["fs_hz"]),
            sample=arrays["sample"],
        )

    def checksums(self, records: Iterable[RecordName] | RecordName) -> dict[str, str]:
        """SHA-256 of each record's ``.hea``/``.dat``/``.atr`` files taken together (for provenance records)."""
        return {name: self._fingerprint(self._data_dir / name) for name in _normalise_records(records)}

    def _fingerprint(self, stem: Path) -> str:
        """SHA-256 of a record's three files, so edited or replaced files miss the cache."""
        h = hashlib.sha256()
        for ext in (".hea", ".dat", ".atr"):
            path = stem.with_name(stem.name + ext)
            try:
                st = path.stat()
            except FileNotFoundError:
                raise ConfigError(
                    f"record file {path} is missing; restore it or pass download=True"
                ) from None
            memo = (str(path), st.st_size, st.st_mtime_ns)
            if memo not in self._fingerprints:
                self._fingerprints[memo] = hashlib.sha256(path.read_bytes()).hexdigest()
            h.update(self._fingerprints[memo].encode())
        return h.hexdigest()

    @staticmethod
    def _load_cached(path: Path) -> dict[str, np.ndarray] | None:
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                return {k: data[k] for k in ("x", "rr", "y", "sample", "fs_hz")}
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            return None  # unreadable entry: recompute and overwrite it

    def _store(self, path: Path, arrays: Mapping[str, np.ndarray]) -> None:
        try:
            self._cache_dir.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self._cache_dir, prefix=f".{path.stem}.", suffix=".tmp")
        except OSError as exc:
            raise ConfigError(
                f"cannot write to cache directory {self._cache_dir} ({_one_line(exc)}); set "
                f"NAS_CACHE_DIR or cache_dir= to a writable folder"
            ) from exc
        try:
            with os.fdopen(fd, "wb") as fh:
                np.savez(fh, **arrays)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def _log_access(
        self, fs_hz: float, before: float, after: float, band: tuple[float, float] | None, purpose: str
    ) -> None:
        text = " ".join(str(purpose).split()) or "unspecified"
        stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
        band_text = "none" if band is None else f"{band[0]:g},{band[1]:g}"
        line = f"{stamp}\tfs_hz={fs_hz:g}\twindow={before:g},{after:g}\tband={band_text}\tpurpose={text}\n"
        try:
            self._cache_dir.mkdir(parents=True, exist_ok=True)
            with open(self.access_log, "a", encoding="utf-8") as fh:
                fh.write(line)
        except OSError as exc:
            raise ConfigError(
                f"cannot append to the DS2 access log {self.access_log} ({_one_line(exc)}); the "
                f"test set is not opened without a log entry, set NAS_CACHE_DIR or cache_dir= to "
                f"a writable folder"
            ) from exc
