"""One-shot search: DARTS, single-path one-shot supernets, elastic (Once-for-All) supernets.

These are one-shot searchers with their own small interface
(:class:`~nas_core.oneshot.base.OneShotSearcher`), not ask/tell strategies:

* :mod:`nas_core.oneshot.mixed` - :class:`MixedOp`, the mixed-op space protocol
  :class:`MixedOpSupport`, per-candidate costs, sub-network extraction;
* :mod:`nas_core.oneshot.darts` - first- and second-order DARTS with a
  differentiable hardware penalty and a guard against parameter-free collapse;
* :mod:`nas_core.oneshot.supernet` - weight-sharing supernets, single-path
  one-shot training with uniform sampling, evolutionary search with inherited
  weights, and the supernet estimator.
"""

from __future__ import annotations

from nas_core.oneshot.base import OneShotResult, OneShotSearcher
from nas_core.oneshot.darts import DARTS, DARTSConfig, DARTSResult, derive_choices
from nas_core.oneshot.mixed import (
    CandidateCost,
    MixedOp,
    MixedOpSupport,
    candidate_costs,
    decisions,
    expected_cost,
    extract_path,
    mixed_ops,
    mixed_support,
    register_mixed_support,
    set_path,
    set_weights,
)
from nas_core.oneshot.supernet import (
    MixedPathSupernet,
    SinglePathOneShot,
    Supernet,
    SupernetEstimator,
    SupernetTrainConfig,
    evaluate_subnet,
    evolve,
    sliced_batch_norm,
    train_supernet,
)

__all__ = [
    "DARTS",
    "CandidateCost",
    "DARTSConfig",
    "DARTSResult",
    "MixedOp",
    "MixedOpSupport",
    "MixedPathSupernet",
    "OneShotResult",
    "OneShotSearcher",
    "SinglePathOneShot",
    "Supernet",
    "SupernetEstimator",
    "SupernetTrainConfig",
    "candidate_costs",
    "decisions",
    "derive_choices",
    "evaluate_subnet",
    "evolve",
    "expected_cost",
    "extract_path",
    "mixed_ops",
    "mixed_support",
    "register_mixed_support",
    "set_path",
    "set_weights",
    "sliced_batch_norm",
    "train_supernet",
]
