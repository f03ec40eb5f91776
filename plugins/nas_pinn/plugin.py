"""The PINN plugin: search for symmetry-equivariant physics-informed networks (DeepXDE + e2cnn).

Registered as ``pinn`` under the ``nas_core.plugins`` entry point:

* spaces ``pinn/poisson`` and ``pinn/plate`` -- :class:`~nas_pinn.space.PinnSpace`
  bound to the built-in problem of that name, trained by
  :class:`~nas_pinn.task.PinnTask` (task option ``problem`` points either at
  another problem, e.g. ``poisson-rect`` or ``"my_module:my_problem"``);
* targets ``pinn/stm32h7`` (Cortex-M7 @ 480 MHz) and ``pinn/raspberry-pi5``
  (Cortex-A76 @ 2.4 GHz), both float32.

Nothing heavy is imported here: e2cnn and DeepXDE load when a network is built
or trained.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

from nas_core.hardware import HardwareTarget, load_target
from nas_core.plugins import Plugin, SpaceEntry

TARGETS_DIR = Path(__file__).resolve().parent / "targets"
TARGET_FILES = {"stm32h7": "stm32h7.toml", "raspberry-pi5": "raspberry_pi5.toml"}


def load_pinn_target(name: str) -> HardwareTarget:
    """One of the plugin's targets by key (``stm32h7``, ``raspberry-pi5``)."""
    return load_target(TARGETS_DIR / TARGET_FILES[name])


def plugin() -> Plugin:
    from nas_pinn.space import PinnSpace
    from nas_pinn.task import PinnTask

    return Plugin(
        name="pinn",
        version="0.1.0",
        description="Symmetry-equivariant physics-informed networks (DeepXDE + e2cnn): Poisson and Kirchhoff plate",
        spaces={
            "poisson": SpaceEntry(partial(PinnSpace, "poisson"), PinnTask,
                                  "equivariant MLP for -lap u = 1 on the square (D4)"),
            "plate": SpaceEntry(partial(PinnSpace, "plate"), PinnTask,
                                "equivariant MLP for the simply supported square plate, lap^2 w = q/D (D4)"),
        },
        targets={key: partial(load_pinn_target, key) for key in TARGET_FILES},
    )
