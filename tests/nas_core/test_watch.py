"""Issue 15: a search you can watch (quiet output, per-trial logs, progress, help), plots people expect,
the accelerator options, and no print() in library code."""

from __future__ import annotations

import ast
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import toy
from nas_core.errors import ConfigError, TrialFailed
from nas_core.plugins import Registry
from nas_core.report import _hv_reference, _objectives, hypervolume_over_trials, make_report
from nas_core.store import Store, TrialState
from nas_core.study import StudyConfig, run_study

REPO = Path(__file__).resolve().parents[2]
FAST = {"epochs": 1, "data_fraction": 0.3}


def _nas(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    # no PYTHONWARNINGS=ignore: a warning that leaks to the terminal must fail the --quiet test
    return subprocess.run([sys.executable, "-m", "nas_core.cli", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=600)


@pytest.fixture(scope="module")
def quiet_run(tmp_path_factory):
    """One digits/cnn trial of one epoch, run as `nas run ... --quiet`."""
    out = tmp_path_factory.mktemp("quiet") / "study"
    r = _nas("run", "digits/cnn", "--budget", "1", "--option", "epochs=1", "--option", "data_fraction=0.3",
             "--out", str(out), "--quiet")
    return r, out


def test_quiet_run_prints_only_the_final_summary_line(quiet_run):
    r, out = quiet_run
    assert r.returncode == 0, r.stderr
    lines = [line for line in (r.stdout + r.stderr).splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("1 complete, 0 failed, 0 rejected (budget 1)") and str(out) in lines[0]


def test_study_directory_holds_per_trial_csv_logs(quiet_run):
    r, out = quiet_run
    assert r.returncode == 0, r.stderr
    csv = out / "logs" / "trial-00001" / "metrics.csv"
    assert csv.is_file(), sorted(p.relative_to(out).as_posix() for p in out.rglob("*"))
    rows = csv.read_text().splitlines()
    header = rows[0].split(",")
    assert {"epoch", "train_loss", "val_accuracy", "val_macro_f1", "val_loss"} <= set(header)
    assert len(rows) >= 2
    assert not (out / "trials" / "00001" / "logs").exists()  # moved out of the trial's files
    assert (out / "trials" / "00001" / "model.pt").is_file()


def test_progress_sees_running_trial_and_its_epochs(tmp_path):
    from nas_core.estimators.base import set_epoch_listener
    from nas_core.runner import Progress

    events: list[tuple] = []

    class Collect(Progress):
        def submitted(self, number: int) -> None:
            events.append(("submitted", number))

        def trial(self, record, best):
            events.append(("done", record.number))

    set_epoch_listener(lambda trial, epoch, epochs, stage: events.append(("epoch", trial, epoch, epochs, stage)))
    try:
        run_study(StudyConfig(space="digits/cnn", budget=1, task_options={"epochs": 2, "data_fraction": 0.3}),
                  tmp_path, progress=Collect())
    finally:
        set_epoch_listener(None)
    assert events == [("submitted", 1), ("epoch", 1, 1, 2, ""), ("epoch", 1, 2, 2, ""), ("done", 1)]
    assert (tmp_path / "logs" / "trial-00001" / "metrics.csv").is_file()


@pytest.mark.slow
def test_process_executor_writes_the_logs_through_the_job(tmp_path):
    run_study(StudyConfig(space="digits/cnn", budget=1, task_options=FAST, executor="process", workers=1), tmp_path)
    assert (tmp_path / "logs" / "trial-00001" / "metrics.csv").is_file()
    assert not list((tmp_path / "trials" / ".staging").glob("*"))


def test_logs_go_through_the_confinement_helper(tmp_path):
    """A symlinked logs/ that leads out of the study directory is refused, as trials/ is."""
    outside = tmp_path / "outside"
    outside.mkdir()
    study = tmp_path / "study"
    study.mkdir()
    (study / "logs").symlink_to(outside)
    with pytest.raises(ConfigError, match="outside the study directory"):
        run_study(StudyConfig(space="digits/cnn", budget=1, task_options=FAST), study)
    assert not list(outside.iterdir())


def test_version_main_module_and_help_with_defaults_and_examples():
    from importlib.metadata import version

    r = subprocess.run([sys.executable, "-m", "nas_core", "--version"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == f"nas {version('nas-core')}", r.stdout + r.stderr
    r = subprocess.run([sys.executable, "-m", "nas_core", "run", "--help"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    text = " ".join(r.stdout.split())
    cfg = StudyConfig(space="digits/cnn")
    for shown in (f"(default: {cfg.budget})", f"(default: {cfg.strategy})", f"(default: {cfg.seed})",
                  f"(default: {cfg.executor})", f"(default: {cfg.workers})", f"(default: {cfg.estimator})",
                  f"(default: {','.join(cfg.retry_on)})"):
        assert shown in text, shown
    assert "examples: nas run digits/cnn" in text
    for cmd in ("resume", "report", "export", "plugins"):
        r = subprocess.run([sys.executable, "-m", "nas_core", cmd, "--help"], capture_output=True, text=True,
                           timeout=120)
        assert r.returncode == 0 and "examples:" in r.stdout, cmd


# -- plots -------------------------------------------------------------------------------------

def _toy_study(tmp_path: Path, objectives: tuple[str, ...]) -> Path:
    run_study(StudyConfig(space="toy/safe", budget=10, strategy="random", seed=3, objectives=objectives),
              tmp_path, registry=Registry([toy.toy_plugin()], discover=False))
    return tmp_path


def _png(path: Path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_plots_two_objectives(tmp_path):
    out = _toy_study(tmp_path, ("score:max", "params:min"))
    summary = make_report(out)
    for name in ("pareto.png", "best_so_far.png", "hypervolume.png"):
        assert _png(out / name), name
        assert f"]({name})" in (out / "report.md").read_text()
    assert not (out / "pareto_pairs.png").exists()
    assert summary["plots"] == ["pareto.png", "best_so_far.png", "hypervolume.png"]
    with Store.open(out / "study.db") as st:
        complete = st.trials([TrialState.COMPLETE])
        objectives = _objectives(st)
    ref = _hv_reference(complete, objectives)
    assert ref is not None
    xs, hvs = hypervolume_over_trials(complete, objectives, ref)
    assert xs == sorted(t.number for t in complete)
    assert all(b >= a for a, b in zip(hvs, hvs[1:]))  # a front only grows
    assert math.isclose(hvs[-1], summary["hypervolume"], rel_tol=1e-12)


def test_report_plots_three_objectives_pairwise(tmp_path):
    out = _toy_study(tmp_path, ("score:max", "params:min", "macs:min"))
    summary = make_report(out)
    for name in ("pareto.png", "best_so_far.png", "hypervolume.png", "pareto_pairs.png"):
        assert _png(out / name), name
    assert summary["plots"][-1] == "pareto_pairs.png"
    assert "](pareto_pairs.png)" in (out / "report.md").read_text()


def test_report_with_one_objective_draws_best_so_far_only(tmp_path):
    out = _toy_study(tmp_path, ("score:max",))
    assert make_report(out)["plots"] == ["pareto.png", "best_so_far.png"]
    assert _png(out / "best_so_far.png") and not (out / "hypervolume.png").exists()


# -- accelerator / devices ---------------------------------------------------------------------

def _digits_estimator(**options):
    from nas_core.examples.digits import DigitsCNNSpace, DigitsTask

    space = DigitsCNNSpace()
    task = DigitsTask(space, **FAST, **options)
    arch = space.sample(np.random.default_rng(0))
    return task.estimator(), arch, space


@pytest.mark.parametrize("accelerator", ["cpu", "auto"])
def test_accelerator_cpu_and_auto_both_train_here(accelerator):
    import torch

    from nas_core.estimators.base import EvalContext

    est, arch, space = _digits_estimator(accelerator=accelerator, devices="auto" if accelerator == "auto" else 1)
    torch.manual_seed(0)
    model = space.build(arch)
    m = est.evaluate(EvalContext(arch, model, 0))
    assert 0.0 <= m["val_accuracy"] <= 1.0 and m["epochs_run"] == 1.0
    assert all(p.device.type == "cpu" for p in model.parameters())


def test_cpu_and_auto_give_the_same_result_on_a_cpu_machine():
    import torch

    from nas_core.estimators.base import EvalContext

    if torch.cuda.is_available():
        pytest.skip("auto picks the GPU here")
    results = []
    for acc in ("cpu", "auto"):
        est, arch, space = _digits_estimator(accelerator=acc)
        torch.manual_seed(0)
        results.append(est.evaluate(EvalContext(arch, space.build(arch), 0)))
    assert results[0] == results[1]


@pytest.mark.parametrize(("options", "match"), [
    ({"accelerator": "quantum"}, "accelerator must be one of auto, cpu, gpu, cuda, mps, got 'quantum'"),
    ({"devices": 2}, "devices must be 'auto' or 1"),
    ({"devices": "all"}, "devices must be 'auto' or 1"),
])
def test_bad_accelerator_or_devices_is_one_config_error(options, match):
    with pytest.raises(ConfigError, match=match):
        _digits_estimator(**options)


def test_bad_accelerator_on_the_command_line_is_one_line(tmp_path):
    r = _nas("run", "digits/cnn", "--budget", "1", "--option", "accelerator=quantum", "--out", str(tmp_path / "s"))
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "accelerator must be one of" in r.stderr, r.stderr


def test_gpu_asked_where_there_is_none_fails_the_trial_clearly():
    import torch

    from nas_core.estimators.base import EvalContext

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    est, arch, space = _digits_estimator(accelerator="gpu")
    with pytest.raises(TrialFailed, match="accelerator='gpu' cannot be used here"):
        est.evaluate(EvalContext(arch, space.build(arch), 0))


# -- library code logs, it does not print --------------------------------------------------------

def test_no_print_in_library_code():
    """Only the CLI (nas_core/cli.py) and command-line entry points (a module's main()) print."""
    offenders = []
    for root in ("nas_core", "plugins"):
        for path in sorted((REPO / root).rglob("*.py")):
            if path.name == "cli.py" and path.parent.name == "nas_core":
                continue
            tree = ast.parse(path.read_text(encoding="utf-8"))
            mains = {id(n) for f in ast.walk(tree) if isinstance(f, ast.FunctionDef) and f.name == "main"
                     for n in ast.walk(f)}
            for node in ast.walk(tree):
                if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print"
                        and id(node) not in mains):
                    offenders.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert not offenders, offenders
