"""The PINN plugin end to end: conformance, invariance of built networks, costs, constraint, training, failures."""

from __future__ import annotations

import math
import textwrap
import time

import numpy as np
import pytest
import torch

pytest.importorskip("e2cnn")
pytest.importorskip("deepxde")

from nas_core.errors import ConfigError, TrialFailed, TrialTimeout  # noqa: E402
from nas_core.estimators.base import EvalContext  # noqa: E402
from nas_core.executors import Evaluator, Job  # noqa: E402
from nas_core.hardware import load_target  # noqa: E402
from nas_core.plugins import Registry  # noqa: E402
from nas_core.space import Architecture  # noqa: E402
from nas_core.store import Store, TrialState  # noqa: E402
from nas_core.study import StudyConfig, run_study  # noqa: E402
from nas_core.testing import check_plugin  # noqa: E402
from nas_pinn.equivariant import count_params, group_elements, macs_per_point  # noqa: E402
from nas_pinn.network import PinnNet, pinn_costs  # noqa: E402
from nas_pinn.plugin import TARGET_FILES, TARGETS_DIR, load_pinn_target, plugin  # noqa: E402
from nas_pinn.problems import resolve_problem  # noqa: E402
from nas_pinn.space import PinnSpace, build_network  # noqa: E402
from nas_pinn.task import PinnTask  # noqa: E402
from nas_pinn.train import TrainConfig, train_pinn  # noqa: E402

#: tiny training settings: every training here takes well under a second
FAST = {"num_domain": 48, "num_boundary": 16, "eval_n": 11, "residual_n": 4}
BASE = {"depth": 2, "channels": 8, "activation": "tanh", "block": "plain", "bc": "hard"}


def arch(**kw) -> Architecture:
    values = {"group": "D4", **BASE, **kw}
    if values["group"] == "none":
        values.setdefault("fourier", 0)
    return Architecture(values)


def points(n: int = 32, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return (2 * torch.rand(n, 2, generator=gen) - 1).double()


def max_defect(net: torch.nn.Module, group: str, center=(0.0, 0.0)) -> float:
    net = net.double()
    p = points()
    c = torch.tensor(center, dtype=torch.float64)
    with torch.no_grad():
        base = net(p + c)
        return max(float((net(c + p @ torch.as_tensor(g).T) - base).abs().max()) for g in group_elements(group))


# ------------------------------------------------------------------------------ plugin contract


def test_conformance_kit_with_a_short_training() -> None:
    check_plugin(plugin(), task_options=FAST, train=True, fidelity={"iterations": 2})


def test_targets_load_with_sources() -> None:
    for key, file in TARGET_FILES.items():
        target = load_target(TARGETS_DIR / file)
        assert target == load_pinn_target(key)
        assert target.sources and any("ESTIMATE" in s for s in target.sources)
        assert target.extra["cycles_per_activation"] > 0 and target.has_energy_model
    h7 = load_pinn_target("stm32h7")
    assert (h7.clock_hz, h7.sram_bytes, h7.flash_bytes) == (480e6, 1024 * 1024, 2 * 1024 * 1024)


# ------------------------------------------------------------------------------ symmetry of the built networks


@pytest.mark.parametrize("problem", ["poisson", "plate"])
@pytest.mark.parametrize("bc, block, activation", [("hard", "plain", "tanh"), ("soft", "residual", "sin"),
                                                   ("hard", "residual", "gelu")])
def test_full_network_is_invariant_under_the_problem_group(problem: str, bc: str, block: str, activation: str) -> None:
    torch.manual_seed(0)
    net = PinnSpace(problem).build(arch(bc=bc, block=block, activation=activation))
    assert isinstance(net, PinnNet) and net.n_out == len(resolve_problem(problem).fields)
    assert max_defect(net, "D4") < 1e-5


def test_invariance_survives_training() -> None:
    problem = resolve_problem("plate")
    torch.manual_seed(1)
    net = build_network(arch(block="residual"), problem)
    train_pinn(problem, net, TrainConfig(iterations=3, **FAST))
    assert max_defect(net, "D4") < 1e-5


def test_smaller_groups_and_fourier_features_are_not_fully_invariant() -> None:
    torch.manual_seed(0)
    c4 = PinnSpace("poisson").build(arch(group="C4"))
    assert max_defect(c4, "C4") < 1e-5 and max_defect(c4, "D4") > 1e-3  # rotations only, no mirrors
    fourier = PinnSpace("poisson").build(arch(group="none", fourier=16))
    assert max_defect(fourier, "C2") > 1e-3


def test_invariance_about_the_centre_of_a_shifted_box(tmp_path) -> None:
    problem = resolve_problem("poisson-rect")
    torch.manual_seed(0)
    net = build_network(arch(group="D2", bc="hard"), problem)
    assert max_defect(net, "D2") < 1e-5
    with torch.no_grad():  # hard boundary condition: exactly zero on the edges
        edge = torch.tensor([[1.0, 0.2], [-0.3, 0.5], [-1.0, -0.5]], dtype=torch.float64)
        assert float(net(edge).abs().max()) == 0.0


# ------------------------------------------------------------------------------ costs


def test_costs_of_an_equivariant_network() -> None:
    torch.manual_seed(0)
    net = PinnSpace("poisson").build(arch(depth=3, channels=32))
    costs = pinn_costs(net, load_pinn_target("stm32h7"), grid_n=64)
    assert costs["params"] == count_params(net) < costs["params_dense"] == 2 * 32 + 32 + 2 * (32 * 32 + 32) + 33
    assert costs["macs_per_point"] == macs_per_point(net) + 4 + 1 == 2 * 32 + 2 * 32 * 32 + 32 + 5
    assert costs["activations_per_point"] == 96 and costs["layers"] == 4
    cycles = 2.0 * costs["macs"] + 60 * 96 + 200 * 4
    assert costs["latency_ms"] == pytest.approx(cycles / 480e6 * 1e3)
    # 256 bytes of activations per point: the 512 KB arena holds 2048 points, so 2 tiles pay the layer overhead
    assert costs["peak_act_bytes"] == 4 * (32 + 32)
    assert costs["grid_latency_ms"] == pytest.approx((4096 * (cycles - 800) + 2 * 800) / 480e6 * 1e3)
    assert costs["energy_uj"] == pytest.approx(cycles * 0.135 * 3.3 / 480e6 * 1e6)


def test_costs_of_a_deepxde_fnn() -> None:
    from nas_pinn._dde import import_deepxde

    dde = import_deepxde()
    fnn = dde.nn.FNN([2, 32, 32, 32, 1], "tanh", "Glorot uniform")
    net = PinnNet(fnn, box=(-1, 1, -1, 1), output_scale=(1.0,), hard_bc=False)
    costs = pinn_costs(net, load_pinn_target("raspberry-pi5"))
    assert costs["params"] == costs["params_dense"] == 2241
    assert costs["macs_per_point"] == 2144 and costs["peak_act_bytes"] == 4 * 64


# ------------------------------------------------------------------------------ physics as a constraint


def test_rejection_reason_names_the_missing_symmetry() -> None:
    task = PinnTask(PinnSpace("poisson"), problem="poisson-rect")
    assert task.rejections(arch(group="D2"), {}) == [] and task.rejections(arch(group="C2"), {}) == []
    (reason,) = task.rejections(arch(group="C4"), {})
    assert reason == ("group C4 is not a subgroup of the symmetry D2 of problem 'poisson-rect': the solution is not "
                      "invariant under the rotation by 90 deg, which a C4-invariant network cannot represent")
    assert PinnTask(PinnSpace("poisson")).rejections(arch(group="D4"), {}) == []


def _restrict(groups: list[str]) -> dict:
    return {"name": "tiny", "dimensions": [
        {"type": "categorical", "name": "group", "choices": groups},
        {"type": "integer", "name": "depth", "low": 2, "high": 2},
        {"type": "categorical", "name": "channels", "choices": [8]},
        {"type": "categorical", "name": "activation", "choices": ["tanh", "sin"]},
        {"type": "categorical", "name": "block", "choices": ["plain"]},
        {"type": "categorical", "name": "bc", "choices": ["hard"]},
        {"type": "categorical", "name": "fourier", "choices": [0], "when": {"group": ["none"]}},
    ]}


def test_subgroup_rejection_in_a_real_study(tmp_path) -> None:
    cfg = StudyConfig(space="pinn/poisson", budget=2, strategy="random", seed=0, fidelity={"iterations": 2},
                      task_options={"problem": "poisson-rect", **FAST}, restrict=_restrict(["D2", "D4"]),
                      target="pinn/stm32h7", objectives=("rel_l2:min", "params:min"))
    summary = run_study(cfg, tmp_path, registry=Registry([plugin()], discover=False))
    assert summary.complete == 2 and summary.rejected >= 1
    with Store.open(tmp_path / "study.db") as st:
        rejected = st.trials([TrialState.REJECTED])
        done = st.trials([TrialState.COMPLETE])
    assert {t.arch["group"] for t in rejected} == {"D4"} and {t.arch["group"] for t in done} == {"D2"}
    assert all("group D4 is not a subgroup of the symmetry D2" in t.reason and not t.metrics for t in rejected)
    assert all(t.metrics["iterations_run"] == 2 and math.isfinite(t.metrics["rel_l2"]) for t in done)
    assert all("grid_latency_ms" in t.costs for t in done)


def test_a_problem_whose_symmetry_does_not_hold_is_refused_by_the_task(tmp_path, monkeypatch) -> None:
    (tmp_path / "claims_problems.py").write_text(textwrap.dedent("""
        import dataclasses
        from nas_pinn.problems import poisson_rect_problem
        square_claim = dataclasses.replace(poisson_rect_problem(), name="claims-d4", symmetry="D4")
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError, match="problem 'claims-d4' declares symmetry D4, but the rotation by 90 deg"):
        PinnTask(PinnSpace("poisson"), problem="claims_problems:square_claim")


# ------------------------------------------------------------------------------ training and failures


NAN_PROBLEM = """
    import torch
    from nas_pinn.problems import laplacian, poisson_problem, Problem

    def pde(x, y):  # log of a negative number: NaN at every collocation point
        return -laplacian(y, x) - torch.log(x[:, 0:1] - 5.0)

    nan_source = Problem("nan-source", pde, poisson_problem().reference)
"""


def test_nan_in_training_is_a_failed_trial_with_its_cause(tmp_path, monkeypatch) -> None:
    (tmp_path / "nan_problems.py").write_text(textwrap.dedent(NAN_PROBLEM))
    monkeypatch.syspath_prepend(str(tmp_path))
    problem = resolve_problem("nan_problems:nan_source")
    torch.manual_seed(0)
    with pytest.raises(TrialFailed, match=r"training loss became nan during Adam at iteration 0 \(pde=nan\): the "
                                          "loss terms are non-finite at finite weights"):
        train_pinn(problem, build_network(arch(), problem), TrainConfig(iterations=5, **FAST))
    cfg = StudyConfig(space="pinn/poisson", budget=1, strategy="random", seed=0, fidelity={"iterations": 5},
                      task_options={"problem": "nan_problems:nan_source", **FAST}, restrict=_restrict(["D4"]))
    summary = run_study(cfg, tmp_path / "study", registry=Registry([plugin()], discover=False))
    assert summary.failed == 1
    with Store.open(tmp_path / "study" / "study.db") as st:
        (trial,) = st.trials([TrialState.FAILED])
    assert trial.error.startswith("TrialFailed: training loss became nan during Adam at iteration 0")


def test_diverged_weights_are_named_as_the_cause() -> None:
    problem = resolve_problem("poisson")
    torch.manual_seed(0)
    net = build_network(arch(group="none", fourier=0), problem)
    with torch.no_grad():
        next(net.parameters()).fill_(float("inf"))
    with pytest.raises(TrialFailed, match="the weights diverged"):
        train_pinn(problem, net, TrainConfig(iterations=3, **FAST))


def _evaluate(task: PinnTask, a: Architecture, seed: int, fidelity: dict) -> dict:
    result = Evaluator(task)(Job(1, a.to_json(), seed, fidelity))
    assert result.ok, result.error
    return {k: v for k, v in result.metrics.items() if k != "train_s"}


def test_training_is_deterministic_under_the_seed_and_reports_what_ran() -> None:
    task = PinnTask(PinnSpace("plate"), **FAST)
    a = arch(group="C2", bc="soft")
    first = _evaluate(task, a, 7, {"iterations": 3, "lbfgs": 4})
    assert first == _evaluate(task, a, 7, {"iterations": 3, "lbfgs": 4})
    assert first != _evaluate(task, a, 8, {"iterations": 3, "lbfgs": 4})
    assert first["iterations_run"] == 3 and 1 <= first["lbfgs_iters_run"] <= 4
    assert first["loss_kept"] <= first["loss_final"]
    assert set(task.estimator().metric_names) <= set(first) | {"train_s"}
    assert first["center_ref"] == pytest.approx(0.0040624 * 16, rel=2e-5)


def test_kept_weights_are_the_best_seen_and_are_the_ones_scored() -> None:
    problem = resolve_problem("poisson")
    torch.manual_seed(0)
    net = build_network(arch(), problem)
    config = TrainConfig(iterations=30, lr=0.3, **FAST)  # a large step size makes the loss jump about
    result = train_pinn(problem, net, config)
    losses = [loss for _, loss in result.history]
    assert result.metrics["loss_kept"] == min(losses)
    assert result.metrics["kept_iteration"] == min(result.history, key=lambda h: h[1])[0]
    from nas_pinn.train import score

    assert score(problem, net, config)["rel_l2"] == result.metrics["rel_l2"]  # the net holds the kept weights


def test_deadline_is_respected() -> None:
    task = PinnTask(PinnSpace("poisson"), **FAST)
    a = arch()
    torch.manual_seed(0)
    ctx = EvalContext(a, task.space.build(a), 0, {"iterations": 1000}, time.monotonic() - 1)
    with pytest.raises(TrialTimeout, match="during Adam at iteration 0"):
        task.estimator().evaluate(ctx)


def test_bad_options_and_fidelity_are_config_errors() -> None:
    with pytest.raises(ConfigError, match=r"unknown option\(s\) \['epochs'\]"):
        PinnTask(PinnSpace("poisson"), epochs=3)
    with pytest.raises(ConfigError, match="'iterations' must be an integer >= 0"):
        PinnTask(PinnSpace("poisson"), iterations=-1)
    with pytest.raises(ConfigError, match="unknown problem"):
        PinnTask(PinnSpace("poisson"), problem="heat")
    task = PinnTask(PinnSpace("poisson"), **FAST)
    a = arch()
    ctx = EvalContext(a, task.space.build(a), 0, {"epochs": 3})
    with pytest.raises(ConfigError, match=r"unknown PINN fidelity key\(s\) \['epochs'\]"):
        task.estimator().evaluate(ctx)


def test_other_deepxde_backend_is_a_config_error(monkeypatch) -> None:
    import sys

    from nas_pinn._dde import import_deepxde

    monkeypatch.delitem(sys.modules, "deepxde")
    monkeypatch.setenv("DDE_BACKEND", "jax")
    with pytest.raises(ConfigError, match="DDE_BACKEND is set to 'jax'"):
        import_deepxde()


def test_space_pickles_without_its_problem_and_rebinds() -> None:
    import pickle

    space = PinnSpace("plate")
    assert space.problem.name == "plate"
    clone = pickle.loads(pickle.dumps(space))
    assert clone._problem is None and clone.problem.fields == ("w", "m")
    rect = space.for_problem("poisson-rect")
    assert rect.problem.symmetry == "D2" and space.problem.name == "plate" and rect.to_dict() == space.to_dict()
    np.testing.assert_equal(rect.problem.center_point, [0.0, 0.0])


README_PROBLEM = '''
import numpy as np
from nas_pinn.problems import Problem, laplacian

def pde(x, u):                      # -lap u = 2 pi^2 sin(pi x) sin(pi y) on [0, 1]^2  (u = 0 on the edges)
    import torch
    return -laplacian(u, x) - 2 * np.pi**2 * torch.sin(np.pi * x[:, 0:1]) * torch.sin(np.pi * x[:, 1:2])

def reference(p):
    return np.sin(np.pi * p[:, 0]) * np.sin(np.pi * p[:, 1])

sine = Problem("sine", pde, reference, box=(0, 1, 0, 1), symmetry="D4")
'''


def test_the_readme_way_to_add_a_problem_works(tmp_path, monkeypatch) -> None:
    (tmp_path / "readme_problems.py").write_text(README_PROBLEM)  # (module names must differ between tests)
    monkeypatch.syspath_prepend(str(tmp_path))
    task = PinnTask(PinnSpace("poisson"), problem="readme_problems:sine", **FAST)  # runs the symmetry check
    a = arch(bc="hard")
    metrics = _evaluate(task, a, 0, {"iterations": 2})
    assert metrics["center_ref"] == pytest.approx(1.0) and metrics["iterations_run"] == 2
    torch.manual_seed(0)
    assert max_defect(task.space.build(a), "D4", center=(0.5, 0.5)) < 1e-5


def test_corner_margin_drops_only_points_near_corners() -> None:
    from nas_pinn.train import collocation_points

    problem = resolve_problem("poisson-rect")  # smaller side 1: a margin of 0.1 is a distance of 0.1
    full = collocation_points(problem, TrainConfig(num_domain=400))
    kept = collocation_points(problem, TrainConfig(num_domain=400, corner_margin=0.1))
    corners = np.array([[-1.0, -0.5], [-1.0, 0.5], [1.0, -0.5], [1.0, 0.5]])
    dist = lambda p: np.min(np.linalg.norm(p[:, None, :] - corners[None], axis=2), axis=1)  # noqa: E731
    assert len(full) == 400 and 0 < len(full) - len(kept) < 20
    assert dist(kept).min() >= 0.1 and np.array_equal(full[dist(full) >= 0.1], kept)
    with pytest.raises(ConfigError, match="corner_margin"):
        TrainConfig(corner_margin=0.7)
