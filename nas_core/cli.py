"""Command line: ``nas plugins | run | resume | report | export`` (also ``python -m nas_core``).

Errors caused by the input print one line (``error: ...``) naming the offending
option and value, and exit with status 2; ``--verbose`` adds the traceback.
Options override the values of a YAML config file given with ``--config`` (read
with a safe loader; option values given as ``key=value`` are parsed as YAML
scalars with the same safe loader).

The progress bar (stderr) shows the trials running, the epoch of an in-process
trial and the best value so far; ``--quiet`` leaves only the final summary line
of ``run`` and ``resume``; ``--verbose`` adds the library's log (one line per
trial) and tracebacks.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, NoReturn, Sequence

from nas_core.errors import ConfigError, NasError

if TYPE_CHECKING:
    from nas_core.study import Progress as _ProgressBase  # checked against the study's callbacks
else:
    _ProgressBase = object  # nas_core.study imports torch: not at start-up

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, no usage dump
        raise ConfigError(f"{self.prog}: {message}")


class _Help(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Help with the defaults of options that have one (not ``None``/``False``) and epilogs kept as written."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default in (None, False) or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("nas-core")
    except PackageNotFoundError:  # run from a source tree that is not installed
        return "unknown (not installed)"


def _value(text: str, what: str) -> Any:
    """An option value as a YAML scalar (``3`` -> 3, ``true`` -> True, ``[1, 2]`` -> list), safely."""
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        first = (str(exc).strip().splitlines() or ["parse error"])[0]
        raise ConfigError(f"{what}: value {text!r} is not valid YAML ({first})") from None


def _kv(items: Sequence[str] | None, what: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"{what} {item!r} must look like key=value")
        k, v = item.split("=", 1)
        if not k.strip():
            raise ConfigError(f"{what} {item!r} has an empty key; it must look like key=value")
        out[k.strip()] = _value(v, f"{what} {k.strip()}")
    return out


#: largest config or space file read (bytes): a real space definition is a few kB
MAX_INPUT_BYTES = 1 << 20


def _read_text(p: Path, what: str) -> str:
    if not p.is_file():
        raise ConfigError(f"{what} {p} does not exist")
    try:
        size = p.stat().st_size
        if size > MAX_INPUT_BYTES:
            raise ConfigError(f"{what} {p} is {size:,} bytes; files over {MAX_INPUT_BYTES:,} bytes are refused "
                              "(a space definition is a few kB)")
        return p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{what} {p} is not a UTF-8 text file") from None
    except OSError as exc:
        raise ConfigError(f"{what} {p} cannot be read ({exc.strerror or exc})") from None


def _read_yaml(path: str, what: str = "config file") -> dict[str, Any]:
    import yaml

    p = Path(path)
    text = _read_text(p, what)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{what} {p} is not valid YAML: {str(exc).splitlines()[0]}") from None
    except (ValueError, RecursionError) as exc:  # e.g. an integer of more digits than Python converts
        raise ConfigError(f"{what} {p} holds a value that cannot be read ({type(exc).__name__}: "
                          f"{str(exc)[:120]})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{what} {p} must hold a mapping of options, got {type(data).__name__}")
    return data


def _read_definition(path: str) -> dict[str, Any]:
    import json

    p = Path(path)
    if p.suffix == ".json":
        text = _read_text(p, "space file")
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as exc:  # JSONDecodeError, or an integer too long to convert
            raise ConfigError(f"space file {p} is not valid JSON: {str(exc)[:200]}") from None
    else:
        data = _read_yaml(path, "space file")
    if not isinstance(data, dict):
        raise ConfigError(f"space file {p} must hold a space definition object")
    return data


class _Bar(_ProgressBase):
    """tqdm progress (stderr) with ETA, the running trials, the epoch of an in-process trial and the best value
    so far (disabled with --quiet; --verbose log lines come from the library's loggers)."""

    def __init__(self, quiet: bool, verbose: bool):
        self.quiet, self.verbose = quiet, verbose
        self.bar: Any = None  # a tqdm bar once started
        self.running: list[int] = []
        self.epoch: dict[int, str] = {}  # trial -> "epoch 2/6" (in-process trials only)
        self.best: str | None = None
        self._redirect: Any = None  # tqdm's logging redirection while the bar is shown (--verbose)

    def start(self, total: int, done: int) -> None:
        if self.quiet:
            return
        from tqdm import tqdm

        from nas_core.estimators.base import set_epoch_listener

        self.bar = tqdm(total=total, initial=done, unit="trial", dynamic_ncols=True, file=sys.stderr,
                        desc="search", mininterval=0.5)
        set_epoch_listener(self._epoch)
        if self.verbose:  # log lines above the bar, not through it
            from tqdm.contrib.logging import logging_redirect_tqdm

            self._redirect = logging_redirect_tqdm()
            self._redirect.__enter__()

    def _show(self, refresh: bool = False) -> None:
        if self.bar is None:
            return
        parts = [f"trial {n}" + (f" {self.epoch[n]}" if n in self.epoch else "") for n in self.running[:4]]
        if len(self.running) > 4:
            parts.append(f"+{len(self.running) - 4} running")
        if self.best:
            parts.append(f"best {self.best}")
        self.bar.set_postfix_str(", ".join(parts), refresh=refresh)

    def _epoch(self, trial: int, epoch: int, epochs: int, stage: str) -> None:
        self.epoch[trial] = (f"{stage} " if stage else "") + f"epoch {epoch}/{epochs}"
        self._show(refresh=True)

    def submitted(self, number: int) -> None:
        if number not in self.running:
            self.running.append(number)
        self._show()

    def trial(self, record: Any, best: str | None) -> None:
        if record.number in self.running:
            self.running.remove(record.number)
        self.epoch.pop(record.number, None)
        self.best = best or self.best
        if self.bar is not None:
            self.bar.update(1)
            self._show()

    def close(self) -> None:
        if self.bar is not None:
            from nas_core.estimators.base import set_epoch_listener

            set_epoch_listener(None)
            if self._redirect is not None:
                self._redirect.__exit__(None, None, None)
                self._redirect = None
            self.bar.close()
            self.bar = None


def _cmd_plugins(args: argparse.Namespace) -> int:
    from nas_core.plugins import Registry
    from nas_core.strategies import CORE_STRATEGIES

    reg = Registry()
    listing = reg.listing()
    print(f"core strategies: {', '.join(sorted(CORE_STRATEGIES))}")
    for name, info in listing.items():
        print(f"{name} {info['version'][0]}  ({reg.origin(name)})")
        for kind in ("spaces", "targets", "strategies"):
            if info[kind]:
                print(f"  {kind}: {', '.join(f'{name}/{k}' for k in info[kind])}")
    for name, why in reg.broken().items():
        print(f"{name}  FAILED TO LOAD: {why}")
    if not listing:
        print("no plugins installed")
    return 0


def _finish(summary: Any, out: Path, quiet: bool) -> int:
    """Write the report and print the summary line (with ``--quiet`` too: it is the one line a script reads)."""
    from nas_core.report import make_report

    report = make_report(out) or {}
    print(f"{summary.complete} complete, {summary.failed} failed, {summary.rejected} rejected "
          f"(budget {summary.budget}); store {out / 'study.db'}; report {out / 'report.md'}, "
          f"plots {', '.join(report.get('plots') or ['pareto.png'])} in {out}; model card {out / 'model_card.md'}"
          + (f"; training logs {out / 'logs'}" if (out / "logs").is_dir() else ""))
    if summary.complete == 0 and summary.failed > 0:
        print(f"error: every evaluated trial failed ({summary.failed}); see the errors in {out / 'report.md'}",
              file=sys.stderr)
        return 4
    if summary.stopped_early:
        print(f"stopped early: {summary.stopped_early}", file=sys.stderr)
        return 0 if "wall-time budget" in summary.stopped_early else 3
    return 0


_RUN_OPTIONS = {
    "strategy": "strategy", "budget": "budget", "seed": "seed", "target": "target", "executor": "executor",
    "workers": "workers", "time_limit": "time_limit_s", "max_time": "max_time_s", "name": "name",
    "address": "ray_address", "max_retries": "max_retries", "retry_on": "retry_on", "estimator": "estimator",
}


def _retry_on(text: str) -> list[str]:
    return [k.strip() for k in text.split(",") if k.strip()]


def _task_flags(extra: Sequence[str]) -> dict[str, Any]:
    """``--battery-days 7 --band monitoring`` -> task options ``battery_days=7, band='monitoring'``."""
    out: dict[str, Any] = {}
    i = 0
    while i < len(extra):
        flag = extra[i]
        if not flag.startswith("--") or len(flag) < 3:
            raise ConfigError(f"nas run: unexpected argument {flag!r}")
        key = flag[2:]
        if "=" in key:
            key, value = key.split("=", 1)
            i += 1
        elif i + 1 < len(extra) and not extra[i + 1].startswith("--"):
            value = extra[i + 1]
            i += 2
        else:
            raise ConfigError(f"nas run: option {flag} needs a value")
        out[key.replace("-", "_")] = _value(value, f"nas run: option {flag}")
    return out


def _cmd_run(args: argparse.Namespace) -> int:
    from nas_core.study import StudyConfig, run_study

    cfg: dict[str, Any] = _read_yaml(args.config) if args.config else {}
    out = args.out if args.out is not None else cfg.pop("out", None)
    cfg.pop("out", None)
    if out is not None and (not isinstance(out, str) or not out.strip() or "\x00" in out):
        raise ConfigError(f"out must be a directory path, got {out!r}")
    if args.space:
        cfg["space"] = args.space
    for opt, key in _RUN_OPTIONS.items():
        v = getattr(args, opt)
        if v is not None:
            cfg[key] = _retry_on(v) if opt == "retry_on" else v
    if args.objective:
        cfg["objectives"] = list(args.objective)
    if args.constraint:
        cfg["constraints"] = list(cfg.get("constraints", [])) + list(args.constraint)
    task_flags = _task_flags(args.extra)
    if args.option or task_flags:
        if not isinstance(cfg.get("task_options", {}), dict):
            raise ConfigError(f"task_options in {args.config} must be a mapping of option: value, got "
                              f"{type(cfg['task_options']).__name__}")
        cfg["task_options"] = {**cfg.get("task_options", {}), **_kv(args.option, "--option"), **task_flags}
    if args.strategy_option:
        cfg["strategy_options"] = {**cfg.get("strategy_options", {}), **_kv(args.strategy_option, "--strategy-option")}
    if args.fidelity:
        cfg["fidelity"] = {**cfg.get("fidelity", {}), **_kv(args.fidelity, "--fidelity")}
    if args.space_file:
        cfg["restrict"] = _read_definition(args.space_file)
    if "space" not in cfg:
        raise ConfigError("nas run: give a space (e.g. 'nas run digits/cnn') or 'space:' in the --config file")
    config = StudyConfig.from_dict(cfg)
    out_dir = Path(out) if out else Path("runs") / (f"{config.space.replace('/', '-')}-"
                                                    f"{config.strategy.replace('/', '-')}-seed{config.seed}")
    bar = _Bar(args.quiet, args.verbose)
    summary = run_study(config, out_dir, progress=bar)
    return _finish(summary, out_dir, args.quiet)


def _cmd_resume(args: argparse.Namespace) -> int:
    from nas_core.study import resume_study

    ops: dict[str, Any] = {}
    if args.workers is not None:
        ops["workers"] = args.workers
    if args.executor is not None:
        ops["executor"] = args.executor
    if args.time_limit is not None:
        ops["time_limit_s"] = args.time_limit
    if args.max_time is not None:
        ops["max_time_s"] = args.max_time
    if args.address is not None:
        ops["ray_address"] = args.address
    if args.max_retries is not None:
        ops["max_retries"] = args.max_retries
    if args.retry_on is not None:
        ops["retry_on"] = _retry_on(args.retry_on)
    bar = _Bar(args.quiet, args.verbose)
    summary = resume_study(args.dir, budget=args.budget, progress=bar, code_options=_kv(args.option, "--option"),
                           **ops)
    return _finish(summary, Path(args.dir), args.quiet)


def _cmd_report(args: argparse.Namespace) -> int:
    from nas_core.report import make_report

    out = Path(args.dir)
    summary = make_report(out)
    if not args.quiet:
        print((out / "report.md").read_text())
        print(f"wrote {out / 'report.md'}, {out / 'report.json'}, {out / 'model_card.md'}, "
              f"{out / 'model_card.html'} and the plots {', '.join(summary['plots'])} in {out}; "
              f"{len(summary['pareto'])} Pareto models")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from nas_core.export import export_trial

    res = export_trial(args.dir, args.trial, args.format, quantize=args.quantize,
                       code_options=_kv(args.option, "--option"), min_agreement=args.min_agreement)
    if res.tflite is not None:
        if not args.quiet:
            _print_tflite(res.path, res.tflite)
        return 0
    if not args.quiet:
        print(f"wrote {res.path} ({res.fmt}); max |difference| to PyTorch on {res.n_checked} random inputs: "
              f"{res.max_abs_diff:.2e}; provenance {res.sidecar}")
        if res.accuracy is not None:
            print(f"accuracy on the task's validation data: PyTorch {res.accuracy['pytorch']:.4f}, "
                  f"exported {res.accuracy['exported']:.4f}")
        elif res.quantization is None:
            print("accuracy of the exported model: not measured (add --quantize int8 to measure it on the task's "
                  "validation data)")
        q = res.quantization
        if q is not None:
            where = (f"{q['max_abs_diff_validation']:.3g} on validation inputs, "
                     if q.get("max_abs_diff_validation") is not None else "")
            print(f"wrote {q['path']} (int8, {q['method']} quantization; {q['size_bytes']} bytes vs "
                  f"{q['fp32_size_bytes']} fp32); max |difference| to PyTorch: {where}"
                  f"{q['max_abs_diff']:.3g} on random inputs")
            if q.get("accuracy_change") is not None:
                print(f"int8 accuracy {q['accuracy_int8']:.4f} vs fp32 {q['accuracy_fp32']:.4f}: change "
                      f"{q['accuracy_change']:+.4f} on {q['n_validation']} validation samples")
            else:
                print(f"int8 accuracy change: not measured ({q['accuracy_note']})")
    return 0


def _print_tflite(path: Path, t: Mapping[str, Any]) -> None:
    c = t["check"]
    print(f"wrote {path} (full-integer int8 TFLite, {t['size_bytes']} bytes vs {t['float_size_bytes']} float); "
          f"TFLM arena {t['arena_bytes']} bytes; operators: {', '.join(t['ops'])}")
    agree = f"class agreement {c['agreement']:.2%} (>= {c['min_agreement']:.0%}), " if c["agreement"] is not None \
        else "class agreement: not applicable (outputs are not class scores), "
    print(f"TFLM int8 vs PyTorch fp32 on {c['n']} {c['inputs']} inputs: {agree}max |logit difference| "
          f"{c['max_abs_diff']:.3g}")
    if c.get("accuracy_fp32") is not None:
        print(f"int8 accuracy {c['accuracy_int8']:.4f} vs fp32 {c['accuracy_fp32']:.4f} ({c['accuracy_change']:+.4f}); "
              f"macro-F1 {c['macro_f1_int8']:.4f} vs {c['macro_f1_fp32']:.4f} ({c['macro_f1_change']:+.4f})")
    print(f"firmware bundle {t['bundle']} (model_data.h/.cc, model_ops.h, README.md); provenance {path}.json")


#: examples shown under each command's --help
_EXAMPLES = {
    "nas": """examples:
  nas plugins
  nas run digits/cnn --budget 8 --option epochs=2 --out runs/digits
  nas report runs/digits
  nas export runs/digits --trial 3 --format onnx
  python -m nas_core --version""",
    "plugins": """examples:
  nas plugins""",
    "run": """examples:
  nas run digits/cnn --budget 8 --option epochs=2 --out runs/digits
  nas run digits/cnn --strategy nsga2 --target digits/cortex-m4 --objective val_accuracy:max \\
      --objective energy_uj:min --constraint "params<=20000" --out runs/digits-nsga2
  nas run digits/cnn --option accelerator=cpu --executor process --workers 2 --quiet
  nas run ecg/efficient-cnn --target nrf52840 --battery-days 14 --data-dir DIR --out runs/ecg
other --flags become task options (--battery-days 7 is --option battery_days=7).""",
    "resume": """examples:
  nas resume runs/digits
  nas resume runs/digits --budget 40 --executor process --workers 2""",
    "report": """examples:
  nas report runs/digits
  nas report runs/digits --quiet   # write the files, print nothing""",
    "export": """examples:
  nas export runs/digits --trial 3
  nas export runs/digits --trial 3 --format onnx --quantize int8
  nas export runs/ecg --trial 5 --format tflite""",
}


def _parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)  # only a parent: its options are copied into the parsers below
    common.add_argument("-q", "--quiet", action="store_true", help="no progress bar; run and resume print only "
                        "their final summary line, report and export print nothing")
    common.add_argument("-v", "--verbose", action="store_true", help="log lines (one per trial), tracebacks on errors")
    p = _Parser(prog="nas", description="Hardware-aware neural architecture search", parents=[common],
                formatter_class=_Help, epilog=_EXAMPLES["nas"])
    p.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = p.add_subparsers(dest="command", parser_class=_Parser)
    sub.required = True

    def command(name: str, text: str) -> _Parser:
        parser: _Parser = sub.add_parser(name, parents=[common], help=text, description=text, formatter_class=_Help,
                                         epilog=_EXAMPLES[name])
        return parser

    command("plugins", "list installed plugins, spaces, targets, strategies")
    r = command("run", "run a search: nas run PLUGIN/SPACE ... (other --flags become task options, e.g. "
                "--battery-days 7)")
    r.add_argument("space", nargs="?", help="search space, e.g. digits/cnn")
    r.add_argument("--config", help="YAML file with study options (options given here override it)")
    r.add_argument("--space-file", help="JSON/YAML space definition narrowing the plugin's space")
    r.add_argument("--strategy", help="strategy name (nas plugins lists them), e.g. evolution, nsga2, bayesopt "
                   "(default: evolution)")
    r.add_argument("--budget", type=int, help="number of trials to evaluate (default: 20)")
    r.add_argument("--seed", type=int, help="study seed (default: 0)")
    r.add_argument("--target", help="hardware target, e.g. digits/cortex-m4")
    r.add_argument("--out", help="study directory (default: runs/SPACE-STRATEGY-seedN)")
    r.add_argument("--objective", action="append", help="metric:max or metric:min (repeatable; default: the "
                   "task's)")
    r.add_argument("--constraint", action="append", help="hard constraint such as params<=20000 (repeatable)")
    r.add_argument("--option", action="append", help="task option key=value, e.g. epochs=5, accelerator=cpu "
                   "(repeatable)")
    r.add_argument("--strategy-option", action="append", help="strategy option key=value (repeatable)")
    r.add_argument("--fidelity", action="append", help="fidelity key=value, e.g. epochs=2 (repeatable)")
    r.add_argument("--executor", choices=["inprocess", "process", "ray"],
                   help="inprocess | process (worker processes) | ray (Ray actors) (default: inprocess)")
    r.add_argument("--workers", type=int, help="parallel workers (process/ray executors) (default: 1)")
    r.add_argument("--address", help="existing Ray cluster (auto, HOST:6379 or ray://HOST:10001); default: local Ray")
    r.add_argument("--estimator", help="train or zero-cost[:PROXY,...]: score candidates with zero-cost "
                   "proxies (synflow, snip, grad_norm, fisher, jacob_cov, naswot, params, macs) instead of training "
                   "(default: train)")
    r.add_argument("--max-retries", dest="max_retries", type=int,
                   help="re-runs of a trial whose worker died or timed out (default 1)")
    r.add_argument("--retry-on", dest="retry_on", help="failure kinds retried, comma-separated: died,timeout,error (default: died,timeout)")
    r.add_argument("--time-limit", dest="time_limit", type=float, help="per-trial time limit in seconds")
    r.add_argument("--max-time", dest="max_time", type=float, help="wall-time budget in seconds for this run")
    r.add_argument("--name", help="study name")
    rs = command("resume", "continue a killed or finished study")
    rs.add_argument("dir")
    rs.add_argument("--budget", type=int, help="new total budget (default: the original)")
    rs.add_argument("--executor", choices=["inprocess", "process", "ray"])
    rs.add_argument("--workers", type=int)
    rs.add_argument("--address", help="existing Ray cluster (with --executor ray)")
    rs.add_argument("--max-retries", dest="max_retries", type=int)
    rs.add_argument("--retry-on", dest="retry_on")
    rs.add_argument("--time-limit", dest="time_limit", type=float)
    rs.add_argument("--max-time", dest="max_time", type=float, help="wall-time budget in seconds for this run")
    rs.add_argument("--option", action="append", help="re-state a stored task option that names code "
                    "(module:attribute); a store alone never makes nas import code")
    rp = command("report", "Pareto table, plots and JSON summary of a study")
    rp.add_argument("dir")
    ex = command("export", "export a trained trial to ONNX, TorchScript or int8 TFLite for TFLite Micro (checked)")
    ex.add_argument("dir")
    ex.add_argument("--trial", type=int, required=True)
    ex.add_argument("--format", choices=["onnx", "torchscript", "tflite"], default="onnx",
                    help="tflite: full-integer int8, run in TFLite Micro, plus a firmware bundle (extra 'mcu')")
    ex.add_argument("--min-agreement", dest="min_agreement", type=float,
                    help="least class agreement of the TFLite model with PyTorch (default 0.99)")
    ex.add_argument("--option", action="append", help="re-state a stored task option that names code "
                    "(module:attribute)")
    ex.add_argument("--quantize", choices=["int8"], help="also write an int8 post-training-quantized ONNX model and "
                    "measure its accuracy change on the task's validation data")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = "-v" in argv or "--verbose" in argv
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        parser = _parser()
        args, extra = parser.parse_known_args(argv)
        if extra and args.command != "run":
            raise ConfigError(f"nas {args.command}: unrecognized arguments: {' '.join(extra)}")
        args.extra = extra
        handler = {"plugins": _cmd_plugins, "run": _cmd_run, "resume": _cmd_resume, "report": _cmd_report,
                   "export": _cmd_export}
        return handler[args.command](args)
    except NasError as exc:
        if verbose:
            import traceback

            traceback.print_exc()
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted; continue with 'nas resume DIR'", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
