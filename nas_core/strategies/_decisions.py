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

import copy
import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence, cast

from nas_core.space import Architecture, Categorical, Dimension, Float, Integer, Repeat, SearchSpace


@dataclass(frozen=True)
class Decision:
    key: str
    n: int  # number of options
    dim: Dimension | None  # None for a repeat count
    kind: str  # "choice" | "grid" | "bins" | "count"
    low: int = 0  # first count of a repeat


def _kind(dim: Dimension, max_options: int) -> tuple[str, int]:
    if isinstance(dim, Categorical):
        return "choice", len(dim.choices)
    if isinstance(dim, Integer):
        n = dim._n()
        return ("grid", n) if n <= max_options else ("bins", max_options)
    if isinstance(dim, Float):
        if dim.step is not None and dim._grid_n() <= max_options:
            return "grid", dim._grid_n()
        return "bins", max_options
    raise TypeError(dim)


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
        dim = d.dim
        if d.kind == "count":
            return d.low + i
        if d.kind == "choice":
            return copy.deepcopy(dim.choices[i])  # type: ignore[union-attr]
        if isinstance(dim, Integer):
            if d.kind == "grid":
                return dim.low + i * dim.step
            u = (i + 0.5) / d.n
            k = int(round(u * (dim._n() - 1)))
            return dim.low + k * dim.step
        assert isinstance(dim, Float)
        if d.kind == "grid":
            return dim._snap(dim.low + i * dim.step)  # type: ignore[operator]
        return dim._from_unit((i + 0.5) / d.n)

    @staticmethod
    def _index(d: Decision, value: Any) -> int:
        dim = d.dim
        if d.kind == "count":
            return int(value) - d.low
        if d.kind == "choice":
            return cast(Categorical, dim)._index(value)  # a choice decision is a categorical's
        if isinstance(dim, Integer):
            if d.kind == "grid":
                return (int(value) - dim.low) // dim.step
            u = 0.0 if dim.high == dim.low else (value - dim.low) / (dim.high - dim.low)
        else:
            assert isinstance(dim, Float)
            if d.kind == "grid":
                return int(round((float(value) - dim.low) / dim.step))  # type: ignore[operator]
            u = dim._to_unit(float(value))
        return min(d.n - 1, max(0, int(math.floor(u * d.n))))

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
