"""Reference solutions, the symmetry check and problem resolution of nas_pinn.problems."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from nas_core.errors import ConfigError
from nas_pinn.problems import (
    BUILTIN_PROBLEMS,
    Problem,
    check_symmetry,
    describe_element,
    navier_plate_deflection,
    plate_problem,
    poisson_problem,
    poisson_rect_problem,
    poisson_series,
    resolve_problem,
    symmetry_defects,
)
from nas_pinn.equivariant import group_elements


def _laplacian_fd(f, points: np.ndarray, h: float = 1e-3) -> np.ndarray:
    ex, ey = np.array([h, 0.0]), np.array([0.0, h])
    return (f(points + ex) + f(points - ex) + f(points + ey) + f(points - ey) - 4 * f(points)) / h**2


def _interior(n: int, box=(-1.0, 1.0, -1.0, 1.0), seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x0, x1, y0, y1 = box
    return np.column_stack([rng.uniform(x0 + 0.05, x1 - 0.05, n), rng.uniform(y0 + 0.05, y1 - 0.05, n)])


def test_poisson_series_centre_value_and_pde() -> None:
    assert poisson_series(np.zeros((1, 2)))[0] == pytest.approx(0.2946854, abs=5e-8)
    assert poisson_problem().center_ref == 0.2946854
    p = _interior(20)
    np.testing.assert_allclose(-_laplacian_fd(poisson_series, p), 1.0, atol=2e-4)
    edges = np.array([[1.0, 0.3], [-1.0, -0.7], [0.2, 1.0], [-0.9, -1.0], [1.0, 1.0]])
    np.testing.assert_allclose(poisson_series(edges), 0.0, atol=2e-6)


def test_rectangle_series_solves_its_problem() -> None:
    box = (-1.0, 1.0, -0.5, 0.5)
    f = lambda q: poisson_series(q, box=box)  # noqa: E731
    np.testing.assert_allclose(-_laplacian_fd(f, _interior(20, box)), 1.0, atol=2e-4)
    np.testing.assert_allclose(f(np.array([[1.0, 0.2], [0.3, 0.5], [-0.4, -0.5]])), 0.0, atol=2e-6)
    # long thin limit: the middle of a rectangle is below the 1-D parabola b^2 / 2 = 0.125
    assert 0.1 < f(np.zeros((1, 2)))[0] < 0.125


def test_navier_plate_coefficient_and_units() -> None:
    w0 = navier_plate_deflection(np.array([[0.5, 0.5]]), box=(0.0, 1.0, 0.0, 1.0))[0]  # a = 1, q = D = 1
    assert w0 == pytest.approx(0.0040624, rel=2e-5)        # Timoshenko: 0.00406 q a^4 / D
    plate = plate_problem()
    assert plate.center_ref == pytest.approx(0.0040624 * 16)  # [-1, 1]^2 has a = 2: a^4 = 16
    assert plate.reference_values(np.zeros((1, 2)))[0] == pytest.approx(0.0040624 * 16, rel=2e-5)


def test_plate_reference_is_two_coupled_poisson_problems() -> None:
    """-lap w = m with m the Poisson (torsion) solution, since -lap m = q/D = 1 and both vanish on the edges."""
    p = _interior(20)
    np.testing.assert_allclose(-_laplacian_fd(navier_plate_deflection, p), poisson_series(p), atol=3e-4)
    edges = np.array([[1.0, 0.3], [-1.0, -0.7], [0.2, 1.0], [-0.9, -1.0]])
    np.testing.assert_allclose(navier_plate_deflection(edges), 0.0, atol=1e-12)


@pytest.mark.parametrize("name", sorted(BUILTIN_PROBLEMS))
def test_builtin_problems_pass_their_symmetry_check(name: str) -> None:
    problem = resolve_problem(name)
    check_symmetry(problem)
    assert max(symmetry_defects(problem).values()) < 1e-8


def test_asymmetric_reference_is_caught() -> None:
    bad = dataclasses.replace(poisson_problem(), name="tilted",
                              reference=lambda q: poisson_series(q) + 0.05 * q[:, 0])
    with pytest.raises(ConfigError, match=r"problem 'tilted' declares symmetry D4, but the rotation by 90 deg "
                                          r"changes the reference solution by .*declare symmetry='none'"):
        check_symmetry(bad)


def test_partly_symmetric_reference_names_the_group_that_holds() -> None:
    # x^2 - y^2 is symmetric under both axis mirrors (D2) but changes sign under 90-degree rotations
    bad = dataclasses.replace(poisson_problem(), name="saddle",
                              reference=lambda q: poisson_series(q) + 0.05 * (q[:, 0] ** 2 - q[:, 1] ** 2))
    with pytest.raises(ConfigError, match="declare symmetry='D2'"):
        check_symmetry(bad)


def test_domain_without_the_declared_symmetry_is_caught() -> None:
    bad = dataclasses.replace(poisson_rect_problem(), symmetry="D4")
    with pytest.raises(ConfigError, match="maps the domain outside itself.*symmetry='D2'"):
        check_symmetry(bad)


def test_group_action_is_about_the_box_centre() -> None:
    shifted = Problem("shifted", poisson_problem().pde, lambda q: poisson_series(q, box=(0.0, 2.0, 1.0, 3.0)),
                      box=(0.0, 2.0, 1.0, 3.0))
    check_symmetry(shifted)
    rot90 = group_elements("C4")[1]
    np.testing.assert_allclose(shifted.act(rot90, np.array([[2.0, 2.0]])), [[1.0, 3.0]])


def test_describe_element() -> None:
    names = [describe_element(m) for m in group_elements("D4")]
    assert names[:4] == ["identity", "rotation by 90 deg", "rotation by 180 deg", "rotation by 270 deg"]
    assert set(names[4:]) == {"mirror x -> -x (across the y axis)", "mirror y -> -y (across the x axis)",
                              "mirror across the diagonal y = x", "mirror across the anti-diagonal y = -x"}


def test_resolve_problem() -> None:
    assert resolve_problem("plate").fields == ("w", "m")
    assert resolve_problem("nas_pinn.problems:poisson_rect_problem").symmetry == "D2"
    p = poisson_problem()
    assert resolve_problem(p) is p
    with pytest.raises(ConfigError, match="unknown problem 'heat'; built-in problems: poisson, plate"):
        resolve_problem("heat")
    with pytest.raises(ConfigError, match="cannot import module 'no_such_module'"):
        resolve_problem("no_such_module:x")
    with pytest.raises(ConfigError, match="has no attribute 'nope'"):
        resolve_problem("nas_pinn.problems:nope")
    with pytest.raises(ConfigError, match="is a int, not a nas_pinn.problems.Problem"):
        resolve_problem("nas_pinn.network:HARD_BC_FACTOR_MACS")


@pytest.mark.parametrize("kwargs, match", [
    ({"symmetry": "D8"}, "unknown symmetry 'D8'"),
    ({"box": (1.0, -1.0, -1.0, 1.0)}, "box must be"),
    ({"fields": ("u", "u")}, "fields must be distinct"),
    ({"field_actions": ("vector",)}, "field_actions"),
    ({"output_scale": (0.0,)}, "output_scale"),
    ({"name": "has space"}, "name must be"),
])
def test_bad_problem_definitions_are_config_errors(kwargs: dict, match: str) -> None:
    base = {"name": "p", "pde": poisson_problem().pde, "reference": poisson_series}
    with pytest.raises(ConfigError, match=match):
        Problem(**{**base, **kwargs})


def test_reference_must_return_finite_values() -> None:
    p = Problem("p", poisson_problem().pde, lambda q: np.full(len(q), np.nan))
    with pytest.raises(ConfigError, match="reference\\(\\) must return 3 finite values"):
        p.reference_values(np.zeros((3, 2)))
