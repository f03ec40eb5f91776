"""Model card of a study: ``model_card.md`` and ``model_card.html`` next to the Pareto plot.

Written by :func:`nas_core.report.make_report` (so by ``nas report`` and at the end
of ``nas run``), from the store alone: the study's provenance record (code and
package versions, data checksums, seed, config, hardware target, the task's
intended use and limitations), its Pareto models with their metrics, the hard
constraints with the rejections they caused, failures, and the runs. The layout
follows Mitchell et al., "Model Cards for Model Reporting" (FAT* 2019): model
details, intended use, data, metrics, constraints, limitations, provenance.

A task may supply its own text through two optional methods, recorded when the
study is created: ``Task.intended_use() -> str`` and ``Task.limitations() ->
list[str]``. The HTML is rendered from the Markdown by a small converter that
escapes every piece of text, so nothing from the store can inject markup.
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

from nas_core.store import Store, TrialRecord, TrialState

DEFAULT_INTENDED_USE = (
    "Research and development of embedded neural networks: the models below are candidates found by a neural "
    "architecture search, ranked on validation data. They are not validated for clinical, diagnostic or other "
    "safety-critical use; a chosen model must be evaluated once on held-out test data, and verified on the target "
    "device, before any such use.")

def _estimator_text(estimator: str) -> str:
    if estimator == "train":
        return "training (the task's estimator)"
    return f"`{estimator}` (zero-cost proxies at initialisation; nothing was trained)"


DEFAULT_LIMITATIONS = (
    "Metrics are validation-set estimates taken during the search, at the search's training fidelity; picking the "
    "best of many candidates on the same validation data biases them upwards. Confirm a chosen model on held-out "
    "test data.",
    "Hardware figures (parameters, MACs, memory, latency, energy) come from an analytic cost model and the target's "
    "data file, not from measurements on the device.",
    "Failed and rejected candidates are excluded from the Pareto front; a different seed or budget can give a "
    "different front.",
)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if v is None:
        return "-"
    return str(v)


def _cell(v: Any) -> str:
    return _fmt(v).replace("|", "\\|").replace("\n", " ")


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(_cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines


def _short_json(obj: Any, limit: int = 400) -> str:
    text = json.dumps(obj, sort_keys=True, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def card_markdown(store: Store, summary: Mapping[str, Any], front: Sequence[TrialRecord],
                  metric_cols: Sequence[str], plot_name: str | None = "pareto.png",
                  extra_sections: Sequence[str] = ()) -> str:
    """The model card of a study: one section per function below, in the order of Mitchell et al.'s cards."""
    prov, cfg = store.provenance, store.config
    task = prov.get("task") or {}
    trials = store.trials()
    name = summary.get("study") or store.meta("study_name")
    L: list[str] = [f"# Model card: {name}", ""]
    L += [f"Neural architecture search study `{store.study_id}` (space `{summary.get('space')}`). This card documents "
          f"the {len(front)} model(s) on its Pareto front; it is generated from the study store by `nas report`.", ""]
    L += _details_section(store, summary, name)
    L += ["## Intended use", "", str(task.get("intended_use") or DEFAULT_INTENDED_USE), ""]
    if (cfg.get("estimator") or "train") != "train":
        L += ["**These networks are untrained.** The search scored them with zero-cost proxies at initialisation; "
              "train a chosen one (e.g. `nas run` on a space narrowed to it) before any use.", ""]
    L += _data_section(prov, task)
    L += _target_section(prov, summary)
    L += _front_section(summary, front, metric_cols, plot_name)
    L += _constraints_section(summary, trials)
    extra = task.get("limitations") or []
    L += ["## Limitations", "", *[f"- {x}" for x in [*DEFAULT_LIMITATIONS, *([extra] if isinstance(extra, str)
                                                                              else extra)]], ""]
    for section in extra_sections:
        if section and section.strip():
            L += [section.strip(), ""]
    L += _provenance_section(store, prov)
    return "\n".join(L)


def _details_section(store: Store, summary: Mapping[str, Any], name: Any) -> list[str]:
    prov, cfg = store.provenance, store.config
    code = prov.get("code") or {}
    L = ["## Model details", "",
         f"- study: {name} (id `{store.study_id}`), created {prov.get('created') or '-'}",
         f"- search space: `{summary.get('space')}`; strategy `{cfg.get('strategy')}` with options "
         f"`{_short_json(cfg.get('strategy_options') or {})}`; seed {cfg.get('seed')}; budget {cfg.get('budget')}",
         f"- objectives: {', '.join(summary.get('objectives') or []) or '-'}",
         f"- training fidelity: `{_short_json(cfg.get('fidelity') or {})}`; task options "
         f"`{_short_json(cfg.get('task_options') or {})}`",
         f"- estimator: {_estimator_text(cfg.get('estimator') or 'train')}",
         f"- trials: " + ", ".join(f"{k} {v}" for k, v in (summary.get("counts") or {}).items()),
         f"- code: nas-core {code.get('nas_core') or store.meta('nas_core_version')}, git commit "
         f"`{code.get('git_commit') or 'unknown'}`"]
    if prov.get("plugin"):
        L.append(f"- plugin: {prov['plugin'].get('name')} {prov['plugin'].get('version')}")
    return L + [""]


def _data_section(prov: Mapping[str, Any], task: Mapping[str, Any]) -> list[str]:
    L = ["## Data", ""]
    describe = task.get("describe")
    if describe:
        L += [f"- task: `{_short_json(describe, 600)}`"]
    checksums = prov.get("data_checksums") or {}
    if checksums:
        L += [f"- data files and their SHA-256 checksums ({len(checksums)}):", ""]
        L += _table(["file", "sha256"], [[k, v] for k, v in sorted(checksums.items())])
    else:
        L += ["- data checksums: not reported by the task" if prov else
              "- data checksums: not recorded (the study predates provenance records)"]
    return L + [""]


def _target_section(prov: Mapping[str, Any], summary: Mapping[str, Any]) -> list[str]:
    target = prov.get("hardware_target")
    if target:
        line = f"- `{summary.get('target')}`: " + ", ".join(f"{k} {_fmt(v)}" for k, v in target.items()
                                                           if not isinstance(v, (dict, list)))
    else:
        line = f"- {summary.get('target') or 'none (no target given; no latency or energy figures)'}"
    return ["## Hardware target", "", line, ""]


def _front_section(summary: Mapping[str, Any], front: Sequence[TrialRecord], metric_cols: Sequence[str],
                   plot_name: str | None) -> list[str]:
    L = ["## Metrics of the Pareto models", ""]
    if front:
        L += _table(["trial", *metric_cols, "architecture"],
                    [[t.number, *[t.all_metrics().get(c) for c in metric_cols], f"`{t.arch.hash}`"] for t in front])
        L += ["", "Architectures:", ""]
        L += [f"- trial {t.number} (`{t.arch.hash}`, seed {t.seed}): `{_short_json(t.arch.to_dict(), 600)}`"
              for t in front]
    else:
        L += ["No trial completed, so there is no Pareto model."]
    if summary.get("hypervolume") is not None:
        L += ["", f"Hypervolume of the front: {summary['hypervolume']:.4g}."]
    if plot_name:
        L += ["", f"![Pareto plot]({plot_name})"]
    return L + [""]


def _constraints_section(summary: Mapping[str, Any], trials: Sequence[TrialRecord]) -> list[str]:
    constraints = summary.get("constraints") or []
    L = ["## Constraints and rejections", "",
         f"- hard constraints (checked before training): {', '.join(constraints) if constraints else 'none'}"]
    rejected = summary.get("rejected_reasons") or {}
    if rejected:
        L += [f"- rejected before training: {sum(1 for t in trials if t.state == TrialState.REJECTED)} candidates"]
        L += [f"  - {n} x {r}" for r, n in rejected.items()]
    else:
        L += ["- no candidate was rejected"]
    failed = [t for t in trials if t.state == TrialState.FAILED]
    if failed:
        causes: dict[str, int] = {}
        for t in failed:
            key = ((t.error or "unknown").splitlines() or ["unknown"])[0][:160]
            causes[key] = causes.get(key, 0) + 1
        L += [f"- failed trials: {len(failed)}"] + [f"  - {n} x {c}" for c, n in causes.items()]
    retried = [t for t in trials if t.attempts > 1]
    if retried:
        L += [f"- trials re-run after an infrastructure failure: {len(retried)}"]
    return L + [""]


def _provenance_section(store: Store, prov: Mapping[str, Any]) -> list[str]:
    code = prov.get("code") or {}
    L = ["## Provenance", ""]
    if prov:
        L += [f"- created {prov.get('created')}; Python {prov.get('python')} on {prov.get('platform')}",
              f"- code: nas-core {code.get('nas_core')}, git commit `{code.get('git_commit') or 'unknown'}`",
              f"- seed {prov.get('seed')}; full config in `study.db` (meta `config`) and `report.json`", ""]
        L += _table(["package", "version"], sorted((prov.get("packages") or {}).items()))
    else:
        L += ["- no provenance record (the study was created by a nas-core version before it kept one)"]
    runs = store.runs()
    if runs:
        L += ["", "Runs of this study:", ""]
        L += _table(["started", "nas-core", "git commit", "executor", "workers", "budget"],
                    [[r.get("started"), (r.get("code") or {}).get("nas_core"), (r.get("code") or {}).get("git_commit"),
                      (r.get("operational") or {}).get("executor"), (r.get("operational") or {}).get("workers"),
                      (r.get("operational") or {}).get("budget")] for r in runs])
    return L + [""]


# -- a small, escaping Markdown -> HTML converter (the subset the card and report sections use) ----------

_INLINE = re.compile(r"`([^`]+)`|\*\*([^*]+)\*\*")
_IMAGE = re.compile(r"^!\[([^\]]*)\]\(([^)\s]+)\)$")


def _inline(text: str) -> str:
    out, pos = [], 0
    for m in _INLINE.finditer(text):
        out.append(html.escape(text[pos:m.start()]))
        if m.group(1) is not None:
            out.append(f"<code>{html.escape(m.group(1))}</code>")
        else:
            out.append(f"<strong>{html.escape(m.group(2))}</strong>")
        pos = m.end()
    out.append(html.escape(text[pos:]))
    return "".join(out)


def _split_row(line: str) -> list[str]:
    cells = re.split(r"(?<!\\)\|", line.strip().strip("|"))
    return [c.strip().replace("\\|", "|") for c in cells]


def markdown_to_html(md: str, title: str) -> str:
    body: list[str] = []
    lines = md.splitlines()
    i = 0
    para: list[str] = []

    def flush() -> None:
        if para:
            body.append("<p>" + _inline(" ".join(para)) + "</p>")
            para.clear()

    while i < len(lines):
        line = lines[i]
        s = line.strip()
        if not s:
            flush()
            i += 1
            continue
        if s.startswith("```"):
            flush()
            j = i + 1
            while j < len(lines) and not lines[j].strip().startswith("```"):
                j += 1
            body.append("<pre>" + html.escape("\n".join(lines[i + 1:j])) + "</pre>")
            i = j + 1
            continue
        m = re.match(r"^(#{1,4})\s+(.*)$", s)
        if m:
            flush()
            n = len(m.group(1))
            body.append(f"<h{n}>{_inline(m.group(2))}</h{n}>")
            i += 1
            continue
        m = _IMAGE.match(s)
        if m:
            flush()
            src = m.group(2)
            if re.match(r"^[A-Za-z0-9_.-]+$", src):  # only files next to the card
                body.append(f'<p><img src="{html.escape(src)}" alt="{html.escape(m.group(1))}"></p>')
            i += 1
            continue
        if s.startswith("|"):
            flush()
            rows = []
            while i < len(lines) and lines[i].strip().startswith("|"):
                rows.append(lines[i])
                i += 1
            header, rest = _split_row(rows[0]), rows[1:]
            if rest and re.match(r"^\|?\s*:?-{3,}", rest[0].strip()):
                rest = rest[1:]
            t = ["<table>", "<thead><tr>" + "".join(f"<th>{_inline(c)}</th>" for c in header) + "</tr></thead>",
                 "<tbody>"]
            t += ["<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in _split_row(r)) + "</tr>" for r in rest]
            body.append("\n".join(t + ["</tbody></table>"]))
            continue
        if re.match(r"^\s*[-*]\s+", line):
            flush()
            items: list[tuple[int, str]] = []
            while i < len(lines) and re.match(r"^\s*[-*]\s+", lines[i]):
                indent = len(lines[i]) - len(lines[i].lstrip())
                items.append((1 if indent >= 2 else 0, re.sub(r"^\s*[-*]\s+", "", lines[i])))
                i += 1
            out = ["<ul>"]
            depth = 0
            for level, text in items:
                while depth < level:
                    out.append("<ul>")
                    depth += 1
                while depth > level:
                    out.append("</ul>")
                    depth -= 1
                out.append(f"<li>{_inline(text)}</li>")
            out += ["</ul>"] * (depth + 1)
            body.append("\n".join(out))
            continue
        para.append(s)
        i += 1
    flush()
    style = ("body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}"
             "table{border-collapse:collapse;margin:.5rem 0}td,th{border:1px solid #bbb;padding:.2rem .5rem;"
             "text-align:left;font-size:.9rem}code{background:#f3f3f3;padding:0 .2rem;word-break:break-all}"
             "img{max-width:100%}")
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{html.escape(title)}</title>\n<style>{style}</style>\n</head>\n<body>\n"
            + "\n".join(body) + "\n</body>\n</html>\n")


def write_model_card(out_dir: Path, store: Store, summary: Mapping[str, Any], front: Sequence[TrialRecord],
                     metric_cols: Sequence[str], plot_name: str | None = "pareto.png",
                     extra_sections: Sequence[str] = ()) -> tuple[Path, Path]:
    from nas_core.safety import confined

    md = card_markdown(store, summary, front, metric_cols, plot_name, extra_sections)
    md_path = confined(out_dir, "model_card.md")
    html_path = confined(out_dir, "model_card.html")
    md_path.write_text(md)
    html_path.write_text(markdown_to_html(md, f"Model card: {summary.get('study')}"))
    return md_path, html_path
