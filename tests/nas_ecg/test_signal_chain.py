"""The ECG signal chain: band-limiting to the declared clinical band before resampling.

The filter's response is checked twice: from its sections (``scipy.signal.sosfreqz``;
the zero-phase filter applies ``|H|^2``) and empirically, by passing sinusoids
through the loader's own preprocessing function at several output rates.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nas_core.errors import ConfigError
from nas_data import mitdb
from nas_data.mitdb import MONITORING_BAND, BeatSet, band_filter, band_limit, preprocess_signal

MITDB = Path(os.environ.get("MITDB_DIR") or Path(__file__).resolve().parents[2].parent / "shared" / "data" / "mitdb")
needs_data = pytest.mark.skipif(not (MITDB / "100.hea").is_file(), reason=f"MIT-BIH not found at {MITDB}; set MITDB_DIR")


def _zero_phase_db(band, freqs, fs=360.0):
    """dB magnitude of the filter as applied (forward and backward: |H|^2)."""
    from scipy.signal import sosfreqz

    _, h = sosfreqz(band_filter(band, fs), worN=np.asarray(freqs, dtype=float), fs=fs)
    return 20 * np.log10(np.abs(h) ** 2)


def _tone_db(signal: np.ndarray, f: float, fs: float, skip_s: float = 10.0) -> float:
    """Amplitude (dB re 1) of the f-Hz component, least-squares fit away from the edges."""
    k = np.arange(len(signal)) / fs
    mid = slice(int(skip_s * fs), len(signal) - int(skip_s * fs))
    basis = np.stack([np.sin(2 * np.pi * f * k[mid]), np.cos(2 * np.pi * f * k[mid])], axis=1)
    coef, *_ = np.linalg.lstsq(basis, signal[mid], rcond=None)
    return float(20 * np.log10(np.hypot(*coef)))


def _tone(f: float, seconds: float = 60.0) -> np.ndarray:
    return np.sin(2 * np.pi * f * np.arange(int(seconds * 360)) / 360.0)


# --------------------------------------------------------------------------- the band is the plugin's


def test_monitoring_band_matches_the_budget_and_the_plugin() -> None:
    from nas_ecg import data
    from nas_ecg.budget import BANDS

    assert mitdb.MONITORING_BAND == BANDS["monitoring"] == data.MONITORING_BAND == (0.67, 40.0)
    assert mitdb.DEFAULT_BAND == MONITORING_BAND


def test_data_layer_does_not_import_the_plugin() -> None:
    code = "import sys, nas_data.mitdb; print(sorted(m for m in sys.modules if m.startswith('nas_ecg')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --------------------------------------------------------------------------- the filter's own response


def test_monitoring_filter_response_from_its_sections() -> None:
    lo, hi = MONITORING_BAND
    db = dict(zip(["lo", "hi", "pass", "2hi", "100", "wander", "mains"],
                  _zero_phase_db(MONITORING_BAND, [lo, hi, 10.0, 2 * hi, 100.0, 0.2, 60.0])))
    assert abs(db["lo"] + 3.0) < 0.05 and abs(db["hi"] + 3.0) < 0.05  # -3 dB at both band edges
    assert abs(db["pass"]) < 0.01  # flat passband
    assert db["2hi"] < -45.0  # -50.4 dB at 80 Hz
    assert db["100"] < -70.0  # -74.8 dB at 100 Hz
    assert db["wander"] < -30.0  # -34.5 dB at 0.2 Hz (respiration)
    assert db["mains"] < -20.0  # -24.9 dB at 60 Hz
    # monotone roll-off on both sides of the band
    above = _zero_phase_db(MONITORING_BAND, np.linspace(hi, 179.0, 200))
    below = _zero_phase_db(MONITORING_BAND, np.linspace(0.01, lo, 200))
    assert np.all(np.diff(above) < 0) and np.all(np.diff(below) > 0)


@pytest.mark.parametrize("band, fs", [((0.5, 25.0), 360.0), ((0.05, 150.0), 360.0), ((1.0, 40.0), 125.0)])
def test_edges_are_minus_3_db_for_other_bands_and_rates(band, fs) -> None:
    edge_db = _zero_phase_db(band, band, fs)
    np.testing.assert_allclose(edge_db, [-3.0, -3.0], atol=0.05)


def test_low_pass_only_when_f_low_is_zero() -> None:
    sos = band_filter((0.0, 40.0))
    assert len(sos) == mitdb.BAND_FILTER["lowpass_order"] // 2  # no high-pass sections
    from scipy.signal import sosfreqz

    _, h = sosfreqz(sos, worN=[0.0, 40.0], fs=360.0)
    np.testing.assert_allclose(20 * np.log10(np.abs(h) ** 2), [0.0, -3.0], atol=0.05)


def test_filter_spec_is_stated() -> None:
    spec = dict(mitdb.BAND_FILTER)
    assert spec["design"] == "butterworth" and spec["application"] == "sosfiltfilt"
    assert (spec["highpass_order"], spec["lowpass_order"]) == (2, 4)
    assert band_filter(MONITORING_BAND).shape == (3, 6)  # 1 high-pass + 2 low-pass biquads


# --------------------------------------------------------------------------- empirically, through the chain


@pytest.mark.parametrize("fs", [360.0, 281.0, 180.0, 125.0, 100.0])
def test_sinusoids_through_the_preprocessing_match_the_band(fs: float) -> None:
    lo, hi = MONITORING_BAND
    expect = {lo: (-3.0, 0.1), 10.0: (0.0, 0.1), hi: (-3.0, 0.1)}
    for f, (target, tol) in expect.items():
        out, fs_out = preprocess_signal(_tone(f), fs)
        assert fs_out == fs
        assert abs(_tone_db(out, f, fs_out) - target) < tol, f
    out, fs_out = preprocess_signal(_tone(0.2), fs)
    assert _tone_db(out, 0.2, fs_out) < -30.0
    for f in (2 * hi, 100.0):
        if f < fs / 2:  # representable at this rate: the band filter must have removed it
            out, fs_out = preprocess_signal(_tone(f), fs)
            assert _tone_db(out, f, fs_out) < (-45.0 if f == 2 * hi else -70.0), f


def test_without_a_band_a_281_hz_model_saw_content_far_above_40_hz() -> None:
    # the defect the band fixes: with band=None only the resampler low-passes (at 140.5 Hz)
    for f in (80.0, 100.0):
        unfiltered, fs_out = preprocess_signal(_tone(f), 281.0, band=None)
        filtered, _ = preprocess_signal(_tone(f), 281.0)
        assert _tone_db(unfiltered, f, fs_out) > -0.5
        assert _tone_db(filtered, f, fs_out) < -45.0


def test_band_limit_keeps_the_r_peak_in_place() -> None:
    # zero phase: a QRS-like pulse is not shifted (a causal filter would delay it by its group delay)
    t = np.arange(20 * 360)
    pulse = 1.5 * np.exp(-0.5 * ((t - 3600) / 4.0) ** 2)
    out = band_limit(pulse, MONITORING_BAND)
    assert int(np.argmax(out)) == 3600
    assert 0.9 < out.max() / pulse.max() <= 1.0


def test_the_chain_rejects_bad_bands_clearly() -> None:
    with pytest.raises(ConfigError, match=r"f_high = 150 Hz is not below the Nyquist frequency 140.5 Hz of fs_hz=281"):
        preprocess_signal(_tone(10.0, 2.0), 281.0, band=(0.05, 150.0))
    with pytest.raises(ConfigError, match="not below f_high"):
        preprocess_signal(_tone(10.0, 2.0), 180.0, band=(40.0, 0.67))
    with pytest.raises(ConfigError, match="negative"):
        band_filter((-1.0, 40.0))
    with pytest.raises(ConfigError, match="band=None"):
        band_filter(None)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- the plugin passes the band through


class _FakeLoader:
    """Stands in for MitBih: records the band it is asked for, serves two tiny records."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []

    @staticmethod
    def _beats(records: tuple[str, ...]) -> BeatSet:
        n = 12
        r = np.cumsum(np.full(n, 300))
        rr = mitdb.rr_features(r, 360)
        parts = [BeatSet(x=np.zeros((n, 10), np.float32), rr=rr, y=np.zeros(n, np.int64),
                         record=np.full(n, name), fs_hz=180.0) for name in records]
        return BeatSet.concatenate(parts)

    def search_splits(self, fs_hz, *, band, **kwargs):
        self.calls.append(("search_splits", band))
        return self._beats(("101", "106")), self._beats(("114",))

    def final_test_set(self, fs_hz, *, confirm, purpose, band):
        self.calls.append(("final_test_set", band))
        return self._beats(("100",))


def test_plugin_data_functions_pass_the_band_to_the_loader(monkeypatch: pytest.MonkeyPatch) -> None:
    from nas_ecg import data

    fake = _FakeLoader()
    monkeypatch.setattr(data, "_loader", lambda *args, **kwargs: fake)
    data.search_arrays(180.0)
    data.search_data(180.0, band=(0.5, 30.0))
    data.search_arrays(180.0, band=None)
    data.final_test_data(180.0, purpose="pytest", band=(1.0, 35.0))
    data.final_test_data(180.0, purpose="pytest")
    assert fake.calls == [
        ("search_splits", MONITORING_BAND),
        ("search_splits", (0.5, 30.0)),
        ("search_splits", None),
        ("final_test_set", (1.0, 35.0)),
        ("final_test_set", MONITORING_BAND),
    ]


@needs_data
def test_plugin_data_refuses_a_bad_band_before_reading(tmp_path: Path) -> None:
    from nas_ecg.data import search_arrays

    with pytest.raises(ConfigError, match="Nyquist frequency 90 Hz of fs_hz=180"):
        search_arrays(180.0, data_dir=MITDB, cache_dir=tmp_path, band=(0.67, 100.0))
    assert not list(tmp_path.glob("*.npz"))
