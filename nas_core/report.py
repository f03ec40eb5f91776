"""Reports of a study: Pareto table (Markdown), plot (PNG), JSON summary and model card.

``make_report(dir)`` reads ``dir/study.db`` and writes, next to it,
``report.json``, ``report.md``, the plots and the model card
(``model_card.md`` and ``model_card.html``, see :mod:`nas_core.modelcard`).
The plots: ``pareto.png`` (the first two objectives, or the one objective over
trials), ``best_so_far.png`` (each objective's best value so far over the trials),
``hypervolume.png`` (two or more objectives: the hypervolume of the front of the
first N complete trials, against the report's reference point) and
``pareto_pairs.png`` (three or more objectives: every pair of objectives, front
highlighted). A
plugin may add a section (for instance the ECG plugin's clinical table) through
its ``Plugin.report_section(store, pareto_records) -> str``; it appears in the
report and in the model card. Every file is written inside the study directory
(:func:`nas_core.safety.confined`).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from nas_core.errors import StoreError
from nas_core.pareto import hypervolume, pareto_front
from nas_core.plugins import Registry
from nas_core.store import Store, TrialRecord, TrialState
from nas_core.values import Objective

def _objectives(store: Store) -> list[Objective]:
    names = store.config.get("objectives_resolved") or store.config.get("objectives") or []
    return [Objective.parse(o) for o in names]


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        return f"{v:.4g}"
    return str(v)


def pareto_records(records: Sequence[TrialRecord], objectives: Sequence[Objective]) -> list[TrialRecord]:
    usable = [r for r in records if all(o.name in r.all_metrics() for o in objectives)]
    if not usable:
        return []
    pts = [[r.all_metrics()[o.name] for o in objectives] for r in usable]
    idx = pareto_front(pts, [o.direction for o in objectives])
    front = [usable[i] for i in idx]
    return sorted(front, key=lambda r: -objectives[0].score(r.all_metrics()))


def make_report(out_dir: str | Path, *, plot: bool = True) -> dict[str, Any]:
    out = Path(out_dir)
    if not (out / "study.db").is_file():
        raise StoreError(f"no study store at {out / 'study.db'}; run 'nas run ... --out {out}' first")
    store = Store.open(out / "study.db")
    try:
        return _report(store, out, plot)
    finally:
        store.close()


def _report(store: Store, out: Path, plot: bool) -> dict[str, Any]:
    cfg = store.config
    objectives = _objectives(store)
    trials = store.trials()
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    front = pareto_records(complete, objectives)
    metric_cols: list[str] = []
    for o in objectives:
        metric_cols.append(o.name)
    for extra in ("params", "macs", "peak_act_bytes", "flash_int8_bytes", "latency_ms", "energy_uj"):
        if extra not in metric_cols and any(extra in t.all_metrics() for t in front):
            metric_cols.append(extra)

    hv = None
    ref = _hv_reference(complete, objectives)
    if ref is not None and front:
        hv = hypervolume([[t.all_metrics()[o.name] for o in objectives] for t in front], ref,
                         [o.direction for o in objectives])

    summary: dict[str, Any] = {
        "study": store.meta("study_name"),
        "study_id": store.study_id,
        "space": cfg.get("space_key"),
        "strategy": cfg.get("strategy"),
        "seed": cfg.get("seed"),
        "target": cfg.get("target_key"),
        "budget": cfg.get("budget"),
        "objectives": [str(o) for o in objectives],
        "constraints": cfg.get("constraints_resolved", []),
        "counts": {s.value: sum(1 for t in trials if t.state == s) for s in TrialState},
        "hypervolume": hv,
        "pareto": [{"trial": t.number, "arch_hash": t.arch.hash, "arch": t.arch.to_dict(),
                    "metrics": {k: t.all_metrics().get(k) for k in metric_cols}} for t in front],
        "failed": [{"trial": t.number, "error": (t.error or "").splitlines()[0] if t.error else ""}
                   for t in trials if t.state == TrialState.FAILED],
        "rejected_reasons": _reason_counts(trials),
        "strategy_fallbacks": dict((store.strategy_state() or {}).get("fallbacks") or {}),
    }
    lines = [f"# Study report: {summary['study']}", "",
             f"- space `{summary['space']}`, strategy `{summary['strategy']}`, seed {summary['seed']}, "
             f"target `{summary['target']}`, budget {summary['budget']}",
             f"- objectives: {', '.join(summary['objectives'])}; constraints: "
             f"{', '.join(summary['constraints']) or 'none'}",
             f"- trials: " + ", ".join(f"{k} {v}" for k, v in summary["counts"].items()),
             ]
    if hv is not None:
        lines.append(f"- hypervolume of the Pareto front (reference: worst values pushed 10 % out): {hv:.4g}")
    if summary["strategy_fallbacks"]:
        lines.append("- strategy fallbacks (proposals that were random or repeated instead of the strategy's own): "
                     + ", ".join(f"{k} {v}" for k, v in sorted(summary["strategy_fallbacks"].items())))
    lines += ["", "## Pareto front", "", "| trial | " + " | ".join(metric_cols) + " | architecture |",
              "|---|" + "---|" * len(metric_cols) + "---|"]
    for t in front:
        m = t.all_metrics()
        lines.append(f"| {t.number} | " + " | ".join(_fmt(m.get(c, "")) for c in metric_cols)
                     + f" | `{t.arch.hash}` |")
    if summary["rejected_reasons"]:
        lines += ["", "## Rejected before training", ""]
        lines += [f"- {n} x {r}" for r, n in summary["rejected_reasons"].items()]
    if summary["failed"]:
        lines += ["", "## Failed trials", ""]
        lines += [f"- trial {f['trial']}: {f['error']}" for f in summary["failed"]]
    from nas_core.modelcard import write_model_card
    from nas_core.safety import confined

    sections: list[str] = []
    plugin = Registry().plugins().get(str(cfg.get("space_key") or "").split("/", 1)[0])
    if plugin is not None and plugin.report_section is not None:
        sections.append(plugin.report_section(store, front))
        lines += ["", sections[-1]]
    summary["plots"] = []
    if plot:
        _plot(confined(out, "pareto.png"), complete, front, objectives)
        lines += ["", "![Pareto plot](pareto.png)"]
        _plot_best(confined(out, "best_so_far.png"), complete, objectives)
        lines += ["", "![Best value so far over the trials](best_so_far.png)"]
        summary["plots"] = ["pareto.png", "best_so_far.png"]
        if ref is not None:
            _plot_hypervolume(confined(out, "hypervolume.png"), complete, objectives, ref)
            lines += ["", "![Hypervolume over the trials](hypervolume.png)"]
            summary["plots"].append("hypervolume.png")
        if len(objectives) >= 3:
            _plot_pairs(confined(out, "pareto_pairs.png"), complete, front, objectives)
            lines += ["", "![Pareto front, objectives pairwise](pareto_pairs.png)"]
            summary["plots"].append("pareto_pairs.png")
    prov = store.provenance
    summary["provenance"] = {"created": prov.get("created"), "code": prov.get("code"),
                             "data_checksums": len(prov.get("data_checksums") or {})} if prov else None
    summary["model_card"] = ["model_card.md", "model_card.html"]
    lines += ["", "Model card: [model_card.md](model_card.md) ([HTML](model_card.html))."]
    confined(out, "report.md").write_text("\n".join(lines) + "\n")
    confined(out, "report.json").write_text(json.dumps(summary, indent=2, sort_keys=True, default=str))
    write_model_card(out, store, summary, front, metric_cols, "pareto.png" if plot else None, sections)
    return summary


def _hv_reference(complete: Sequence[TrialRecord], objectives: Sequence[Objective]) -> list[float] | None:
    """The hypervolume reference: each objective's worst value among complete trials, pushed 10 % outwards
    (``None`` below two objectives or without a complete trial that has them all)."""
    if len(objectives) < 2:
        return None
    ref = []
    for o in objectives:
        vals = [t.all_metrics()[o.name] for t in complete if o.name in t.all_metrics()]
        vals = [v for v in vals if math.isfinite(v)]
        if not vals:
            return None
        worst = min(vals) if o.direction == "max" else max(vals)
        ref.append(worst - 0.1 * abs(worst) if o.direction == "max" else worst + 0.1 * abs(worst) + 1e-12)
    return ref


def _reason_counts(trials: Sequence[TrialRecord]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for t in trials:
        if t.state == TrialState.REJECTED and t.reason:
            for part in t.reason.split("; "):
                key = _reason_key(part)
                counts[key] = counts.get(key, 0) + 1
    return counts


def _reason_key(part: str) -> str:
    """Summary of one rejection reason: ``"fs_hz below limit"``, ``"params above limit"``, or the reason itself.

    The direction comes from the constraint's operator (``"m = v violates m >= b"`` is
    below its limit) or, for a domain reason, from its wording (``"... is below ..."``).
    """
    if " = " not in part:
        return part
    metric = part.split(" = ")[0]
    m = re.search(rf"violates {re.escape(metric)} (<=|>=|==|<|>) ", part)
    if m:
        return metric + {"<=": " above limit", "<": " above limit", ">=": " below limit", ">": " below limit"}.get(
            m.group(1), " not at required value")
    if re.search(r"\b(is|are) (below|under|less than)\b", part):
        return metric + " below limit"
    if re.search(r"\b(is|are) (above|over|more than|greater than)\b|\bexceeds\b", part):
        return metric + " above limit"
    return metric + " outside limits"


def _plot(path: Path, complete: Sequence[TrialRecord], front: Sequence[TrialRecord],
          objectives: Sequence[Objective]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=110)
    if len(objectives) >= 2:
        a, b = objectives[0].name, objectives[1].name
        xs = [t.all_metrics().get(b, math.nan) for t in complete]  # a missing value is not drawn
        ys = [t.all_metrics().get(a, math.nan) for t in complete]
        ax.scatter(xs, ys, s=14, c="0.6", label="complete trials")
        fr = sorted(front, key=lambda t: t.all_metrics()[b])
        ax.plot([t.all_metrics()[b] for t in fr], [t.all_metrics()[a] for t in fr], "o-", c="C3", label="Pareto front")
        ax.set_xlabel(f"{b} ({objectives[1].direction})")
        ax.set_ylabel(f"{a} ({objectives[0].direction})")
        if b in ("macs", "params", "energy_uj", "latency_ms", "flash_int8_bytes", "peak_act_bytes"):
            positive = [x for x in xs if x and x > 0]
            if positive and max(positive) / min(positive) > 20:
                ax.set_xscale("log")
    else:
        a = objectives[0].name
        ax.plot([t.number for t in complete], [t.all_metrics().get(a, math.nan) for t in complete], "o", c="0.5", ms=3)
        ax.set_xlabel("trial")
        ax.set_ylabel(a)
    ax.grid(alpha=0.3)
    if len(objectives) >= 2:
        ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _plot_best(path: Path, complete: Sequence[TrialRecord], objectives: Sequence[Objective]) -> None:
    """Each objective's values over the trial numbers (grey) and its best value so far (a step line)."""
    plt = _pyplot()
    n = max(1, len(objectives))
    fig, axes = plt.subplots(n, 1, figsize=(6, 2.6 * n), dpi=110, squeeze=False, sharex=True)
    trials = sorted(complete, key=lambda t: t.number)
    for ax, o in zip(axes[:, 0], objectives):
        pts = [(t.number, t.all_metrics()[o.name]) for t in trials
               if o.name in t.all_metrics() and math.isfinite(t.all_metrics()[o.name])]
        if pts:
            xs, ys = zip(*pts)
            best: list[float] = []
            for y in ys:
                best.append(y if not best else (max(best[-1], y) if o.direction == "max" else min(best[-1], y)))
            ax.plot(xs, ys, "o", c="0.6", ms=3, label="trial")
            ax.step(xs, best, where="post", c="C0", label="best so far")
            ax.legend(loc="best", fontsize=8)
        else:
            ax.text(0.5, 0.5, "no complete trial", ha="center", va="center", transform=ax.transAxes)
        ax.set_ylabel(f"{o.name} ({o.direction})")
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("trial")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


#: most hypervolume evaluations drawn (a longer study is sampled at evenly spaced trials)
MAX_HV_POINTS = 200


def hypervolume_over_trials(complete: Sequence[TrialRecord], objectives: Sequence[Objective],
                            reference: Sequence[float]) -> tuple[list[int], list[float]]:
    """(trial numbers, hypervolume of the Pareto front of the complete trials up to each), at most
    :data:`MAX_HV_POINTS` of them (evenly spaced; the last trial always included)."""
    directions = [o.direction for o in objectives]
    trials = sorted((t for t in complete if all(math.isfinite(t.all_metrics().get(o.name, math.nan))
                                                for o in objectives)), key=lambda t: t.number)
    pts = [[t.all_metrics()[o.name] for o in objectives] for t in trials]
    step = max(1, math.ceil(len(trials) / MAX_HV_POINTS))
    at = sorted(set(range(step - 1, len(trials), step)) | ({len(trials) - 1} if trials else set()))
    xs, hvs = [], []
    for i in at:
        prefix = pts[: i + 1]
        xs.append(trials[i].number)
        hvs.append(hypervolume([prefix[j] for j in pareto_front(prefix, directions)], reference, directions))
    return xs, hvs


def _plot_hypervolume(path: Path, complete: Sequence[TrialRecord], objectives: Sequence[Objective],
                      ref: Sequence[float]) -> None:
    """The hypervolume of the front of the first complete trials, over the trial numbers."""
    plt = _pyplot()
    xs, hvs = hypervolume_over_trials(complete, objectives, ref)
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=110)
    if xs:
        ax.step(xs, hvs, where="post", c="C2", marker="o", ms=3)
    else:
        ax.text(0.5, 0.5, "no complete trial", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("trial")
    ax.set_ylabel("hypervolume")
    ax.set_title(" / ".join(str(o) for o in objectives), fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _plot_pairs(path: Path, complete: Sequence[TrialRecord], front: Sequence[TrialRecord],
                objectives: Sequence[Objective]) -> None:
    """Every pair of objectives: complete trials in grey, the (all-objective) Pareto front in red."""
    plt = _pyplot()
    pairs = [(i, j) for i in range(len(objectives)) for j in range(i + 1, len(objectives))]
    cols = min(3, len(pairs))
    rows = math.ceil(len(pairs) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.2 * rows), dpi=110, squeeze=False)
    for k, (i, j) in enumerate(pairs):
        ax = axes[k // cols, k % cols]
        a, b = objectives[i], objectives[j]
        ax.scatter([t.all_metrics().get(b.name, math.nan) for t in complete],
                   [t.all_metrics().get(a.name, math.nan) for t in complete], s=10, c="0.6", label="complete trials")
        ax.scatter([t.all_metrics()[b.name] for t in front], [t.all_metrics()[a.name] for t in front], s=16, c="C3",
                   label="Pareto front")
        ax.set_xlabel(f"{b.name} ({b.direction})", fontsize=8)
        ax.set_ylabel(f"{a.name} ({a.direction})", fontsize=8)
        ax.grid(alpha=0.3)
        if k == 0:
            ax.legend(loc="best", fontsize=7)
    for k in range(len(pairs), rows * cols):
        axes[k // cols, k % cols].axis("off")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
