"""Contract suites generated from the registry: every strategy a study can name passes ``check_strategy``."""

from __future__ import annotations

import pytest

from nas_core.plugins import Registry
from nas_core.strategies import RegularizedEvolution
from nas_core.testing import ContractSpace, check_strategy, contract_metrics

pytestmark = pytest.mark.usefixtures("one_torch_thread")

STRATEGIES = Registry().strategies()




@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_every_registered_strategy_meets_the_contract(name):
    check_strategy(STRATEGIES[name])


class _Forgetful(RegularizedEvolution):
    """Evolution whose state hooks were forgotten: only the random generator survives a resume."""

    name = "forgetful"

    def _extra_state(self):
        return {}

    def _load_extra_state(self, state):
        pass


def test_a_strategy_that_forgets_its_state_hooks_fails():
    with pytest.raises(AssertionError, match="strategy 'forgetful'.*state round trip.*_extra_state"):
        check_strategy(_Forgetful, options={"population_size": 6, "sample_size": 3})


class _Unseeded(RegularizedEvolution):
    name = "unseeded"

    def __init__(self, space, objectives, *, seed=0, **kw):
        super().__init__(space, objectives, seed=0, **kw)


def test_a_strategy_that_ignores_its_seed_fails():
    with pytest.raises(AssertionError, match="strategy 'unseeded'.*same sequence"):
        check_strategy(_Unseeded, options={"population_size": 6, "sample_size": 3})


def test_the_contract_space_and_objective():
    import numpy as np

    space = ContractSpace()
    rng = np.random.default_rng(0)
    archs = [space.sample(rng) for _ in range(50)]
    costs = [contract_metrics(a)["cost"] for a in archs]
    assert 0.1 < np.mean([c > 64 for c in costs]) < 0.6  # the contract's constraint bites on part of the space
    a = archs[0]
    assert contract_metrics(a, {"epochs": 9})["score"] > contract_metrics(a, {"epochs": 1})["score"]


def test_option_variants_meet_the_contract():
    from nas_core.strategies import LocalSearch, OptunaStrategy

    check_strategy(LocalSearch, options={"improvement": "best"})
    check_strategy(OptunaStrategy, options={"sampler": "nsga2", "sampler_options": {"population_size": 8}})


def _all_targets():
    from nas_core.hardware.target import builtin_target_names

    reg = Registry()
    names = [f"core:{n}" for n in builtin_target_names()]
    for pname, p in reg.plugins().items():
        names += [f"{pname}/{k}" for k in p.targets]
    return names


@pytest.mark.parametrize("key", _all_targets())
def test_every_target_meets_the_contract(key):
    from nas_core.hardware.target import load_builtin_target
    from nas_core.testing import check_target

    target = load_builtin_target(key[5:]) if key.startswith("core:") else Registry().target(key)[1]
    check_target(target, f"target '{key}'")


def test_a_target_without_sources_fails():
    from nas_core.hardware.target import HardwareTarget
    from nas_core.testing import check_target

    t = HardwareTarget(name="x", description="x", clock_hz=1e6, sram_bytes=1024, flash_bytes=4096, cycles_per_mac=1.0)
    with pytest.raises(AssertionError, match="target 'x'.*cites no sources"):
        check_target(t, "target 'x'")
