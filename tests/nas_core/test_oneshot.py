"""One-shot search: mixed ops, DARTS (derivation, guard, penalty), single-path and elastic supernets."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from nas_core.errors import ConfigError
from nas_core.estimators.base import EvalContext
from nas_core.examples.digits import DigitsCNNSpace, digits_search_data
from nas_core.examples.digits_oneshot import DigitsElasticSupernet, DigitsMixedSupport
from nas_core.hardware import measure_costs
from nas_core.oneshot import (
    DARTS,
    DARTSConfig,
    MixedOp,
    MixedPathSupernet,
    SinglePathOneShot,
    SupernetEstimator,
    SupernetTrainConfig,
    candidate_costs,
    decisions,
    derive_choices,
    expected_cost,
    extract_path,
    mixed_ops,
    mixed_support,
    set_path,
    set_weights,
    train_supernet,
)
from nas_core.space import Categorical, SearchSpace

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def support() -> DigitsMixedSupport:
    return mixed_support(DigitsCNNSpace())


def test_mixed_op_output_is_the_weighted_sum_of_its_candidates():
    torch.manual_seed(0)
    op = MixedOp("e", {"conv": nn.Conv1d(3, 3, 3, padding=1), "lin": nn.Conv1d(3, 3, 1), "skip": nn.Identity()})
    x = torch.randn(4, 3, 10)
    w = torch.softmax(torch.randn(3), 0)
    op.set_weights(w)
    expected = w[0] * op.candidates[0](x) + w[1] * op.candidates[1](x) + w[2] * x
    assert torch.allclose(op(x), expected, atol=1e-6)
    assert op.param_free == (False, False, True)
    op.set_index(1)
    assert torch.equal(op(x), op.candidates[1](x))


def test_mixed_network_ops_are_weighted_sums_inside_the_digits_network(support):
    net = support.build_mixed().eval()
    gen = torch.Generator().manual_seed(1)
    weights = {k: torch.softmax(torch.randn(len(v), generator=gen), 0) for k, v in decisions(net).items()}
    set_weights(net, weights)
    seen = {}

    def record(m, i, o):
        seen[m] = (i[0], o)

    handles = [op.register_forward_hook(record) for op in mixed_ops(net)]
    net(torch.randn(5, 1, 8, 8))
    for h in handles:
        h.remove()
    for op, (inp, out) in seen.items():
        ref = sum(weights[op.key][i] * c(inp) for i, c in enumerate(op.candidates))
        assert torch.allclose(out, ref, atol=1e-5)


def test_derived_architecture_is_the_argmax_of_alpha(support):
    darts = DARTS(support, digits_search_data, DARTSConfig(max_param_free=None), seed=0)
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for a in darts.alphas.values():
            a.copy_(torch.randn(a.shape, generator=gen))
    arch, info = darts.derive()
    argmax = {k: darts.names[k][int(torch.argmax(a))] for k, a in darts.alphas.items()}
    assert info["choices"] == argmax == info["argmax_choices"]
    assert arch == support.derive(argmax)
    assert DigitsCNNSpace().contains(arch)


def test_parameter_free_guard_caps_skip_choices():
    names = {"s0": ("a", "b"), "s1": ("skip", "a", "b"), "s2": ("skip", "a", "b")}
    free = {"s0": (False, False), "s1": (True, False, False), "s2": (True, False, False)}
    probs = {"s0": np.array([0.6, 0.4]), "s1": np.array([0.7, 0.1, 0.2]), "s2": np.array([0.5, 0.3, 0.2])}
    choices, argmax, changes = derive_choices(probs, names, free, max_param_free=1)
    assert argmax == {"s0": "a", "s1": "skip", "s2": "skip"}
    assert choices == {"s0": "a", "s1": "skip", "s2": "a"}  # the less confident skip switches to its best op
    assert len(changes) == 1 and changes[0].startswith("s2")
    assert derive_choices(probs, names, free, max_param_free=None)[0] == argmax


def test_expected_cost_of_a_one_hot_path_is_the_cost_of_that_network(support):
    net = support.build_mixed()
    costs, fixed = candidate_costs(net, support.input_shape())
    path = {"stage0": "dwsep5", "stage1": "plain3", "stage2": "skip"}
    onehot = {k: torch.tensor([1.0 if n == path[k] else 0.0 for n in v]) for k, v in decisions(net).items()}
    sub = extract_path(net, path)
    assert float(expected_cost(costs, onehot, "macs", fixed=fixed["macs"])) == measure_costs(sub, (1, 8, 8)).macs
    built = DigitsCNNSpace().build(support.derive(path))
    assert measure_costs(built, (1, 8, 8)).macs == measure_costs(sub, (1, 8, 8)).macs


def test_darts_runs_first_and_second_order_and_the_penalty_lowers_expected_cost(support):
    cfg = dict(epochs=1, data_fraction=0.25, batch_size=64, hessian_early_stop=False)
    first = DARTS(support, digits_search_data, DARTSConfig(**cfg), seed=0)
    uniform = float(first.expected_cost())
    plain = first.search()
    assert DigitsCNNSpace().contains(plain.arch) and plain.details["epochs_run"] == 1
    cheap = DARTS(support, digits_search_data, DARTSConfig(**cfg, hw_lambda=20.0, alpha_lr=0.05), seed=0).search()
    assert cheap.details["expected_cost"] < uniform
    assert cheap.details["expected_cost"] < plain.details["expected_cost"]
    second = DARTS(support, digits_search_data, DARTSConfig(**{**cfg, "data_fraction": 0.1}, order=2), seed=0).search()
    assert DigitsCNNSpace().contains(second.arch)
    again = DARTS(support, digits_search_data, DARTSConfig(**{**cfg, "data_fraction": 0.1}, order=2), seed=0).search()
    assert again.details["probs"] == second.details["probs"]  # deterministic under the seed


def test_hessian_early_stopping_restores_earlier_alpha(support, monkeypatch):
    eig = iter([1.0, 1.1, 3.0, 9.0, 27.0])
    monkeypatch.setattr(DARTS, "hessian_eigenvalue", lambda self, xs, y: next(eig))
    darts = DARTS(support, digits_search_data, DARTSConfig(epochs=5, data_fraction=0.1, es_window=2, es_ratio=2.0,
                                                             es_smooth=1, es_start=0, alpha_lr=0.05), seed=0)
    res = darts.search()
    assert res.details["epochs_run"] == 3 and "Hessian early stop" in res.details["stopped_early"]
    hist = res.details["history"]
    assert [h["hessian_eig"] for h in hist] == [1.0, 1.1, 3.0]


def test_hessian_rule_waits_for_es_start_and_uses_smoothed_eigenvalues(support, monkeypatch):
    values = [0.01, 0.2, 0.21, 0.2, 0.2]  # the rise from initialisation, then flat
    eig = iter(values)
    monkeypatch.setattr(DARTS, "hessian_eigenvalue", lambda self, xs, y: next(eig))
    res = DARTS(support, digits_search_data, DARTSConfig(epochs=5, data_fraction=0.1), seed=0).search()
    assert res.details["epochs_run"] == 5 and res.details["stopped_early"] is None
    eig = iter(values)  # checked from the start, the rise itself would stop the search
    res = DARTS(support, digits_search_data, DARTSConfig(epochs=5, data_fraction=0.1, es_start=0), seed=0).search()
    assert res.details["epochs_run"] == 3 and "Hessian early stop" in res.details["stopped_early"]


def test_single_path_subnetwork_extraction_matches_the_supernet(support):
    sn = MixedPathSupernet(support, seed=0)
    train_supernet(sn, digits_search_data, SupernetTrainConfig(epochs=1, data_fraction=0.2), seed=0)
    sn.module.eval()
    x = torch.randn(6, 1, 8, 8)
    rng = np.random.default_rng(0)
    for _ in range(4):
        path = sn.sample_path(rng)
        set_path(sn.module, path)
        sub = extract_path(sn.module, path)
        assert not mixed_ops(sub)
        assert torch.equal(sn.module(x), sub(x))
        arch = support.derive(path)
        if support.path_of(arch) == path:  # canonical path: extraction by architecture too
            assert torch.equal(sn.extract(arch)(x), sub(x))


def test_elastic_digits_supernet_extracts_the_space_network_with_equal_outputs():
    sn = DigitsElasticSupernet(seed=0)
    train_supernet(sn, digits_search_data, SupernetTrainConfig(epochs=1, data_fraction=0.2), seed=0)
    sn.module.eval()
    rng = np.random.default_rng(1)
    x = torch.randn(6, 1, 8, 8)
    for _ in range(6):
        arch = DigitsCNNSpace().sample(rng)
        sn.set_active(arch)
        sub = sn.extract(arch)
        assert type(sub) is type(DigitsCNNSpace().build(arch))
        assert torch.allclose(sn.module(x), sub(x), atol=1e-6)


def test_single_path_one_shot_search_and_supernet_estimator(support):
    sn = MixedPathSupernet(support, seed=0)
    spos = SinglePathOneShot(sn, digits_search_data, SupernetTrainConfig(epochs=1, data_fraction=0.2),
                             population=4, generations=1, calib_samples=200, seed=0)
    res = spos.search()
    assert DigitsCNNSpace().contains(res.arch) and sn.covers(res.arch) and 0.0 <= res.details["score"] <= 1.0
    est = SupernetEstimator(sn, digits_search_data, calib_samples=200)
    m = est.evaluate(EvalContext(res.arch, None, 0))
    assert abs(m["supernet_accuracy"] - res.details["score"]) < 1e-9


def test_space_without_mixed_support_is_a_clear_error():
    class Bare(SearchSpace):
        def __init__(self):
            super().__init__("bare", [Categorical("a", [1, 2])])

    with pytest.raises(ConfigError, match="declares no mixed-op support"):
        mixed_support(Bare())


def test_a_registered_factory_gives_a_space_class_its_mixed_support():
    class Plain(DigitsCNNSpace):
        mixed_support = None  # no method of its own: the registry must supply it

    from nas_core.oneshot import register_mixed_support

    register_mixed_support(Plain, lambda space, **options: DigitsMixedSupport(space, **options))
    support = mixed_support(Plain())
    assert isinstance(support, DigitsMixedSupport)
    assert isinstance(mixed_support(DigitsCNNSpace()), DigitsMixedSupport)  # the space's own method
