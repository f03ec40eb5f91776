"""Build the tabulated digits benchmark: train every architecture of a reduced space at several fidelities.

    python benchmarks/build_table.py                   # all 936 architectures at 2, 4 and 8 epochs
    python benchmarks/build_table.py --limit 5 --out /tmp/t.csv   # a quick check

Writes ``benchmarks/tables/digits_table.csv`` (one row per architecture and
fidelity) and ``digits_table.meta.json`` (columns, space definition, fidelities,
command, date, git commit, machine, wall time). Rows are appended as they are
measured and an interrupted run continues where it stopped (same output path).

The space is ``digits/cnn`` restricted to 1-2 stages of {8, 16, 32} channels,
kernel 3, plain or depthwise-separable, with or without max-pooling; an
average or flatten head; no hidden layer or a 32-unit one with dropout 0.0 or
0.2 (a conditional dimension); ReLU: 936 architectures. Every training run uses
seed 0 for the weights and the data order, one CPU thread, the digits task's
defaults otherwise (Adam, lr 3e-3, batch 64, full training split) and reports
the best validation epoch, as the study does. ``train_seconds`` is the measured
wall time of ``TrainingEstimator.evaluate`` (Lightning included).
Hardware costs are measured on the ``digits/cortex-m4`` target.
"""

from __future__ import annotations

import argparse
import csv
import datetime as _dt
import json
import logging
import sys
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from benchmarks._results import git_commit, machine  # noqa: E402

#: the reduced space (a restriction of digits/cnn, see nas_core.space.restrict)
SPACE = {
    "name": "digits-cnn-table",
    "dimensions": [
        {"type": "repeat", "name": "stages", "min_count": 1, "max_count": 2, "block": [
            {"type": "categorical", "name": "channels", "choices": [8, 16, 32]},
            {"type": "categorical", "name": "kernel", "choices": [3]},
            {"type": "categorical", "name": "block", "choices": ["plain", "dwsep"]},
            {"type": "categorical", "name": "pool", "choices": [False, True]},
        ]},
        {"type": "categorical", "name": "head", "choices": ["avg", "flatten"]},
        {"type": "categorical", "name": "hidden", "choices": [0, 32]},
        {"type": "float", "name": "dropout", "low": 0.0, "high": 0.2, "step": 0.2, "when": {"hidden": [32, 64]}},
        {"type": "categorical", "name": "activation", "choices": ["relu"]},
    ],
}
EPOCHS = (2, 4, 8)
SEED = 0
STATIC = ["params", "macs", "layers", "peak_act_bytes", "flash_fp32_bytes", "flash_int8_bytes", "latency_ms", "energy_uj"]
METRICS = ["val_accuracy", "val_macro_f1", "val_loss", "best_epoch", "epochs_run"]
FIDELITY = ["epochs"]
TIME = "train_seconds"


def table_space():
    """The reduced digits space, buildable (``DigitsCNNSpace`` restricted to :data:`SPACE`)."""
    from nas_core.examples.digits import DigitsCNNSpace
    from nas_core.space import restrict

    return restrict(DigitsCNNSpace(), SPACE)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(HERE / "tables" / "digits_table.csv"))
    ap.add_argument("--epochs", default=",".join(map(str, EPOCHS)), help="comma-separated fidelities")
    ap.add_argument("--limit", type=int, default=None, help="only the first N architectures (a quick check)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    for name in ("lightning.pytorch", "lightning.fabric", "lightning", "pytorch_lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")

    from nas_core.estimators.base import EvalContext
    from nas_core.estimators.tabular import enumerate_architectures
    from nas_core.examples.digits import DigitsTask, TARGETS_DIR
    from nas_core.hardware import load_target

    space = table_space()
    archs = enumerate_architectures(space)
    assert len(archs) == space.size(), (len(archs), space.size())
    if args.limit:
        archs = archs[: args.limit]
    epochs = [int(e) for e in args.epochs.split(",")]
    target = load_target(TARGETS_DIR / "cortex_m4_64mhz.toml")
    task = DigitsTask(space)
    estimator = task.estimator()

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    columns = ["arch_hash", "arch", *FIDELITY, *STATIC, *METRICS, TIME]
    done: set[tuple[str, int]] = set()
    if out.exists():
        with out.open(newline="") as fh:
            done = {(r["arch_hash"], int(float(r["epochs"]))) for r in csv.DictReader(fh)}
    meta_path = out.with_suffix(".meta.json")
    prior = json.loads(meta_path.read_text()) if meta_path.exists() and done else {}
    t0 = time.time()
    fh = out.open("a", newline="")
    writer = csv.DictWriter(fh, fieldnames=columns)
    if not done:
        writer.writeheader()
    n_new = 0
    # warm-up (data loading, Lightning's first-call costs) so that train_seconds measure training only
    warm = archs[0]
    estimator.evaluate(EvalContext(warm, space.build(warm), SEED, {"epochs": 1}))
    try:
        for k, arch in enumerate(archs):
            todo = [e for e in epochs if (arch.hash, e) not in done]
            if not todo:
                continue
            torch.manual_seed(SEED)
            static = task.static_metrics(arch, space.build(arch), target)
            for e in todo:
                torch.manual_seed(SEED)  # the same initial weights at every fidelity
                model = space.build(arch)
                t = time.perf_counter()
                m = estimator.evaluate(EvalContext(arch, model, SEED, {"epochs": e}))
                secs = time.perf_counter() - t
                row = {"arch_hash": arch.hash, "arch": arch.canonical, "epochs": e,
                       **{c: f"{float(static[c]):.6g}" for c in STATIC},
                       **{c: f"{float(m[c]):.6g}" for c in METRICS}, TIME: f"{secs:.4f}"}
                writer.writerow(row)
                n_new += 1
            fh.flush()
            if (k + 1) % 25 == 0:
                el = time.time() - t0
                print(f"{k + 1}/{len(archs)} architectures, {el:.0f} s this run", flush=True)
    finally:
        fh.close()
        elapsed = time.time() - t0
        meta = {
            "description": "Every architecture of a reduced digits/cnn space trained at several epoch budgets",
            "command": " ".join(["python", *sys.argv]),
            "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "git_commit": git_commit(),
            "machine": machine(),
            "space": SPACE,
            "plugin_space": "digits/cnn",
            "target": "digits/cortex-m4",
            "n_architectures": len(archs),
            "fidelities": [{"epochs": e} for e in epochs],
            "fidelity_columns": FIDELITY,
            "static_columns": STATIC,
            "metric_columns": METRICS,
            "time_column": TIME,
            "seed": SEED,
            "threads": args.threads,
            "training": {"optimizer": "Adam", "lr": 3e-3, "batch_size": 64, "data_fraction": 1.0,
                         "metrics_of": "best validation epoch by macro-F1"},
            "wall_seconds": round(prior.get("wall_seconds", 0.0) + elapsed, 1),
            "runs": prior.get("runs", []) + [{"date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                                                "rows_written": n_new, "wall_seconds": round(elapsed, 1)}],
        }
        meta_path.write_text(json.dumps(meta, indent=2) + "\n")
    print(f"wrote {n_new} rows to {out} in {elapsed:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
