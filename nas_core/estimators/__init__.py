"""Performance estimators."""

from __future__ import annotations

from nas_core.estimators.base import EvalContext, Estimator

__all__ = ["EvalContext", "Estimator"]
