"""How well do cheap estimators rank architectures? Kendall tau and Spearman rho against full training.

    python benchmarks/ranking.py                                   # ECG and digits, writes results/ranking.*
    python benchmarks/ranking.py --train-extra 25                  # first train more ECG archs (same fidelity)
    python benchmarks/ranking.py --only digits --digits-max 100    # a quick look
    python benchmarks/ranking.py --only ecg --reuse                # recompute ECG, keep the saved digits rows

``--seed-repeat N`` (default 12) trains N of the ECG architectures again under another seed
(cached in ``runs/ranking/seed_repeat.json``): how well full training ranks itself.

Ground truth ("full training"):

* **ECG** (``ecg/compound-cnn``): validation macro-F1 (N, S, V, F; held-out DS1
  records) of the architectures fully trained by the ECG benchmark
  (``runs/bench-ecg/study.db``: 10 epochs, early stopping patience 3, all
  training beats, batch 256, seed per trial; opened read-only), plus any trained
  at exactly the same fidelity by ``--train-extra`` (a random-search study in
  ``runs/ranking/ecg-extra``; the benchmark's own trials were chosen by NSGA-II,
  so they are not a uniform sample of the space).
* **digits** (``digits/cnn``): validation accuracy after 8 epochs in the
  tabulated benchmark ``benchmarks/tables/digits_table.csv`` (seed 0).

Cheap estimators, each scored on the same architectures:

* the zero-cost proxies ``synflow``, ``snip``, ``grad_norm``, ``fisher``,
  ``jacob_cov``, ``naswot`` (one batch of 64 training samples, network
  initialised under seed 0) and the baselines ``params`` and ``macs``;
* ``supernet``: accuracy (digits) or macro-F1 (ECG) with weights inherited from
  a trained weight-sharing supernet (BN statistics re-estimated per
  sub-network): the ECG Once-for-All supernet of ``benchmarks/oneshot_cost.py``
  (``runs/oneshot/ecg_supernet.pt``), and a digits elastic supernet trained here
  with uniform single-path sampling;
* ``low_fidelity``: the same training at a low fidelity (ECG: 1 epoch on 10 %
  of the training beats; digits: 2 epochs, from the table);
* ``predictor_mlp`` / ``predictor_gp``: learned predictors on the encodings,
  5-fold cross-validated (each architecture predicted by a model that never saw
  it, trained on the others' full-training results).

``cost_s_per_arch`` is the measured marginal wall time per architecture;
``one_time_s`` is what must be paid once (supernet training; for predictors,
the full trainings of their training set are *not* counted there: they are the
ground truth of the other folds). Writes ``benchmarks/results/ranking.{json,md}``
and ``ranking.png``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _results  # noqa: E402

PROXIES = ("synflow", "snip", "grad_norm", "fisher", "jacob_cov", "naswot")
ECG_TASK_OPTIONS = {"epochs": 10, "patience": 3, "data_fraction": 1.0, "battery_days": 7, "band": "monitoring"}
PUBLISHED_NB201 = {"synflow": 0.74, "jacob_cov": 0.73, "snip": 0.60, "grad_norm": 0.59}


def correlations(est: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    from scipy.stats import kendalltau, spearmanr

    ok = np.isfinite(est) & np.isfinite(truth)
    if ok.sum() < 3 or np.ptp(est[ok]) == 0:
        return float("nan"), float("nan")
    return float(kendalltau(est[ok], truth[ok])[0]), float(spearmanr(est[ok], truth[ok])[0])


def cv_predict(space, archs, y, cls, folds: int = 5, seed: int = 0) -> tuple[np.ndarray, float]:
    """Out-of-fold predictions and the total fit+predict wall time."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(archs))
    pred = np.full(len(archs), np.nan)
    t = time.monotonic()
    for k in range(folds):
        test = order[k::folds]
        train = np.setdiff1d(order, test)
        model = cls(space, seed=seed).fit([archs[i] for i in train], y[train])
        pred[test] = model.predict([archs[i] for i in test])[0]
    return pred, time.monotonic() - t


def proxy_scores(space, archs, batch_for, seed: int = 0) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Every proxy per architecture, and the mean seconds per architecture of each (batch draw included)."""
    import torch

    from nas_core.estimators.zero_cost import compute_proxy

    scores = {p: np.full(len(archs), np.nan) for p in PROXIES}
    secs = {p: 0.0 for p in PROXIES}
    for i, a in enumerate(archs):
        torch.manual_seed(seed)
        model = space.build(a)
        t = time.monotonic()
        batch = batch_for(a, seed)
        tb = time.monotonic() - t
        for p in PROXIES:
            t = time.monotonic()
            try:
                scores[p][i] = compute_proxy(p, model, batch, seed=seed)
            except Exception as exc:  # noqa: BLE001 - a proxy failing on one arch is a NaN, reported
                print(f"  {p} failed on {a.hash}: {exc}")
            secs[p] += time.monotonic() - t + tb
        if (i + 1) % 50 == 0:
            print(f"  proxies: {i + 1}/{len(archs)} architectures", flush=True)
    return scores, {p: s / max(1, len(archs)) for p, s in secs.items()}


# --------------------------------------------------------------------------------------------------
# ECG


def train_extra(n: int, out: Path, seed: int, data_dir, cache_dir) -> None:
    from nas_core.study import StudyConfig, run_study

    config = StudyConfig(space="ecg/compound-cnn", strategy="random", budget=n, seed=seed, target="ecg/nrf52840",
                         objectives=("val_macro_f1:max", "energy_uj_per_beat:min"), constraints=("params<=50000",),
                         task_options={**ECG_TASK_OPTIONS, "data_dir": data_dir, "cache_dir": cache_dir},
                         executor="process", workers=1, time_limit_s=1200.0, name="ranking: extra ECG trainings")
    s = run_study(config, out)
    print(f"extra ECG trainings: {s.complete} complete, {s.failed} failed, {s.rejected} rejected")


def _retrain(job: tuple) -> tuple[str, float, float]:
    """One ECG training at the benchmark's fidelity under another seed (a worker process, one thread)."""
    arch_json, seed, data_dir, cache_dir = job
    import torch

    from nas_core.estimators.base import EvalContext
    from nas_core.space import Architecture
    from nas_ecg.space import CompoundECGSpace
    from nas_ecg.task import ECGTask

    torch.set_num_threads(1)
    space = CompoundECGSpace()
    arch = Architecture.from_json(arch_json)
    est = ECGTask(space, **{**ECG_TASK_OPTIONS, "threads": 1, "data_dir": data_dir, "cache_dir": cache_dir}).estimator()
    torch.manual_seed(seed)
    model = space.build(arch)
    t = time.monotonic()
    f1 = est.evaluate(EvalContext(arch, model, seed, {}))["val_macro_f1"]
    return arch.hash, float(f1), time.monotonic() - t


def seed_repeat_row(trials, truth: np.ndarray, n: int, out: Path, data_dir, cache_dir, workers: int = 2) -> dict:
    """The noise ceiling: ``n`` of the architectures trained again, same fidelity, another seed.

    No cheap estimator can be expected to rank better than full training ranks itself
    under a change of seed. Results are cached in ``out/seed_repeat.json``."""
    from multiprocessing import get_context

    idx = sorted(np.random.default_rng(2).choice(len(trials), min(n, len(trials)), replace=False).tolist())
    cache_file = out / "seed_repeat.json"
    cache = json.loads(cache_file.read_text()) if cache_file.exists() else {}
    jobs = [(trials[i][0].arch.to_json(), int(trials[i][0].seed) + 10_000, data_dir, cache_dir) for i in idx]
    todo = [j for j in jobs if f"{j[0]}|{j[1]}" not in cache]
    if todo:
        print(f"  seed repeat: training {len(todo)} architectures again with {workers} workers", flush=True)
        with get_context("spawn").Pool(workers) as pool:
            for job, (h, f1, secs) in zip(todo, pool.imap(_retrain, todo)):
                cache[f"{job[0]}|{job[1]}"] = {"hash": h, "val_macro_f1": f1, "train_s": secs}
                cache_file.write_text(json.dumps(cache, indent=1))
                print(f"    {h}: val macro-F1 {f1:.4f} ({secs:.0f} s)", flush=True)
    again = np.array([cache[f"{j[0]}|{j[1]}"]["val_macro_f1"] for j in jobs])
    tau, rho = correlations(again, truth[idx])
    return {"estimator": "full_training_other_seed", "kendall_tau": tau, "spearman_rho": rho, "n_archs": len(idx),
            "cost_s_per_arch": float(np.mean([cache[f"{j[0]}|{j[1]}"]["train_s"] for j in jobs])), "one_time_s": 0.0,
            "mean_abs_diff": float(np.mean(np.abs(again - truth[idx]))),
            "note": f"{len(idx)} of the archs trained again (seed + 10000): the noise ceiling of the ground truth"}


def ecg_trials(stores: list[Path]):
    from nas_core.store import Store, TrialState

    seen, out = set(), []
    for path in stores:
        if not path.exists():
            continue
        with Store.open(path) as st:
            cfg = st.config or {}
            opts = cfg.get("task_options", {})
            same = all(opts.get(k, v) == v for k, v in ECG_TASK_OPTIONS.items() if k in ("epochs", "patience", "data_fraction"))
            if not same:
                print(f"skipping {path}: its fidelity {opts} differs from {ECG_TASK_OPTIONS}")
                continue
            for t in st.trials([TrialState.COMPLETE]):
                if t.arch.canonical in seen or "val_macro_f1" not in t.metrics:
                    continue
                seen.add(t.arch.canonical)
                out.append((t, str(path)))
    return out


def ecg_rows(args) -> tuple[list[dict], dict]:
    import torch

    from nas_core.estimators.base import EvalContext
    from nas_core.estimators.predictor import GPPredictor, MLPEnsemble
    from nas_core.estimators.zero_cost import classification_batch
    from nas_core.hardware import measure_costs
    from nas_ecg.space import CompoundECGSpace, scaled
    from nas_ecg.supernet import ECGElasticSupernet, ECGRateData, evaluate_inherited
    from nas_ecg.task import ECGTask

    stores = [Path(args.ecg_store) / "study.db", Path(args.out) / "ecg-extra" / "study.db"]
    trials = ecg_trials(stores)
    space = CompoundECGSpace()
    archs = [t.arch for t, _ in trials]
    truth = np.array([t.metrics["val_macro_f1"] for t, _ in trials])
    n = len(archs)
    info = {"n_archs": n, "sources": {s: sum(1 for _, p in trials if p == s) for s in {p for _, p in trials}},
            "full_train_s_median": float(np.median([t.duration_s for t, _ in trials if t.duration_s])) if n else None}
    print(f"ECG: {n} fully trained architectures from {info['sources']}")
    if n < 5:
        return [], info
    data = ECGRateData(data_dir=args.data_dir, cache_dir=args.cache_dir, npz_dir=Path(args.oneshot) / "cache",
                       train_fraction=0.5)
    rows = []

    def batch_for(a, seed):
        d = data.get(scaled(a)["fs_hz"])
        return classification_batch(d.x_train, d.y_train, 64, seed)

    t0 = time.monotonic()
    data.prefetch(sorted({scaled(a)["fs_hz"] for a in archs}))
    info["data_prep_s"] = time.monotonic() - t0
    scores, secs = proxy_scores(space, archs, batch_for)
    for p in PROXIES:
        tau, rho = correlations(scores[p], truth)
        rows.append({"estimator": p, "kendall_tau": tau, "spearman_rho": rho, "cost_s_per_arch": secs[p], "one_time_s": 0.0})
    task = ECGTask(space)
    t = time.monotonic()
    macs = np.array([measure_costs(space.build(a), task.input_shape(a)).macs for a in archs], dtype=float)
    mac_s = (time.monotonic() - t) / n
    t = time.monotonic()
    params = np.array([sum(p.numel() for p in space.build(a).parameters()) for a in archs], dtype=float)
    par_s = (time.monotonic() - t) / n  # building the network and counting: measured, like every other cost
    for name, v, c in (("params", params, par_s), ("macs", macs, mac_s)):
        tau, rho = correlations(v, truth)
        rows.append({"estimator": name, "kendall_tau": tau, "spearman_rho": rho, "cost_s_per_arch": c, "one_time_s": 0.0})
    # inverse: fewer MACs better? report as measured (larger value -> larger score)
    sn_path = Path(args.oneshot) / "ecg_supernet.pt"
    if sn_path.exists():
        sn = ECGElasticSupernet(space)
        sn.module.load_state_dict(torch.load(sn_path, weights_only=True))
        summary = {}
        cost_file = _results.RESULTS / "oneshot_cost.json"
        if cost_file.exists():
            summary = json.loads(cost_file.read_text()).get("summary", {})
        inh = np.full(n, np.nan)
        t = time.monotonic()
        for i, a in enumerate(archs):
            inh[i] = evaluate_inherited(sn, a, data, calib_samples=2000, seed=0)["macro_f1"]
        tau, rho = correlations(inh, truth)
        rows.append({"estimator": "supernet", "kendall_tau": tau, "spearman_rho": rho,
                     "cost_s_per_arch": (time.monotonic() - t) / n, "one_time_s": summary.get("supernet_train_s")})
    else:
        print(f"no ECG supernet at {sn_path}: run benchmarks/oneshot_cost.py first; supernet row skipped")
    if not args.skip_low_fidelity:
        from nas_ecg.data import search_data

        est = ECGTask(space, epochs=1, data_fraction=0.1, threads=1, data_dir=args.data_dir,
                      cache_dir=args.cache_dir).estimator()
        est.patience = None
        low = np.full(n, np.nan)
        spent = 0.0
        by_fs: dict[float, list[int]] = {}
        for i, a in enumerate(archs):
            by_fs.setdefault(scaled(a)["fs_hz"], []).append(i)
        for fs, idx in sorted(by_fs.items()):
            est._by_fs = {fs: search_data(fs, data_dir=args.data_dir, cache_dir=args.cache_dir)}  # loaded untimed
            for i in idx:
                torch.manual_seed(0)
                model = space.build(archs[i])
                t = time.monotonic()
                low[i] = est.evaluate(EvalContext(archs[i], model, 0, {}))["val_macro_f1"]
                spent += time.monotonic() - t
        tau, rho = correlations(low, truth)
        rows.append({"estimator": "low_fidelity", "kendall_tau": tau, "spearman_rho": rho,
                     "cost_s_per_arch": spent / n, "one_time_s": 0.0,
                     "note": "1 epoch, 10 % of the training beats (data loading not timed)"})
    for name, cls in (("predictor_mlp", MLPEnsemble), ("predictor_gp", GPPredictor)):
        pred, secs_cv = cv_predict(space, archs, truth, cls)
        tau, rho = correlations(pred, truth)
        rows.append({"estimator": name, "kendall_tau": tau, "spearman_rho": rho, "cost_s_per_arch": secs_cv / n,
                     "one_time_s": 0.0, "note": f"5-fold CV on {n} fully trained archs"})
    for r in rows:
        r.update(space="ecg/compound-cnn", n_archs=n, truth="val_macro_f1 (10 epochs, patience 3)")
    if args.seed_repeat:
        row = seed_repeat_row(trials, truth, args.seed_repeat, Path(args.out), args.data_dir, args.cache_dir)
        row.update(space="ecg/compound-cnn", truth="val_macro_f1 (10 epochs, patience 3)")
        rows.append(row)
    return rows, info


# --------------------------------------------------------------------------------------------------
# digits


def digits_table(path: Path) -> dict:
    by: dict[str, dict] = {}
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            by.setdefault(row["arch"], {})[int(row["epochs"])] = row
    return {k: v for k, v in by.items() if 8 in v and 2 in v}


def digits_rows(args) -> tuple[list[dict], dict]:
    import torch

    from nas_core.examples.digits import DigitsCNNSpace, digits_search_data
    from nas_core.examples.digits_oneshot import DigitsElasticSupernet
    from nas_core.estimators.predictor import GPPredictor, MLPEnsemble
    from nas_core.estimators.zero_cost import classification_batch
    from nas_core.oneshot import SupernetTrainConfig, evaluate_subnet, train_supernet
    from nas_core.oneshot._data import to_split
    from nas_core.space import Architecture

    table = digits_table(Path(args.digits_table))
    keys = sorted(table)
    if args.digits_max and len(keys) > args.digits_max:
        keys = [keys[i] for i in sorted(np.random.default_rng(0).choice(len(keys), args.digits_max, replace=False))]
    space = DigitsCNNSpace()
    archs = [Architecture.from_json(k) for k in keys]
    truth = np.array([float(table[k][8]["val_accuracy"]) for k in keys])
    n = len(archs)
    info = {"n_archs": n, "table_archs": len(table), "full_train_s_median": float(np.median([float(table[k][8]["train_seconds"]) for k in keys]))}
    print(f"digits: {n} architectures (of {len(table)} tabulated at 2 and 8 epochs)")
    data = digits_search_data()
    rows = []
    scores, secs = proxy_scores(space, archs, lambda a, seed: classification_batch(data.x_train, data.y_train, 64, seed))
    for p in PROXIES:
        tau, rho = correlations(scores[p], truth)
        rows.append({"estimator": p, "kendall_tau": tau, "spearman_rho": rho, "cost_s_per_arch": secs[p], "one_time_s": 0.0})
    from nas_core.examples.digits import DigitsTask
    from nas_core.hardware import measure_costs

    dtask = DigitsTask(space)
    t = time.monotonic()
    v_params = np.array([float(sum(p.numel() for p in space.build(a).parameters())) for a in archs])
    par_s = (time.monotonic() - t) / n
    t = time.monotonic()
    v_macs = np.array([float(measure_costs(space.build(a), dtask.input_shape(a)).macs) for a in archs])
    mac_s = (time.monotonic() - t) / n
    for name, v, c in (("params", v_params, par_s), ("macs", v_macs, mac_s)):
        table_v = np.array([float(table[k][8][name]) for k in keys])
        if not np.allclose(v, table_v):  # the table was made by the same cost model
            print(f"  note: {name} differs from the table's for {int((~np.isclose(v, table_v)).sum())} archs")
        tau, rho = correlations(v, truth)
        rows.append({"estimator": name, "kendall_tau": tau, "spearman_rho": rho, "cost_s_per_arch": c, "one_time_s": 0.0})
    # supernet: elastic digits supernet, uniform single-path sampling over the table's space
    from nas_core.estimators.tabular import Table

    try:
        sub_space = Table.load(Path(args.digits_table)).space()
    except Exception:  # noqa: BLE001 - the table's sidecar is written at the end of its build
        sub_space = None
    sn = DigitsElasticSupernet(space, seed=0)
    if sub_space is not None:
        sn.sample_active = lambda rng: _activate(sn, sub_space.sample(rng))  # type: ignore[method-assign]
    else:
        sn.sample_active = lambda rng: _activate(sn, archs[int(rng.integers(n))])  # type: ignore[method-assign]
    t = time.monotonic()
    train_supernet(sn, data, SupernetTrainConfig(epochs=args.digits_supernet_epochs, batch_size=64, lr=3e-3), seed=0)
    one_time = time.monotonic() - t
    calib, val = to_split(data.x_train, data.y_train), to_split(data.x_val, data.y_val)
    inh = np.full(n, np.nan)
    t = time.monotonic()
    for i, a in enumerate(archs):
        inh[i] = evaluate_subnet(sn, a, calib, val, 10, calib_samples=500, seed=0)["accuracy"]
    tau, rho = correlations(inh, truth)
    rows.append({"estimator": "supernet", "kendall_tau": tau, "spearman_rho": rho,
                 "cost_s_per_arch": (time.monotonic() - t) / n, "one_time_s": one_time,
                 "note": f"elastic supernet, {args.digits_supernet_epochs} epochs of uniform single-path sampling"})
    low = np.array([float(table[k][2]["val_accuracy"]) for k in keys])
    tau, rho = correlations(low, truth)
    rows.append({"estimator": "low_fidelity", "kendall_tau": tau, "spearman_rho": rho,
                 "cost_s_per_arch": float(np.mean([float(table[k][2]["train_seconds"]) for k in keys])),
                 "one_time_s": 0.0, "note": "2 epochs (table)"})
    for name, cls in (("predictor_mlp", MLPEnsemble), ("predictor_gp", GPPredictor)):
        pred, secs_cv = cv_predict(space, archs, truth, cls)
        tau, rho = correlations(pred, truth)
        rows.append({"estimator": name, "kendall_tau": tau, "spearman_rho": rho, "cost_s_per_arch": secs_cv / n,
                     "one_time_s": 0.0, "note": f"5-fold CV on {n} archs"})
    for r in rows:
        r.update(space="digits/cnn", n_archs=n, truth="val_accuracy (8 epochs, table)")
    # a predictor with a small training set, as early in a search: 50 fully trained archs, the rest predicted
    k = 50
    if n > k + 10:
        idx = np.random.default_rng(1).permutation(n)
        tr, te = idx[:k], idx[k:]
        t = time.monotonic()
        pred = MLPEnsemble(space, seed=0).fit([archs[i] for i in tr], truth[tr]).predict([archs[i] for i in te])[0]
        tau, rho = correlations(pred, truth[te])
        rows.append({"space": "digits/cnn", "estimator": "predictor_mlp_50", "kendall_tau": tau, "spearman_rho": rho,
                     "n_archs": len(te), "cost_s_per_arch": (time.monotonic() - t) / len(te), "one_time_s": 0.0,
                     "truth": "val_accuracy (8 epochs, table)",
                     "note": f"trained on {k} archs, scored on the other {len(te)}"})
    return rows, info


def _activate(sn, arch):
    sn.set_active(arch)
    return arch


# --------------------------------------------------------------------------------------------------


def recommend(rows: list[dict]) -> str:
    by: dict[str, dict[str, float]] = {}
    for r in rows:
        by.setdefault(r["estimator"], {})[r["space"]] = r["spearman_rho"]
    spaces = sorted({r["space"] for r in rows})
    mean = {e: float(np.nanmean([v.get(s, np.nan) for s in spaces])) for e, v in by.items() if len(v) == len(spaces)}
    ranked = sorted(mean, key=lambda e: -mean[e] if np.isfinite(mean[e]) else np.inf)
    lines = ["Mean Spearman rho over the spaces: " + ", ".join(f"{e} {mean[e]:.2f}" for e in ranked) + "."]
    free = set(PROXIES) | {"params", "macs"}  # nothing trained, nothing learned from trained networks
    for s in spaces:
        rs = [r for r in rows if r["space"] == s and np.isfinite(r["spearman_rho"])]
        if not rs:
            continue
        best = max(rs, key=lambda r: r["spearman_rho"])
        zc = max((r for r in rs if r["estimator"] in free), key=lambda r: r["spearman_rho"], default=None)
        lines.append(f"- {s}: best {best['estimator']} (rho {best['spearman_rho']:.2f}, "
                     f"{best['cost_s_per_arch']:.3g} s/arch)"
                     + (f"; best without any training {zc['estimator']} (rho {zc['spearman_rho']:.2f}, "
                        f"{zc['cost_s_per_arch']:.3g} s/arch)" if zc else ""))
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=("ecg", "digits"))
    ap.add_argument("--ecg-store", default="runs/bench-ecg")
    ap.add_argument("--oneshot", default="runs/oneshot")
    ap.add_argument("--out", default="runs/ranking")
    ap.add_argument("--train-extra", type=int, default=0, help="train this many more ECG architectures first")
    ap.add_argument("--extra-seed", type=int, default=1)
    ap.add_argument("--skip-low-fidelity", action="store_true")
    ap.add_argument("--seed-repeat", type=int, default=12,
                    help="ECG: train this many of the archs again under another seed (the noise ceiling; 0: skip)")
    ap.add_argument("--digits-table", default=str(Path(__file__).resolve().parent / "tables" / "digits_table.csv"))
    ap.add_argument("--digits-max", type=int, default=300, help="at most this many digits archs, a seeded sample (0: all)")
    ap.add_argument("--digits-supernet-epochs", type=int, default=30)
    ap.add_argument("--data-dir", default=os.environ.get("MITDB_DIR"))
    ap.add_argument("--cache-dir", default=os.environ.get("NAS_CACHE_DIR"))
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--reuse", action="store_true",
                    help="with --only, add the other space's rows saved by an earlier run in --out")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    if args.train_extra:
        train_extra(args.train_extra, Path(args.out) / "ecg-extra", args.extra_seed, args.data_dir, args.cache_dir)
    rows, infos = [], {}
    saved = Path(args.out)
    saved.mkdir(parents=True, exist_ok=True)
    for name, fn in (("ecg", ecg_rows), ("digits", digits_rows)):
        part = saved / f"rows_{name}.json"
        if args.only in (None, name):
            r, info = fn(args)
            part.write_text(json.dumps({"rows": r, "info": info}, indent=1, default=str))
        elif args.reuse and part.exists():  # rows computed by an earlier run (see --reuse)
            got = json.loads(part.read_text())
            r, info = got["rows"], {**got["info"], "reused_from": str(part)}
        else:
            continue
        rows += r
        infos[name] = info
    cols = ["space", "estimator", "kendall_tau", "spearman_rho", "n_archs", "cost_s_per_arch", "one_time_s"]
    md = ["# Ranking cheap estimators against full training", "",
          "Kendall tau (tau-b) and Spearman rho between each estimator and the full-training result on the same "
          "architectures (larger is better for every estimator; params and MACs are used as is, i.e. 'bigger is "
          "better'). Published anchors on NAS-Bench-201 CIFAR-10 (Abdelfattah et al. 2021), Spearman rho: "
          + ", ".join(f"{k} {v}" for k, v in PUBLISHED_NB201.items()) + ".", ""]
    for space, info in infos.items():
        md.append(f"- {space}: {json.dumps(info)}")
    md += ["", _results.markdown_table(rows, cols), "", "## Summary", "", recommend(rows) if rows else "no rows",
           "", "![ranking](ranking.png)"]
    text = "\n".join(md)
    print(text)
    if not args.no_write:
        _plot(rows)
        _results.write("ranking", rows, text, infos=infos, published_nb201_spearman=PUBLISHED_NB201)
    return 0


def _plot(rows: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    spaces = sorted({r["space"] for r in rows})
    ests = list(dict.fromkeys(r["estimator"] for r in rows))
    fig, ax = plt.subplots(figsize=(10, 3.6), dpi=100)
    w = 0.8 / max(1, len(spaces))
    for j, s in enumerate(spaces):
        vals = [next((r["spearman_rho"] for r in rows if r["space"] == s and r["estimator"] == e), np.nan) for e in ests]
        ax.bar(np.arange(len(ests)) + j * w, vals, w, label=s)
    ax.set_xticks(np.arange(len(ests)) + w * (len(spaces) - 1) / 2)
    ax.set_xticklabels(ests, rotation=30, ha="right", fontsize=8)
    ax.axhline(0, c="k", lw=0.6)
    ax.set_ylabel("Spearman rho vs full training")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    fig.savefig(_results.RESULTS / "ranking.png")
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
