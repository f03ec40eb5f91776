"""Model inputs for ECG beat classification, built on :mod:`nas_data.mitdb`.

The loader band-limits the MLII lead to a clinical band before resampling;
:func:`search_arrays`, :func:`search_data` and :func:`final_test_data` take it
as ``band`` (default :data:`MONITORING_BAND`, 0.67-40 Hz, the same pair as
``budget.BANDS["monitoring"]``; ``None``: no band filter, median baseline
removal only). Each beat then becomes two inputs:

* ``x``: ``(2, L)`` -- channel 0 the MLII beat window (band-limited, which
  removes the baseline wander; in mV), channel 1 the beat minus the running median of the previous
  :data:`REFERENCE_BEATS` beats of the same record. The second channel is a
  label-free, *causal* patient reference (past beats only, so a device can
  compute it in real time): it shows how this beat differs from the patient's
  recent beats, which helps with morphologies never seen in training.
* ``rr``: ``(8,)`` RR features: the loader's previous, next and local-average RR
  and their two ratios, plus a long causal average over the previous
  :data:`LONG_RR_BEATS` beats and the ratios previous/long and next/previous.
  RR intervals normalised by the patient's own rhythm carry most of the
  information that separates S beats from N beats (de Chazal 2004; see
  ECG-NOTES). All of them are causal except ``rr_next``, which costs one beat of
  latency on a device.

Only DS1 reaches a search (:func:`search_data`); DS2 is read by
:func:`final_test_data`, which needs the loader's explicit confirmation.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from nas_core.estimators.lightning_trainer import ClassificationData

REFERENCE_BEATS = 8
LONG_RR_BEATS = 300
N_RR = 8
#: The band the loader filters to by default: the monitoring band, equal to
#: ``nas_ecg.budget.BANDS["monitoring"]`` and to ``nas_data.mitdb.MONITORING_BAND``.
MONITORING_BAND: tuple[float, float] = (0.67, 40.0)
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


def beat_inputs(x: np.ndarray, rr: np.ndarray, record: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two-channel windows and the 8 RR features, computed record by record in beat order."""
    xs = np.empty((len(x), 2, x.shape[1]), dtype=np.float32)
    feats = np.empty((len(x), N_RR), dtype=np.float32)
    for rec in dict.fromkeys(record.tolist()):
        idx = np.flatnonzero(record == rec)
        xr = x[idx]
        xs[idx, 0] = xr
        xs[idx, 1] = xr - _running_reference(xr, REFERENCE_BEATS)
        prev, nxt = rr[idx, 0].astype(np.float64), rr[idx, 1].astype(np.float64)
        long = _causal_mean(prev, LONG_RR_BEATS)
        feats[idx, :5] = rr[idx]
        feats[idx, 5] = long
        feats[idx, 6] = prev / long
        feats[idx, 7] = nxt / prev
    return xs, feats


@dataclass(frozen=True)
class EcgArrays:
    x: np.ndarray   # (n, 2, L) float32
    rr: np.ndarray  # (n, 8) float32
    y: np.ndarray   # (n,) int64
    record: np.ndarray
    fs_hz: float


def _arrays(beats) -> EcgArrays:
    xs, feats = beat_inputs(beats.x, beats.rr, beats.record)
    return EcgArrays(xs, feats, beats.y.astype(np.int64), beats.record, beats.fs_hz)


def search_arrays(fs_hz: float, *, data_dir=None, cache_dir=None, val_records: Sequence[str] | None = None,
                  download: bool = False, band: Sequence[float] | None = MONITORING_BAND) -> tuple[EcgArrays, EcgArrays]:
    """DS1 only: training records and whole held-out validation records.

    ``band`` goes to the loader (``(f_low, f_high)`` in Hz, or ``None`` for no
    band filter); it is checked before any record is read.
    """
    mit = _loader(data_dir, cache_dir, download)
    kwargs = {} if val_records is None else {"val_records": tuple(val_records)}
    train, val = mit.search_splits(fs_hz, band=band, **kwargs)
    return _arrays(train), _arrays(val)


def search_data(fs_hz: float, *, data_dir=None, cache_dir=None, val_records=None, download=False,
                band: Sequence[float] | None = MONITORING_BAND) -> ClassificationData:
    """:func:`search_arrays` as the trainer's :class:`ClassificationData` (inputs ``(x, rr)``)."""
    train, val = search_arrays(fs_hz, data_dir=data_dir, cache_dir=cache_dir, val_records=val_records,
                               download=download, band=band)
    return ClassificationData((train.x, train.rr), train.y, (val.x, val.rr), val.y, n_classes=len(CLASSES))


def final_test_data(fs_hz: float, *, purpose: str, data_dir=None, cache_dir=None,
                    band: Sequence[float] | None = MONITORING_BAND) -> EcgArrays:
    """DS2, for the one final evaluation of chosen models (logged by the loader).

    Pass the ``band`` the model was searched and trained with.
    """
    from nas_data.mitdb import FINAL_EVALUATION

    mit = _loader(data_dir, cache_dir)
    return _arrays(mit.final_test_set(fs_hz, confirm=FINAL_EVALUATION, purpose=purpose, band=band))


def default_data_dir() -> Path | None:
    env = os.environ.get("MITDB_DIR")
    return Path(env) if env else None
