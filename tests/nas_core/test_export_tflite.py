"""``nas export --format tflite``: full-integer int8 TFLite, run in TensorFlow Lite Micro, with a firmware bundle."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

REASON = "the mcu extra is not installed (pip install -c constraints.txt -e '.[mcu]')"
pytest.importorskip("litert_torch", reason=REASON)
pytest.importorskip("ai_edge_quantizer", reason=REASON)
pytest.importorskip("tflite_micro", reason=REASON)

import toy  # noqa: E402
from nas_core import cli  # noqa: E402
from nas_core.examples.digits import DigitsCNNSpace, digits_search_data  # noqa: E402
from nas_core.examples.digits import plugin as digits_plugin  # noqa: E402
from nas_core.export_tflite import AGREEMENT_THRESHOLD, parse_c_array, run_tflm, tflm_interpreter  # noqa: E402
from nas_core.plugins import Plugin, Registry, SpaceEntry  # noqa: E402
from nas_core.study import StudyConfig, run_study  # noqa: E402


def _digits(activation: str) -> dict:
    """The digits space narrowed to one activation and at most two stages (a small, fast network)."""
    d = DigitsCNNSpace().to_dict()
    for dim in d["dimensions"]:
        if dim["name"] == "activation":
            dim["choices"] = [activation]
        if dim["name"] == "stages":
            dim["max_count"] = 2
    return d


def _study(path, activation="relu", epochs=3, **kw):
    cfg = StudyConfig(space="digits/cnn", budget=1, strategy="random", seed=0, task_options={"epochs": epochs},
                      restrict=_digits(activation), **kw)
    run_study(cfg, path, registry=Registry([digits_plugin()], discover=False))
    return path


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = _study(tmp_path_factory.mktemp("tflite") / "digits")
    return out, cli.main(["export", str(out), "--trial", "1", "--format", "tflite"])


def test_digits_model_runs_in_tflm_and_agrees_with_pytorch(exported, capsys):
    out, rc = exported
    assert rc == 0
    path = out / "exports" / "trial-00001.tflite"
    side = json.loads((out / "exports" / "trial-00001.tflite.json").read_text())
    t, check = side["tflite"], side["check"]
    assert side["format"] == "tflite" and t["size_bytes"] == path.stat().st_size
    assert check["inputs"] == "validation" and check["n"] == 360
    assert check["agreement"] >= AGREEMENT_THRESHOLD and check["min_agreement"] == AGREEMENT_THRESHOLD
    assert check["accuracy_change"] == pytest.approx(check["accuracy_int8"] - check["accuracy_fp32"])
    assert abs(check["macro_f1_change"]) <= 0.05
    # the file alone, in a fresh TFLM interpreter with the recorded arena: int8 in and out, same answers
    interp = tflm_interpreter(path.read_bytes(), t["arena_bytes"])
    assert interp.get_input_details(0)["dtype"] == np.int8 and interp.get_output_details(0)["dtype"] == np.int8
    x_val, y_val = digits_search_data().x_val[:50], digits_search_data().y_val[:50]
    pred = np.argmax(run_tflm(interp, [np.asarray(x_val, dtype=np.float32)]), axis=1)
    assert np.mean(pred == y_val) >= 0.8
    assert 1000 < t["arena_bytes"] < 64 * 1024 and "CONV_2D" in t["ops"] and "FULLY_CONNECTED" in t["ops"]
    # the cost model's deployment estimates hold for the exported file and the arena TFLM used
    costs = side["trial"]["costs"]
    assert t["arena_bytes"] <= costs["arena_int8_bytes"] and t["size_bytes"] <= costs["tflite_int8_bytes"]


def test_validation_inputs_are_spread_over_the_data():
    from nas_core.export_tflite import evenly_spaced

    assert list(evenly_spaced(5, 10)) == [0, 1, 2, 3, 4]
    idx = evenly_spaced(9103, 2000)
    assert len(idx) == 2000 and idx[0] == 0 and idx[-1] == 9102 and np.all(np.diff(idx) > 0)


def test_firmware_bundle_c_array_round_trips_and_lists_the_resolver_ops(exported):
    out, _ = exported
    model = (out / "exports" / "trial-00001.tflite").read_bytes()
    bundle = out / "exports" / "trial-00001-tflm"
    source = (bundle / "model_data.cc").read_text()
    assert "alignas(16) const unsigned char g_model[]" in source
    assert parse_c_array(source) == model
    assert "extern const unsigned int g_model_len;" in (bundle / "model_data.h").read_text()
    info = json.loads((bundle / "bundle.json").read_text())
    ops_h = (bundle / "model_ops.h").read_text()
    assert "MicroMutableOpResolver<kModelOpCount>" in ops_h and f"kModelOpCount = {len(info['ops'])};" in ops_h
    assert "r.AddConv2D()" in ops_h and "r.AddFullyConnected()" in ops_h
    assert all(call[:-2] in ops_h for call in info["resolver"])
    readme = (bundle / "README.md").read_text()
    assert str(info["arena_bytes"]) in readme and "RegisterModelOps(resolver)" in readme


class _Erfinv(torch.nn.Module):
    """A layer litert-torch has no lowering for."""

    def forward(self, x):
        return torch.special.erfinv(torch.tanh(x) * 0.5)


class _ErfSpace(toy.SafeToySpace):
    def build(self, arch):
        import torch.nn as nn

        return nn.Sequential(nn.Linear(4, 8), _Erfinv(), nn.Linear(8, 3))


class _CalibratedToyTask(toy.ToyTask):
    def calibration_data(self, arch):
        return np.random.default_rng(0).standard_normal((16, 4)).astype(np.float32)


def _error_line(capsys, args):
    rc = cli.main(args)
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert rc == 2 and len(err) == 1 and err[0].startswith("error: "), err
    assert "Traceback" not in err[0]
    return err[0]


def test_an_op_tflm_lacks_names_the_layer(tmp_path, capsys):
    out = _study(tmp_path / "gelu", activation="gelu", epochs=1)
    line = _error_line(capsys, ["export", str(out), "--trial", "1", "--format", "tflite"])
    assert "layer GELU_" in line and "TFLite operator GELU" in line and "TensorFlow Lite Micro" in line
    assert not (out / "exports" / "trial-00001.tflite").exists()


def test_bad_input_is_one_clear_error_line(tmp_path, capsys, monkeypatch):
    import nas_core.plugins

    from nas_core.store import Store, TrialState

    plugins = [Plugin(name="erf", version="1", spaces={"safe": SpaceEntry(_ErfSpace, _CalibratedToyTask)}),
               toy.toy_plugin()]
    monkeypatch.setattr(nas_core.plugins, "Registry", lambda *a, **k: Registry(plugins, discover=False))
    # a failed trial (its estimator raised)
    out = tmp_path / "failed"
    run_study(StudyConfig(space="toy/only-raise", budget=6, strategy="random", seed=0), out,
              registry=Registry(plugins, discover=False))
    with Store.open(out / "study.db") as st:
        failed = st.trials([TrialState.FAILED])[0].number
    line = _error_line(capsys, ["export", str(out), "--trial", str(failed), "--format", "tflite"])
    assert f"trial {failed} is failed, not complete" in line
    # a layer the converter cannot take, and a task without calibration data
    for space, needle in (("erf/safe", "layer 1 (_Erfinv) uses aten.erfinv, which litert-torch cannot convert"),
                          ("toy/safe", "no calibration data")):
        out = tmp_path / space.replace("/", "-")
        run_study(StudyConfig(space=space, budget=1, strategy="random", seed=1), out,
                  registry=Registry(plugins, discover=False))
        line = _error_line(capsys, ["export", str(out), "--trial", "1", "--format", "tflite"])
        assert needle in line, line
        assert not (out / "exports" / "trial-00001.tflite").exists()
    line = _error_line(capsys, ["export", str(out), "--trial", "1", "--format", "tflite", "--min-agreement", "1.5"])
    assert "min_agreement must be a fraction in 0..1" in line
