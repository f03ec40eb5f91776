"""A killed driver's children do not outlive it when it runs a reaper (used for the local Ray it starts)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from nas_core.reaper import _stat

DRIVER = r"""
import subprocess, sys, time
from nas_core import reaper
r = reaper.start()
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
print(child.pid, flush=True)
if sys.argv[1] == "clean":
    child.terminate(); child.wait(); r.stop(); print("stopped", flush=True)
else:
    time.sleep(120)
"""


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="the reaper reads /proc")
def test_the_children_of_a_killed_driver_are_reaped():
    d = subprocess.Popen([sys.executable, "-c", DRIVER, "kill"], stdout=subprocess.PIPE, text=True)
    child = int(d.stdout.readline())
    time.sleep(1.5)  # the reaper has taken a snapshot
    assert _stat(child) is not None
    os.kill(d.pid, signal.SIGKILL)
    d.wait()
    deadline = time.time() + 10
    while time.time() < deadline and _stat(child) is not None:
        time.sleep(0.1)
    assert _stat(child) is None


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="the reaper reads /proc")
def test_a_clean_stop_kills_nothing():
    d = subprocess.run([sys.executable, "-c", DRIVER, "clean"], capture_output=True, text=True, timeout=60)
    assert d.returncode == 0 and "stopped" in d.stdout
