"""A reaper for the processes a driver started, when the driver is killed (Linux ``/proc``).

A local Ray started by ``nas run --executor ray`` runs as children of the driver
(GCS, raylet, agents, workers). ``ray.shutdown()`` stops them on a normal exit, but a
driver killed with SIGKILL runs no code, and they would live on. :func:`start` runs
``python -m nas_core.reaper`` beside the driver: it snapshots the driver's descendant
processes twice a second and, once the driver is gone without saying goodbye (the
pipe closes with no message), kills every process of the last snapshot that still
has the same start time (so a reused pid is never hit), and their descendants.
:func:`Reaper.stop` is the goodbye of a normal shutdown.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import IO


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, start time in clock ticks) of a live process, else None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    if fields[0] == "Z":
        return None
    return int(fields[1]), int(fields[19])


def descendants(pid: int) -> dict[int, int]:
    """Descendants of ``pid``: pid -> start time."""
    kids: dict[int, list[int]] = {}
    starts: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = _stat(int(name))
            if st is not None:
                kids.setdefault(st[0], []).append(int(name))
                starts[int(name)] = st[1]
    out: dict[int, int] = {}
    todo = [pid]
    while todo:
        for c in kids.get(todo.pop(), []):
            if c not in out:
                out[c] = starts[c]
                todo.append(c)
    return out


class Reaper:
    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc

    def stop(self) -> None:
        """Normal shutdown: the reaper exits without killing anything."""
        stdin: IO[bytes] | None = self.proc.stdin
        try:
            if stdin is not None:
                stdin.write(b"bye\n")
                stdin.close()
            self.proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()


def start() -> Reaper | None:
    """Start a reaper for this process's descendants (None where ``/proc`` is absent)."""
    if not os.path.isdir("/proc"):
        return None
    proc = subprocess.Popen([sys.executable, "-m", "nas_core.reaper", str(os.getpid())], stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    return Reaper(proc)


def main(argv: list[str]) -> int:
    import select

    driver = int(argv[0])
    me = os.getpid()
    snapshot: dict[int, int] = {}
    while True:
        ready, _, _ = select.select([sys.stdin], [], [], 0.5)
        if ready:
            line = sys.stdin.buffer.readline()
            if line.strip() == b"bye":
                return 0
            break  # EOF without goodbye: the driver died
        if _stat(driver) is None:
            break
        snapshot = {p: t for p, t in descendants(driver).items() if p != me}
    victims = dict(snapshot)
    for p in list(snapshot):
        victims.update(descendants(p))
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for p, t in victims.items():
            st = _stat(p)
            if st is not None and st[1] == t and p != me:
                try:
                    os.kill(p, sig)
                except OSError:
                    pass
        time.sleep(1.0)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
