"""Tests of the MIT-BIH loader (nas_data.mitdb).

Synthetic tests always run; tests on the real database skip when it is absent.
The database is looked for in MITDB_DIR, else in <repo>/../shared/data/mitdb.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from nas_core.errors import ConfigError
from nas_data import mitdb
from nas_data.mitdb import (
    DEFAULT_VAL_RECORDS,
    DS1,
    DS2,
    FINAL_EVALUATION,
    MONITORING_BAND,
    BeatSet,
    MitBih,
    band_limit,
    beat_windows,
    check_band,
    preprocess_signal,
    remove_baseline,
    resample,
    resample_ratio,
    rr_features,
)

MITDB = Path(os.environ.get("MITDB_DIR") or Path(__file__).resolve().parents[2].parent / "shared/data/mitdb")

DS1_COUNTS = {"N": 45866, "S": 944, "V": 3788, "F": 415, "Q": 8}
DS2_COUNTS = {"N": 44259, "S": 1837, "V": 3221, "F": 388, "Q": 7}
FS = 180.0  # rate of the shared extraction: fast, and a real resampling ratio (1/2)


def _one_line(excinfo: pytest.ExceptionInfo[ConfigError]) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def mitdb_dir() -> Path:
    if not (MITDB.is_dir() and (MITDB / "100.hea").is_file()):
        pytest.skip(f"MIT-BIH not found at {MITDB}; set MITDB_DIR")
    return MITDB


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("nas_cache")


@pytest.fixture(scope="module")
def db(mitdb_dir: Path, cache_dir: Path) -> MitBih:
    return MitBih(mitdb_dir, cache_dir=cache_dir)


@pytest.fixture(scope="module")
def splits(db: MitBih) -> tuple[BeatSet, BeatSet]:
    return db.search_splits(FS)


@pytest.fixture(scope="module")
def test_set(db: MitBih) -> BeatSet:
    return db.final_test_set(FS, confirm=FINAL_EVALUATION, purpose="pytest: DS2 label counts")


def _copy_record(src: Path, dst: Path, name: str, exts=(".hea", ".dat", ".atr")) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for ext in exts:
        shutil.copy(src / f"{name}{ext}", dst / f"{name}{ext}")


# --------------------------------------------------------------------------- synthetic (no data needed)


def test_rr_features_hand_checked() -> None:
    # beats at 0, 1, 2, 2.5, 3.5 s: intervals 1, 1, 0.5, 1
    rr = rr_features(np.array([0, 360, 720, 900, 1260]), 360)
    prev = [1.0, 1.0, 1.0, 0.5, 1.0]  # first beat: nearest interval
    nxt = [1.0, 1.0, 0.5, 1.0, 1.0]  # last beat: nearest interval
    local = [1.0, 1.0, 1.0, 2.5 / 3, 3.5 / 4]  # causal mean of intervals up to the beat
    expected = np.stack([prev, nxt, local, np.divide(prev, local), np.divide(nxt, local)], axis=1)
    assert rr.dtype == np.float32 and rr.shape == (5, len(mitdb.RR_FEATURES))
    np.testing.assert_allclose(rr, expected, rtol=1e-6)


def test_rr_local_average_is_capped_and_causal() -> None:
    r = np.array([0, 100, 200, 300, 350, 450])  # intervals 100, 100, 100, 50, 100 samples
    rr = rr_features(r, 100, local_beats=2)
    np.testing.assert_allclose(rr[:, 2], [1.0, 1.0, 1.0, 1.0, 0.75, 0.75], rtol=1e-6)
    # changing a future beat does not change the causal local average of earlier beats
    later = r.copy()
    later[-1] = 600
    np.testing.assert_array_equal(rr_features(later, 100, local_beats=2)[:5, 2], rr[:5, 2])


def test_rr_features_need_two_beats() -> None:
    with pytest.raises(ConfigError, match="at least 2 beats"):
        rr_features(np.array([10]), 360)


@pytest.mark.parametrize(
    "fs, up, down",
    [(360, 1, 1), (180, 1, 2), (125, 25, 72), (128, 16, 45), (250, 25, 36), (100, 5, 18)],
)
def test_resample_ratio_is_exact_for_integer_rates(fs: float, up: int, down: int) -> None:
    ratio = resample_ratio(fs)
    assert (ratio.numerator, ratio.denominator) == (up, down)


@pytest.mark.parametrize("fs", [361, 500.0, 0, 0.0, -5, float("nan"), float("inf"), "180", True])
def test_bad_rates_are_rejected_naming_the_value(fs: object) -> None:
    with pytest.raises(ConfigError) as excinfo:
        resample_ratio(fs)  # type: ignore[arg-type]
    message = _one_line(excinfo)
    assert f"fs_hz={fs!r}" in message
    assert "360" in message


def test_beat_windows_replicate_edges() -> None:
    signal = np.arange(10.0)
    w = beat_windows(signal, np.array([0, 9, 5]), before=2, after=3)
    np.testing.assert_array_equal(w, [[0, 0, 0, 1, 2], [7, 8, 9, 9, 9], [3, 4, 5, 6, 7]])


def test_remove_baseline_cancels_slow_drift() -> None:
    t = np.arange(20 * 360) / 360
    drift = 0.8 * np.sin(2 * np.pi * 0.2 * t) + 0.3
    out = remove_baseline(drift, 360)
    assert np.abs(out[720:-720]).max() < 0.05


def _write_synthetic_record(folder: Path, name: str = "900") -> tuple[np.ndarray, list[str]]:
    """A 20 s record, V5 stored first, MLII second, with a drifting baseline."""
    import wfdb

    fs = 360
    n = 20 * fs
    t = np.arange(n)
    peaks = np.array([5, 300, 610, 900, 1100, 1450, 1800, 2160, 2500, 2900, 3200, 3560, 3900,
                      4250, 4600, 4950, 5300, 5650, 6000, 6350, 6700, n - 20])
    symbols = ["N", "N", "A", "N", "V", "N", "N", "F", "N", "N", "/", "N", "N",
               "E", "N", "L", "R", "N", "j", "S", "N", "N"]
    mlii = 0.4 * np.sin(2 * np.pi * 0.15 * t / fs)
    for p in peaks:
        mlii = mlii + 1.5 * np.exp(-0.5 * ((t - p) / 4.0) ** 2)
    v5 = -mlii + 0.1 * np.sin(2 * np.pi * 3 * t / fs)
    folder.mkdir(parents=True, exist_ok=True)
    wfdb.wrsamp(name, fs=fs, units=["mV", "mV"], sig_name=["V5", "MLII"],
                p_signal=np.stack([v5, mlii], axis=1), fmt=["212", "212"], write_dir=str(folder))
    ann_samples = np.concatenate([[0, 2000], peaks])
    ann_symbols = ["+", "~"] + symbols
    order = np.argsort(ann_samples, kind="stable")
    wfdb.wrann(name, "atr", ann_samples[order], symbol=[ann_symbols[i] for i in order],
               write_dir=str(folder))
    return peaks, symbols


@pytest.mark.parametrize("fs", [360.0, 180.0, 125.0])
def test_synthetic_record_end_to_end(tmp_path: Path, fs: float) -> None:
    peaks, symbols = _write_synthetic_record(tmp_path / "data")
    db = MitBih(tmp_path / "data", cache_dir=tmp_path / "cache")
    beats = db.beats("900", fs)
    before, after = mitdb.DEFAULT_WINDOW
    centre = round(before * fs)
    assert beats.x.shape == (len(peaks), centre + round(after * fs))
    assert beats.x.dtype == np.float32 and beats.y.dtype == np.int64
    # every beat kept (also at sample 5 and 20 samples before the end), non-beat marks skipped
    expected_y = [mitdb.SYMBOL_TO_CLASS[s] for s in symbols]
    np.testing.assert_array_equal(beats.y, expected_y)
    np.testing.assert_array_equal(beats.sample, peaks)
    assert set(beats.record) == {"900"}
    # MLII chosen by name (V5 is stored first and inverted) and the R peak at the centre offset
    assert np.all(np.abs(beats.x.argmax(axis=1) - centre) <= 1)
    np.testing.assert_allclose(beats.rr, rr_features(peaks, 360), rtol=1e-6)
    assert beats.fs_hz == fs
    assert db.class_counts("900") == {"N": 16, "S": 2, "V": 2, "F": 1, "Q": 1}


def test_standardize_option(tmp_path: Path) -> None:
    _write_synthetic_record(tmp_path / "data")
    db = MitBih(tmp_path / "data", cache_dir=tmp_path / "cache")
    raw = db.beats("900", 180)
    z = db.beats("900", 180, standardize=True)
    np.testing.assert_allclose(z.x.mean(axis=1), 0, atol=1e-5)
    np.testing.assert_allclose(z.x.std(axis=1), 1, atol=1e-3)
    assert raw.x.max() > 1.0  # default keeps mV
    assert len(list((tmp_path / "cache").glob("900_180hz_*.npz"))) == 2  # options are part of the key


def test_resample_keeps_peak_time() -> None:
    t = np.arange(3600)
    x = np.exp(-0.5 * ((t - 1234) / 5.0) ** 2)
    y, fs = resample(x, 125)
    assert fs == 125.0
    assert abs(int(np.argmax(y)) - round(1234 * 125 / 360)) <= 1


def test_bad_window_is_rejected(tmp_path: Path) -> None:
    _write_synthetic_record(tmp_path / "data")
    db = MitBih(tmp_path / "data", cache_dir=tmp_path / "cache")
    for window in [(0.25,), (-0.1, 0.4), (0.2, 0.0), ("a", "b")]:
        with pytest.raises(ConfigError, match="window="):
            db.beats("900", 180, window=window)  # type: ignore[arg-type]


def test_bad_record_names_are_rejected(tmp_path: Path) -> None:
    _write_synthetic_record(tmp_path / "data")
    db = MitBih(tmp_path / "data", cache_dir=tmp_path / "cache")
    for records in [["../900"], [], ["900", "900"], [1.5]]:
        with pytest.raises(ConfigError):
            db.beats(records, 180)  # type: ignore[arg-type]


def test_missing_dir_names_it_and_mitdb_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(ConfigError) as excinfo:
        MitBih(missing, cache_dir=tmp_path / "cache")
    message = _one_line(excinfo)
    assert str(missing) in message and "MITDB_DIR" in message and "download" in message
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=re.escape(str(tmp_path / "empty"))):
        MitBih(tmp_path / "empty", cache_dir=tmp_path / "cache")
    monkeypatch.delenv("MITDB_DIR", raising=False)
    with pytest.raises(ConfigError, match="MITDB_DIR"):
        MitBih(cache_dir=tmp_path / "cache")
    monkeypatch.setenv("MITDB_DIR", str(missing))
    with pytest.raises(ConfigError, match=re.escape(str(missing))):
        MitBih(cache_dir=tmp_path / "cache")


def test_default_cache_dir_never_beside_the_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write_synthetic_record(tmp_path / "data")
    monkeypatch.setenv("NAS_CACHE_DIR", str(tmp_path / "env_cache"))
    assert MitBih(tmp_path / "data").cache_dir == (tmp_path / "env_cache" / "mitdb").resolve()
    monkeypatch.delenv("NAS_CACHE_DIR")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    home_cache = tmp_path / "home" / ".cache" / "nas_core" / "mitdb"
    assert MitBih(tmp_path / "data").cache_dir == home_cache.resolve()


def test_failed_download_is_a_config_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import wfdb

    calls = []

    def offline(db_dir: str, dl_dir: str, **kwargs: object) -> None:
        calls.append((db_dir, dl_dir))
        raise OSError("Name or service not known")

    monkeypatch.setattr(wfdb, "dl_database", offline)
    target = tmp_path / "dl"
    with pytest.raises(ConfigError) as excinfo:
        MitBih(target, download=True, cache_dir=tmp_path / "cache")
    assert calls == [("mitdb", str(target.resolve()))]
    message = _one_line(excinfo)
    assert str(target.resolve()) in message and "Name or service not known" in message


# --------------------------------------------------------------------------- real database


def test_download_path_uses_wfdb(mitdb_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import wfdb

    calls = []

    def fake_dl(db_dir: str, dl_dir: str, **kwargs: object) -> None:
        calls.append((db_dir, dl_dir))
        for f in mitdb_dir.iterdir():
            if f.suffix in {".hea", ".dat", ".atr"}:
                os.symlink(f, Path(dl_dir) / f.name)

    monkeypatch.setattr(wfdb, "dl_database", fake_dl)
    target = tmp_path / "dl"
    db = MitBih(target, download=True, cache_dir=tmp_path / "cache")
    assert calls == [("mitdb", str(target.resolve()))]
    assert db.class_counts("101")["N"] == 1860
    MitBih(target, download=True, cache_dir=tmp_path / "cache")  # records present: no second download
    assert len(calls) == 1


def test_class_counts_match_the_standard(db: MitBih) -> None:
    assert db.class_counts(DS1) == DS1_COUNTS
    assert db.class_counts(DS2) == DS2_COUNTS


def test_extracted_labels_match_the_standard(
    splits: tuple[BeatSet, BeatSet], test_set: BeatSet
) -> None:
    train, val = splits
    ds1 = BeatSet.concatenate([train, val])
    assert ds1.class_counts() == DS1_COUNTS
    assert test_set.class_counts() == DS2_COUNTS
    for beats in (train, val, test_set):
        assert beats.x.shape == (len(beats), round(0.25 * FS) + round(0.45 * FS))
        assert beats.rr.shape == (len(beats), 5) and np.all(np.isfinite(beats.rr)) and np.all(beats.rr > 0)
        assert beats.fs_hz == FS
    assert set(test_set.record) == set(DS2)


def test_validation_records_are_held_out_whole(splits: tuple[BeatSet, BeatSet]) -> None:
    train, val = splits
    assert set(val.record) == set(DEFAULT_VAL_RECORDS)
    assert set(train.record) == set(DS1) - set(DEFAULT_VAL_RECORDS)
    assert not set(train.record) & set(val.record)
    counts = val.class_counts()
    assert counts["S"] > 0 and counts["V"] > 0 and counts["F"] > 0


def test_val_records_must_be_ds1(db: MitBih) -> None:
    with pytest.raises(ConfigError, match=r"validation record 100 is a DS2"):
        db.search_splits(FS, val_records=("101", "100"))
    with pytest.raises(ConfigError, match=r"validation record 102 is not a DS1"):
        db.search_splits(FS, val_records=("102",))
    with pytest.raises(ConfigError, match="every DS1 record"):
        db.search_splits(FS, val_records=DS1)


def test_lead_is_chosen_by_name_on_114(db: MitBih, mitdb_dir: Path) -> None:
    import wfdb

    beats = db.beats("114", 360)
    unfiltered = db.beats("114", 360, band=None)
    rec = wfdb.rdrecord(str(mitdb_dir / "114"))
    assert rec.sig_name == ["V5", "MLII"]
    ann_samples = beats.sample
    for lead, should_match in (("MLII", True), ("V5", False)):
        lead_mv = rec.p_signal[:, rec.sig_name.index(lead)]
        # the default chain at 360 Hz (no resampling): the monitoring band-pass alone
        windows = beat_windows(band_limit(lead_mv, MONITORING_BAND, 360), ann_samples, 90, 162).astype(np.float32)
        assert np.allclose(windows, beats.x, atol=1e-5) == should_match
        # band=None: the median baseline removal, as in preprocessing version 1
        windows = beat_windows(remove_baseline(lead_mv, 360), ann_samples, 90, 162).astype(np.float32)
        assert np.allclose(windows, unfiltered.x, atol=1e-5) == should_match


def test_record_without_mlii_names_its_leads(db: MitBih) -> None:
    with pytest.raises(ConfigError) as excinfo:
        db.beats(["101", "102"], FS)
    message = _one_line(excinfo)
    assert "102" in message and "MLII" in message and "V5" in message and "V2" in message


def test_missing_files_are_named(mitdb_dir: Path, tmp_path: Path) -> None:
    _copy_record(mitdb_dir, tmp_path / "data", "101", exts=(".hea", ".atr"))
    db = MitBih(tmp_path / "data", cache_dir=tmp_path / "cache")
    with pytest.raises(ConfigError) as excinfo:
        db.beats("101", FS)
    assert str(tmp_path / "data" / "101.dat") in _one_line(excinfo)
    (tmp_path / "data" / "101.atr").unlink()
    with pytest.raises(ConfigError, match=re.escape(str(tmp_path / "data" / "101.atr"))):
        db.class_counts("101")
    with pytest.raises(ConfigError, match=re.escape(str(tmp_path / "data" / "106.hea"))):
        db.beats("106", FS)


@pytest.mark.parametrize("garbage", ["this is not a header\n", "", "101 2 abc 650000\n"])
def test_corrupt_header_is_named(mitdb_dir: Path, tmp_path: Path, cache_dir: Path, garbage: str) -> None:
    _copy_record(mitdb_dir, tmp_path / "data", "101")
    hea = tmp_path / "data" / "101.hea"
    hea.write_text(garbage)
    # shares the module cache, where 101 at FS may already be stored: the file hash must miss it
    db = MitBih(tmp_path / "data", cache_dir=cache_dir)
    with pytest.raises(ConfigError) as excinfo:
        db.beats("101", FS)
    assert str(hea) in _one_line(excinfo)


def test_ds2_is_refused_without_confirmation(db: MitBih) -> None:
    before = len(db.ds2_accesses())
    with pytest.raises(ConfigError, match="DS2") as excinfo:
        db.beats(["101", "100"], FS)
    assert "final_test_set" in _one_line(excinfo)
    for confirm in ("yes", "", "final evaluation"):
        with pytest.raises(ConfigError) as excinfo:
            db.final_test_set(FS, confirm=confirm)
        assert "final-evaluation" in _one_line(excinfo)
    with pytest.raises(TypeError):
        db.final_test_set(FS)  # type: ignore[call-arg]
    assert len(db.ds2_accesses()) == before  # refusals are not accesses


def test_every_ds2_access_is_logged(db: MitBih, test_set: BeatSet) -> None:
    entries = db.ds2_accesses()
    assert [e.purpose for e in entries].count("pytest: DS2 label counts") >= 1
    first = next(e for e in entries if e.purpose == "pytest: DS2 label counts")
    assert first.fs_hz == FS and re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00$", first.timestamp)
    again = db.final_test_set(FS, confirm=FINAL_EVALUATION, purpose="second\nlook")
    assert np.array_equal(again.y, test_set.y)
    lines = db.access_log.read_text().splitlines()
    assert len(lines) == len(entries) + 1
    assert lines[-1].endswith("\tfs_hz=180\twindow=0.25,0.45\tband=0.67,40\tpurpose=second look")
    assert db.ds2_accesses()[-1].band == MONITORING_BAND


def test_second_call_is_served_from_cache(db: MitBih, monkeypatch: pytest.MonkeyPatch) -> None:
    first = db.beats(["101", "106"], FS)
    files = sorted(db.cache_dir.glob("10[16]_180hz_*.npz"))
    assert len(files) == 2
    assert not list(db.cache_dir.glob("*.tmp"))

    def no_recompute(*args: object, **kwargs: object) -> None:
        raise AssertionError("cache miss")

    monkeypatch.setattr(mitdb, "_preprocess_record", no_recompute)
    second = MitBih(db.data_dir, cache_dir=db.cache_dir).beats(["101", "106"], FS)
    for field in ("x", "rr", "y", "record", "sample"):
        np.testing.assert_array_equal(getattr(first, field), getattr(second, field))
    assert first.fs_hz == second.fs_hz


def test_corrupt_cache_entry_is_recomputed(db: MitBih, tmp_path: Path) -> None:
    local = MitBih(db.data_dir, cache_dir=tmp_path / "cache")
    good = local.beats("101", 125)
    (entry,) = (tmp_path / "cache").glob("101_125hz_*.npz")
    entry.write_bytes(b"not a zip file")
    np.testing.assert_array_equal(local.beats("101", 125).x, good.x)


@pytest.mark.parametrize("fs", [360.0, 180.0, 125.0])
def test_r_peak_stays_at_the_window_centre(db: MitBih, fs: float) -> None:
    beats = db.beats(["115", "122"], fs)  # normal-only records
    mean_normal = beats.x[beats.y == 0].mean(axis=0)
    assert abs(int(np.argmax(mean_normal)) - round(0.25 * fs)) <= 1


# --------------------------------------------------------------------------- band-limiting (preprocessing version 2)


@pytest.mark.parametrize(
    "band, fs, words",
    [
        ((0.67, 100.0), 180.0, ["f_high = 100 Hz", "Nyquist frequency 90 Hz", "fs_hz=180"]),
        ((0.67, 90.0), 180.0, ["f_high = 90 Hz", "Nyquist"]),
        ((40.0, 0.67), 180.0, ["f_low = 40 Hz", "not below f_high"]),
        ((5.0, 5.0), 180.0, ["not below f_high"]),
        ((-0.5, 40.0), 180.0, ["negative"]),
        ((0.67, float("nan")), 180.0, ["finite"]),
        ((0.67, "40"), 180.0, ["finite"]),
        ((40.0,), 180.0, ["pair"]),
        ("monitoring", 180.0, ["pair"]),
        (40.0, 180.0, ["pair"]),
    ],
)
def test_bad_band_is_a_config_error(band: object, fs: float, words: list[str]) -> None:
    with pytest.raises(ConfigError) as excinfo:
        check_band(band, fs)  # type: ignore[arg-type]
    message = _one_line(excinfo)
    assert "band=" in message
    for word in words:
        assert word in message


def test_good_bands_pass_check() -> None:
    assert check_band(None, 180) is None
    assert check_band(MONITORING_BAND, 100) == (0.67, 40.0)
    assert check_band([0, 40], 100) == (0.0, 40.0)  # f_low = 0: low-pass only
    assert check_band((0.05, 150), 360) == (0.05, 150.0)


def test_bad_band_is_refused_by_the_loader_before_reading(tmp_path: Path) -> None:
    _write_synthetic_record(tmp_path / "data")
    db = MitBih(tmp_path / "data", cache_dir=tmp_path / "cache")
    with pytest.raises(ConfigError, match="Nyquist frequency 62.5 Hz of fs_hz=125"):
        db.beats("900", 125, band=(0.67, 70.0))
    with pytest.raises(ConfigError, match="f_low"):
        db.beats("900", 180, band=(50.0, 40.0))
    with pytest.raises(ConfigError, match="band="):
        preprocess_signal(np.zeros(3600), 80, band=MONITORING_BAND)  # 40 Hz is the Nyquist frequency of 80 Hz
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").glob("*.npz"))


def test_band_is_part_of_the_cache_key(tmp_path: Path) -> None:
    _write_synthetic_record(tmp_path / "data")
    db = MitBih(tmp_path / "data", cache_dir=tmp_path / "cache")
    default = db.beats("900", 180)
    explicit = db.beats("900", 180, band=MONITORING_BAND)
    assert len(list((tmp_path / "cache").glob("900_180hz_*.npz"))) == 1  # the default is the monitoring band
    np.testing.assert_array_equal(default.x, explicit.x)
    none = db.beats("900", 180, band=None)
    narrow = db.beats("900", 180, band=(0.5, 25.0))
    assert len(list((tmp_path / "cache").glob("900_180hz_*.npz"))) == 3
    assert not np.allclose(default.x, none.x, atol=1e-3)
    assert not np.allclose(default.x, narrow.x, atol=1e-3)
    # a fresh loader on the same cache serves each band its own arrays
    again = MitBih(tmp_path / "data", cache_dir=tmp_path / "cache")
    np.testing.assert_array_equal(again.beats("900", 180, band=None).x, none.x)
    np.testing.assert_array_equal(again.beats("900", 180, band=(0.5, 25.0)).x, narrow.x)
    # labels, RR features and R-peak samples do not depend on the band
    for other in (none, narrow):
        np.testing.assert_array_equal(other.y, default.y)
        np.testing.assert_array_equal(other.rr, default.rr)
        np.testing.assert_array_equal(other.sample, default.sample)


def test_preprocess_version_and_band_filter_enter_the_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write_synthetic_record(tmp_path / "data")
    db = MitBih(tmp_path / "data", cache_dir=tmp_path / "cache")
    db.beats("900", 180)
    monkeypatch.setattr(mitdb, "BAND_FILTER", {**mitdb.BAND_FILTER, "lowpass_order": 6})
    db.beats("900", 180)
    monkeypatch.setattr(mitdb, "PREPROCESS_VERSION", mitdb.PREPROCESS_VERSION + 1)
    db.beats("900", 180)
    assert len(list((tmp_path / "cache").glob("900_180hz_*.npz"))) == 3


def test_bad_band_is_refused_before_ds2_is_logged(db: MitBih) -> None:
    before = len(db.ds2_accesses())
    with pytest.raises(ConfigError, match="Nyquist"):
        db.final_test_set(FS, confirm=FINAL_EVALUATION, purpose="pytest: bad band", band=(0.67, 95.0))
    assert len(db.ds2_accesses()) == before


def test_band_limited_beats_keep_counts_and_r_peaks(db: MitBih, splits: tuple[BeatSet, BeatSet]) -> None:
    train, val = splits
    # the default (band-limited) DS1 beats are the same beats as without the band filter
    unfiltered = db.beats(["115", "122", "208"], FS, band=None)
    filtered = db.beats(["115", "122", "208"], FS)
    np.testing.assert_array_equal(filtered.y, unfiltered.y)
    np.testing.assert_array_equal(filtered.sample, unfiltered.sample)
    assert BeatSet.concatenate([train, val]).class_counts() == DS1_COUNTS
    # the band-pass takes little from the beats: windows stay close to the unfiltered ones
    corr = [np.corrcoef(a, b)[0, 1] for a, b in zip(filtered.x[::50], unfiltered.x[::50])]
    assert np.median(corr) > 0.97
