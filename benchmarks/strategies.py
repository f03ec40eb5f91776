"""Every search strategy against Optuna's samplers used directly, on the project's tabulated digits benchmark.

    python benchmarks/strategies.py                  # 20 seeds, the full comparison (single-threaded)
    python benchmarks/strategies.py --quick          # 3 seeds, small budgets: a smoke run

The table (``benchmarks/tables/digits_table.csv``, built by ``build_table.py``)
holds every architecture of a reduced digits space trained at 2, 4 and 8 epochs,
with hardware costs on the Cortex-M4 target. Nothing is trained here: each
evaluation is a lookup, its simulated time the table's measured training time.

1. **Single objective** (validation accuracy at 8 epochs): every strategy runs
   with seeds 0..S-1 for up to ``--n-max`` evaluations. The loop is the study's:
   a proposal of an architecture already evaluated at that fidelity is told the
   stored result and costs nothing. A multi-fidelity strategy's evaluation at
   ``e`` epochs costs ``e / 8`` of a full evaluation, and only its 8-epoch results
   count as found. Reported: regret (best accuracy in the table minus the best
   found) after N evaluations, median and quartiles over seeds, and the number of
   evaluations until an architecture of the top 1 % (by 8-epoch accuracy) is
   evaluated at 8 epochs (median over seeds; runs that never get there count as
   not reached and the median is then a lower bound, shown with ">").
2. **Two objectives** (accuracy max, energy per inference on the Cortex-M4 min):
   hypervolume of the evaluated 8-epoch points after N evaluations, as a fraction
   of the hypervolume of the whole table's Pareto front (reference point: the
   table's worst accuracy and largest energy). Single-objective strategies run
   as they would (on accuracy) and are scored on what they evaluated.
3. **Overhead**: milliseconds of the strategy's own ``ask`` + ``tell`` per trial
   with 100, 1,000 and 5,000 completed trials, on a synthetic objective over the
   full digits space (no table, no training). The completed trials are told to
   the strategy first (random architectures with synthetic results), then 20
   ask/tell cycles are timed; the median is reported. Also the size and time of
   ``state_dict()`` as JSON at 5,000, which the study stores at every transition.

Optuna "direct" means ``optuna.create_study(sampler=...)`` and an objective
function that suggests the architecture with ``trial.suggest_*`` (define-by-run,
the way an Optuna user writes it), Optuna's default sampler settings, every
objective call counted as an evaluation (Optuna does not skip repeats).

Writes ``benchmarks/results/strategies.{json,md}`` and three plots.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # single-threaded benchmark (before numpy loads)

import argparse
import json
import math
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
import _results  # noqa: E402

from nas_core.estimators.tabular import DIGITS_TABLE, Table  # noqa: E402
from nas_core.pareto import hypervolume, pareto_front  # noqa: E402
from nas_core.space import Architecture, Categorical, Float, Integer, Repeat, SearchSpace  # noqa: E402
from nas_core.store import TrialState  # noqa: E402
from nas_core.strategies import CORE_STRATEGIES  # noqa: E402
from nas_core.strategies.base import Objective, Proposal, TrialResult  # noqa: E402

ACC, COST = "val_accuracy", "energy_uj"
FULL = 8
SO = [Objective(ACC, "max")]
MO = [Objective(ACC, "max"), Objective(COST, "min")]
MF_OPTS = {"fidelity_key": "epochs", "budgets": [2, 4, 8], "eta": 2}

#: our strategies: name -> (registry name, options, multi-objective capable)
OURS: dict[str, tuple[str, dict, bool]] = {
    "random": ("random", {}, True),
    "evolution": ("evolution", {}, False),
    "nsga2": ("nsga2", {}, True),
    "reinforce": ("reinforce", {}, False),
    "bayesopt": ("bayesopt", {}, True),
    "local_search": ("local_search", {}, False),
    "successive_halving": ("successive_halving", {**MF_OPTS, "n_configs": 8}, False),
    "hyperband": ("hyperband", dict(MF_OPTS), False),
    "bohb": ("bohb", dict(MF_OPTS), False),
    "generative": ("generative", {}, True),
    "optuna_tpe (adapter)": ("optuna_tpe", {}, True),
    "optuna_nsga2 (adapter)": ("optuna_nsga2", {}, True),
}
DIRECT = ["optuna RandomSampler (direct)", "optuna TPESampler (direct)", "optuna NSGAIISampler (direct)"]
REGRET_AT = (25, 50, 100, 200)


# -- optuna used directly ---------------------------------------------------------------------------------

def suggest(trial: Any, dims, prefix: str = "") -> dict:
    """Define-by-run over a space's dimensions, as an Optuna user writes it."""
    out: dict[str, Any] = {}
    for d in dims:
        if d.condition is not None and not d.condition.holds(out):
            continue
        name = prefix + d.name
        if isinstance(d, Repeat):
            n = trial.suggest_int(name + "_n", d.min_count, d.max_count)
            out[d.name] = [suggest(trial, d.block, f"{name}{i}_") for i in range(n)]
        elif isinstance(d, Categorical):
            out[d.name] = d.choices[0] if len(d.choices) == 1 else trial.suggest_categorical(name, list(d.choices))
        elif isinstance(d, Integer):
            out[d.name] = trial.suggest_int(name, d.low, d.high, step=d.step)
        else:
            assert isinstance(d, Float)
            v = trial.suggest_float(name, d.low, d.high, step=d.step) if d.step else \
                trial.suggest_float(name, d.low, d.high, log=d.log)
            out[d.name] = d._snap(v)
    return out


def optuna_sampler(label: str, seed: int):
    import optuna

    cls = {"Random": optuna.samplers.RandomSampler, "TPE": optuna.samplers.TPESampler,
           "NSGAII": optuna.samplers.NSGAIISampler}[label.split()[1].replace("Sampler", "")]
    return cls(seed=seed)


def run_direct(label: str, seed: int, table: Table, space: SearchSpace, objectives, n_max: int,
               stop: Callable[[list], bool]) -> list[tuple[int, int]]:
    """Optuna's own loop on the table; returns [(arch index, epochs)] per objective call."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    study = optuna.create_study(directions=["maximize" if o.direction == "max" else "minimize" for o in objectives],
                                sampler=optuna_sampler(label, seed))
    seq: list[tuple[int, int]] = []

    def objective(trial):
        arch = Architecture(suggest(trial, space.dimensions))
        m = table.lookup(arch, {"epochs": FULL})
        seq.append((table.index(arch), FULL))
        if stop(seq):
            trial.study.stop()
        vals = [m[o.name] for o in objectives]
        return vals if len(vals) > 1 else vals[0]

    study.optimize(objective, n_trials=n_max)
    return seq


# -- our strategies in the study's loop -------------------------------------------------------------------

def make(name: str, space: SearchSpace, objectives, seed: int):
    reg, opts, multi = OURS[name]
    cls = CORE_STRATEGIES[reg]
    if cls.multi_objective and len(objectives) < 2:
        objectives = MO  # NSGA-II needs two objectives; its regret is on the first (accuracy)
    return cls(space, objectives if multi or cls.multi_objective else objectives[:1], seed=seed, **opts)


def run_ours(name: str, seed: int, table: Table, space: SearchSpace, objectives, n_max: float,
             stop: Callable[[list], bool], max_idle: int = 2000) -> list[tuple[int, int]]:
    """The study's loop without the store: repeats are told the known result and cost nothing.

    Stops after ``n_max`` full-evaluation equivalents (sum of epochs / 8)."""
    s = make(name, space, objectives, seed)
    known: dict[tuple[str, int], dict] = {}
    seq: list[tuple[int, int]] = []
    cost, idle = 0.0, 0
    while cost < n_max - 1e-9 and idle < max_idle:
        p = s.ask()
        arch, fid = (p.arch, {"epochs": FULL, **dict(p.fidelity)}) if isinstance(p, Proposal) else (p, {"epochs": FULL})
        e = int(fid["epochs"])
        key = (arch.hash, e)
        if key in known:
            s.tell(arch, TrialResult(TrialState.COMPLETE, known[key], None, fid))
            idle += 1
            continue
        m = table.lookup(arch, fid)
        known[key] = m
        seq.append((table.index(arch), e))
        cost += e / FULL
        s.tell(arch, TrialResult(TrialState.COMPLETE, m, len(seq), fid))
        idle = 0
        if stop(seq):
            break
    return seq


# -- scoring ----------------------------------------------------------------------------------------------

class Scorer:
    def __init__(self, table: Table):
        self.acc = table.column(ACC, {"epochs": FULL})
        self.cost = table.column(COST)
        self.train_s = {e: table.column("train_seconds", {"epochs": e}) for e in (2, 4, 8)}
        self.best = float(self.acc.max())
        k = max(1, int(math.ceil(0.01 * len(self.acc))))
        self.top_threshold = float(np.sort(self.acc)[::-1][k - 1])
        self.top = set(np.flatnonzero(self.acc >= self.top_threshold).tolist())
        self.ref = [float(self.acc.min()), float(self.cost.max())]
        pts = np.stack([self.acc, self.cost], 1)
        self.hv_table = hypervolume(pts[pareto_front(pts, ["max", "min"])], self.ref, ["max", "min"])
        # the same with log10(energy): weighs the low-energy end of the front as much as the high-accuracy end
        self.log_cost = np.log10(self.cost)
        self.ref_log = [float(self.acc.min()), float(self.log_cost.max())]
        pts = np.stack([self.acc, self.log_cost], 1)
        self.hv_table_log = hypervolume(pts[pareto_front(pts, ["max", "min"])], self.ref_log, ["max", "min"])

    def curve(self, seq: list[tuple[int, int]]) -> tuple[list[float], list[float], list[float]]:
        """Cumulative cost, best 8-epoch accuracy so far and simulated seconds, per evaluation."""
        cost, best, secs, c, b, t = [], [], [], 0.0, -math.inf, 0.0
        for i, e in seq:
            c += e / FULL
            t += float(self.train_s[e][i])
            if e == FULL:
                b = max(b, float(self.acc[i]))
            cost.append(c)
            best.append(b)
            secs.append(t)
        return cost, best, secs

    def regret_at(self, seq, n: float) -> float:
        cost, best, _ = self.curve(seq)
        b = -math.inf
        for c, v in zip(cost, best):
            if c > n + 1e-9:
                break
            b = v
        return self.best - b if math.isfinite(b) else self.best - float(self.acc.min())

    def to_top(self, seq) -> tuple[float | None, float | None, int | None]:
        """(evaluations, simulated seconds, distinct architectures) until a top-1 % one is evaluated at 8 epochs."""
        cost, _, secs = self.curve(seq)
        seen: set[int] = set()
        for k, (i, e) in enumerate(seq):
            seen.add(i)
            if e == FULL and i in self.top:
                return cost[k], secs[k], len(seen)
        return None, None, None

    def hv_at(self, seq, n: float, log: bool = False) -> float:
        cost, _, _ = self.curve(seq)
        idx = [i for (i, e), c in zip(seq, cost) if e == FULL and c <= n + 1e-9]
        if not idx:
            return 0.0
        if log:
            pts = np.stack([self.acc[idx], self.log_cost[idx]], 1)
            return hypervolume(pts, self.ref_log, ["max", "min"]) / self.hv_table_log
        pts = np.stack([self.acc[idx], self.cost[idx]], 1)
        return hypervolume(pts, self.ref, ["max", "min"]) / self.hv_table


class StopRule:
    """True once a top-1 % architecture has been evaluated at 8 epochs and ``min_evals`` evaluations are done."""

    def __init__(self, sc: "Scorer", min_evals: int):
        self.sc, self.min_evals, self.reached, self.n = sc, min_evals, False, 0

    def __call__(self, seq: list[tuple[int, int]]) -> bool:
        for i, e in seq[self.n:]:
            self.reached |= e == FULL and i in self.sc.top
        self.n = len(seq)
        return self.reached and self.n >= self.min_evals


def quartiles(xs: list[float]) -> tuple[float, float, float]:
    """Quartiles (nearest rank, so that 'never reached' = inf stays inf instead of becoming NaN)."""
    q = np.percentile(np.asarray(xs, dtype=float), [25, 50, 75], method="nearest")
    return float(q[0]), float(q[1]), float(q[2])


def finite_or_none(x: float) -> float | None:
    return x if math.isfinite(x) else None


def censored_median(xs: list[float | None], cap: float) -> tuple[float, bool]:
    """Median where None (never reached) counts as beyond ``cap``; returns (value, is_lower_bound)."""
    vals = sorted(math.inf if x is None else x for x in xs)
    m = statistics.median(vals) if len(vals) % 2 else 0.5 * (vals[len(vals) // 2 - 1] + vals[len(vals) // 2])
    return (cap, True) if math.isinf(m) else (float(m), False)


# -- overhead ---------------------------------------------------------------------------------------------

def synthetic_space() -> SearchSpace:
    from nas_core.examples.digits import DigitsCNNSpace

    return SearchSpace.from_dict(DigitsCNNSpace().to_dict())


def synthetic_metrics(space: SearchSpace, w: np.ndarray, arch: Architecture) -> dict[str, float]:
    x = space.encode(arch)
    return {ACC: float(1.0 / (1.0 + math.exp(-float(x @ w)))), COST: float(x.sum())}


def overhead(name: str, marks: tuple[int, ...], budget_s: float, log) -> dict[str, Any]:
    space = synthetic_space()
    w = np.random.default_rng(123).normal(size=space.encoding_size())
    feed = np.random.default_rng(7)
    direct = name in DIRECT
    objectives = MO if name in ("nsga2", "optuna_nsga2 (adapter)", "optuna NSGAIISampler (direct)") else SO
    out: dict[str, Any] = {}
    if direct:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(directions=["maximize" if o.direction == "max" else "minimize" for o in objectives],
                                    sampler=optuna_sampler(name, 0))
        from nas_core.strategies.optuna_adapter import OptunaStrategy

        params_of = OptunaStrategy(space, objectives, sampler="random")

        def prefill(arch):
            m = synthetic_metrics(space, w, arch)
            p, d = params_of._params_of(arch)
            keep = [k for k, dist in d.items() if not dist.single()]  # the direct walker skips fixed choices
            p = {_direct_name(k): p[k] for k in keep}
            d = {_direct_name(k): d[k] for k in keep}
            study.add_trial(optuna.trial.create_trial(params=p, distributions=d,
                                                      values=[m[o.name] for o in objectives]))

        def cycle():
            t = study.ask()
            arch = Architecture(suggest(t, space.dimensions))
            m = synthetic_metrics(space, w, arch)
            vals = [m[o.name] for o in objectives]
            study.tell(t, vals if len(vals) > 1 else vals[0])
    else:
        reg, opts, multi = OURS[name]
        cls = CORE_STRATEGIES[reg]
        s = cls(space, objectives, seed=0, **{k: v for k, v in opts.items() if k != "budgets"},
                **({"budgets": [2, 4, 8]} if "budgets" in opts else {}))
        fid_of = (lambda: {"epochs": int(feed.choice([2, 4, 8]))}) if "budgets" in opts else (lambda: {})

        def prefill(arch):
            s.tell(arch, TrialResult(TrialState.COMPLETE, synthetic_metrics(space, w, arch), None, fid_of()))

        def cycle():
            p = s.ask()
            arch, fid = (p.arch, dict(p.fidelity)) if isinstance(p, Proposal) else (p, {})
            s.tell(arch, TrialResult(TrialState.COMPLETE, synthetic_metrics(space, w, arch), None, fid))
    done = 0
    for mark in marks:
        t_pre = time.perf_counter()
        while done < mark - 10:
            prefill(space.sample(feed))
            done += 1
        pre = time.perf_counter() - t_pre
        times = []
        t_all = time.perf_counter()
        for _ in range(20):
            t = time.perf_counter()
            cycle()
            times.append(time.perf_counter() - t)
            done += 1
            if time.perf_counter() - t_all > budget_s:
                break
        ms = 1000 * statistics.median(times)
        out[f"overhead_ms_at_{mark}"] = round(ms, 4)
        log(f"  {name}: {ms:.3f} ms per ask/tell at {mark} completed trials ({len(times)} timed, prefill {pre:.1f} s)")
        if ms > 1000 * budget_s / 20:
            for later in marks[marks.index(mark) + 1:]:
                out[f"overhead_ms_at_{later}"] = None
                out[f"overhead_note"] = f"not measured beyond {mark}: {ms:.0f} ms per trial already"
            break
    if not direct and out.get(f"overhead_ms_at_{marks[-1]}") is not None:
        t = time.perf_counter()
        text = json.dumps(s.state_dict())
        out["state_json_kb_at_last"] = round(len(text) / 1024, 1)
        out["state_json_ms_at_last"] = round(1000 * (time.perf_counter() - t), 2)
    return out


def _direct_name(adapter_name: str) -> str:
    # the adapter's parameter names ("stages[0].channels", "stages#n") in the direct walker's style
    return adapter_name.replace("#n", "_n").replace("[", "").replace("].", "_")


# -- main -------------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--n-max", type=int, default=500, help="evaluation cap of the single-objective runs")
    ap.add_argument("--n-mo", type=int, default=100, help="evaluations of the two-objective runs")
    ap.add_argument("--marks", default="100,1000,5000", help="completed trials at which overhead is measured")
    ap.add_argument("--overhead-budget-s", type=float, default=60.0, help="time limit of one overhead measurement")
    ap.add_argument("--only", default=None, help="comma-separated subset of strategies")
    ap.add_argument("--skip-overhead", action="store_true")
    ap.add_argument("--quick", action="store_true", help="3 seeds, 120 evaluations, marks 100,300")
    ap.add_argument("--table", default=str(DIGITS_TABLE))
    args = ap.parse_args(argv)
    if args.quick:
        args.seeds, args.n_max, args.n_mo, args.marks = 3, 120, 60, "100,300"
    import torch

    torch.set_num_threads(1)
    marks = tuple(int(m) for m in args.marks.split(","))
    table = Table(args.table)
    space = table.space()
    sc = Scorer(table)
    names = list(OURS) + DIRECT
    if args.only:
        names = [n for n in names if n in args.only.split(",")]
    log = lambda msg: print(msg, flush=True)  # noqa: E731
    log(f"table: {len(table)} architectures x {table.fidelities}; best {ACC} {sc.best:.4f}; top 1 %: "
        f"{len(sc.top)} architectures with {ACC} >= {sc.top_threshold:.4f}")

    rows: list[dict[str, Any]] = []
    curves: dict[str, Any] = {}
    for name in names:
        t0 = time.perf_counter()
        so_runs, mo_runs = [], []
        for seed in range(args.seeds):
            # run until the top 1 % is reached and at least max(REGRET_AT) evaluations are spent
            stop = StopRule(sc, max(REGRET_AT))
            if name in DIRECT:
                so = run_direct(name, seed, table, space, SO, args.n_max, stop)
                mo = run_direct(name, seed, table, space, MO, args.n_mo, lambda s: False)
            else:
                so = run_ours(name, seed, table, space, SO, args.n_max, stop)
                multi = OURS[name][2] or CORE_STRATEGIES[OURS[name][0]].multi_objective
                mo = run_ours(name, seed, table, space, MO, args.n_mo, lambda s: False) if multi else so
            so_runs.append(so)
            mo_runs.append(mo)
        wall = time.perf_counter() - t0
        tops = [sc.to_top(s) for s in so_runs]
        ev_med, ev_lb = censored_median([t[0] for t in tops], args.n_max)
        s_med, s_lb = censored_median([t[1] for t in tops], math.inf)
        d_med, _ = censored_median([t[2] for t in tops], args.n_max)
        row: dict[str, Any] = {"strategy": name, "seeds": args.seeds,
                               "evals_to_top1pct_median": ev_med, "evals_to_top1pct_is_lower_bound": ev_lb,
                               "evals_to_top1pct_q1_q3": [finite_or_none(quartiles(
                                   [t[0] if t[0] is not None else math.inf for t in tops])[i]) for i in (0, 2)],
                               "top1pct_reached": sum(t[0] is not None for t in tops),
                               "distinct_archs_to_top1pct_median": d_med,
                               "sim_train_s_to_top1pct_median": None if s_lb else round(s_med, 1)}
        for n in REGRET_AT:
            q1, med, q3 = quartiles([sc.regret_at(s, n) for s in so_runs])
            row[f"regret_at_{n}_median"], row[f"regret_at_{n}_q1"], row[f"regret_at_{n}_q3"] = med, q1, q3
        hvs = [sc.hv_at(s, args.n_mo) for s in mo_runs]
        q1, med, q3 = quartiles(hvs)
        row[f"hypervolume_at_{args.n_mo}_median"], row[f"hypervolume_at_{args.n_mo}_q1"], \
            row[f"hypervolume_at_{args.n_mo}_q3"] = med, q1, q3
        hvs_log = [sc.hv_at(s, args.n_mo, log=True) for s in mo_runs]
        lq1, lmed, lq3 = quartiles(hvs_log)
        row[f"hypervolume_logenergy_at_{args.n_mo}_median"] = lmed
        row[f"hypervolume_logenergy_at_{args.n_mo}_q1"], row[f"hypervolume_logenergy_at_{args.n_mo}_q3"] = lq1, lq3
        row["per_seed"] = {"evals_to_top1pct": [t[0] for t in tops],
                           "distinct_archs_to_top1pct": [t[2] for t in tops],
                           "regret_at_100": [sc.regret_at(s, 100) for s in so_runs],
                           f"hypervolume_at_{args.n_mo}": hvs, f"hypervolume_logenergy_at_{args.n_mo}": hvs_log}
        if args.n_mo != 100:
            row["hypervolume_at_100_median"] = med if args.n_mo >= 100 else None
        row["benchmark_wall_s"] = round(wall, 1)
        grid = list(range(1, min(args.n_max, 300) + 1))
        curves[name] = {"regret": [quartiles([sc.regret_at(s, n) for s in so_runs]) for n in grid],
                        "hv": [quartiles([sc.hv_at(s, n) for s in mo_runs])[1] for n in range(1, args.n_mo + 1)]}
        if not args.skip_overhead:
            row.update(overhead(name, marks, args.overhead_budget_s, log))
        rows.append(row)
        log(f"{name}: top1% in {'>' if ev_lb else ''}{ev_med:g} evals (reached {row['top1pct_reached']}/{args.seeds}),"
            f" regret@100 {row['regret_at_100_median']:.4f}, HV@{args.n_mo} {med:.4f}  [{wall:.0f} s]")

    summary = targets(rows, args.n_mo, marks[-1])
    md = markdown(rows, sc, table, args, summary, marks)
    print(md)
    _results.write("strategies", rows, md, table=str(Path(args.table).relative_to(HERE.parent))
                   if Path(args.table).is_relative_to(HERE.parent) else args.table,
                   table_provenance={k: table.meta.extra.get(k) for k in ("command", "date", "git_commit")},
                   top1pct_threshold=sc.top_threshold, top1pct_size=len(sc.top), best_accuracy=sc.best,
                   hypervolume_reference=sc.ref, targets=summary, seeds=args.seeds, n_max=args.n_max)
    plots(curves, rows, args, marks)
    return 0


def _one_sided_p(a: list, b: list, alternative: str) -> float:
    """Mann-Whitney U p-value that ``a`` is less/greater than ``b`` (None, i.e. never reached, counts as worst)."""
    from scipy.stats import mannwhitneyu

    fill = lambda xs: [math.inf if x is None else x for x in xs]  # noqa: E731
    return float(mannwhitneyu(fill(a), fill(b), alternative=alternative).pvalue)


def targets(rows: list[dict], n_mo: int, last_mark: int) -> dict[str, Any]:
    by = {r["strategy"]: r for r in rows}
    ours = [r for r in rows if r["strategy"] not in DIRECT]
    out: dict[str, Any] = {}
    tpe = by.get("optuna TPESampler (direct)")
    if ours and tpe:
        best = min(ours, key=lambda r: (r["evals_to_top1pct_median"], r["regret_at_100_median"]))
        out["fastest_to_top1pct"] = best["strategy"]
        out["fastest_evals_median"] = best["evals_to_top1pct_median"]
        out["tpe_direct_evals_median"] = tpe["evals_to_top1pct_median"]
        out["tpe_direct_distinct_archs_median"] = tpe["distinct_archs_to_top1pct_median"]
        out["top1pct_target_met"] = best["evals_to_top1pct_median"] <= 0.5 * tpe["evals_to_top1pct_median"]
        out["top1pct_target_met_vs_distinct"] = (best["evals_to_top1pct_median"]
                                                 <= 0.5 * tpe["distinct_archs_to_top1pct_median"])
        out["top1pct_p_fewer_than_tpe"] = _one_sided_p(best["per_seed"]["evals_to_top1pct"],
                                                       tpe["per_seed"]["evals_to_top1pct"], "less")
        out["top1pct_p_fewer_than_half_tpe"] = _one_sided_p(
            best["per_seed"]["evals_to_top1pct"],
            [None if x is None else 0.5 * x for x in tpe["per_seed"]["evals_to_top1pct"]], "less")
    nsga = by.get("optuna NSGAIISampler (direct)")
    key = f"hypervolume_at_{n_mo}_median"
    if ours and nsga:
        best = max(ours, key=lambda r: r[key])
        out["best_hypervolume"] = best["strategy"]
        out["best_hypervolume_median"] = best[key]
        out["nsga2_direct_hypervolume_median"] = nsga[key]
        out["hypervolume_target_met"] = best[key] >= nsga[key]
        out["hypervolume_p_greater_than_nsga2"] = _one_sided_p(best["per_seed"][f"hypervolume_at_{n_mo}"],
                                                               nsga["per_seed"][f"hypervolume_at_{n_mo}"], "greater")
        lk = f"hypervolume_logenergy_at_{n_mo}_median"
        best_log = max(ours, key=lambda r: r[lk])
        out["best_hypervolume_logenergy"] = best_log["strategy"]
        out["best_hypervolume_logenergy_median"] = best_log[lk]
        out["nsga2_direct_hypervolume_logenergy_median"] = nsga[lk]
    k = f"overhead_ms_at_{last_mark}"
    for name in ("evolution", "random"):
        if name in by and by[name].get(k) is not None:
            out[f"{name}_{k}"] = by[name][k]
            out[f"{name}_overhead_target_met"] = by[name][k] < 1.0
    return out


def fmt_evals(r: dict) -> str:
    return ("> " if r["evals_to_top1pct_is_lower_bound"] else "") + f"{r['evals_to_top1pct_median']:.4g}"


def markdown(rows, sc: Scorer, table: Table, args, summary, marks) -> str:
    hv = f"hypervolume_at_{args.n_mo}_median"
    lines = [
        "# Search strategies on the tabulated digits benchmark",
        "",
        f"Table: {len(table)} architectures of a reduced `digits/cnn` space at {[f['epochs'] for f in table.fidelities]} "
        f"epochs (`benchmarks/tables/digits_table.csv`, built by `benchmarks/build_table.py`). Best 8-epoch validation "
        f"accuracy {sc.best:.4f}; the top 1 % is the {len(sc.top)} architectures with accuracy >= {sc.top_threshold:.4f}. "
        f"{args.seeds} seeds per strategy. Multi-fidelity strategies pay e/8 of an evaluation for e epochs. "
        "Optuna (direct) counts every objective call; our loop (as the study does) skips repeats for free.",
        "",
        "## Single objective: accuracy",
        "",
        "| strategy | evals to top 1 % (median) | [q1, q3] | reached | distinct archs | regret@25 | regret@50 | "
        "regret@100 [q1, q3] | regret@200 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        q = r["evals_to_top1pct_q1_q3"]
        q = ["never" if v is None else f"{v:.4g}" for v in q]
        lines.append(f"| {r['strategy']} | {fmt_evals(r)} | [{q[0]}, {q[1]}] | {r['top1pct_reached']}/{r['seeds']} "
                     f"| {r['distinct_archs_to_top1pct_median']:.4g} | {r['regret_at_25_median']:.4f} | "
                     f"{r['regret_at_50_median']:.4f} | {r['regret_at_100_median']:.4f} "
                     f"[{r['regret_at_100_q1']:.4f}, {r['regret_at_100_q3']:.4f}] | {r['regret_at_200_median']:.4f} |")
    lines += ["", f"## Two objectives: accuracy vs energy (Cortex-M4), hypervolume after {args.n_mo} evaluations",
              "", "Fraction of the whole table's Pareto-front hypervolume (reference: the table's worst accuracy and "
              "largest energy); the second column measures energy on a log10 scale, which gives the low-energy end of "
              "the front its share.", "",
              "| strategy | HV median [q1, q3] | HV, log10 energy, median [q1, q3] |", "|---|---|---|"]
    for r in rows:
        n = args.n_mo
        lines.append(f"| {r['strategy']} | {r[hv]:.4f} [{r[f'hypervolume_at_{n}_q1']:.4f}, "
                     f"{r[f'hypervolume_at_{n}_q3']:.4f}] | {r[f'hypervolume_logenergy_at_{n}_median']:.4f} "
                     f"[{r[f'hypervolume_logenergy_at_{n}_q1']:.4f}, {r[f'hypervolume_logenergy_at_{n}_q3']:.4f}] |")
    if any(f"overhead_ms_at_{marks[0]}" in r for r in rows):
        head = " | ".join(f"{m}" for m in marks)
        lines += ["", "## Overhead: ms per ask + tell at N completed trials (synthetic objective, full digits space)",
                  "", f"| strategy | {head} | state JSON at {marks[-1]} (kB / ms) |",
                  "|---|" + "---|" * len(marks) + "---|"]
        for r in rows:
            vals = " | ".join("n/m" if r.get(f"overhead_ms_at_{m}") is None else f"{r[f'overhead_ms_at_{m}']:.3g}"
                              for m in marks)
            st = f"{r['state_json_kb_at_last']:.4g} / {r['state_json_ms_at_last']:.3g}" if "state_json_kb_at_last" in r \
                else ""
            lines.append(f"| {r['strategy']} | {vals} | {st} |")
    lines += ["", "## Targets", ""]
    if "top1pct_target_met" in summary:
        lines.append(f"- Top 1 % with at most half of Optuna TPE's evaluations: best here **{summary['fastest_to_top1pct']}** "
                     f"{summary['fastest_evals_median']:.4g} vs TPE (direct) {summary['tpe_direct_evals_median']:.4g} "
                     f"objective calls -> {'met' if summary['top1pct_target_met'] else 'NOT met'}; against the "
                     f"{summary['tpe_direct_distinct_archs_median']:.4g} distinct architectures TPE needed -> "
                     f"{'met' if summary['top1pct_target_met_vs_distinct'] else 'NOT met'}. One-sided Mann-Whitney "
                     f"over seeds: fewer than TPE p = {summary['top1pct_p_fewer_than_tpe']:.3g}, fewer than half "
                     f"of TPE's p = {summary['top1pct_p_fewer_than_half_tpe']:.3g}.")
    if "hypervolume_target_met" in summary:
        lines.append(f"- Hypervolume after {args.n_mo} at least Optuna NSGA-II's: best here **{summary['best_hypervolume']}** "
                     f"{summary['best_hypervolume_median']:.4f} vs NSGA-II (direct) "
                     f"{summary['nsga2_direct_hypervolume_median']:.4f} -> "
                     f"{'met' if summary['hypervolume_target_met'] else 'NOT met'} (one-sided Mann-Whitney p = "
                     f"{summary['hypervolume_p_greater_than_nsga2']:.3g}); with log10 energy: best "
                     f"**{summary['best_hypervolume_logenergy']}** {summary['best_hypervolume_logenergy_median']:.4f} "
                     f"vs NSGA-II (direct) {summary['nsga2_direct_hypervolume_logenergy_median']:.4f}.")
    for name in ("evolution", "random"):
        k = f"{name}_overhead_ms_at_{marks[-1]}"
        if k in summary:
            lines.append(f"- {name} overhead at {marks[-1]} trials: {summary[k]:.3g} ms "
                         f"-> {'met' if summary[f'{name}_overhead_target_met'] else 'NOT met'} (< 1 ms).")
    return "\n".join(lines)


def plots(curves, rows, args, marks) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=80)
    for name, c in curves.items():
        med = [q[1] for q in c["regret"]]
        x = np.arange(1, len(med) + 1)
        style = "--" if name in DIRECT else "-"
        ax.plot(x, np.maximum(med, 1e-4), style, label=name, lw=1.2)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("evaluations (full-fidelity equivalents)")
    ax.set_ylabel("median regret (val accuracy)")
    ax.set_title(f"Regret on the digits table, {args.seeds} seeds")
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(_results.RESULTS / "strategies_regret.png")
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=80)
    for name, c in curves.items():
        ax.plot(np.arange(1, len(c["hv"]) + 1), c["hv"], "--" if name in DIRECT else "-", label=name, lw=1.2)
    ax.set_xlabel("evaluations")
    ax.set_ylabel("median hypervolume (fraction of table's)")
    ax.set_title("Accuracy vs energy (Cortex-M4)")
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(_results.RESULTS / "strategies_hypervolume.png")
    plt.close(fig)

    if any(f"overhead_ms_at_{marks[0]}" in r for r in rows):
        fig, ax = plt.subplots(figsize=(7, 4.2), dpi=80)
        for r in rows:
            pts = [(m, r.get(f"overhead_ms_at_{m}")) for m in marks if r.get(f"overhead_ms_at_{m}") is not None]
            if pts:
                ax.plot(*zip(*pts), "o--" if r["strategy"] in DIRECT else "o-", label=r["strategy"], lw=1)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.axhline(1.0, color="grey", lw=0.5)
        ax.set_xlabel("completed trials")
        ax.set_ylabel("ms per ask + tell")
        ax.legend(fontsize=6, ncol=2)
        fig.tight_layout()
        fig.savefig(_results.RESULTS / "strategies_overhead.png")
        plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
