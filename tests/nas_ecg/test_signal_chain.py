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


# --------------------------------------------------------------------------- RR features: normalised to the patient


def _rr_of(times_s, fs=360.0) -> np.ndarray:
    return mitdb.rr_features(np.round(np.asarray(times_s) * fs).astype(np.int64), fs)


def _features(rr: np.ndarray, kind: str = "normalised", records: np.ndarray | None = None) -> np.ndarray:
    from nas_ecg.data import beat_inputs

    n = len(rr)
    record = np.full(n, "900") if records is None else records
    _, feats = beat_inputs(np.zeros((n, 4), np.float32), rr, record, rr_features=kind)
    return feats


def test_both_rr_sets_keep_the_input_shape() -> None:
    from nas_ecg import data, space

    assert len(data.RR_NORMALISED) == len(data.RR_RAW) == data.N_RR == space.N_RR == 8
    rr = _rr_of([0, 1, 2, 2.5, 3.5])
    for kind in data.RR_FEATURE_SETS:
        feats = _features(rr, kind)
        assert feats.shape == (5, 8) and feats.dtype == np.float32


def test_normalised_rr_hand_computed() -> None:
    # beats at 0, 1, 2, 2.5, 3.5, 4.5, 5.5 s: intervals 1, 1, 0.5, 1, 1, 1; beat 3 is premature
    feats = _features(_rr_of([0, 1, 2, 2.5, 3.5, 4.5, 5.5]))
    # columns: prev/local, next/local, prev/long, next/long, next/prev, prev/prev_before, local/long, local MAD
    expected = np.array([
        [1, 1, 1, 1, 1, 1, 1, 0],            # first beat: its own rr_prev is the reference
        [1, 1, 1, 1, 1, 1, 1, 0],
        [1, 0.5, 1, 0.5, 0.5, 1, 1, 0],      # the next beat comes early: only the rr_next columns see it
        [0.5, 1, 0.5, 1, 2, 0.5, 1, 0],      # premature: references are the past intervals 1, 1, 1
        [1, 1, 1, 1, 1, 2, 1, 0],            # past 1, 1, 1, 0.5: median 1, MAD 0 (one ectopic does not move it)
        [1, 1, 1, 1, 1, 1, 1, 0],
        [1, 1, 1, 1, 1, 1, 1, 0],
    ])
    np.testing.assert_allclose(feats, expected, rtol=1e-6)


def test_normalised_rr_irregularity_and_window_caps(monkeypatch: pytest.MonkeyPatch) -> None:
    from nas_ecg import data

    # intervals 1.0, 0.8, 1.2, 0.9: the last beat's past intervals are 1, 1, 0.8, 1.2 (the first one is the
    # loader's fill-in for beat 0): median 1.0, absolute deviations 0, 0, 0.2, 0.2, MAD 0.1
    last = _features(_rr_of([0, 1.0, 1.8, 3.0, 3.9]))[-1]
    np.testing.assert_allclose(last, [0.9, 0.9, 0.9, 0.9, 1.0, 0.75, 1.0, 0.1], rtol=1e-5)
    # with a local window of 2 and a long window of 4 intervals, after the rate doubles:
    monkeypatch.setattr(data, "LOCAL_RR_BEATS", 2)
    monkeypatch.setattr(data, "LONG_RR_BEATS", 4)
    feats = _features(_rr_of([0, 1, 2, 3, 4, 4.5, 5, 5.5]))
    # beat 5 (t = 4.5): past 1, 1, 1, 1, 1 -> local 1, long 1
    np.testing.assert_allclose(feats[5], [0.5, 0.5, 0.5, 0.5, 1, 0.5, 1, 0], rtol=1e-6)
    # beat 7 (t = 5.5): local = median(0.5, 0.5) = 0.5, long = median(1, 1, 0.5, 0.5) = 0.75
    np.testing.assert_allclose(feats[7], [1, 1, 2 / 3, 2 / 3, 1, 1, 2 / 3, 0], rtol=1e-6)


def _random_beats(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    intervals = rng.uniform(0.5, 1.3, n - 1)
    intervals[rng.random(n - 1) < 0.1] *= 0.6  # some premature beats
    return np.concatenate([[0.3], 0.3 + np.cumsum(intervals)])


NEXT_COLUMNS = {"normalised": {1, 3, 4}, "raw": {1, 4, 7}}  # the columns that use rr_next


@pytest.mark.parametrize("kind", ["normalised", "raw"])
def test_rr_features_are_causal(kind: str) -> None:
    times = _random_beats(400, seed=1)
    base = _features(_rr_of(times), kind)
    for j in (2, 3, 17, 150, 398):
        moved = times.copy()
        moved[j] = times[j] - 0.4 * (times[j] - times[j - 1])  # beat j comes earlier: a premature beat
        feats = _features(_rr_of(moved), kind)
        np.testing.assert_array_equal(feats[: j - 1], base[: j - 1])  # nothing before the previous beat changes
        same = [c for c in range(8) if c not in NEXT_COLUMNS[kind]]
        np.testing.assert_array_equal(feats[j - 1, same], base[j - 1, same])  # ... and only its rr_next columns
        assert not np.array_equal(feats[j - 1], base[j - 1])
        assert not np.array_equal(feats[j], base[j])


def test_rr_features_never_mix_records() -> None:
    a, b = _random_beats(60, seed=2), _random_beats(80, seed=3)
    rr = np.concatenate([_rr_of(a), _rr_of(b)])
    records = np.array(["101"] * 60 + ["106"] * 80)
    together = _features(rr, records=records)
    np.testing.assert_array_equal(together[60:], _features(_rr_of(b)))
    b2 = b * 1.1
    changed = _features(np.concatenate([_rr_of(a), _rr_of(b2)]), records=records)
    np.testing.assert_array_equal(changed[:60], together[:60])


def test_normalised_rr_is_scale_invariant_and_raw_is_not() -> None:
    times = _random_beats(500, seed=4)
    positions = np.round(times * 360).astype(np.int64)
    rr = mitdb.rr_features(positions, 360)
    slower = mitdb.rr_features(positions, 360 / 1.3)  # every RR interval of the record times 1.3
    np.testing.assert_allclose(slower[:, :2], rr[:, :2] * 1.3, rtol=1e-6)
    np.testing.assert_allclose(_features(slower), _features(rr), rtol=1e-5, atol=1e-7)
    assert not np.allclose(_features(slower, "raw"), _features(rr, "raw"), rtol=1e-3)


def test_raw_rr_set_is_unchanged() -> None:
    # the set of earlier versions: the loader's 5 columns, a causal mean of up to 300 rr_prev, prev/long, next/prev
    from nas_ecg.data import _causal_mean

    rr = _rr_of(_random_beats(700, seed=5))
    prev, nxt = rr[:, 0].astype(np.float64), rr[:, 1].astype(np.float64)
    long = np.array([prev[max(0, i - 299): i + 1].mean() for i in range(len(prev))])
    np.testing.assert_allclose(_causal_mean(prev, 300), long, rtol=1e-12)
    expected = np.concatenate([rr, np.stack([long, prev / long, nxt / prev], axis=1)], axis=1).astype(np.float32)
    np.testing.assert_allclose(_features(rr, "raw"), expected, rtol=1e-6)


@pytest.mark.parametrize("bad", ["ratio", "Raw", "normalized", "", None, 1])
def test_unknown_rr_feature_set_is_a_config_error(bad: object, monkeypatch: pytest.MonkeyPatch) -> None:
    from nas_ecg import data

    fake = _FakeLoader()
    monkeypatch.setattr(data, "_loader", lambda *args, **kwargs: fake)
    rr = _rr_of([0, 1, 2])
    with pytest.raises(ConfigError, match=r"rr_features=.*normalised, raw"):
        data.beat_inputs(np.zeros((3, 4), np.float32), rr, np.full(3, "900"), rr_features=bad)  # type: ignore[arg-type]
    for call in (lambda: data.search_arrays(180.0, rr_features=bad),
                 lambda: data.search_data(180.0, rr_features=bad),
                 lambda: data.final_test_data(180.0, purpose="pytest", rr_features=bad)):
        with pytest.raises(ConfigError, match="rr_features="):
            call()
    assert fake.calls == []  # refused before the loader was asked for anything


def test_plugin_data_functions_pass_rr_features_through(monkeypatch: pytest.MonkeyPatch) -> None:
    from nas_ecg import data

    fake = _FakeLoader()
    monkeypatch.setattr(data, "_loader", lambda *args, **kwargs: fake)
    train, _ = data.search_arrays(180.0)
    np.testing.assert_allclose(train.rr[:, 0], 1.0, rtol=1e-6)  # regular rhythm: prev / local reference = 1
    raw, _ = data.search_arrays(180.0, rr_features="raw")
    np.testing.assert_allclose(raw.rr[:, 0], 300 / 360, rtol=1e-6)  # seconds
    test = data.final_test_data(180.0, purpose="pytest", rr_features="raw")
    np.testing.assert_allclose(test.rr[:, 0], 300 / 360, rtol=1e-6)


@needs_data
def test_normalised_rr_on_ds1_separates_premature_beats(tmp_path: Path) -> None:
    from nas_ecg.data import RR_NORMALISED, search_arrays

    train, val = search_arrays(180.0, data_dir=MITDB, cache_dir=tmp_path)
    for part in (train, val):
        assert np.all(np.isfinite(part.rr))
        assert np.all(part.rr[:, :7] > 0) and np.all(part.rr[:, 7] >= 0)
    rr = np.concatenate([train.rr, val.rr])
    y = np.concatenate([train.y, val.y])
    prev_long = rr[:, RR_NORMALISED.index("prev_long")]
    assert 0.95 < np.median(prev_long[y == 0]) < 1.05  # N beats: at the patient's own rhythm (1.005)
    assert np.median(prev_long[y == 1]) < 0.7  # S beats: premature relative to the patient's own past (0.640)
    # rank-based AUC of "S has the shorter prev_long" among N and S beats (0.985 on DS1)
    n_vals, s_vals = np.sort(prev_long[y == 0]), prev_long[y == 1]
    auc = np.mean(len(n_vals) - np.searchsorted(n_vals, s_vals, side="right")) / len(n_vals)
    assert auc > 0.95
