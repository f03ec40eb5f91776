from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch

import toy
from nas_core.errors import ConfigError
from nas_core.examples.digits import plugin as digits_plugin
from nas_core.plugins import Plugin, Registry, SpaceEntry
from nas_core.testing import check_plugin


def test_registry_qualifies_keys_and_refuses_duplicates():
    reg = Registry([toy.toy_plugin()], discover=False)
    key, entry = reg.space("toy/safe")
    assert key == "toy/safe" and entry.task is toy.ToyTask
    assert reg.space("safe")[0] == "toy/safe"  # unique short name accepted
    with pytest.raises(ConfigError, match="duplicate plugin name 'toy'"):
        reg.register(toy.toy_plugin(), origin="'toy' (second copy)")
    other = Plugin(name="other", spaces={"safe": SpaceEntry(toy.SafeToySpace, toy.ToyTask)})
    reg.register(other)
    with pytest.raises(ConfigError, match="ambiguous: other/safe, toy/safe"):
        reg.space("safe")
    with pytest.raises(ConfigError, match="unknown space 'toy/none'; available"):
        reg.space("toy/none")


@pytest.mark.parametrize("bad, needle", [
    (Plugin(name="Bad Name"), "name 'Bad Name'"),
    (Plugin(name="p", spaces={"s": toy.SafeToySpace}), "must be a SpaceEntry"),
    (Plugin(name="p", targets={"t": 3}), "target 't' is not callable"),
    ("not a plugin", "expected a nas_core.plugins.Plugin"),
])
def test_invalid_plugins_are_rejected_naming_the_plugin(bad, needle):
    with pytest.raises(ConfigError, match=needle):
        Registry([bad], discover=False)


def test_conformance_kit_passes_builtin_and_toy_plugins():
    check_plugin(digits_plugin(), train=True, task_options={"epochs": 1, "data_fraction": 0.2})
    check_plugin(toy.toy_plugin())


class _NaNNet(torch.nn.Module):
    def forward(self, x):
        return x * float("nan")


class _NaNSpace(toy.SafeToySpace):  # module level: the task holds its space and must pickle
    def build(self, arch):
        return _NaNNet()


def test_conformance_kit_catches_a_broken_space():
    Broken = _NaNSpace
    with pytest.raises(AssertionError, match="non-finite or non-tensor output"):
        check_plugin(Plugin(name="broken", spaces={"s": SpaceEntry(Broken, toy.ToyTask)}))


def test_an_installed_external_plugin_is_found_through_its_entry_point(tmp_path):
    pkg = tmp_path / "src"
    (pkg / "nas_plugin_demo").mkdir(parents=True)
    (pkg / "pyproject.toml").write_text(textwrap.dedent("""
        [build-system]
        requires = ["setuptools>=61"]
        build-backend = "setuptools.build_meta"
        [project]
        name = "nas-plugin-demo"
        version = "0.0.1"
        [project.entry-points."nas_core.plugins"]
        demo = "nas_plugin_demo:make"
        [tool.setuptools]
        packages = ["nas_plugin_demo"]
    """))
    (pkg / "nas_plugin_demo" / "__init__.py").write_text(textwrap.dedent("""
        from nas_core.examples.digits import DigitsCNNSpace, DigitsTask
        from nas_core.plugins import Plugin, SpaceEntry

        def make():
            return Plugin(name="demo", version="0.0.1", spaces={"tiny": SpaceEntry(DigitsCNNSpace, DigitsTask)})
    """))
    site = tmp_path / "site"
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                        "--disable-pip-version-check", "--target", str(site), str(pkg)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    env = {**os.environ, "PYTHONPATH": str(site)}
    r = subprocess.run([sys.executable, "-m", "nas_core.cli", "plugins"], capture_output=True, text=True, env=env,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert "demo/tiny" in r.stdout and "entry point nas_plugin_demo:make" in r.stdout
    assert "digits/cnn" in r.stdout
