"""Full training with a Lightning ``Trainer`` (on the CPU, or a GPU when asked and present).

:class:`TrainingEstimator` trains any classifier a space builds on data given by
a picklable factory (so worker processes load it themselves), at a fidelity of
``epochs`` and ``data_fraction`` (the first fraction of a fixed, seed-0
stratified permutation of the training set, the same for every trial, so lower
fidelities rank architectures on the same data). Training is deterministic under
the trial seed (``seed_everything`` and ``Trainer(deterministic=True)``).

A NaN or infinite loss, or a passed deadline, raises inside a callback and turns
the trial into a failed one with its cause.

Each training run logs its per-epoch metrics (``train_loss`` and the validation
metrics) through Lightning's ``CSVLogger``, and TensorBoard's when ``tensorboard``
is installed, under ``ctx.artifact_dir/logs`` (the study moves them to
``DIR/logs/trial-NNNNN``). ``accelerator`` and ``devices`` go to the ``Trainer``;
``devices="auto"`` means one device per trial (the executors run trials side by side).
"""

from __future__ import annotations

import copy

import logging
import math
import time
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping

import numpy as np

if TYPE_CHECKING:
    import torch

from nas_core.errors import ConfigError, TrialFailed
from nas_core.estimators.base import EvalContext, Estimator
from nas_core.metrics import accuracy, confusion_matrix, macro_f1, per_class

#: the ``accelerator`` values accepted (Lightning's names); ``auto`` picks a GPU when torch sees one, else the CPU
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps")


def check_device(accelerator: Any, devices: Any) -> tuple[str, int]:
    """``(accelerator, devices)`` as the ``Trainer`` gets them, or one ``ConfigError`` naming the bad value."""
    if accelerator not in ACCELERATORS:
        raise ConfigError(f"accelerator must be one of {', '.join(ACCELERATORS)}, got {accelerator!r}")
    if devices == "auto":
        return str(accelerator), 1
    if isinstance(devices, bool) or not isinstance(devices, int) or devices != 1:
        raise ConfigError(f"devices must be 'auto' or 1 (a trial trains on one device; run trials in parallel with "
                          f"--workers), got {devices!r}")
    return str(accelerator), 1


def _loggers(root: Any, run: str) -> list[Any]:
    """Lightning loggers writing into ``root/run`` (CSV always, TensorBoard when it is installed)."""
    import importlib.util

    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    out: list[Any] = [CSVLogger(str(root), name=run, version="")]
    if importlib.util.find_spec("tensorboard") is not None or importlib.util.find_spec("tensorboardX") is not None:
        out.append(TensorBoardLogger(str(root), name=run, version="tensorboard", default_hp_metric=False))
    return out


@dataclass(frozen=True)
class ClassificationData:
    """Training and validation arrays. ``x_*`` is an array or a tuple of arrays (several inputs)."""

    x_train: Any
    y_train: np.ndarray
    x_val: Any
    y_val: np.ndarray
    n_classes: int


def _as_tuple(x: Any) -> tuple[Any, ...]:
    return tuple(x) if isinstance(x, (tuple, list)) else (x,)


def _stratified_fraction(y: np.ndarray, fraction: float) -> np.ndarray:
    rng = np.random.default_rng(0)
    keep = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        idx = idx[rng.permutation(len(idx))]
        keep.append(idx[: max(1, int(math.ceil(fraction * len(idx))))])
    return np.sort(np.concatenate(keep))


class TrainingEstimator(Estimator):
    """Train with Adam and cross-entropy; report validation accuracy, macro-F1 and loss.

    The metrics are those of the best validation epoch (by macro-F1), and the model
    ends with that epoch's weights, saved to ``ctx.artifact_dir/model.pt`` when
    the study gives a directory (load with ``torch.load(..., weights_only=True)``).

    ``repeats > 1`` trains ``repeats - 1`` more copies of the candidate, each
    re-initialised under its own seed (``seed + 1``, ...), on the same data. The
    kept weights and the usual metrics stay those of the first run; the extra
    metrics ``val_macro_f1_mean``, ``val_macro_f1_std`` and ``val_accuracy_mean``
    summarise all runs. Rank candidates on the mean when validation results are
    noisy under a change of seed (``--objective val_macro_f1_mean:max``).
    """

    metric_names: tuple[str, ...] = ("val_accuracy", "val_macro_f1", "val_loss", "epochs_run", "best_epoch")

    def __init__(self, data: Callable[[], ClassificationData], *, epochs: int = 10, data_fraction: float = 1.0,
                 batch_size: int = 64, lr: float = 3e-3, weight_decay: float = 0.0,
                 class_weights: str | None = None, early_stopping_patience: int | None = None,
                 monitor: str = "val_macro_f1", macro_f1_classes: tuple[int, ...] | None = None, threads: int | None = None,
                 class_names: tuple[str, ...] | None = None, class_weight_cap: float | None = None,
                 repeats: int = 1, accelerator: str = "auto", devices: int | str = "auto"):
        self.accelerator, self.devices = check_device(accelerator, devices)
        if epochs < 1:
            raise ConfigError(f"epochs must be >= 1, got {epochs}")
        if not 0.0 < data_fraction <= 1.0:
            raise ConfigError(f"data_fraction must be in (0, 1], got {data_fraction}")
        if not isinstance(repeats, int) or isinstance(repeats, bool) or not 1 <= repeats <= 20:
            raise ConfigError(f"repeats must be an integer in 1..20, got {repeats!r}")
        if class_weights not in (None, "balanced"):
            raise ConfigError(f"class_weights must be None or 'balanced', got {class_weights!r}")
        self.data = data
        self.epochs = int(epochs)
        self.data_fraction = float(data_fraction)
        self.batch_size = int(batch_size)
        self.lr = float(lr)
        self.weight_decay = float(weight_decay)
        self.class_weights = class_weights
        self.patience = early_stopping_patience
        self.monitor = monitor
        self.macro_f1_classes = macro_f1_classes
        self.threads = threads
        self.class_names = tuple(class_names) if class_names else None
        self.class_weight_cap = class_weight_cap
        self.repeats = int(repeats)
        names = type(self).metric_names
        if self.class_names:
            names = names + tuple(f"val_{c}_{k}" for c in self.class_names for k in ("se", "ppv", "f1", "spec"))
        if self.repeats > 1:
            names = names + ("val_macro_f1_mean", "val_macro_f1_std", "val_accuracy_mean")
        self.metric_names = names
        self._cache: ClassificationData | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_cache"] = None  # workers load their own copy
        return state

    def default_fidelity(self) -> dict[str, Any]:
        return {"epochs": self.epochs, "data_fraction": self.data_fraction}

    def fidelity_errors(self, fidelity: Mapping[str, Any]) -> list[str]:
        errors = super().fidelity_errors(fidelity)
        if errors:
            return errors
        if "epochs" in fidelity and not fidelity["epochs"] >= 1:
            errors.append(f"fidelity epochs must be >= 1, got {fidelity['epochs']!r}")
        if "data_fraction" in fidelity and not 0 < fidelity["data_fraction"] <= 1:
            errors.append(f"fidelity data_fraction must be in (0, 1], got {fidelity['data_fraction']!r}")
        return errors

    def dataset(self, ctx: EvalContext) -> ClassificationData:
        """The data for this candidate (override when it depends on the architecture, e.g. its input rate)."""
        if self._cache is None:
            self._cache = self.data()
        return self._cache

    def evaluate(self, ctx: EvalContext) -> dict[str, float]:
        import torch
        from torch.utils.data import TensorDataset

        self._quiet_lightning()

        fid = {**self.default_fidelity(), **dict(ctx.fidelity)}
        epochs = int(fid["epochs"])
        fraction = float(fid["data_fraction"])
        data = self.dataset(ctx)
        idx = _stratified_fraction(np.asarray(data.y_train), fraction) if fraction < 1.0 else None

        def tensors(xs: Any, y: np.ndarray, sel: np.ndarray | None) -> TensorDataset:
            parts = [torch.as_tensor(np.asarray(x)[sel] if sel is not None else np.asarray(x), dtype=torch.float32)
                     for x in _as_tuple(xs)]
            yy = np.asarray(y)[sel] if sel is not None else np.asarray(y)
            return TensorDataset(*parts, torch.as_tensor(yy, dtype=torch.long))

        train_ds = tensors(data.x_train, data.y_train, idx)
        val_ds = tensors(data.x_val, data.y_val, None)
        weight = self.class_weight(train_ds.tensors[-1].numpy(), data.n_classes)

        initial = copy.deepcopy(ctx.model) if self.repeats > 1 else None
        best, best_state, epochs_run = self._fit(ctx, ctx.model, ctx.seed, train_ds, val_ds, weight, data.n_classes,
                                                 epochs)
        # keep the weights the reported metrics belong to (the best validation epoch)
        ctx.model.load_state_dict(best_state)
        if ctx.artifact_dir:
            from pathlib import Path

            out = Path(ctx.artifact_dir)
            out.mkdir(parents=True, exist_ok=True)
            tmp = out / "model.pt.tmp"
            torch.save(ctx.model.state_dict(), tmp)
            tmp.replace(out / "model.pt")
        out_metrics = {**best, "epochs_run": epochs_run}
        if self.repeats > 1:
            assert initial is not None  # copied above when repeats > 1
            f1s, accs = [best["val_macro_f1"]], [best["val_accuracy"]]
            for r in range(1, self.repeats):
                model = copy.deepcopy(initial)
                torch.manual_seed(ctx.seed + r)
                for m in model.modules():  # a fresh initialisation under this run's seed
                    if hasattr(m, "reset_parameters"):
                        m.reset_parameters()
                other, _, _ = self._fit_named(f"repeat{r + 1}", ctx, model, ctx.seed + r, train_ds, val_ds, weight,
                                              data.n_classes, epochs)
                f1s.append(other["val_macro_f1"])
                accs.append(other["val_accuracy"])
            out_metrics.update(val_macro_f1_mean=float(np.mean(f1s)), val_macro_f1_std=float(np.std(f1s)),
                               val_accuracy_mean=float(np.mean(accs)))
        return out_metrics

    def _quiet_lightning(self) -> None:
        """Silence Lightning's INFO lines and worker warnings; apply ``threads``."""
        import torch

        import lightning.pytorch  # noqa: F401 - its import sets its loggers' level: lower them afterwards

        for name in ("lightning.pytorch", "lightning.fabric", "lightning", "pytorch_lightning"):
            logging.getLogger(name).setLevel(logging.ERROR)
        warnings.filterwarnings("ignore", module="lightning")
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        if self.threads:
            torch.set_num_threads(self.threads)

    def class_weight(self, y: np.ndarray, n_classes: int) -> Any:
        """The loss weights of the classes (``None`` unless ``class_weights="balanced"``), capped."""
        if self.class_weights != "balanced":
            return None
        import torch

        counts = np.bincount(np.asarray(y), minlength=n_classes).astype(float)
        w = np.where(counts > 0, counts.sum() / (n_classes * np.maximum(counts, 1)), 0.0)
        if self.class_weight_cap:
            w = np.minimum(w, self.class_weight_cap * w[w > 0].min())
        return torch.as_tensor(w, dtype=torch.float32)

    def _fit_named(self, run: str, *args: Any) -> tuple[dict[str, float], dict[str, torch.Tensor], float]:
        """:meth:`_fit` for the run named ``run`` (its log folder; a subclass's ``_fit`` keeps its signature)."""
        self._run = run
        try:
            return self._fit(*args)
        finally:
            self._run = ""

    def _fit(self, ctx: EvalContext, model: Any, seed: int, train_ds: Any, val_ds: Any, weight: Any, n_classes: int,
             epochs: int, run: str | None = None) -> tuple[dict[str, float], dict[str, torch.Tensor], float]:
        """One training run: (metrics of the best validation epoch, its weights, epochs run).

        With ``val_ds=None`` there is no validation and no early stopping: the run
        lasts ``epochs`` epochs and returns ``({}, final weights, epochs run)``. Its
        metrics are logged to ``ctx.artifact_dir/logs/RUN/metrics.csv`` (``run`` names
        a fold or repeat, by default the one :meth:`_fit_named` gives; empty for the main run) when the context
        has a directory.
        """
        run = getattr(self, "_run", "") if run is None else run
        import torch
        import lightning.pytorch as pl
        from torch.utils.data import DataLoader

        pl.seed_everything(seed, workers=True, verbose=False)
        gen = torch.Generator().manual_seed(seed)
        # a last batch of one sample cannot be batch-normalised in training mode: drop it (one sample an epoch)
        train_dl = DataLoader(train_ds, batch_size=self.batch_size, shuffle=True, generator=gen,
                              drop_last=len(train_ds) % self.batch_size == 1)
        val_dl = DataLoader(val_ds, batch_size=1024) if val_ds is not None else None
        module = _ClassifierModule(model, weight=weight, lr=self.lr, weight_decay=self.weight_decay,
                                   n_classes=n_classes, f1_classes=self.macro_f1_classes,
                                   class_names=self.class_names)
        callbacks: list[Any] = [_Guard(ctx, run)]
        if self.patience and val_dl is not None:
            callbacks.append(pl.callbacks.EarlyStopping(monitor=self.monitor, mode="max" if "loss" not in self.monitor else "min",
                                                        patience=int(self.patience)))
        loggers: list[Any] | bool = False
        if ctx.artifact_dir:
            from nas_core.safety import confined

            loggers = _loggers(confined(ctx.artifact_dir, "logs"), run)
        try:
            trainer = pl.Trainer(accelerator=self.accelerator, devices=self.devices, max_epochs=epochs,
                                 deterministic=True, logger=loggers, log_every_n_steps=max(1, min(50, len(train_dl))),
                                 enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                                 callbacks=callbacks, num_sanity_val_steps=0,
                                 limit_val_batches=1.0 if val_dl is not None else 0)
        except Exception as exc:  # noqa: BLE001 - e.g. accelerator=gpu where torch sees no GPU
            if type(exc).__name__ != "MisconfigurationException":
                raise
            first = (str(exc).strip().splitlines() or [""])[0]
            raise TrialFailed(f"accelerator={self.accelerator!r} cannot be used here: {first}") from None
        if val_dl is None:
            trainer.fit(module, train_dl)
            return {}, {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}, \
                float(trainer.current_epoch)
        trainer.fit(module, train_dl, val_dl)
        if module.best is None or module.best_state is None:
            raise TrialFailed("training produced no validation result")
        return dict(module.best), module.best_state, float(trainer.current_epoch)


class _Guard:
    """Lightning callback: fail on NaN/inf loss, stop at the deadline, report epoch ends to the progress display."""

    def __new__(cls, ctx: EvalContext, run: str = "") -> Any:  # a lightning.pytorch.Callback (imported only here)
        import lightning.pytorch as pl

        class Guard(pl.Callback):
            def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
                ctx.epoch_done(trainer.current_epoch + 1, int(trainer.max_epochs or 0), run)

            def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                                   batch_idx: int) -> None:  # noqa: D401
                loss = outputs["loss"] if isinstance(outputs, Mapping) else outputs
                if loss is not None and not bool(loss.isfinite()):
                    raise TrialFailed(f"non-finite training loss ({float(loss)}) at epoch {trainer.current_epoch}, "
                                      f"batch {batch_idx}")
                ctx.check_deadline(f"at epoch {trainer.current_epoch}")

        return Guard()


def _ClassifierModule(model: Any, *, weight: torch.Tensor | None, lr: float, weight_decay: float,  # noqa: N802
                      n_classes: int, f1_classes: tuple[int, ...] | None,
                      class_names: tuple[str, ...] | None = None) -> Any:  # a LightningModule, defined lazily
    import torch
    import lightning.pytorch as pl

    class ClassifierModule(pl.LightningModule):
        class_weight: torch.Tensor  # a buffer

        def __init__(self) -> None:
            super().__init__()
            self.model = model
            self.register_buffer("class_weight", weight if weight is not None else torch.ones(n_classes))
            self.best: dict[str, float] | None = None
            self.best_state: dict[str, torch.Tensor] | None = None
            self._preds: list[np.ndarray] = []
            self._targets: list[np.ndarray] = []
            self._losses: list[float] = []

        def forward(self, *xs: torch.Tensor) -> Any:
            return self.model(*xs)

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            *xs, y = batch
            logits = self.model(*xs)
            loss = torch.nn.functional.cross_entropy(logits, y, weight=self.class_weight)
            self.log("train_loss", loss.detach(), on_step=False, on_epoch=True, batch_size=len(y))
            return loss

        def validation_step(self, batch: Any, batch_idx: int) -> None:
            *xs, y = batch
            logits = self.model(*xs)
            self._losses.append(float(torch.nn.functional.cross_entropy(logits, y, reduction="sum")))
            self._preds.append(logits.argmax(1).cpu().numpy())
            self._targets.append(y.cpu().numpy())

        def on_validation_epoch_end(self) -> None:
            yp, yt = np.concatenate(self._preds), np.concatenate(self._targets)
            cm = confusion_matrix(yt, yp, n_classes)
            res = {"val_accuracy": accuracy(cm), "val_macro_f1": macro_f1(cm, f1_classes),
                   "val_loss": sum(self._losses) / max(1, len(yt))}
            if class_names:
                for name, st in zip(class_names, per_class(cm)):
                    res.update({f"val_{name}_{k}": float(st[k]) for k in ("se", "ppv", "f1", "spec")})
            self._preds, self._targets, self._losses = [], [], []
            if not math.isfinite(res["val_loss"]):
                raise TrialFailed(f"non-finite validation loss at epoch {self.current_epoch}")
            self.log_dict({k: float(v) for k, v in res.items()}, prog_bar=False)
            key = "val_macro_f1"
            if self.best is None or res[key] > self.best[key]:
                self.best = {**res, "best_epoch": float(self.current_epoch)}
                self.best_state = {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.Adam(self.parameters(), lr=lr, weight_decay=weight_decay)

    return ClassifierModule()
