"""The study store: one SQLite file, one row per trial, every change atomic.

Layout (schema version :data:`SCHEMA_VERSION`):

* ``meta``: key/value rows -- ``schema_version``, ``study_id`` (a fingerprint of
  the study's definition), ``study_name``, ``config`` (the study definition as
  JSON), ``created``, ``nas_core_version``, ``provenance`` (JSON record of code
  and package versions, data checksums, seed, config and hardware target; see
  :mod:`nas_core.provenance`) and ``runs`` (JSON list, one entry per run or resume);
* ``trials``: one row per trial -- number, architecture JSON and hash, state,
  metrics, costs, fidelity, seed, error text, rejection reason, timestamps and
  durations, attempts;
* ``strategy``: the strategy's JSON state after the last ask or tell.

The store holds JSON and numbers only: nothing in it is ever unpickled or
evaluated, so opening a store from elsewhere cannot run code.

Each trial transition and the strategy state it leads to are written in one
transaction (WAL journal, ``synchronous=FULL``), so a process killed at any
instant leaves a store that is either before or after the transition, never
between. Only the study's driver process writes; workers return results to it.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Iterable, Mapping, cast

from nas_core.errors import StoreError
from nas_core.space import Architecture
from nas_core.values import TrialState as TrialState  # re-exported: its home is nas_core.values

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class TrialRecord:
    number: int
    arch: Architecture
    state: TrialState
    seed: int
    fidelity: Mapping[str, Any] = field(default_factory=dict)
    metrics: Mapping[str, float] = field(default_factory=dict)
    costs: Mapping[str, float] = field(default_factory=dict)
    error: str | None = None
    reason: str | None = None
    created: float = 0.0
    finished: float | None = None
    duration_s: float | None = None
    attempts: int = 0

    @property
    def arch_hash(self) -> str:
        return self.arch.hash

    def all_metrics(self) -> dict[str, float]:
        """Costs and measured metrics in one mapping (measured ones win on a name clash)."""
        return {**self.costs, **self.metrics}


_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS trials (
    number INTEGER PRIMARY KEY,
    arch TEXT NOT NULL,
    arch_hash TEXT NOT NULL,
    state TEXT NOT NULL,
    seed INTEGER NOT NULL,
    fidelity TEXT NOT NULL DEFAULT '{}',
    metrics TEXT NOT NULL DEFAULT '{}',
    costs TEXT NOT NULL DEFAULT '{}',
    error TEXT,
    reason TEXT,
    created REAL NOT NULL,
    finished REAL,
    duration_s REAL,
    attempts INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS trials_hash ON trials(arch_hash);
CREATE TABLE IF NOT EXISTS strategy (id INTEGER PRIMARY KEY CHECK (id = 1), state TEXT NOT NULL);
"""


def _dumps(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, allow_nan=True)


def _raise_if_full(err: BaseException, path: Path, action: str = "write") -> None:
    """A store write (or open) that failed for lack of space: one clear StoreError (the transaction was rolled
    back)."""
    text = str(err)
    if "full" in text or "No space" in text or "disk I/O error" in text:
        import shutil

        try:
            free = f"{shutil.disk_usage(path.parent).free / 1e6:.1f} MB free"
        except OSError:
            free = "free space unknown"
        raise StoreError(f"cannot {action} the study store {path}: {text} ({free} on its disk); nothing was half-"
                         "written; free space, then 'nas resume' continues") from None


class Store:
    """Open with :meth:`create` (new or matching study) or :meth:`open` (existing)."""

    def __init__(self, path: Path, conn: sqlite3.Connection):
        self.path = path
        self._conn = conn

    # -- opening ----------------------------------------------------------------
    @staticmethod
    def _connect(path: Path, *, pragmas: bool = True) -> sqlite3.Connection:
        conn = sqlite3.connect(str(path), timeout=30.0, isolation_level=None)
        if pragmas:
            Store._pragmas(conn)
        return conn

    @staticmethod
    def _pragmas(conn: sqlite3.Connection) -> None:
        conn.execute("PRAGMA journal_mode=WAL")  # a write for a store not yet in WAL mode: only after the checks
        conn.execute("PRAGMA synchronous=FULL")

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> "Store":
        """Open an existing store, refusing corrupt files and other schema versions."""
        p = Path(path)
        if not p.is_file():
            raise StoreError(f"no study store at {p}")
        # every check reads only: a refused file is left byte-identical. (The file is never opened outside
        # SQLite: closing any descriptor of it would drop this process's SQLite locks on it.)
        if p.stat().st_size == 0:
            raise StoreError(f"study store {p} is an empty file, not a study store")
        conn = None
        try:
            conn = cls._connect(p, pragmas=False)
            # a store already in WAL mode takes the pragmas without a write; any other SQLite file gets them
            # only after every check has passed
            wal = str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower() == "wal"
            if wal:
                cls._pragmas(conn)
            check = conn.execute("PRAGMA quick_check").fetchone()
            if not check or check[0] != "ok":
                raise sqlite3.DatabaseError(str(check))
            rows = dict(conn.execute("SELECT key, value FROM meta").fetchall())
            conn.execute("SELECT number FROM trials LIMIT 1").fetchall()
        except sqlite3.DatabaseError as exc:
            if conn is not None:
                conn.close()
            _raise_if_full(exc, p, "open")  # SQLite says "disk I/O error" when WAL's shared memory cannot grow
            raise StoreError(f"study store {p} is corrupt or not a study store ({exc})") from None
        version = rows.get("schema_version")
        if version is None or "study_id" not in rows:
            raise StoreError(f"study store {p} has no study metadata; it was not written by nas_core")
        if not str(version).isdigit() or int(version) != SCHEMA_VERSION:
            from nas_core import __version__

            conn.close()
            writer = rows.get("nas_core_version", "an unknown version")
            raise StoreError(f"study store {p} has schema version {version} (written by nas_core {writer}); "
                             f"this nas_core {__version__} reads schema version {SCHEMA_VERSION}; open it with the "
                             "nas_core version that wrote it")
        store = cls(p, conn)
        try:
            store._check_rows()
            for key in ("config", "runs", "provenance"):
                store._json_meta(key, "{}")
        except StoreError:
            conn.close()
            raise
        if not wal:
            cls._pragmas(conn)
        return store

    def _check_rows(self) -> None:
        """Decode every trial row and the strategy state (JSON only), refusing the store at the first bad one."""
        for row in self._conn.execute(f"SELECT {self._COLUMNS} FROM trials"):
            self._record(row)
        row = self._conn.execute("SELECT state FROM strategy WHERE id = 1").fetchone()
        if row is not None:
            try:
                json.loads(row[0])
            except (ValueError, TypeError) as exc:
                raise StoreError(f"study store {self.path}: the strategy state is corrupt ({exc})") from None

    @classmethod
    def create(cls, path: str | os.PathLike[str], *, study_id: str, study_name: str, config: Mapping[str, Any],
               provenance: Mapping[str, Any] | None = None) -> "Store":
        """Create a store, or open an existing one of the *same* study (for resuming).

        ``provenance`` is recorded only when the store is created (a resumed study keeps its original record).
        """
        p = Path(path)
        if p.exists():
            store = cls.open(p)
            if store.study_id != study_id:
                raise StoreError(
                    f"study store {p} belongs to a different study (study '{store.meta('study_name')}', id {store.study_id}); "
                    "use another --out directory, or 'nas resume' to continue that study")
            if provenance is not None and store.meta("provenance") is None:
                store.set_meta("provenance", _dumps(dict(provenance)))
            return store
        p.parent.mkdir(parents=True, exist_ok=True)
        conn = cls._connect(p)
        try:
            conn.execute("BEGIN IMMEDIATE")
            for stmt in _SCHEMA.strip().split(";"):
                if stmt.strip():
                    conn.execute(stmt)
            from nas_core import __version__

            meta = {
                "schema_version": str(SCHEMA_VERSION),
                "study_id": study_id,
                "study_name": study_name,
                "config": _dumps(dict(config)),
                "created": repr(time.time()),
                "nas_core_version": __version__,
            }
            if provenance is not None:
                meta["provenance"] = _dumps(dict(provenance))
            conn.executemany("INSERT INTO meta(key, value) VALUES (?, ?)", list(meta.items()))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return cls(p, conn)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- metadata -------------------------------------------------------------------
    def meta(self, key: str) -> str | None:
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def _json_meta(self, key: str, default: str) -> Any:
        text = self.meta(key) or default
        try:
            return json.loads(text)
        except (ValueError, TypeError) as exc:
            raise StoreError(f"study store {self.path}: meta '{key}' is corrupt ({exc})") from None

    @property
    def study_id(self) -> str:
        return str(self.meta("study_id"))

    @property
    def config(self) -> dict[str, Any]:
        return cast("dict[str, Any]", self._json_meta("config", "{}"))

    def set_meta(self, key: str, value: str) -> None:
        with self._tx():
            self._conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    @property
    def provenance(self) -> dict[str, Any]:
        """The provenance record written when the study was created (``{}`` for stores that predate it)."""
        return cast("dict[str, Any]", self._json_meta("provenance", "{}"))

    def runs(self) -> list[dict[str, Any]]:
        return cast("list[dict[str, Any]]", self._json_meta("runs", "[]"))

    def add_run(self, record: Mapping[str, Any]) -> None:
        """Append one run's record (time, code version, operational settings) to meta ``runs``."""
        with self._tx() as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = 'runs'").fetchone()
            runs = json.loads(row[0]) if row else []
            runs.append(dict(record))
            conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('runs', ?)", (_dumps(runs),))

    # -- transactions -----------------------------------------------------------------
    class _Tx:
        def __init__(self, conn: sqlite3.Connection, path: Path):
            self.conn, self.path = conn, path

        def __enter__(self) -> sqlite3.Connection:
            self.conn.execute("BEGIN IMMEDIATE")
            return self.conn

        def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                     tb: TracebackType | None) -> None:
            try:
                self.conn.execute("ROLLBACK" if exc_type else "COMMIT")
            except sqlite3.OperationalError as err:
                if exc_type is None:
                    self.conn.execute("ROLLBACK")
                _raise_if_full(err, self.path)
                raise
            if exc is not None and isinstance(exc, sqlite3.OperationalError):
                _raise_if_full(exc, self.path)

    def _tx(self) -> "_Tx":
        return Store._Tx(self._conn, self.path)

    def _save_strategy(self, conn: sqlite3.Connection, state: Mapping[str, Any] | None) -> None:
        if state is not None:
            conn.execute("INSERT OR REPLACE INTO strategy(id, state) VALUES (1, ?)", (_dumps(state),))

    # -- trials -------------------------------------------------------------------------
    def add_trial(self, arch: Architecture, *, state: TrialState, seed: int, fidelity: Mapping[str, Any] | None = None,
                  costs: Mapping[str, float] | None = None, reason: str | None = None, error: str | None = None,
                  strategy_state: Mapping[str, Any] | None = None) -> int:
        now = time.time()
        finished = now if state in (TrialState.REJECTED, TrialState.FAILED) else None
        with self._tx() as conn:
            cur = conn.execute(
                "INSERT INTO trials(arch, arch_hash, state, seed, fidelity, costs, reason, error, created, finished) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (arch.to_json(), arch.hash, state.value, int(seed), _dumps(dict(fidelity or {})),
                 _dumps(dict(costs or {})), reason, error, now, finished))
            self._save_strategy(conn, strategy_state)
            rowid = cur.lastrowid
            assert rowid is not None  # set by the INSERT
            return int(rowid)

    def finish_trial(self, number: int, *, state: TrialState, metrics: Mapping[str, float] | None = None,
                     error: str | None = None, duration_s: float | None = None,
                     strategy_state: Mapping[str, Any] | None = None) -> None:
        if not state.finished:
            raise ValueError(f"finish_trial needs a finished state, got {state}")
        with self._tx() as conn:
            cur = conn.execute(
                # a trial that completes after a retried attempt keeps that attempt's error as its history
                "UPDATE trials SET state = ?, metrics = ?, error = COALESCE(?, error), duration_s = ?, finished = ?, "
                "attempts = attempts + 1 WHERE number = ? AND state = ?",
                (state.value, _dumps(dict(metrics or {})), error, duration_s, time.time(), number, TrialState.RUNNING.value))
            if cur.rowcount != 1:
                raise StoreError(f"trial {number} is not running; it cannot be finished twice")
            self._save_strategy(conn, strategy_state)

    def note_retry(self, number: int, error: str) -> None:
        """A running trial's attempt failed for an infrastructure reason and runs again: count the attempt and
        keep its error; the trial stays running (and is re-run on resume if the driver dies meanwhile)."""
        with self._tx() as conn:
            cur = conn.execute("UPDATE trials SET attempts = attempts + 1, error = ? WHERE number = ? AND state = ?",
                               (error, number, TrialState.RUNNING.value))
            if cur.rowcount != 1:
                raise StoreError(f"trial {number} is not running; it cannot be retried")

    def save_strategy_state(self, state: Mapping[str, Any]) -> None:
        with self._tx() as conn:
            self._save_strategy(conn, state)

    def strategy_state(self) -> dict[str, Any] | None:
        row = self._conn.execute("SELECT state FROM strategy WHERE id = 1").fetchone()
        if row is None:
            return None
        try:
            return cast("dict[str, Any]", json.loads(row[0]))  # the store writes it from a mapping
        except (ValueError, TypeError) as exc:
            raise StoreError(f"study store {self.path}: the strategy state is corrupt ({exc})") from None

    def _record(self, row: tuple[Any, ...]) -> TrialRecord:
        try:
            return self._decode(row)
        except (ValueError, TypeError, KeyError, UnicodeDecodeError) as exc:  # JSON only: nothing is unpickled
            raise StoreError(f"study store {self.path}: trial row {row[0]!r} is corrupt ({type(exc).__name__}: "
                             f"{str(exc)[:120]})") from None

    def _decode(self, row: tuple[Any, ...]) -> TrialRecord:
        (number, arch, _h, state, seed, fidelity, metrics, costs, error, reason, created, finished, duration, attempts) = row
        return TrialRecord(number=number, arch=Architecture.from_json(arch), state=TrialState(state), seed=seed,
                           fidelity=json.loads(fidelity), metrics=json.loads(metrics), costs=json.loads(costs),
                           error=error, reason=reason, created=created, finished=finished, duration_s=duration,
                           attempts=attempts)

    _COLUMNS = ("number, arch, arch_hash, state, seed, fidelity, metrics, costs, error, reason, created, finished, "
                "duration_s, attempts")

    def trials(self, states: Iterable[TrialState] | None = None) -> list[TrialRecord]:
        sql = f"SELECT {self._COLUMNS} FROM trials"
        args: tuple[Any, ...] = ()
        if states is not None:
            states = list(states)
            sql += " WHERE state IN (%s)" % ",".join("?" * len(states))
            args = tuple(s.value for s in states)
        return [self._record(r) for r in self._conn.execute(sql + " ORDER BY number", args).fetchall()]

    def trial(self, number: int) -> TrialRecord:
        row = self._conn.execute(f"SELECT {self._COLUMNS} FROM trials WHERE number = ?", (number,)).fetchone()
        if row is None:
            raise StoreError(f"no trial {number} in {self.path}")
        return self._record(row)

    def find(self, arch_hash: str) -> list[TrialRecord]:
        rows = self._conn.execute(f"SELECT {self._COLUMNS} FROM trials WHERE arch_hash = ? ORDER BY number",
                                  (arch_hash,)).fetchall()
        return [self._record(r) for r in rows]

    def count(self, *states: TrialState) -> int:
        if not states:
            return int(self._conn.execute("SELECT COUNT(*) FROM trials").fetchone()[0])
        q = "SELECT COUNT(*) FROM trials WHERE state IN (%s)" % ",".join("?" * len(states))
        return int(self._conn.execute(q, tuple(s.value for s in states)).fetchone()[0])
