"""Model inputs for ECG beat classification, built on :mod:`nas_data.mitdb`.

The loader band-limits the MLII lead to a clinical band before resampling;
:func:`search_arrays`, :func:`search_data` and :func:`final_test_data` take it
as ``band`` (default :data:`MONITORING_BAND`, 0.67-40 Hz, the same pair as
``budget.BANDS["monitoring"]``; ``None``: no band filter, median baseline
removal only). Each beat then becomes two inputs:

* ``x``: ``(2, L)`` -- channel 0 the MLII beat window (band-limited, which
  removes the baseline wander; in mV), channel 1 the beat minus the running median of the
  previous :data:`REFERENCE_BEATS` beats of the same record. The second channel
  is a label-free, *causal* patient reference (past beats only, so a device can
  compute it in real time): it shows how this beat differs from the patient's
  recent beats, which helps with morphologies never seen in training.
* ``rr``: ``(8,)`` RR features (:data:`N_RR`), one of two sets chosen by
  ``rr_features``:

  - ``"normalised"`` (default, :data:`RR_NORMALISED`): dimensionless ratios to
    the patient's own rhythm. The references are the median of the
    :data:`LOCAL_RR_BEATS` RR intervals *before* ``rr_prev`` (``ref_local``)
    and the median of the :data:`LONG_RR_BEATS` intervals before it
    (``ref_long``): past beats only, never the beat's own interval or a
    future one. Columns: ``rr_prev/ref_local``, ``rr_next/ref_local``,
    ``rr_prev/ref_long``, ``rr_next/ref_long``, ``rr_next/rr_prev``,
    ``rr_prev/rr_prev_before`` (the interval before ``rr_prev``),
    ``ref_local/ref_long`` and the local irregularity ``MAD/median`` of the
    same local intervals. Multiplying every RR interval of a record by a
    constant leaves them unchanged, so a patient's heart rate does not enter.
  - ``"raw"`` (:data:`RR_RAW`): the set of earlier versions, unchanged: the
    loader's previous, next and local-average RR in seconds and their two
    ratios, a long causal mean over :data:`LONG_RR_BEATS` intervals (seconds),
    and the ratios previous/long and next/previous.

  RR intervals normalised by the patient's own rhythm carry most of the
  information that separates S beats from N beats; raw seconds generalise
  poorly to unseen patients (de Chazal 2004; see ECG-NOTES). Every feature of
  either set is causal except those using ``rr_next``, which cost one beat of
  latency on a device (the beat is classified when the next R peak arrives).
  Medians rather than means are the references so that one long gap (record
  207's 100 s of ventricular flutter, annotated as non-beats) or a single
  ectopic beat does not shift them for the following beats.

  Measured on DS1 with RR features alone (5 folds of whole records, pooled
  out-of-fold predictions, N/S/V/F, features log-scaled): S F1 0.43 with the
  normalised set against 0.11-0.18 with the raw set (logistic regression:
  S Se/+P 75.6/29.9 % against 22.6/7.4 %; gradient boosting: 62.7/32.3 %
  against 31.2/12.3 %). ``rr_prev/ref_long`` alone ranks S below N beats with
  an AUC of 0.985 on DS1. The CNN's own out-of-fold comparison is still to be
  run.

Only DS1 reaches a search (:func:`search_data`); DS2 is read by
:func:`final_test_data`, which needs the loader's explicit confirmation.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from nas_core.errors import ConfigError
from nas_core.estimators.lightning_trainer import ClassificationData

REFERENCE_BEATS = 8
LONG_RR_BEATS = 300
#: RR intervals before ``rr_prev`` whose median is the local reference of the normalised set.
LOCAL_RR_BEATS = 10
N_RR = 8
#: The band the loader filters to by default: the monitoring band, equal to
#: ``nas_ecg.budget.BANDS["monitoring"]`` and to ``nas_data.mitdb.MONITORING_BAND``.
MONITORING_BAND: tuple[float, float] = (0.67, 40.0)
#: Columns of the ``rr`` input with ``rr_features="normalised"`` (all dimensionless).
RR_NORMALISED: tuple[str, ...] = (
    "prev_local",   # rr_prev / ref_local
    "next_local",   # rr_next / ref_local        (one beat of latency)
    "prev_long",    # rr_prev / ref_long
    "next_long",    # rr_next / ref_long         (one beat of latency)
    "next_prev",    # rr_next / rr_prev          (one beat of latency)
    "prev_before",  # rr_prev / rr_prev of the previous beat
    "local_long",   # ref_local / ref_long
    "local_mad",    # median |d - ref_local| / ref_local over the local intervals
)
#: Columns of the ``rr`` input with ``rr_features="raw"`` (seconds, or ratios).
RR_RAW: tuple[str, ...] = (
    "rr_prev", "rr_next", "rr_local", "rr_prev_ratio", "rr_next_ratio", "rr_long", "prev_long_ratio", "next_prev_ratio",
)
#: The values ``rr_features`` may take.
RR_FEATURE_SETS: tuple[str, ...] = ("normalised", "raw")
CLASSES = ("N", "S", "V", "F", "Q")
#: classes averaged in the macro-F1 that searches optimise (Q: 8 beats in DS1, 7 in DS2)
F1_CLASSES = (0, 1, 2, 3)


def _loader(data_dir: str | os.PathLike | None, cache_dir: str | os.PathLike | None, download: bool = False):
    from nas_data.mitdb import MitBih

    return MitBih(data_dir, cache_dir=cache_dir, download=download)


def _causal_mean(values: np.ndarray, n: int) -> np.ndarray:
    """Mean of the up to ``n`` values ending at each position (inclusive)."""
    cum = np.concatenate([[0.0], np.cumsum(values, dtype=np.float64)])
    i = np.arange(1, len(values) + 1)
    lo = np.maximum(0, i - n)
    return (cum[i] - cum[lo]) / (i - lo)


def _running_reference(x: np.ndarray, k: int) -> np.ndarray:
    """Median of the previous ``k`` beats (the first beat uses itself)."""
    out = np.empty_like(x)
    out[0] = x[0]
    for i in range(1, len(x)):
        out[i] = np.median(x[max(0, i - k):i], axis=0)
    return out


def _check_rr_features(rr_features: str) -> str:
    if not isinstance(rr_features, str) or rr_features not in RR_FEATURE_SETS:
        raise ConfigError(
            f"rr_features={rr_features!r} is not an RR feature set; choose one of {', '.join(RR_FEATURE_SETS)} "
            f"('normalised': ratios to the patient's own past rhythm, 'raw': the earlier set with seconds)"
        )
    return rr_features


def _past_windows(values: np.ndarray, n: int) -> np.ndarray:
    """Row ``i``: the up to ``n`` values *before* position ``i`` (``values[i-n:i]``), NaN-padded on the left.

    Position 0 has no past; its row holds ``values[0]`` itself.
    """
    v = np.asarray(values, dtype=np.float64)
    padded = np.concatenate([np.full(n, np.nan), v])
    windows = np.lib.stride_tricks.sliding_window_view(padded, n)[: len(v)].copy()
    if len(v):
        windows[0, -1] = v[0]
    return windows


def _past_median(values: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Median of the up to ``n`` values before each position, and their median absolute deviation."""
    windows = _past_windows(values, n)
    med, mad = np.empty(len(windows)), np.empty(len(windows))
    for rows, median in ((slice(0, n), np.nanmedian), (slice(n, None), np.median)):  # full windows hold no NaN
        w = windows[rows]
        if len(w):
            med[rows] = median(w, axis=1)
            mad[rows] = median(np.abs(w - med[rows, None]), axis=1)
    return med, mad


def normalised_rr(rr_prev: np.ndarray, rr_next: np.ndarray) -> np.ndarray:
    """The :data:`RR_NORMALISED` features of one record's beats, in beat order.

    ``rr_prev[i]`` is the interval ending at beat ``i``, ``rr_next[i]`` the one
    starting there (the loader's first two columns). Beat ``i``'s references
    use ``rr_prev[:i]`` only, i.e. intervals that ended at beat ``i - 1`` or
    earlier; the first beat, with no past, uses its own ``rr_prev``.
    """
    prev = np.asarray(rr_prev, dtype=np.float64)
    nxt = np.asarray(rr_next, dtype=np.float64)
    ref_local, mad_local = _past_median(prev, LOCAL_RR_BEATS)
    ref_long, _ = _past_median(prev, LONG_RR_BEATS)
    before = np.concatenate([prev[:1], prev[:-1]])
    return np.stack(
        [
            prev / ref_local,
            nxt / ref_local,
            prev / ref_long,
            nxt / ref_long,
            nxt / prev,
            prev / before,
            ref_local / ref_long,
            mad_local / ref_local,
        ],
        axis=1,
    )


def raw_rr(rr: np.ndarray) -> np.ndarray:
    """The :data:`RR_RAW` features of one record's beats from the loader's 5 RR columns."""
    prev, nxt = rr[:, 0].astype(np.float64), rr[:, 1].astype(np.float64)
    long = _causal_mean(prev, LONG_RR_BEATS)
    return np.concatenate([rr.astype(np.float64), np.stack([long, prev / long, nxt / prev], axis=1)], axis=1)


def beat_inputs(
    x: np.ndarray, rr: np.ndarray, record: np.ndarray, *, rr_features: str = "normalised"
) -> tuple[np.ndarray, np.ndarray]:
    """Two-channel windows and the :data:`N_RR` RR features, computed record by record in beat order.

    ``rr`` holds the loader's columns (``nas_data.mitdb.RR_FEATURES``: rr_prev,
    rr_next, rr_local, and the two ratios); ``rr_features`` picks
    ``"normalised"`` (:data:`RR_NORMALISED`) or ``"raw"`` (:data:`RR_RAW`).

    Raises:
        ConfigError: an unknown ``rr_features``.
    """
    kind = _check_rr_features(rr_features)
    xs = np.empty((len(x), 2, x.shape[1]), dtype=np.float32)
    feats = np.empty((len(x), N_RR), dtype=np.float32)
    for rec in dict.fromkeys(record.tolist()):
        idx = np.flatnonzero(record == rec)
        xr = x[idx]
        xs[idx, 0] = xr
        xs[idx, 1] = xr - _running_reference(xr, REFERENCE_BEATS)
        if kind == "normalised":
            feats[idx] = normalised_rr(rr[idx, 0], rr[idx, 1])
        else:
            feats[idx] = raw_rr(rr[idx])
    return xs, feats


@dataclass(frozen=True)
class EcgArrays:
    x: np.ndarray   # (n, 2, L) float32
    rr: np.ndarray  # (n, 8) float32
    y: np.ndarray   # (n,) int64
    record: np.ndarray
    fs_hz: float


def _arrays(beats, rr_features: str) -> EcgArrays:
    xs, feats = beat_inputs(beats.x, beats.rr, beats.record, rr_features=rr_features)
    return EcgArrays(xs, feats, beats.y.astype(np.int64), beats.record, beats.fs_hz)


def search_arrays(fs_hz: float, *, data_dir=None, cache_dir=None, val_records: Sequence[str] | None = None,
                  download: bool = False, band: Sequence[float] | None = MONITORING_BAND,
                  rr_features: str = "normalised") -> tuple[EcgArrays, EcgArrays]:
    """DS1 only: training records and whole held-out validation records.

    ``band`` goes to the loader (``(f_low, f_high)`` in Hz, or ``None`` for no
    band filter); ``rr_features`` is ``"normalised"`` or ``"raw"`` (see the
    module docstring). Both are checked before any record is read.
    """
    _check_rr_features(rr_features)
    mit = _loader(data_dir, cache_dir, download)
    kwargs = {} if val_records is None else {"val_records": tuple(val_records)}
    train, val = mit.search_splits(fs_hz, band=band, **kwargs)
    return _arrays(train, rr_features), _arrays(val, rr_features)


def search_data(fs_hz: float, *, data_dir=None, cache_dir=None, val_records=None, download=False,
                band: Sequence[float] | None = MONITORING_BAND, rr_features: str = "normalised") -> ClassificationData:
    """:func:`search_arrays` as the trainer's :class:`ClassificationData` (inputs ``(x, rr)``)."""
    train, val = search_arrays(fs_hz, data_dir=data_dir, cache_dir=cache_dir, val_records=val_records,
                               download=download, band=band, rr_features=rr_features)
    return ClassificationData((train.x, train.rr), train.y, (val.x, val.rr), val.y, n_classes=len(CLASSES))


def final_test_data(fs_hz: float, *, purpose: str, data_dir=None, cache_dir=None,
                    band: Sequence[float] | None = MONITORING_BAND, rr_features: str = "normalised") -> EcgArrays:
    """DS2, for the one final evaluation of chosen models (logged by the loader).

    Pass the ``band`` and ``rr_features`` the model was searched and trained with.
    """
    from nas_data.mitdb import FINAL_EVALUATION

    _check_rr_features(rr_features)
    mit = _loader(data_dir, cache_dir)
    return _arrays(mit.final_test_set(fs_hz, confirm=FINAL_EVALUATION, purpose=purpose, band=band), rr_features)


def default_data_dir() -> Path | None:
    env = os.environ.get("MITDB_DIR")
    return Path(env) if env else None
