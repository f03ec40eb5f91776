"""One driver per study: an OS lock on ``<study dir>/.driver.lock``.

``nas run`` and ``nas resume`` hold an exclusive ``flock`` on that file for as
long as they drive the study. The kernel releases it when the holder exits for
any reason, ``kill -9`` included, so a dead driver never leaves a stale lock;
the file itself stays (with the last holder's pid, host and start time, shown to
a second driver that is refused). Readers (``nas report``, ``nas export``) do
not take the lock: the store's WAL journal lets them read while a run writes.

The lock is advisory and local: it holds between processes of one machine and
on file systems whose ``flock`` is coherent (local disks; NFS only with lock
support). Drive a study on shared storage from one host.
"""

from __future__ import annotations

import datetime as _dt
import errno
import json
import os
import socket
from pathlib import Path
from types import TracebackType

from nas_core.errors import StoreError

LOCK_NAME = ".driver.lock"


class StudyLock:
    """Exclusive driver lock of a study directory (a context manager)."""

    def __init__(self, study_dir: str | os.PathLike[str]) -> None:
        self.dir = Path(study_dir)
        self.path = self.dir / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> "StudyLock":
        import fcntl

        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            raise StoreError(f"the study directory {self.dir} exists and is not a directory; give another --out") \
                from None
        except OSError as exc:
            raise StoreError(f"cannot create the study directory {self.dir}: {exc.strerror}") from None
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(self.path, flags, 0o644)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise StoreError(f"refusing {self.path}: it is a symbolic link") from None
            raise StoreError(f"cannot open the study lock {self.path}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _read_holder(fd)
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise StoreError(f"another nas process is driving the study in {self.dir} ({holder}); wait for it "
                                 "to finish or stop it, then 'nas resume'") from None
            raise StoreError(f"cannot lock {self.path}: {exc.strerror}") from None
        info = {"pid": os.getpid(), "host": socket.gethostname(),
                "since": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None

    def __enter__(self) -> "StudyLock":
        return self.acquire()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.release()


def _read_holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
        return f"pid {info['pid']} on {info['host']} since {info['since']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "holder unknown"
