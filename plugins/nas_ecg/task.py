"""The ECG task: train candidates on DS1, score them on held-out DS1 records, check the patch's budgets.

Options (``nas run ecg/compound-cnn --battery-days 7 --band monitoring ...`` or
``task_options`` in a config):

========================  ===========================================================
``data_dir``              MIT-BIH directory (default: env ``MITDB_DIR``)
``download``              fetch MIT-BIH with ``wfdb.dl_database`` if missing (False)
``cache_dir``             preprocessed-array cache (default: env ``NAS_CACHE_DIR``)
``band``                  ``monitoring`` (0.67-40 Hz, default) or ``diagnostic``
``nyquist_k``             guard factor k of the Nyquist limit fs >= k f_high (2.5)
``battery_days``          days the patch must run on its battery (7)
``heart_rate_bpm``        average heart rate of the energy budget (80)
``epochs``                maximum training epochs (12); early stopping on val macro-F1
``patience``              early-stopping patience in epochs (3)
``data_fraction``         fraction of the training beats (stratified), a proxy fidelity
``batch_size``, ``lr``    training (256, 3e-3)
``val_records``           DS1 records held out whole for validation (loader default)
``cv_folds``              K >= 2: record-level K-fold cross-validation over all of DS1
                          instead of ``val_records`` (:mod:`nas_ecg.crossval`); the
                          metrics become ``cv_*`` (pooled out-of-fold), ``epochs`` is
                          then a fixed count (no early stopping) and ``folds`` a fidelity;
                          the defaults become the measured search fidelity (6 epochs,
                          ``data_fraction`` 0.3, ``repeats`` 2) and the objective
                          ``cv_sv_auroc`` (:data:`nas_ecg.crossval.CV_SEARCH_DEFAULTS`)
``cv_fold_seed``          seed of the fold assignment (0)
``cv_refit``              after cross-validation, train on all DS1 and keep those weights (True)
``rr_features``           ``normalised`` (ratios to the patient's running rhythm, default)
                          or ``raw`` (four of the eight in seconds)
``ble_events_per_hour``   BLE notification events per hour of the energy budget (3600)
========================  ===========================================================

``front_end_rates``       reject rates the target's front end cannot deliver (default:
                          true for ``ecg/efficient-cnn``, false for the "any integer
                          rate" space ``ecg/compound-cnn``, which assumes the device
                          resamples or has a front end without fixed rates)

A rejected rate's reason lists the front end's rates (the target file's
``afe_rate_<n>_hz``; metric ``fs_supported``).
"""

from __future__ import annotations

from typing import Any, Mapping

from nas_core.constraints import Constraint
from nas_core.errors import ConfigError
from nas_core.estimators.base import EvalContext
from nas_core.estimators.lightning_trainer import ClassificationData, TrainingEstimator
from nas_core.hardware import HardwareTarget, measure_costs
from nas_core.space import Architecture, SearchSpace
from nas_core.strategies.base import Objective
from nas_core.task import Task
from nas_ecg.budget import ECG_EXTRA_KEYS
from nas_ecg.data import CLASSES, F1_CLASSES, N_RR, search_data
from nas_ecg.space import IN_CHANNELS, scaled

ECG_METRICS = ("fs_hz", "latency_ms", "inference_energy_uj", "beat_overhead_uj", "energy_uj_per_beat",
               "energy_budget_uj_per_beat", "energy_margin_uj", "battery_days", "avg_power_uw", "peak_ram_kb",
               "flash_kb_int8", "weights")


class ECGEstimator(TrainingEstimator):
    """Lightning training on the DS1 training records at the candidate's own sampling rate."""

    def __init__(self, *, data_dir=None, cache_dir=None, download=False, val_records=None, band=None,
                 rr_features=None, **kwargs: Any):
        # balanced weights, capped at 50x the weight of N: Q has 8 training beats, and an
        # uncapped weight (~950) lets those few beats dominate the loss
        super().__init__(lambda: None, class_weights="balanced", class_weight_cap=50.0, macro_f1_classes=F1_CLASSES,
                         class_names=CLASSES, **kwargs)
        self.data_dir, self.cache_dir, self.download, self.val_records = data_dir, cache_dir, download, val_records
        self.band, self.rr_features = band, rr_features
        self._by_fs: dict[float, ClassificationData] = {}

    def __getstate__(self) -> dict:
        state = super().__getstate__()
        state["_by_fs"] = {}
        return state

    def dataset(self, ctx: EvalContext) -> ClassificationData:
        # a hand-built model (e.g. the reference CNN) names its rate as {"fs_hz": ...}
        fs = float(ctx.arch["fs_hz"]) if "fs_hz" in ctx.arch else scaled(ctx.arch)["fs_hz"]
        return self.dataset_at(fs)

    def dataset_at(self, fs: float) -> ClassificationData:
        if fs not in self._by_fs:
            self._by_fs.clear()  # one rate in memory at a time
            extra = {} if self.band is None else {"band": tuple(self.band)}
            self._by_fs[fs] = search_data(fs, data_dir=self.data_dir, cache_dir=self.cache_dir,
                                          val_records=self.val_records, download=self.download,
                                          rr_features=self.rr_features or "normalised", **extra)
        return self._by_fs[fs]


class ECGTask(Task):
    name = "ecg"
    n_outputs = len(CLASSES)  # N, S, V, F, Q
    #: the energy model's constants every ECG target file gives in its [extra] table (checked by check_plugin)
    target_keys = ECG_EXTRA_KEYS
    OPTIONS = ("data_dir", "cache_dir", "download", "band", "nyquist_k", "battery_days", "heart_rate_bpm", "epochs",
               "patience", "data_fraction", "batch_size", "lr", "val_records", "threads", "repeats", "cv_folds",
               "cv_fold_seed", "cv_refit", "rr_features", "ble_events_per_hour", "front_end_rates",
               "accelerator", "devices")

    def __init__(self, space: SearchSpace, **options: Any):
        from nas_ecg.budget import DEFAULT_NYQUIST_K, require_band_supported

        unknown = set(options) - set(self.OPTIONS)
        if unknown:
            raise ConfigError(f"ecg task: unknown option(s) {sorted(unknown)}; allowed: {list(self.OPTIONS)}")
        super().__init__(space, **options)
        self.band = options.get("band", "monitoring")
        self.k = float(options.get("nyquist_k", DEFAULT_NYQUIST_K))
        self.min_fs = require_band_supported(self.band, k=self.k)
        self.days = float(options.get("battery_days", 7.0))
        if self.days <= 0:
            raise ConfigError(f"battery_days must be > 0, got {self.days}")
        self.heart_rate = float(options.get("heart_rate_bpm", 80.0))
        self.cv_folds = options.get("cv_folds")
        if self.cv_folds is not None:
            from nas_data.mitdb import DS1

            k = self.cv_folds
            if isinstance(k, bool) or not isinstance(k, int) or not 2 <= k <= len(DS1):
                raise ConfigError(f"cv_folds must be an integer in 2..{len(DS1)} (the DS1 records), got {k!r}")
            if "val_records" in options:
                raise ConfigError("cv_folds and val_records exclude each other: cross-validation scores every DS1 "
                                  "record once")
        rr = options.get("rr_features", "normalised")
        if rr not in ("normalised", "raw"):
            raise ConfigError(f"rr_features must be 'normalised' or 'raw', got {rr!r}")

    def prepare(self) -> None:
        """Fail fast on a wrong data directory (or download MIT-BIH when asked) before a study starts."""
        from nas_ecg.data import _loader

        _loader(self.options.get("data_dir"), self.options.get("cache_dir"), bool(self.options.get("download", False)))
        if self.cv_folds is not None:
            from nas_ecg.crossval import check_folds

            check_folds(self.cv_folds, fold_seed=int(self.options.get("cv_fold_seed", 0)),
                        data_dir=self.options.get("data_dir"), cache_dir=self.options.get("cache_dir"))

    def data_checksums(self) -> dict[str, str]:
        """SHA-256 per DS1 record (the only records a search reads), prefixed ``mitdb/``."""
        from nas_data.mitdb import DS1

        from nas_ecg.data import _loader

        mit = _loader(self.options.get("data_dir"), self.options.get("cache_dir"))
        return {f"mitdb/{k}": v for k, v in mit.checksums(DS1).items()}

    def input_shape(self, arch: Architecture) -> tuple:
        return ((IN_CHANNELS, scaled(arch)["length"]), (N_RR,))

    def estimator(self) -> ECGEstimator:
        o = self.options
        if self.cv_folds is not None:
            from nas_ecg.crossval import CV_SEARCH_DEFAULTS, ECGCVEstimator

            if "patience" in o:
                raise ConfigError("cv_folds trains a fixed number of epochs per fold: drop 'patience' (early "
                                  "stopping on the scored fold would leak it into the score)")
            return ECGCVEstimator(data_dir=o.get("data_dir"), cache_dir=o.get("cache_dir"),
                                  download=bool(o.get("download", False)), band=self.band_hz,
                                  rr_features=o.get("rr_features"), folds=self.cv_folds,
                                  fold_seed=int(o.get("cv_fold_seed", 0)), refit=bool(o.get("cv_refit", True)),
                                  epochs=int(o.get("epochs", CV_SEARCH_DEFAULTS["epochs"])),
                                  data_fraction=float(o.get("data_fraction", CV_SEARCH_DEFAULTS["data_fraction"])),
                                  batch_size=int(o.get("batch_size", 256)), lr=float(o.get("lr", 3e-3)),
                                  threads=int(o.get("threads", 1)),
                                  repeats=o.get("repeats", CV_SEARCH_DEFAULTS["repeats"]),
                                  accelerator=o.get("accelerator", "auto"), devices=o.get("devices", "auto"))
        return ECGEstimator(data_dir=o.get("data_dir"), cache_dir=o.get("cache_dir"), download=bool(o.get("download", False)),
                            val_records=o.get("val_records"), band=self.band_hz,
                            rr_features=o.get("rr_features"), epochs=int(o.get("epochs", 12)),
                            early_stopping_patience=int(o.get("patience", 3)),
                            data_fraction=float(o.get("data_fraction", 1.0)), batch_size=int(o.get("batch_size", 256)),
                            lr=float(o.get("lr", 3e-3)), threads=int(o.get("threads", 1)),
                            repeats=o.get("repeats", 1), accelerator=o.get("accelerator", "auto"),
                            devices=o.get("devices", "auto"))

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.pop("_data_at", None)  # arrays read for an export are not shipped to workers
        return state

    def _search_data(self, arch: Architecture) -> ClassificationData:
        """DS1 at ``arch``'s rate split as the plain (non-CV) estimator splits it: training records and the
        whole held-out ``val_records`` (loader default 114, 201, 205, 223). Never DS2. One rate is kept."""
        fs = float(arch["fs_hz"]) if "fs_hz" in arch else scaled(arch)["fs_hz"]
        cached = getattr(self, "_data_at", None)
        if cached is None or cached[0] != fs:
            o = self.options
            extra = {} if "val_records" not in o else {"val_records": o["val_records"]}
            self._data_at = (fs, search_data(fs, data_dir=o.get("data_dir"), cache_dir=o.get("cache_dir"),
                                             download=bool(o.get("download", False)), band=self.band_hz,
                                             rr_features=o.get("rr_features") or "normalised", **extra))
        return self._data_at[1]

    def validation_data(self, arch: Architecture) -> tuple[Any, Any]:
        """``((x, rr), y)``: every beat of the DS1 validation records at ``arch``'s rate (``nas export``'s checks).

        With ``cv_folds`` these are the same records; a ``cv_refit`` model was trained on all of DS1, so
        for it they measure the agreement of the int8 model with PyTorch, not held-out accuracy.
        """
        data = self._search_data(arch)
        return data.x_val, data.y_val

    def calibration_data(self, arch: Architecture) -> tuple[Any, Any]:
        """``(x, rr)`` of 256 DS1 training beats (a fixed random draw, seed 0) at ``arch``'s rate."""
        import numpy as np

        data = self._search_data(arch)
        x, rr = data.x_train
        idx = np.sort(np.random.default_rng(0).permutation(len(x))[:256])
        return x[idx], rr[idx]

    def energy_budget(self, target: HardwareTarget):
        from nas_ecg.budget import EnergyBudget

        extra = {} if "ble_events_per_hour" not in self.options else {
            "ble_events_per_hour": float(self.options["ble_events_per_hour"])}
        return EnergyBudget.from_target(target, days=self.days, heart_rate_bpm=self.heart_rate, **extra)

    @property
    def band_hz(self) -> tuple[float, float]:
        from nas_ecg.budget import _band

        _, lo, hi = _band(self.band)
        return (lo, hi)

    def default_objectives(self) -> list[Objective]:
        from nas_ecg.crossval import DEFAULT_CV_OBJECTIVE

        score = DEFAULT_CV_OBJECTIVE if self.cv_folds is not None else "val_macro_f1"
        return [Objective(score, "max"), Objective("macs", "min")]

    def default_constraints(self, target: HardwareTarget | None) -> list[Constraint]:
        from nas_ecg.budget import ecg_constraints

        out = [Constraint("fs_hz", "<=", 360.0, why="MIT-BIH is sampled at 360 Hz; upsampling adds no information")]
        if target is None:
            out.append(Constraint("fs_hz", ">=", self.min_fs,
                                  why=f"Nyquist: {self.k:g} x the {self.band} band's upper edge"))
            return out
        from nas_ecg.budget import supported_rates

        rates = supported_rates(target)
        check = self.options.get("front_end_rates", getattr(self.space, "front_end_rates", True))
        if not isinstance(check, bool):
            raise ConfigError(f"front_end_rates must be true or false, got {check!r}")
        if rates and check:
            out.append(Constraint("fs_supported", ">=", 1.0,
                                  why="the front end outputs only " + ", ".join(f"{r:g}" for r in rates) + " sps"))
        return out + ecg_constraints(target, self.band, self.k, self.energy_budget(target))

    def static_metrics(self, arch: Architecture, model: Any, target: HardwareTarget | None) -> dict[str, float]:
        from nas_ecg.budget import ecg_static_metrics

        costs = measure_costs(model, self.input_shape(arch), target).as_metrics()
        out = {**costs, "fs_hz": scaled(arch)["fs_hz"]}
        if target is not None:
            from nas_ecg.budget import rate_violation

            out.update(ecg_static_metrics(costs, target, out["fs_hz"], self.energy_budget(target)))
            out["fs_supported"] = 0.0 if rate_violation(out["fs_hz"], target) else 1.0
        return out

    def static_metric_names(self, target: HardwareTarget | None) -> set[str]:
        names = super().static_metric_names(target) | {"fs_hz"}
        if target is not None:
            names |= set(ECG_METRICS) | {"energy_uj", "fs_supported"}
            if target.max_weights is not None:
                names.add("weight_memory_fraction")
        return names

    def describe(self) -> Mapping[str, Any]:
        return {"task": self.name, "band": self.band, "nyquist_k": self.k, "min_fs_hz": self.min_fs,
                "battery_days": self.days, "heart_rate_bpm": self.heart_rate, "options": self.options}
