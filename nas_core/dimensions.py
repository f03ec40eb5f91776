"""Dimensions of a search space: the open interface and the four built-in kinds.

A dimension kind is one class (a subclass of :class:`Dimension` with a ``kind``
name): it registers itself for space files and JSON round trips by being
defined. :mod:`nas_core.space` re-exports everything here; the scope helpers
(``_sample_scope`` and friends) walk a list of dimensions, conditions included,
for :class:`~nas_core.space.SearchSpace` and :class:`Repeat`.
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping, Sequence, cast

import numpy as np

from nas_core.errors import ConfigError


def _canonical(values: Mapping[str, Any]) -> str:
    return json.dumps(values, sort_keys=True, separators=(",", ":"), allow_nan=False)


@dataclass(frozen=True)
class Condition:
    """Active only when dimension ``parent`` (same scope, declared earlier) is in ``values``."""

    parent: str
    values: tuple[Any, ...]

    def holds(self, assigned: Mapping[str, Any]) -> bool:
        return self.parent in assigned and assigned[self.parent] in self.values

    def to_dict(self) -> dict[str, list[Any]]:
        return {self.parent: list(self.values)}


def _parse_when(when: Any, name: str) -> Condition | None:
    if when is None:
        return None
    if isinstance(when, Condition):
        return when
    if not isinstance(when, Mapping) or len(when) != 1:
        raise ConfigError(f"dimension '{name}': 'when' must map one parent dimension to a list of values, got {when!r}")
    (parent, values), = when.items()
    if not isinstance(values, (list, tuple)) or not values:
        raise ConfigError(f"dimension '{name}': 'when' values for '{parent}' must be a non-empty list, got {values!r}")
    return Condition(str(parent), tuple(values))


#: dimension kinds by their definition ``type`` (filled as the classes are defined)
_DIM_TYPES: dict[str, type["Dimension"]] = {}


@dataclass(frozen=True)
class Dimension:
    """Base class of all dimensions."""

    name: str

    # -- interface -------------------------------------------------------
    def sample(self, rng: np.random.Generator) -> Any:
        raise NotImplementedError

    def validate(self, value: Any) -> bool:
        raise NotImplementedError

    def count(self) -> float:
        raise NotImplementedError

    def neighbours(self, value: Any) -> list[Any]:
        raise NotImplementedError

    def mutate(self, value: Any, rng: np.random.Generator) -> Any:
        options = self.neighbours(value)
        if not options:
            return value
        return options[int(rng.integers(len(options)))]

    def encoding_size(self) -> int:
        raise NotImplementedError

    def encode(self, value: Any) -> list[float]:
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    # -- values, for strategies that discretise or map a dimension (open: a new kind implements these) ----
    def values(self, limit: int | None = None) -> list[Any] | None:
        """Every value in order, when the dimension is finite with at most ``limit`` values (None: any
        finite number); None for a continuous or a larger one (strategies then use :meth:`from_unit`)."""
        return None

    def index(self, value: Any) -> int:
        """Position of ``value`` in :meth:`values`."""
        vals = self.values()
        if vals is None:
            raise TypeError(f"dimension '{self.name}' has no finite list of values")
        key = _canonical({"v": value})
        for i, v in enumerate(vals):
            if _canonical({"v": v}) == key:
                return i
        raise KeyError(value)

    def to_unit(self, value: Any) -> float:
        """``value`` mapped into [0, 1] (monotone for ordered dimensions)."""
        vals = self.values()
        if vals is None:
            raise NotImplementedError(f"dimension '{self.name}': a continuous kind must implement to_unit")
        return self.index(value) / max(1, len(vals) - 1)

    def from_unit(self, u: float) -> Any:
        """The value at ``u`` in [0, 1] (the inverse of :meth:`to_unit`, snapped to a valid value)."""
        vals = self.values()
        if vals is None:
            raise NotImplementedError(f"dimension '{self.name}': a continuous kind must implement from_unit")
        return copy.deepcopy(vals[int(round(min(max(u, 0.0), 1.0) * (len(vals) - 1)))])

    #: the ``type`` of this kind in a space definition, and its fields besides ``type``, ``name`` and
    #: ``when``; a subclass that sets ``kind`` is registered for :func:`dimension_from_dict`
    kind: ClassVar[str] = ""
    fields: ClassVar[frozenset[str]] = frozenset()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("kind"):
            _DIM_TYPES[cls.kind] = cls

    #: fields a definition must give
    required: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def from_definition(cls, name: str, fields: dict[str, Any], where: str) -> "Dimension":
        """Build from a definition's fields (already checked against :attr:`fields` and :attr:`required`)."""
        return cls(name=name, **fields)

    @property
    def condition(self) -> Condition | None:  # overridden by the dataclass field
        return None


@dataclass(frozen=True)
class Categorical(Dimension):
    choices: Sequence[Any] = ()  # any sequence of JSON values; stored as a tuple
    when: Any = field(default=None, compare=True)  # a Condition, {parent: [values]} or None; stored as Condition | None

    def __post_init__(self) -> None:
        choices = tuple(self.choices)
        if not choices:
            raise ConfigError(f"categorical dimension '{self.name}' needs at least one choice")
        for c in choices:
            try:
                _canonical({"v": c})
            except (TypeError, ValueError):
                raise ConfigError(f"categorical dimension '{self.name}': choice {c!r} is not a JSON value") from None
        if len({_canonical({"v": c}) for c in choices}) != len(choices):
            raise ConfigError(f"categorical dimension '{self.name}' has duplicate choices {list(choices)!r}")
        object.__setattr__(self, "choices", choices)
        object.__setattr__(self, "when", _parse_when(self.when, self.name))

    @property
    def condition(self) -> Condition | None:
        return cast("Condition | None", self.when)  # __post_init__ parsed it

    def sample(self, rng: np.random.Generator) -> Any:
        return copy.deepcopy(self.choices[int(rng.integers(len(self.choices)))])

    def validate(self, value: Any) -> bool:
        return any(_canonical({"v": value}) == _canonical({"v": c}) for c in self.choices)

    def _index(self, value: Any) -> int:
        key = _canonical({"v": value})
        for i, c in enumerate(self.choices):
            if _canonical({"v": c}) == key:
                return i
        raise KeyError(value)

    def count(self) -> float:
        return len(self.choices)

    def neighbours(self, value: Any) -> list[Any]:
        i = self._index(value)
        return [copy.deepcopy(c) for j, c in enumerate(self.choices) if j != i]

    def encoding_size(self) -> int:
        return len(self.choices)

    def encode(self, value: Any) -> list[float]:
        out = [0.0] * len(self.choices)
        out[self._index(value)] = 1.0
        return out

    kind: ClassVar[str] = "categorical"
    fields: ClassVar[frozenset[str]] = frozenset({"choices"})

    @classmethod
    def from_definition(cls, name: str, fields: dict[str, Any], where: str) -> "Dimension":
        choices = fields.get("choices")
        if not isinstance(choices, list):
            raise ConfigError(f"{where}: categorical '{name}' needs a list 'choices', got {choices!r}")
        return cls(name=name, **{**fields, "choices": tuple(choices)})

    def values(self, limit: int | None = None) -> list[Any] | None:
        return [copy.deepcopy(c) for c in self.choices]  # always enumerable, whatever the limit

    def index(self, value: Any) -> int:
        return self._index(value)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"type": "categorical", "name": self.name, "choices": list(self.choices)}
        if self.when:
            d["when"] = self.when.to_dict()
        return d


@dataclass(frozen=True)
class Integer(Dimension):
    low: int = 0
    high: int = 0
    step: int = 1
    when: Any = None

    def __post_init__(self) -> None:
        for attr in ("low", "high", "step"):
            v = getattr(self, attr)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise ConfigError(f"integer dimension '{self.name}': {attr} must be an integer, got {v!r}")
        if self.step <= 0:
            raise ConfigError(f"integer dimension '{self.name}': step must be > 0, got {self.step}")
        if self.high < self.low:
            raise ConfigError(f"integer dimension '{self.name}': high {self.high} < low {self.low}")
        if (self.high - self.low) % self.step:
            raise ConfigError(f"integer dimension '{self.name}': high - low ({self.high - self.low}) is not a multiple of step {self.step}")
        object.__setattr__(self, "when", _parse_when(self.when, self.name))

    @property
    def condition(self) -> Condition | None:
        return cast("Condition | None", self.when)  # __post_init__ parsed it

    def _n(self) -> int:
        return (self.high - self.low) // self.step + 1

    def sample(self, rng: np.random.Generator) -> int:
        return int(self.low + self.step * int(rng.integers(self._n())))

    def validate(self, value: Any) -> bool:
        return (isinstance(value, int) and not isinstance(value, bool)
                and self.low <= value <= self.high and (value - self.low) % self.step == 0)

    def count(self) -> float:
        return self._n()

    def neighbours(self, value: int) -> list[int]:
        return [v for v in (value - self.step, value + self.step) if self.low <= v <= self.high]

    def mutate(self, value: int, rng: np.random.Generator) -> int:
        # a local step most of the time, a jump anywhere sometimes (keeps search ergodic)
        if self._n() > 3 and rng.random() < 0.3:
            options = [self.low + self.step * i for i in range(self._n()) if self.low + self.step * i != value]
            return int(options[int(rng.integers(len(options)))])
        return cast(int, super().mutate(value, rng))  # one of neighbours(value), or value

    def encoding_size(self) -> int:
        return 1

    def encode(self, value: int) -> list[float]:
        return [0.0 if self.high == self.low else (value - self.low) / (self.high - self.low)]

    kind: ClassVar[str] = "integer"
    fields: ClassVar[frozenset[str]] = frozenset({"low", "high", "step"})

    required: ClassVar[tuple[str, ...]] = ("low", "high")

    def values(self, limit: int | None = None) -> list[Any] | None:
        return list(range(self.low, self.high + 1, self.step)) if limit is None or self._n() <= limit else None

    def index(self, value: Any) -> int:
        return (int(value) - self.low) // self.step

    def to_unit(self, value: Any) -> float:
        return 0.0 if self.high == self.low else float((value - self.low) / (self.high - self.low))

    def from_unit(self, u: float) -> Any:
        return self.low + int(round(min(max(u, 0.0), 1.0) * (self._n() - 1))) * self.step

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"type": "integer", "name": self.name, "low": int(self.low), "high": int(self.high),
                             "step": int(self.step)}
        if self.when:
            d["when"] = self.when.to_dict()
        return d


@dataclass(frozen=True)
class Float(Dimension):
    low: float = 0.0
    high: float = 1.0
    log: bool = False
    step: float | None = None
    when: Any = None

    def __post_init__(self) -> None:
        for attr in ("low", "high"):
            v = getattr(self, attr)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ConfigError(f"float dimension '{self.name}': {attr} must be a finite number, got {v!r}")
        if self.high < self.low:
            raise ConfigError(f"float dimension '{self.name}': high {self.high} < low {self.low}")
        if not isinstance(self.log, bool):
            raise ConfigError(f"float dimension '{self.name}': log must be true or false, got {self.log!r}")
        if self.step is not None and (isinstance(self.step, bool) or not isinstance(self.step, (int, float))
                                      or not math.isfinite(self.step)):
            raise ConfigError(f"float dimension '{self.name}': step must be a finite number > 0, got {self.step!r}")
        if self.log and self.low <= 0:
            raise ConfigError(f"float dimension '{self.name}': log scale needs low > 0, got {self.low}")
        if self.step is not None and (self.step <= 0 or self.log):
            raise ConfigError(f"float dimension '{self.name}': step must be > 0 and not combined with log, got {self.step}")
        object.__setattr__(self, "when", _parse_when(self.when, self.name))

    @property
    def condition(self) -> Condition | None:
        return cast("Condition | None", self.when)  # __post_init__ parsed it

    def _grid_n(self) -> int:
        return int(round((self.high - self.low) / self.step)) + 1  # type: ignore[operator]

    def _snap(self, v: float) -> float:
        v = min(max(v, self.low), self.high)
        if self.step is not None:
            v = self.low + round((v - self.low) / self.step) * self.step
            v = min(max(v, self.low), self.high)
        return float(round(v, 12))

    def _to_unit(self, v: float) -> float:
        if self.high == self.low:
            return 0.0
        if self.log:
            return (math.log(v) - math.log(self.low)) / (math.log(self.high) - math.log(self.low))
        return (v - self.low) / (self.high - self.low)

    def _from_unit(self, u: float) -> float:
        u = min(max(u, 0.0), 1.0)
        if self.log:
            return self._snap(math.exp(math.log(self.low) + u * (math.log(self.high) - math.log(self.low))))
        return self._snap(self.low + u * (self.high - self.low))

    def sample(self, rng: np.random.Generator) -> float:
        if self.step is not None:
            return self._snap(self.low + self.step * int(rng.integers(self._grid_n())))
        return self._from_unit(float(rng.random()))

    def validate(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if not (self.low <= value <= self.high):
            return False
        return self.step is None or abs(self._snap(value) - value) < 1e-9

    def count(self) -> float:
        return self._grid_n() if self.step is not None else math.inf

    def neighbours(self, value: float) -> list[float]:
        if self.step is not None:
            cand = [self._snap(value - self.step), self._snap(value + self.step)]
        else:
            u = self._to_unit(value)
            cand = [self._from_unit(u - 0.1), self._from_unit(u + 0.1)]
        out: list[float] = []
        for c in cand:
            if abs(c - value) > 1e-12 and c not in out:
                out.append(c)
        return out

    def mutate(self, value: float, rng: np.random.Generator) -> float:
        if self.step is not None:
            return cast(float, super().mutate(value, rng))  # one of neighbours(value), or value
        u = self._to_unit(value) + float(rng.normal(0.0, 0.15))
        return self._from_unit(u)

    def encoding_size(self) -> int:
        return 1

    def encode(self, value: float) -> list[float]:
        return [self._to_unit(value)]

    kind: ClassVar[str] = "float"
    fields: ClassVar[frozenset[str]] = frozenset({"low", "high", "log", "step"})

    required: ClassVar[tuple[str, ...]] = ("low", "high")

    def values(self, limit: int | None = None) -> list[Any] | None:
        if self.step is None or (limit is not None and self._grid_n() > limit):
            return None
        return [self._snap(self.low + k * self.step) for k in range(self._grid_n())]

    def index(self, value: Any) -> int:
        if self.step is None:
            raise TypeError(f"float '{self.name}' is continuous: it has no index")
        return int(round((float(value) - self.low) / self.step))

    def to_unit(self, value: Any) -> float:
        return self._to_unit(float(value))

    def from_unit(self, u: float) -> Any:
        return self._from_unit(u)

    def snap(self, value: float) -> float:
        """``value`` clipped into the range and rounded to the step."""
        return self._snap(value)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"type": "float", "name": self.name, "low": self.low, "high": self.high}
        if self.log:
            d["log"] = True
        if self.step is not None:
            d["step"] = self.step
        if self.when:
            d["when"] = self.when.to_dict()
        return d


@dataclass(frozen=True)
class Repeat(Dimension):
    """A block of dimensions repeated ``min_count`` .. ``max_count`` times.

    Its value is a list of dicts, one per copy; each copy's dimensions are
    independent, and conditions inside the block refer to the same copy.
    """

    block: Sequence[Dimension] = ()  # stored as a tuple
    min_count: int = 1
    max_count: int = 1
    when: Any = None

    def __post_init__(self) -> None:
        block = tuple(self.block)
        if not block:
            raise ConfigError(f"repeat '{self.name}' needs at least one dimension in its block")
        if isinstance(self.min_count, bool) or not isinstance(self.min_count, int) or not isinstance(self.max_count, int):
            raise ConfigError(f"repeat '{self.name}': min_count and max_count must be integers")
        if self.min_count < 0 or self.max_count < self.min_count:
            raise ConfigError(f"repeat '{self.name}': need 0 <= min_count <= max_count, got {self.min_count}..{self.max_count}")
        _check_scope(block, f"repeat '{self.name}'")
        object.__setattr__(self, "block", block)
        object.__setattr__(self, "when", _parse_when(self.when, self.name))

    @property
    def condition(self) -> Condition | None:
        return cast("Condition | None", self.when)  # __post_init__ parsed it

    def sample(self, rng: np.random.Generator) -> list[dict[str, Any]]:
        n = int(rng.integers(self.min_count, self.max_count + 1))
        return [_sample_scope(self.block, rng) for _ in range(n)]

    def validate(self, value: Any) -> bool:
        return (isinstance(value, list) and self.min_count <= len(value) <= self.max_count
                and all(isinstance(v, dict) and _scope_errors(self.block, v) == [] for v in value))

    def count(self) -> float:
        per = _count_scope(self.block)
        if math.isinf(per):
            return math.inf
        return float(sum(per ** n for n in range(self.min_count, self.max_count + 1)))

    def neighbours(self, value: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
        out: list[list[dict[str, Any]]] = []
        if len(value) > self.min_count:
            out.append(copy.deepcopy(value[:-1]))
        if len(value) < self.max_count:
            extra = copy.deepcopy(value[-1]) if value else _first_scope(self.block)
            out.append(copy.deepcopy(value) + [extra])
        for i, copy_values in enumerate(value):
            for nb in _scope_neighbours(self.block, copy_values):
                new = copy.deepcopy(value)
                new[i] = nb
                out.append(new)
        return out

    def mutate(self, value: list[dict[str, Any]], rng: np.random.Generator) -> list[dict[str, Any]]:
        can_resize = self.min_count != self.max_count
        if value and (not can_resize or rng.random() < 0.7):
            i = int(rng.integers(len(value)))
            new = copy.deepcopy(value)
            new[i] = _mutate_scope(self.block, new[i], rng)
            return new
        options = []
        if len(value) > self.min_count:
            options.append("remove")
        if len(value) < self.max_count:
            options.append("add")
        if not options:
            return copy.deepcopy(value)
        new = copy.deepcopy(value)
        if options[int(rng.integers(len(options)))] == "remove":
            del new[int(rng.integers(len(new)))]
        else:
            new.insert(int(rng.integers(len(new) + 1)), _sample_scope(self.block, rng))
        return new

    def encoding_size(self) -> int:
        return self.max_count * (1 + _encoding_size_scope(self.block))

    def encode(self, value: list[dict[str, Any]]) -> list[float]:
        out: list[float] = []
        width = _encoding_size_scope(self.block)
        for i in range(self.max_count):
            if i < len(value):
                out.append(1.0)
                out.extend(_encode_scope(self.block, value[i]))
            else:
                out.extend([0.0] * (1 + width))
        return out

    kind: ClassVar[str] = "repeat"
    fields: ClassVar[frozenset[str]] = frozenset({"block", "min_count", "max_count"})

    @classmethod
    def from_definition(cls, name: str, fields: dict[str, Any], where: str) -> "Dimension":
        block = fields.get("block")
        if not isinstance(block, list):
            raise ConfigError(f"{where}: repeat '{name}' needs a list 'block', got {block!r}")
        return cls(name=name, **{**fields, "block": tuple(dimension_from_dict(b, f"{where}.{name}") for b in block)})

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"type": "repeat", "name": self.name, "min_count": self.min_count,
                             "max_count": self.max_count, "block": [dim.to_dict() for dim in self.block]}
        if self.when:
            d["when"] = self.when.to_dict()
        return d


# -- scope helpers (a scope is an ordered tuple of dimensions) -----------------

def _check_scope(dims: Sequence[Dimension], where: str) -> None:
    seen: set[str] = set()
    for dim in dims:
        if not isinstance(dim, Dimension):
            raise ConfigError(f"{where}: {dim!r} is not a dimension")
        if not isinstance(dim.name, str) or not dim.name:
            raise ConfigError(f"{where}: a dimension has an empty or non-string name {dim.name!r}")
        if dim.name in seen:
            raise ConfigError(f"{where}: duplicate dimension name '{dim.name}'")
        cond = dim.condition
        if cond is not None and cond.parent not in seen:
            raise ConfigError(f"{where}: dimension '{dim.name}' is conditioned on '{cond.parent}', "
                              "which is not an earlier dimension of the same scope")
        if cond is not None:
            parent = next(d for d in dims if d.name == cond.parent)
            if isinstance(parent, Repeat):
                raise ConfigError(f"{where}: dimension '{dim.name}' cannot be conditioned on repeat '{parent.name}'")
        seen.add(dim.name)


def unreachable_conditions(dims: Sequence[Dimension], where: str) -> list[str]:
    """``when`` values a parent dimension never takes (usually a misspelt choice), one sentence each.

    Not an error of the space itself: a space built with fewer choices (a restricted configuration) may
    leave a condition unreachable on purpose. :func:`nas_core.testing.check_space` fails on them.
    """
    out: list[str] = []
    for dim in dims:
        cond = dim.condition
        if isinstance(dim, Repeat):
            out += unreachable_conditions(dim.block, f"{where} repeat '{dim.name}'")
        if cond is None:
            continue
        parent = next(d for d in dims if d.name == cond.parent)
        if isinstance(parent, Categorical):
            missing = [v for v in cond.values if not any(_same(v, c) for c in parent.choices)]
            allowed = ", ".join(map(repr, parent.choices))
        elif isinstance(parent, Integer):
            missing = [v for v in cond.values if isinstance(v, bool) or not isinstance(v, int)
                       or not parent.low <= v <= parent.high or (v - parent.low) % parent.step]
            allowed = f"integers {parent.low}..{parent.high} in steps of {parent.step}"
        else:
            continue
        if missing:
            out.append(f"{where}: dimension '{dim.name}' has when={{'{cond.parent}': {list(cond.values)!r}}} but "
                       f"'{cond.parent}' never takes {', '.join(map(repr, missing))} (it takes {allowed}); fix the "
                       f"spelling" + (f", or '{dim.name}' is never active" if len(missing) == len(cond.values)
                                      else ""))
    return out


def _same(a: Any, b: Any) -> bool:
    """Equal as JSON values (True is not 1, 1 is 1.0)."""
    return type(a) is type(b) and a == b or (isinstance(a, (int, float)) and isinstance(b, (int, float))
                                            and not isinstance(a, bool) and not isinstance(b, bool) and a == b)


def _active(dim: Dimension, assigned: Mapping[str, Any]) -> bool:
    cond = dim.condition
    return cond is None or cond.holds(assigned)


def _sample_scope(dims: Sequence[Dimension], rng: np.random.Generator) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for dim in dims:
        if _active(dim, out):
            out[dim.name] = dim.sample(rng)
    return out


def _first_scope(dims: Sequence[Dimension]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for dim in dims:
        if _active(dim, out):
            out[dim.name] = _first_scope_single(dim)
    return out


def _scope_errors(dims: Sequence[Dimension], values: Mapping[str, Any], prefix: str = "") -> list[str]:
    errors: list[str] = []
    known = {d.name for d in dims}
    for key in values:
        if key not in known:
            errors.append(f"unknown dimension '{prefix}{key}'")
    assigned: dict[str, Any] = {}
    for dim in dims:
        active = _active(dim, assigned)
        if active and dim.name not in values:
            errors.append(f"missing value for '{prefix}{dim.name}'")
        elif not active and dim.name in values:
            errors.append(f"'{prefix}{dim.name}' is set but inactive (condition {dim.condition.to_dict()})")  # type: ignore[union-attr]
        elif active:
            value = values[dim.name]
            if isinstance(dim, Repeat):
                if not isinstance(value, list) or not (dim.min_count <= len(value) <= dim.max_count):
                    errors.append(f"'{prefix}{dim.name}' must be a list of {dim.min_count}..{dim.max_count} blocks, got {value!r}")
                else:
                    for i, v in enumerate(value):
                        if not isinstance(v, dict):
                            errors.append(f"'{prefix}{dim.name}[{i}]' must be an object, got {v!r}")
                        else:
                            errors.extend(_scope_errors(dim.block, v, f"{prefix}{dim.name}[{i}]."))
            elif not dim.validate(value):
                errors.append(f"value {value!r} of '{prefix}{dim.name}' is outside the dimension ({dim.to_dict()})")
            assigned[dim.name] = value
    return errors


def _count_scope(dims: Sequence[Dimension], assigned: dict[str, Any] | None = None, start: int = 0) -> float:
    """Number of distinct value assignments of a scope, honouring conditions."""
    assigned = {} if assigned is None else assigned
    parents = {d.condition.parent for d in dims if d.condition is not None}
    total = 1.0
    for i in range(start, len(dims)):
        dim = dims[i]
        if not _active(dim, assigned):
            continue
        if dim.name in parents:
            # branch on the parent's value, since later dimensions depend on it
            assert isinstance(dim, (Categorical, Integer, Float))
            values: list[Any]
            if isinstance(dim, Categorical):
                values = list(dim.choices)
            elif isinstance(dim, Integer):
                values = list(range(dim.low, dim.high + 1, dim.step))
            else:
                if dim.step is None:
                    return math.inf
                values = [dim._snap(dim.low + k * dim.step) for k in range(dim._grid_n())]
            acc = 0.0
            for v in values:
                acc += _count_scope(dims, {**assigned, dim.name: v}, i + 1)
            return total * acc
        total *= dim.count()
    return total


def _scope_neighbours(dims: Sequence[Dimension], values: Mapping[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for dim in dims:
        if dim.name not in values:
            continue
        for nb in dim.neighbours(values[dim.name]):
            new = dict(copy.deepcopy(values))
            new[dim.name] = nb
            out.append(_repair_scope(dims, new))
    return out


def _repair_scope(dims: Sequence[Dimension], values: Mapping[str, Any],
                  rng: np.random.Generator | None = None) -> dict[str, Any]:
    """Drop values of dimensions made inactive and fill newly active ones."""
    out: dict[str, Any] = {}
    for dim in dims:
        if not _active(dim, out):
            continue
        if dim.name in values:
            out[dim.name] = copy.deepcopy(values[dim.name])
        elif rng is not None:
            out[dim.name] = dim.sample(rng)
        else:
            out[dim.name] = _first_scope_single(dim)
    return out


def _first_scope_single(dim: Dimension) -> Any:
    # the first value of a dimension, ignoring its condition
    if isinstance(dim, Categorical):
        return copy.deepcopy(dim.choices[0])
    if isinstance(dim, Integer):
        return dim.low
    if isinstance(dim, Float):
        return float(dim.low)
    if isinstance(dim, Repeat):
        return [_first_scope(dim.block) for _ in range(dim.min_count)]
    raise TypeError(dim)


def _mutate_scope(dims: Sequence[Dimension], values: Mapping[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    active = [d for d in dims if d.name in values]
    # only dimensions that can change
    changeable = [d for d in active if d.count() != 1 or isinstance(d, Repeat) and d.min_count != d.max_count]
    if not changeable:
        return dict(copy.deepcopy(values))
    dim = changeable[int(rng.integers(len(changeable)))]
    new = dict(copy.deepcopy(values))
    new[dim.name] = dim.mutate(values[dim.name], rng)
    return _repair_scope(dims, new, rng)


def _encoding_size_scope(dims: Sequence[Dimension]) -> int:
    return sum(d.encoding_size() for d in dims)


def _encode_scope(dims: Sequence[Dimension], values: Mapping[str, Any]) -> list[float]:
    out: list[float] = []
    for dim in dims:
        if dim.name in values:
            out.extend(dim.encode(values[dim.name]))
        else:
            out.extend([0.0] * dim.encoding_size())
    return out




def dimension_from_dict(d: Mapping[str, Any], where: str = "space") -> Dimension:
    if not isinstance(d, Mapping):
        raise ConfigError(f"{where}: a dimension must be an object, got {d!r}")
    kind = d.get("type")
    name = d.get("name")
    if kind not in _DIM_TYPES:
        raise ConfigError(f"{where}: dimension {name or '?'!s} has unknown type {kind!r}; use one of {sorted(_DIM_TYPES)}")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{where}: a {kind} dimension needs a non-empty string 'name', got {name!r}")
    cls = _DIM_TYPES[kind]
    allowed = set(cls.fields) | {"when"}
    extra = set(d) - allowed - {"type", "name"}
    if extra:
        raise ConfigError(f"{where}: dimension '{name}' has unknown field(s) {sorted(extra)}; allowed: {sorted(allowed)}")
    kwargs = {k: v for k, v in d.items() if k in allowed}
    if any(k not in kwargs for k in cls.required):
        raise ConfigError(f"{where}: {kind} '{name}' needs " + " and ".join(f"'{k}'" for k in cls.required))
    try:
        return cls.from_definition(name, kwargs, where)
    except TypeError as exc:
        raise ConfigError(f"{where}: dimension '{name}': {exc}") from None
