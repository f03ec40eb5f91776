"""The plugin author's guide (docs/writing-a-plugin.md) works as written.

Its example plugin is built from the guide's own code blocks, installed (an entry point in a
``.dist-info`` next to it, made from the guide's ``pyproject.toml``), checked with the conformance
kit, and searched for 3 trials; the guide's SQL query runs on that study's store and its ``nas run``
command is parsed by the real CLI and built into a study. A code block that stops working fails here.

Marker scheme, in the Markdown: an HTML comment on the line right before a fenced code block.

* ``<!-- guide:file PATH -->``: the block is the file PATH of the example project (blocks naming the
  same PATH are joined in document order);
* ``<!-- guide:sql -->``: an SQL query run against the example study's ``study.db``;
* ``<!-- guide:cli -->``: shell lines; every ``nas run ...`` command (``\\`` continues a line) is run
  through ``nas_core.cli.main`` with the study itself replaced by building it.

Blocks without a marker are illustrations and are not run.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import shlex
import sqlite3
import sys
from importlib import metadata
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
GUIDE = REPO / "docs" / "writing-a-plugin.md"
PACKAGE = "nas_activity"
#: the files the guide's example consists of (a file dropped from the guide, or a new one, fails here)
FILES = {"pyproject.toml", "nas_activity/__init__.py", "nas_activity/data.py", "nas_activity/space.py",
         "nas_activity/task.py", "nas_activity/strategy.py", "nas_activity/plugin.py",
         "nas_activity/targets/stm32l031.toml", "tests/test_nas_activity.py"}
SMALL = {"epochs": 1, "n_per_class": 16, "threads": 1}  # tiny training: one epoch on 48 windows

_MARKER = re.compile(r"^<!--\s*guide:(file|sql|cli)(?:\s+(\S+))?\s*-->\s*$")
_FENCE = re.compile(r"^```([\w+-]*)\s*$")


def guide_blocks(text: str) -> list[tuple[str, str | None, str]]:
    """``(kind, path or None, code)`` of every marked block, in document order."""
    lines = text.splitlines()
    out = []
    for i, line in enumerate(lines):
        m = _MARKER.match(line.strip())
        if not m:
            continue
        kind, path = m.groups()
        assert (kind == "file") == (path is not None), f"{GUIDE.name}:{i + 1}: guide:file needs a path, the others none"
        assert i + 1 < len(lines) and _FENCE.match(lines[i + 1]), \
            f"{GUIDE.name}:{i + 1}: the marker {line.strip()} must be followed directly by a fenced code block"
        end = next((j for j in range(i + 2, len(lines)) if lines[j].strip() == "```"), None)
        assert end is not None, f"{GUIDE.name}:{i + 2}: the code block is not closed"
        out.append((kind, path, "\n".join(lines[i + 2:end]) + "\n"))
    return out


def guide_files() -> dict[str, str]:
    files: dict[str, str] = {}
    for kind, path, code in guide_blocks(GUIDE.read_text(encoding="utf-8")):
        if kind == "file":
            files[path] = files.get(path, "") + code
    return files


def guide_snippets(kind: str) -> list[str]:
    return [code for k, _, code in guide_blocks(GUIDE.read_text(encoding="utf-8")) if k == kind]


def _forget_package() -> None:
    for name in [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]:
        del sys.modules[name]


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """The guide's example project written to a directory, importable and 'installed' (entry point)."""
    import tomllib

    import torch

    root = tmp_path_factory.mktemp("guide-plugin")
    files = guide_files()
    for rel, code in files.items():
        dest = root / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(code, encoding="utf-8")
    # what `pip install` would write: a dist-info holding the entry points of the guide's pyproject.toml
    meta = tomllib.loads(files["pyproject.toml"])["project"]
    groups = meta.get("entry-points", {})
    info = root / f"{meta['name'].replace('-', '_')}-{meta['version']}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {meta['name']}\nVersion: {meta['version']}\n")
    (info / "entry_points.txt").write_text("".join(
        f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()) + "\n" for group, eps in groups.items()))
    threads = torch.get_num_threads()
    _forget_package()
    sys.path.insert(0, str(root))
    importlib.invalidate_caches()
    try:
        yield root
    finally:
        sys.path.remove(str(root))
        _forget_package()
        importlib.invalidate_caches()
        torch.set_num_threads(threads)  # the example's threads=1 option must not leak into other tests


@pytest.fixture(scope="module")
def plugin(project):
    return importlib.import_module(f"{PACKAGE}.plugin").plugin()


def test_the_guide_marks_every_file_of_the_example():
    files = guide_files()
    assert set(files) == FILES
    assert all(code.strip() for code in files.values())
    assert len(guide_snippets("sql")) == 1 and guide_snippets("cli")


def test_the_entry_point_is_discovered_like_an_installed_package(project):
    from nas_core.plugins import ENTRY_POINT_GROUP, Registry

    eps = [ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP) if ep.name == "activity"]
    assert [ep.value for ep in eps] == ["nas_activity.plugin:plugin"]
    reg = Registry()  # real discovery, as `nas run` does it
    assert "activity" not in reg.broken(), reg.broken().get("activity")
    assert "entry point nas_activity.plugin:plugin" in reg.origin("activity")
    listing = reg.listing()["activity"]
    assert listing["spaces"] == ["cnn1d"] and listing["targets"] == ["stm32l031"]
    assert listing["strategies"] == ["hill-climb"]


def test_check_plugin_passes_on_the_guides_plugin(plugin):
    from nas_core.testing import check_plugin

    check_plugin(plugin, proxies=False)


def test_check_strategy_passes_on_the_guides_strategy(plugin):
    from nas_core.testing import check_strategy

    check_strategy(plugin.strategies["hill-climb"])


def test_the_guides_own_plugin_tests_pass(project):
    spec = importlib.util.spec_from_file_location("guide_test_nas_activity", project / "tests" / "test_nas_activity.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    tests = [getattr(module, n) for n in sorted(vars(module)) if n.startswith("test_")]
    assert tests
    for test in tests:
        test()


def test_a_three_trial_search_and_the_guides_sql_query(plugin, tmp_path):
    from nas_core.plugins import Registry
    from nas_core.store import Store, TrialState
    from nas_core.study import StudyConfig, run_study

    config = StudyConfig(space="activity/cnn1d", target="activity/stm32l031", strategy="activity/hill-climb",
                         budget=3, seed=0, task_options=SMALL)
    summary = run_study(config, tmp_path, registry=Registry([plugin], discover=False))
    assert (summary.complete, summary.failed) == (3, 0), summary
    with Store.open(tmp_path / "study.db") as store:
        done = store.trials([TrialState.COMPLETE])
        provenance = store.provenance
    assert len(done) == 3
    for t in done:  # hardware costs, domain metrics and the trainer's metrics, per trial
        assert {"macs", "peak_act_bytes", "latency_ms", "energy_uj", "receptive_field_s", "duty_cycle",
                "battery_days"} <= set(t.costs)
        assert {"val_macro_f1", "val_accuracy", "val_walk_f1"} <= set(t.metrics)
    assert list(provenance["data_checksums"]) == ["synthetic/activity-n16"]
    assert provenance["task"]["describe"]["task"] == "activity"

    (query,) = guide_snippets("sql")
    rows = sqlite3.connect(tmp_path / "study.db").execute(query).fetchall()
    assert len(rows) == 3
    assert all(None not in row for row in rows)
    assert sorted(r[0] for r in rows) == sorted(t.number for t in done)


def test_the_guides_nas_run_command_builds_a_valid_study(project, monkeypatch):
    """Each ``nas run`` line of the guide goes through the real CLI; the study is built (space, task options,
    target, strategy, objectives, constraints all checked) but not run."""
    import nas_core.report
    import nas_core.study
    from nas_core import cli
    from nas_core.study import StudySummary, build

    built = []

    def fake_run_study(config, out_dir, *, registry=None, progress=None):
        built.append(build(config, registry))
        return StudySummary(Path(out_dir), 0, 0, 0, config.budget)

    monkeypatch.setattr(nas_core.study, "run_study", fake_run_study)
    monkeypatch.setattr(nas_core.report, "make_report", lambda out: None)
    commands = []
    for snippet in guide_snippets("cli"):
        text = re.sub(r"\\\n\s*", " ", snippet)
        commands += [shlex.split(line, comments=True) for line in text.splitlines() if line.strip().startswith("nas run")]
    assert commands
    for argv in commands:
        assert cli.main(argv[1:] + ["--quiet"]) == 0, " ".join(argv)
        b = built[-1]
        assert b.space_key == "activity/cnn1d" and b.target is not None
        if "--min-battery-days" in argv:  # an unknown flag became a task option
            assert "min_battery_days" in b.config.task_options
    assert len(built) == len(commands)


def test_a_target_of_another_plugin_is_refused_before_the_study_starts(plugin):
    from nas_core.errors import ConfigError
    from nas_core.examples.digits import plugin as digits_plugin
    from nas_core.plugins import Registry
    from nas_core.study import StudyConfig, build

    reg = Registry([plugin, digits_plugin()], discover=False)
    with pytest.raises(ConfigError, match="lacks extra.accel_current_a"):
        build(StudyConfig(space="activity/cnn1d", target="digits/cortex-m4"), reg)


def test_the_export_hooks_return_what_export_expects(plugin):
    import numpy as np

    entry = plugin.spaces["cnn1d"]
    space = entry.space()
    task = entry.task(space, n_per_class=8)
    arch = space.sample(np.random.default_rng(0))
    x, y = task.validation_data(arch)
    cal = task.calibration_data(arch)
    assert x.shape[1:] == task.input_shape(arch) and cal.shape[1:] == task.input_shape(arch)
    assert y.shape == (len(x),) and np.issubdtype(y.dtype, np.integer) and set(y) <= set(range(task.n_outputs))
