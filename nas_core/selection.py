"""Selection rules: pick exactly one model from a study by a rule fixed in code, before any test set is read.

A benchmark or a user that evaluates "the best models" on a test set and then
reports the one that did best there has tuned on the test set. A rule decided
in advance -- written here, applied to the study's own (validation or
out-of-fold) figures -- removes that choice::

    from nas_core.selection import best_feasible
    chosen = best_feasible(store.trials([TrialState.COMPLETE]), score="cv_macro_f1",
                           constraints=[Constraint.parse("params<=50000")], tie_break="energy_uj_per_beat")

Rejected trials never count (they broke a budget before training); a complete
trial must still meet every given constraint on its stored metrics.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Sequence

from nas_core.errors import ConfigError

__all__ = ["best_feasible"]


def best_feasible(trials: Iterable[Any], *, score: str, constraints: Sequence[Any] = (),
                  tie_break: str | None = None, direction: str = "max") -> Any:
    """The one trial with the best ``score`` among those meeting every constraint.

    Ties (equal ``score``) go to the lower ``tie_break`` metric (e.g. energy per
    beat), then to the lower trial number. Raises ConfigError when no trial
    qualifies, naming why.
    """
    if direction not in ("max", "min"):
        raise ConfigError(f"direction must be 'max' or 'min', got {direction!r}")
    pool = []
    seen = 0
    for t in trials:
        seen += 1
        m = t.all_metrics()
        v = m.get(score)
        if v is None or not math.isfinite(float(v)):
            continue
        if any(c.violation(m) for c in constraints):
            continue
        tb = float(m.get(tie_break, math.inf)) if tie_break else 0.0
        pool.append(((-float(v) if direction == "max" else float(v)), tb, t.number, t))
    if not pool:
        raise ConfigError(f"no trial of {seen} has a finite '{score}' and meets every constraint")
    return min(pool, key=lambda p: p[:3])[3]
