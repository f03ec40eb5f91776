"""Equivariance, compatibility and API tests for nas_pinn.equivariant and nas_pinn.e2compat."""

from __future__ import annotations

import copy
import importlib
import importlib.metadata
import itertools
import math
import zlib
from functools import lru_cache

import numpy as np
import pytest
import torch

pytest.importorskip("e2cnn")

from nas_core.errors import ConfigError  # noqa: E402
from nas_pinn import e2compat  # noqa: E402
from nas_pinn.equivariant import (  # noqa: E402
    ACTIVATIONS,
    GROUPS,
    EquivariantMLP,
    _elements,
    _plane_repr,
    count_params,
    group_elements,
    group_order,
    is_subgroup,
    macs_per_point,
)

TOL = 1e-5
BROKEN = 100 * TOL  # a symmetry the network lacks must be violated by more than this
ROT90 = np.array([[0.0, -1.0], [1.0, 0.0]])


@lru_cache(maxsize=None)
def _net(group: str, activation: str = "tanh", residual: bool = False, **kwargs: object) -> EquivariantMLP:
    """One seeded float64 network per configuration, shared by the tests."""
    torch.manual_seed(zlib.crc32(repr((group, activation, residual, sorted(kwargs.items()))).encode()))
    return EquivariantMLP(group, depth=3, width_mult=2, activation=activation, residual=residual, **kwargs).double()


def _points(n: int = 16, dtype: torch.dtype = torch.float64, seed: int = 0) -> torch.Tensor:
    """Points in [-3, 3]^2: far enough out that symmetry breaking is well above TOL."""
    gen = torch.Generator().manual_seed(seed)
    return (6 * torch.rand(n, 2, generator=gen) - 3).to(dtype)


def _act(points: torch.Tensor, matrix: np.ndarray) -> torch.Tensor:
    """Apply the 2x2 matrix to each row (point) of ``points``."""
    return points @ torch.as_tensor(matrix, dtype=points.dtype).T


ALL_CONFIGS = list(itertools.product(GROUPS, ACTIVATIONS, (False, True)))


def _id(config: tuple[str, str, bool]) -> str:
    group, activation, residual = config
    return f"{group}-{activation}-{'res' if residual else 'plain'}"


# --------------------------------------------------------------------- geometry


@pytest.mark.parametrize("group", GROUPS)
def test_plane_representation_is_the_geometric_action(group: str) -> None:
    elements, matrices = _elements(group), group_elements(group)
    assert len(elements) == len(matrices) == group_order(group)
    rho = _plane_repr(group)
    for element, matrix in zip(elements, matrices):
        np.testing.assert_allclose(rho(element), matrix, atol=1e-12)


def test_group_elements_are_the_expected_geometry() -> None:
    as_set = lambda g: {tuple(m.ravel()) for m in group_elements(g)}  # noqa: E731
    identity, half_turn = (1.0, 0.0, 0.0, 1.0), (-1.0, 0.0, 0.0, -1.0)
    mirror_x, mirror_y = (-1.0, 0.0, 0.0, 1.0), (1.0, 0.0, 0.0, -1.0)  # x -> -x, y -> -y
    assert as_set("none") == {identity}
    assert as_set("C2") == {identity, half_turn}
    assert as_set("C4") == {identity, half_turn, tuple(ROT90.ravel()), tuple((-ROT90).ravel())}
    assert as_set("D2") == {identity, half_turn, mirror_x, mirror_y}
    assert len(as_set("D4")) == 8 and as_set("C4") | as_set("D2") <= as_set("D4")
    # e2cnn's flip element (1, 0) is the mirror across the y axis (axis = pi/2).
    np.testing.assert_array_equal(group_elements("D2")[2], np.diag([-1.0, 1.0]))
    for group in GROUPS:
        for m in group_elements(group):
            np.testing.assert_allclose(m @ m.T, np.eye(2))


def test_is_subgroup_table() -> None:
    expected = {
        "none": {"none", "C2", "C4", "D2", "D4"},
        "C2": {"C2", "C4", "D2", "D4"},
        "C4": {"C4", "D4"},
        "D2": {"D2", "D4"},
        "D4": {"D4"},
    }
    for a, b in itertools.product(GROUPS, GROUPS):
        assert is_subgroup(a, b) == (b in expected[a]), (a, b)


# ------------------------------------------------------------------ equivariance


@pytest.mark.parametrize("config", ALL_CONFIGS, ids=_id)
def test_each_block_is_equivariant(config: tuple[str, str, bool]) -> None:
    e2nn = e2compat.import_e2cnn().nn
    net = _net(*config)
    assert len(net.blocks) == 4  # lift, 2 hidden, head
    gen = torch.Generator().manual_seed(1)
    for block in net.blocks:
        x = torch.randn(8, block.in_type.size, 1, 1, generator=gen, dtype=torch.float64)
        y = block(e2nn.GeometricTensor(x, block.in_type)).tensor[:, :, 0, 0]
        for element in _elements(config[0]):
            rho_in = torch.as_tensor(block.in_type.representation(element), dtype=torch.float64)
            rho_out = torch.as_tensor(block.out_type.representation(element), dtype=torch.float64)
            gx = (x[:, :, 0, 0] @ rho_in.T)[:, :, None, None]
            gy = block(e2nn.GeometricTensor(gx, block.in_type)).tensor[:, :, 0, 0]
            err = (gy - y @ rho_out.T).abs().max().item()
            assert err < TOL, (type(block).__name__, element, err)


@pytest.mark.parametrize("config", ALL_CONFIGS, ids=_id)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
def test_network_output_is_invariant(config: tuple[str, str, bool], dtype: torch.dtype) -> None:
    net = copy.deepcopy(_net(*config)).to(dtype)
    p = _points(dtype=dtype)
    f = net(p)
    assert f.shape == (16, 1) and f.dtype == dtype
    assert f.std() > 1e-4  # not identically constant
    for g in group_elements(config[0]):
        err = (net(_act(p, g)) - f).abs().max().item()
        assert err < TOL, (g.tolist(), err)


@pytest.mark.parametrize("config", ALL_CONFIGS, ids=_id)
def test_forward_equals_the_geometric_blocks(config: tuple[str, str, bool]) -> None:
    """forward() (dense fast path) computes exactly what the e2cnn blocks compute."""
    e2nn = e2compat.import_e2cnn().nn
    net = copy.deepcopy(_net(*config))
    p = _points()
    for mode in (True, False):
        net.train(mode)
        geometric = net.forward_geometric(e2nn.GeometricTensor(p.reshape(-1, 2, 1, 1), net.in_field))
        torch.testing.assert_close(net(p), geometric.tensor.reshape(len(p), -1), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("group", GROUPS)
def test_invariance_about_a_center_and_vector_outputs(group: str) -> None:
    net = _net(group, "sin", True, n_out=2, n_vector_out=1, center=(0.5, 0.25))
    center = torch.tensor([0.5, 0.25], dtype=torch.float64)
    p = _points()
    out = net(p)
    assert out.shape == (16, 4)
    torch.testing.assert_close(net.export()(p), out)
    for g in group_elements(group):
        gout = net(center + _act(p - center, g))
        assert (gout[:, :2] - out[:, :2]).abs().max() < TOL
        assert (gout[:, 2:] - _act(out[:, 2:], g)).abs().max() < TOL


@pytest.mark.parametrize("activation", ["tanh", "sin"])
def test_odd_activation_networks_do_not_start_constant(activation: str) -> None:
    """e2cnn zero-initialises biases; with an odd activation and -I in the group
    that would make the invariant output identically zero."""
    torch.manual_seed(0)
    net = EquivariantMLP("C2", depth=2, width_mult=1, activation=activation).double()
    assert net(_points()).std() > 1e-4


def test_trivial_group_network_is_not_rotation_invariant() -> None:
    """Counter-check: without symmetry the same test must fail."""
    net = _net("none")
    p = _points()
    assert (net(_act(p, ROT90)) - net(p)).abs().max() > BROKEN


@pytest.mark.parametrize("group", GROUPS)
def test_networks_are_not_invariant_beyond_their_group(group: str) -> None:
    net = _net(group)
    p = _points()
    f = net(p)
    outside = [g for g in group_elements("D4") if not any(np.array_equal(g, h) for h in group_elements(group))]
    assert len(outside) == 8 - group_order(group)
    for g in outside:
        assert (net(_act(p, g)) - f).abs().max() > BROKEN, g.tolist()


# ----------------------------------------------------------------------- autograd


@pytest.mark.parametrize("activation", list(ACTIVATIONS))
@pytest.mark.parametrize("group", GROUPS)
def test_second_derivatives_match_finite_differences(group: str, activation: str) -> None:
    net = _net(group, activation, True)
    p = _points(4).requires_grad_(True)
    u = net(p)[:, 0]
    (du,) = torch.autograd.grad(u.sum(), p, create_graph=True)
    (d2u_dx2,) = torch.autograd.grad(du[:, 0].sum(), p)
    h = 1e-4
    shift = torch.tensor([h, 0.0], dtype=torch.float64)
    with torch.no_grad():
        fd = (net(p + shift) - 2 * net(p) + net(p - shift))[:, 0] / h**2
    torch.testing.assert_close(d2u_dx2[:, 0], fd, atol=1e-5, rtol=1e-4)


def _laplacian(net: torch.nn.Module, p: torch.Tensor, create_graph: bool = False) -> torch.Tensor:
    u = net(p)[:, 0]
    (du,) = torch.autograd.grad(u.sum(), p, create_graph=True)
    parts = [torch.autograd.grad(du[:, i].sum(), p, create_graph=True)[0][:, i] for i in range(2)]
    return parts[0] + parts[1]


@pytest.mark.parametrize("activation", list(ACTIVATIONS))
def test_biharmonic_is_finite_and_invariant(activation: str) -> None:
    """Delta^2 u (4th derivatives, plate problems) works and commutes with D4."""
    net = _net("D4", activation, True)

    def bilaplacian(points: torch.Tensor) -> torch.Tensor:
        points = points.clone().requires_grad_(True)
        lap = _laplacian(net, points)
        (dl,) = torch.autograd.grad(lap.sum(), points, create_graph=True)
        return sum(torch.autograd.grad(dl[:, i].sum(), points, retain_graph=True)[0][:, i] for i in range(2))

    p = _points(4)
    b = bilaplacian(p)
    assert torch.isfinite(b).all() and b.abs().max() > 0
    for g in group_elements("D4"):
        assert (bilaplacian(_act(p, g)) - b).abs().max() < 1e-6


def test_eval_mode_keeps_derivatives_and_refreshes_after_loading() -> None:
    torch.manual_seed(3)
    trained = EquivariantMLP("C4", depth=2, width_mult=1).double()
    original = EquivariantMLP("C4", depth=2, width_mult=1).double().eval()
    other = copy.deepcopy(original)  # the load hook must follow the copy
    keys = set(trained.state_dict())
    assert keys == set(other.state_dict())  # no mode-dependent cache keys
    other.load_state_dict(trained.state_dict())  # into an eval-mode network
    p = _points(5).requires_grad_(True)
    torch.testing.assert_close(other(p), trained(p))
    assert (original(p) - trained(p)).abs().max() > 1e-3  # the original kept its own weights
    lap_eval, lap_train = _laplacian(other, p), _laplacian(trained, p)
    torch.testing.assert_close(lap_eval, lap_train)
    other.train()
    assert set(other.state_dict()) == keys


# --------------------------------------------------------------- costs and export


@pytest.mark.parametrize("group", GROUPS)
def test_param_and_mac_counts(group: str) -> None:
    """1x1 R2Conv spans all intertwiners: dim Hom_G(V, k*regular) = k * dim V."""
    order, k, depth = group_order(group), 2, 3
    net = _net(group)
    expected_params = 3 * k + (depth - 1) * (k * k * order + k) + k + 1
    assert count_params(net) == expected_params
    channels = k * order
    assert macs_per_point(net) == 2 * channels + (depth - 1) * channels**2 + channels


@pytest.mark.parametrize("group", GROUPS)
def test_export_matches_and_costs_agree(group: str) -> None:
    net = _net(group, "gelu", True)
    plain = net.export()
    assert not any("e2cnn" in type(m).__module__ for m in plain.modules())
    p = _points()
    torch.testing.assert_close(plain(p), net(p))
    assert macs_per_point(plain) == macs_per_point(net)


def test_plain_float_dtype_changes_do_not_leak_between_networks() -> None:
    a = EquivariantMLP("D4", depth=2, width_mult=1)
    b = EquivariantMLP("D4", depth=2, width_mult=1)
    a.double()
    assert b(_points(dtype=torch.float32)).dtype == torch.float32


# ----------------------------------------------------------------------- errors


def test_bad_group_name_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="'C3'"):
        EquivariantMLP("C3")
    with pytest.raises(ConfigError, match="'O2'"):
        group_elements("O2")
    with pytest.raises(ConfigError, match="'d4'"):
        is_subgroup("none", "d4")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"activation": "relu"}, "'relu'"),
        ({"depth": 0}, "depth"),
        ({"width_mult": 1.5}, "width_mult"),
        ({"n_out": 0}, "n_out"),
        ({"in_type": "polar"}, "'polar'"),
    ],
)
def test_bad_options_are_config_errors(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        EquivariantMLP("C4", **kwargs)


def test_bad_input_shape() -> None:
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        _net("C2")(torch.zeros(4, 3, dtype=torch.float64))


# ----------------------------------------------------------------------- compat


def test_apply_is_idempotent() -> None:
    assert e2compat.apply() == e2compat.E2CNN_VERSION
    irreps_basis = importlib.import_module("e2cnn.kernels.irreps_basis")
    singleblock = importlib.import_module("e2cnn.nn.modules.r2_conv.basisexpansion_singleblock")
    kernel_utils = importlib.import_module("e2cnn.kernels.utils")
    before = (irreps_basis.R2FlipsSolution.__hash__, singleblock.torch, kernel_utils.np)
    e2compat.apply()
    e2compat.apply()
    assert e2compat.is_applied()
    assert before == (irreps_basis.R2FlipsSolution.__hash__, singleblock.torch, kernel_utils.np)


def test_basis_hash_works_under_numpy2() -> None:
    e2compat.apply()
    from e2cnn.kernels.irreps_basis import R2FlipsDiscreteRotationsSolution, R2FlipsSolution

    make = lambda: R2FlipsDiscreteRotationsSolution(  # noqa: E731
        4, "irrep_1,1", "irrep_1,1", axis=math.pi / 2, max_frequency=3
    )
    a, b = make(), make()
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    assert isinstance(hash(R2FlipsSolution(2, "irrep_1", "irrep_1", axis=0.0, max_frequency=2)), int)
    if int(np.__version__.split(".")[0]) >= 2:
        assert not hasattr(np.ndarray, "tostring")  # the method the original hash called


def test_psichi_accepts_python_scalars() -> None:
    e2compat.apply()
    from e2cnn.kernels.utils import psichi

    out = psichi(np.array([0.0, math.pi / 2]), s=1, k=1, gamma=0.0)
    np.testing.assert_allclose(out[:, :, 0, 1], [[0.0, 1.0], [1.0, 0.0]], atol=1e-12)


@pytest.mark.parametrize("group", GROUPS)
def test_r2conv_builds_and_runs(group: str) -> None:
    e2 = e2compat.import_e2cnn()
    gspace = _net(group).in_field.gspace
    field = e2.nn.FieldType(gspace, [gspace.regular_repr] * 2)
    conv = e2.nn.R2Conv(field, field, kernel_size=3, padding=1, recompute=True)
    masks = [m._mask for m in conv.modules() if hasattr(m, "_mask")]
    assert masks and all(m.dtype == torch.bool for m in masks)
    x = e2.nn.GeometricTensor(torch.randn(2, field.size, 5, 5), field)
    assert conv(x).tensor.shape == (2, field.size, 5, 5)


def test_version_mismatch_warns_and_missing_package_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(e2compat.importlib.metadata, "version", lambda name: "0.2.4")
    with pytest.warns(RuntimeWarning, match="0.2.4"):
        e2compat.apply()

    def missing(name: str) -> str:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(e2compat.importlib.metadata, "version", missing)
    with pytest.raises(ConfigError, match="e2cnn"):
        e2compat.apply()
