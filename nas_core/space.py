"""Declarative, serializable search spaces and frozen architectures.

A :class:`SearchSpace` is a list of dimensions declared up front:

* :class:`Categorical` -- one of a list of JSON values;
* :class:`Integer` -- an integer in ``[low, high]`` on a grid of ``step``;
* :class:`Float` -- a real in ``[low, high]`` (optionally log-scaled, optionally on
  a grid of ``step``, which makes it countable);
* :class:`Repeat` -- a block of dimensions repeated a searchable number of times
  (``min_count`` .. ``max_count``), each copy with its own values;

and any dimension may carry a :class:`Condition` (``when={"block": ["conv"]}``):
it is active only when an earlier dimension of the same scope takes one of the
listed values. Inactive dimensions are absent from the architecture.

An :class:`Architecture` is a frozen value: a canonical JSON string (sorted keys,
no whitespace), a stable hash (SHA-256 of that string, so it is the same in every
process and on every machine) and read access to its values.

Example::

    >>> from nas_core.space import SearchSpace, Categorical, Integer, Repeat
    >>> import numpy as np
    >>> space = SearchSpace("toy", [
    ...     Repeat("stages", [Categorical("k", [3, 5]), Integer("ch", 8, 32, step=8)], 1, 3),
    ...     Categorical("head", ["avg", "max"]),
    ... ])
    >>> arch = space.sample(np.random.default_rng(0))
    >>> space.contains(arch)
    True
    >>> space.size()  # (2 * 4) ** 1 + (2 * 4) ** 2 + (2 * 4) ** 3 blocks, times 2 heads
    1168
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence, cast

import numpy as np

from nas_core.dimensions import (  # re-exported: nas_core.space stays the public module
    Condition,
    Dimension,
    Categorical,
    Integer,
    Float,
    Repeat,
    _check_scope,
    _active,
    _sample_scope,
    _scope_errors,
    _count_scope,
    _scope_neighbours,
    _repair_scope,
    _mutate_scope,
    _encoding_size_scope,
    _encode_scope,
    dimension_from_dict,
    unreachable_conditions,
    _canonical,
)
from nas_core.errors import ConfigError

if TYPE_CHECKING:
    import torch

JSONValue = Any

__all__ = [
    "Architecture",
    "Categorical",
    "Condition",
    "Dimension",
    "Float",
    "Integer",
    "Repeat",
    "SearchSpace",
    "dimension_from_dict",
    "unreachable_conditions",
]



class Architecture:
    """A frozen point of a search space.

    Two architectures are equal exactly when their canonical strings are equal.
    ``arch["name"]`` reads a value; ``arch.to_dict()`` returns a fresh copy.
    """

    __slots__ = ("_canon", "_values", "_hash")
    _canon: str
    _values: dict[str, Any]
    _hash: str

    def __init__(self, values: Mapping[str, Any]):
        canon = _canonical(dict(values))
        object.__setattr__(self, "_canon", canon)
        object.__setattr__(self, "_values", json.loads(canon))
        object.__setattr__(self, "_hash", hashlib.sha256(canon.encode()).hexdigest()[:16])

    def __setattr__(self, name: str, value: Any) -> None:  # pragma: no cover - guard
        raise AttributeError("Architecture is immutable")

    @classmethod
    def from_json(cls, text: str) -> "Architecture":
        try:
            values = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"architecture is not valid JSON: {exc}") from None
        if not isinstance(values, dict):
            raise ConfigError("architecture JSON must be an object of dimension values")
        return cls(values)

    @property
    def canonical(self) -> str:
        return self._canon

    @property
    def hash(self) -> str:
        """Stable 16-hex-digit identifier (SHA-256 of the canonical string)."""
        return self._hash

    def to_dict(self) -> dict[str, Any]:
        return copy.deepcopy(self._values)

    def to_json(self) -> str:
        return self._canon

    def __getitem__(self, key: str) -> Any:
        return copy.deepcopy(self._values[key])

    def get(self, key: str, default: Any = None) -> Any:
        return copy.deepcopy(self._values.get(key, default))

    def __contains__(self, key: object) -> bool:
        return key in self._values

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Architecture) and other._canon == self._canon

    def __hash__(self) -> int:
        return hash(self._canon)

    def __repr__(self) -> str:
        return f"Architecture({self._canon})"

    def __reduce__(self) -> tuple[Callable[[str], Architecture], tuple[str]]:
        return (Architecture.from_json, (self._canon,))


class SearchSpace:
    """An ordered set of dimensions. Subclass and override :meth:`build` to turn
    an architecture into a ``torch.nn.Module``; the declarative part round-trips
    through JSON with :meth:`to_json` / :meth:`from_json`.
    """

    def __init__(self, name: str, dimensions: Iterable[Dimension]):
        if not isinstance(name, str) or not name:
            raise ConfigError(f"a search space needs a non-empty name, got {name!r}")
        self.name = name
        self.dimensions: tuple[Dimension, ...] = tuple(dimensions)
        if not self.dimensions:
            raise ConfigError(f"search space '{name}' has no dimensions")
        _check_scope(self.dimensions, f"search space '{name}'")

    # -- serialization ------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "dimensions": [d.to_dict() for d in self.dimensions]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "SearchSpace":
        if not isinstance(d, Mapping):
            raise ConfigError(f"a space definition must be an object, got {type(d).__name__}")
        extra = set(d) - {"name", "dimensions"}
        if extra:
            raise ConfigError(f"space definition has unknown field(s) {sorted(extra)}; allowed: ['dimensions', 'name']")
        dims = d.get("dimensions")
        if not isinstance(dims, list):
            raise ConfigError(f"space definition needs a list 'dimensions', got {dims!r}")
        name = d.get("name", "space")
        return SearchSpace(name, [dimension_from_dict(x, f"space '{name}'") for x in dims])

    @classmethod
    def from_json(cls, text: str) -> "SearchSpace":
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as exc:
            raise ConfigError(f"space definition is not valid JSON: {exc}") from None

    def same_definition(self, other: "SearchSpace") -> bool:
        return self.to_dict() == other.to_dict()

    # -- operations -----------------------------------------------------------
    def sample(self, rng: np.random.Generator) -> Architecture:
        return Architecture(_sample_scope(self.dimensions, rng))

    def errors(self, arch: Architecture | Mapping[str, Any]) -> list[str]:
        values = arch.to_dict() if isinstance(arch, Architecture) else dict(arch)
        return _scope_errors(self.dimensions, values)

    def contains(self, arch: Architecture | Mapping[str, Any]) -> bool:
        return not self.errors(arch)

    def validate(self, arch: Architecture | Mapping[str, Any]) -> Architecture:
        errs = self.errors(arch)
        if errs:
            raise ConfigError(f"architecture is not in space '{self.name}': {errs[0]}")
        return arch if isinstance(arch, Architecture) else Architecture(arch)

    def mutate(self, arch: Architecture, rng: np.random.Generator, n_changes: int = 1) -> Architecture:
        """Change ``n_changes`` dimensions; the result differs from ``arch`` unless the space has one point."""
        values = arch.to_dict()
        for _ in range(max(1, n_changes)):
            for _attempt in range(16):
                new = _mutate_scope(self.dimensions, values, rng)
                if new != values:
                    values = new
                    break
        return Architecture(values)

    def crossover(self, a: Architecture, b: Architecture, rng: np.random.Generator) -> Architecture:
        """Uniform crossover of top-level dimensions (and of block copies inside repeats)."""
        va, vb = a.to_dict(), b.to_dict()
        child: dict[str, Any] = {}
        for dim in self.dimensions:
            if not _active(dim, child):
                continue
            pick_a = rng.random() < 0.5
            first, second = (va, vb) if pick_a else (vb, va)
            src = first if dim.name in first else second
            if dim.name not in src:
                child[dim.name] = dim.sample(rng)
            elif isinstance(dim, Repeat) and dim.name in va and dim.name in vb:
                la, lb = va[dim.name], vb[dim.name]
                n = len(la) if pick_a else len(lb)
                blocks = []
                for i in range(n):
                    options = [x[i] for x in (la, lb) if i < len(x)]
                    blocks.append(copy.deepcopy(options[int(rng.integers(len(options)))]))
                child[dim.name] = blocks
            else:
                child[dim.name] = copy.deepcopy(src[dim.name])
        return Architecture(_repair_scope(self.dimensions, child, rng))

    def neighbours(self, arch: Architecture) -> list[Architecture]:
        """All architectures one elementary change away (deduplicated, in a fixed order)."""
        seen: set[str] = {arch.canonical}
        out: list[Architecture] = []
        for values in _scope_neighbours(self.dimensions, arch.to_dict()):
            cand = Architecture(values)
            if cand.canonical not in seen:
                seen.add(cand.canonical)
                out.append(cand)
        return out

    def encoding_size(self) -> int:
        return _encoding_size_scope(self.dimensions)

    def encode(self, arch: Architecture) -> np.ndarray[Any, np.dtype[np.float64]]:
        """Fixed-length vector: one-hot categoricals, unit-scaled numbers, padded repeats."""
        return np.asarray(_encode_scope(self.dimensions, arch.to_dict()), dtype=np.float64)

    def size(self) -> float:
        """Number of distinct architectures (``math.inf`` with continuous floats)."""
        n = _count_scope(self.dimensions)
        return n if math.isinf(n) else int(n)

    # -- building ---------------------------------------------------------------
    def build(self, arch: Architecture) -> torch.nn.Module:
        raise NotImplementedError(f"search space '{self.name}' does not build models (subclass SearchSpace and override build)")

    def __repr__(self) -> str:
        return f"SearchSpace({self.name!r}, {len(self.dimensions)} dimensions)"


def _subset_errors(narrow: Dimension, wide: Dimension, where: str) -> list[str]:
    if type(narrow) is not type(wide):
        return [f"{where}: is {type(narrow).__name__.lower()} here but {type(wide).__name__.lower()} in the space"]
    if (narrow.condition and narrow.condition.to_dict()) != (wide.condition and wide.condition.to_dict()):
        return [f"{where}: its condition must stay {wide.condition.to_dict() if wide.condition else 'none'}"]
    if isinstance(narrow, Categorical):
        extra = [c for c in narrow.choices if not wide.validate(c)]
        return [f"{where}: choices {extra!r} are not in the space's {list(cast(Categorical, wide).choices)!r}"] \
            if extra else []
    if isinstance(narrow, Integer):
        bad = [v for v in range(narrow.low, narrow.high + 1, narrow.step) if not wide.validate(v)]
        return [f"{where}: values {bad[:5]!r} are outside {wide.to_dict()}"] if bad else []
    if isinstance(narrow, Float):
        wide = cast(Float, wide)  # same type as narrow (checked above)
        ok = wide.low <= narrow.low and narrow.high <= wide.high and (wide.step is None or narrow.step is not None
                                                                       and wide.validate(narrow.low))
        return [] if ok else [f"{where}: range {narrow.to_dict()} is not inside {wide.to_dict()}"]
    assert isinstance(narrow, Repeat) and isinstance(wide, Repeat)
    errs: list[str] = []
    if narrow.min_count < wide.min_count or narrow.max_count > wide.max_count:
        errs.append(f"{where}: count {narrow.min_count}..{narrow.max_count} is outside {wide.min_count}..{wide.max_count}")
    errs.extend(_scope_subset_errors(narrow.block, wide.block, where + "."))
    return errs


def _scope_subset_errors(narrow: Sequence[Dimension], wide: Sequence[Dimension], prefix: str) -> list[str]:
    wide_by = {d.name: d for d in wide}
    names = [d.name for d in narrow]
    errs = [f"'{prefix}{n}' is not a dimension of the space" for n in names if n not in wide_by]
    errs += [f"'{prefix}{d.name}' is missing (restrict it, do not drop it)" for d in wide if d.name not in names]
    if not errs and names != [d.name for d in wide]:
        errs.append(f"dimensions of '{prefix or 'the space'}' must keep the space's order {[d.name for d in wide]}")
    for d in narrow:
        if d.name in wide_by:
            errs.extend(_subset_errors(d, wide_by[d.name], f"'{prefix}{d.name}'"))
    return errs


def restrict(space: SearchSpace, definition: Mapping[str, Any]) -> SearchSpace:
    """A copy of ``space`` (same class, same ``build``) narrowed to ``definition``.

    The definition is a full space definition (as :meth:`SearchSpace.to_dict`
    writes it) whose every dimension lies inside the plugin's: fewer choices,
    narrower ranges, fewer repeats. This is how users narrow a plugin's space
    from a file without writing code.
    """
    narrow = SearchSpace.from_dict({**dict(definition), "name": definition.get("name", space.name)})
    errs = _scope_subset_errors(narrow.dimensions, space.dimensions, "")
    if errs:
        raise ConfigError(f"space definition does not restrict '{space.name}': {errs[0]}")
    out = copy.copy(space)
    out.name = narrow.name
    out.dimensions = narrow.dimensions
    return out
