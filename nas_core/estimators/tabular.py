"""Tabulated benchmarks: replay a table of measured architectures instead of training.

A *table* is a CSV file with one row per (architecture, fidelity) and a JSON
sidecar (``<table>.meta.json``) that says which columns are fidelity keys, which
are costs known before training, and which were measured by training, plus the
table's provenance (command, date, git commit, space definition). The project
builds one for a reduced digits space with ``benchmarks/build_table.py``.

* :class:`Table` loads it and answers lookups (``table.lookup(arch, {"epochs": 8})``).
* :class:`TabularEstimator` is an :class:`~nas_core.estimators.base.Estimator`
  that replays the table: no training, and the metric ``train_seconds`` is the
  measured training time of that row, so a caller can keep a *simulated* clock
  (the sum of ``train_seconds`` over evaluations) and compare strategies by
  simulated time over many seeds in minutes.
* :class:`TabularTask` binds a table to a study (hardware costs come from the
  table, so nothing is built or trained).
* :func:`enumerate_architectures` lists every architecture of a countable space
  (used to build tables; equal in number to ``space.size()``).

Example::

    >>> from nas_core.estimators.tabular import Table, DIGITS_TABLE
    >>> table = Table.load(DIGITS_TABLE)                          # doctest: +SKIP
    >>> arch = table.architectures()[0]                            # doctest: +SKIP
    >>> table.lookup(arch, {"epochs": 8})["val_accuracy"]          # doctest: +SKIP
"""

from __future__ import annotations

import copy
import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Sequence

import numpy as np

from nas_core.errors import ConfigError, TrialFailed
from nas_core.estimators.base import EvalContext, Estimator
from nas_core.space import Architecture, Dimension, Repeat, SearchSpace

if TYPE_CHECKING:
    from nas_core.task import Task

__all__ = ["DIGITS_TABLE", "Table", "TabularEstimator", "TabularTask", "enumerate_architectures", "fidelity_key"]

#: the table the project built and committed (see benchmarks/tables/README.md)
DIGITS_TABLE = Path(__file__).resolve().parents[2] / "benchmarks" / "tables" / "digits_table.csv"


# -- enumeration -----------------------------------------------------------------------------

def _values(dim: Dimension) -> list[Any]:
    if not isinstance(dim, Repeat):
        vals = dim.values()
        if vals is None:
            raise ConfigError(f"dimension '{dim.name}' is continuous; give it a step to enumerate the space")
        return vals
    blocks = list(_enumerate_scope(dim.block))
    out: list[Any] = []
    for n in range(dim.min_count, dim.max_count + 1):
        out.extend(_product_lists(blocks, n))
    return out


def _product_lists(blocks: list[dict[str, Any]], n: int) -> Iterator[list[dict[str, Any]]]:
    if n == 0:
        yield []
        return
    for head in blocks:
        for tail in _product_lists(blocks, n - 1):
            yield [copy.deepcopy(head)] + tail


def _enumerate_scope(dims: Sequence[Dimension], assigned: dict[str, Any] | None = None, start: int = 0) -> Iterator[dict[str, Any]]:
    assigned = {} if assigned is None else assigned
    if start == len(dims):
        yield dict(assigned)
        return
    dim = dims[start]
    cond = dim.condition
    if cond is not None and not cond.holds(assigned):
        yield from _enumerate_scope(dims, assigned, start + 1)
        return
    for v in _values(dim):
        yield from _enumerate_scope(dims, {**assigned, dim.name: v}, start + 1)


def enumerate_architectures(space: SearchSpace, limit: int = 1_000_000) -> list[Architecture]:
    """Every architecture of ``space`` in a fixed order; refuses spaces larger than ``limit``."""
    n = space.size()
    if math.isinf(n):
        raise ConfigError(f"space '{space.name}' has continuous float dimensions (infinitely many architectures); "
                          "give every float a step to tabulate it")
    if n > limit:
        raise ConfigError(f"space '{space.name}' has {n} architectures; restrict it to at most {limit} to tabulate it")
    return [Architecture(v) for v in _enumerate_scope(space.dimensions)]


# -- the table ---------------------------------------------------------------------------------

def fidelity_key(fidelity: Mapping[str, Any], keys: Sequence[str]) -> tuple[Any, ...]:
    """Canonical tuple of a fidelity's values for ``keys`` (numbers compare as floats)."""
    out = []
    for k in keys:
        v = fidelity.get(k)
        out.append(float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v)
    return tuple(out)


def _num(text: str) -> float:
    return float("nan") if text in ("", "nan", "NaN") else float(text)


@dataclass
class _Meta:
    fidelity_columns: list[str]
    static_columns: list[str]
    metric_columns: list[str]
    time_column: str
    space: dict[str, Any]
    extra: dict[str, Any]


class Table:
    """A loaded table: architectures, their costs, and metrics per fidelity."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        meta_path = self.path.with_suffix(".meta.json")
        if not self.path.is_file():
            raise ConfigError(f"no table at {self.path}; build one with 'python benchmarks/build_table.py'")
        if not meta_path.is_file():
            raise ConfigError(f"table {self.path} has no sidecar {meta_path.name} describing its columns")
        m = json.loads(meta_path.read_text())
        self.meta = _Meta(list(m["fidelity_columns"]), list(m["static_columns"]), list(m["metric_columns"]),
                          str(m.get("time_column", "train_seconds")), dict(m.get("space", {})), m)
        self._archs: list[Architecture] = []
        self._index: dict[str, int] = {}
        self._static: list[dict[str, float]] = []
        self._rows: dict[tuple[int, tuple[Any, ...]], dict[str, float]] = {}
        fids: dict[tuple[Any, ...], dict[str, Any]] = {}
        with self.path.open(newline="") as fh:
            reader = csv.DictReader(fh)
            missing = {"arch", *self.meta.fidelity_columns, *self.meta.static_columns, *self.meta.metric_columns,
                       self.meta.time_column} - set(reader.fieldnames or [])
            if missing:
                raise ConfigError(f"table {self.path} lacks column(s) {sorted(missing)} named in its sidecar")
            for row in reader:
                arch = Architecture.from_json(row["arch"])
                i = self._index.get(arch.canonical)
                if i is None:
                    i = len(self._archs)
                    self._index[arch.canonical] = i
                    self._archs.append(arch)
                    self._static.append({c: _num(row[c]) for c in self.meta.static_columns})
                fid = {c: _num(row[c]) for c in self.meta.fidelity_columns}
                fk = fidelity_key(fid, self.meta.fidelity_columns)
                fids.setdefault(fk, {c: (int(v) if float(v).is_integer() else v) for c, v in fid.items()})
                metrics = {c: _num(row[c]) for c in self.meta.metric_columns}
                metrics[self.meta.time_column] = _num(row[self.meta.time_column])
                self._rows[(i, fk)] = metrics
        self.fidelities: list[dict[str, Any]] = [fids[k] for k in sorted(fids)]
        for fk in sorted(fids):
            absent = [i for i in range(len(self._archs)) if (i, fk) not in self._rows]
            if absent:
                raise ConfigError(f"table {self.path}: {len(absent)} architecture(s) have no row at fidelity {fids[fk]}, "
                                  f"e.g. {self._archs[absent[0]].canonical}")

    @classmethod
    def load(cls, path: str | Path = DIGITS_TABLE) -> "Table":
        return cls(path)

    # -- queries -------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._archs)

    def architectures(self) -> list[Architecture]:
        return list(self._archs)

    def index(self, arch: Architecture) -> int:
        try:
            return self._index[arch.canonical]
        except KeyError:
            raise KeyError(f"architecture {arch.canonical} is not in table {self.path.name}") from None

    def __contains__(self, arch: object) -> bool:
        return isinstance(arch, Architecture) and arch.canonical in self._index

    @property
    def highest_fidelity(self) -> dict[str, Any]:
        return dict(self.fidelities[-1])

    def _fk(self, fidelity: Mapping[str, Any] | None) -> tuple[Any, ...]:
        fid = {**self.highest_fidelity, **dict(fidelity or {})}
        fk = fidelity_key(fid, self.meta.fidelity_columns)
        if not any(fk == fidelity_key(f, self.meta.fidelity_columns) for f in self.fidelities):
            raise ConfigError(f"table {self.path.name} has no fidelity {dict(fidelity or {})}; it has {self.fidelities}")
        return fk

    def static(self, arch: Architecture) -> dict[str, float]:
        return dict(self._static[self.index(arch)])

    def lookup(self, arch: Architecture, fidelity: Mapping[str, Any] | None = None) -> dict[str, float]:
        """Costs and measured metrics of ``arch`` at ``fidelity`` (default: the highest)."""
        i = self.index(arch)
        return {**self._static[i], **self._rows[(i, self._fk(fidelity))]}

    def column(self, name: str, fidelity: Mapping[str, Any] | None = None) -> np.ndarray:
        """One value per architecture (in :meth:`architectures` order)."""
        if name in self.meta.static_columns:
            return np.array([s[name] for s in self._static], dtype=float)
        fk = self._fk(fidelity)
        return np.array([self._rows[(i, fk)][name] for i in range(len(self._archs))], dtype=float)

    def space(self) -> SearchSpace:
        """The (declarative) space the table enumerates; it does not build models."""
        return SearchSpace.from_dict(self.meta.space)


# -- estimator and task ------------------------------------------------------------------------

class TabularEstimator(Estimator):
    """Replays a :class:`Table`; reports the table's metrics and its measured ``train_seconds``.

    Picklable: workers load the table from its path. An architecture that is not
    in the table fails its trial with a message naming the table.
    """

    def __init__(self, path: str | Path = DIGITS_TABLE):
        self.path = str(path)
        self._table: Table | None = None
        meta = json.loads(Path(self.path).with_suffix(".meta.json").read_text()) if Path(self.path).is_file() else None
        if meta is not None:
            self.metric_names = tuple(meta["metric_columns"]) + (str(meta.get("time_column", "train_seconds")),)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_table"] = None
        return state

    @property
    def table(self) -> Table:
        if self._table is None:
            self._table = Table(self.path)
        return self._table

    def default_fidelity(self) -> dict[str, Any]:
        return self.table.highest_fidelity

    def evaluate(self, ctx: EvalContext) -> dict[str, float]:
        if ctx.arch not in self.table:
            raise TrialFailed(f"architecture {ctx.arch.canonical} is not in table {Path(self.path).name}; "
                              "search the space the table enumerates (Table.space())")
        row = self.table.lookup(ctx.arch, ctx.fidelity)
        return {k: v for k, v in row.items() if k not in self.table.meta.static_columns}


class _TableSpace(SearchSpace):
    """A space whose models are never built (a tabular task needs none)."""

    def build(self, arch: Architecture) -> None:  # type: ignore[override]  # a table needs no model: never built
        return None


def _task_base() -> type[Task]:
    from nas_core.task import Task  # imported lazily: nas_core.task imports the hardware model (torch)

    return Task


class TabularTask(_task_base()):  # type: ignore[misc]
    """A task whose every figure comes from a table (hardware costs included): nothing is trained.

    ``space`` must be a space whose architectures the table holds (e.g. ``Table.space()``
    or the plugin space restricted to the table's definition).
    """

    name = "tabular"

    def __init__(self, space: SearchSpace, table: str | Path = DIGITS_TABLE, **options: Any):
        super().__init__(_TableSpace(space.name, space.dimensions), table=str(table), **options)
        self._estimator = TabularEstimator(table)

    def input_shape(self, arch: Architecture) -> tuple[int, ...]:
        return ()

    def estimator(self) -> TabularEstimator:
        return self._estimator

    def static_metrics(self, arch: Architecture, model: Any, target: Any) -> dict[str, float]:
        if arch not in self._estimator.table:
            return {}
        return self._estimator.table.static(arch)

    def static_metric_names(self, target: Any) -> set[str]:
        return set(self._estimator.table.meta.static_columns)
