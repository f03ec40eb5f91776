"""Provenance: what produced a study or an exported model, for a design history file.

:func:`collect` gathers, without importing anything heavy:

* ``code``: the nas-core version and, when the package runs from a git checkout,
  the commit (with ``-dirty`` when tracked files have uncommitted changes);
* ``packages``: installed versions of the numerical stack (torch, lightning, numpy,
  ...) and of the plugin distributions, read from package metadata;
* ``python`` and ``platform``;
* ``data_checksums``: what the task reports through an optional
  ``Task.data_checksums() -> {name: sha256}`` hook (``{}`` when it has none);
* ``seed``, ``config`` (the study definition as stored) and ``hardware_target``
  (the target's full data, or ``None``);
* ``task``: the task's ``describe()``, plus its optional ``intended_use()`` and
  ``limitations()`` texts, which the model card quotes.

The study stores this record in its store (meta key ``provenance``) when it is
created, and appends a short record (time, code version, operational settings) to
``runs`` each time it is run or resumed. Every export writes it, with the trial's
figures and the export checks, to a JSON sidecar next to the exported file.
"""

from __future__ import annotations

import datetime as _dt
import json
import platform
import subprocess
import sys
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, cast

if TYPE_CHECKING:
    from nas_core.task import Task

#: distributions whose versions every record lists (when installed)
PACKAGES = ("nas-core", "torch", "lightning", "numpy", "scipy", "scikit-learn", "pyyaml", "onnx", "onnxruntime",
            "ray", "wfdb", "deepxde", "e2cnn", "matplotlib", "hypothesis")


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


@lru_cache(maxsize=1)
def git_commit() -> str | None:
    """The commit of the checkout nas_core runs from (``-dirty`` if tracked files changed), else ``None``."""
    here = Path(__file__).resolve().parent
    try:
        top = subprocess.run(["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True, timeout=10,
                             cwd=here)
        if top.returncode != 0 or not (Path(top.stdout.strip()) / "nas_core").is_dir():
            return None
        head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, cwd=here)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, timeout=10, cwd=here).stdout.strip()
        return head.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def package_versions(extra: tuple[str, ...] = ()) -> dict[str, str]:
    out: dict[str, str] = {}
    for name in (*PACKAGES, *extra):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def code_version() -> dict[str, Any]:
    from nas_core import __version__

    return {"nas_core": __version__, "git_commit": git_commit()}


def environment() -> dict[str, Any]:
    """Code version, package versions, Python and platform (what changes between machines and runs)."""
    return {"code": code_version(), "packages": package_versions(), "python": platform.python_version(),
            "platform": platform.platform(), "executable": Path(sys.executable).name}


def _json_safe(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=str, allow_nan=True))


def _hook(task: Task | None, name: str, default: Any) -> Any:
    fn = getattr(task, name, None)
    if not callable(fn):
        return default
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001 - provenance must not stop a study; the failure is recorded
        return {"error": f"{name}() failed: {type(exc).__name__}: {exc}"} if isinstance(default, dict) else default


def collect(*, config: Mapping[str, Any], seed: int, task: Task | None = None, target: Any = None,
            plugin: Any = None) -> dict[str, Any]:
    """The full provenance record of a study at creation."""
    checksums = _hook(task, "data_checksums", {}) if task is not None else {}
    if not isinstance(checksums, Mapping):
        checksums = {"error": f"data_checksums() returned {type(checksums).__name__}, not a mapping"}
    describe = _hook(task, "describe", {}) if task is not None else {}
    record = {
        "created": now_iso(),
        **environment(),
        "plugin": ({"name": plugin.name, "version": plugin.version} if plugin is not None else None),
        "data_checksums": dict(checksums),
        "seed": seed,
        "config": dict(config),
        "hardware_target": target.to_dict() if target is not None and hasattr(target, "to_dict") else None,
        "task": {"describe": describe,
                 "intended_use": _hook(task, "intended_use", None) if task is not None else None,
                 "limitations": _hook(task, "limitations", None) if task is not None else None},
    }
    return cast("dict[str, Any]", _json_safe(record))


def run_record(operational: Mapping[str, Any]) -> dict[str, Any]:
    """A short record of one run or resume of a study."""
    return cast("dict[str, Any]", _json_safe({"started": now_iso(), "code": code_version(),
                                              "operational": dict(operational)}))
