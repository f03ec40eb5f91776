"""One-shot search cost on the ECG task: DARTS vs one full training; Once-for-All specialisation per target.

    python benchmarks/oneshot_cost.py --out runs/oneshot          # the measured run (about 20-30 min on 2 cores)
    python benchmarks/oneshot_cost.py --quick --out /tmp/oneshot   # a smoke test in a few minutes

1. **DARTS** (first order, latency penalty on the nRF52840) over the ECG
   compound space's mixed-op support (template ``phi = 0`` at 180 Hz, 3 stages,
   16 candidates per stage: plain, separable, inverted x2 / x4, kernels 3-9), on
   a stratified fraction of the DS1 training records split into a weight half
   and an architecture half. Wall time: ``darts_search_s``.
2. **One full training** of the derived architecture with the ECG task's own
   estimator at the ECG benchmark's fidelity (10 epochs, early stopping with
   patience 3, all training beats, batch 256, one thread). Wall time:
   ``single_train_s`` (data loaded before the clock starts, for both).
3. **Once-for-All**: the elastic supernet trained by progressive shrinking
   (one-time cost ``supernet_train_s``), then specialised to each target
   (nRF52840, STM32L4, Apollo4, MAX78000) by evolutionary search with inherited
   weights: ``specialise_s`` per target (the supernet is not trained again),
   plus an optional 1-epoch fine-tuning (``finetune_s``, reported apart), and
   the same search ranked by an accuracy predictor fitted on inherited scores
   (``specialise_predictor_s``; its training data are a one-time cost,
   ``predictor_data_s``).

Writes ``benchmarks/results/oneshot_cost.{json,md}`` and saves the supernet to
``<out>/ecg_supernet.pt``. Everything runs on one torch thread; the JSON
records the machine load and the other busy processes at start and end.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _results  # noqa: E402

TARGETS = ("nrf52840", "stm32l4", "apollo4", "max78000")
TRAIN_RATES = (118.0, 157.0, 180.0, 218.0, 281.0)


def machine_load() -> dict:
    """Load average and the busiest other processes (for the record: timings depend on them)."""
    out = {"loadavg": Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else None}
    try:
        ps = subprocess.run(["ps", "-eo", "pid,pcpu,etime,args", "--sort=-pcpu"], capture_output=True, text=True,
                            timeout=10).stdout.splitlines()
        me = os.getpid()
        rows = []
        for line in ps[1:]:
            parts = line.split(None, 3)
            if len(parts) == 4 and int(parts[0]) != me and float(parts[1]) >= 5.0:
                rows.append({"pid": int(parts[0]), "pcpu": float(parts[1]), "etime": parts[2], "cmd": parts[3][:140]})
        out["busy_processes"] = rows[:10]
    except (OSError, subprocess.SubprocessError, ValueError):
        out["busy_processes"] = None
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/oneshot")
    ap.add_argument("--quick", action="store_true", help="tiny settings, for a smoke test")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--darts-epochs", type=int, default=5)
    ap.add_argument("--darts-fraction", type=float, default=0.16)
    ap.add_argument("--darts-lambda", type=float, default=0.2)
    ap.add_argument("--ofa-steps", type=int, default=3000)
    ap.add_argument("--predictor-archs", type=int, default=80)
    ap.add_argument("--spec-time", type=float, default=200.0, help="time limit of each evolutionary search (s)")
    ap.add_argument("--skip-darts", action="store_true")
    ap.add_argument("--skip-ofa", action="store_true")
    ap.add_argument("--data-dir", default=os.environ.get("MITDB_DIR"))
    ap.add_argument("--cache-dir", default=os.environ.get("NAS_CACHE_DIR"))
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    from nas_core.estimators.base import EvalContext
    from nas_core.estimators.predictor import MLPEnsemble
    from nas_core.oneshot import DARTS, DARTSConfig
    from nas_ecg.budget import load_ecg_target
    from nas_ecg.space import CompoundECGSpace, scaled
    from nas_ecg.supernet import (
        ECGElasticSupernet,
        ECGMixedSupport,
        ECGRateData,
        ProgressiveShrinking,
        collect_inherited_scores,
        feasible_rates,
        specialise,
        train_progressive,
    )
    from nas_ecg.task import ECGTask

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    load_start = machine_load()
    space = CompoundECGSpace()
    task = ECGTask(space, epochs=10, patience=3, data_fraction=1.0, batch_size=256, lr=3e-3, threads=1,
                   data_dir=args.data_dir, cache_dir=args.cache_dir)
    quick = args.quick
    summary: dict = {"quick": quick}
    rows: list[dict] = []

    # -- DARTS vs one full training -------------------------------------------------------------------
    if not args.skip_darts:
        est = task.estimator()
        t = time.monotonic()
        data180 = est.dataset_at(180.0)
        summary["data_load_180hz_s"] = time.monotonic() - t
        support = ECGMixedSupport(space) if not quick else ECGMixedSupport(space, blocks=("plain", "separable"),
                                                                           kernels=(3, 9))
        cfg = DARTSConfig(epochs=1 if quick else args.darts_epochs, order=1, batch_size=128, w_lr=3e-3,
                          alpha_lr=3e-2, hw_lambda=args.darts_lambda, cost_metric="latency_ms",
                          data_fraction=0.02 if quick else args.darts_fraction, class_weights="balanced",
                          class_weight_cap=50.0, max_param_free=2, hessian_early_stop=True, power_iterations=5,
                          threads=1)
        target = load_ecg_target("nrf52840")
        t = time.monotonic()
        res = DARTS(support, data180, cfg, target=target, seed=args.seed).search(
            progress=lambda e: print(f"  darts epoch {e['epoch']}: train {e['train_loss']:.3f} alpha {e['alpha_loss']:.3f} "
                                     f"E[latency] {e['expected_cost']:.2f} ms entropy {e['entropy']:.3f} "
                                     f"eig {e.get('hessian_eig', float('nan')):.3g} ({e['elapsed_s']:.0f} s)", flush=True))
        darts_s = time.monotonic() - t
        print(f"DARTS: {darts_s:.0f} s -> {res.arch.to_json()}")
        torch.manual_seed(args.seed)
        model = space.build(res.arch)
        fid = {"epochs": 1, "data_fraction": 0.05} if quick else {}
        t = time.monotonic()
        metrics = est.evaluate(EvalContext(res.arch, model, args.seed, fid))
        single_s = time.monotonic() - t
        print(f"full training of the derived architecture: {single_s:.0f} s, val macro-F1 {metrics['val_macro_f1']:.3f}")
        static = task.static_metrics(res.arch, model, target)
        summary.update({
            "darts_search_s": darts_s, "single_train_s": single_s, "darts_over_single": darts_s / single_s,
            "darts_target_met": darts_s <= 3 * single_s, "darts_arch": res.arch.to_json(),
            "darts_details": {k: v for k, v in res.details.items() if k != "history"},
            "darts_history": res.details["history"], "darts_config": cfg.__dict__,
            "derived_val_macro_f1": metrics["val_macro_f1"], "derived_epochs_run": metrics["epochs_run"],
            "derived_static_nrf52840": {k: static[k] for k in ("params", "macs", "latency_ms", "energy_uj_per_beat")},
            "single_train_fidelity": {"epochs": 10, "patience": 3, "data_fraction": 1.0, "batch_size": 256} if not quick else fid,
        })
        # the ECG benchmark's own trial times, for context (measured with 2 workers on a busy machine)
        try:
            from nas_core.store import Store, TrialState

            with Store.open(Path("runs/bench-ecg/study.db")) as st:
                d = [t.duration_s for t in st.trials([TrialState.COMPLETE]) if t.duration_s]
            summary["bench_ecg_trial_s"] = {"n": len(d), "median": float(np.median(d)), "min": float(min(d)),
                                            "max": float(max(d))}
        except Exception as exc:  # noqa: BLE001 - context only
            summary["bench_ecg_trial_s"] = f"unavailable: {exc}"

    # -- Once-for-All --------------------------------------------------------------------------------------
    if not args.skip_ofa:
        data = ECGRateData(data_dir=args.data_dir, cache_dir=args.cache_dir, npz_dir=out / "cache", train_fraction=0.5)
        rates = feasible_rates(space)
        t = time.monotonic()
        data.prefetch(rates if not quick else TRAIN_RATES[:2])
        summary["data_prep_s"] = time.monotonic() - t
        sn = ECGElasticSupernet(space, seed=args.seed)
        sch = ProgressiveShrinking(steps=40 if quick else args.ofa_steps, batch_size=128, lr=3e-3,
                                   rates=TRAIN_RATES[:2] if quick else TRAIN_RATES, threads=1)
        t = time.monotonic()
        hist = train_progressive(sn, data, sch, seed=args.seed,
                                 progress=lambda e: print(f"  OFA phase {e['phase']}: {e['steps']} steps, loss "
                                                          f"{e['loss_first']:.3f} -> {e['loss_last']:.3f} "
                                                          f"({e['elapsed_s']:.0f} s)", flush=True))
        summary["supernet_train_s"] = time.monotonic() - t
        summary["supernet_history"] = hist
        summary["supernet_schedule"] = {**sch.__dict__, "phases": [list(p) for p in sch.phases]}
        torch.save(sn.module.state_dict(), out / "ecg_supernet.pt")

        def feasible_any(a) -> bool:  # predictor data: archs within the monitoring band, any target
            return scaled(a)["fs_hz"] >= 100.0 and scaled(a)["fs_hz"] <= 360.0

        if quick:
            data_rates = set(TRAIN_RATES[:2])
            feasible_any = lambda a: scaled(a)["fs_hz"] in data_rates  # noqa: E731
        t = time.monotonic()
        scored = collect_inherited_scores(sn, data, 6 if quick else args.predictor_archs, seed=args.seed + 1,
                                          feasible=feasible_any)
        summary["predictor_data_s"] = time.monotonic() - t
        summary["predictor_archs"] = len(scored)
        predictor = MLPEnsemble(space, n_models=5, seed=args.seed).fit([a for a, _ in scored], [v for _, v in scored])
        extra = []
        if quick:
            from nas_core.constraints import Constraint

            extra = [Constraint("fs_hz", "<=", max(TRAIN_RATES[:2])), Constraint("fs_hz", ">=", min(TRAIN_RATES[:2]))]
        for name in TARGETS:
            target = load_ecg_target(name)
            kw = dict(population=4 if quick else 16, generations=1 if quick else 8, parents=2 if quick else 6,
                      max_time_s=args.spec_time, calib_samples=2000, seed=args.seed, extra_constraints=extra, task=task)
            r = specialise(sn, target, data, fine_tune_epochs=1, fine_tune_fraction=0.05 if quick else 0.25, **kw)
            rp = specialise(sn, target, data, predictor=predictor, verify_top=3, **kw)
            print(f"{name}: specialised in {r.specialise_s - r.finetune_s:.0f} s (+{r.finetune_s:.0f} s fine-tuning), "
                  f"inherited macro-F1 {r.inherited['macro_f1']:.3f} -> fine-tuned {r.fine_tuned['val_macro_f1']:.3f}; "
                  f"with predictor {rp.specialise_s:.0f} s, inherited {rp.inherited['macro_f1']:.3f}", flush=True)
            rows.append({
                "target": name, "specialise_s": r.specialise_s - r.finetune_s, "finetune_s": r.finetune_s,
                "specialise_predictor_s": rp.specialise_s, "meets_constraints": not r.violations,
                "meets_constraints_predictor": not rp.violations, "under_5_min": r.specialise_s - r.finetune_s < 300,
                "evaluations": r.evaluations, "arch": r.arch.to_json(), "fs_hz": r.static["fs_hz"],
                "params": r.static["params"], "macs": r.static["macs"], "latency_ms": r.static["latency_ms"],
                "energy_uj_per_beat": r.static["energy_uj_per_beat"], "peak_ram_kb": r.static["peak_ram_kb"],
                "inherited_macro_f1": r.inherited["macro_f1"], "fine_tuned_macro_f1": r.fine_tuned["val_macro_f1"],
                "predictor_arch": rp.arch.to_json(), "predictor_inherited_macro_f1": rp.inherited["macro_f1"],
                "predictor_evaluations": rp.evaluations,
            })
    for r in rows:
        r["darts_search_s"] = summary.get("darts_search_s")
        r["single_train_s"] = summary.get("single_train_s")
    summary["load_start"] = load_start
    summary["load_end"] = machine_load()
    md = _markdown(summary, rows)
    if quick:  # a smoke test does not overwrite the published figures
        import json

        (out / "oneshot_cost_quick.json").write_text(json.dumps({"rows": rows, "summary": summary}, indent=2, default=str))
    else:
        _results.write("oneshot_cost", rows, md, summary=summary)
    print(md)
    return 0


def _markdown(s: dict, rows: list[dict]) -> str:
    f = lambda v, d=0: "n/a" if v is None else f"{v:.{d}f}"  # noqa: E731
    lines = ["# One-shot search cost on the ECG task (2 CPU cores, one torch thread)", ""]
    if s.get("quick"):
        lines += ["**Smoke-test settings (--quick): these figures are not the measurement.**", ""]
    if "darts_search_s" in s:
        ratio = s["darts_over_single"]
        lines += ["## DARTS vs one full training", "",
                  f"- DARTS search (first order, latency penalty on nRF52840, {s['darts_details']['epochs_run']} epochs on "
                  f"{s['darts_details']['n_weight_samples']} + {s['darts_details']['n_alpha_samples']} training beats): "
                  f"**{f(s['darts_search_s'])} s**",
                  f"- one full training of the derived architecture (ECG estimator, 10 epochs max, patience 3, all "
                  f"training beats): **{f(s['single_train_s'])} s** ({f(s['derived_epochs_run'])} epochs run), "
                  f"val macro-F1 {f(s['derived_val_macro_f1'], 3)}",
                  f"- ratio DARTS / full training: **{ratio:.2f}** (target <= 3: "
                  f"{'met' if s['darts_target_met'] else 'NOT met'})",
                  f"- derived architecture: `{s['darts_arch']}`",
                  f"- collapse guard: {s['darts_details']['guard_changes'] or 'no parameter-free choice to cap'}; "
                  f"early stop: {s['darts_details']['stopped_early'] or 'not triggered'}"]
        b = s.get("bench_ecg_trial_s")
        if isinstance(b, dict):
            lines.append(f"- for context, the ECG benchmark's {b['n']} trial trainings took median {f(b['median'])} s "
                         f"(min {f(b['min'])}, max {f(b['max'])}) with 2 workers on the busy machine")
        lines.append("")
    if rows:
        lines += ["## Once-for-All specialisation per target", "",
                  f"- one-time: data preparation {f(s.get('data_prep_s'))} s, supernet training by progressive shrinking "
                  f"{f(s.get('supernet_train_s'))} s, predictor data ({s.get('predictor_archs')} sub-networks scored with "
                  f"inherited weights) {f(s.get('predictor_data_s'))} s",
                  "- per target: evolutionary search with inherited weights (BN recalibrated per sub-network), the "
                  "supernet not trained again; the 1-epoch fine-tuning is optional and timed apart", "",
                  _results.markdown_table(rows, ["target", "specialise_s", "under_5_min", "meets_constraints",
                                                 "evaluations", "fs_hz", "params", "latency_ms", "energy_uj_per_beat",
                                                 "inherited_macro_f1", "finetune_s", "fine_tuned_macro_f1",
                                                 "specialise_predictor_s", "predictor_inherited_macro_f1"]), ""]
        for r in rows:
            lines.append(f"- {r['target']}: `{r['arch']}`")
        lines.append("")
    lines += ["## Machine load", "",
              f"- load average at start {s['load_start'].get('loadavg')}, at end {s['load_end'].get('loadavg')}",
              "- other busy processes at start: " + "; ".join(
                  f"{p['cmd'][:80]} ({p['pcpu']:.0f} %)" for p in (s['load_start'].get('busy_processes') or [])[:6])]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
