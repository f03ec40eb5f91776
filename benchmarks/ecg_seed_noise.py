"""How noisy is ECG validation macro-F1 under a change of seed, and does averaging seeds help?

    MITDB_DIR=../shared/data/mitdb NAS_CACHE_DIR=runs/bench-cache python benchmarks/ecg_seed_noise.py

Takes the same 12 architectures as ``ranking.py --seed-repeat 12`` (fully trained by
the ECG benchmark: 10 epochs, patience 3, all DS1 training beats) and trains each
under 4 seeds in all: the benchmark's own run (seed s, from its store), ``s + 10000``
(cached by ``ranking.py`` in ``runs/ranking/seed_repeat.json``), and ``s + 20000``,
``s + 30000`` (trained here, cached in the same file). Reports:

* Spearman rho between two single runs (run 1 vs run 2, run 3 vs run 4): how well one
  training ranks the architectures the way another training does;
* Spearman rho between the mean of runs 1-2 and the mean of runs 3-4: the same for the
  ``repeats=2`` estimator (``val_macro_f1_mean``);
* the spread of macro-F1 across seeds of one architecture against the spread across
  architectures.

Writes ``benchmarks/results/ecg_seed_noise.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import _results  # noqa: E402
import ranking  # noqa: E402

OFFSETS = (10_000, 20_000, 30_000)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=12, help="architectures (the same selection as ranking.py)")
    ap.add_argument("--ecg-store", default="runs/bench-ecg")
    ap.add_argument("--out", default="runs/ranking")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--data-dir", default=os.environ.get("MITDB_DIR"))
    ap.add_argument("--cache-dir", default=os.environ.get("NAS_CACHE_DIR"))
    args = ap.parse_args()
    from multiprocessing import get_context

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    trials = ranking.ecg_trials([Path(args.ecg_store) / "study.db", out / "ecg-extra" / "study.db"])
    if len(trials) < args.n:
        raise SystemExit(f"only {len(trials)} fully trained ECG architectures; run benchmarks/ecg_search.py first")
    idx = sorted(np.random.default_rng(2).choice(len(trials), args.n, replace=False).tolist())  # as ranking.py
    cache_file = out / "seed_repeat.json"
    cache = json.loads(cache_file.read_text()) if cache_file.exists() else {}
    jobs = [(trials[i][0].arch.to_json(), int(trials[i][0].seed) + off, args.data_dir, args.cache_dir)
            for off in OFFSETS for i in idx]
    todo = [j for j in jobs if f"{j[0]}|{j[1]}" not in cache]
    if todo:
        print(f"training {len(todo)} runs ({len(jobs) - len(todo)} cached) with {args.workers} workers", flush=True)
        with get_context("spawn").Pool(args.workers) as pool:
            for job, (h, f1, secs) in zip(todo, pool.imap(ranking._retrain, todo)):
                cache[f"{job[0]}|{job[1]}"] = {"hash": h, "val_macro_f1": f1, "train_s": secs}
                cache_file.write_text(json.dumps(cache, indent=1))
                print(f"  {h} seed {job[1]}: val macro-F1 {f1:.4f} ({secs:.0f} s)", flush=True)
    runs = np.array([[trials[i][0].metrics["val_macro_f1"] for i in idx]] + [
        [cache[f"{trials[i][0].arch.to_json()}|{int(trials[i][0].seed) + off}"]["val_macro_f1"] for i in idx]
        for off in OFFSETS])  # (4 runs, n archs)
    rows = []
    for name, a, b in (("run 1 vs run 2", runs[0], runs[1]), ("run 3 vs run 4", runs[2], runs[3]),
                       ("run 1 vs run 3", runs[0], runs[2]), ("run 2 vs run 4", runs[1], runs[3]),
                       ("mean(1,2) vs mean(3,4)", runs[:2].mean(0), runs[2:].mean(0)),
                       ("mean(1,3) vs mean(2,4)", runs[[0, 2]].mean(0), runs[[1, 3]].mean(0))):
        tau, rho = ranking.correlations(a, b)
        rows.append({"comparison": name, "kendall_tau": tau, "spearman_rho": rho, "n_archs": len(idx)})
    within = float(np.mean(runs.std(0, ddof=1)))
    between = float(runs.mean(0).std(ddof=1))
    summary = {"within_arch_std_mean": within, "between_arch_std_of_means": between,
               "macro_f1_range": [float(runs.min()), float(runs.max())]}
    single = [r["spearman_rho"] for r in rows if r["comparison"].startswith("run")]
    double = [r["spearman_rho"] for r in rows if r["comparison"].startswith("mean")]
    md = ["# ECG validation macro-F1 under a change of seed", "",
          f"{len(idx)} architectures of `ecg/compound-cnn`, each trained 4 times at the benchmark's fidelity "
          "(10 epochs, patience 3, all DS1 training beats, validation on records 114, 201, 205, 223), seeds "
          "s, s+10000, s+20000, s+30000.", "",
          _results.markdown_table(rows, ["comparison", "kendall_tau", "spearman_rho", "n_archs"]), "",
          f"- spread across seeds of one architecture (mean std): {within:.4f}; spread of the 4-seed means across "
          f"architectures (std): {between:.4f}; macro-F1 range {runs.min():.3f} to {runs.max():.3f}",
          f"- mean Spearman rho between single runs {np.mean(single):.2f}; between means of 2 seeds "
          f"{np.mean(double):.2f}", "",
          "| arch | " + " | ".join(f"run {k + 1}" for k in range(4)) + " | mean |", "|---|---|---|---|---|---|"]
    for j, i in enumerate(idx):
        md.append(f"| `{trials[i][0].arch.hash}` | " + " | ".join(f"{runs[k, j]:.4f}" for k in range(4))
                  + f" | {runs[:, j].mean():.4f} |")
    text = "\n".join(md)
    print(text)
    _results.write("ecg_seed_noise", rows, text, summary=summary,
                   runs={trials[i][0].arch.hash: runs[:, j].tolist() for j, i in enumerate(idx)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
