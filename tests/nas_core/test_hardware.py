"""Hardware targets and the analytic cost model, checked against hand-computed numbers."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from nas_core.errors import ConfigError
from nas_core.hardware import (
    CostReport,
    HardwareTarget,
    builtin_target_names,
    estimate_latency_energy,
    load_builtin_target,
    load_target,
    measure_costs,
    measure_host_latency_ms,
    register_mac_counter,
)

# --------------------------------------------------------------------------------------
# MACs


@pytest.mark.parametrize(
    ("layer", "shape", "expected"),
    [
        # 8 out ch * 30 positions (32 - 3 + 1) * 4 in ch * 3 kernel = 2880
        (nn.Conv1d(4, 8, 3), (4, 32), 2880),
        # 16 out ch * 8*8 positions (padding 1) * 3 in ch * 3*3 kernel = 27648
        (nn.Conv2d(3, 16, 3, padding=1), (3, 8, 8), 27648),
        # stride 2: 4 out ch * 4*4 positions ((9 - 3) // 2 + 1 = 4) * 1 in ch * 9 = 576
        (nn.Conv2d(1, 4, 3, stride=2), (1, 9, 9), 576),
        # depthwise: 8 out ch * 46 positions * (8 / 8 groups = 1) in ch * 5 kernel = 1840
        (nn.Conv1d(8, 8, 5, groups=8), (8, 50), 1840),
        # depthwise 2D: 6 out ch * 10*10 positions * 1 in ch per group * 3*3 kernel = 5400
        (nn.Conv2d(6, 6, 3, padding=1, groups=6), (6, 10, 10), 5400),
        # grouped: 16 out ch * 18 positions * (8 / 4 groups = 2) in ch * 3 kernel = 1728
        (nn.Conv1d(8, 16, 3, groups=4), (8, 20), 1728),
        # transposed: 4*10 input elements * (2 out ch / 1 group) * 3 kernel = 240
        (nn.ConvTranspose1d(4, 2, 3), (4, 10), 240),
        # linear: 20 in * 10 out = 200
        (nn.Linear(20, 10), (20,), 200),
        # linear on 5 leading positions: 5 * 20 in * 10 out = 1000
        (nn.Linear(20, 10), (5, 20), 1000),
        # no MACs in norms, activations and pooling
        (nn.BatchNorm1d(4), (4, 10), 0),
        (nn.ReLU(), (4, 10), 0),
        (nn.MaxPool1d(2), (4, 10), 0),
    ],
)
def test_macs_of_single_layers(layer: nn.Module, shape: tuple[int, ...], expected: int) -> None:
    report = measure_costs(layer, shape)
    assert report.macs == expected
    assert report.layers == (1 if expected else 0)


def small_cnn() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv1d(1, 4, 5),  # (1, 64) -> (4, 60)
        nn.BatchNorm1d(4),
        nn.ReLU(),
        nn.MaxPool1d(2),  # -> (4, 30)
        nn.Conv1d(4, 8, 3, padding=1),  # -> (8, 30)
        nn.ReLU(),
        nn.AdaptiveAvgPool1d(1),  # -> (8, 1)
        nn.Flatten(),  # -> (8,)
        nn.Linear(8, 3),
    )


def test_small_sequential_model_macs_params_flash() -> None:
    report = measure_costs(small_cnn(), (1, 64))
    # conv1: 4 out * 60 pos * 1 in * 5 = 1200; conv2: 8 out * 30 pos * 4 in * 3 = 2880; fc: 8 * 3 = 24
    assert report.macs == 1200 + 2880 + 24 == 4104
    assert report.layers == 3
    # conv1 4*1*5 + 4 = 24; bn 4 + 4 = 8; conv2 8*4*3 + 8 = 104; fc 8*3 + 3 = 27
    assert report.params == 24 + 8 + 104 + 27 == 163
    assert report.flash_fp32_bytes == 163 * 4
    assert report.flash_int8_bytes == 163
    assert report.latency_ms is None and report.energy_uj is None


def test_params_include_frozen_parameters_but_not_buffers() -> None:
    model = nn.Sequential(nn.Linear(10, 5), nn.BatchNorm1d(5))
    model[0].bias.requires_grad_(False)
    # linear 10*5 + 5 = 55 (frozen bias included); bn weight + bias = 10; running stats are buffers
    assert measure_costs(model, (10,)).params == 65


def test_model_with_several_inputs() -> None:
    class SignalPlusFeatures(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv1d(1, 4, 3)
            self.pool = nn.AdaptiveAvgPool1d(1)
            self.fc = nn.Linear(4 + 6, 2)

        def forward(self, signal: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
            z = self.pool(self.conv(signal)).flatten(1)
            return self.fc(torch.cat([z, features], dim=1))

    report = measure_costs(SignalPlusFeatures(), ((1, 50), (6,)))
    # conv: 4 out * 48 pos * 1 in * 3 = 576; fc: 10 in * 2 out = 20
    assert report.macs == 596
    assert report.layers == 2


# --------------------------------------------------------------------------------------
# peak activation memory


def test_peak_activation_sequential() -> None:
    model = nn.Sequential(
        nn.Conv1d(1, 8, 3, padding=1),  # 100 in -> 800 out
        nn.ReLU(inplace=True),  # in place: same 800-element buffer
        nn.Conv1d(8, 4, 3, padding=1),  # 800 in -> 400 out
        nn.Conv1d(4, 2, 1),  # 400 in -> 200 out
    )
    # max over layers of (in + out): 100+800, 800, 800+400 = 1200, 400+200
    assert measure_costs(model, (1, 100)).peak_act_bytes == 1200
    assert measure_costs(model, (1, 100), act_bytes=4).peak_act_bytes == 4800


class Residual(nn.Module):
    def __init__(self, inplace: bool, residual: bool = True) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(4, 8, 3, padding=1)
        self.relu = nn.ReLU(inplace=inplace)
        self.conv2 = nn.Conv1d(8, 4, 3, padding=1)
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv2(self.relu(self.conv1(x)))
        return x + y if self.residual else y


def test_peak_activation_residual_block() -> None:
    # x: 4*10 = 40, conv1 out a: 80, relu out b: 80, conv2 out c: 40, sum: 40.
    # The block input x stays live until the addition:
    #   conv1: x + a = 120; relu: x + a + b = 200; conv2: x + b + c = 160; add: x + c + sum = 120
    assert measure_costs(Residual(inplace=False), (4, 10)).peak_act_bytes == 200
    # in-place ReLU reuses a: relu: x + a = 120; conv2: x + a + c = 160; add: 120
    assert measure_costs(Residual(inplace=True), (4, 10)).peak_act_bytes == 160
    # without the shortcut x dies after conv1: max(40+80, 80+80, 80+40) = 160
    assert measure_costs(Residual(inplace=False, residual=False), (4, 10)).peak_act_bytes == 160


def test_peak_activation_counts_functional_ops_and_shares_views() -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv1d(1, 4, 3)
            self.fc = nn.Linear(4 * 98, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = torch.relu(self.conv(x))  # functional, not in place: a new buffer
            return self.fc(h.flatten(1))  # flatten is a view of h

    # input 100; conv: 100 + 392; relu: 392 + 392 = 784; fc: 392 + 2.
    # The top-level module's input is not kept alive: it is not used after the conv.
    assert measure_costs(Net(), (1, 100)).peak_act_bytes == 784


def test_training_flags_are_restored() -> None:
    model = small_cnn()
    model.train()
    model[1].eval()  # e.g. a frozen BatchNorm inside a training model
    measure_costs(model, (1, 64))
    measure_host_latency_ms(model, (1, 64), repeats=2, warmup=1)
    assert model.training and model[0].training and not model[1].training


# --------------------------------------------------------------------------------------
# latency and energy


def test_latency_and_energy_from_target_by_hand() -> None:
    target = HardwareTarget(
        name="toy",
        description="toy target",
        clock_hz=10_000_000,
        sram_bytes=65536,
        flash_bytes=262144,
        cycles_per_mac=2.0,
        layer_overhead_cycles=100,
        active_current_a=0.002,
        voltage_v=3.0,
    )
    # energy per cycle = 0.002 A * 3 V / 1e7 Hz = 6e-10 J
    assert target.energy_per_cycle() == pytest.approx(6e-10)
    report = measure_costs(nn.Conv1d(4, 8, 3), (4, 32), target)
    # cycles = 2 * 2880 MACs + 100 * 1 layer = 5860; latency = 5860 / 1e7 s = 0.586 ms
    assert report.latency_ms == pytest.approx(0.586)
    # energy = 5860 cycles * 6e-10 J = 3.516e-6 J = 3.516 uJ
    assert report.energy_uj == pytest.approx(3.516)
    assert report.as_metrics() == {
        "params": 104.0,  # 8*4*3 + 8
        "macs": 2880.0,
        "layers": 1.0,
        "peak_act_bytes": 128.0 + 240.0,  # input 4*32 + output 8*30
        "flash_fp32_bytes": 416.0,
        "flash_int8_bytes": 104.0,
        "latency_ms": pytest.approx(0.586),
        "energy_uj": pytest.approx(3.516),
        # ceil(368 * 1.3) + CMSIS-NN scratch 2*4*3*2 + 512 + 392 * 1 step + 6 * 8 channels
        "arena_int8_bytes": 479.0 + 48.0 + 512.0 + 392.0 + 48.0,
        # 104 params + 1024 + 1280 * 1 step + 20 * 8 channels
        "tflite_int8_bytes": 104.0 + 1024.0 + 1280.0 + 160.0,
    }
    direct = HardwareTarget(
        name="direct", description="", clock_hz=1e6, sram_bytes=1, flash_bytes=1,
        cycles_per_mac=1.0, energy_per_cycle_j=1e-9,
    )
    # 1000 MACs * 1 cycle = 1000 cycles: 1 ms and 1000 * 1e-9 J = 1 uJ
    assert estimate_latency_energy(1000, 3, direct) == (pytest.approx(1.0), pytest.approx(1.0))


def test_target_without_energy_model() -> None:
    target = HardwareTarget(
        name="no-energy", description="", clock_hz=1e6, sram_bytes=1, flash_bytes=1, cycles_per_mac=1.0
    )
    report = measure_costs(nn.Linear(4, 2), (4,), target)
    assert report.latency_ms == pytest.approx(8 / 1e6 * 1e3)  # 8 MACs * 1 cycle at 1 MHz
    assert report.energy_uj is None
    assert "energy_uj" not in report.as_metrics()
    with pytest.raises(ConfigError, match="'no-energy'.*energy_per_cycle_j"):
        target.energy_per_cycle()


def test_deployment_estimates_by_hand() -> None:
    from nas_core.hardware import cost

    net = nn.Sequential(nn.Conv1d(2, 8, 5, padding=2), nn.ReLU(), nn.Conv1d(8, 8, 3, padding=1, groups=8),
                        nn.Conv1d(8, 16, 1), nn.AvgPool1d(2), nn.Flatten(), nn.Linear(16 * 50, 5))
    r = measure_costs(net, (2, 100))
    # 7 unit steps; channels 8 + 8 + 16 + 5 = 37; int8 peak: Linear's input 800 + output 5... the widest
    # pair is conv 1x1 in (800) + out (1600) = 2400
    assert r.peak_act_bytes == 2400
    # scratch: conv k5 4*2*5 = 40, depthwise 2*8*3 = 48, 1x1 stride 1: 0, avg pool 4*16 = 64 -> 64
    assert cost.cmsis_nn_scratch_bytes(net[0], (torch.zeros(1, 2, 100),)) == 40
    assert cost.cmsis_nn_scratch_bytes(net[2], (torch.zeros(1, 8, 100),)) == 48
    assert cost.cmsis_nn_scratch_bytes(net[3], (torch.zeros(1, 8, 100),)) == 0
    assert cost.cmsis_nn_scratch_bytes(net[4], (torch.zeros(1, 16, 100),)) == 64
    assert cost.cmsis_nn_scratch_bytes(net[6], (torch.zeros(1, 800),)) == 0
    assert r.arena_int8_bytes == (3120 + 64 + cost.TFLM_ARENA_FIXED_BYTES + 7 * cost.TFLM_ARENA_BYTES_PER_STEP
                                  + 37 * cost.TFLM_ARENA_BYTES_PER_CHANNEL)
    assert r.tflite_int8_bytes == (r.params + cost.TFLITE_FIXED_BYTES + 7 * cost.TFLITE_BYTES_PER_STEP
                                   + 37 * cost.TFLITE_BYTES_PER_CHANNEL)
    # the deployment estimates never undercut the raw figures
    assert r.arena_int8_bytes > r.peak_act_bytes and r.tflite_int8_bytes > r.flash_int8_bytes


def test_as_metrics_omits_none() -> None:
    report = CostReport(params=1, macs=2, layers=1, peak_act_bytes=3, flash_fp32_bytes=4, flash_int8_bytes=1)
    assert set(report.as_metrics()) == {
        "params", "macs", "layers", "peak_act_bytes", "flash_fp32_bytes", "flash_int8_bytes"
    }


# --------------------------------------------------------------------------------------
# plugin MAC counters


class Scale(nn.Module):
    """A layer with its own parameter and no built-in counter."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.s = nn.Parameter(torch.ones(n, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.s


class RegisteredScale(Scale):
    """Only used by the test that registers a counter in the process-wide registry."""


def _scale_macs(module: nn.Module, inputs: tuple[Any, ...], output: Any) -> int:
    return output.numel()


class CountedBlock(nn.Module):
    """A container counted as a whole by its own counter."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x)


def test_unknown_parametrised_module_is_an_error_in_strict_mode() -> None:
    model = nn.Sequential(nn.Conv1d(1, 2, 3), Scale(2))
    with pytest.raises(ConfigError, match=r"Scale.*module '1'.*register_mac_counter"):
        measure_costs(model, (1, 10))
    # 2 out * 8 pos * 1 in * 3 = 48, Scale counted as 0
    assert measure_costs(model, (1, 10), strict=False).macs == 48
    # per-call counter: Scale costs one MAC per output element, 2 * 8 = 16
    report = measure_costs(model, (1, 10), mac_counters={Scale: _scale_macs})
    assert (report.macs, report.layers) == (48 + 16, 2)


def test_register_mac_counter() -> None:
    register_mac_counter(RegisteredScale, _scale_macs, replace=True)
    register_mac_counter(RegisteredScale, _scale_macs)  # same function again: no-op
    # 2 out * 8 pos * 1 in * 3 = 48 for the conv, 2 * 8 = 16 for the scale
    assert measure_costs(nn.Sequential(nn.Conv1d(1, 2, 3), RegisteredScale(2)), (1, 10)).macs == 48 + 16
    with pytest.raises(ConfigError, match="already has a MAC counter"):
        register_mac_counter(RegisteredScale, lambda m, i, o: 0)
    with pytest.raises(ConfigError, match="already has a MAC counter"):
        register_mac_counter(nn.Conv1d, lambda m, i, o: 0)
    with pytest.raises(ConfigError, match="nn.Module subclass"):
        register_mac_counter(int, _scale_macs)  # type: ignore[arg-type]


def test_counted_container_is_opaque() -> None:
    # the block's counter says 7; its inner Linear (16 MACs) is not counted again
    report = measure_costs(CountedBlock(), (4,), mac_counters={CountedBlock: lambda m, i, o: 7})
    assert (report.macs, report.layers) == (7, 1)


def test_bad_counter_result() -> None:
    with pytest.raises(ConfigError, match="non-negative integer"):
        measure_costs(nn.Linear(2, 2), (2,), mac_counters={nn.Linear: lambda m, i, o: -1})


@pytest.mark.parametrize("shape", [(), (0, 4), ("a",), ((1, 2), 3), "14"])
def test_bad_input_shape(shape: Any) -> None:
    with pytest.raises(ConfigError, match="input_shape"):
        measure_costs(nn.Linear(2, 2), shape)


def test_bad_act_bytes() -> None:
    with pytest.raises(ConfigError, match="act_bytes"):
        measure_costs(nn.Linear(2, 2), (2,), act_bytes=0)


def test_host_latency_is_a_positive_number() -> None:
    assert measure_host_latency_ms(nn.Linear(4, 2), (4,), repeats=3, warmup=1) > 0
    with pytest.raises(ConfigError, match="repeats"):
        measure_host_latency_ms(nn.Linear(4, 2), (4,), repeats=0)


# --------------------------------------------------------------------------------------
# targets from files

GOOD: dict[str, Any] = {
    "schema_version": 1,
    "name": "board",
    "description": "a test board",
    "clock_hz": 64_000_000,
    "sram_bytes": 262_144,
    "flash_bytes": 1_048_576,
    "cycles_per_mac": 2.0,
    "layer_overhead_cycles": 1000,
    "active_current_a": 0.0033,
    "voltage_v": 3.0,
    "sleep_current_a": 1.5e-6,
    "battery_mah": 225.0,
    "battery_voltage_v": 3.0,
    "max_weights": 442_368,
    "sources": ["datasheet A", "estimate B"],
    "extra": {"adc_current_a": 0.0005},
}


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return repr(v)


def to_toml(d: dict[str, Any]) -> str:
    lines = [f"{k} = {_toml_value(v)}" for k, v in d.items() if not isinstance(v, dict)]
    for k, v in d.items():
        if isinstance(v, dict):
            lines.append(f"[{k}]")
            lines += [f"{kk} = {_toml_value(vv)}" for kk, vv in v.items()]
    return "\n".join(lines) + "\n"


def write(tmp_path: Path, d: dict[str, Any], fmt: str) -> Path:
    path = tmp_path / f"board.{fmt}"
    path.write_text(to_toml(d) if fmt == "toml" else json.dumps(d), encoding="utf-8")
    return path


@pytest.mark.parametrize("fmt", ["toml", "json"])
def test_load_target(tmp_path: Path, fmt: str) -> None:
    t = load_target(write(tmp_path, GOOD, fmt))
    assert t.name == "board"
    assert t.clock_hz == 64e6 and isinstance(t.clock_hz, float)
    assert t.sram_bytes == 262_144 and t.max_weights == 442_368
    assert t.sources == ("datasheet A", "estimate B")
    assert t.extra["adc_current_a"] == 0.0005
    assert t.energy_per_cycle() == pytest.approx(0.0033 * 3.0 / 64e6)
    assert t.battery_energy_j() == pytest.approx(225.0 * 3.6 * 3.0)  # mAh -> C (x3.6), times V
    with pytest.raises(TypeError):
        t.extra["adc_current_a"] = 1.0  # type: ignore[index]


def test_toml_and_json_agree_and_round_trip(tmp_path: Path) -> None:
    from_toml = load_target(write(tmp_path, GOOD, "toml"))
    from_json = load_target(write(tmp_path, GOOD, "json"))
    assert from_toml == from_json
    assert HardwareTarget.from_dict(from_toml.to_dict()) == from_toml
    path = tmp_path / "again.json"
    path.write_text(json.dumps(from_toml.to_dict()), encoding="utf-8")
    assert load_target(path) == from_toml
    # picklable and hashable (sent to worker processes, used as dict keys)
    assert pickle.loads(pickle.dumps(from_toml)) == from_toml
    assert hash(pickle.loads(pickle.dumps(from_toml))) == hash(from_toml)


def test_builtin_targets() -> None:
    names = builtin_target_names()
    assert set(names) >= {"cortex_m4_64mhz", "cortex_m7_480mhz"}
    for name in names:
        t = load_builtin_target(name)
        assert t.name == name
        assert t.sources and t.has_energy_model
        assert HardwareTarget.from_dict(t.to_dict()) == t
    m4 = load_builtin_target("cortex_m4_64mhz")
    assert m4.energy_per_cycle() == pytest.approx(3.3e-3 * 3.0 / 64e6)
    with pytest.raises(ConfigError, match="'cortex_m0'.*cortex_m4_64mhz"):
        load_builtin_target("cortex_m0")


def _without(key: str) -> dict[str, Any]:
    return {k: v for k, v in GOOD.items() if k != key}


BAD_CASES: list[tuple[str, dict[str, Any], tuple[str, ...]]] = [
    ("unknown key", {**GOOD, "clokc_hz": 1}, ("'clokc_hz'", "unknown field")),
    ("missing key", _without("clock_hz"), ("missing required field 'clock_hz'",)),
    ("wrong type", {**GOOD, "clock_hz": "fast"}, ("'clock_hz'", "'fast'", "number")),
    ("bool as number", {**GOOD, "cycles_per_mac": True}, ("'cycles_per_mac'", "number")),
    ("zero clock", {**GOOD, "clock_hz": 0}, ("'clock_hz'", "> 0", "got 0")),
    ("negative clock", {**GOOD, "clock_hz": -5.0}, ("'clock_hz'", "> 0", "-5.0")),
    ("fractional bytes", {**GOOD, "sram_bytes": 1.5}, ("'sram_bytes'", "integer", "1.5")),
    ("negative overhead", {**GOOD, "layer_overhead_cycles": -1}, ("'layer_overhead_cycles'", ">= 0")),
    ("empty name", {**GOOD, "name": " "}, ("'name'", "empty")),
    ("name not string", {**GOOD, "name": 3}, ("'name'", "string")),
    ("both energy models", {**GOOD, "energy_per_cycle_j": 1e-10}, ("'energy_per_cycle_j'", "'active_current_a'")),
    ("current without voltage", _without("voltage_v"), ("'active_current_a'", "'voltage_v'")),
    ("battery half given", _without("battery_voltage_v"), ("'battery_mah'", "'battery_voltage_v'")),
    ("sources not a list", {**GOOD, "sources": "datasheet"}, ("'sources'", "list of strings")),
    ("sources with a number", {**GOOD, "sources": ["a", 3]}, ("'sources'", "3")),
    ("extra not a table", {**GOOD, "extra": 3}, ("'extra'", "table")),
    ("extra non-number", {**GOOD, "extra": {"gain": "high"}}, ("'extra.gain'", "'high'")),
    ("future schema", {**GOOD, "schema_version": 2}, ("'schema_version'", "2")),
]


@pytest.mark.parametrize("fmt", ["toml", "json"])
@pytest.mark.parametrize(("case", "data", "needles"), BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_bad_target_files(tmp_path: Path, fmt: str, case: str, data: dict[str, Any], needles: tuple[str, ...]) -> None:
    path = write(tmp_path, data, fmt)
    with pytest.raises(ConfigError) as info:
        load_target(path)
    message = str(info.value)
    assert str(path) in message, message
    assert "\n" not in message
    for needle in needles:
        assert needle in message, message


def test_unreadable_target_files(tmp_path: Path) -> None:
    bad_toml = tmp_path / "broken.toml"
    bad_toml.write_text("name = \n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"broken\.toml: invalid TOML"):
        load_target(bad_toml)
    bad_json = tmp_path / "broken.json"
    bad_json.write_text("{", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"broken\.json: invalid JSON"):
        load_target(bad_json)
    not_table = tmp_path / "list.json"
    not_table.write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"list\.json: a hardware target must be a table"):
        load_target(not_table)
    with pytest.raises(ConfigError, match=r"nothing\.toml: hardware target file not found"):
        load_target(tmp_path / "nothing.toml")
    with pytest.raises(ConfigError, match=r"\.toml or \.json.*'\.yaml'"):
        load_target(tmp_path / "board.yaml")
