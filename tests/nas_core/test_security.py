"""Safe by default: no unpickling or eval of user files, safe YAML, weights-only checkpoints, confined outputs."""

from __future__ import annotations

import contextlib
import io
import re
import sqlite3
from pathlib import Path

import pytest

import toy
from nas_core.errors import ConfigError, StoreError
from nas_core.plugins import Registry
from nas_core.safety import confined
from nas_core.store import Store, TrialState
from nas_core.study import StudyConfig, run_study

REPO = Path(__file__).resolve().parents[2]
SOURCES = [p for d in ("nas_core", "plugins", "datasets", "benchmarks") for p in (REPO / d).rglob("*.py")]


def reg():
    return Registry([toy.toy_plugin()], discover=False)


def _calls(pattern: str) -> list[tuple[Path, str]]:
    """Source lines (with their continuation up to the closing parenthesis) calling ``pattern``."""
    out = []
    rx = re.compile(pattern)
    for path in SOURCES:
        text = path.read_text()
        for m in rx.finditer(text):
            depth, i = 0, m.end() - 1
            while i < len(text):
                depth += {"(": 1, ")": -1}.get(text[i], 0)
                if depth == 0:
                    break
                i += 1
            out.append((path, text[m.start():i + 1]))
    return out


def test_sources_exist():
    assert len(SOURCES) > 20


def test_every_torch_load_is_weights_only():
    calls = _calls(r"\btorch\.load\(")
    assert calls, "expected at least the export's checkpoint loader"
    bad = [(str(p.relative_to(REPO)), c) for p, c in calls if "weights_only=True" not in c]
    assert not bad, bad


def test_yaml_is_only_read_with_the_safe_loader():
    for pattern in (r"\byaml\.load\(", r"\byaml\.unsafe_load\(", r"\byaml\.full_load\(", r"Loader\s*=\s*yaml\.(?!Safe)",
                    r"\byaml\.load_all\("):
        assert not _calls(pattern), pattern


def test_no_pickle_eval_or_exec_of_inputs():
    for pattern in (r"\bpickle\.loads?\(", r"\bcloudpickle\.loads?\(", r"\bdill\.", r"\bmarshal\.loads?\(",
                    r"(?<![.\w])eval\(", r"(?<![.\w])exec\(", r"\bshelve\.", r"allow_pickle\s*=\s*True"):
        found = [(str(p.relative_to(REPO)), c[:80]) for p, c in _calls(pattern)]
        assert not found, (pattern, found)
    import numpy as np  # np.load refuses pickled object arrays unless allow_pickle=True (forbidden above)

    with pytest.raises(ValueError, match="allow_pickle"):
        buf = io.BytesIO()
        np.save(buf, np.array([object()], dtype=object), allow_pickle=True)
        buf.seek(0)
        np.load(buf)
    store_src = (REPO / "nas_core" / "store.py").read_text()
    assert "import pickle" not in store_src and "pickle." not in store_src


class _Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))  # creates a file when unpickled


def _toy_study(tmp_path: Path) -> Path:
    out = tmp_path / "study"
    run_study(StudyConfig(space="toy/safe", budget=2, strategy="random", objectives=("score:max",)), out,
              registry=reg())
    return out


def test_a_checkpoint_holding_code_is_refused_not_run(tmp_path):
    import torch

    from nas_core.export import export_trial

    out = _toy_study(tmp_path)
    marker = tmp_path / "pwned"
    torch.save({"weight": _Evil(marker)}, out / "trials" / "00001" / "model.pt")
    with pytest.raises(StoreError, match="are refused: they hold something other than tensors") as info:
        export_trial(out, 1, "onnx", registry=reg())
    assert "\n" not in str(info.value)
    assert not marker.exists()
    assert not (out / "exports" / "trial-00001.onnx").exists()


def test_yaml_config_cannot_construct_python_objects(tmp_path):
    from nas_core import cli

    marker = tmp_path / "pwned"
    cfg = tmp_path / "evil.yaml"
    cfg.write_text(f"space: digits/cnn\nname: !!python/object/apply:os.system ['touch {marker}']\n")
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = cli.main(["run", "--config", str(cfg), "--out", str(tmp_path / "o")])
    assert code == 2 and err.getvalue().startswith("error: config file") and "not valid YAML" in err.getvalue()
    assert not marker.exists() and not (tmp_path / "o").exists()


def test_the_store_reads_json_only_and_reports_tampered_rows(tmp_path):
    import pickle

    out = _toy_study(tmp_path)
    marker = tmp_path / "pwned"
    with sqlite3.connect(out / "study.db") as c:
        c.execute("UPDATE trials SET metrics = ? WHERE number = 1", (pickle.dumps(_Evil(marker)),))
    with pytest.raises(StoreError, match="trial row 1 is corrupt"):  # refused when opened, before any write
        Store.open(out / "study.db")
    assert not marker.exists()


def test_confined_refuses_escapes(tmp_path):
    root = tmp_path / "study"
    root.mkdir()
    assert confined(root, "exports", "a.onnx") == root / "exports" / "a.onnx"
    for bad in ("../x", "/etc/passwd", "a/../../x", "..", "", "C:\\x", "a\x00b"):
        with pytest.raises(ConfigError, match="refusing to write"):
            confined(root, "exports", bad)
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "exports").symlink_to(outside, target_is_directory=True)
    with pytest.raises(ConfigError, match="outside the study directory"):
        confined(root, "exports", "a.onnx")


def test_export_and_report_never_write_outside_the_study_directory(tmp_path):
    from nas_core.export import export_trial
    from nas_core.report import make_report

    out = _toy_study(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    (out / "exports").symlink_to(outside, target_is_directory=True)
    with pytest.raises(ConfigError, match="outside the study directory"):
        export_trial(out, 1, "onnx", registry=reg())
    assert not any(outside.iterdir())

    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    (out / "model_card.md").symlink_to(victim)
    with pytest.raises(ConfigError, match="outside the study directory"):
        make_report(out)
    assert victim.read_text() == "keep me"


def test_trial_files_stay_inside_the_study_directory(tmp_path):
    out = tmp_path / "study"
    outside = tmp_path / "outside"
    outside.mkdir()
    out.mkdir()
    (out / "trials").symlink_to(outside, target_is_directory=True)
    with pytest.raises(ConfigError, match="outside the study directory"):
        run_study(StudyConfig(space="toy/safe", budget=1, objectives=("score:max",)), out, registry=reg())
    assert not any(outside.iterdir())
    assert not (out / "study.db").exists()  # refused before the store is created: nothing to clean up
