"""Small defects a plugin author meets: each one a clear error line, never a traceback or a stuck trial."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import toy
from nas_core.errors import ConfigError
from nas_core.hardware.target import HardwareTarget
from nas_core.plugins import Plugin, Registry, SpaceEntry
from nas_core.store import Store
from nas_core.study import StudyConfig, run_study


class BuggyTask(toy.ToyTask):
    def rejections(self, arch, static, target=None):
        return ["too wide"] if static["wingspan"] > 1 else []


class NeedsKeyTask(toy.ToyTask):
    target_keys = {"sensor_power_w": "sensor front-end power in W"}


def _target(**extra):
    return HardwareTarget(name="m0", description="m0", clock_hz=48e6, sram_bytes=32768, flash_bytes=262144,
                          cycles_per_mac=2.0, sources=("datasheet",), extra=extra)


def reg():
    p = Plugin(name="dev", version="1", spaces={"buggy": SpaceEntry(toy.SafeToySpace, BuggyTask),
                                                "needs": SpaceEntry(toy.SafeToySpace, NeedsKeyTask)},
               targets={"bare": lambda: _target(), "full": lambda: _target(sensor_power_w=1e-4)})
    return Registry([toy.toy_plugin(), p], discover=False)


def test_a_bug_in_rejections_is_one_error_naming_the_hook_and_leaves_no_stuck_trial(tmp_path):
    with pytest.raises(ConfigError, match=r"BuggyTask\) raised KeyError in rejections\(\).*'wingspan'.*fix the "
                                          r"plugin"):
        run_study(StudyConfig(space="dev/buggy", budget=2, objectives=("score:max",)), tmp_path, registry=reg())
    with Store.open(tmp_path / "study.db") as st:
        assert st.trials() == []  # nothing half-started


def test_a_target_without_a_key_the_task_needs_is_refused_before_the_study(tmp_path):
    with pytest.raises(ConfigError, match=r"target 'dev/bare' lacks extra.sensor_power_w \(sensor front-end power"):
        run_study(StudyConfig(space="dev/needs", budget=1, objectives=("score:max",), target="dev/bare"),
                  tmp_path / "a", registry=reg())
    assert not (tmp_path / "a" / "study.db").exists()
    run_study(StudyConfig(space="dev/needs", budget=1, objectives=("score:max",), target="dev/full"),
              tmp_path / "b", registry=reg())


def test_target_given_as_a_toml_file(tmp_path):
    from nas_core.hardware.target import builtin_target_names, load_builtin_target

    src = load_builtin_target(builtin_target_names()[0])
    path = tmp_path / "board.toml"
    path.write_text("\n".join([f'name = "board"', 'description = "my board"', f"clock_hz = {src.clock_hz}",
                               f"sram_bytes = {src.sram_bytes}", f"flash_bytes = {src.flash_bytes}",
                               f"cycles_per_mac = {src.cycles_per_mac}", 'sources = ["my datasheet"]']) + "\n")
    key, target = reg().target(str(path))
    assert key == f"file:{path.resolve()}" and target.name == "board"
    with pytest.raises(ConfigError, match="target file .*nope.toml does not exist"):
        reg().target(str(tmp_path / "nope.toml"))


def test_a_plugin_that_fails_to_import_names_its_own_file_and_line(tmp_path):
    site = tmp_path / "site"
    (site / "broken_plugin").mkdir(parents=True)
    (site / "broken_plugin" / "__init__.py").write_text("import math\n\ndef make():\n    return 1\n\nx = 1 / 0\n")
    dist = site / "broken_plugin-1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 1\n")
    (dist / "entry_points.txt").write_text("[nas_core.plugins]\nbroken = broken_plugin:make\n")
    r = subprocess.run([sys.executable, "-m", "nas_core.cli", "plugins"], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])},
                       timeout=120)
    assert "ZeroDivisionError" in r.stdout + r.stderr
    assert f"{site / 'broken_plugin' / '__init__.py'}:6" in r.stdout + r.stderr


def test_targets_are_found_by_scanning_the_plugins_targets_folder(tmp_path):
    from nas_core.hardware.target import builtin_target_names, load_builtin_target

    src = load_builtin_target(builtin_target_names()[0])
    folder = tmp_path / "targets"
    folder.mkdir()
    (folder / "m0plus.toml").write_text("\n".join([
        'name = "m0plus"', 'description = "board"', f"clock_hz = {src.clock_hz}", f"sram_bytes = {src.sram_bytes}",
        f"flash_bytes = {src.flash_bytes}", f"cycles_per_mac = {src.cycles_per_mac}", 'sources = ["ds"]']) + "\n")
    p = Plugin(name="scan", version="1", spaces={"s": SpaceEntry(toy.SafeToySpace, toy.ToyTask)},
               targets_dir=str(folder))
    key, target = Registry([p], discover=False).target("scan/m0plus")
    assert key == "scan/m0plus" and target.name == "m0plus"
    twice = Plugin(name="twice", version="1", spaces={"s": SpaceEntry(toy.SafeToySpace, toy.ToyTask)},
                   targets={"m0plus": lambda: _target()}, targets_dir=str(folder))
    with pytest.raises(ConfigError, match=r"target 'm0plus' is given twice, by targets\['m0plus'\] and by the file"):
        Registry([twice], discover=False)
    assert sorted(Registry().plugins()["ecg"].targets) == ["apollo4", "max78000", "nrf52840", "stm32l4"]


def test_mixed_op_support_registered_twice_is_an_error_naming_both():
    from nas_core.oneshot.mixed import register_mixed_support

    class S(toy.SafeToySpace):
        pass

    def first(space, **kw):
        raise AssertionError

    def second(space, **kw):
        raise AssertionError

    register_mixed_support(S, first)
    register_mixed_support(S, first)  # the same factory again is harmless
    with pytest.raises(ConfigError, match=r"already has mixed-op support from .*first.*second would replace it"):
        register_mixed_support(S, second)


class TwoArchSpace(toy.SafeToySpace):
    """Two architectures only: any strategy soon runs out of new ones."""

    def __init__(self):
        from nas_core.space import Categorical, Integer, Repeat, SearchSpace

        SearchSpace.__init__(self, "two", [Repeat("layers", [Integer("width", 4, 4), Categorical("act", ["relu"])],
                                                  1, 1), Categorical("mode", ["ok", "ok2"])])


def test_a_strategy_fallback_is_a_warning_a_stored_count_and_a_report_line(tmp_path):
    import json

    from nas_core.report import make_report
    from nas_core.strategies import LocalSearch
    from nas_core.strategies.base import Objective, StrategyFallback

    s = LocalSearch(TwoArchSpace(), [Objective("score", "max")], seed=0, n_initial=4)
    with pytest.warns(StrategyFallback, match="strategy 'local_search'.*already seen"):
        for _ in range(4):
            s.ask()
            s.seen.add(s.space.sample(s.rng).hash)  # whatever was asked, both archs become known
            for mode in ("ok", "ok2"):
                s.seen.add(s.space.validate({"layers": [{"width": 4, "act": "relu"}], "mode": mode}).hash)
    assert s.fallbacks.get("repeat", 0) >= 1
    assert json.loads(json.dumps(s.state_dict()))["fallbacks"] == s.fallbacks

    p = Plugin(name="two", version="1", spaces={"s": SpaceEntry(TwoArchSpace, toy.ToyTask)})
    r = Registry([toy.toy_plugin(), p], discover=False)
    with pytest.warns(StrategyFallback):
        run_study(StudyConfig(space="two/s", budget=3, strategy="local_search", objectives=("score:max",),
                              strategy_options={"n_initial": 4}), tmp_path, registry=r)
    make_report(tmp_path)
    report = (tmp_path / "report.md").read_text()
    assert "strategy fallbacks" in report and "repeat" in report
    assert json.loads((tmp_path / "report.json").read_text())["strategy_fallbacks"]["repeat"] >= 1
