"""Bayesian optimisation on architecture encodings: a Gaussian-process surrogate and
expected improvement maximised by mutation-based local search, the acquisition
search of BANANAS (White, Neiswanger & Savani 2021, "BANANAS: Bayesian
Optimization with Neural Architectures for Neural Architecture Search", AAAI).

* Encoding: ``space.encode(arch)`` (one-hot categoricals, unit-scaled numbers,
  padded repeats with presence flags).
* Surrogate: a GP with a Matérn-5/2 kernel on the Euclidean distance between
  encodings, on standardised targets; its length scale and noise are chosen by
  marginal likelihood over a grid (scaled by the median pairwise distance), refit
  on every proposal while the data are few and every ``refit_every`` new points
  after that. At most ``max_points`` points train it (the best half and the most
  recent), so a proposal stays cheap however long the study runs.
* Acquisition: expected improvement over the best value so far. Candidates are
  mutations (one or two changes) of the ``n_parents`` best architectures plus
  ``n_random`` random ones; ``rounds`` times the best few are mutated again and
  the architecture of largest EI that was never told is proposed.
* Several objectives: ParEGO (Knowles 2006): every proposal draws random weights
  and models the augmented Chebyshev scalarisation of the normalised objectives.
* Failed and rejected candidates never train the GP and are never proposed again.

The first ``n_initial`` proposals are random.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from nas_core.errors import ConfigError
from nas_core.space import Architecture, SearchSpace
from nas_core.strategies._common import rank_scores
from nas_core.strategies.base import Objective, Strategy, TrialResult

_LS_FACTORS = (0.25, 0.5, 1.0, 2.0, 4.0)
_NOISES = (1e-3, 1e-2, 0.1, 0.3)


@contextlib.contextmanager
def _one_blas_thread() -> Iterator[None]:
    """The GP's matrices are small: several BLAS threads only add overhead (and spin on a busy machine)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # threadpoolctl comes with scikit-learn; without it BLAS keeps its own setting
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def _matern52(d: np.ndarray) -> np.ndarray:
    s = math.sqrt(5.0) * d
    out: np.ndarray = (1.0 + s + s * s / 3.0) * np.exp(-s)
    return out


def _sqdist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    out: np.ndarray = np.maximum(d, 0.0)
    return out


class GaussianProcess:
    """A zero-mean GP on standardised targets (Matérn 5/2, unit signal variance)."""

    def __init__(self, x: np.ndarray, y: np.ndarray, lengthscale: float | None = None, noise: float | None = None):
        self.x = x
        self.mu, self.sd = float(y.mean()), float(y.std()) or 1.0
        self.z = (y - self.mu) / self.sd
        dist = np.sqrt(_sqdist(x, x))
        if lengthscale is None or noise is None:
            off = dist[np.triu_indices(len(x), 1)]
            med = float(np.median(off[off > 0])) if np.any(off > 0) else 1.0
            best = None
            for f in _LS_FACTORS:
                for nz in _NOISES:
                    nll = self._nll(dist, med * f, nz)
                    if best is None or nll < best[0] - 1e-12:
                        best = (nll, med * f, nz)
            assert best is not None
            lengthscale, noise = best[1], best[2]
        from scipy.linalg import cho_solve, cholesky

        self.lengthscale, self.noise = float(lengthscale), float(noise)
        k = _matern52(dist / self.lengthscale) + (self.noise + 1e-8) * np.eye(len(x))
        self.chol = cholesky(k, lower=True)
        self.alpha = cho_solve((self.chol, True), self.z)

    def _nll(self, dist: np.ndarray, ls: float, noise: float) -> float:
        from scipy.linalg import cho_solve, cholesky

        k = _matern52(dist / ls) + (noise + 1e-8) * np.eye(len(dist))
        try:
            c = cholesky(k, lower=True)
        except np.linalg.LinAlgError:
            return math.inf
        a = cho_solve((c, True), self.z)
        return float(0.5 * self.z @ a + np.log(np.diag(c)).sum())

    def predict(self, xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean and standard deviation (in standardised units) at ``xs``."""
        from scipy.linalg import solve_triangular

        ks = _matern52(np.sqrt(_sqdist(xs, self.x)) / self.lengthscale)
        mean = ks @ self.alpha
        v = solve_triangular(self.chol, ks.T, lower=True)
        var = np.maximum(1.0 - (v * v).sum(0), 1e-12)
        return mean, np.sqrt(var)


def expected_improvement(mean: np.ndarray, sd: np.ndarray, best: float, xi: float = 0.01) -> np.ndarray:
    from scipy.special import ndtr

    z = (mean - best - xi) / sd
    ei: np.ndarray = (mean - best - xi) * ndtr(z) + sd * np.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
    return ei


class BayesianOptimization(Strategy):
    """GP + expected improvement, maximised by mutating the best architectures (BANANAS-style).

    Options: ``n_initial`` (10), ``max_points`` (256), ``refit_every`` (8),
    ``n_parents`` (10), ``n_mutations`` (5), ``n_random`` (30), ``rounds`` (2), ``xi`` (0.01).
    """

    name = "bayesopt"
    check_options = {"n_initial": 8, "n_parents": 4, "n_mutations": 3, "n_random": 10, "rounds": 1}
    check_steps = 20

    def __init__(self, space: SearchSpace, objectives: Sequence[Objective], *, seed: int = 0, n_initial: int = 10,
                 max_points: int = 256, refit_every: int = 8, n_parents: int = 10, n_mutations: int = 5,
                 n_random: int = 30, rounds: int = 2, xi: float = 0.01, max_history: int = 1024):
        super().__init__(space, objectives, seed=seed)
        if n_initial < 2:
            raise ConfigError(f"bayesopt: n_initial must be >= 2, got {n_initial}")
        if max_points < 8 or max_history < max_points:
            raise ConfigError("bayesopt: need max_points >= 8 and max_history >= max_points")
        self.n_initial = int(n_initial)
        self.max_points = int(max_points)
        self.refit_every = int(refit_every)
        self.n_parents, self.n_mutations, self.n_random = int(n_parents), int(n_mutations), int(n_random)
        self.rounds = int(rounds)
        self.xi = float(xi)
        self.max_history = int(max_history)
        self.history: list[tuple[str, list[float]]] = []  # told, feasible: (canonical, signed scores)
        self.seen: set[str] = set()
        self.hyper: tuple[float, float] | None = None  # (length scale, noise) of the last fit
        self.fit_n = 0  # history size at the last hyper-parameter fit
        self.n_asked = 0
        self._enc: dict[str, np.ndarray] = {}

    # -- the surrogate -----------------------------------------------------------------------
    def _encode(self, canon: str) -> np.ndarray:
        e = self._enc.get(canon)
        if e is None:
            e = self.space.encode(Architecture.from_json(canon))
            if len(self._enc) > 4 * self.max_history:
                self._enc.clear()
            self._enc[canon] = e
        return e

    def _targets(self, scores: np.ndarray) -> np.ndarray:
        if scores.shape[1] == 1:
            return scores[:, 0]
        lo, hi = scores.min(0), scores.max(0)
        cost = (hi - scores) / np.where(hi > lo, hi - lo, 1.0)  # 0 = best, 1 = worst, per objective
        w = self.rng.dirichlet(np.ones(scores.shape[1]))
        targets: np.ndarray = -((cost * w).max(1) + 0.05 * (cost * w).sum(1))
        return targets

    def _training_set(self, y_all: np.ndarray) -> list[int]:
        n = len(y_all)
        if n <= self.max_points:
            return list(range(n))
        half = self.max_points // 2
        best = sorted(range(n), key=lambda i: (-y_all[i], i))[:half]
        chosen = set(best)
        for i in range(n - 1, -1, -1):
            if len(chosen) >= self.max_points:
                break
            chosen.add(i)
        return sorted(chosen)

    def _candidates(self, parents: list[Architecture]) -> list[Architecture]:
        pool: dict[str, Architecture] = {}
        for p in parents:
            for _ in range(self.n_mutations):
                a = self.space.mutate(p, self.rng, n_changes=1 + int(self.rng.random() < 0.3))
                pool.setdefault(a.canonical, a)
        for _ in range(self.n_random):
            a = self.space.sample(self.rng)
            pool.setdefault(a.canonical, a)
        return [a for a in pool.values() if a.hash not in self.seen]

    def ask(self) -> Architecture:
        self.n_asked += 1
        if len(self.history) < self.n_initial:
            return self.sample_unseen(self.seen)
        with _one_blas_thread():
            return self._propose()

    def _propose(self) -> Architecture:
        scores = np.asarray([s for _, s in self.history], dtype=float)
        y_all = self._targets(scores)
        idx = self._training_set(y_all)
        x = np.stack([self._encode(self.history[i][0]) for i in idx])
        y = y_all[idx]
        refit = self.hyper is None or len(self.history) < 64 or len(self.history) - self.fit_n >= self.refit_every
        gp = GaussianProcess(x, y, *(None, None) if refit else self.hyper)  # type: ignore[misc]
        if refit:
            self.hyper = (gp.lengthscale, gp.noise)
            self.fit_n = len(self.history)
        best = float(gp.z.max())
        order = sorted(range(len(y_all)), key=lambda i: (-y_all[i], i))
        parents = [Architecture.from_json(self.history[i][0]) for i in order[: self.n_parents]]
        cands = self._candidates(parents)
        if not cands:
            return self.sample_unseen(self.seen)
        scored: dict[str, tuple[float, Architecture]] = {}

        def score(archs: list[Architecture]) -> None:
            new = [a for a in archs if a.canonical not in scored and a.hash not in self.seen]
            if not new:
                return
            m, s = gp.predict(np.stack([self.space.encode(a) for a in new]))
            for a, v in zip(new, expected_improvement(m, s, best, self.xi)):
                scored[a.canonical] = (float(v), a)

        score(cands)
        for _ in range(self.rounds):
            top = sorted(scored.values(), key=lambda t: -t[0])[:5]
            score([self.space.mutate(a, self.rng) for _, a in top for _ in range(self.n_mutations)])
        return max(scored.values(), key=lambda t: t[0])[1]

    def tell(self, arch: Architecture, result: TrialResult) -> None:
        self.seen.add(arch.hash)
        if not result.ok:
            return
        scores = [o.score(result.metrics) for o in self.objectives]
        if not all(math.isfinite(s) for s in scores):
            return
        self.history.append((arch.canonical, scores))
        if len(self.history) > self.max_history:
            keep = set(rank_scores([s for _, s in self.history])[: self.max_history // 2])
            keep |= set(range(len(self.history) - self.max_history // 2, len(self.history)))
            self.history = [h for i, h in enumerate(self.history) if i in keep]

    def _extra_state(self) -> dict[str, Any]:
        return {"history": [[a, s] for a, s in self.history], "seen": sorted(self.seen),
                "hyper": list(self.hyper) if self.hyper else None, "fit_n": self.fit_n, "n_asked": self.n_asked}

    def _load_extra_state(self, state: Mapping[str, Any]) -> None:
        self.history = [(str(a), [float(x) for x in s]) for a, s in state["history"]]
        self.seen = set(state["seen"])
        self.hyper = tuple(state["hyper"]) if state["hyper"] else None
        self.fit_n = int(state["fit_n"])
        self.n_asked = int(state["n_asked"])
