"""Training a PINN candidate with DeepXDE and scoring it against the reference solution.

:func:`train_pinn` is the whole procedure; :class:`PinnEstimator` calls it for a
study trial. Steps:

1. DeepXDE ``data.PDE`` on the problem's rectangle with ``num_domain``
   Hammersley collocation points (deterministic), less those within
   ``corner_margin`` times the smaller side of a corner (default 0: none are
   dropped; the built-in problems have ``r^2 log r`` corner singularities that
   no smooth network fits, and 0.05 helps every network, see the plugin
   README); with soft boundary conditions
   also ``num_boundary`` boundary points and a ``DirichletBC`` per field,
   weighted ``bc_weight``.
2. ``dde.Model`` around the candidate (wrapped in a ``deepxde.nn.pytorch.NN``)
   trained with Adam for ``iterations`` steps at learning rate ``lr`` (optional
   cosine decay to ``lr / 10``), then optionally L-BFGS for up to ``lbfgs``
   iterations (DeepXDE's ``set_LBFGS_options``).
3. Every loss evaluation DeepXDE makes (each Adam step, each L-BFGS function
   evaluation) is observed: a non-finite loss raises
   :class:`~nas_core.errors.TrialFailed` naming the phase, iteration and loss
   terms; the deadline is checked; and the parameters with the lowest training
   loss seen so far are kept. DeepXDE itself reports its best step but leaves
   the *last* weights in the network, and Adam at ``lr = 1e-3`` often ends on a
   loss spike, so the kept (best-loss) weights are restored before scoring
   (``restore_best=False`` scores the last weights). The training loss, not the
   reference, chooses them.
4. Scoring the weights the network ends with: the first field on an
   ``eval_n x eval_n`` grid (boundary included) against the reference
   (``rel_l2``, ``max_err``), at the box centre (``center_value``,
   ``center_ref``, ``center_rel_err``), and the mean absolute PDE residual over
   all equations on a ``residual_n x residual_n`` grid of cell centres
   (``pde_residual``).

What actually ran is reported: ``iterations_run`` (Adam steps) and
``lbfgs_iters_run`` (L-BFGS iterations counted by the PyTorch optimiser itself;
DeepXDE's PyTorch L-BFGS loop is known to stop before ``maxiter``, DeepXDE issues
1605, 1819, 1977), plus ``kept_iteration`` (Adam steps + L-BFGS iterations done
when the kept weights were evaluated), ``loss_final`` and ``loss_kept``.

Determinism: the collocation points are a Hammersley sequence and the initial
weights come from the caller (the study seeds torch per trial), so a trial is
deterministic given its seed; torch runs with ``threads`` intra-op threads
(default 1: on small, busy machines a second thread slows these tiny networks
down several times).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, fields, replace
from functools import lru_cache
from typing import Any, Callable, Mapping

import numpy as np
import torch

from nas_core.errors import ConfigError, TrialFailed
from nas_core.estimators.base import EvalContext, Estimator

from ._dde import import_deepxde
from .network import PinnNet
from .problems import Problem, resolve_problem

__all__ = ["METRICS", "PinnEstimator", "TrainConfig", "TrainResult", "train_pinn"]

#: metrics :func:`train_pinn` returns
METRICS = ("rel_l2", "max_err", "center_value", "center_ref", "center_rel_err", "pde_residual", "train_s",
           "iterations_run", "lbfgs_iters_run", "kept_iteration", "loss_final", "loss_kept")


@dataclass(frozen=True)
class TrainConfig:
    """Training and scoring settings (task options; ``iterations``, ``lbfgs``, ``lr``, ``num_domain`` are also
    fidelity keys: a study may train candidates cheaply, e.g. ``{"iterations": 500, "num_domain": 512}``)."""

    iterations: int = 2000
    lbfgs: int = 0
    lr: float = 1e-3
    decay: str = "none"
    num_domain: int = 1024
    num_boundary: int = 256
    bc_weight: float = 1.0
    eval_n: int = 101
    residual_n: int = 64
    threads: int = 1
    restore_best: bool = True
    corner_margin: float = 0.0

    def __post_init__(self) -> None:
        def integer(name: str, low: int) -> None:
            v = getattr(self, name)
            if isinstance(v, bool) and name == "lbfgs":
                v = 1000 if v else 0  # lbfgs=True: up to 1000 iterations
                object.__setattr__(self, name, v)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
                raise ConfigError(f"PINN option '{name}' must be an integer >= {low}, got {v!r}")
            object.__setattr__(self, name, int(v))

        integer("iterations", 0)
        integer("lbfgs", 0)
        for name, low in (("num_domain", 1), ("num_boundary", 1), ("eval_n", 3), ("residual_n", 1), ("threads", 1)):
            integer(name, low)
        for name in ("lr", "bc_weight"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (v > 0 and math.isfinite(v)):
                raise ConfigError(f"PINN option '{name}' must be a positive number, got {v!r}")
            object.__setattr__(self, name, float(v))
        if isinstance(self.corner_margin, bool) or not isinstance(self.corner_margin, (int, float)) \
                or not 0 <= self.corner_margin < 0.5:
            raise ConfigError(f"PINN option 'corner_margin' must be a number in [0, 0.5), got {self.corner_margin!r}")
        object.__setattr__(self, "corner_margin", float(self.corner_margin))
        if self.decay not in ("none", "cosine"):
            raise ConfigError(f"PINN option 'decay' must be 'none' or 'cosine', got {self.decay!r}")
        if not isinstance(self.restore_best, bool):
            raise ConfigError(f"PINN option 'restore_best' must be true or false, got {self.restore_best!r}")
        if self.iterations + self.lbfgs == 0:
            raise ConfigError("PINN training needs iterations > 0 or lbfgs > 0")

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    def with_fidelity(self, fidelity: Mapping[str, Any]) -> "TrainConfig":
        allowed = ("iterations", "lbfgs", "lr", "num_domain")
        unknown = set(fidelity) - set(allowed)
        if unknown:
            raise ConfigError(f"unknown PINN fidelity key(s) {sorted(unknown)}; allowed: {list(allowed)}")
        return replace(self, **dict(fidelity))


@dataclass
class TrainResult:
    metrics: dict[str, float]
    net: PinnNet
    history: list[tuple[int, float]] = field(default_factory=list)  # (iteration, training loss)


# ----------------------------------------------------------------------------
# DeepXDE glue


@lru_cache(maxsize=None)
def _dde_net_class() -> type:
    dde = import_deepxde()

    class DdeNet(dde.nn.pytorch.NN):
        """Hands a plain module to ``dde.Model`` (which wants DeepXDE's NN: regularizer, transforms)."""

        def __init__(self, net: torch.nn.Module) -> None:
            super().__init__()
            self.net = net

        def forward(self, inputs: torch.Tensor) -> torch.Tensor:
            x = inputs if self._input_transform is None else self._input_transform(inputs)
            y = self.net(x)
            return y if self._output_transform is None else self._output_transform(inputs, y)

    return DdeNet


@lru_cache(maxsize=None)
def _lbfgs_cap_class() -> type:
    dde = import_deepxde()

    class LbfgsCap(dde.callbacks.Callback):
        """Before each L-BFGS optimiser call, limit its iterations to what is left of ``maxiter``."""

        def __init__(self, maxiter: int) -> None:
            super().__init__()
            self.maxiter = maxiter

        def on_epoch_begin(self) -> None:
            opt = self.model.opt
            group = opt.param_groups[0]
            done = int(opt.state.get(group["params"][0], {}).get("n_iter", 0))
            left = max(1, self.maxiter - done)
            group["max_iter"] = min(group["max_iter"], left)
            group["max_eval"] = min(group["max_eval"], left * 5 // 4)

    return LbfgsCap


def _zero(x: np.ndarray) -> np.ndarray:
    return np.zeros((len(x), 1))


def _on_boundary(x: np.ndarray, on_boundary: bool) -> bool:
    return on_boundary


class _Monitor:
    """Sees every training-loss evaluation: NaN check, deadline, best weights, history."""

    def __init__(self, net: torch.nn.Module, term_names: list[str], weights: list[float],
                 check_deadline: Callable[[str], None] | None, lr: float) -> None:
        self.net = net
        self.term_names = term_names
        self.weights = torch.tensor(weights)
        self.check_deadline = check_deadline
        self.lr = lr
        self.phase = "Adam"
        self.model: Any = None
        self.adam_steps = 0
        self.best_loss = math.inf
        self.best_state: dict[str, torch.Tensor] | None = None
        self.best_iteration = 0
        self.last_loss = math.inf
        self.history: list[tuple[int, float]] = []

    def iteration(self) -> int:
        if self.model is None:
            return 0
        if self.phase == "L-BFGS":  # DeepXDE adds L-BFGS iterations to its step only after each optimiser call
            opt = self.model.opt
            state = opt.state.get(opt.param_groups[0]["params"][0], {})
            return self.adam_steps + int(state.get("n_iter", 0))
        return int(self.model.train_state.step)

    def wrap(self, losses_fn: Callable) -> Callable:
        def observed(*args: Any, **kwargs: Any) -> Any:
            losses = losses_fn(*args, **kwargs)
            self.observe(losses if isinstance(losses, (list, tuple)) else [losses])
            return losses

        return observed

    def observe(self, losses: list) -> None:
        with torch.no_grad():
            terms = torch.stack([torch.as_tensor(v).detach().reshape(()) for v in losses]).double()
            total = float((terms * self.weights.to(terms.dtype)).sum())
        it = self.iteration()
        if not math.isfinite(total):
            detail = ", ".join(f"{n}={float(v):.3g}" for n, v in zip(self.term_names, terms))
            params_ok = all(bool(torch.isfinite(p).all()) for p in self.net.parameters())
            cause = ("the loss terms are non-finite at finite weights: the PDE or its derivatives are undefined at "
                     "some collocation point" if params_ok else
                     f"the weights diverged (learning rate {self.lr:g} too high?)")
            raise TrialFailed(f"training loss became {total} during {self.phase} at iteration {it} "
                              f"({detail}): {cause}")
        self.last_loss = total
        if not self.history or self.history[-1][0] != it:
            self.history.append((it, total))
        if total < self.best_loss:
            self.best_loss = total
            self.best_iteration = it
            self.best_state = {k: v.detach().clone() for k, v in self.net.named_parameters()}
        if self.check_deadline is not None:
            self.check_deadline(f"during {self.phase} at iteration {it}")

    def restore_best(self) -> None:
        if self.best_state is None:
            return
        params = dict(self.net.named_parameters())
        with torch.no_grad():
            for k, v in self.best_state.items():
                params[k].copy_(v)


def train_pinn(problem: Problem, net: PinnNet, config: TrainConfig = TrainConfig(), *,
               check_deadline: Callable[[str], None] | None = None) -> TrainResult:
    """Train ``net`` on ``problem`` in place (see the module docstring) and score the weights it ends with."""
    dde = import_deepxde()
    if net.n_out != problem.n_out:
        raise ConfigError(f"network has {net.n_out} outputs but problem {problem.name!r} has fields {problem.fields}")
    threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        return _train(dde, problem, net, config, check_deadline)
    finally:
        torch.set_num_threads(threads)
        dde.grad.clear()


def _train(dde: Any, problem: Problem, net: PinnNet, config: TrainConfig,
           check_deadline: Callable[[str], None] | None) -> TrainResult:
    x0, x1, y0, y1 = problem.box
    geom = dde.geometry.Rectangle([x0, y0], [x1, y1])
    soft = not net.hard_bc
    bcs = [dde.icbc.DirichletBC(geom, _zero, _on_boundary, component=i) for i in range(problem.n_out)] if soft else []
    domain = collocation_points(problem, config)
    data = dde.data.PDE(geom, problem.pde, bcs, num_domain=0, num_boundary=config.num_boundary if soft else 0,
                        anchors=domain, num_test=None)
    n_pde = _count_pde_terms(problem)
    term_names = ([f"pde_{i}" for i in range(n_pde)] if n_pde > 1 else ["pde"]) + [f"bc_{f}" for f in problem.fields
                                                                                   if soft]
    weights = [1.0] * n_pde + ([config.bc_weight] * problem.n_out if soft else [])
    monitor = _Monitor(net, term_names, weights, check_deadline, config.lr)
    data.losses_train = monitor.wrap(data.losses_train)
    model = dde.Model(data, _dde_net_class()(net))
    monitor.model = model
    net.train(True)
    t0 = time.perf_counter()
    iterations_run = 0
    lbfgs_run = 0
    if config.iterations:
        decay = ("cosine", config.iterations, config.lr / 10) if config.decay == "cosine" else None
        model.compile("adam", lr=config.lr, decay=decay, loss_weights=weights, verbose=0)
        model.train(iterations=config.iterations, display_every=config.iterations, verbose=0)
        iterations_run = int(model.train_state.step)
    if config.lbfgs:
        monitor.phase, monitor.adam_steps = "L-BFGS", iterations_run
        dde.optimizers.set_LBFGS_options(maxiter=config.lbfgs)
        # DeepXDE sizes each optimiser call (iter_per_step) only when it is imported, from its default
        # maxiter of 15000, so one call runs up to 1000 iterations whatever maxiter is; and its loop only checks
        # maxiter between calls. Size the calls for this maxiter, and cap each call at what is left.
        options = dde.optimizers.config.LBFGS_options
        options["iter_per_step"] = min(1000, config.lbfgs)
        options["fun_per_step"] = options["maxfun"] * options["iter_per_step"] // options["maxiter"]
        model.compile("L-BFGS", loss_weights=weights, verbose=0)
        model.train(verbose=0, callbacks=[_lbfgs_cap_class()(config.lbfgs)])
        state = model.opt.state_dict()["state"]
        lbfgs_run = int(state[0]["n_iter"]) if 0 in state else 0
    train_s = time.perf_counter() - t0
    loss_final = monitor.last_loss
    if config.restore_best:
        monitor.restore_best()
    net.train(True)
    metrics = score(problem, net, config)
    metrics.update(train_s=train_s, iterations_run=float(iterations_run), lbfgs_iters_run=float(lbfgs_run),
                   kept_iteration=float(monitor.best_iteration if config.restore_best else iterations_run + lbfgs_run),
                   loss_final=loss_final, loss_kept=monitor.best_loss if config.restore_best else loss_final)
    return TrainResult(metrics, net, monitor.history)


def collocation_points(problem: Problem, config: TrainConfig) -> np.ndarray:
    """``num_domain`` Hammersley points of the box, without those within ``corner_margin * min side`` of a corner."""
    dde = import_deepxde()
    x0, x1, y0, y1 = problem.box
    points = dde.geometry.Rectangle([x0, y0], [x1, y1]).random_points(config.num_domain, random="Hammersley")
    if config.corner_margin > 0:
        r = config.corner_margin * min(x1 - x0, y1 - y0)
        d = np.min([np.hypot(points[:, 0] - cx, points[:, 1] - cy) for cx in (x0, x1) for cy in (y0, y1)], axis=0)
        points = points[d >= r]
    return points


def _count_pde_terms(problem: Problem) -> int:
    x = torch.zeros(2, 2, requires_grad=True)
    net_out = (x.sum(dim=1, keepdim=True) * torch.ones(1, problem.n_out)) ** 2
    dde = import_deepxde()
    try:
        out = problem.pde(x, net_out)
    finally:
        dde.grad.clear()
    return len(out) if isinstance(out, (list, tuple)) else 1


def predict(net: PinnNet, points: np.ndarray, chunk: int = 8192) -> np.ndarray:
    """Network outputs (N, n_out) at points (N, 2), float32 forward without gradients."""
    out = []
    with torch.no_grad():
        for i in range(0, len(points), chunk):
            out.append(net(torch.as_tensor(points[i:i + chunk], dtype=torch.float32)).double().numpy())
    return np.concatenate(out, axis=0)


def pde_residual(problem: Problem, net: PinnNet, points: np.ndarray) -> np.ndarray:
    """Absolute PDE residuals (N, n_equations) at points (N, 2)."""
    dde = import_deepxde()
    x = torch.as_tensor(points, dtype=torch.float32).requires_grad_(True)
    dde.grad.clear()
    try:
        res = problem.pde(x, net(x))
    finally:
        dde.grad.clear()
    res = res if isinstance(res, (list, tuple)) else [res]
    return np.column_stack([r.detach().double().abs().numpy().reshape(-1) for r in res])


def score(problem: Problem, net: PinnNet, config: TrainConfig = TrainConfig()) -> dict[str, float]:
    """Error metrics of ``net`` (first field) against the problem's reference, and its mean PDE residual."""
    _, _, points = problem.grid(config.eval_n)
    pred = predict(net, points)
    if not np.all(np.isfinite(pred)):
        raise TrialFailed("the trained network outputs non-finite values on the evaluation grid")
    ref = problem.reference_values(points)
    err = pred[:, 0] - ref
    center = problem.center_point[None, :]
    center_value = float(predict(net, center)[0, 0])
    center_ref = float(problem.reference_values(center)[0])
    x0, x1, y0, y1 = problem.box
    n = config.residual_n
    cx = x0 + (np.arange(n) + 0.5) * (x1 - x0) / n
    cy = y0 + (np.arange(n) + 0.5) * (y1 - y0) / n
    gx, gy = np.meshgrid(cx, cy)
    res = pde_residual(problem, net, np.column_stack([gx.ravel(), gy.ravel()]))
    return {
        "rel_l2": float(np.linalg.norm(err) / np.linalg.norm(ref)),
        "max_err": float(np.max(np.abs(err))),
        "center_value": center_value,
        "center_ref": center_ref,
        "center_rel_err": abs(center_value - center_ref) / abs(center_ref),
        "pde_residual": float(np.mean(res)),
    }


# ----------------------------------------------------------------------------
# the estimator


class PinnEstimator(Estimator):
    """Trains a candidate with :func:`train_pinn`; fidelity keys ``iterations``, ``lbfgs``, ``lr``, ``num_domain``.

    Picklable: holds the problem's spec (name or import path) and the config.
    """

    metric_names = METRICS

    def __init__(self, problem: Any, config: TrainConfig = TrainConfig()) -> None:
        self.problem_spec = problem
        self.config = config
        self._problem: Problem | None = problem if isinstance(problem, Problem) else None

    @property
    def problem(self) -> Problem:
        if self._problem is None:
            self._problem = resolve_problem(self.problem_spec)
        return self._problem

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        if not isinstance(self.problem_spec, Problem):
            state["_problem"] = None
        return state

    def default_fidelity(self) -> dict[str, Any]:
        return {"iterations": self.config.iterations, "lbfgs": self.config.lbfgs}

    def evaluate(self, ctx: EvalContext) -> dict[str, float]:
        config = self.config.with_fidelity(ctx.fidelity)
        net = ctx.model
        if not isinstance(net, PinnNet):
            raise ConfigError(f"the PINN estimator trains PinnNet models, got {type(net).__name__}")
        return train_pinn(self.problem, net, config, check_deadline=ctx.check_deadline).metrics
