"""A search space seen as a sequence of discrete decisions (shared by the model-based strategies).

Walking a space in declaration order, every active dimension is one decision:

* a categorical dimension chooses one of its choices;
* an integer or stepped float dimension chooses a grid value (grids wider than
  ``max_options`` and continuous floats are cut into ``max_options`` equal bins of
  the unit interval, each standing for its centre value);
* a repeat first decides its count (``stages#n``), then walks its block once per
  copy with a per-copy key prefix (``stages[0].channels``, ``stages[1].channels``).

Conditions are honoured as the walk goes, so every decoded architecture is
valid. :class:`DecisionSpace` lists every decision that can ever occur (repeats
unrolled to their maximum count) with a fixed position, which is what the
REINFORCE policy and the Parzen/TPE models index their parameters by.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence, cast

from nas_core.space import Architecture, Dimension, Repeat, SearchSpace


@dataclass(frozen=True)
class Decision:
    key: str
    n: int  # number of options
    dim: Dimension | None  # None for a repeat count
    kind: str  # "grid" (one option per value) | "bins" (of the unit interval) | "count" (of a repeat)
    low: int = 0  # first count of a repeat


def _kind(dim: Dimension, max_options: int) -> tuple[str, int]:
    """A dimension with a short list of values is one option per value ("grid"); any other is cut into
    ``max_options`` bins of its unit interval ("bins"). Only the public Dimension interface is used, so a
    new dimension kind needs nothing here."""
    vals = dim.values(max_options)
    if vals is not None:
        return "grid", len(vals)
    return "bins", max_options


class DecisionSpace:
    """The decisions of ``space`` and conversions between architectures and option indices."""

    def __init__(self, space: SearchSpace, max_options: int = 16):
        self.space = space
        self.max_options = int(max_options)
        self.decisions: list[Decision] = []
        self._collect(space.dimensions, "")
        self.position = {d.key: i for i, d in enumerate(self.decisions)}
        self.offsets: list[int] = []
        total = 0
        for d in self.decisions:
            self.offsets.append(total)
            total += d.n
        self.width = total  # length of the concatenated one-hot of all decisions

    def _collect(self, dims: Sequence[Dimension], prefix: str) -> None:
        for dim in dims:
            if isinstance(dim, Repeat):
                self.decisions.append(Decision(f"{prefix}{dim.name}#n", dim.max_count - dim.min_count + 1, None,
                                               "count", dim.min_count))
                for i in range(dim.max_count):
                    self._collect(dim.block, f"{prefix}{dim.name}[{i}].")
            else:
                kind, n = _kind(dim, self.max_options)
                self.decisions.append(Decision(f"{prefix}{dim.name}", n, dim, kind))

    # -- values <-> indices ---------------------------------------------------------------------
    @staticmethod
    def _value(d: Decision, i: int) -> Any:
        if d.kind == "count":
            return d.low + i
        dim = cast(Dimension, d.dim)  # every decision but a repeat count has its dimension
        if d.kind == "grid":
            return cast("list[Any]", dim.values())[i]
        return dim.from_unit((i + 0.5) / d.n)

    @staticmethod
    def _index(d: Decision, value: Any) -> int:
        if d.kind == "count":
            return int(value) - d.low
        dim = cast(Dimension, d.dim)
        if d.kind == "grid":
            return dim.index(value)
        return min(d.n - 1, max(0, int(math.floor(dim.to_unit(value) * d.n))))

    def choices(self, arch: Architecture) -> list[tuple[int, int]]:
        """The (decision position, option index) pairs that produce ``arch``, in walk order."""
        out: list[tuple[int, int]] = []
        self._walk_values(self.space.dimensions, arch.to_dict(), "", out)
        return out

    def _walk_values(self, dims: Sequence[Dimension], values: Mapping[str, Any], prefix: str,
                     out: list[tuple[int, int]]) -> None:
        for dim in dims:
            if dim.name not in values:
                continue
            if isinstance(dim, Repeat):
                blocks = values[dim.name]
                t = self.position[f"{prefix}{dim.name}#n"]
                out.append((t, len(blocks) - dim.min_count))
                for i, b in enumerate(blocks):
                    self._walk_values(dim.block, b, f"{prefix}{dim.name}[{i}].", out)
            else:
                t = self.position[f"{prefix}{dim.name}"]
                out.append((t, self._index(self.decisions[t], values[dim.name])))

    def decode(self, choose: Callable[[int, list[tuple[int, int]]], int]) -> tuple[Architecture, list[tuple[int, int]]]:
        """Build an architecture by asking ``choose(position, choices_so_far)`` for each active decision."""
        made: list[tuple[int, int]] = []
        values = self._decode_scope(self.space.dimensions, "", choose, made)
        return Architecture(values), made

    def _decode_scope(self, dims: Sequence[Dimension], prefix: str, choose: Callable[[int, list[tuple[int, int]]], int],
                      made: list[tuple[int, int]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for dim in dims:
            cond = dim.condition
            if cond is not None and not cond.holds(out):
                continue
            if isinstance(dim, Repeat):
                t = self.position[f"{prefix}{dim.name}#n"]
                i = int(choose(t, made))
                made.append((t, i))
                out[dim.name] = [self._decode_scope(dim.block, f"{prefix}{dim.name}[{k}].", choose, made)
                                 for k in range(dim.min_count + i)]
            else:
                t = self.position[f"{prefix}{dim.name}"]
                i = int(choose(t, made))
                made.append((t, i))
                out[dim.name] = self._value(self.decisions[t], i)
        return out
