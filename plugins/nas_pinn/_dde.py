"""Lazy access to DeepXDE on its PyTorch backend.

DeepXDE picks its backend once, when it is first imported, from the
``DDE_BACKEND`` environment variable (or ``~/.deepxde/config.json``). The PINN
plugin needs the PyTorch backend, so :func:`import_deepxde` sets
``DDE_BACKEND=pytorch`` just before the first import, and only then: importing
``nas_core`` or ``nas_pinn`` never imports DeepXDE. A different backend chosen
by the user, or a DeepXDE already imported on another backend, is a
:class:`~nas_core.errors.ConfigError`.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from typing import Any

from nas_core.errors import ConfigError

__all__ = ["import_deepxde"]


def import_deepxde() -> Any:
    """The ``deepxde`` module, imported on the PyTorch backend (its banner silenced)."""
    module = sys.modules.get("deepxde")
    if module is None:
        chosen = os.environ.get("DDE_BACKEND")
        if chosen and chosen != "pytorch":
            raise ConfigError(f"DDE_BACKEND is set to {chosen!r}, but the PINN plugin needs DeepXDE's 'pytorch' "
                              "backend; unset DDE_BACKEND or set it to 'pytorch'")
        os.environ["DDE_BACKEND"] = "pytorch"
        try:
            with contextlib.redirect_stderr(io.StringIO()):  # "Using backend: pytorch ..." banner
                import deepxde as module  # noqa: PLC0415
        except ModuleNotFoundError as exc:
            raise ConfigError(f"the PINN plugin needs DeepXDE ({exc}); install it with: pip install 'nas-core[pinn]'") \
                from None
    backend = getattr(getattr(module, "backend", None), "backend_name", None)
    if backend != "pytorch":
        raise ConfigError(f"DeepXDE was already imported on the {backend!r} backend; the PINN plugin needs 'pytorch' "
                          "(set DDE_BACKEND=pytorch before anything imports deepxde)")
    return module
