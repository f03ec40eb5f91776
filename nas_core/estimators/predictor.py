"""Learned performance predictors on architecture encodings, trained on completed trials.

* :class:`MLPEnsemble` -- an ensemble of small multi-layer perceptrons (scikit-learn,
  L-BFGS, each on a bootstrap resample with its own seed) on ``space.encode(arch)``,
  optionally with extra features (e.g. log parameter count); the ensemble's mean
  is the prediction and its spread the uncertainty (as in BANANAS, White et al. 2021).
* :class:`GPPredictor` -- a Gaussian process (Matern 5/2 + white noise, fitted
  hyper-parameters) on the same features.

Both have ``fit(archs, values)``, ``predict(archs) -> (mean, std)`` and
``from_store(store, space, metric)``, which trains on a study's completed trials.
:class:`PredictorEstimator` makes a fitted predictor an
:class:`~nas_core.estimators.base.Estimator`; :class:`PredictorGuided` is a
strategy that proposes, among mutations of the best architectures so far and
random samples, the one with the highest upper confidence bound, refitting the
predictor as results come in.

Example::

    >>> from nas_core.examples.digits import DigitsCNNSpace
    >>> import numpy as np
    >>> space = DigitsCNNSpace()
    >>> rng = np.random.default_rng(0)
    >>> archs = [space.sample(rng) for _ in range(20)]
    >>> y = [len(a["stages"]) / 3 for a in archs]
    >>> mean, std = MLPEnsemble(space, n_models=3).fit(archs, y).predict(archs[:2])
    >>> mean.shape, std.shape
    ((2,), (2,))
"""

from __future__ import annotations

import math
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence, cast

import numpy as np

from nas_core.errors import ConfigError
from nas_core.estimators.base import EvalContext, Estimator
from nas_core.space import Architecture, SearchSpace

if TYPE_CHECKING:
    from typing import Self

__all__ = ["GPPredictor", "MLPEnsemble", "PredictorEstimator", "PredictorGuided", "trials_dataset"]


def _one_thread() -> AbstractContextManager[Any]:
    """BLAS on one thread: these fits are tiny, and thread start-up dominates on a busy machine."""
    from threadpoolctl import threadpool_limits

    return cast("AbstractContextManager[Any]", threadpool_limits(1))  # threadpoolctl has no type information


def trials_dataset(store: Any, metric: str) -> tuple[list[Architecture], np.ndarray]:
    """Architectures and ``metric`` of a store's completed trials (highest fidelity kept per architecture)."""
    from nas_core.store import TrialState

    best: dict[Architecture, tuple[float, float]] = {}
    for t in store.trials([TrialState.COMPLETE]):
        m = t.all_metrics()
        if metric not in m or not math.isfinite(float(m[metric])):
            continue
        fid = float(sum(float(v) for v in t.fidelity.values() if isinstance(v, (int, float)))) if t.fidelity else 0.0
        if t.arch not in best or fid >= best[t.arch][0]:
            best[t.arch] = (fid, float(m[metric]))
    archs = list(best)
    return archs, np.asarray([best[a][1] for a in archs], dtype=float)


class _Base:
    def __init__(self, space: SearchSpace, *, features: Callable[[Architecture], Sequence[float]] | None = None,
                 seed: int = 0):
        self.space, self.features, self.seed = space, features, int(seed)
        self._fitted = False

    def _x(self, archs: Sequence[Architecture]) -> np.ndarray:
        rows = []
        for a in archs:
            v = list(self.space.encode(a))
            if self.features is not None:
                v += [float(f) for f in self.features(a)]
            rows.append(v)
        return np.asarray(rows, dtype=float)

    def _check(self, archs: Sequence[Architecture], y: Sequence[float] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ya = np.asarray(y, dtype=float)
        if len(archs) != len(ya):
            raise ConfigError(f"predictor: {len(archs)} architectures but {len(ya)} values")
        if len(ya) < 3:
            raise ConfigError(f"predictor: needs at least 3 completed trials to fit, got {len(ya)}")
        if not np.all(np.isfinite(ya)):
            raise ConfigError("predictor: training values must be finite")
        return self._x(archs), ya

    def _need_fit(self) -> None:
        if not self._fitted:
            raise ConfigError("predictor is not fitted; call fit(archs, values) or from_store(...) first")

    if TYPE_CHECKING:
        def fit(self, archs: Sequence[Architecture], y: Sequence[float] | np.ndarray) -> Self: ...

    @classmethod
    def from_store(cls, store: Any, space: SearchSpace, metric: str, **kwargs: Any) -> Self:
        """Fitted on a study's completed trials (``metric`` of each)."""
        archs, y = trials_dataset(store, metric)
        return cls(space, **kwargs).fit(archs, y)


class MLPEnsemble(_Base):
    """Ensemble of ``n_models`` small MLPs on bootstrap resamples; ``predict`` gives mean and spread."""

    def __init__(self, space: SearchSpace, *, n_models: int = 5, hidden: Sequence[int] = (32, 32), alpha: float = 1e-2,
                 bootstrap: bool = True, max_iter: int = 1000,
                 features: Callable[[Architecture], Sequence[float]] | None = None, seed: int = 0):
        super().__init__(space, features=features, seed=seed)
        if n_models < 1:
            raise ConfigError(f"n_models must be >= 1, got {n_models}")
        self.n_models, self.hidden, self.alpha = int(n_models), tuple(hidden), float(alpha)
        self.bootstrap, self.max_iter = bootstrap, int(max_iter)
        self._models: list[Any] = []

    def fit(self, archs: Sequence[Architecture], y: Sequence[float] | np.ndarray) -> "MLPEnsemble":
        with _one_thread():
            return self._fit(archs, y)

    def _fit(self, archs: Sequence[Architecture], y: Sequence[float] | np.ndarray) -> "MLPEnsemble":
        import warnings

        from sklearn.exceptions import ConvergenceWarning
        from sklearn.neural_network import MLPRegressor

        x, yy = self._check(archs, y)
        self._xm, self._xs = x.mean(0), x.std(0) + 1e-9
        self._ym, self._ys = float(yy.mean()), float(yy.std() + 1e-12)
        xn, yn = (x - self._xm) / self._xs, (yy - self._ym) / self._ys
        rng = np.random.default_rng(self.seed)
        self._models = []
        for i in range(self.n_models):
            idx = rng.integers(0, len(yn), len(yn)) if self.bootstrap and self.n_models > 1 else np.arange(len(yn))
            m = MLPRegressor(hidden_layer_sizes=self.hidden, alpha=self.alpha, solver="lbfgs", max_iter=self.max_iter,
                             random_state=self.seed * 1000 + i)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                m.fit(xn[idx], yn[idx])
            self._models.append(m)
        self._fitted = True
        return self

    def predict(self, archs: Sequence[Architecture]) -> tuple[np.ndarray, np.ndarray]:
        self._need_fit()
        xn = (self._x(archs) - self._xm) / self._xs
        with _one_thread():
            preds = np.stack([m.predict(xn) for m in self._models]) * self._ys + self._ym
        return preds.mean(0), preds.std(0)


class GPPredictor(_Base):
    """Gaussian-process regression (Matern 5/2 + white noise) on the encodings."""

    def fit(self, archs: Sequence[Architecture], y: Sequence[float] | np.ndarray) -> "GPPredictor":
        import warnings

        from sklearn.exceptions import ConvergenceWarning
        from sklearn.gaussian_process import GaussianProcessRegressor
        from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

        x, yy = self._check(archs, y)
        kernel = ConstantKernel(1.0) * Matern(length_scale=np.ones(x.shape[1]) * 2.0, nu=2.5,
                                              length_scale_bounds=(1e-2, 1e3)) + WhiteKernel(1e-2, (1e-6, 1e1))
        with _one_thread(), warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            self._gp = GaussianProcessRegressor(kernel=kernel, normalize_y=True, n_restarts_optimizer=1,
                                                random_state=self.seed).fit(x, yy)
        self._fitted = True
        return self

    def predict(self, archs: Sequence[Architecture]) -> tuple[np.ndarray, np.ndarray]:
        self._need_fit()
        with _one_thread():
            mean, std = self._gp.predict(self._x(archs), return_std=True)
        return np.asarray(mean), np.asarray(std)


class PredictorEstimator(Estimator):
    """A fitted predictor as an estimator: metrics ``<name>`` (prediction) and ``<name>_std``."""

    def __init__(self, predictor: Any, name: str = "predicted"):
        self.predictor, self.name = predictor, name
        self.metric_names = (name, f"{name}_std")

    def evaluate(self, ctx: EvalContext) -> dict[str, float]:
        mean, std = self.predictor.predict([ctx.arch])
        return {self.name: float(mean[0]), f"{self.name}_std": float(std[0])}
