"""A tiny synthetic plugin for fast, deterministic study tests (no training).

The architecture's ``mode`` picks a behaviour of the fake estimator: ``ok``/``ok2``/``ok3``
succeed; ``raise`` raises, ``nan`` reports a NaN loss, ``slow`` overruns a time limit
cooperatively, ``hang`` ignores it (only a hard kill stops it), ``exit`` calls ``os._exit(7)``,
``sigkill`` kills its own process (as the OOM killer would), ``flaky`` kills its process on the
first attempt and succeeds on the next (needs the task option ``marker_dir``).

:func:`install_entry_point` publishes the plugin through a ``nas_core.plugins`` entry point in a
directory, so a ``nas`` subprocess finds it (``PYTHONPATH=<that directory>``).
"""

from __future__ import annotations

import math
import os
import time
from typing import Any

import numpy as np

from nas_core.errors import TrialFailed
from nas_core.estimators.base import EvalContext, Estimator
from nas_core.plugins import Plugin, SpaceEntry
from nas_core.space import Architecture, Categorical, Integer, Repeat, SearchSpace
from nas_core.task import Task


class ToySpace(SearchSpace):
    def __init__(self) -> None:
        super().__init__("toy", [
            Repeat("layers", [Integer("width", 4, 32, step=4), Categorical("act", ["relu", "tanh"])], 1, 3),
            Categorical("mode", ["ok", "ok2", "raise", "nan", "slow", "exit"]),
        ])

    def build(self, arch: Architecture):
        import torch.nn as nn

        layers: list[nn.Module] = []
        w_in = 4
        for layer in arch["layers"]:
            layers += [nn.Linear(w_in, layer["width"]), nn.ReLU() if layer["act"] == "relu" else nn.Tanh()]
            w_in = layer["width"]
        layers.append(nn.Linear(w_in, 2))
        return nn.Sequential(*layers)


def toy_score(arch: Architecture) -> float:
    """A deterministic objective with a known optimum: wide tanh layers, 2 of them."""
    layers = arch["layers"]
    s = -abs(len(layers) - 2) * 0.3
    s += sum(l["width"] / 32 * (0.5 if l["act"] == "tanh" else 0.3) for l in layers) / max(1, len(layers))
    return round(s, 6)


class ToyEstimator(Estimator):
    metric_names = ("score",)

    def __init__(self, sleep: float = 0.0, marker_dir: str | None = None):
        self.sleep = sleep
        self.marker_dir = marker_dir

    def evaluate(self, ctx: EvalContext) -> dict[str, float]:
        mode = ctx.arch["mode"]
        if self.sleep:
            time.sleep(self.sleep)
        if mode == "raise":
            raise RuntimeError("candidate exploded")
        if mode == "nan":
            raise TrialFailed("non-finite training loss (nan) at epoch 0")
        if mode == "slow":
            while True:
                time.sleep(0.05)
                ctx.check_deadline("while training")
        if mode == "exit":
            os._exit(7)
        if mode == "hang":  # ignores its deadline: only a hard kill stops it
            time.sleep(600)
        if mode == "sigkill":  # what the kernel's OOM killer does
            import signal

            os.kill(os.getpid(), signal.SIGKILL)
        if mode == "flaky":  # dies on the first attempt of each architecture, succeeds on the next
            marker = os.path.join(self.marker_dir or ".", f"flaky-{ctx.arch.hash}")
            if not os.path.exists(marker):
                open(marker, "w").close()
                os._exit(9)
        if ctx.artifact_dir:  # keep the (untrained) weights, as a training estimator keeps its best epoch's
            import torch

            os.makedirs(ctx.artifact_dir, exist_ok=True)
            torch.save(ctx.model.state_dict(), os.path.join(ctx.artifact_dir, "model.pt"))
        # the seed enters the metric, so reproducibility of seeds is tested too
        noise = (ctx.seed % 1000) / 1e6
        return {"score": toy_score(ctx.arch) + noise}


class ToyTask(Task):
    name = "toy"

    def input_shape(self, arch: Architecture) -> tuple:
        return (4,)

    def estimator(self) -> Estimator:
        return ToyEstimator(float(self.options.get("sleep", 0.0)), self.options.get("marker_dir"))

    def data_checksums(self) -> dict[str, str]:
        return {"toy/synthetic": "0" * 64}

    def default_objectives(self):
        from nas_core.strategies.base import Objective

        return [Objective("score", "max"), Objective("params", "min")]


class SafeToySpace(ToySpace):
    """Only the modes that succeed."""

    MODES = ["ok", "ok2"]

    def __init__(self) -> None:
        SearchSpace.__init__(self, f"toy-{type(self).__name__}", [
            Repeat("layers", [Integer("width", 4, 32, step=4), Categorical("act", ["relu", "tanh"])], 1, 3),
            Categorical("mode", self.MODES),
        ])


class FaultToySpace(SafeToySpace):
    """Failures that leave the driver process alive: exception, NaN loss, time-out."""

    MODES = ["ok", "ok2", "ok3", "raise", "nan", "slow"]


class ExitToySpace(SafeToySpace):
    """Candidates that kill their worker process or hang past any deadline."""

    MODES = ["ok", "exit", "hang"]


class RaiseToySpace(SafeToySpace):
    MODES = ["ok", "ok2", "ok3", "raise"]


class NanToySpace(SafeToySpace):
    MODES = ["ok", "ok2", "ok3", "nan"]


class SlowToySpace(SafeToySpace):
    MODES = ["ok", "ok2", "ok3", "slow"]


class HangToySpace(SafeToySpace):
    MODES = ["ok", "ok2", "ok3", "hang"]


class ExitOnlyToySpace(SafeToySpace):
    MODES = ["ok", "ok2", "ok3", "exit"]


class SigkillToySpace(SafeToySpace):
    MODES = ["ok", "ok2", "ok3", "sigkill"]


class FlakyToySpace(SafeToySpace):
    MODES = ["ok", "ok2", "ok3", "flaky"]


#: fault-matrix spaces: each mixes successful candidates with one kind of fault
FAULT_SPACES = {"raise": RaiseToySpace, "nan": NanToySpace, "slow": SlowToySpace, "hang": HangToySpace,
                "exit": ExitOnlyToySpace, "sigkill": SigkillToySpace, "flaky": FlakyToySpace}


def toy_plugin() -> Plugin:
    spaces = {"mixed": SpaceEntry(ToySpace, ToyTask), "safe": SpaceEntry(SafeToySpace, ToyTask),
              "faults": SpaceEntry(FaultToySpace, ToyTask), "exit": SpaceEntry(ExitToySpace, ToyTask)}
    spaces.update({f"only-{k}": SpaceEntry(v, ToyTask) for k, v in FAULT_SPACES.items()})
    return Plugin(name="toy", version="1", spaces=spaces)


def install_entry_point(site: str | os.PathLike) -> str:
    """Publish the toy plugin as an installed distribution in ``site``; returns the PYTHONPATH to use."""
    from pathlib import Path

    dist = Path(site) / "nas_toy_plugin-1.dist-info"
    dist.mkdir(parents=True, exist_ok=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: nas-toy-plugin\nVersion: 1\n")
    (dist / "entry_points.txt").write_text("[nas_core.plugins]\ntoy = toy:toy_plugin\n")
    here = str(Path(__file__).resolve().parent)
    return os.pathsep.join([str(site), here])
