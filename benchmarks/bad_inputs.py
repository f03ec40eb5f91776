"""Bad inputs and a real full disk, probed the way a user meets them: the ``nas`` command line.

    python benchmarks/bad_inputs.py            # all cases (about 10 minutes on 2 cores)
    python benchmarks/bad_inputs.py --only resume,export

Each case runs ``python -m nas_core.cli ...`` in a fresh directory (the toy plugin of
``tests/_support/toy.py`` published through an entry point; a finished 3-trial toy study copied
in where the case needs one) and is judged on what the user sees and what is left on disk:

- ``clean``: a non-zero exit, no traceback, and exactly one line of the form ``error: ...``
  (argparse's ``nas run: error: ...`` counts) as the last line of stderr;
- ``unchanged``: every file that existed before the command (the study, the victim file
  outside it) is byte-identical afterwards, and a refused ``run`` left no study directory;
- ``seconds`` and ``max_line_chars`` (a huge input must be refused quickly with a short line).

Stored code references (``module:attribute`` in a task's ``code_options``, the PINN task's ``problem``)
are not in this matrix: the toy task declares none; ``tests/nas_core/test_study_dir_safety.py`` holds them.

The disk-full section (root only: it mounts a small tmpfs) runs a study onto a filesystem with
a few kB free, expects one ``error:`` line naming the disk, frees the space, resumes, and checks
the store (``PRAGMA integrity_check``), the budget, duplicates and that every complete trial has
its weights.

Writes ``results/bad_inputs.{json,md}`` with rows ``case``, ``category``, ``rc``, ``clean``,
``traceback``, ``unchanged``, ``seconds``, ``max_line_chars``, ``message``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _results  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "_support"))
from toy import install_entry_point  # noqa: E402

Setup = Callable[[Path], list]


def _env(site: Path) -> dict:
    path = [install_entry_point(site), str(ROOT), str(ROOT / "plugins"), str(ROOT / "datasets")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(path + [os.environ.get("PYTHONPATH", "")]),
            "PYTHONWARNINGS": "ignore"}


def nas(args: list, cwd: Path, env: dict, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nas_core.cli", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def _digest(root: Path) -> dict:
    """SHA-256 of every file under root, except the driver lock's record of its last holder (``.driver.lock``:
    each driver that takes the lock writes its pid and time there, also one that then refuses to run)."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.name == ".driver.lock":
            continue
        if p.is_symlink():
            out[str(p.relative_to(root))] = "link:" + os.readlink(p)
        elif p.is_file():
            out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _sql(db: Path, *statements: str) -> None:
    con = sqlite3.connect(db)
    for s in statements:
        con.execute(s)
    con.commit()
    con.close()


# -- the cases -------------------------------------------------------------------------------------------
# each: (name, category, needs_study, setup(case_dir) -> argv); ``S`` is the copied study's directory name
S = "study"
RUN = ["run", "toy/safe", "--strategy", "random", "--budget", "2", "--out", "new"]


def _run(*extra: str) -> Setup:
    return lambda d: [*RUN, *extra]


def _write(name: str, text: str | bytes, argv: list) -> Setup:
    def setup(d: Path) -> list:
        p = d / name
        p.write_bytes(text if isinstance(text, bytes) else text.encode())
        return argv
    return setup


def _damage(fn: Callable[[Path], None], argv: list) -> Setup:
    def setup(d: Path) -> list:
        fn(d / S)
        return argv
    return setup


def _cases() -> list[tuple[str, str, bool, Setup]]:
    big_int = "9" * 5000
    cases: list[tuple[str, str, bool, Setup]] = [
        # the command line of `nas run`
        ("no command", "cli", False, lambda d: []),
        ("unknown command", "cli", False, lambda d: ["train"]),
        ("run without a space", "run", False, lambda d: ["run", "--budget", "2"]),
        ("unknown space without plugin", "run", False, lambda d: ["run", "nope", "--budget", "2", "--out", "new"]),
        ("unknown plugin", "run", False, lambda d: ["run", "nope/x", "--budget", "2", "--out", "new"]),
        ("unknown space", "run", False, lambda d: ["run", "toy/nope", "--budget", "2", "--out", "new"]),
        ("budget 0", "run", False, lambda d: ["run", "toy/safe", "--budget", "0", "--out", "new"]),
        ("budget -3", "run", False, lambda d: ["run", "toy/safe", "--budget", "-3", "--out", "new"]),
        ("budget not a number", "run", False, lambda d: ["run", "toy/safe", "--budget", "x", "--out", "new"]),
        ("budget 5000 digits", "run", False, lambda d: ["run", "toy/safe", "--budget", big_int, "--out", "new"]),
        ("seed not a number", "run", False, _run("--seed", "abc")),
        ("seed negative", "run", False, _run("--seed", "-1")),
        ("unknown strategy", "run", False, lambda d: ["run", "toy/safe", "--strategy", "annealing", "--budget", "2",
                                                       "--out", "new"]),
        ("unknown strategy option", "run", False, _run("--strategy-option", "bogus=3")),
        ("strategy option without =", "run", False, _run("--strategy-option", "population_size")),
        ("evolution population 0", "run", False,
         lambda d: ["run", "toy/safe", "--strategy", "evolution", "--strategy-option", "population_size=0",
                    "--budget", "2", "--out", "new"]),
        ("objective without direction", "run", False, _run("--objective", "score")),
        ("objective bad direction", "run", False, _run("--objective", "score:up")),
        ("objective unknown metric", "run", False, _run("--objective", "accuracy:max")),
        ("constraint malformed", "run", False, _run("--constraint", "params<<3")),
        ("constraint not a number", "run", False, _run("--constraint", "params<=abc")),
        ("constraint unknown metric", "run", False, _run("--constraint", "bogus<=3")),
        ("option without =", "run", False, _run("--option", "sleep")),
        ("option not a number", "run", False, _run("--option", "sleep=abc")),
        ("fidelity epochs=-1", "run", False, _run("--fidelity", "epochs=-1")),
        ("fidelity unknown key", "run", False, _run("--fidelity", "bogus=3")),
        ("fidelity without =", "run", False, _run("--fidelity", "epochs")),
        ("executor unknown", "run", False, _run("--executor", "gpu")),
        ("workers 0", "run", False, _run("--executor", "process", "--workers", "0")),
        ("workers -2", "run", False, _run("--executor", "process", "--workers", "-2")),
        ("time limit 0", "run", False, _run("--time-limit", "0")),
        ("time limit negative", "run", False, _run("--time-limit", "-1")),
        ("time limit nan", "run", False, _run("--time-limit", "nan")),
        ("time limit inf", "run", False, _run("--time-limit", "inf")),
        ("max time negative", "run", False, _run("--max-time", "-5")),
        ("max retries negative", "run", False, _run("--max-retries", "-1")),
        ("retry on unknown kind", "run", False, _run("--retry-on", "bogus")),
        ("unknown target", "run", False, _run("--target", "toy/nope")),
        ("target without plugin", "run", False, _run("--target", "cortex")),
        ("target file missing", "run", False, _run("--target", "missing.toml")),
        ("target file not TOML", "run", False, _write("t.toml", "this is [not toml", [*RUN, "--target", "t.toml"])),
        ("target file without fields", "run", False, _write("t.toml", 'name = "x"\n', [*RUN, "--target", "t.toml"])),
        ("target file negative RAM", "run", False,
         _write("t.toml", 'name = "x"\nram_kb = -1\nflash_kb = 10\nmacs_per_s = 1e6\n', [*RUN, "--target", "t.toml"])),
        ("target file over 1 MB", "run", False,
         _write("t.toml", "# " + "x" * 1_100_000 + "\n", [*RUN, "--target", "t.toml"])),
        ("out empty", "run", False, lambda d: ["run", "toy/safe", "--budget", "2", "--out", ""]),
        ("out is a file", "run", False, _write("new", "a file", RUN)),
        ("estimator unknown", "run", False, _run("--estimator", "magic")),
        ("zero-cost unknown proxy", "run", False, _run("--estimator", "zero-cost:bogus")),
        ("address without ray", "run", False, _run("--address", "auto")),
        ("unknown flag", "run", False, _run("--bogus-flag", "1")),
        # YAML study configs
        ("config missing", "config", False, lambda d: ["run", "--config", "missing.yaml"]),
        ("config not YAML", "config", False, _write("c.yaml", "a: [1, 2\n", ["run", "--config", "c.yaml"])),
        ("config empty", "config", False, _write("c.yaml", "", ["run", "--config", "c.yaml"])),
        ("config a list", "config", False, _write("c.yaml", "- 1\n- 2\n", ["run", "--config", "c.yaml"])),
        ("config unknown key", "config", False,
         _write("c.yaml", "space: toy/safe\nbudget: 2\nbogus: 1\nout: new\n", ["run", "--config", "c.yaml"])),
        ("config budget a string", "config", False,
         _write("c.yaml", "space: toy/safe\nbudget: many\n", ["run", "--config", "c.yaml", "--out", "new"])),
        ("config seed a float", "config", False,
         _write("c.yaml", "space: toy/safe\nbudget: 2\nseed: 1.5\n", ["run", "--config", "c.yaml", "--out", "new"])),
        ("config objectives a number", "config", False,
         _write("c.yaml", "space: toy/safe\nbudget: 2\nobjectives: 3\n", ["run", "--config", "c.yaml", "--out", "new"])),
        ("config task_options a list with --option", "config", False,
         _write("c.yaml", "space: toy/safe\nbudget: 2\ntask_options: [1, 2]\n",
                ["run", "--config", "c.yaml", "--option", "sleep=0", "--out", "new"])),
        ("config python object tag", "config", False,
         _write("c.yaml", "space: !!python/object/apply:os.getcwd []\nbudget: 2\n", ["run", "--config", "c.yaml",
                                                                                     "--out", "new"])),
        ("config over 1 MB", "config", False,
         _write("c.yaml", "space: toy/safe\n# " + "x" * 1_100_000 + "\n", ["run", "--config", "c.yaml", "--out", "new"])),
        ("config binary", "config", False, _write("c.yaml", b"\x00\xff\xfe" * 100, ["run", "--config", "c.yaml"])),
        # space files
        ("space file missing", "space", False, _run("--space-file", "missing.json")),
        ("space file not JSON", "space", False, _write("s.json", "{not json", [*RUN, "--space-file", "s.json"])),
        ("space file a list", "space", False, _write("s.json", "[1, 2]", [*RUN, "--space-file", "s.json"])),
        ("space file unknown dimension", "space", False,
         _write("s.json", '{"bogus": {"kind": "categorical", "choices": [1]}}', [*RUN, "--space-file", "s.json"])),
        ("space file unknown kind", "space", False,
         _write("s.json", '{"mode": {"kind": "fractal"}}', [*RUN, "--space-file", "s.json"])),
        ("space file empty choices", "space", False,
         _write("s.json", '{"mode": {"kind": "categorical", "choices": []}}', [*RUN, "--space-file", "s.json"])),
        ("space file choice outside the plugin's", "space", False,
         _write("s.json", '{"mode": {"kind": "categorical", "choices": ["explode"]}}', [*RUN, "--space-file", "s.json"])),
        ("space file low above high", "space", False,
         _write("s.json", '{"layers": {"kind": "repeat", "min": 3, "max": 1}}', [*RUN, "--space-file", "s.json"])),
        ("space file 5000-digit integer", "space", False,
         _write("s.json", '{"layers": {"kind": "repeat", "min": 1, "max": ' + big_int + "}}",
                [*RUN, "--space-file", "s.json"])),
        ("space file 2,000,000 choices", "space", False,
         _write("s.json", json.dumps({"mode": {"kind": "categorical", "choices": list(range(2_000_000))}}),
                [*RUN, "--space-file", "s.json"])),
        ("space file over 1 MB of whitespace", "space", False,
         _write("s.json", "{" + " " * 1_100_000 + "}", [*RUN, "--space-file", "s.json"])),
        # resume
        ("resume missing dir", "resume", False, lambda d: ["resume", "nowhere"]),
        ("resume a file", "resume", False, _write("f", "x", ["resume", "f"])),
        ("resume dir without store", "resume", False, lambda d: (d / "empty").mkdir() or ["resume", "empty"]),
        ("resume empty store", "resume", True, _damage(lambda s: (s / "study.db").write_bytes(b""), ["resume", S])),
        ("resume garbage store", "resume", True,
         _damage(lambda s: (s / "study.db").write_bytes(b"not sqlite" * 100), ["resume", S])),
        ("resume store with a bad state", "resume", True,
         _damage(lambda s: _sql(s / "study.db", "UPDATE trials SET state='exploded' WHERE number=1"), ["resume", S])),
        ("resume store with a bad arch", "resume", True,
         _damage(lambda s: _sql(s / "study.db", "UPDATE trials SET arch='{not json' WHERE number=1"), ["resume", S])),
        ("resume store with a bad strategy state", "resume", True,
         _damage(lambda s: _sql(s / "study.db", "UPDATE strategy SET state='{not json' WHERE id=1"),
                 ["resume", S])),
        ("resume store with a foreign config", "resume", True,
         _damage(lambda s: _sql(s / "study.db", "UPDATE meta SET value='{\"space\": 3}' WHERE key='config'"),
                 ["resume", S])),
        ("resume store with no tables", "resume", True,
         _damage(lambda s: _sql(s / "study.db", "DROP TABLE trials"), ["resume", S])),
        ("resume budget 0", "resume", True, lambda d: ["resume", S, "--budget", "0"]),
        ("resume budget not a number", "resume", True, lambda d: ["resume", S, "--budget", "x"]),
        ("resume workers 0", "resume", True, lambda d: ["resume", S, "--executor", "process", "--workers", "0"]),
        ("resume time limit negative", "resume", True, lambda d: ["resume", S, "--time-limit", "-1"]),
        ("resume unknown flag", "resume", True, lambda d: ["resume", S, "--bogus"]),
        ("resume trials a symlink outside", "resume", True,
         _damage(lambda s: (shutil.rmtree(s / "trials"), (s / "trials").symlink_to(s.parent / "outside")),
                 ["resume", S, "--budget", "4"])),

        # report
        ("report missing dir", "report", False, lambda d: ["report", "nowhere"]),
        ("report dir without store", "report", False, lambda d: (d / "empty").mkdir() or ["report", "empty"]),
        ("report empty store", "report", True, _damage(lambda s: (s / "study.db").write_bytes(b""), ["report", S])),
        ("report garbage store", "report", True,
         _damage(lambda s: (s / "study.db").write_bytes(b"not sqlite" * 100), ["report", S])),
        ("report store with a bad state", "report", True,
         _damage(lambda s: _sql(s / "study.db", "UPDATE trials SET state='exploded' WHERE number=1"), ["report", S])),
        ("report model card a symlink outside", "report", True,
         _damage(lambda s: ((s / "model_card.md").unlink(missing_ok=True),
                            (s / "model_card.md").symlink_to(s.parent / "outside" / "victim.txt")), ["report", S])),
        # export
        ("export missing dir", "export", False, lambda d: ["export", "nowhere", "--trial", "1"]),
        ("export without --trial", "export", True, lambda d: ["export", S]),
        ("export trial not a number", "export", True, lambda d: ["export", S, "--trial", "one"]),
        ("export trial 0", "export", True, lambda d: ["export", S, "--trial", "0"]),
        ("export trial absent", "export", True, lambda d: ["export", S, "--trial", "999"]),
        ("export unknown format", "export", True, lambda d: ["export", S, "--trial", "1", "--format", "tflite2"]),
        ("export unknown quantisation", "export", True, lambda d: ["export", S, "--trial", "1", "--quantize", "int4"]),
        ("export failed trial", "export", True,
         _damage(lambda s: _sql(s / "study.db", "UPDATE trials SET state='failed', error='x' WHERE number=1"),
                 ["export", S, "--trial", "1"])),
        ("export weights missing", "export", True,
         _damage(lambda s: (s / "trials" / "00001" / "model.pt").unlink(), ["export", S, "--trial", "1"])),
        ("export weights garbage", "export", True,
         _damage(lambda s: (s / "trials" / "00001" / "model.pt").write_bytes(b"garbage" * 50),
                 ["export", S, "--trial", "1"])),
        ("export exports a symlink outside", "export", True,
         _damage(lambda s: (s / "exports").symlink_to(s.parent / "outside", target_is_directory=True),
                 ["export", S, "--trial", "1"])),
        ("export sidecar a symlink outside", "export", True,
         _damage(lambda s: ((s / "exports").mkdir(exist_ok=True),
                            (s / "exports" / "trial-00001.onnx.json").symlink_to(s.parent / "outside" / "victim.txt")),
                 ["export", S, "--trial", "1"])),

        ("export garbage store", "export", True,
         _damage(lambda s: (s / "study.db").write_bytes(b"not sqlite" * 100), ["export", S, "--trial", "1"])),
        ("export unknown flag", "export", True, lambda d: ["export", S, "--trial", "1", "--bogus"]),
    ]
    return cases


def _pickled_weights(s: Path) -> None:
    """A model.pt whose unpickling would run code (a marker file appears if it ever does)."""
    import torch

    class Evil:
        def __reduce__(self):
            return (open, (str(s.parent / "outside" / "pwned"), "w"))

    torch.save({"weight": Evil()}, s / "trials" / "00001" / "model.pt")


def _judge(p: subprocess.CompletedProcess) -> dict:
    text = (p.stdout or "") + (p.stderr or "")
    lines = [ln for ln in (p.stderr or "").splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error: ") or ": error: " in ln]
    tb = "Traceback (most recent call last)" in text
    clean = p.returncode != 0 and not tb and len(errors) == 1 and bool(lines) and lines[-1] == errors[0]
    return {"rc": p.returncode, "traceback": tb, "clean": clean,
            "max_line_chars": max((len(ln) for ln in text.splitlines()), default=0),
            "message": (errors[0] if errors else (lines[-1] if lines else ""))[:240]}


def run_cases(work: Path, env: dict, only: set | None) -> list[dict]:
    base = work / "base"
    base.mkdir()
    p = nas(["run", "toy/safe", "--strategy", "random", "--budget", "3", "--out", "study", "-q"], base, env)
    if p.returncode != 0:
        raise SystemExit(f"could not make the base study: {p.stderr}")
    cases = _cases()
    cases.append(("export weights holding code", "export", True,
                  _damage(_pickled_weights, ["export", S, "--trial", "1"])))
    rows = []
    for i, (name, category, needs_study, setup) in enumerate(cases):
        if only and category not in only:
            continue
        d = work / f"case-{i:03d}"
        (d / "outside").mkdir(parents=True)
        (d / "outside" / "victim.txt").write_text("keep me")
        if needs_study:
            shutil.copytree(base / S, d / S, symlinks=True)
        argv = setup(d)
        before = _digest(d)
        t0 = time.monotonic()
        try:
            proc = nas(argv, d, env)
            row = _judge(proc)
        except subprocess.TimeoutExpired:
            row = {"rc": None, "traceback": False, "clean": False, "max_line_chars": 0, "message": "timed out"}
        row["seconds"] = time.monotonic() - t0
        after = _digest(d)
        created = [k for k in after if k not in before and k.startswith("new/")]
        row["unchanged"] = all(after.get(k) == v for k, v in before.items()) and not created \
            and not (d / "outside" / "pwned").exists() and sorted(os.listdir(d / "outside")) == ["victim.txt"]
        rows.append({"case": name, "category": category, **row})
        print(f"{i + 1:3d}/{len(cases)} {'ok ' if row['clean'] and row['unchanged'] else 'BAD'} {name}: "
              f"rc {row['rc']} {row['seconds']:.1f} s | {row['message'][:120]}", flush=True)
    return rows


def disk_full(work: Path, env: dict) -> dict:
    """A study onto a tmpfs with a few kB free; the space freed; resume. Root only (mount)."""
    if os.geteuid() != 0 or not shutil.which("mount"):
        return {"skipped": "needs root to mount a small tmpfs"}
    mnt = work / "small-disk"
    mnt.mkdir()
    size_kb = 2048
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(mnt)], capture_output=True,
                       text=True)
    if r.returncode != 0:
        return {"skipped": f"mount failed: {r.stderr.strip()}"}
    try:
        budget = 40
        first = nas(["run", "toy/safe", "--strategy", "random", "--budget", "4", "--out", "study", "-q"], mnt, env)
        # fill the disk but a few kB, then ask for more trials than fit
        filler = mnt / "filler"
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            while True:
                os.write(fd, b"\0" * 4096)
        except OSError:
            pass
        finally:
            os.close(fd)
        free_kb = shutil.disk_usage(mnt).free / 1024
        full = nas(["resume", "study", "--budget", str(budget), "-q"], mnt, env)
        judged = _judge(full)
        filler.unlink()
        final = nas(["resume", "study", "--budget", str(budget), "-q"], mnt, env)
        con = sqlite3.connect(mnt / "study" / "study.db")
        integrity = con.execute("PRAGMA integrity_check").fetchone()[0]
        states = dict(con.execute("SELECT state, COUNT(*) FROM trials GROUP BY state").fetchall())
        arch_dupes = con.execute("SELECT COUNT(*) - COUNT(DISTINCT arch_hash || fidelity) FROM trials "
                                 "WHERE state IN ('complete', 'running')").fetchone()[0]
        complete = [n for (n,) in con.execute("SELECT number FROM trials WHERE state='complete'")]
        con.close()
        missing = [n for n in complete if not (mnt / "study" / "trials" / f"{n:05d}" / "model.pt").exists()]
        staging = list((mnt / "study" / "trials" / ".staging").glob("*")) \
            if (mnt / "study" / "trials" / ".staging").exists() else []
        return {"disk_kb": size_kb, "free_kb_when_full": round(free_kb, 1), "first_rc": first.returncode,
                "full_rc": full.returncode, "full_clean": judged["clean"], "full_traceback": judged["traceback"],
                "full_message": judged["message"], "resume_rc": final.returncode, "integrity": integrity,
                "states": states, "budget": budget, "complete": len(complete), "duplicates": arch_dupes,
                "complete_without_weights": len(missing), "staging_left": len(staging)}
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", help="comma-separated categories (cli, run, config, space, resume, report, export, disk)")
    args = ap.parse_args()
    only = set(args.only.split(",")) if args.only else None
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="nas-bad-inputs-") as tmp:
        work = Path(tmp)
        env = _env(work / "site")
        rows = run_cases(work, env, only)
        disk = disk_full(work, env) if not only or "disk" in only else {"skipped": "not selected"}
    print(json.dumps(disk, indent=1))
    n = len(rows)
    clean = sum(r["clean"] for r in rows)
    both = sum(r["clean"] and r["unchanged"] for r in rows)
    tbs = sum(r["traceback"] for r in rows)
    summary = {"tried": n, "clean": clean, "clean_and_unchanged": both, "tracebacks": tbs,
               "modified": sum(not r["unchanged"] for r in rows), "slowest_s": max((r["seconds"] for r in rows),
                                                                                   default=0.0),
               "longest_line_chars": max((r["max_line_chars"] for r in rows), default=0)}
    bad = [r for r in rows if not (r["clean"] and r["unchanged"])]
    md = ["# Bad inputs and a full disk, through the `nas` command line", "",
          f"{n} bad inputs tried: {clean} gave one clean `error:` line, {both} of them leaving every file "
          f"byte-identical; {tbs} tracebacks; {summary['modified']} modified a file. Slowest case "
          f"{summary['slowest_s']:.1f} s; longest output line {summary['longest_line_chars']} characters. "
          f"Wall time {(time.time() - t0) / 60:.1f} min.", "",
          "Criteria: non-zero exit, no traceback, exactly one `error:` line and it is the last line of stderr; "
          "every file present before (the copied study, a victim file outside it) byte-identical after, no new "
          "study directory from a refused run.", "",
          "## Cases that failed a criterion", "",
          _results.markdown_table(bad, ["case", "category", "rc", "clean", "traceback", "unchanged", "message"])
          if bad else "none", "",
          "## Full disk (a study on a small tmpfs; space freed; resume)", "",
          "```", json.dumps(disk, indent=1), "```", "",
          "## Every case", "",
          _results.markdown_table(rows, ["case", "category", "rc", "clean", "unchanged", "seconds", "max_line_chars",
                                         "message"])]
    _results.write("bad_inputs", rows, "\n".join(md), summary=summary, disk_full=disk)
    print("\n".join(md[:3]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
