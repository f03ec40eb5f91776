"""Export a trained trial's model to ONNX, TorchScript or int8 TFLite, checked against PyTorch.

``export_trial(study_dir, trial, fmt)`` rebuilds the trial's architecture with
its plugin's space, loads the weights the estimator saved
(``trials/NNNNN/model.pt``, read with ``torch.load(weights_only=True)``: a
checkpoint holding anything but tensors is refused, never unpickled), writes
``exports/trial-NNNNN.onnx`` (or ``.pt`` for TorchScript) inside the study
directory, and runs the exported file on random inputs of the task's input
shape next to the PyTorch model: the largest absolute difference is returned and
must stay below ``tolerance``.

ONNX is written by the ``torch.export``-based exporter (``torch.onnx.export(...,
dynamo=True)``, which needs ``onnxscript``, part of the ``export`` extra); without
``onnxscript``, or for a model ``torch.export`` cannot capture, the TorchScript-based
exporter is used instead (deprecated since torch 2.9; its ``DeprecationWarning`` is left
as it is). The sidecar's ``check.exporter`` says which one wrote the file.

Every exported file gets a JSON sidecar next to it (``trial-NNNNN.onnx.json``)
holding its SHA-256, the numerical check, the trial (architecture, seed,
fidelity, metrics) and the study's provenance (code and package versions, data
checksums, seed, config, hardware target) plus the environment of the export.

``fmt="tflite"`` (the ``mcu`` extra) writes ``exports/trial-NNNNN.tflite``, a full-integer int8
model verified in the TensorFlow Lite Micro interpreter on the task's validation data, and the
firmware bundle ``exports/trial-NNNNN-tflm/`` (C array, op resolver, arena size, README); see
:mod:`nas_core.export_tflite`.

``quantize="int8"`` (ONNX only) also writes ``trial-NNNNN.int8.onnx``, an int8
post-training-quantized model made with ONNX Runtime: static quantization (QDQ,
per-channel weights) calibrated on training inputs when the task can give them,
else dynamic quantization. Its accuracy change is measured on the task's
validation data when the task offers it, through an optional hook
``Task.validation_data(arch) -> (x, y) | None`` (and ``Task.calibration_data(arch)
-> x | None``); without the hooks, an estimator with a ``dataset(ctx)`` method
returning training and validation splits (like the Lightning
``TrainingEstimator``) is used. Otherwise the change is reported as not measured.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from nas_core.errors import ConfigError, StoreError

if TYPE_CHECKING:
    from nas_core.task import Task
    import torch

log = logging.getLogger(__name__)

FORMATS = ("onnx", "torchscript", "tflite")
QUANTIZATIONS = ("int8",)
#: calibration inputs used for static int8 quantization
N_CALIBRATION = 256


@dataclass(frozen=True)
class ExportResult:
    path: Path
    fmt: str
    max_abs_diff: float
    n_checked: int
    sidecar: Path | None = None
    #: {"pytorch": acc, "exported": acc, "n": samples} when measured
    accuracy: Mapping[str, float] | None = None
    #: details of the int8 model when ``quantize="int8"``
    quantization: Mapping[str, Any] | None = None
    #: the TFLM check, operators, arena and bundle of a ``tflite`` export
    tflite: Mapping[str, Any] | None = None
    #: which ONNX exporter wrote the file: "dynamo" (torch.export) or "torchscript" (the legacy one)
    exporter: str | None = None


def _inputs(shape: Any, batch: int, seed: int) -> tuple[torch.Tensor, ...]:
    import torch

    g = torch.Generator().manual_seed(seed)
    shapes = shape if shape and isinstance(shape[0], (tuple, list)) else (shape,)
    return tuple(torch.randn(batch, *s, generator=g) for s in shapes)


def _as_tuple(x: Any) -> tuple[Any, ...]:
    return tuple(x) if isinstance(x, (tuple, list)) else (x,)


def _onnx_names(n: int) -> list[str]:
    return [f"input{i}" for i in range(n)]


def _run_onnx(path: Path, xs: tuple[np.ndarray, ...], batch: int = 512) -> np.ndarray:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    n = len(xs[0])
    outs = []
    for s in range(0, n, batch):
        feed = {name: np.ascontiguousarray(x[s:s + batch], dtype=np.float32) for name, x in zip(names, xs)}
        outs.append(sess.run(None, feed)[0])
    return np.concatenate(outs) if outs else np.zeros((0,))


def _onnx_export(model: Any, xs: tuple[torch.Tensor, ...], path: Path) -> str:
    """Write ``model`` to ONNX with a dynamic batch size; returns the exporter used ("dynamo" or "torchscript")."""
    import torch

    names = _onnx_names(len(xs))
    if importlib.util.find_spec("onnxscript") is not None:
        batch = torch.export.Dim("batch")
        # the exporter notes at WARNING that torchvision's operators are not registered (none is used here)
        registration = logging.getLogger("torch.onnx._internal.exporter._registration")
        level = registration.level
        registration.setLevel(logging.ERROR)
        try:
            torch.onnx.export(model, xs, str(path), input_names=names, output_names=["output"],
                              dynamic_shapes=tuple({0: batch} for _ in xs), dynamo=True, verbose=False,
                              report=False)
            return "dynamo"
        except Exception as exc:  # noqa: BLE001 - a model torch.export cannot capture: the legacy exporter
            first = (str(exc).strip().splitlines() or [""])[0][:200]
            log.warning("torch.export could not capture the model (%s: %s); using the TorchScript-based ONNX "
                        "exporter", type(exc).__name__, first)
        finally:
            registration.setLevel(level)
    torch.onnx.export(model, xs, str(path), input_names=names, output_names=["output"],
                      dynamic_axes={**{n: {0: "batch"} for n in names}, "output": {0: "batch"}}, dynamo=False)
    return "torchscript"


def export_model(model: Any, input_shape: Any, path: str | Path, fmt: str = "onnx", *, batch: int = 16,
                 tolerance: float = 1e-4, seed: int = 0) -> ExportResult:
    """Export ``model`` and check the exported file reproduces its outputs."""
    import torch

    if fmt not in ("onnx", "torchscript"):
        raise ConfigError(f"unknown export format {fmt!r}; use 'onnx' or 'torchscript'")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    xs = _inputs(input_shape, batch, seed)
    with torch.no_grad():
        ref = model(*xs).numpy()
    exporter = None
    if fmt == "onnx":
        exporter = _onnx_export(model, xs, path)
        out = _run_onnx(path, tuple(x.numpy() for x in xs))
    else:
        scripted = torch.jit.trace(model, xs)
        scripted.save(str(path))
        loaded = torch.jit.load(str(path))
        with torch.no_grad():
            out = loaded(*xs).numpy()
    diff = float(np.max(np.abs(out - ref)))
    if not diff <= tolerance:
        raise ConfigError(f"exported {fmt} model at {path} differs from PyTorch by {diff:.3g} (> {tolerance:g})")
    return ExportResult(path, fmt, diff, batch, exporter=exporter)


# -- task data for calibration and accuracy ----------------------------------------------------

def _task_data(task: Task, arch: Any, model: Any) -> tuple[Any, Any, Any, str]:
    """(calibration inputs | None, validation inputs | None, validation labels | None, where they came from)."""
    cal = val = None
    source = "not available (the task offers no validation data)"
    hook = getattr(task, "validation_data", None)
    if callable(hook):
        got = hook(arch)
        if got is not None:
            val = got
            source = "Task.validation_data()"
    hook = getattr(task, "calibration_data", None)
    if callable(hook):
        cal = hook(arch)
    if val is None or cal is None:
        from nas_core.estimators.base import EvalContext

        try:
            est = task.estimator()
        except Exception:  # noqa: BLE001 - no estimator data: quantize without it
            est = None
        dataset = getattr(est, "dataset", None)
        if callable(dataset):
            data = dataset(EvalContext(arch, model, 0))
            if val is None and getattr(data, "x_val", None) is not None and getattr(data, "y_val", None) is not None:
                val = (data.x_val, data.y_val)
                source = "the estimator's validation split"
            if cal is None and getattr(data, "x_train", None) is not None:
                xt = _as_tuple(data.x_train)
                rng = np.random.default_rng(0)
                idx = np.sort(rng.permutation(len(xt[0]))[:N_CALIBRATION])
                cal = tuple(np.asarray(x)[idx] for x in xt)
    if val is not None:
        x, y = val
        val = (tuple(np.asarray(v, dtype=np.float32) for v in _as_tuple(x)), np.asarray(y))
    if cal is not None:
        cal = tuple(np.asarray(v, dtype=np.float32) for v in _as_tuple(cal))
    return cal, (val[0] if val else None), (val[1] if val else None), source


def _accuracy(logits: np.ndarray, y: np.ndarray) -> float | None:
    if logits.ndim != 2 or y.ndim != 1 or len(y) != len(logits) or not np.issubdtype(y.dtype, np.integer):
        return None
    return float(np.mean(np.argmax(logits, axis=1) == y))


def _torch_outputs(model: Any, xs: tuple[np.ndarray, ...], batch: int = 512) -> np.ndarray:
    import torch

    outs = []
    with torch.no_grad():
        for s in range(0, len(xs[0]), batch):
            outs.append(model(*(torch.as_tensor(x[s:s + batch]) for x in xs)).numpy())
    return np.concatenate(outs)


def quantize_onnx(fp32: Path, int8: Path, calibration: tuple[np.ndarray, ...] | None) -> str:
    """Write an int8 model; returns the method ("static (QDQ, calibrated on N inputs)" or "dynamic")."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic, \
        quantize_static

    if calibration is not None and len(calibration[0]):
        names = _onnx_names(len(calibration))
        cal: tuple[np.ndarray, ...] = calibration

        class Reader(CalibrationDataReader):  # type: ignore[misc]  # onnxruntime has no type information
            def __init__(self) -> None:
                self.batches = iter([{n: x[s:s + 32] for n, x in zip(names, cal)}
                                     for s in range(0, len(cal[0]), 32)])

            def get_next(self) -> dict[str, np.ndarray] | None:
                return next(self.batches, None)

        from nas_core.safety import confined

        pre = confined(int8.parent, int8.name + ".pre.onnx")  # a symlink there must not be written or unlinked
        try:
            from onnxruntime.quantization.shape_inference import quant_pre_process

            quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
            source = pre
        except Exception:  # noqa: BLE001 - pre-processing is an optimisation only
            source = fp32
        try:
            quantize_static(str(source), str(int8), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
        finally:
            pre.unlink(missing_ok=True)
        return f"static (QDQ, per-channel int8 weights, int8 activations calibrated on {len(calibration[0])} " \
               "training inputs)"
    quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8)
    return "dynamic (int8 weights, activations quantized at run time)"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _write_sidecar(path: Path, doc: Mapping[str, Any]) -> Path:
    from nas_core.safety import confined

    side = confined(path.parent, path.name + ".json")  # a symlink leading out of exports/ is refused
    side.write_text(json.dumps({"file": path.name, "sha256": _sha256(path), **doc}, indent=2, sort_keys=True,
                               default=str, allow_nan=True) + "\n")
    return side


def load_weights(path: Path, trial: int) -> dict[str, Any]:
    """A trial's state dict, loaded with ``weights_only=True``; anything but plain tensors is refused."""
    import torch

    try:
        state = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as exc:  # noqa: BLE001 - UnpicklingError, truncated file, ...
        # PyTorch's message suggests weights_only=False; that would run the file's code, so it is not repeated
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        import re

        found = re.search(r"(?:Unsupported global: |unsupported )GLOBAL [\w.]+", str(exc))
        what = f"it names {found.group(0).split('GLOBAL ')[1]}" if found else None
        if what is None and lines and "weights_only" not in lines[0]:
            what = lines[0]
        raise StoreError(f"weights of trial {trial} at {path} are refused: they hold something other than tensors "
                         f"or are damaged ({type(exc).__name__}{': ' + what[:200] if what else ''}); never load "
                         "such a file with pickle or weights_only=False, it can run code") from None
    if not isinstance(state, Mapping):
        raise StoreError(f"weights of trial {trial} at {path} are not a state dict (got {type(state).__name__})")
    return dict(state)


def export_trial(study_dir: str | Path, trial: int, fmt: str = "onnx", *, registry: Any = None,
                 quantize: str | None = None, code_options: Mapping[str, Any] | None = None,
                 min_agreement: float | None = None) -> ExportResult:
    from nas_core import provenance
    from nas_core.plugins import Registry
    from nas_core.safety import confined
    from nas_core.space import restrict
    from nas_core.store import Store, TrialState

    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}; use 'onnx', 'torchscript' or 'tflite'")
    if quantize is not None and quantize not in QUANTIZATIONS:
        raise ConfigError(f"unknown quantization {quantize!r}; use 'int8'")
    if quantize is not None and fmt == "torchscript":
        raise ConfigError(f"int8 quantization needs --format onnx, not {fmt!r}")
    if min_agreement is not None and (fmt != "tflite" or not 0.0 <= min_agreement <= 1.0):
        raise ConfigError(f"min_agreement must be a fraction in 0..1 with --format tflite, got {min_agreement!r}")
    if fmt == "tflite":
        from nas_core.export_tflite import require_mcu

        require_mcu()
    if isinstance(trial, bool) or not isinstance(trial, int) or trial < 1:
        raise ConfigError(f"trial must be a positive trial number, got {trial!r}")
    study_dir = Path(study_dir)
    if not (study_dir / "study.db").is_file():
        raise StoreError(f"no study store at {study_dir / 'study.db'}")
    with Store.open(study_dir / "study.db") as store:
        record = store.trial(trial)
        cfg = store.config
        study_prov = store.provenance
        study_info = {"study_id": store.study_id, "name": store.meta("study_name"), "created": store.meta("created")}
    if record.state != TrialState.COMPLETE:
        raise StoreError(f"trial {trial} is {record.state.value}, not complete; only trained trials can be exported")
    weights = confined(study_dir, "trials", f"{trial:05d}", "model.pt")
    if not weights.is_file():
        if (cfg.get("estimator") or "train") != "train":
            raise StoreError(f"trial {trial} was scored by {cfg['estimator']!r} and never trained, so it has no "
                             "weights to export; train the architecture first")
        raise StoreError(f"trial {trial} has no saved weights at {weights}")
    registry = registry or Registry()
    from nas_core.study import check_stored_code, config_from_stored

    check_stored_code(config_from_stored(cfg), registry, code_options, f"nas export {study_dir}")
    _, entry = registry.space(cfg["space_key"])
    space = entry.space()
    if cfg.get("restrict"):
        space = restrict(space, cfg["restrict"])
    task = entry.task(space, **dict(cfg.get("task_options") or {}))
    model = space.build(record.arch)
    try:
        model.load_state_dict(load_weights(weights, trial))
    except RuntimeError as exc:
        first = (str(exc).strip().splitlines() or [""])[0]
        raise StoreError(f"weights of trial {trial} do not fit its architecture ({first[:200]})") from None
    model.eval()
    trial_doc = {"number": record.number, "arch": record.arch.to_dict(), "arch_hash": record.arch.hash,
                 "seed": record.seed, "fidelity": dict(record.fidelity), "metrics": dict(record.metrics),
                 "costs": dict(record.costs), "weights_sha256": _sha256(weights)}
    if fmt == "tflite":
        return _export_tflite(study_dir, trial, model, task, record.arch, min_agreement,
                              {"trial": trial_doc, "study": study_info, "provenance": study_prov})
    suffix = ".onnx" if fmt == "onnx" else ".pt"
    out = confined(study_dir, "exports", f"trial-{trial:05d}{suffix}")
    res = export_model(model, task.input_shape(record.arch), out, fmt)

    accuracy: dict[str, Any] | None = None
    quant: dict[str, Any] | None = None
    data_note = "not measured (only with --quantize)"
    if quantize:
        int8_path = confined(study_dir, "exports", f"trial-{trial:05d}.int8.onnx")
        cal, x_val, y_val, data_note = _task_data(task, record.arch, model)
        method = quantize_onnx(out, int8_path, cal)
        xs_check = tuple(x.numpy() for x in _inputs(task.input_shape(record.arch), res.n_checked, 0))
        q_diff = float(np.max(np.abs(_run_onnx(int8_path, xs_check) - _torch_outputs(model, xs_check))))
        quant = {"path": str(int8_path), "method": method, "size_bytes": int8_path.stat().st_size,
                 "fp32_size_bytes": out.stat().st_size, "max_abs_diff": q_diff, "max_abs_diff_validation": None,
                 "accuracy_fp32": None,
                 "accuracy_int8": None, "accuracy_change": None, "n_validation": 0, "accuracy_note": data_note}
        if x_val is not None:
            logits_torch, logits_int8 = _torch_outputs(model, x_val), _run_onnx(int8_path, x_val)
            quant["max_abs_diff_validation"] = float(np.max(np.abs(logits_int8 - logits_torch)))
            acc_torch = _accuracy(logits_torch, y_val)
            acc_fp32 = _accuracy(_run_onnx(out, x_val), y_val)
            acc_int8 = _accuracy(logits_int8, y_val)
            if acc_torch is not None and acc_fp32 is not None and acc_int8 is not None:
                accuracy = {"pytorch": acc_torch, "exported": acc_fp32, "n": int(len(y_val))}
                quant.update(accuracy_fp32=acc_fp32, accuracy_int8=acc_int8, accuracy_change=acc_int8 - acc_fp32,
                             n_validation=int(len(y_val)), accuracy_note=f"measured on {data_note}")
            else:
                quant["accuracy_note"] = "not measured (the model's output is not class scores)"

    doc = {"format": fmt, "exported": provenance.now_iso(),
           "check": {"max_abs_diff": res.max_abs_diff, "tolerance": 1e-4, "n_random_inputs": res.n_checked,
                     "against": "the PyTorch model with the trial's saved weights", "exporter": res.exporter},
           "accuracy": accuracy, "accuracy_note": None if accuracy else data_note, "quantization": quant,
           "trial": trial_doc, "study": study_info, "provenance": study_prov,
           "export_environment": provenance.environment()}
    sidecar = _write_sidecar(out, doc)
    if quant is not None:
        _write_sidecar(Path(quant["path"]), {**doc, "format": "onnx-int8"})
    return ExportResult(res.path, fmt, res.max_abs_diff, res.n_checked, sidecar, accuracy, quant,
                        exporter=res.exporter)


def _export_tflite(study_dir: Path, trial: int, model: Any, task: Task, arch: Any, min_agreement: float | None,
                   context: Mapping[str, Any]) -> ExportResult:
    """``exports/trial-NNNNN.tflite`` (full-integer int8, TFLM-checked), its sidecar and firmware bundle."""
    from nas_core import provenance
    from nas_core.export_tflite import AGREEMENT_THRESHOLD, export_int8_tflite, write_bundle
    from nas_core.safety import confined

    cal, x_val, y_val, data_note = _task_data(task, arch, model)
    example = _inputs(task.input_shape(arch), 1, 0)
    got = export_int8_tflite(model, example, cal, x_val, y_val,
                             AGREEMENT_THRESHOLD if min_agreement is None else min_agreement)
    out = confined(study_dir, "exports", f"trial-{trial:05d}.tflite")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(got["model"])
    bundle_dir = confined(study_dir, "exports", f"trial-{trial:05d}-tflm")
    bundle = write_bundle(bundle_dir, out.name, got["model"], got["ops"], got["arena_bytes"], got["interpreter"],
                          len(example))
    check = dict(got["check"])
    check["data"] = data_note if check["inputs"] == "validation" else "the calibration inputs (no validation data)"
    n_cal = min(len(cal[0]), 256) if cal is not None else 0
    info = {"path": str(out), "size_bytes": out.stat().st_size, "float_size_bytes": got["float_bytes"],
            "quantization": "full-integer int8: int8 weights per channel, int8 activations per tensor, int8 "
                            f"inputs and outputs; calibrated on {n_cal} inputs",
            "converter": "litert-torch + ai-edge-quantizer (static_wi8_ai8)", "runtime": "tflite-micro (Python)",
            "ops": got["ops"], "resolver": bundle["resolver"], "arena_bytes": got["arena_bytes"],
            "bundle": str(bundle_dir), "check": check}
    accuracy = ({"pytorch": check["accuracy_fp32"], "exported": check["accuracy_int8"], "n": check["n"]}
                if check.get("accuracy_fp32") is not None else None)
    doc = {"format": "tflite", "exported": provenance.now_iso(), "check": check, "tflite": info,
           "accuracy": accuracy, "accuracy_note": None if accuracy else "not measured (no labelled class data)",
           "quantization": None, **context, "export_environment": provenance.environment()}
    sidecar = _write_sidecar(out, doc)
    return ExportResult(out, "tflite", float(check["max_abs_diff"]), int(check["n"]), sidecar, accuracy, None, info)
