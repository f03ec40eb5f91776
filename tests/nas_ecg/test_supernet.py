"""ECG one-shot search: mixed-op support, the elastic (Once-for-All) supernet, progressive shrinking, specialisation.

Synthetic beats stand in for MIT-BIH (the data loader is injected), so these run anywhere in seconds.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nas_core.estimators.lightning_trainer import ClassificationData
from nas_core.oneshot import DARTS, DARTSConfig, MixedPathSupernet, decisions, extract_path, mixed_support, set_path
from nas_ecg.budget import load_ecg_target
from nas_ecg.space import CompoundECGSpace, scaled
from nas_ecg.supernet import (
    ECGElasticSupernet,
    ECGMixedSupport,
    ECGRateData,
    ProgressiveShrinking,
    collect_inherited_scores,
    evaluate_inherited,
    feasible_rates,
    specialise,
    train_progressive,
)

torch.set_num_threads(1)


def synthetic(fs: float, n_train: int = 300, n_val: int = 150) -> ClassificationData:
    """Beats whose class sets the frequency of a sine in the window (so there is something to learn)."""
    rng = np.random.default_rng(int(fs))
    length = round(0.25 * fs) + round(0.45 * fs)

    def part(n):
        y = rng.choice(5, n, p=[0.6, 0.1, 0.15, 0.1, 0.05])
        t = np.arange(length) / fs
        x = np.sin(2 * np.pi * (2 + 3 * y)[:, None] * t[None, :]) + 0.3 * rng.standard_normal((n, length))
        xs = np.stack([x, 0.5 * x], axis=1).astype(np.float32)
        rr = (rng.standard_normal((n, 8)) + y[:, None] * 0.2).astype(np.float32)
        return (xs, rr), y.astype(np.int64)

    xt, yt = part(n_train)
    xv, yv = part(n_val)
    return ClassificationData(xt, yt, xv, yv, n_classes=5)


@pytest.fixture(scope="module")
def data() -> ECGRateData:
    return ECGRateData(loader=synthetic)


def test_mixed_support_is_registered_and_extracts_the_space_network():
    space = CompoundECGSpace()
    support = mixed_support(space)
    assert isinstance(support, ECGMixedSupport)
    sn = MixedPathSupernet(support, seed=0)
    assert list(decisions(sn.module)) == ["stage0", "stage1", "stage2"]
    sn.module.eval()
    length = support.input_shape()[0][1]
    x, rr = torch.randn(3, 2, length), torch.randn(3, 8)
    rng = np.random.default_rng(0)
    for _ in range(3):
        path = sn.sample_path(rng)
        set_path(sn.module, path)
        sub = extract_path(sn.module, path)
        arch = support.derive(path)
        assert support.path_of(arch) == path
        built = space.build(arch).eval()
        built.load_state_dict(sub.state_dict())  # same layout and keys as the space's own network
        assert torch.equal(sn.module(x, rr), sub(x, rr))
        assert torch.allclose(built(x, rr), sub(x, rr))


def test_ecg_darts_with_a_latency_penalty_returns_an_architecture_of_the_space(data):
    support = ECGMixedSupport(blocks=("plain", "separable"), kernels=(3, 9))
    target = load_ecg_target("nrf52840")
    cfg = DARTSConfig(epochs=1, batch_size=64, hw_lambda=5.0, cost_metric="latency_ms", alpha_lr=0.05,
                      class_weights="balanced", class_weight_cap=50.0, hessian_early_stop=False)
    res = DARTS(support, lambda: data.get(180.0), cfg, target=target, seed=0).search()
    assert CompoundECGSpace().contains(res.arch)
    assert res.details["expected_cost"] > 0 and res.details["cost_metric"] == "latency_ms"


def test_elastic_supernet_subnetworks_extract_with_equal_outputs(data):
    space = CompoundECGSpace()
    sn = ECGElasticSupernet(space, seed=0)
    # move weights, kernel transforms and BN statistics away from their initial values
    train_progressive(sn, data, ProgressiveShrinking(steps=8, batch_size=32, rates=(180.0,)), seed=0)
    with torch.no_grad():
        for p in sn.module.parameters():
            p.add_(0.01 * torch.randn_like(p))
    sn.module.eval()
    rng = np.random.default_rng(2)
    for _ in range(6):
        arch = space.sample(rng)
        sn.set_active(arch)
        length = scaled(arch)["length"]
        x, rr = torch.randn(4, 2, length), torch.randn(4, 8)
        sub = sn.extract(arch)
        assert type(sub).__name__ == type(space.build(arch)).__name__
        assert torch.allclose(sn.module(x, rr), sub(x, rr), atol=1e-5)


def test_progressive_shrinking_runs_every_phase_and_specialisation_meets_each_target(data):
    space = CompoundECGSpace()
    sn = ECGElasticSupernet(space, seed=0)
    hist = train_progressive(sn, data, ProgressiveShrinking(steps=16, batch_size=32, rates=(136.0, 240.0)), seed=0)
    assert [h["phase"] for h in hist] == ["full", "kernel", "depth", "width"]
    arch = space.sample(np.random.default_rng(5))
    m = evaluate_inherited(sn, arch, data, calib_samples=100)
    assert 0.0 <= m["macro_f1"] <= 1.0 and 0.0 <= m["accuracy"] <= 1.0
    before = {k: v.clone() for k, v in sn.module.state_dict().items()}
    for name in ("nrf52840", "stm32l4", "apollo4", "max78000"):
        res = specialise(sn, load_ecg_target(name), data, population=4, generations=1, parents=2, calib_samples=100,
                         seed=0)
        assert res.violations == () and space.contains(res.arch)
        assert res.static["energy_margin_uj"] >= 0 and res.static["fs_hz"] >= 100
        assert type(res.model).__name__ == type(space.build(res.arch)).__name__
    after = sn.module.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # the supernet is not trained again


def test_specialisation_with_a_predictor_and_fine_tuning(data):
    from nas_core.estimators.predictor import MLPEnsemble

    space = CompoundECGSpace()
    sn = ECGElasticSupernet(space, seed=0)
    train_progressive(sn, data, ProgressiveShrinking(steps=8, batch_size=32, rates=(180.0,)), seed=0)
    scored = collect_inherited_scores(sn, data, 8, calib_samples=100)
    pred = MLPEnsemble(space, n_models=2).fit([a for a, _ in scored], [v for _, v in scored])
    res = specialise(sn, load_ecg_target("max78000"), data, predictor=pred, population=4, generations=1, parents=2,
                     verify_top=2, calib_samples=100, fine_tune_epochs=1, fine_tune_fraction=1.0, seed=0)
    assert res.violations == () and res.details["scored_by"] == "predictor"
    assert res.fine_tuned is not None and "val_macro_f1" in res.fine_tuned and res.finetune_s > 0


def test_feasible_rates_cover_the_monitoring_band():
    rates = feasible_rates()
    assert min(rates) >= 100 and max(rates) <= 360 and 180.0 in rates and len(rates) == len(set(rates))
