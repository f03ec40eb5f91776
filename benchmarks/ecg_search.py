"""ECG benchmark v2: record-level cross-validated search on DS1, one rule-chosen model evaluated once on DS2.

    python benchmarks/ecg_search.py --out runs/bench-ecg2 --workers 2
    python benchmarks/ecg_search.py --out runs/bench-ecg2 --workers 2 --posthoc   # afterwards, post-hoc only

Everything before step 5 reads DS1 only; the objective is the pooled
out-of-fold score of ``cv_folds``-fold cross-validation over DS1's 22 records
(:mod:`nas_ecg.crossval`), at the search fidelity below.

1. **Repeatability** (12 architectures of ``ecg/efficient-cnn`` spanning the
   MACs range, each scored under two seeds): Spearman between the seeds per
   candidate objective, and the partial Spearman with the MACs rank removed.
   The same 12 under ``rr_features=raw`` (seed 0) compare the RR feature sets.
2. **Search**: NSGA-II (the project's default multi-objective strategy; score
   against energy per beat) and a random-search control, same space, budget,
   seeds and constraints (nRF52840, CR2032 14 days, <= 50 k parameters).
3. **Compound workflow** (:mod:`nas_ecg.compound`) on the base design the rule
   picks from the NSGA-II seed-0 study: alpha, beta, gamma by the grid at
   phi = 1, then the phi sweep until a budget binds.
4. **Selection rule** fixed in code (:func:`select`): among the NSGA-II seed-0
   study's complete trials that meet every budget, the best pooled
   out-of-fold score; ties by lower energy per beat.
5. **DS2, once**: the rule-chosen architecture and the hand-designed reference
   (at the chosen model's rate) are trained by one fixed final recipe on all of
   DS1 and scored on DS2 from a single loader access (recorded in the JSON).
6. ``--posthoc`` (a second, separate invocation on the finished run): DS2 of
   every trained search architecture and the validity correlation, in
   ``results/ecg_search_posthoc.{json,md}``, labelled post-hoc; never used for
   a choice or a claim.

Re-running with the same ``--out`` resumes every step.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _results  # noqa: E402

PUBLISHED = [  # DS2, Se / +P in %, as published (ECG-NOTES.md)
    {"model": "de Chazal et al. 2004 (published)", "S_se": 75.9, "S_ppv": 38.5, "V_se": 77.7, "V_ppv": 81.9},
    {"model": "Mar et al. 2011 (published)", "S_se": 83.2, "S_ppv": 33.5, "V_se": 86.8, "V_ppv": 75.9},
    {"model": "Zhang et al. 2014 (published)", "S_se": 79.1, "S_ppv": 36.0, "V_se": 85.5, "V_ppv": 92.7},
]
OBJECTIVES = ("cv_macro_f1", "cv_macro_f1_nsv", "cv_sv_f1", "cv_sv_ap", "cv_sv_auroc")
#: seeds per architecture in the repeatability check, and the estimator repeats compared (see step 1)
REP_SEEDS, REP_REPEATS = 4, (1, 2)  # --rep-seeds 8 adds repeats 4
#: the most seconds per candidate (median, one core) a search fidelity may cost (the issue's 10 CPU-minutes)
MAX_CPU_S_PER_CANDIDATE = 600.0


def seed_pairs(n_seeds: int, repeats: int) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """Disjoint groups of ``repeats`` consecutive seeds, paired: (0..r-1) vs (r..2r-1), (2r..) vs (3r..), ..."""
    groups = [tuple(range(g * repeats, (g + 1) * repeats)) for g in range(n_seeds // repeats)]
    return [(groups[i], groups[i + 1]) for i in range(0, len(groups) - 1, 2)]
SCENARIO = {"target": "ecg/nrf52840", "battery_days": 14.0, "max_params": 50_000}
#: the final recipe for the DS2 models: all of DS1, a fixed epoch count (no early stopping)
FINAL_EPOCHS = 10
#: folds cross-validated at the final recipe (a figure for the record; the choice was made before)
FINAL_CV_FOLDS = 1


def select(trials, constraints, score: str = "cv_macro_f1"):
    """THE selection rule: best pooled out-of-fold score among budget-feasible trials; ties: lower energy."""
    from nas_core.selection import best_feasible

    return best_feasible(trials, score=score, constraints=constraints, tie_break="energy_uj_per_beat")


def spearman(a, b) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


def partial_spearman(a, b, c) -> float:
    """Spearman of a and b with the ranks of c partialled out."""
    from scipy.stats import rankdata

    ra, rb, rc = (rankdata(v) for v in (a, b, c))
    r_ab, r_ac, r_bc = np.corrcoef(ra, rb)[0, 1], np.corrcoef(ra, rc)[0, 1], np.corrcoef(rb, rc)[0, 1]
    return float((r_ab - r_ac * r_bc) / np.sqrt(max(1e-12, (1 - r_ac ** 2) * (1 - r_bc ** 2))))


def _task_options(args, **extra):
    return {"cv_folds": args.folds, "epochs": args.epochs, "data_fraction": args.data_fraction,
            "repeats": getattr(args, "repeats", 1), "battery_days": SCENARIO["battery_days"], "band": "monitoring",
            "data_dir": args.data_dir, "cache_dir": args.cache_dir, "cv_refit": True, **extra}


def _fidelities(args) -> list[dict]:
    """The search fidelities measured, cheapest first (``--fidelities 6x0.3,10x0.5``: epochs x data fraction)."""
    out = []
    for item in args.fidelities.split(","):
        e, f, *r = item.split("x")
        out.append({"epochs": int(e), "data_fraction": float(f), "repeats": int(r[0]) if r else 1})
    return out


def _fid_key(fid) -> str:
    return f"{fid['epochs']}x{fid['data_fraction']:g}" + (f"x{fid['repeats']}" if fid.get("repeats", 1) > 1 else "")


#: the repeatability targets of the rule below (seed-to-seed Spearman, and with the MACs rank partialled out)
MIN_SPEARMAN, MIN_PARTIAL = 0.7, 0.5


def choose_fidelity(rep_rows, fidelities):
    """THE fidelity/objective rule (DS1 only), among the fidelities of at most MAX_CPU_S_PER_CANDIDATE per
    candidate (median): the cheapest fidelity at which some objective reaches Spearman >= 0.7 and partial
    Spearman >= 0.5 between seeds, with that fidelity's objective of highest partial Spearman; if none
    reaches both, the (fidelity, objective) of highest partial Spearman."""
    rep_rows = [r for r in rep_rows if r["cpu_s_median"] <= MAX_CPU_S_PER_CANDIDATE] or rep_rows
    ok = [r for r in rep_rows if r["spearman_seeds"] >= MIN_SPEARMAN and r["partial_spearman_macs"] >= MIN_PARTIAL]
    order = [_fid_key(f) for f in fidelities]
    if ok:
        first = min(order.index(r["fidelity"]) for r in ok)
        best = max((r for r in ok if order.index(r["fidelity"]) == first), key=lambda r: r["partial_spearman_macs"])
    else:
        best = max(rep_rows, key=lambda r: r["partial_spearman_macs"])
    return fidelities[order.index(best["fidelity"])], best["objective"]


def _partial(out: Path, name: str, rows) -> None:
    """Write a section's rows as soon as they exist (a killed run keeps them)."""
    (out / f"partial_{name}.json").write_text(json.dumps(rows, indent=1, default=str))


def _eval_one(job):
    """Worker: train and cross-validate one architecture (DS1 only)."""
    import torch

    torch.set_num_threads(1)
    from nas_core.estimators.base import EvalContext
    from nas_core.space import Architecture
    from nas_ecg.space import EfficientECGSpace
    from nas_ecg.task import ECGTask

    arch = Architecture(job["arch"])
    space = EfficientECGSpace()
    task = ECGTask(space, **job["options"])
    torch.manual_seed(job["seed"])
    model = space.build(arch)
    t0 = time.monotonic()
    m = task.estimator().evaluate(EvalContext(arch, model, job["seed"], artifact_dir=job.get("artifact_dir")))
    return {**job, "metrics": m, "train_s": time.monotonic() - t0}


def _cached_map(jobs, path: Path, workers: int, label: str):
    done = json.loads(path.read_text()) if path.exists() else {}
    todo = [j for j in jobs if j["key"] not in done]
    print(f"{label}: {len(jobs) - len(todo)} cached, {len(todo)} to run", flush=True)
    from concurrent.futures import as_completed

    with ProcessPoolExecutor(workers) as pool:  # each result is saved as soon as it is in
        for i, fut in enumerate(as_completed([pool.submit(_eval_one, j) for j in todo])):
            res = fut.result()
            done[res["key"]] = res
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(done))
            tmp.replace(path)
            print(f"  {label} {i + 1}/{len(todo)}: {res['key']} cv_macro_f1 {res['metrics']['cv_macro_f1']:.4f} "
                  f"({res['train_s']:.0f} s)", flush=True)
    return [done[j["key"]] for j in jobs]


def repeatability_archs(n: int = 12, seed: int = 0):
    """n feasible-looking architectures of ecg/efficient-cnn at evenly spaced MACs quantiles (no training)."""
    from nas_core.hardware import measure_costs
    from nas_ecg.space import EfficientECGSpace, scaled

    space = EfficientECGSpace()
    rng = np.random.default_rng(seed)
    pool = []
    for _ in range(400):
        a = space.sample(rng)
        spec = scaled(a)
        m = measure_costs(space.build(a), ((2, spec["length"]), (8,))).as_metrics()
        if m["params"] <= SCENARIO["max_params"]:
            pool.append((m["macs"], a))
    pool.sort(key=lambda p: p[0])
    idx = np.linspace(0, len(pool) - 1, n).round().astype(int)
    return [pool[i][1] for i in idx], [pool[i][0] for i in idx]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/bench-ecg2")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--folds", type=int, default=3)
    ap.add_argument("--fidelities", default="6x0.3,10x0.5",
                    help="search fidelities to measure, EPOCHSxFRACTION[xREPEATS], cheapest first")
    ap.add_argument("--budget", type=int, default=16, help="trained candidates per search")
    ap.add_argument("--seeds", type=int, default=3, help="search seeds per strategy")
    ap.add_argument("--population", type=int, default=6, help="NSGA-II population size")
    ap.add_argument("--grid-max", type=int, default=8, help="grid points of the compound workflow (distinct nets)")
    ap.add_argument("--data-dir", default=os.environ.get("MITDB_DIR"))
    ap.add_argument("--cache-dir", default=os.environ.get("NAS_CACHE_DIR"))
    ap.add_argument("--posthoc", action="store_true",
                    help="only the POST-HOC table (DS2 of every trained search architecture) of a finished run, "
                         "written to results/ecg_search_posthoc.{json,md}; a separate invocation, so that the "
                         "main run reads DS2 exactly once")
    ap.add_argument("--n-archs", type=int, default=12, help="architectures of the repeatability check")
    ap.add_argument("--rep-seeds", type=int, default=REP_SEEDS,
                    help="training seeds per architecture in the repeatability check (even; 8 adds repeats 4)")
    ap.add_argument("--stop-after", choices=("repeatability",), default=None,
                    help="stop after step 1 (a later run with the same --out reuses its results)")
    ap.add_argument("--n-rr", type=int, default=12, help="of those, how many (evenly spaced) also with raw RR features")
    ap.add_argument("--skip-compound", action="store_true",
                    help="leave out step 3 (the compound workflow from the rule-chosen base design), e.g. when the "
                         "2.5 h budget does not hold it; the JSON records compound: null")
    ap.add_argument("--repeatability-from", default=None, metavar="JSON",
                    help="take step 1 (repeatability rows, RR feature rows) from the results file of an earlier "
                         "'--stop-after repeatability' run (e.g. benchmarks/results/ecg_search_repeatability.json) "
                         "instead of re-training it; the rule is applied to those rows unchanged, and the JSON "
                         "records where they came from")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.time()
    args.epochs, args.data_fraction, args.repeats = 6, 0.3, 1

    # 1. repeatability, per fidelity ------------------------------------------------------------------
    # Every base fidelity is trained under REP_SEEDS independent seeds (no refit: only the out-of-fold scores
    # are used). repeats=1 compares seed 0 with seed 1 (and 2 with 3); repeats=2 compares the mean of seeds
    # 0 and 1 with the mean of seeds 2 and 3 -- what the estimator's ``repeats=2`` computes (the mean of the
    # per-seed pooled scores), from disjoint seeds.
    archs, macs = repeatability_archs(args.n_archs)
    fidelities = []
    rep_rows, results = [], []
    step1_source = None
    if args.repeatability_from:
        step1 = json.loads(Path(args.repeatability_from).read_text())
        rep_rows, rr_rows = step1["rows"], step1["rr_features"]
        step1_source = {"file": args.repeatability_from, "git_commit": step1["git_commit"],
                        "command": step1["command"], "date": step1["date"], "wall_minutes": step1["wall_minutes"]}
        args.rep_seeds = max(2 * r["repeats"] for r in rep_rows)
        for r in rep_rows:
            fid = {"epochs": r["epochs"], "data_fraction": r["data_fraction"], "repeats": r["repeats"]}
            if fid not in fidelities:
                fidelities.append(fid)
        print(f"step 1 from {args.repeatability_from} (commit {step1['git_commit'][:10]})", flush=True)
    for base in ([] if args.repeatability_from else _fidelities(args)):
        opts = _task_options(args, **base, cv_refit=False)
        jobs = [{"key": f"rep|{_fid_key(base)}|{a.hash}|{s}", "arch": a.to_dict(), "seed": s, "options": opts}
                for s in range(args.rep_seeds) for a in archs]
        res = _cached_map(jobs, out / "repeatability.json", args.workers, f"repeatability {_fid_key(base)}")
        results += res
        by = {r["key"]: r["metrics"] for r in res}
        secs = {s: [r["train_s"] for r in res if r["seed"] == s] for s in range(args.rep_seeds)}
        for repeats in [r for r in (1, 2, 4, 8) if 2 * r <= args.rep_seeds]:
            fid = {**base, "repeats": repeats}
            fidelities.append(fid)
            pairs = seed_pairs(args.rep_seeds, repeats)
            per_cand = [sum(x) for x in zip(*(secs[s] for s in pairs[0][0]))]  # CPU s of one candidate
            for obj in OBJECTIVES:
                def score(a, seeds):
                    return float(np.mean([by[f"rep|{_fid_key(base)}|{a.hash}|{s}"][obj] for s in seeds]))

                rhos, partials, diffs, means = [], [], [], []
                for sa, sb in pairs:
                    s0, s1 = [score(a, sa) for a in archs], [score(a, sb) for a in archs]
                    rhos.append(spearman(s0, s1))
                    partials.append(partial_spearman(s0, s1, macs))
                    diffs.append(float(np.std(np.array(s0) - np.array(s1)) / np.sqrt(2)))
                    means.append([(x + y) / 2 for x, y in zip(s0, s1)])
                mean = np.mean(means, axis=0)
                rep_rows.append({"fidelity": _fid_key(fid), **fid, "objective": obj,
                                 "seed_pairs": " ; ".join(f"{'+'.join(map(str, a))} vs {'+'.join(map(str, b))}"
                                                          for a, b in pairs),
                                 "spearman_seeds": float(np.mean(rhos)),
                                 "partial_spearman_macs": float(np.mean(partials)),
                                 "spearman_per_pair": " ; ".join(f"{r:.3f}" for r in rhos),
                                 "spearman_score_macs": spearman(mean, macs),
                                 "seed_diff_std": float(np.mean(diffs)),
                                 "arch_std": float(np.std(mean)), "mean_score": float(np.mean(mean)),
                                 "cpu_s_median": float(np.median(per_cand)), "cpu_s_max": float(np.max(per_cand)),
                                 "n_archs": len(archs)})
        _partial(out, "repeatability", rep_rows)
    chosen_fid, default_obj = choose_fidelity(rep_rows, fidelities)
    print(f"chosen by the rule: fidelity {_fid_key(chosen_fid)}, objective {default_obj}", flush=True)
    args.epochs, args.data_fraction = chosen_fid["epochs"], chosen_fid["data_fraction"]
    args.repeats = chosen_fid.get("repeats", 1)
    fidelity = {"cv_folds": args.folds, **chosen_fid}
    # RR feature sets at the chosen fidelity (seed 0)
    if not args.repeatability_from:
        base_key = _fid_key({**chosen_fid, "repeats": 1})  # one seed (0) of the chosen epochs x fraction
        jobs = [{"key": f"rr-raw|{base_key}|{a.hash}|0", "arch": a.to_dict(), "seed": 0,
                 "options": _task_options(args, rr_features="raw", cv_refit=False, repeats=1)}
                for a in archs[::max(1, len(archs) // args.n_rr)]]
        raw = {r["key"].split("|")[2]: r["metrics"] for r in _cached_map(jobs, out / "repeatability.json",
                                                                          args.workers, "rr raw")}
        norm = {r["key"].split("|")[2]: r["metrics"] for r in results
                if r["key"].startswith(f"rep|{base_key}|") and r["key"].endswith("|0")}
        rr_archs = [a for a in archs if a.hash in raw]
        rr_rows = [{"rr_features": name, "n_archs": len(rr_archs), **{k: float(np.mean([m[a.hash][k] for a in rr_archs]))
                                            for k in ("cv_S_se", "cv_S_ppv", "cv_S_f1", "cv_macro_f1", "cv_sv_ap")}}
                   for name, m in (("normalised", norm), ("raw", raw))]
    train_s = [r["train_s"] for r in results]
    _partial(out, "rr_features", rr_rows)
    print(json.dumps(rep_rows, indent=1), json.dumps(rr_rows, indent=1), flush=True)
    if args.stop_after == "repeatability":  # step 1 alone: its own results file, the full run's stay
        chosen_row = next(r for r in rep_rows if r["fidelity"] == _fid_key(chosen_fid) and r["objective"] == default_obj)
        md = ["# ECG benchmark v2, step 1 only: repeatability of the cross-validated objectives on DS1", "",
              _repeatability_md(args, rep_rows, rr_rows, chosen_fid, default_obj)]
        _results.write("ecg_search_repeatability", rep_rows, "\n".join(md), rr_features=rr_rows,
                       chosen={"fidelity": _fid_key(chosen_fid), "objective": default_obj, **chosen_row},
                       wall_minutes=(time.time() - t_start) / 60)
        print("\n".join(md))
        return 0

    # 2. search and random control -------------------------------------------------------------------
    from nas_core.constraints import Constraint
    from nas_core.store import Store, TrialState
    from nas_core.study import StudyConfig, run_study

    searches = {}
    for strategy, sopts in (("nsga2", {"population_size": args.population}), ("random", {})):
        for seed in range(args.seeds):
            d = out / f"search-{strategy}-seed{seed}"
            cfg = StudyConfig(space="ecg/efficient-cnn", strategy=strategy, strategy_options=sopts,
                              budget=args.budget, seed=seed, target=SCENARIO["target"],
                              objectives=(f"{default_obj}:max", "energy_uj_per_beat:min"),
                              constraints=(f"params<={SCENARIO['max_params']}",), task_options=_task_options(args),
                              executor="process", workers=args.workers, time_limit_s=1800.0,
                              name=f"ecg v2 {strategy} seed {seed}")
            t0 = time.time()
            summary = run_study(cfg, d)
            print(f"search {strategy} seed {seed}: {summary.complete} complete, {summary.rejected} rejected "
                  f"({time.time() - t0:.0f} s)", flush=True)
            with Store.open(d / "study.db") as st:
                complete = st.trials([TrialState.COMPLETE])
                rejected = st.trials([TrialState.REJECTED])
            searches[(strategy, seed)] = (d, complete, rejected)
            _partial(out, "searches", [{"strategy": k[0], "seed": k[1], "complete": len(v[1]),
                                        "rejected": len(v[2]),
                                        "best": max((t.metrics[default_obj] for t in v[1]), default=None)}
                                       for k, v in searches.items()])

    from nas_core.plugins import Registry
    from nas_ecg.space import EfficientECGSpace
    from nas_ecg.task import ECGTask

    _, target = Registry().target(SCENARIO["target"])
    task = ECGTask(EfficientECGSpace(), **_task_options(args))
    constraints = task.default_constraints(target) + [Constraint.parse(f"params<={SCENARIO['max_params']}")]
    search_rows, best_by = [], {}
    for (strategy, seed), (d, complete, rejected) in searches.items():
        best = max((t.metrics[default_obj] for t in complete), default=float("nan"))
        best_f1 = max((t.metrics["cv_macro_f1"] for t in complete), default=float("nan"))
        best_by.setdefault(strategy, []).append(best)
        # candidates rejected by each budget (a candidate may break several; its reason names each metric)
        def by(*metrics: str) -> int:
            return sum(any(f"violates {m}" in (t.reason or "") for m in metrics) for t in rejected)

        search_rows.append({"strategy": strategy, "seed": seed, "complete": len(complete), "rejected": len(rejected),
                            "rejected_by_energy": by("energy_margin_uj", "energy_uj_per_beat"),
                            "rejected_by_params": by("params"),
                            "rejected_by_ram": by("arena_int8_bytes", "peak_act_bytes", "peak_ram_kb"),
                            "rejected_by_flash": by("tflite_int8_bytes", "flash_int8_bytes", "flash_kb_int8"),
                            "rejected_by_latency": by("latency_ms"),
                            "best_score": best, "best_cv_macro_f1": best_f1})
    # seconds per trained search candidate (all folds and repeats, plus the refit), as the store measured them
    search_s = [t.duration_s for (_, c, _) in searches.values() for t in c if t.duration_s is not None]
    from scipy.stats import mannwhitneyu

    p_search = float(mannwhitneyu(best_by["nsga2"], best_by["random"], alternative="greater").pvalue)

    # 4. the rule, on the NSGA-II seed-0 study (before anything reads DS2) --------------------------
    d0, complete0, _ = searches[("nsga2", 0)]
    chosen = select(complete0, constraints, default_obj)
    print(f"rule: trial {chosen.number}", flush=True)
    chosen_fs = chosen.costs["fs_hz"]
    (out / "chosen.json").write_text(json.dumps({"trial": chosen.number, "arch": chosen.arch.to_dict(),
                                                "study": str(d0), "rule": select.__doc__}, indent=1))
    print(f"rule-chosen: trial {chosen.number} of {d0} ({default_obj} {chosen.metrics[default_obj]:.4f})", flush=True)

    # 3. compound workflow from the chosen base design ----------------------------------------------
    from nas_ecg import compound

    base = {"stages": chosen.arch["stages"], "head_hidden": chosen.arch["head_hidden"]}
    triples = compound.distinct(base, compound.grid())[: args.grid_max]
    comp = None if args.skip_compound else compound.run(SCENARIO["target"].split("/")[1], SCENARIO["battery_days"], out / "compound", base=base,
                        options={k: v for k, v in _task_options(args).items() if k != "battery_days"},
                        constraints=[Constraint.parse(f"params<={SCENARIO['max_params']}")], triples=triples,
                        score=default_obj, workers=args.workers, progress=lambda m: print("  compound " + m, flush=True))

    if args.posthoc:
        rows = _posthoc(args, out, searches, default_obj)
        md = ["# ECG benchmark v2, POST-HOC (not used for any choice or claim)", "",
              "DS2 macro-F1 of every trained search architecture (its refit model, search fidelity), read after "
              "the main run; one DS2 access per rate, logged with purpose 'POST-HOC'.", "",
              (f"Spearman(out-of-fold score, DS2 macro-F1) over {len(rows)} architectures: "
               f"{rows[0].get('validity_spearman_all', float('nan')):.3f}") if rows else "no rows", "",
              _results.markdown_table(rows, ["model", "fs_hz", "params", "macs", "cv_score", "ds2_macro_f1", "S_se",
                                             "S_ppv", "V_se", "V_ppv"])]
        _results.write("ecg_search_posthoc", [{**r, "selection": "post-hoc"} for r in rows], "\n".join(md),
                       ds2_accesses=_accesses(args, t_start))
        print("\n".join(md))
        return 0
    # 5. DS2, once: the rule-chosen architecture and the reference, final recipe on all DS1 ---------
    final_rows = _final(args, out, chosen, chosen_fs, target, task, default_obj, constraints)
    posthoc: list = []

    total_min = (time.time() - t_start) / 60
    rows = []
    for r in final_rows:
        rows.append({**r, "selection": "rule"})  # the rule-chosen model and the reference, both fixed in advance
    for r in posthoc:
        rows.append({**r, "selection": "post-hoc"})
    md = _markdown(args, rep_rows, rr_rows, search_rows, p_search, comp, rows, posthoc, total_min, search_s,
                   chosen_fid, default_obj, step1_source)
    _results.write("ecg_search", rows, md, repeatability=rep_rows, rr_features=rr_rows, searches=search_rows,
                   p_nsga2_beats_random=p_search, compound=comp, published=PUBLISHED, fidelity=fidelity,
                   ds2_accesses=_accesses(args, t_start), wall_minutes=total_min, step1_source=step1_source,
                   cpu_s_per_search_candidate={"median": float(np.median(search_s)), "max": float(np.max(search_s)),
                                               "n": len(search_s)},
                   cpu_s_per_step1_fold_set=({"median": float(np.median(train_s)), "max": float(np.max(train_s))}
                                             if train_s else None))
    print(md)
    return 0


def _accesses(args, since: float):
    """The loader's DS2 access log lines written by this run (timestamps after its start)."""
    import dataclasses
    from datetime import datetime

    from nas_ecg.data import _loader

    out = []
    for a in _loader(args.data_dir, args.cache_dir).ds2_accesses():
        if datetime.fromisoformat(a.timestamp).timestamp() >= since - 1:
            out.append(dataclasses.asdict(a))
    return out


def _ds2_eval(model, test):
    import torch

    from nas_core.metrics import accuracy, confusion_matrix, macro_f1, per_class
    from nas_ecg.data import CLASSES

    model.eval()
    preds = []
    with torch.no_grad():
        for i in range(0, len(test.y), 2048):
            preds.append(model(torch.as_tensor(test.x[i:i + 2048]), torch.as_tensor(test.rr[i:i + 2048])).argmax(1).numpy())
    cm = confusion_matrix(test.y, np.concatenate(preds), len(CLASSES))
    out = {"ds2_macro_f1": 100 * macro_f1(cm, (0, 1, 2, 3)), "ds2_macro_f1_nsv": 100 * macro_f1(cm, (0, 1, 2)),
           "ds2_accuracy": 100 * accuracy(cm)}
    out["macro_f1"], out["accuracy"] = out["ds2_macro_f1"], out["ds2_accuracy"]  # the v1 benchmark's key names
    for name, st in zip(CLASSES, per_class(cm)):
        if name != "Q":
            out.update({f"{name}_{k}": 100 * st[k] for k in ("se", "ppv", "f1", "spec")})
    out["confusion"] = json.dumps(cm.tolist())
    return out


def _final(args, out, chosen, fs, target, task, score, constraints):
    """Final recipe (fixed before DS2 is read): train on all DS1 for FINAL_EPOCHS, then one DS2 access."""
    import torch

    from nas_core.estimators.base import EvalContext
    from nas_core.estimators.crossval import _predict  # noqa: F401
    from nas_core.hardware import measure_costs
    from nas_core.space import Architecture
    from nas_ecg.budget import ecg_static_metrics
    from nas_ecg.crossval import ECGCVEstimator
    from nas_ecg.data import final_test_data
    from nas_ecg.reference import build_reference, reference_length
    from nas_ecg.space import EfficientECGSpace

    est = ECGCVEstimator(data_dir=args.data_dir, cache_dir=args.cache_dir, band=task.band_hz, folds=args.folds,
                         epochs=FINAL_EPOCHS, data_fraction=1.0, batch_size=256, lr=3e-3, threads=1, refit=True)
    budget = task.energy_budget(target)
    space = EfficientECGSpace()
    entries = [("rule-chosen: trial %d" % chosen.number, chosen.arch, lambda: space.build(chosen.arch), chosen),
               ("reference CNN (hand-designed, at the chosen rate)", Architecture({"fs_hz": fs, "reference": "cnn3"}),
                build_reference, None)]
    models, rows = [], []
    cache = out / "final" / "final.json"
    done = json.loads(cache.read_text()) if cache.exists() else {}
    for name, arch, build, trial in entries:
        torch.manual_seed(0)
        model = build()
        art = out / "final" / name.split(":")[0].split()[0]
        length = reference_length(fs) if trial is None else None
        shape = ((2, length), (8,)) if length else task.input_shape(arch)
        if name in done and (art / "model.pt").exists():  # trained by an earlier, killed run: its weights
            model.load_state_dict(torch.load(art / "model.pt", weights_only=True))
            rows.append(done[name])
            models.append(model)
            continue
        t0 = time.time()
        # refit on all DS1 (the DS2 model); the cv figure at this recipe is on one fold (the most representative)
        m = est.evaluate(EvalContext(arch, model, 0, fidelity={"folds": FINAL_CV_FOLDS}, artifact_dir=str(art)))
        costs = measure_costs(model, shape, target).as_metrics()
        static = {**costs, **ecg_static_metrics(costs, target, fs, budget), "fs_hz": fs, "fs_supported": 1.0}
        rows.append({"model": name, "trial": trial.number if trial else None, "arch_hash": trial.arch.hash if trial
                     else None, "fs_hz": fs, "params": costs["params"], "macs": costs["macs"],
                     "energy_uj_per_beat": static["energy_uj_per_beat"], "battery_days": static["battery_days"],
                     "battery_days_cr2032": static["battery_days"],
                     "peak_ram_kb": static["peak_ram_kb"], "flash_kb_int8": static["flash_kb_int8"],
                     "val_macro_f1": None, "cv_score": 100 * m[score], "cv_macro_f1": 100 * m["cv_macro_f1"],
                     "cv_macro_f1_nsv": 100 * m["cv_macro_f1_nsv"],
                     "cv_S_se": 100 * m["cv_S_se"], "cv_S_ppv": 100 * m["cv_S_ppv"], "cv_V_se": 100 * m["cv_V_se"],
                     "cv_V_ppv": 100 * m["cv_V_ppv"],
                     "phi": arch.get("phi"), "alpha": arch.get("alpha"), "beta": arch.get("beta"),
                     "gamma": arch.get("gamma"), "train_s": time.time() - t0,
                     "meets_device": not [v for c in constraints if (v := c.violation(static))]})
        models.append(model)
        done[name] = rows[-1]
        cache.write_text(json.dumps(done, indent=1))
    test = final_test_data(fs, purpose="ecg_search v2: rule-chosen model and reference, once",
                           data_dir=args.data_dir, cache_dir=args.cache_dir)
    for r, model in zip(rows, models):
        r.update(_ds2_eval(model, test))
        r["meets_V"] = r["V_se"] >= 90 and r["V_ppv"] >= 90
        r["meets_S"] = r["S_se"] >= 75 and r["S_ppv"] >= 50
    return rows


def _posthoc(args, out, searches, score):
    """POST-HOC: DS2 macro-F1 of every trained search architecture (its refit model), for validity only."""
    import torch

    from nas_ecg.data import final_test_data
    from nas_ecg.space import EfficientECGSpace

    space = EfficientECGSpace()
    by_fs: dict[float, list] = {}
    for (strategy, seed), (d, complete, _) in searches.items():
        for t in complete:
            p = d / "trials" / f"{t.number:05d}" / "model.pt"
            if p.exists():
                by_fs.setdefault(t.costs["fs_hz"], []).append((f"{strategy}-s{seed}-t{t.number}", t, p))
    rows = []
    for fs, items in sorted(by_fs.items()):
        test = final_test_data(fs, purpose="ecg_search v2: POST-HOC validity table", data_dir=args.data_dir,
                               cache_dir=args.cache_dir)
        for name, t, p in items:
            model = space.build(t.arch)
            model.load_state_dict(torch.load(p, weights_only=True))
            rows.append({"model": name, "fs_hz": fs, "params": t.costs["params"], "macs": t.costs["macs"],
                         "cv_score": 100 * t.metrics[score], "cv_macro_f1": 100 * t.metrics["cv_macro_f1"],
                         "phi": t.arch["phi"],
                         "alpha": t.arch["alpha"], "beta": t.arch["beta"], "gamma": t.arch["gamma"],
                         **_ds2_eval(model, test)})
    if len(rows) >= 3:
        rho = spearman([r["cv_score"] for r in rows], [r["ds2_macro_f1"] for r in rows])
        for r in rows:
            r["validity_spearman_all"] = rho
    return rows


def _repeatability_md(args, rep_rows, rr_rows, chosen_fid, default_obj) -> str:
    md = [
          f"## 1. Repeatability ({rep_rows[0]['n_archs']} architectures spanning the MACs range, {args.rep_seeds} "
          "training seeds each, DS1 out-of-fold)", "",
          "repeats r: the mean score of r seeds against that of r other seeds (what `--option repeats=r` "
          "computes, from disjoint seeds: 0..r-1 against r..2r-1, and so on; `seed_pairs` lists them), Spearman "
          "figures averaged over the pairs. `cv_sv_ap` / `cv_sv_auroc`: mean one-vs-rest "
          "average precision / ROC AUC of S and V on the pooled out-of-fold probabilities (threshold-free); the "
          "others are F1 of the argmax. `cpu_s_*`: seconds per candidate (all folds, all its seeds) measured as "
          "wall time of a one-thread worker, two workers on two cores: an upper bound of its CPU time on a "
          "shared machine.", "",
          _results.markdown_table(rep_rows, ["fidelity", "objective", "spearman_seeds", "spearman_per_pair",
                                             "partial_spearman_macs",
                                             "spearman_score_macs", "seed_diff_std", "arch_std", "mean_score",
                                             "cpu_s_median", "cpu_s_max"]), "",
          f"Rule (`choose_fidelity`, fixed in code): among fidelities of at most {MAX_CPU_S_PER_CANDIDATE:g} s per "
          f"candidate, the cheapest fidelity with Spearman >= {MIN_SPEARMAN} and "
          f"partial Spearman >= {MIN_PARTIAL}, else the highest partial Spearman. Chosen: fidelity "
          f"**{_fid_key(chosen_fid)}** (epochs x data fraction), objective **{default_obj}**.", "",
          f"RR feature sets ({rr_rows[0]['n_archs']} of those architectures, evenly spaced in MACs, seed 0, chosen "
          "fidelity, means):", "",
          _results.markdown_table(rr_rows, ["rr_features", "cv_S_se", "cv_S_ppv", "cv_S_f1", "cv_macro_f1", "cv_sv_ap"]), "",
    ]
    return "\n".join(md)


def _compound_md(comp) -> list:
    return [
        f"alpha, beta, gamma = {comp['coefficients']}; largest feasible phi = "
        f"{comp['sweep']['largest_feasible_phi']}; first phi at which each budget binds: "
        f"{comp['sweep']['binds_at_phi']}", "",
        _results.markdown_table(comp["sweep"]["rows"], ["phi", "fs_hz", "params", "macs", "energy_uj_per_beat",
                                                        "energy_budget_uj_per_beat", "feasible", "cv_macro_f1",
                                                        "violations"]), "",
        "Grid at phi = 1:", "",
        _results.markdown_table(comp["grid"], ["alpha", "beta", "gamma", "macs", "feasible", "cv_macro_f1"]), ""
    ]


def _markdown(args, rep_rows, rr_rows, search_rows, p_search, comp, rows, posthoc, total_min, search_s, chosen_fid,
              default_obj, step1_source=None):
    rule = [r for r in rows if r["selection"] != "post-hoc"]
    cols = ["model", "selection", "fs_hz", "params", "macs", "phi", "alpha", "beta", "gamma", "energy_uj_per_beat",
            "battery_days", "cv_score", "ds2_macro_f1", "N_se", "N_ppv", "S_se", "S_ppv", "V_se", "V_ppv", "F_se",
            "F_ppv", "meets_V", "meets_S", "meets_device"]
    md = ["# ECG benchmark v2: record-level cross-validated search on DS1, one rule-chosen model on DS2", "",
          f"Fidelity of every search candidate: {args.folds}-fold cross-validation over the 22 DS1 records, "
          f"{args.epochs} epochs, {args.data_fraction:.0%} of each fold's training beats, then a refit on all DS1; "
          f"pooled out-of-fold scores. "
          f"Scenario: nRF52840, CR2032, {SCENARIO['battery_days']:g} days, <= {SCENARIO['max_params']} parameters. "
          f"Wall time {total_min:.0f} min on {os.cpu_count()} cores"
          + (f" (step 1 not included: {step1_source['wall_minutes']:.0f} min in its own run)" if step1_source else "")
          + f"; seconds per trained search candidate (all folds and repeats, and the refit; one-thread worker, "
          f"two workers on two cores) median {np.median(search_s):.0f} s, max {np.max(search_s):.0f} s over "
          f"{len(search_s)}.", "",
          (f"Step 1 was not re-trained by this run: its rows are those of `{step1_source['file']}` "
           f"(commit {step1_source['git_commit'][:10]}, `{step1_source['command']}`), and the fidelity rule "
           "below was applied to them unchanged." if step1_source else ""), "",
          _repeatability_md(args, rep_rows, rr_rows, chosen_fid, default_obj), "",
          "## 2. Search against its random control (same budget, seeds, constraints)", "",
          _results.markdown_table(search_rows, ["strategy", "seed", "complete", "rejected", "rejected_by_energy",
                                                "rejected_by_params", "rejected_by_ram", "rejected_by_flash",
                                                "rejected_by_latency", "best_score", "best_cv_macro_f1"]), "",
          f"One-sided Mann-Whitney, NSGA-II best > random best over {args.seeds} seeds: p = {p_search:.3f}", "",
          "## 3. Compound scaling from the rule-chosen base design", "",
          *(_compound_md(comp) if comp else [
              "Not run in this invocation (`--skip-compound`): the 2.5 h budget did not hold it beside the six "
              "searches. The workflow runs from one command, `python -m nas_ecg.compound` (see "
              "plugins/nas_ecg/README.md).", ""]),
          "## 4-5. The rule-chosen model and the reference on DS2 (one evaluation)", "",
          _results.markdown_table(rule, cols), "",
          "Published inter-patient results (DS2; not re-run here):", "",
          _results.markdown_table(PUBLISHED, ["model", "S_se", "S_ppv", "V_se", "V_ppv"]), ""]
    if posthoc:
        md += ["## POST-HOC (not used for any choice or claim): DS2 of every trained search architecture", "",
               f"Spearman(out-of-fold score, DS2 macro-F1) over {len(posthoc)} architectures: "
               f"{posthoc[0].get('validity_spearman_all', float('nan')):.3f}", "",
               _results.markdown_table(posthoc, ["model", "fs_hz", "params", "macs", "cv_score", "ds2_macro_f1",
                                                 "S_se", "S_ppv", "V_se", "V_ppv"])]
    return "\n".join(md)


if __name__ == "__main__":
    sys.exit(main())
