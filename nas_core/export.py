"""Export a trained trial's model to ONNX or TorchScript, checked against PyTorch.

``export_trial(study_dir, trial, fmt)`` rebuilds the trial's architecture with
its plugin's space, loads the weights the estimator saved
(``trials/NNNNN/model.pt``, read with ``torch.load(weights_only=True)``), writes
``exports/trial-NNNNN.onnx`` (or ``.pt`` for TorchScript) inside the study
directory, and runs the exported file on random inputs of the task's input
shape next to the PyTorch model: the largest absolute difference is returned and
must stay below ``tolerance``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nas_core.errors import ConfigError, StoreError


@dataclass(frozen=True)
class ExportResult:
    path: Path
    fmt: str
    max_abs_diff: float
    n_checked: int


def _inputs(shape: Any, batch: int, seed: int):
    import torch

    g = torch.Generator().manual_seed(seed)
    shapes = shape if shape and isinstance(shape[0], (tuple, list)) else (shape,)
    return tuple(torch.randn(batch, *s, generator=g) for s in shapes)


def export_model(model: Any, input_shape: Any, path: str | Path, fmt: str = "onnx", *, batch: int = 16,
                 tolerance: float = 1e-4, seed: int = 0) -> ExportResult:
    """Export ``model`` and check the exported file reproduces its outputs."""
    import torch

    if fmt not in ("onnx", "torchscript"):
        raise ConfigError(f"unknown export format '{fmt}'; use 'onnx' or 'torchscript'")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    xs = _inputs(input_shape, batch, seed)
    with torch.no_grad():
        ref = model(*xs).numpy()
    if fmt == "onnx":
        import onnxruntime as ort

        names = [f"input{i}" for i in range(len(xs))]
        torch.onnx.export(model, xs, str(path), input_names=names, output_names=["output"],
                          dynamic_axes={**{n: {0: "batch"} for n in names}, "output": {0: "batch"}},
                          dynamo=False)
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        out = sess.run(None, {n: x.numpy() for n, x in zip(names, xs)})[0]
    else:
        scripted = torch.jit.trace(model, xs)
        scripted.save(str(path))
        loaded = torch.jit.load(str(path))
        with torch.no_grad():
            out = loaded(*xs).numpy()
    diff = float(np.max(np.abs(out - ref)))
    if not diff <= tolerance:
        raise ConfigError(f"exported {fmt} model at {path} differs from PyTorch by {diff:.3g} (> {tolerance:g})")
    return ExportResult(path, fmt, diff, batch)


def export_trial(study_dir: str | Path, trial: int, fmt: str = "onnx", *, registry: Any = None) -> ExportResult:
    import torch

    from nas_core.plugins import Registry
    from nas_core.space import restrict
    from nas_core.store import Store, TrialState

    study_dir = Path(study_dir)
    with Store.open(study_dir / "study.db") as store:
        record = store.trial(trial)
        cfg = store.config
    if record.state != TrialState.COMPLETE:
        raise StoreError(f"trial {trial} is {record.state.value}, not complete; only trained trials can be exported")
    weights = study_dir / "trials" / f"{trial:05d}" / "model.pt"
    if not weights.is_file():
        raise StoreError(f"trial {trial} has no saved weights at {weights}")
    registry = registry or Registry()
    _, entry = registry.space(cfg["space_key"])
    space = entry.space()
    if cfg.get("restrict"):
        space = restrict(space, cfg["restrict"])
    task = entry.task(space, **dict(cfg.get("task_options") or {}))
    model = space.build(record.arch)
    model.load_state_dict(torch.load(weights, weights_only=True))
    suffix = ".onnx" if fmt == "onnx" else ".pt"
    out = study_dir / "exports" / f"trial-{trial:05d}{suffix}"
    return export_model(model, task.input_shape(record.arch), out, fmt)
