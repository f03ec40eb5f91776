"""A generative strategy: learn the distribution of the best architectures found so
far and sample new ones from it (an estimation-of-distribution algorithm with the
tree-structured Parzen estimator's acquisition, Bergstra et al. 2011,
"Algorithms for Hyper-Parameter Optimization", NeurIPS).

The space is read as a sequence of decisions (:mod:`nas_core.strategies._decisions`;
repeats unrolled per copy, conditions honoured). After ``n_startup`` random
proposals the told results are split into the best ``gamma`` fraction (at most
``max_good``; by the first objective, or by non-domination rank and crowding
with several objectives) and the rest. Each decision gets a categorical
distribution from the best architectures' choices, ``l``, and one from the rest,
``g``, both smoothed by ``prior_weight`` pseudo-counts spread uniformly. A
proposal draws ``n_candidates`` architectures from ``l`` and returns the one
with the largest ``log l(x) - log g(x)`` that was never told before. With
``n_candidates=1`` it is a pure EDA: samples of the best architectures'
distribution. Failed and rejected candidates count among the rest, so the
model moves away from infeasible regions.

:class:`ParzenModel` is also the model of the BOHB-style strategy
(:mod:`nas_core.strategies.hyperband`).
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

from nas_core.errors import ConfigError
from nas_core.space import Architecture, SearchSpace
from nas_core.strategies._common import rank_scores
from nas_core.strategies._decisions import DecisionSpace
from nas_core.strategies.base import Objective, Strategy, TrialResult


class ParzenModel:
    """Per-decision categorical densities of a good and a bad set of architectures."""

    def __init__(self, ds: DecisionSpace, prior_weight: float = 1.0):
        self.ds = ds
        self.prior = float(prior_weight)
        self.log_l = np.zeros(ds.width)
        self.log_g = np.zeros(ds.width)
        self.p_l = np.zeros(ds.width)

    def _densities(self, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        p = np.empty(self.ds.width)
        for o, d in zip(self.ds.offsets, self.ds.decisions):
            c = counts[o:o + d.n] + self.prior / d.n
            p[o:o + d.n] = c / c.sum()
        return p, np.log(p)

    def fit(self, good_counts: np.ndarray, bad_counts: np.ndarray) -> None:
        self.p_l, self.log_l = self._densities(good_counts)
        _, self.log_g = self._densities(bad_counts)

    def sample(self, rng: np.random.Generator) -> tuple[Architecture, float]:
        """An architecture drawn from ``l`` and its score ``log l - log g``."""
        score = 0.0

        def choose(t: int, made: list[tuple[int, int]]) -> int:
            nonlocal score
            d = self.ds.decisions[t]
            o = self.ds.offsets[t]
            if d.n == 1:
                i = 0
            else:
                p = self.p_l[o:o + d.n]
                i = int(min(d.n - 1, np.searchsorted(np.cumsum(p), rng.random() * p.sum(), side="right")))
            score += self.log_l[o + i] - self.log_g[o + i]
            return i

        arch, _ = self.ds.decode(choose)
        return arch, score


def choice_counts(ds: DecisionSpace, arch: Architecture) -> np.ndarray:
    """One-hot counts of the options ``arch`` takes (a vector of ``ds.width``)."""
    v = np.zeros(ds.width)
    for t, i in ds.choices(arch):
        v[ds.offsets[t] + i] += 1.0
    return v


class Generative(Strategy):
    """Samples the learnt distribution of the best architectures (TPE-style selection among candidates).

    Options: ``n_startup`` (random proposals first, 10), ``gamma`` (fraction deemed
    best, 0.2), ``max_good`` (25), ``n_candidates`` (24; 1 = pure EDA),
    ``prior_weight`` (1.0), ``max_options`` (bins for wide dimensions, 16).
    """

    name = "generative"

    def __init__(self, space: SearchSpace, objectives: Sequence[Objective], *, seed: int = 0, n_startup: int = 10,
                 gamma: float = 0.2, max_good: int = 25, n_candidates: int = 24, prior_weight: float = 1.0,
                 max_options: int = 16):
        super().__init__(space, objectives, seed=seed)
        if not 0.0 < gamma < 1.0:
            raise ConfigError(f"generative: gamma must be in (0, 1), got {gamma}")
        if n_candidates < 1 or n_startup < 2 or max_good < 1:
            raise ConfigError("generative: need n_candidates >= 1, n_startup >= 2 and max_good >= 1")
        if prior_weight <= 0:
            raise ConfigError(f"generative: prior_weight must be > 0, got {prior_weight}")
        self.n_startup = int(n_startup)
        self.gamma = float(gamma)
        self.max_good = int(max_good)
        self.n_candidates = int(n_candidates)
        self.ds = DecisionSpace(space, max_options)
        self.model = ParzenModel(self.ds, prior_weight)
        # told results: hash -> (index); parallel lists of scores and counts
        self.hashes: list[str] = []
        self.archs: list[str] = []
        self.scores: list[list[float]] = []  # empty list = failed or rejected
        self._counts: list[np.ndarray] = []
        self._total = np.zeros(self.ds.width)
        self.seen: set[str] = set()
        self.n_asked = 0

    def _observe(self, arch: Architecture, scores: list[float]) -> None:
        c = choice_counts(self.ds, arch)
        self.hashes.append(arch.hash)
        self.archs.append(arch.canonical)
        self.scores.append(scores)
        self._counts.append(c)
        self._total += c
        self.seen.add(arch.hash)

    def _fit(self) -> None:
        ok = [i for i, s in enumerate(self.scores) if s]
        order = rank_scores([self.scores[i] for i in ok])
        n_good = max(1, min(self.max_good, int(math.ceil(self.gamma * len(self.scores)))))
        good = [ok[k] for k in order[:n_good]]
        good_counts = np.zeros(self.ds.width)
        for i in good:
            good_counts += self._counts[i]
        self.model.fit(good_counts, self._total - good_counts)

    def ask(self) -> Architecture:
        self.n_asked += 1
        if sum(1 for s in self.scores if s) < self.n_startup:
            return self.sample_unseen(self.seen)
        self._fit()
        best: tuple[float, Architecture] | None = None
        fallback: Architecture | None = None
        tries = 0
        while tries < self.n_candidates or (best is None and tries < self.n_candidates + 64):
            arch, score = self.model.sample(self.rng)
            tries += 1
            fallback = fallback or arch
            if arch.hash in self.seen:
                continue
            if best is None or score > best[0]:
                best = (score, arch)
        return best[1] if best is not None else fallback  # type: ignore[return-value]

    def tell(self, arch: Architecture, result: TrialResult) -> None:
        scores = [o.score(result.metrics) for o in self.objectives] if result.ok else []
        if scores and not all(math.isfinite(s) for s in scores):
            scores = []
        self._observe(arch, scores)

    def _extra_state(self) -> dict[str, Any]:
        return {"archs": self.archs, "scores": self.scores, "n_asked": self.n_asked}

    def _load_extra_state(self, state: Mapping[str, Any]) -> None:
        self.hashes, self.archs, self.scores, self._counts = [], [], [], []
        self._total = np.zeros(self.ds.width)
        self.seen = set()
        for a, s in zip(state["archs"], state["scores"]):
            self._observe(Architecture.from_json(a), [float(x) for x in s])
        self.n_asked = int(state["n_asked"])
