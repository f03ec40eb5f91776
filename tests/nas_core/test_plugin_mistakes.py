"""The ten mistakes a plugin author makes most, each caught by ``check_plugin`` with a message naming
the plugin, the space or target, and the fix (issue: a core a newcomer extends without reading it)."""

from __future__ import annotations

import threading

import pytest
import torch

from nas_core.estimators.base import EvalContext, Estimator
from nas_core.hardware.target import HardwareTarget
from nas_core.plugins import Plugin, SpaceEntry
from nas_core.space import Categorical, Integer, SearchSpace
from nas_core.strategies.base import Objective
from nas_core.task import Task
from nas_core.testing import check_plugin


class GoodSpace(SearchSpace):
    def __init__(self, when=("conv",)):
        super().__init__("good", [Categorical("op", ["conv", "pool"]),
                                  Integer("width", 4, 16, step=4, when={"op": list(when)}),
                                  Integer("hidden", 8, 32, step=8)])

    def build(self, arch):
        import torch.nn as nn

        first = nn.Conv1d(2, arch["width"], 3, padding=1) if arch["op"] == "conv" else nn.AvgPool1d(1)
        ch = arch["width"] if arch["op"] == "conv" else 2
        return nn.Sequential(first, nn.ReLU(), nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(ch, arch["hidden"]),
                             nn.ReLU(), nn.Linear(arch["hidden"], self.n_out))

    n_out = 3


class GoodEstimator(Estimator):
    metric_names = ("val_accuracy",)

    def evaluate(self, ctx: EvalContext) -> dict[str, float]:
        return {"val_accuracy": 0.5}


class GoodTask(Task):
    name = "good"
    n_outputs = 3
    target_keys = {"sensor_power_w": "power of the sensor front end in W"}

    def input_shape(self, arch):
        return (2, 32)

    def estimator(self):
        return GoodEstimator()


def good_target() -> HardwareTarget:
    return HardwareTarget(name="m0plus", description="a Cortex-M0+ board", clock_hz=48e6, sram_bytes=32768,
                          flash_bytes=262144, cycles_per_mac=2.0, layer_overhead_cycles=500.0,
                          energy_per_cycle_j=1e-10, sources=("datasheet, table 5",),
                          extra={"sensor_power_w": 1e-4})


def plugin(space=GoodSpace, task=GoodTask, target=good_target) -> Plugin:
    return Plugin(name="act", spaces={"cnn": SpaceEntry(space, task)}, targets={"m0plus": target})


def check(p):
    check_plugin(p, n_samples=8, proxies=False)


def test_the_good_plugin_passes():
    check(plugin())


# 1. a declared metric that is never produced
class UnproducedMetricTask(GoodTask):
    def static_metric_names(self, target):
        return super().static_metric_names(target) | {"energy_per_inference_uj"}


# 2. a default objective that names no metric
class UnknownObjectiveTask(GoodTask):
    def default_objectives(self):
        return [Objective("val_acc", "max")]


# 3. build() forgets to return the network
class NoneBuildSpace(GoodSpace):
    def build(self, arch):
        super().build(arch)


# 4. input shape transposed: (length, channels) instead of (channels, length)
class TransposedTask(GoodTask):
    def input_shape(self, arch):
        return (32, 2)


# 5. build() reads a dimension that is absent when its condition does not hold
class AbsentDimSpace(GoodSpace):
    def build(self, arch):
        arch["width"]
        return super().build(arch)


# 6. a misspelt ``when`` value: width is never active
class MisspeltWhenSpace(GoodSpace):
    def __init__(self):
        super().__init__(when=("cnov",))


# 7. the network's output does not match the task's classes
class WrongClassesSpace(GoodSpace):
    n_out = 4


# 8. a bug inside rejections()
class BuggyRejectionsTask(GoodTask):
    def rejections(self, arch, static, target=None):
        return ["too wide"] if static["width"] > 8 else []


# 9. an unpicklable task (it keeps a lock)
class UnpicklableTask(GoodTask):
    def __init__(self, space, **options):
        super().__init__(space, **options)
        self.lock = threading.Lock()


# 10. a target missing a key the plugin's task needs
def target_without_key() -> HardwareTarget:
    t = good_target()
    return HardwareTarget(**{**{f: getattr(t, f) for f in ("name", "description", "clock_hz", "sram_bytes",
                                                              "flash_bytes", "cycles_per_mac", "layer_overhead_cycles",
                                                              "energy_per_cycle_j", "sources")}, "extra": {}})


MISTAKES = {
    "unproduced declared metric": (plugin(task=UnproducedMetricTask),
                                   r"space 'cnn'.*declares \['energy_per_inference_uj'\].*produce them or stop"),
    "unknown default objective": (plugin(task=UnknownObjectiveTask),
                                  r"space 'cnn'.*default objective 'val_acc'.*name one of those"),
    "build returning None": (plugin(space=NoneBuildSpace), r"space 'cnn'.*build\(\) returned NoneType.*return the "),
    "transposed input shape": (plugin(task=TransposedTask),
                               r"space 'cnn'.*forward pass on input_shape\(\) = \(32, 2\).*channels first"),
    "absent conditional dimension": (plugin(space=AbsentDimSpace),
                                     r"space 'cnn'.*KeyError 'width'.*arch.get\('width'\)"),
    "misspelt when value": (plugin(space=MisspeltWhenSpace),
                            r"space 'cnn'.*'op' never takes 'cnov'.*fix the spelling"),
    "wrong class count": (plugin(space=WrongClassesSpace), r"space 'cnn'.*shape \(1, 4\).*n_outputs = 3.*last layer"),
    "bug in rejections": (plugin(task=BuggyRejectionsTask), r"space 'cnn'.*rejections\(\) raised KeyError.*never raise"),
    "unpicklable task": (plugin(task=UnpicklableTask), r"space 'cnn'.*not picklable.*worker processes"),
    "target missing a required key": (plugin(target=target_without_key),
                                      r"target 'm0plus'.*lacks extra.sensor_power_w.*space 'cnn'.*\[extra\] table"),
}


@pytest.mark.parametrize("mistake", sorted(MISTAKES))
def test_each_plugin_mistake_is_caught_with_plugin_place_and_fix(mistake):
    p, pattern = MISTAKES[mistake]
    with pytest.raises(AssertionError, match=r"plugin 'act' " + pattern) as info:
        check(p)
    assert "\n" not in str(info.value)
