"""Provenance in the store and in every export; the model card; int8 export with its accuracy change."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json

import pytest

import toy
from nas_core.examples.digits import plugin as digits_plugin
from nas_core.plugins import Registry
from nas_core.store import Store
from nas_core.study import StudyConfig, resume_study, run_study


def reg():
    return Registry([toy.toy_plugin(), digits_plugin()], discover=False)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    out = tmp_path_factory.mktemp("prov") / "study"
    cfg = StudyConfig(space="toy/safe", budget=3, strategy="random", seed=7, target="digits/cortex-m4",
                      objectives=("score:max", "params:min"), constraints=("params<=5000",),
                      name="toy <script>alert(1)</script>")
    run_study(cfg, out, registry=reg())
    return out


def test_the_store_records_provenance_at_creation_and_each_run(study):
    with Store.open(study / "study.db") as st:
        prov = st.provenance
        runs = st.runs()
    assert prov["code"]["nas_core"] == "0.1.0" and "git_commit" in prov["code"]
    assert {"torch", "numpy", "lightning"} <= set(prov["packages"])
    assert prov["data_checksums"] == {"toy/synthetic": "0" * 64}   # from Task.data_checksums()
    assert prov["seed"] == 7 and prov["config"]["space_key"] == "toy/safe"
    assert prov["config"]["constraints_resolved"] == ["params<=5000"]
    assert prov["hardware_target"]["name"] and prov["hardware_target"]["clock_hz"] > 0
    assert prov["plugin"] == {"name": "toy", "version": "1"}
    assert len(runs) == 1 and runs[0]["operational"]["budget"] == 3
    resume_study(study, budget=4, registry=reg())
    with Store.open(study / "study.db") as st:
        assert st.provenance == prov                                # the creation record never changes
        assert [r["operational"]["budget"] for r in st.runs()] == [3, 4]


def test_report_writes_a_model_card_in_markdown_and_html(study):
    from nas_core.report import make_report

    summary = make_report(study)
    md = (study / "model_card.md").read_text()
    html = (study / "model_card.html").read_text()
    for section in ("## Model details", "## Intended use", "## Data", "## Hardware target",
                    "## Metrics of the Pareto models", "## Constraints and rejections", "## Limitations",
                    "## Provenance"):
        assert section in md, section
    assert "toy/synthetic" in md and "0" * 64 in md and "params<=5000" in md
    assert all(f"| {p['trial']} |" in md for p in summary["pareto"])
    assert "![Pareto plot](pareto.png)" in md and '<img src="pareto.png"' in html
    assert "<script>" not in html and "&lt;script&gt;" in html    # everything from the store is escaped
    assert "<h2>Provenance</h2>" in html and "<table>" in html
    assert summary["model_card"] == ["model_card.md", "model_card.html"]
    assert "model_card.md" in (study / "report.md").read_text()


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_every_export_carries_a_provenance_sidecar(study, fmt):
    from nas_core.export import export_trial

    res = export_trial(study, 1, fmt, registry=reg())
    side = json.loads(res.sidecar.read_text())
    assert res.sidecar == res.path.with_name(res.path.name + ".json")
    assert side["sha256"] == hashlib.sha256(res.path.read_bytes()).hexdigest()
    assert side["format"] == fmt and side["check"]["max_abs_diff"] <= 1e-4
    assert side["trial"]["number"] == 1 and side["trial"]["arch"] and side["trial"]["seed"]
    with Store.open(study / "study.db") as st:
        assert side["provenance"] == st.provenance
    assert side["provenance"]["data_checksums"] and side["provenance"]["hardware_target"]
    assert side["export_environment"]["packages"]["torch"]


def test_int8_without_task_data_uses_dynamic_quantization_and_says_accuracy_is_not_measured(study):
    from nas_core.errors import ConfigError
    from nas_core.export import export_trial

    res = export_trial(study, 1, "onnx", registry=reg(), quantize="int8")
    q = res.quantization
    assert q["method"].startswith("dynamic") and q["accuracy_change"] is None
    assert "not available" in q["accuracy_note"]
    assert json.loads((study / "exports" / "trial-00001.int8.onnx.json").read_text())["format"] == "onnx-int8"
    with pytest.raises(ConfigError, match="needs --format onnx"):
        export_trial(study, 1, "torchscript", registry=reg(), quantize="int8")


def test_cli_int8_export_of_a_trained_digits_model_reports_the_accuracy_change(tmp_path):
    from nas_core import cli

    out = tmp_path / "digits"
    cfg = StudyConfig(space="digits/cnn", budget=1, strategy="random", seed=0, task_options={"epochs": 2})
    run_study(cfg, out, registry=Registry([digits_plugin()], discover=False))
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        assert cli.main(["export", str(out), "--trial", "1", "--quantize", "int8"]) == 0
    text = stdout.getvalue()
    assert "int8 accuracy" in text and "on 360 validation samples" in text
    side = json.loads((out / "exports" / "trial-00001.onnx.json").read_text())
    q = side["quantization"]
    assert q["method"].startswith("static") and q["n_validation"] == 360
    assert q["accuracy_change"] == pytest.approx(q["accuracy_int8"] - q["accuracy_fp32"])
    assert abs(q["accuracy_change"]) <= 0.2
    assert side["accuracy"]["pytorch"] == pytest.approx(side["accuracy"]["exported"], abs=1e-6)
