"""EfficientNet-style compound scaling as a two-stage workflow, from one command.

    python -m nas_ecg.compound --target nrf52840 --battery-days 14 --out runs/compound \\
        --option cv_folds=3 --option epochs=5 --option data_fraction=0.3

1. **Base** (phi = 0): a base design of ``ecg/efficient-cnn`` -- the stages'
   blocks, kernels and downsampling and the head -- given as JSON (``--base``,
   e.g. the design a search at phi = 0 chose) or :data:`DEFAULT_BASE`.
2. **Grid at phi = 1**: every ``(alpha, beta, gamma)`` of a small grid with
   ``alpha * beta**2 * gamma`` within ``--tolerance`` of 2 (the cost of a 1D
   convolution grows as depth x width**2 x rate, so each unit of phi about
   doubles the MACs; :func:`cost_check` compares that exponent with the MACs
   measured on the built networks). Each is trained and scored by the task's
   estimator (use ``cv_folds``: the score is out-of-fold on DS1); the best
   feasible one fixes alpha, beta and gamma.
3. **Sweep phi** upward from 0 in steps of ``--phi-step``: the budgets (energy
   per beat, RAM, flash, latency, parameters) are checked before training;
   feasible networks are trained. The result is the largest feasible phi, the
   score-vs-phi curve and, per budget, the first phi at which it binds.

Everything evaluated is written to ``OUT/compound.json`` after each network, so a
killed run resumes where it stopped (re-run the same command). DS2 is never read.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from nas_core.errors import ConfigError
from nas_ecg.crossval import DEFAULT_CV_OBJECTIVE

log = logging.getLogger(__name__)

#: the base design used when none is given (stage blocks, kernels, downsampling, head)
DEFAULT_BASE = {"stages": [{"block": "separable", "kernel": 5, "downsample": "max"},
                           {"block": "separable", "kernel": 5, "downsample": "max"},
                           {"block": "inverted", "expansion": 2, "kernel": 5, "downsample": "avg"}],
                "head_hidden": 16}
ALPHAS = (1.0, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6, 1.8, 2.0)
BETAS = (1.0, 1.05, 1.1, 1.15, 1.2, 1.3, 1.4)
#: 125 Hz x gamma lands on a MAX30003 rate: 125, 200 (x1.6), 250 (x2)
GAMMAS = (1.0, 1.6, 2.0)
#: exponents of depth, width and rate in the cost of a 1D convolution stack
COST_EXPONENTS = (1.0, 2.0, 1.0)


def flops_factor(alpha: float, beta: float, gamma: float) -> float:
    """``alpha * beta**2 * gamma``: how much one unit of phi multiplies the MACs (ideal, before rounding)."""
    return alpha ** COST_EXPONENTS[0] * beta ** COST_EXPONENTS[1] * gamma ** COST_EXPONENTS[2]


def grid(target_factor: float = 2.0, tolerance: float = 0.1, alphas: Sequence[float] = ALPHAS,
         betas: Sequence[float] = BETAS, gammas: Sequence[float] = GAMMAS) -> list[tuple[float, float, float]]:
    """``(alpha, beta, gamma)`` with ``|alpha beta^2 gamma - target| <= tolerance x target``, all >= 1."""
    if not 0 < tolerance < 1:
        raise ConfigError(f"tolerance must be in (0, 1), got {tolerance!r}")
    out = [(a, b, g) for a in alphas for b in betas for g in gammas
           if min(a, b, g) >= 1.0 and abs(flops_factor(a, b, g) - target_factor) <= tolerance * target_factor]
    if not out:
        raise ConfigError(f"no (alpha, beta, gamma) of the grid has alpha*beta^2*gamma within {tolerance:.0%} of "
                          f"{target_factor:g}")
    return out


def arch_at(base: Mapping[str, Any], phi: float, alpha: float, beta: float, gamma: float):
    from nas_core.space import Architecture

    return Architecture({"phi": float(phi), "alpha": float(alpha), "beta": float(beta), "gamma": float(gamma),
                         "rates": "max30003", "stages": [dict(s) for s in base["stages"]],
                         "head_hidden": base["head_hidden"]})


def cost_check(base: Mapping[str, Any], triples: Iterable[tuple[float, float, float]]) -> list[dict[str, float]]:
    """Measured MACs at phi = 1 over phi = 0 against ``alpha beta^2 gamma`` (rounding of depth, width, rate)."""
    from nas_core.hardware import measure_costs

    from nas_ecg.space import EfficientECGSpace, scaled

    space = EfficientECGSpace()
    rows = []
    for a, b, g in triples:
        macs = []
        for phi in (0.0, 1.0):
            arch = arch_at(base, phi, a, b, g)
            spec = scaled(arch)
            macs.append(measure_costs(space.build(arch), ((2, spec["length"]), (8,))).as_metrics()["macs"])
        rows.append({"alpha": a, "beta": b, "gamma": g, "ideal_factor": flops_factor(a, b, g),
                     "measured_factor": macs[1] / macs[0], "macs_phi0": macs[0], "macs_phi1": macs[1]})
    return rows


def distinct(base: Mapping[str, Any], triples: Iterable[tuple[float, float, float]]) -> list[tuple[float, float, float]]:
    """One triple per distinct network at phi = 1 (rounding makes several triples build the same one).

    Of triples that build the same network, the one whose ``alpha beta^2 gamma``
    is nearest to 2 is kept; the result is ordered by that distance.
    """
    from nas_ecg.space import scaled

    seen: dict[str, tuple[float, float, float]] = {}
    for t in sorted(triples, key=lambda t: abs(flops_factor(*t) - 2.0)):
        key = json.dumps(scaled(arch_at(base, 1.0, *t)), sort_keys=True)
        seen.setdefault(key, t)
    return list(seen.values())


class Evaluator:
    """Static checks and (when feasible) training of one architecture, remembered in a JSON file."""

    def __init__(self, task, target, constraints, out: Path, seed: int = 0, progress: Callable[[str], None] = log.info):
        from nas_ecg.space import EfficientECGSpace

        self.task, self.target, self.constraints = task, target, list(constraints)
        self.space = EfficientECGSpace()
        self.estimator = task.estimator()
        self.seed, self.progress = seed, progress
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.path = self.out / "compound.json"
        opts = {k: v for k, v in task.options.items() if k not in ("data_dir", "cache_dir", "download")}
        self.fingerprint = json.dumps({"task": opts, "target": target.name, "constraints": [str(c) for c in
                                                                                           self.constraints],
                                       "seed": seed}, sort_keys=True, default=str)
        self.done: dict[str, dict] = {}
        if self.path.exists():
            saved = json.loads(self.path.read_text())
            if saved.get("fingerprint") != self.fingerprint:
                raise ConfigError(f"{self.out} holds a compound run with other settings ({saved.get('fingerprint')}); "
                                  f"use another --out")
            self.done = saved["evaluations"]

    def _save(self) -> None:
        tmp = self.path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps({"fingerprint": self.fingerprint, "evaluations": self.done}, indent=1,
                                  sort_keys=True))
        tmp.replace(self.path)

    def static(self, arch) -> tuple[dict[str, float], dict[str, str]]:
        model = self.space.build(arch)
        m = self.task.static_metrics(arch, model, self.target)
        viol = {f"{c.metric}{c.op}{c.value:g}": v for c in self.constraints if (v := c.violation(m))}
        return m, viol

    def evaluate(self, arch, stage: str, train: bool = True) -> dict[str, Any]:
        return self.evaluate_many([arch], stage, train=train)[0]

    def evaluate_many(self, archs: Sequence[Any], stage: str, train: bool = True, workers: int = 1) -> list[dict]:
        """Static checks of each, then training of the feasible ones (``workers`` processes); remembered."""
        keys = [f"{a.hash}|{self.seed}" for a in archs]  # the same network in grid and sweep is trained once
        todo = []
        for arch, key in zip(archs, keys):
            if key in self.done and (self.done[key].get("trained") or not train or self.done[key]["violations"]):
                continue
            m, viol = self.static(arch)
            self.done[key] = {"stage": stage, "arch": arch.to_dict(), "static": m, "violations": viol,
                              "trained": False}
            if train and not viol:
                todo.append((key, arch))
        self._save()
        jobs = [(self.estimator, arch, self.seed, str(self.out / "models" / arch.hash[:16])) for _, arch in todo]
        if workers > 1 and len(jobs) > 1:
            from concurrent.futures import ProcessPoolExecutor

            with ProcessPoolExecutor(min(workers, len(jobs))) as pool:
                results = pool.map(_train, jobs)
                for (key, _), (res, secs) in zip(todo, results):
                    self._record(key, res, secs)
        else:
            for (key, _), job in zip(todo, jobs):
                self._record(key, *_train(job))
        return [self.done[k] for k in keys]

    def _record(self, key: str, res: Mapping[str, float], secs: float) -> None:
        self.done[key].update(metrics=dict(res), trained=True, train_s=secs)
        self._save()
        self.progress(f"trained {key.split('|')[0][:12]}: " + ", ".join(
            f"{k} {v:.4f}" for k, v in res.items() if k in ("cv_macro_f1", "cv_macro_f1_nsv", "cv_sv_auroc", "val_macro_f1")))


def _train(job) -> tuple[dict[str, float], float]:
    """Worker: train one architecture with the task's estimator."""
    import torch

    from nas_core.estimators.base import EvalContext
    from nas_ecg.space import EfficientECGSpace

    estimator, arch, seed, artifact_dir = job
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    model = EfficientECGSpace().build(arch)
    t0 = time.monotonic()
    res = estimator.evaluate(EvalContext(arch, model, seed, artifact_dir=artifact_dir))
    return dict(res), time.monotonic() - t0


def run_grid(ev: Evaluator, base: Mapping[str, Any], triples: Sequence[tuple[float, float, float]],
             score: str, workers: int = 1) -> tuple[tuple[float, float, float], list[dict]]:
    """Train every grid point at phi = 1; the best feasible one by ``score`` (ties: fewer MACs)."""
    rows = ev.evaluate_many([arch_at(base, 1.0, a, b, g) for a, b, g in triples], "grid", workers=workers)
    for (a, b, g), row in zip(triples, rows):
        s = row.get("metrics", {}).get(score)
        ev.progress(f"grid alpha {a:g} beta {b:g} gamma {g:g}: "
                    + (f"{score} {s:.4f}" if s is not None else "infeasible: " + "; ".join(row["violations"])))
    ok = [(r["metrics"][score], -r["static"]["macs"], r) for r in rows if r["trained"]]
    if not ok:
        raise ConfigError("no grid point at phi = 1 meets the budgets; give a smaller base design")
    best = max(ok, key=lambda t: (t[0], t[1]))[2]["arch"]
    return (best["alpha"], best["beta"], best["gamma"]), rows


def sweep(ev: Evaluator, base: Mapping[str, Any], coeffs: tuple[float, float, float], score: str,
          phi_step: float = 0.5, phi_max: float = 8.0, workers: int = 1) -> dict[str, Any]:
    """phi = 0, step, 2 step, ... up to the phi at which every budget binds (or ``phi_max``); train the feasible."""
    if not phi_step > 0:
        raise ConfigError(f"phi_step must be > 0, got {phi_step!r}")
    from nas_ecg.space import FRONT_END_RATES_HZ, scaled

    phis, binds, first_of, same_as = [], {}, {}, {}
    saturated_at = None
    n = int(math.floor(phi_max / phi_step + 1e-9))
    for i in range(n + 1):  # budgets first: cheap, no training
        phi = round(i * phi_step, 6)
        arch = arch_at(base, phi, *coeffs)
        spec = json.dumps(scaled(arch), sort_keys=True)
        if spec in first_of:  # rounding (or a capped rate) gives the network of a smaller phi again
            same_as[phi] = first_of[spec]
            if not (coeffs[0] > 1 or coeffs[1] > 1) and scaled(arch)["fs_hz"] == max(FRONT_END_RATES_HZ):
                saturated_at = first_of[spec]  # only the rate scales, and it is capped: nothing grows any more
                break
            continue
        first_of[spec] = phi
        _, viol = ev.static(arch)
        phis.append(phi)
        for name in viol:
            binds.setdefault(name, phi)
        if len(binds) == len(ev.constraints):
            break
    rows = ev.evaluate_many([arch_at(base, phi, *coeffs) for phi in phis], "sweep", workers=workers)
    rows = [{**r, "phi": phi} for r, phi in zip(rows, phis)]
    if saturated_at is not None:
        ev.progress(f"sweep: the network stops growing after phi {saturated_at:g} (alpha = beta = 1 and the rate "
                    f"is capped at the front end's highest rate MIT-BIH can feed)")
    for r in rows:
        s = r.get("metrics", {}).get(score)
        ev.progress(f"sweep phi {r['phi']:g}: fs {r['static']['fs_hz']:g} Hz, MACs {r['static']['macs']:.0f}, "
                    + (f"{score} {s:.4f}" if s is not None else "infeasible: " + "; ".join(r["violations"])))
    feasible = [r["phi"] for r in rows if not r["violations"]]
    return {"rows": rows, "largest_feasible_phi": max(feasible) if feasible else None, "binds_at_phi": binds,
            "same_network_as": same_as, "saturated_after_phi": saturated_at}


def main(argv: Sequence[str] | None = None) -> int:
    from nas_core.constraints import Constraint

    ap = argparse.ArgumentParser(prog="python -m nas_ecg.compound", description=__doc__.splitlines()[0])
    ap.add_argument("--target", default="nrf52840")
    ap.add_argument("--battery-days", type=float, default=14.0)
    ap.add_argument("--base", help="JSON file with 'stages' and 'head_hidden' (default: DEFAULT_BASE)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--option", action="append", default=[], help="task option key=value (repeatable)")
    ap.add_argument("--constraint", action="append", help="extra hard constraint, repeatable (default: params<=50000)")
    ap.add_argument("--score", default=DEFAULT_CV_OBJECTIVE, help="metric to maximise in the grid (default: the "
                    "task's measured cross-validation objective)")
    ap.add_argument("--tolerance", type=float, default=0.1)
    ap.add_argument("--phi-step", type=float, default=0.5)
    ap.add_argument("--phi-max", type=float, default=8.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=1, help="processes training grid points / phi values at once")
    ap.add_argument("--data-dir", default=os.environ.get("MITDB_DIR"))
    args = ap.parse_args(argv)
    try:
        result = run(args.target, args.battery_days, args.out, base=_read_base(args.base),
                     options=_options(args.option, args.data_dir),
                     constraints=[Constraint.parse(c) for c in (args.constraint or ["params<=50000"])],
                     score=args.score, tolerance=args.tolerance, phi_step=args.phi_step, phi_max=args.phi_max,
                     seed=args.seed, workers=args.workers, progress=print)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"alpha, beta, gamma = {result['coefficients']}; largest feasible phi = "
          f"{result['sweep']['largest_feasible_phi']}; budgets bind at {result['sweep']['binds_at_phi']}")
    return 0


def run(target_name: str, days: float, out: str | os.PathLike, *, base: Mapping[str, Any] | None = None,
        options: Mapping[str, Any] | None = None, constraints: Sequence = (), score: str = DEFAULT_CV_OBJECTIVE,
        tolerance: float = 0.1, phi_step: float = 0.5, phi_max: float = 8.0, seed: int = 0,
        triples: Sequence[tuple[float, float, float]] | None = None, workers: int = 1,
        progress: Callable[[str], None] = log.info) -> dict[str, Any]:
    """The whole workflow; returns (and writes to ``OUT/compound_result.json``) its result."""
    from nas_ecg.budget import load_ecg_target
    from nas_ecg.space import EfficientECGSpace
    from nas_ecg.task import ECGTask

    base = dict(base or DEFAULT_BASE)
    task = ECGTask(EfficientECGSpace(), battery_days=days, **dict(options or {}))
    target = load_ecg_target(target_name)
    cons = [c for c in task.default_constraints(target) if c.metric != "fs_hz"] + list(constraints)
    ev = Evaluator(task, target, cons, Path(out), seed=seed, progress=progress)
    if score not in ev.estimator.metric_names:
        raise ConfigError(f"score {score!r} is not a metric of the task's estimator ({', '.join(ev.estimator.metric_names)}); "
                          f"with cv_folds the scores are cv_*")
    triples = list(triples or distinct(base, grid(tolerance=tolerance)))
    costs = cost_check(base, triples)
    coeffs, grid_rows = run_grid(ev, base, triples, score, workers=workers)
    sw = sweep(ev, base, coeffs, score, phi_step=phi_step, phi_max=phi_max, workers=workers)
    result = {"base": base, "coefficients": dict(zip(("alpha", "beta", "gamma"), coeffs)), "score": score,
              "cost_check": costs, "grid": [_flat(r, score) for r in grid_rows],
              "sweep": {**sw, "rows": [_flat(r, score) for r in sw["rows"]]}, "target": target_name,
              "battery_days": days}
    tmp = Path(out) / "compound_result.json.tmp"
    tmp.write_text(json.dumps(result, indent=1, default=str))
    tmp.replace(Path(out) / "compound_result.json")
    return result


def _flat(row: Mapping[str, Any], score: str) -> dict[str, Any]:
    a, m, st = row["arch"], row.get("metrics", {}), row["static"]
    return {"phi": a["phi"], "alpha": a["alpha"], "beta": a["beta"], "gamma": a["gamma"], "fs_hz": st["fs_hz"],
            "params": st["params"], "macs": st["macs"], "energy_uj_per_beat": st.get("energy_uj_per_beat"),
            "energy_budget_uj_per_beat": st.get("energy_budget_uj_per_beat"), "peak_ram_kb": st.get("peak_ram_kb"),
            "latency_ms": st.get("latency_ms"), "feasible": not row["violations"],
            "violations": "; ".join(row["violations"]), score: m.get(score),
            **{k: m.get(k) for k in ("cv_macro_f1_nsv", "cv_sv_f1", "cv_S_se", "cv_S_ppv", "cv_V_se", "cv_V_ppv")
               if k in m}, "train_s": row.get("train_s")}


def _read_base(path: str | None) -> dict[str, Any] | None:
    if not path:
        return None
    try:
        base = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"--base {path}: {e}") from None
    if not isinstance(base, dict) or "stages" not in base or "head_hidden" not in base:
        raise ConfigError(f"--base {path}: needs 'stages' (a list of stage dicts) and 'head_hidden'")
    return {"stages": base["stages"], "head_hidden": base["head_hidden"]}


def _options(items: Sequence[str], data_dir: str | None) -> dict[str, Any]:
    import yaml

    out: dict[str, Any] = {"data_dir": data_dir} if data_dir else {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--option {item!r} must look like key=value")
        k, v = item.split("=", 1)
        out[k.strip()] = yaml.safe_load(v)
    return out


if __name__ == "__main__":
    sys.exit(main())
