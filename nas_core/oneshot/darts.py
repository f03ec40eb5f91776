"""DARTS: differentiable architecture search (Liu, Simonyan & Yang, ICLR 2019), hardware-aware.

Every decision of a space with mixed-op support (:class:`~nas_core.oneshot.mixed.MixedOpSupport`)
gets architecture parameters ``alpha``; each mixed op outputs the
``softmax(alpha)``-weighted sum of its candidates. The network weights ``w`` and
``alpha`` are optimised in alternation on two disjoint halves of the training
split (stratified, seeded), a bi-level problem::

    min_alpha  L_val(w*(alpha), alpha) + lambda * E_alpha[cost] / cost_ref
    s.t.       w*(alpha) = argmin_w L_train(w, alpha)

* **first order** (``order=1``): ``w*`` is the current ``w``;
* **second order** (``order=2``): one virtual SGD step ``w' = w - xi grad_w L_train``
  and the finite-difference Hessian-vector product of the paper (eq. 7-8).

**Hardware penalty.** ``E_alpha[cost] = fixed + sum_ops sum_i softmax(alpha)_i c_i``
where ``c_i`` is the MACs (or, on a target, the analytic latency or energy,
which are linear in MACs and layers) of candidate ``i`` measured on the input
that op sees (:func:`~nas_core.oneshot.mixed.candidate_costs`). It is linear in
the softmax, so differentiable; ``cost_ref`` (default: the expected cost under
uniform weights) makes ``lambda`` unit-free.

**Derivation.** The discrete architecture takes the argmax of ``alpha`` for
every decision (:meth:`DARTS.derive`).

**Guard against collapse into parameter-free operations** (skip connections,
pooling: DARTS' known failure, Zela et al. ICLR 2020; Chen et al. P-DARTS 2019).
Two mechanisms, both on by default:

1. *Parameter-free limit at derivation* (P-DARTS): at most ``max_param_free``
   decisions may end on a parameter-free candidate; beyond that, the ones whose
   argmax probability is lowest switch to their best candidate with parameters.
   The switches are reported in the result (``guard_changes``).
2. *Hessian early stopping* (DARTS-ES, Zela et al. 2020): after every epoch the
   dominant eigenvalue of the Hessian of the validation loss with respect to
   ``alpha`` is estimated by power iteration (Hessian-vector products on one
   fixed validation batch). When its running mean (over ``es_smooth`` epochs)
   has grown by more than ``es_ratio`` over ``es_window`` epochs -- checked from
   epoch ``es_start`` on -- the search stops and restores ``alpha`` from
   ``es_window`` epochs earlier: a sharp minimum in alpha is what precedes the
   collapse and the poor generalisation of the derived network. Searches
   shorter than ``es_start`` epochs never trigger it (guard 1 still applies).

No temperature schedule is used (softmax temperature 1 throughout).

Example::

    >>> from nas_core.examples.digits import DigitsCNNSpace, digits_search_data
    >>> from nas_core.oneshot import DARTS, DARTSConfig, mixed_support
    >>> import nas_core.examples.digits_oneshot  # registers the digits mixed-op support
    >>> support = mixed_support(DigitsCNNSpace())
    >>> result = DARTS(support, digits_search_data, DARTSConfig(epochs=1, data_fraction=0.2), seed=0).search()  # doctest: +SKIP
    >>> DigitsCNNSpace().contains(result.arch)  # doctest: +SKIP
    True
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from nas_core.errors import ConfigError
from nas_core.estimators.lightning_trainer import ClassificationData
from nas_core.oneshot._data import class_weight, resolve, stratified_halves, stratified_subset, to_split
from nas_core.oneshot.base import OneShotResult, OneShotSearcher
from nas_core.oneshot.mixed import (
    MixedOpSupport,
    candidate_costs,
    decisions,
    expected_cost,
    mixed_ops,
    set_weights,
)
from nas_core.space import Architecture

__all__ = ["DARTS", "DARTSConfig", "DARTSResult", "derive_choices"]


@dataclass(frozen=True)
class DARTSConfig:
    """Settings of a DARTS search (defaults follow the paper where the CPU budget allows).

    Attributes:
        epochs: passes over the weight half of the training data.
        order: 1 (first-order approximation) or 2 (unrolled, second order).
        batch_size: samples per step, for the weight and the architecture step alike.
        w_lr, w_weight_decay: Adam on the network weights.
        alpha_lr, alpha_weight_decay: Adam (betas 0.5, 0.999) on alpha, as in the paper.
        unroll_lr: xi of the second-order virtual step (default ``w_lr``).
        hw_lambda: weight of the hardware penalty (0 disables it).
        cost_metric: ``macs``, ``params``, or with a target ``latency_ms`` / ``energy_uj``.
        cost_ref: normaliser of the expected cost (default: expected cost at uniform alpha).
        data_fraction: stratified share of the training split used at all.
        alpha_split: share of it that trains alpha (the rest trains the weights).
        class_weights, class_weight_cap: ``"balanced"`` cross-entropy weights, as the task's estimator.
        max_param_free: guard 1 (``None`` disables it).
        hessian_early_stop, es_window, es_ratio, es_smooth, es_start, power_iterations, hessian_batch:
            guard 2. The eigenvalue is estimated on one fixed batch of the architecture half
            (``batch_size`` samples by default) and averaged over ``es_smooth`` epochs; the rule is
            checked from epoch ``es_start`` on (the eigenvalue rises from ~0 at initialisation,
            which is not the sharpening DARTS-ES looks for).
        warmup_epochs: epochs that train only the weights before alpha moves.
        grad_clip: gradient-norm clip of the weights.
        max_time_s: stop after this wall time (checked after every step; the epoch is cut short).
        threads: ``torch.set_num_threads`` for the search (None leaves it).
    """

    epochs: int = 8
    order: int = 1
    batch_size: int = 64
    w_lr: float = 3e-3
    w_weight_decay: float = 3e-4
    alpha_lr: float = 3e-3
    alpha_weight_decay: float = 1e-3
    unroll_lr: float | None = None
    hw_lambda: float = 0.0
    cost_metric: str = "macs"
    cost_ref: float | None = None
    data_fraction: float = 1.0
    alpha_split: float = 0.5
    class_weights: str | None = None
    class_weight_cap: float | None = None
    max_param_free: int | None = 2
    hessian_early_stop: bool = True
    es_window: int = 2
    es_ratio: float = 1.3
    es_smooth: int = 2
    es_start: int = 4
    power_iterations: int = 8
    hessian_batch: int | None = None
    warmup_epochs: int = 0
    grad_clip: float = 5.0
    max_time_s: float | None = None
    threads: int | None = None

    def __post_init__(self) -> None:
        if self.order not in (1, 2):
            raise ConfigError(f"DARTS order must be 1 (first order) or 2 (second order), got {self.order!r}")
        if self.epochs < 1:
            raise ConfigError(f"DARTS epochs must be >= 1, got {self.epochs}")
        if not 0.0 < self.alpha_split < 1.0:
            raise ConfigError(f"alpha_split must be in (0, 1), got {self.alpha_split}")
        if self.hw_lambda < 0:
            raise ConfigError(f"hw_lambda must be >= 0, got {self.hw_lambda}")
        if self.max_param_free is not None and self.max_param_free < 0:
            raise ConfigError(f"max_param_free must be >= 0 or None, got {self.max_param_free}")
        if self.es_window < 1 or self.es_ratio <= 1.0 or self.es_smooth < 1 or self.es_start < 0:
            raise ConfigError("es_window and es_smooth must be >= 1, es_start >= 0 and es_ratio > 1")


@dataclass(frozen=True)
class DARTSResult(OneShotResult):
    """The derived architecture, with the search's figures.

    ``details`` holds: ``choices`` (after the guard), ``argmax_choices``,
    ``probs`` (softmax of alpha per decision), ``guard_changes``,
    ``expected_cost`` (under the final alpha, in ``cost_metric`` units),
    ``derived_cost``, ``epochs_run``, ``stopped_early`` (reason or None),
    ``history`` (per epoch: losses, expected cost, entropy, Hessian eigenvalue).
    """


def _smoothed(values: list[float | None], k: int) -> list[float | None]:
    """Running mean over the last ``k`` entries (None where any is missing)."""
    out: list[float | None] = []
    for i in range(len(values)):
        win = values[max(0, i - k + 1): i + 1]
        out.append(None if any(v is None for v in win) else float(np.mean([v for v in win if v is not None])))
    return out


def derive_choices(probs: Mapping[str, np.ndarray], names: Mapping[str, tuple[str, ...]],
                   param_free: Mapping[str, tuple[bool, ...]], max_param_free: int | None
                   ) -> tuple[dict[str, str], dict[str, str], list[str]]:
    """``(choices, argmax_choices, guard_changes)``: argmax per decision, then the parameter-free limit."""
    argmax = {k: names[k][int(np.argmax(p))] for k, p in probs.items()}
    choices = dict(argmax)
    changes: list[str] = []
    if max_param_free is not None:
        free = [k for k, p in probs.items() if param_free[k][int(np.argmax(p))]]
        if len(free) > max_param_free:
            ranked = sorted(free, key=lambda k: -float(np.max(probs[k])))
            for k in ranked[max_param_free:]:
                p = np.asarray(probs[k], dtype=float)
                options = [i for i in range(len(p)) if not param_free[k][i]]
                if not options:
                    continue
                best = max(options, key=lambda i: p[i])
                changes.append(f"{k}: {choices[k]} -> {names[k][best]} (more than {max_param_free} "
                               "parameter-free choices)")
                choices[k] = names[k][best]
    return choices, argmax, changes


class DARTS(OneShotSearcher):
    """Bi-level DARTS over a space's mixed network.

    Args:
        support: the space's :class:`MixedOpSupport` (see :func:`~nas_core.oneshot.mixed.mixed_support`).
        data: training data (only its training split is used; halves train w and alpha).
        config: :class:`DARTSConfig`.
        target: hardware target for ``latency_ms`` / ``energy_uj`` penalties.
        seed: initialisation, alpha, the data halves and the batch order.
    """

    def __init__(self, support: MixedOpSupport, data: ClassificationData | Callable[[], ClassificationData],
                 config: DARTSConfig | None = None, *, target: Any = None, seed: int = 0):
        self.support = support
        self.data = data
        self.config = config or DARTSConfig()
        self.target = target
        self.seed = int(seed)
        torch.manual_seed(self.seed)
        self.net: nn.Module = support.build_mixed()
        self.names = decisions(self.net)
        pf: dict[str, tuple[bool, ...]] = {}
        for op in mixed_ops(self.net):
            prev = pf.get(op.key)
            pf[op.key] = op.param_free if prev is None else tuple(a and b for a, b in zip(prev, op.param_free))
        self.param_free = pf
        gen = torch.Generator().manual_seed(self.seed + 1)
        self.alphas = nn.ParameterDict({k: nn.Parameter(1e-3 * torch.randn(len(v), generator=gen))
                                        for k, v in self.names.items()})
        self.costs, fixed = candidate_costs(self.net, support.input_shape())
        self.cost_metric = self.config.cost_metric
        self.fixed_cost = self._fixed(fixed)
        uniform = {k: torch.full((len(v),), 1.0 / len(v)) for k, v in self.names.items()}
        ref = self.config.cost_ref or float(expected_cost(self.costs, uniform, self.cost_metric, target, self.fixed_cost))
        self.cost_ref = ref if ref > 0 else 1.0

    def _fixed(self, fixed: Mapping[str, float]) -> float:
        m = self.cost_metric
        if m in ("macs", "params"):
            return fixed[m]
        from nas_core.hardware import estimate_latency_energy

        if self.target is None:
            raise ConfigError(f"cost metric '{m}' needs a hardware target")
        lat, en = estimate_latency_energy(int(max(0, fixed["macs"])), int(max(0, fixed["layers"])), self.target)
        return float(lat if m == "latency_ms" else (en or 0.0))

    # -- architecture weights ----------------------------------------------------------------
    def probs(self, detach: bool = False) -> dict[str, torch.Tensor]:
        out = {k: torch.softmax(a, dim=0) for k, a in self.alphas.items()}
        return {k: v.detach() for k, v in out.items()} if detach else out

    def expected_cost(self, probs: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
        return expected_cost(self.costs, probs if probs is not None else self.probs(), self.cost_metric, self.target,
                             self.fixed_cost)

    def derive(self) -> tuple[Architecture, dict[str, Any]]:
        """The discrete architecture: argmax of alpha per decision, then the parameter-free guard."""
        probs = {k: v.numpy() for k, v in self.probs(detach=True).items()}
        choices, argmax, changes = derive_choices(probs, self.names, self.param_free, self.config.max_param_free)
        derived = {k: torch.as_tensor([1.0 if n == choices[k] else 0.0 for n in self.names[k]]) for k in self.names}
        info = {"choices": choices, "argmax_choices": argmax, "guard_changes": changes,
                "probs": {k: [float(x) for x in v] for k, v in probs.items()},
                "derived_cost": float(self.expected_cost(derived))}
        return self.support.derive(choices), info

    # -- search ------------------------------------------------------------------------------------
    def search(self, progress: Callable[[Mapping[str, Any]], None] | None = None) -> DARTSResult:
        cfg = self.config
        if cfg.threads:
            torch.set_num_threads(int(cfg.threads))
        t0 = time.monotonic()
        rng = np.random.default_rng(self.seed)
        data = resolve(self.data)
        y_all = np.asarray(data.y_train)
        keep = stratified_subset(y_all, cfg.data_fraction, rng)
        w_idx, a_idx = stratified_halves(y_all[keep], cfg.alpha_split, rng)
        w_split, a_split = to_split(data.x_train, y_all, keep[w_idx]), to_split(data.x_train, y_all, keep[a_idx])
        weight = class_weight(w_split.y.numpy(), data.n_classes, cfg.class_weights, cfg.class_weight_cap)
        self._weight = weight

        net = self.net
        net.train()
        w_params = [p for p in net.parameters()]
        w_opt = torch.optim.Adam(w_params, lr=cfg.w_lr, weight_decay=cfg.w_weight_decay)
        a_opt = torch.optim.Adam(self.alphas.parameters(), lr=cfg.alpha_lr, betas=(0.5, 0.999),
                                 weight_decay=cfg.alpha_weight_decay)
        hb = cfg.hessian_batch or cfg.batch_size
        hess_batch = next(a_split.take(np.sort(rng.permutation(len(a_split))[: min(len(a_split), hb)]))
                          .batches(hb, None))
        history: list[dict[str, Any]] = []
        snapshots: list[dict[str, torch.Tensor]] = []
        stopped: str | None = None
        epochs_run = 0
        for epoch in range(cfg.epochs):
            tl, al, nb = 0.0, 0.0, 0
            a_iter = a_split.batches(cfg.batch_size, rng)
            for xw, yw in w_split.batches(cfg.batch_size, rng):
                if epoch >= cfg.warmup_epochs:
                    try:
                        xa, ya = next(a_iter)
                    except StopIteration:
                        a_iter = a_split.batches(cfg.batch_size, rng)
                        xa, ya = next(a_iter)
                    al += self._alpha_step(a_opt, xw, yw, xa, ya, w_params)
                # weight step with alpha held fixed
                set_weights(net, self.probs(detach=True))
                w_opt.zero_grad(set_to_none=True)
                loss = self._loss(net(*xw), yw)
                loss.backward()
                nn.utils.clip_grad_norm_(w_params, cfg.grad_clip)
                w_opt.step()
                tl += float(loss.detach())
                nb += 1
                if cfg.max_time_s is not None and time.monotonic() - t0 > cfg.max_time_s:
                    stopped = f"time limit {cfg.max_time_s:g} s reached in epoch {epoch}"
                    break
            epochs_run = epoch + 1
            snapshots.append({k: v.detach().clone() for k, v in self.alphas.items()})
            probs = self.probs(detach=True)
            entry: dict[str, Any] = {
                "epoch": epoch, "train_loss": tl / max(1, nb), "alpha_loss": al / max(1, nb),
                "expected_cost": float(self.expected_cost(probs)),
                "entropy": float(np.mean([float(-(p * p.clamp_min(1e-12).log()).sum() / math.log(len(p)))
                                          if len(p) > 1 else 0.0 for p in probs.values()])),
                "elapsed_s": time.monotonic() - t0}
            if cfg.hessian_early_stop and epoch >= cfg.warmup_epochs and stopped is None:
                entry["hessian_eig"] = self.hessian_eigenvalue(*hess_batch)
            history.append(entry)
            if progress:
                progress(dict(entry))
            if stopped:
                break
            if cfg.hessian_early_stop and epoch >= cfg.es_start:
                eigs = [h.get("hessian_eig") for h in history]
                smooth = _smoothed(eigs, cfg.es_smooth)
                j = len(eigs) - 1 - cfg.es_window
                if j >= 0 and (s_then := smooth[j]) is not None and (s_now := smooth[-1]) is not None \
                        and s_then > 0 and s_now / s_then > cfg.es_ratio:
                    stopped = (f"Hessian early stop: dominant eigenvalue (mean of {cfg.es_smooth} epochs) grew "
                               f"{s_now / s_then:.2f}x over {cfg.es_window} epochs (epoch {j} -> {epoch}); "
                               f"alpha restored from epoch {j}")
                    with torch.no_grad():
                        for k, v in snapshots[j].items():
                            self.alphas[k].copy_(v)
                    break
        arch, info = self.derive()
        details = {**info, "expected_cost": float(self.expected_cost(self.probs(detach=True))),
                   "cost_metric": self.cost_metric, "cost_ref": self.cost_ref, "epochs_run": epochs_run,
                   "stopped_early": stopped, "history": history, "order": cfg.order,
                   "n_weight_samples": len(w_split), "n_alpha_samples": len(a_split)}
        return DARTSResult(arch=arch, search_s=time.monotonic() - t0, details=details)

    # -- pieces -------------------------------------------------------------------------------------
    def _loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(logits, y, weight=getattr(self, "_weight", None))

    def _alpha_objective(self, xa: Sequence[torch.Tensor], ya: torch.Tensor) -> torch.Tensor:
        probs = self.probs()
        set_weights(self.net, probs)
        loss = self._loss(self.net(*xa), ya)
        if self.config.hw_lambda:
            loss = loss + self.config.hw_lambda * self.expected_cost(probs) / self.cost_ref
        return loss

    def _alpha_step(self, a_opt: torch.optim.Optimizer, xw: Sequence[torch.Tensor], yw: torch.Tensor,
                    xa: Sequence[torch.Tensor], ya: torch.Tensor, w_params: list[nn.Parameter]) -> float:
        a_opt.zero_grad(set_to_none=True)
        alphas = list(self.alphas.values())
        grads: Sequence[torch.Tensor]
        if self.config.order == 1:
            loss = self._alpha_objective(xa, ya)
            grads = torch.autograd.grad(loss, alphas)
        else:
            loss, grads = self._second_order_grads(xw, yw, xa, ya, w_params)
        for a, g in zip(alphas, grads):
            a.grad = g.detach()
        a_opt.step()
        return float(loss.detach())

    def _second_order_grads(self, xw: Sequence[torch.Tensor], yw: torch.Tensor, xa: Sequence[torch.Tensor],
                            ya: torch.Tensor, w_params: list[nn.Parameter]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Unrolled gradient (DARTS eq. 7) with the finite-difference Hessian-vector product (eq. 8)."""
        net, alphas = self.net, list(self.alphas.values())
        xi = self.config.unroll_lr if self.config.unroll_lr is not None else self.config.w_lr
        w0 = [p.detach().clone() for p in w_params]
        buffers = [b.detach().clone() for b in net.buffers()]

        def restore(shift: Sequence[torch.Tensor | None] | None = None, scale: float = 0.0) -> None:
            with torch.no_grad():
                for p, p0, s in zip(w_params, w0, shift or [None] * len(w0)):
                    p.copy_(p0 if s is None else p0 + scale * s)

        # virtual step w' = w - xi * grad_w L_train(w, alpha)
        set_weights(net, self.probs(detach=True))
        gw = torch.autograd.grad(self._loss(net(*xw), yw), w_params, allow_unused=True)
        with torch.no_grad():
            for p, g in zip(w_params, gw):
                if g is not None:
                    p.sub_(xi * g)
        # grad of the validation objective at (w', alpha)
        loss = self._alpha_objective(xa, ya)
        out = torch.autograd.grad(loss, alphas + w_params, allow_unused=True)
        d_alpha = [g if g is not None else torch.zeros_like(a) for g, a in zip(out[: len(alphas)], alphas)]
        d_w = [g if g is not None else torch.zeros_like(p) for g, p in zip(out[len(alphas):], w_params)]
        norm = torch.sqrt(sum(((g * g).sum() for g in d_w), torch.zeros(())))
        eps = 0.01 / float(norm) if float(norm) > 0 else 0.0
        hess: list[torch.Tensor | float] = [torch.zeros_like(a) for a in alphas]
        if eps > 0:
            grads_pm = []
            for sign in (1.0, -1.0):
                restore(d_w, sign * eps)
                probs = self.probs()
                set_weights(net, probs)
                grads_pm.append(torch.autograd.grad(self._loss(net(*xw), yw), alphas, allow_unused=True))
            hess = [((gp if gp is not None else 0.0) - (gm if gm is not None else 0.0)) / (2 * eps)
                    for gp, gm in zip(*grads_pm)]
        restore()
        with torch.no_grad():
            for b, b0 in zip(net.buffers(), buffers):
                b.copy_(b0)
        return loss, [da - xi * h for da, h in zip(d_alpha, hess)]

    def hessian_eigenvalue(self, xs: Sequence[torch.Tensor], y: torch.Tensor) -> float:
        """Dominant eigenvalue of the Hessian of the validation loss w.r.t. alpha (power iteration)."""
        net, alphas = self.net, list(self.alphas.values())
        buffers = [b.detach().clone() for b in net.buffers()]
        probs = self.probs()
        set_weights(net, probs)
        loss = self._loss(net(*xs), y)
        grads = torch.autograd.grad(loss, alphas, create_graph=True)
        gen = torch.Generator().manual_seed(self.seed + 7)
        v = [torch.randn(a.shape, generator=gen) for a in alphas]
        norm = math.sqrt(sum(float((x * x).sum()) for x in v))
        v = [x / norm for x in v]
        eig = 0.0
        for it in range(self.config.power_iterations):
            hv = torch.autograd.grad(grads, alphas, grad_outputs=v, retain_graph=it < self.config.power_iterations - 1)
            eig = float(sum((h * x).sum() for h, x in zip(hv, v)))
            norm = math.sqrt(sum(float((h * h).sum()) for h in hv))
            if norm == 0:
                break
            v = [h.detach() / norm for h in hv]
        with torch.no_grad():
            for b, b0 in zip(net.buffers(), buffers):
                b.copy_(b0)
        return eig

    def trained_network(self) -> nn.Module:
        """A copy of the mixed network with its trained weights (weighted mode, final alpha)."""
        net = copy.deepcopy(self.net)
        set_weights(net, self.probs(detach=True))
        return net
