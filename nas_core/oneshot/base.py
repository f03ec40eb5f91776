"""The small interface of one-shot searchers (DARTS, single-path one-shot, Once-for-All specialisation).

They are not ask/tell strategies: they train shared weights (a mixed network or
a supernet) and read an architecture off them. Each has a ``search()`` that
returns a :class:`OneShotResult`: the architecture found, the wall time spent,
and searcher-specific details (architecture weights, history, scores). The
architecture is then trained from scratch (DARTS) or used with inherited
weights (supernets) by the caller, for instance with the task's estimator.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from nas_core.space import Architecture


@dataclass(frozen=True)
class OneShotResult:
    arch: Architecture
    search_s: float
    details: Mapping[str, Any] = field(default_factory=dict)


class OneShotSearcher(ABC):
    """``search(progress=None) -> OneShotResult``; ``progress(dict)`` is called with per-epoch figures."""

    @abstractmethod
    def search(self, progress: Callable[[Mapping[str, Any]], None] | None = None) -> OneShotResult:
        ...
