"""Shared test helpers: a fast synthetic task that needs no training."""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "_support"))  # the toy plugin (not tests/, whose folders mirror packages)


def pytest_configure(config):
    os.environ.setdefault("MPLBACKEND", "Agg")
