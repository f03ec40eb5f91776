"""pyproject.toml: the export command's needs in the extra that provides it, an ``all`` extra, tomli on
Python < 3.11, a torch floor for the APIs used, and every requirement pinned in constraints.txt."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
EXTRAS: dict[str, list[str]] = PROJECT["optional-dependencies"]


def _name(req: str) -> str:
    return re.split(r"[\s;<>=!~\[]", req, maxsplit=1)[0].lower().replace("_", "-")


def test_export_extra_holds_what_nas_export_imports():
    names = {_name(r) for r in EXTRAS["export"]}
    assert {"onnx", "onnxruntime", "onnxscript"} <= names
    assert "nas-core[export]" in EXTRAS["ecg"]  # the ECG workflow exports its models


def test_all_extra_holds_every_feature_extra():
    (req,) = EXTRAS["all"]
    inside = set(re.fullmatch(r"nas-core\[(.*)\]", req).group(1).split(","))  # type: ignore[union-attr]
    assert inside == set(EXTRAS) - {"all", "dev"}


def test_tomli_on_old_python_and_a_torch_floor_for_the_apis_used():
    deps = PROJECT["dependencies"]
    assert "tomli>=1.1; python_version < '3.11'" in deps
    (torch,) = [d for d in deps if _name(d) == "torch"]
    major, minor = map(int, re.search(r">=(\d+)\.(\d+)", torch).groups())  # type: ignore[union-attr]
    assert (major, minor) >= (2, 6)  # torch.onnx.export(dynamo=, dynamic_shapes=) needs 2.5; weights_only default 2.6


def test_every_requirement_is_pinned_in_constraints():
    pins = {_name(line) for line in (REPO / "constraints.txt").read_text().splitlines()
            if line and not line.startswith("#")}
    reqs = PROJECT["dependencies"] + [r for extra in EXTRAS.values() for r in extra]
    missing = sorted({_name(r) for r in reqs if not r.startswith("nas-core")} - pins)
    assert not missing, missing
