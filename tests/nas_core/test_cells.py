"""The cell-based space ``digits/cells`` (NASNet / DARTS style): wiring, reduction, and a search on it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nas_core.examples.cells import NODES, OPS, DigitsCellSpace, cell_genotype
from nas_core.space import Architecture
from nas_core.store import Store, TrialState
from nas_core.study import StudyConfig, run_study


def _arch(normal=("skip", 1), reduce=("max3", 0), channels=8, per_stage=1) -> Architecture:
    d = {"channels": channels, "cells_per_stage": per_stage}
    for cell, (op, inp) in (("normal", normal), ("reduce", reduce)):
        for j in range(NODES):
            for side in ("a", "b"):
                d[f"{cell}_n{j}_in_{side}"] = inp
                d[f"{cell}_n{j}_op_{side}"] = op
    return Architecture(d)


def test_node_inputs_are_limited_to_earlier_nodes():
    space = DigitsCellSpace()
    assert space.contains(_arch())
    bad = dict(_arch().to_dict(), normal_n0_in_a=2)  # node 0 sees only the two cell inputs
    assert not space.contains(Architecture(bad))
    assert space.contains(Architecture(dict(_arch().to_dict(), normal_n2_in_b=3)))  # node 2 may read node 1
    assert cell_genotype(_arch(), "reduce") == [(("max3", 0), ("max3", 0))] * NODES


def test_cell_wiring_sums_its_two_operations_and_concatenates_the_nodes():
    torch.manual_seed(0)
    net = DigitsCellSpace().build(_arch(normal=("skip", 1))).eval()
    cell = net.cells[0]  # a normal cell whose every node is skip(input 1) + skip(input 1)
    s = torch.randn(2, 8, 8, 8)
    with torch.no_grad():
        out = cell(s, s)
        pre1 = cell.pre1(s)
    assert out.shape == (2, NODES * 8, 8, 8)
    for j in range(NODES):
        assert torch.allclose(out[:, 8 * j: 8 * (j + 1)], 2 * pre1)


def test_reduction_cell_halves_the_resolution_and_the_network_classifies():
    torch.manual_seed(0)
    space = DigitsCellSpace()
    for arch in [_arch(per_stage=2)] + [space.sample(np.random.default_rng(s)) for s in range(4)]:
        net = space.build(arch).eval()
        shapes = []
        hooks = [c.register_forward_hook(lambda m, i, o: shapes.append(tuple(o.shape[2:]))) for c in net.cells]
        with torch.no_grad():
            y = net(torch.randn(3, 1, 8, 8))
        for h in hooks:
            h.remove()
        n = int(arch["cells_per_stage"])
        assert shapes == [(8, 8)] * n + [(4, 4)] * (n + 1)
        assert y.shape == (3, 10) and torch.isfinite(y).all()


def test_every_operation_builds_in_both_cells():
    space = DigitsCellSpace()
    for op in OPS:
        for inp in (0, 1):
            net = space.build(_arch(normal=(op, inp), reduce=(op, inp)))
            assert net(torch.randn(1, 1, 8, 8)).shape == (1, 10)


@pytest.mark.parametrize("strategy", ["evolution", "bayesopt"])
def test_a_search_runs_on_the_cell_space(tmp_path, strategy):
    opts = {"population_size": 2, "sample_size": 2} if strategy == "evolution" else {"n_initial": 2}
    cfg = StudyConfig(space="digits/cells", budget=3, strategy=strategy, seed=0, strategy_options=opts,
                      task_options={"epochs": 1, "data_fraction": 0.2}, target="digits/cortex-m4",
                      objectives=("val_accuracy:max", "energy_uj:min"))
    s = run_study(cfg, tmp_path)
    assert s.complete == 3
    with Store.open(tmp_path / "study.db") as st:
        done = st.trials([TrialState.COMPLETE])
    assert all(0.0 <= t.metrics["val_accuracy"] <= 1.0 and t.costs["macs"] > 0 for t in done)
