"""Fault matrix: SIGKILL the study driver at random moments, resume, and count what was lost.

    python benchmarks/faults.py --kills 12      # 12 kills per executor (in-process, process, Ray)

For each executor, one study of the toy plugin (``tests/_support/toy.py``; each trial
sleeps, no training) is driven by ``nas run`` / ``nas resume`` subprocesses. Each
driver is killed with SIGKILL after a random delay (seeded), and the study is resumed
until the budget is reached. After every kill the benchmark records

* ``lost``: trials that were complete in the store before the kill and are missing or
  changed after it;
* ``duplicated``: architectures stored as complete more than once (each one trains once);
* ``corrupt``: stores that fail ``PRAGMA integrity_check`` or that ``nas`` refuses;
* ``orphans_after_5s``: processes the killed driver had started (its children: pool
  workers, Ray's raylet and agents) still alive 5 s after the kill.

A final figure checks the budget: the finished study holds exactly ``budget`` complete
trials. Results: ``results/faults.{json,md}`` with one row per executor.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _results  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "_support"))


def _children(pid: int) -> set[int]:
    """All descendants of ``pid`` (from /proc)."""
    parents: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                parents.setdefault(ppid, []).append(int(d))
            except (OSError, ValueError, IndexError):
                continue
    out, todo = set(), [pid]
    while todo:
        for c in parents.get(todo.pop(), []):
            if c not in out:
                out.add(c)
                todo.append(c)
    return out


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _complete(db: Path) -> dict[int, tuple]:
    with sqlite3.connect(db) as c:
        return {n: (h, m) for n, h, m in c.execute(
            "SELECT number, arch_hash, metrics FROM trials WHERE state = 'complete'")}


def _integrity(db: Path) -> bool:
    try:
        with sqlite3.connect(db) as c:
            return c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    except sqlite3.Error:
        return False


def run_executor(executor: str, kills: int, budget: int, sleep: float, env: dict, rng: random.Random,
                 work: Path) -> dict:
    out = work / f"study-{executor}"
    nas = [sys.executable, "-m", "nas_core.cli"]
    common = ["--quiet"] + (["--workers", "2"] if executor != "inprocess" else [])
    first = [*nas, "run", "toy/safe", "--strategy", "random", "--budget", str(budget), "--seed", "0",
             "--objective", "score:max", "--option", f"sleep={sleep}", "--executor", executor, "--out", str(out),
             *common]
    resume = [*nas, "resume", str(out), *common]
    lost = duplicated = corrupt = orphans = done_kills = 0
    killed_at: list[float] = []
    early: list[str] = []  # drivers that ended before their kill, with the last line they wrote
    cmd = first
    while done_kills < kills:
        before = _complete(out / "study.db") if (out / "study.db").exists() else {}
        if len(before) >= budget:  # finished before all kills were spent: a new study continues the count
            break
        log = work / f"driver-{executor}-{done_kills}-{len(early)}.log"
        with open(log, "w") as err:
            p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=err)
        delay = rng.uniform(0.5, 4.0 if executor != "ray" else 12.0)
        t0 = time.monotonic()
        kids: set[int] = set()
        while time.monotonic() - t0 < delay and p.poll() is None:
            kids |= _children(p.pid)
            time.sleep(0.05)
        if p.poll() is not None:  # it ended before the kill: finished, or refused (recorded)
            tail = (log.read_text().strip().splitlines() or [""])[-1][:200]
            early.append(f"rc {p.returncode}: {tail}")
            if len(early) > 3 * kills:
                break
            cmd = resume
            continue
        kids |= _children(p.pid)
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
        done_kills += 1
        killed_at.append(round(delay, 2))
        time.sleep(5.0)
        orphans += sum(_alive(k) for k in kids)
        for k in kids:  # clean up before the next driver, so one kill's orphans do not count twice
            try:
                os.kill(k, signal.SIGKILL)
            except OSError:
                pass
        db = out / "study.db"
        if db.exists():
            if not _integrity(db):
                corrupt += 1
            after = _complete(db)
            lost += sum(1 for n, v in before.items() if after.get(n) != v)
        cmd = resume
    # finish the study and check the budget and duplicates
    r = subprocess.run(resume if (out / "study.db").exists() else first, env=env, capture_output=True, text=True,
                       timeout=900)
    final = _complete(out / "study.db")
    hashes = [h for h, _ in final.values()]
    duplicated = len(hashes) - len(set(hashes))
    return {"executor": executor, "kills": done_kills, "lost": lost, "duplicated": duplicated, "corrupt": corrupt,
            "orphans_after_5s": orphans, "final_complete": len(final), "budget": budget,
            "budget_exact": len(final) == budget, "final_rc": r.returncode, "kill_delays_s": json.dumps(killed_at),
            "drivers_ended_early": len(early), "early_endings": json.dumps(early[:5])}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=12, help="kills per executor")
    ap.add_argument("--budget", type=int, default=160)
    ap.add_argument("--sleep", type=float, default=0.8, help="seconds each toy trial takes")
    ap.add_argument("--executors", default="inprocess,process,ray")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    import toy

    rng = random.Random(args.seed)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        pythonpath = toy.install_entry_point(work / "site")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([pythonpath, str(REPO), str(REPO / "plugins"),
                                                            str(REPO / "datasets")]),
               "PYTHONWARNINGS": "ignore", "RAY_USAGE_STATS_ENABLED": "0"}
        for ex in args.executors.split(","):
            t0 = time.time()
            row = run_executor(ex, args.kills, args.budget, args.sleep, env, rng, work)
            row["wall_s"] = round(time.time() - t0, 1)
            rows.append(row)
            print(json.dumps(row), flush=True)
    cols = ["executor", "kills", "lost", "duplicated", "corrupt", "orphans_after_5s", "final_complete", "budget",
            "budget_exact", "wall_s"]
    md = ["# Fault matrix: SIGKILL of the driver at random moments, then resume", "",
          f"Toy plugin (each trial sleeps {args.sleep} s), random search, budget {args.budget}, {args.kills} kills "
          f"per executor at random delays (seed {args.seed}); after each kill the study is resumed. `lost`: "
          "complete trials missing or changed after a kill; `duplicated`: architectures complete twice in the "
          "finished store; `corrupt`: stores failing PRAGMA integrity_check; `orphans_after_5s`: processes the "
          "killed driver started that were still alive 5 s later.", "",
          _results.markdown_table(rows, cols), "",
          f"Total kills {sum(r['kills'] for r in rows)}; lost {sum(r['lost'] for r in rows)}; duplicated "
          f"{sum(r['duplicated'] for r in rows)}; corrupt {sum(r['corrupt'] for r in rows)}; orphans "
          f"{sum(r['orphans_after_5s'] for r in rows)}."]
    _results.write("faults", rows, "\n".join(md), args=vars(args))
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
