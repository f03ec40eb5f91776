"""PDE problems for the PINN plugin: domain, PDE, symmetry and reference solution.

A :class:`Problem` is plain data plus two functions:

* ``pde(x, y)`` -- DeepXDE's residual signature: ``x`` are the points (N, 2),
  ``y`` the network outputs (N, len(fields)); returns the residual tensor, or a
  list of them (one per equation). :func:`laplacian` is the helper most
  problems need;
* ``reference(points)`` -- the exact (or series) solution of the *first* field
  at points of shape (N, 2), as a NumPy array (N,).

The domain is the rectangle ``box = (x_min, x_max, y_min, y_max)`` and every
field vanishes on its whole boundary (homogeneous Dirichlet conditions; a
problem with other boundary values is brought to this form by subtracting a
lifting function). Hard enforcement multiplies the network by
``(x - x_min)(x_max - x)(y - y_min)(y_max - y)`` (normalised to 1 at the
centre); soft enforcement adds a penalty on boundary points.

**Symmetry.** ``symmetry`` names a group of :data:`nas_pinn.equivariant.GROUPS`
acting on the plane about the box centre ``c``: an element ``g`` (a 2x2 matrix of
:func:`nas_pinn.equivariant.group_elements`) maps a point ``p`` to
``c + g (p - c)``. Every field is a *scalar* field (``field_actions`` all
``"scalar"``): the group acts on it by ``(g.u)(p) = u(g^-1 p)``, so a symmetric
solution satisfies ``u(c + g (p - c)) = u(p)``. :func:`check_symmetry` samples
points and group elements and raises if the declared symmetry does not hold for
the domain or the reference solution; the task runs it when it starts.

Built-in problems (:data:`BUILTIN_PROBLEMS`):

* ``poisson`` -- ``-lap u = 1`` on ``[-1, 1]^2`` (torsion / membrane), D4; the
  series solution gives ``u(0, 0) = 0.2946854``.
* ``plate`` -- Kirchhoff plate, simply supported square, uniform load:
  ``lap^2 w = q/D``, ``w = lap w = 0`` on the edges, solved as two coupled
  Poisson problems with the moment-sum field ``m = -lap w``:
  ``-lap m = q/D`` and ``-lap w = m``, both fields zero on the edges. Units:
  the square is ``[-1, 1]^2``, so the side is ``a = 2``, and ``q = D = 1``; the
  Navier double series gives the centre deflection ``0.0040624 q a^4 / D =
  0.0040624 * 16 = 0.0649976`` (the Navier coefficient is 0.00406235). D4.
  (``m`` is then exactly the ``poisson`` solution.)
* ``poisson-rect`` -- ``-lap u = 1`` on ``[-1, 1] x [-0.5, 0.5]``, D2 only: the
  problem the subgroup constraint rejects C4/D4 networks for.

Adding a problem (see the plugin README): build a :class:`Problem` in a module of
your own and point the task at it with ``problem="my_module:my_problem"``.
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Callable, Mapping

import numpy as np

from nas_core.errors import ConfigError

from .equivariant import GROUPS, group_elements, is_subgroup

__all__ = [
    "BUILTIN_PROBLEMS",
    "Problem",
    "check_symmetry",
    "describe_element",
    "laplacian",
    "navier_plate_deflection",
    "plate_problem",
    "poisson_problem",
    "poisson_rect_problem",
    "poisson_series",
    "resolve_problem",
    "symmetry_defects",
]

FIELD_ACTIONS = ("scalar",)


@dataclass(frozen=True)
class Problem:
    """A 2-D PDE on a rectangle with zero boundary values, its symmetry and reference.

    Example (Poisson with source 2: its solution is twice the built-in one)::

        >>> from nas_pinn.problems import Problem, laplacian, poisson_series
        >>> def pde(x, y):
        ...     return -laplacian(y, x) - 2.0
        >>> def reference(points):
        ...     return 2.0 * poisson_series(points)
        >>> p = Problem("poisson-2", pde, reference, symmetry="D4")
        >>> round(float(p.reference(p.center_point[None])[0]), 6)
        0.589371
    """

    name: str
    pde: Callable[[Any, Any], Any]
    reference: Callable[[np.ndarray], np.ndarray]
    box: tuple[float, float, float, float] = (-1.0, 1.0, -1.0, 1.0)
    fields: tuple[str, ...] = ("u",)
    symmetry: str = "D4"
    field_actions: tuple[str, ...] | None = None
    output_scale: tuple[float, ...] | None = None
    center_ref: float | None = None
    description: str = ""
    reference_note: str = ""

    def __post_init__(self) -> None:
        label = f"problem {self.name!r}"
        if not isinstance(self.name, str) or not self.name or any(c.isspace() for c in self.name):
            raise ConfigError(f"{label}: name must be a non-empty string without spaces")
        if not callable(self.pde) or not callable(self.reference):
            raise ConfigError(f"{label}: 'pde' and 'reference' must be callables")
        try:
            box = tuple(float(v) for v in self.box)
        except (TypeError, ValueError):
            raise ConfigError(f"{label}: box must be (x_min, x_max, y_min, y_max), got {self.box!r}") from None
        if len(box) != 4 or not all(math.isfinite(v) for v in box) or box[1] <= box[0] or box[3] <= box[2]:
            raise ConfigError(f"{label}: box must be (x_min, x_max, y_min, y_max) with min < max, got {self.box!r}")
        object.__setattr__(self, "box", box)
        fields = tuple(self.fields)
        if not fields or not all(isinstance(f, str) and f for f in fields) or len(set(fields)) != len(fields):
            raise ConfigError(f"{label}: fields must be distinct non-empty names, got {self.fields!r}")
        object.__setattr__(self, "fields", fields)
        if self.symmetry not in GROUPS:
            raise ConfigError(f"{label}: unknown symmetry {self.symmetry!r}; choose one of {', '.join(GROUPS)}")
        actions = tuple(self.field_actions) if self.field_actions is not None else ("scalar",) * len(fields)
        if len(actions) != len(fields) or any(a not in FIELD_ACTIONS for a in actions):
            raise ConfigError(f"{label}: field_actions must give one of {list(FIELD_ACTIONS)} per field "
                              f"(the equivariant networks output invariant scalars), got {self.field_actions!r}")
        object.__setattr__(self, "field_actions", actions)
        scale = tuple(self.output_scale) if self.output_scale is not None else (1.0,) * len(fields)
        if len(scale) != len(fields) or not all(isinstance(s, (int, float)) and s > 0 for s in scale):
            raise ConfigError(f"{label}: output_scale needs one positive number per field, got {self.output_scale!r}")
        object.__setattr__(self, "output_scale", tuple(float(s) for s in scale))

    @property
    def center_point(self) -> np.ndarray:
        """Centre of the box: the fixed point of the symmetry group and where ``center_value`` is read."""
        x0, x1, y0, y1 = self.box
        return np.array([(x0 + x1) / 2, (y0 + y1) / 2])

    @property
    def n_out(self) -> int:
        return len(self.fields)

    def act(self, element: np.ndarray, points: np.ndarray) -> np.ndarray:
        """Apply the 2x2 group element to points (N, 2) about the box centre: ``c + g (p - c)``."""
        c = self.center_point
        return c + (np.asarray(points, dtype=np.float64) - c) @ np.asarray(element, dtype=np.float64).T

    def act_on_fields(self, element: np.ndarray, values: np.ndarray) -> np.ndarray:
        """How ``element`` changes field values at corresponding points: scalars are unchanged."""
        return np.asarray(values)

    def reference_values(self, points: np.ndarray) -> np.ndarray:
        """The reference solution of the first field at points (N, 2), checked to be a finite (N,) array."""
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        values = np.asarray(self.reference(pts), dtype=np.float64).reshape(-1)
        if values.shape != (len(pts),) or not np.all(np.isfinite(values)):
            raise ConfigError(f"problem {self.name!r}: reference() must return {len(pts)} finite values for "
                              f"{len(pts)} points, got shape {values.shape}")
        return values

    def sample_points(self, n: int, rng: np.random.Generator) -> np.ndarray:
        x0, x1, y0, y1 = self.box
        return np.column_stack([rng.uniform(x0, x1, n), rng.uniform(y0, y1, n)])

    def grid(self, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(xs, ys, points)``: an ``n x n`` grid over the box (boundary included), points row-major in y."""
        x0, x1, y0, y1 = self.box
        xs, ys = np.linspace(x0, x1, n), np.linspace(y0, y1, n)
        gx, gy = np.meshgrid(xs, ys)
        return xs, ys, np.column_stack([gx.ravel(), gy.ravel()])

    def distance(self, points: Any) -> Any:
        """Hard-BC factor ``(x - x0)(x1 - x)(y - y0)(y1 - y) / (hx^2 hy^2)`` (1 at the centre, 0 on the edges).

        Works on NumPy arrays and torch tensors of shape (N, 2); returns (N, 1).
        It is invariant under every symmetry of the box about its centre.
        """
        x0, x1, y0, y1 = self.box
        hx2, hy2 = ((x1 - x0) / 2) ** 2, ((y1 - y0) / 2) ** 2
        x, y = points[:, 0:1], points[:, 1:2]
        return (x - x0) * (x1 - x) * (y - y0) * (y1 - y) / (hx2 * hy2)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "box": list(self.box), "fields": list(self.fields), "symmetry": self.symmetry,
                "description": self.description, "reference": self.reference_note}


# ----------------------------------------------------------------------------
# helpers for pde functions


def laplacian(y: Any, x: Any, component: int = 0) -> Any:
    """``d2y/dx2 + d2y/dy2`` of output ``component`` at points ``x``, with DeepXDE's cached autodiff."""
    from ._dde import import_deepxde

    dde = import_deepxde()
    return (dde.grad.hessian(y, x, component=component, i=0, j=0)
            + dde.grad.hessian(y, x, component=component, i=1, j=1))


# ----------------------------------------------------------------------------
# reference solutions


def _cosh_ratio(alpha: np.ndarray, y: np.ndarray, b: float) -> np.ndarray:
    """``cosh(alpha y) / cosh(alpha b)`` for |y| <= b without overflow."""
    ay = np.abs(y)
    return np.exp(alpha * (ay - b)) * (1 + np.exp(-2 * alpha * ay)) / (1 + np.exp(-2 * alpha * b))


def poisson_series(points: np.ndarray, box: tuple[float, float, float, float] = (-1.0, 1.0, -1.0, 1.0),
                   source: float = 1.0, n_terms: int = 400) -> np.ndarray:
    """Solution of ``-lap u = source`` on a rectangle with ``u = 0`` on its edges (series, Timoshenko & Goodier).

    With half-sides ``a`` (x) and ``b`` (y) and coordinates ``X, Y`` from the centre::

        u = source * [ (a^2 - X^2) / 2
                       - 16 a^2 / pi^3 * sum_{k odd} (-1)^((k-1)/2) / k^3
                                         * cosh(k pi Y / 2a) / cosh(k pi b / 2a) * cos(k pi X / 2a) ]

    (the parabola solves ``-u'' = 1`` in x; the harmonic series cancels it on
    ``Y = +-b``). The terms fall like ``1/k^3`` on those edges and exponentially
    inside; ``n_terms`` odd k are summed. ``u(0, 0) = 0.2946854`` on ``[-1, 1]^2``.
    """
    x0, x1, y0, y1 = box
    a, b = (x1 - x0) / 2, (y1 - y0) / 2
    p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    X = p[:, 0:1] - (x0 + x1) / 2
    Y = p[:, 1:2] - (y0 + y1) / 2
    k = np.arange(1, 2 * n_terms, 2, dtype=np.float64)[None, :]
    alpha = k * np.pi / (2 * a)
    sign = np.where(((k - 1) // 2) % 2 == 0, 1.0, -1.0)
    series = (sign / k**3 * _cosh_ratio(alpha, Y, b) * np.cos(alpha * X)).sum(axis=1)
    return source * ((a * a - X[:, 0] ** 2) / 2 - 16 * a * a / np.pi**3 * series)


def navier_plate_deflection(points: np.ndarray, box: tuple[float, float, float, float] = (-1.0, 1.0, -1.0, 1.0),
                            q: float = 1.0, D: float = 1.0, n_terms: int = 100) -> np.ndarray:
    """Deflection of a simply supported rectangular plate under uniform load ``q`` (Navier double series).

    With sides ``a``, ``b`` and coordinates ``X, Y`` from a corner::

        w = 16 q / (pi^6 D) * sum_{m, n odd} sin(m pi X / a) sin(n pi Y / b) / (m n (m^2/a^2 + n^2/b^2)^2)

    (Timoshenko & Woinowsky-Krieger, Theory of Plates and Shells, ch. 5). At the
    centre of a square this is ``0.00406235 q a^4 / D`` (their table: 0.00406).
    ``n_terms`` odd values of m and of n are summed.
    """
    x0, x1, y0, y1 = box
    a, b = x1 - x0, y1 - y0
    p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    k = np.arange(1, 2 * n_terms, 2, dtype=np.float64)
    sx = np.sin(np.pi * np.outer(p[:, 0] - x0, k) / a)
    sy = np.sin(np.pi * np.outer(p[:, 1] - y0, k) / b)
    m, n = np.meshgrid(k, k, indexing="ij")
    coef = 1.0 / (m * n * (m**2 / a**2 + n**2 / b**2) ** 2)
    return 16 * q / (np.pi**6 * D) * np.einsum("pm,mn,pn->p", sx, coef, sy)


# ----------------------------------------------------------------------------
# built-in problems (module-level functions, so problems pickle for worker processes)


def _poisson_pde(x: Any, y: Any) -> Any:
    return -laplacian(y, x) - 1.0


def _poisson_reference(points: np.ndarray) -> np.ndarray:
    return poisson_series(points)


def _plate_pde(x: Any, y: Any) -> list:
    # fields (w, m), m = -lap w:  -lap m = q/D = 1  and  -lap w = m
    return [-laplacian(y, x, component=1) - 1.0, -laplacian(y, x, component=0) - y[:, 1:2]]


def _plate_reference(points: np.ndarray) -> np.ndarray:
    return navier_plate_deflection(points)


_RECT_BOX = (-1.0, 1.0, -0.5, 0.5)


def _poisson_rect_reference(points: np.ndarray) -> np.ndarray:
    return poisson_series(points, box=_RECT_BOX)


def poisson_problem() -> Problem:
    """``-lap u = 1`` on ``[-1, 1]^2``, ``u = 0`` on the edges (D4)."""
    return Problem(
        name="poisson", pde=_poisson_pde, reference=_poisson_reference, fields=("u",), symmetry="D4",
        center_ref=0.2946854,
        description="Poisson (torsion/membrane): -lap u = 1 on [-1, 1]^2, u = 0 on the boundary",
        reference_note="single series (Timoshenko & Goodier), 400 terms; u(0, 0) = 0.2946854",
    )


def plate_problem() -> Problem:
    """Simply supported square Kirchhoff plate under uniform load, as two Poisson problems (D4).

    Side ``a = 2`` (the square ``[-1, 1]^2``), ``q = D = 1``: centre deflection
    ``0.0040624 * 16 = 0.0649976``. Fields ``(w, m)`` with ``m = -lap w``; the
    network predicts them divided by ``output_scale = (0.1, 0.3)``, their
    orders of magnitude.
    """
    return Problem(
        name="plate", pde=_plate_pde, reference=_plate_reference, fields=("w", "m"), symmetry="D4",
        output_scale=(0.1, 0.3), center_ref=0.0040624 * 16,
        description="Kirchhoff plate, simply supported square [-1, 1]^2 (a = 2), uniform load q/D = 1: "
                    "lap^2 w = 1, w = lap w = 0 on the edges, as -lap m = 1, -lap w = m (m = -lap w)",
        reference_note="Navier double series, 100 x 100 odd terms; w(0, 0) = 0.0040624 q a^4 / D = 0.0649976",
    )


def poisson_rect_problem() -> Problem:
    """``-lap u = 1`` on ``[-1, 1] x [-0.5, 0.5]`` (D2 only: no 90-degree symmetry)."""
    return Problem(
        name="poisson-rect", pde=_poisson_pde, reference=_poisson_rect_reference, box=_RECT_BOX, symmetry="D2",
        description="Poisson -lap u = 1 on the rectangle [-1, 1] x [-0.5, 0.5], u = 0 on the boundary",
        reference_note="single series (Timoshenko & Goodier), 400 terms",
    )


#: Built-in problems by name (factories returning a fresh :class:`Problem`).
BUILTIN_PROBLEMS: Mapping[str, Callable[[], Problem]] = MappingProxyType({
    "poisson": poisson_problem,
    "plate": plate_problem,
    "poisson-rect": poisson_rect_problem,
})


def resolve_problem(spec: Any) -> Problem:
    """A :class:`Problem` from a built-in name, a ``"module:attribute"`` path, or a Problem.

    The attribute may be a :class:`Problem` or a zero-argument callable returning
    one. Import paths keep study configs JSON-serialisable and let worker
    processes rebuild the problem.
    """
    if isinstance(spec, Problem):
        return spec
    if not isinstance(spec, str) or not spec:
        raise ConfigError(f"problem must be a built-in name ({', '.join(BUILTIN_PROBLEMS)}) or 'module:attribute', "
                          f"got {spec!r}")
    if spec in BUILTIN_PROBLEMS:
        return BUILTIN_PROBLEMS[spec]()
    if ":" not in spec:
        raise ConfigError(f"unknown problem {spec!r}; built-in problems: {', '.join(BUILTIN_PROBLEMS)}; "
                          "or give your own as 'module:attribute'")
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"problem {spec!r}: cannot import module {module_name!r} ({exc})") from None
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ConfigError(f"problem {spec!r}: module {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if callable(obj) and not isinstance(obj, Problem):
        obj = obj()
    if not isinstance(obj, Problem):
        raise ConfigError(f"problem {spec!r} is a {type(obj).__name__}, not a nas_pinn.problems.Problem")
    return obj


# ----------------------------------------------------------------------------
# symmetry


def describe_element(matrix: np.ndarray) -> str:
    """Words for a 2x2 rotation or mirror, e.g. ``'rotation by 90 deg'`` or ``'mirror x -> -x'``."""
    m = np.asarray(matrix, dtype=np.float64)
    if np.linalg.det(m) > 0:
        angle = round(math.degrees(math.atan2(m[1, 0], m[0, 0]))) % 360
        return "identity" if angle == 0 else f"rotation by {angle} deg"
    axis = round(math.degrees(math.atan2(m[1, 0], m[0, 0])) / 2) % 180
    return {0: "mirror y -> -y (across the x axis)", 90: "mirror x -> -x (across the y axis)",
            45: "mirror across the diagonal y = x", 135: "mirror across the anti-diagonal y = -x"}.get(
                axis, f"mirror across the line at {axis} deg")


def elements_outside(group: str, symmetry: str) -> list[str]:
    """Descriptions of the elements of ``group`` that are not in ``symmetry`` (empty for a subgroup)."""
    inside = {tuple(m.ravel()) for m in group_elements(symmetry)}
    return [describe_element(m) for m in group_elements(group) if tuple(m.ravel()) not in inside]


def symmetry_defects(problem: Problem, group: str | None = None, *, n_points: int = 64,
                     seed: int = 0) -> dict[str, float]:
    """For each element of ``group`` (default: the declared symmetry), how much it breaks the problem.

    The value is ``inf`` if the element maps sampled points outside the box (the
    domain is not invariant), else ``max |u(c + g (p - c)) - u(p)| / max |u(p)|``
    over ``n_points`` random points ``p`` (0 for a symmetry that holds).
    """
    group = problem.symmetry if group is None else group
    rng = np.random.default_rng(seed)
    points = problem.sample_points(n_points, rng)
    base = problem.reference_values(points)
    scale = max(float(np.max(np.abs(base))), 1e-300)
    x0, x1, y0, y1 = problem.box
    tol = 1e-9 * max(x1 - x0, y1 - y0)
    out: dict[str, float] = {}
    for g in group_elements(group):
        moved = problem.act(g, points)
        inside = ((moved[:, 0] >= x0 - tol) & (moved[:, 0] <= x1 + tol)
                  & (moved[:, 1] >= y0 - tol) & (moved[:, 1] <= y1 + tol))
        if not np.all(inside):
            out[describe_element(g)] = math.inf
            continue
        moved = np.column_stack([np.clip(moved[:, 0], x0, x1), np.clip(moved[:, 1], y0, y1)])
        values = problem.act_on_fields(g, problem.reference_values(moved))
        out[describe_element(g)] = float(np.max(np.abs(values - base))) / scale
    return out


def check_symmetry(problem: Problem, *, n_points: int = 64, seed: int = 0, rtol: float = 1e-4) -> None:
    """Raise :class:`ConfigError` unless the domain and reference are invariant under the declared group.

    Samples ``n_points`` random points of the box and applies every element of
    ``problem.symmetry`` (about the box centre); ``rtol`` is relative to the
    largest sampled value (the series references are exact to ~1e-6). The error
    names the first broken element and the largest subgroup that does hold.
    """
    defects = symmetry_defects(problem, n_points=n_points, seed=seed)
    broken = [(e, d) for e, d in defects.items() if not d <= rtol]
    if not broken:
        return
    element, defect = broken[0]
    what = ("maps the domain outside itself" if math.isinf(defect)
            else f"changes the reference solution by {defect:.3g} (relative to its maximum; tolerance {rtol:g})")
    holding = [g for g in GROUPS if is_subgroup(g, problem.symmetry)
               and all(defects[describe_element(m)] <= rtol for m in group_elements(g))]
    best = max(holding, key=lambda g: len(group_elements(g)))
    raise ConfigError(f"problem {problem.name!r} declares symmetry {problem.symmetry}, but the {element} {what}; "
                      f"the sampled reference holds only for {best}: declare symmetry={best!r} or fix the reference")
