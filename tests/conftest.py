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


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module (Optuna's GP sampler and the predictors run torch; on a busy 2-core
    machine two threads make them several times slower)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
