"""Predictor-guided search: a learned performance predictor proposes the next architecture.

Registered as strategy ``predictor``; the predictors are in :mod:`nas_core.estimators.predictor`.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from nas_core.errors import ConfigError
from nas_core.estimators.predictor import GPPredictor, MLPEnsemble
from nas_core.space import Architecture, SearchSpace
from nas_core.strategies.base import Strategy


def _mlp(space: SearchSpace, seed: int) -> MLPEnsemble:
    return MLPEnsemble(space, n_models=5, seed=seed)


def _gp(space: SearchSpace, seed: int) -> GPPredictor:
    return GPPredictor(space, seed=seed)


class PredictorGuided(Strategy):
    """Predictor-guided search: after ``n_init`` random proposals, propose the candidate with the
    highest ``mean + kappa * std`` among ``n_candidates`` mutations of the best results and random samples.

    The predictor is refitted before every proposal on the completed trials; it
    models the first objective's score (so minimised objectives work too).
    ``model`` picks it by name: ``"mlp"`` (:class:`MLPEnsemble` of 5 small networks,
    the default) or ``"gp"`` (:class:`GPPredictor`); ``predictor`` (a callable
    ``(space, seed) -> predictor``) overrides it from Python.
    """

    name = "predictor"
    check_options = {"n_init": 5, "n_candidates": 30, "model": "gp"}
    check_steps = 12

    def __init__(self, space: SearchSpace, objectives: Sequence[Any], *, n_init: int = 10, n_candidates: int = 100,
                 kappa: float = 0.5, top_k: int = 5, model: str = "mlp",
                 predictor: Callable[[SearchSpace, int], Any] | None = None, seed: int = 0):
        super().__init__(space, objectives, seed=seed)
        if model not in ("mlp", "gp"):
            raise ConfigError(f"strategy 'predictor': model must be 'mlp' or 'gp', got {model!r}")
        if int(n_init) < 1 or int(n_candidates) < 1 or int(top_k) < 1:
            raise ConfigError(f"strategy 'predictor': n_init, n_candidates and top_k must be >= 1, got "
                              f"{n_init}, {n_candidates}, {top_k}")
        self.n_init, self.n_candidates, self.kappa, self.top_k = int(n_init), int(n_candidates), float(kappa), int(top_k)
        self._make = predictor or (_mlp if model == "mlp" else _gp)
        self.data: list[tuple[Architecture, float]] = []
        self._seen: set[str] = set()

    def ask(self) -> Architecture:
        if len(self.data) < max(3, self.n_init):
            for _ in range(100):
                a = self.space.sample(self.rng)
                if a.canonical not in self._seen:
                    break
            self._seen.add(a.canonical)
            return a
        # the fit's seed comes from the strategy's generator, so a state round trip continues identically
        model = self._make(self.space, int(self.rng.integers(2 ** 20)))
        archs = [a for a, _ in self.data]
        model.fit(archs, [v for _, v in self.data])
        top = [a for a, _ in sorted(self.data, key=lambda t: -t[1])[: self.top_k]]
        cands: list[Architecture] = []
        for i in range(self.n_candidates):
            a = self.space.mutate(top[i % len(top)], self.rng) if i % 2 == 0 else self.space.sample(self.rng)
            if a.canonical not in self._seen and a not in cands:
                cands.append(a)
        if not cands:
            cands = [self.space.sample(self.rng)]
        mean, std = model.predict(cands)
        best = cands[int(np.argmax(mean + self.kappa * std))]
        self._seen.add(best.canonical)
        return best

    def tell(self, arch: Architecture, result: Any) -> None:
        if getattr(result, "ok", False) and result.metrics:
            try:
                value = self.fitness(result.metrics)
            except Exception:  # noqa: BLE001 - a result without the objective teaches nothing
                return
            if math.isfinite(value):
                self.data.append((arch, float(value)))

    def _extra_state(self) -> dict[str, Any]:
        return {"data": [[a.to_json(), v] for a, v in self.data], "seen": sorted(self._seen)}

    def _load_extra_state(self, state: Mapping[str, Any]) -> None:
        self.data = [(Architecture.from_json(a), float(v)) for a, v in state.get("data", [])]
        self._seen = set(state.get("seen", []))
