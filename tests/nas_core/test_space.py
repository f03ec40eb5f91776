from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from nas_core.errors import ConfigError
from nas_core.space import Architecture, Categorical, Float, Integer, Repeat, SearchSpace


def make_space() -> SearchSpace:
    return SearchSpace("t", [
        Repeat("stages", [Categorical("k", [3, 5]), Integer("ch", 8, 32, step=8),
                          Categorical("op", ["conv", "pool"]), Integer("groups", 1, 2, when={"op": ["conv"]})], 1, 3),
        Categorical("head", ["avg", "mlp"]),
        Integer("hidden", 16, 64, step=16, when={"head": ["mlp"]}),
        Float("lr", 1e-4, 1e-1, log=True),
    ])


def test_size_counts_conditions_by_hand():
    space = SearchSpace("c", [
        Categorical("a", ["x", "y"]),
        Integer("b", 1, 3, when={"a": ["x"]}),    # 3 values only when a == x
        Float("c", 0.0, 0.2, step=0.1),           # 3 values
    ])
    # a=x: 3 * 3 ; a=y: 1 * 3  -> 12
    assert space.size() == 12
    rep = SearchSpace("r", [Repeat("s", [Categorical("k", [1, 2, 3])], 0, 2)])
    assert rep.size() == 1 + 3 + 9
    assert math.isinf(make_space().size())
    # nested condition inside a repeat: per block conv: 2*4*2 = 16, pool: 2*4 = 8 -> 24 per block
    space2 = SearchSpace("n", [Repeat("s", [Categorical("k", [3, 5]), Integer("ch", 8, 32, step=8),
                                             Categorical("op", ["conv", "pool"]),
                                             Integer("groups", 1, 2, when={"op": ["conv"]})], 1, 2)])
    assert space2.size() == 24 + 24 ** 2


def test_sample_mutate_crossover_neighbours_stay_in_space():
    space = make_space()
    rng = np.random.default_rng(1)
    archs = [space.sample(rng) for _ in range(50)]
    for a, b in zip(archs, archs[1:]):
        assert space.contains(a), space.errors(a)
        m = space.mutate(a, rng)
        assert space.contains(m) and m != a
        c = space.crossover(a, b, rng)
        assert space.contains(c), space.errors(c)
        for nb in space.neighbours(a):
            assert space.contains(nb), space.errors(nb)
            assert nb != a
        assert len(space.encode(a)) == space.encoding_size()
    # conditional dimensions appear exactly when active
    for a in archs:
        assert ("hidden" in a) == (a["head"] == "mlp")
        for st in a["stages"]:
            assert ("groups" in st) == (st["op"] == "conv")


def test_neighbours_enumerate_single_changes():
    space = SearchSpace("n", [Categorical("a", [1, 2, 3]), Integer("b", 0, 4)])
    arch = Architecture({"a": 2, "b": 0})
    nbs = {(n["a"], n["b"]) for n in space.neighbours(arch)}
    assert nbs == {(1, 0), (3, 0), (2, 1)}


def test_encoding_is_fixed_length_and_padded():
    space = SearchSpace("e", [Repeat("s", [Categorical("k", [3, 5])], 1, 3), Integer("w", 0, 10)])
    a = Architecture({"s": [{"k": 5}], "w": 5})
    v = space.encode(a)
    # per copy: active flag + one-hot(2) = 3, times 3 copies, + 1 integer
    assert v.tolist() == [1, 0, 1, 0, 0, 0, 0, 0, 0, 0.5]


def test_json_round_trip_of_space_and_architecture():
    space = make_space()
    again = SearchSpace.from_json(space.to_json())
    assert again.to_dict() == space.to_dict()
    rng = np.random.default_rng(0)
    a = space.sample(rng)
    assert Architecture.from_json(a.to_json()) == a
    assert again.contains(a)
    # the same seed samples the same points from the round-tripped space
    r1, r2 = np.random.default_rng(3), np.random.default_rng(3)
    assert [space.sample(r1).hash for _ in range(5)] == [again.sample(r2).hash for _ in range(5)]


def test_architecture_is_frozen_canonical_and_hash_stable_across_processes():
    a = Architecture({"b": [1, {"y": 2, "x": 1}], "a": 0.5})
    b = Architecture({"a": 0.5, "b": [1, {"x": 1, "y": 2}]})
    assert a == b and a.hash == b.hash and a.canonical == '{"a":0.5,"b":[1,{"x":1,"y":2}]}'
    with pytest.raises(AttributeError):
        a.x = 1
    values = a.to_dict()
    values["a"] = 9
    assert a["a"] == 0.5  # copies never alias the frozen value
    code = ("from nas_core.space import Architecture; "
            "print(Architecture({'b': [1, {'y': 2, 'x': 1}], 'a': 0.5}).hash)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONHASHSEED": "123", "PATH": ""})
    assert out.stdout.strip() == a.hash


@pytest.mark.parametrize("definition, needle", [
    ({"name": "s", "dimensions": [{"type": "categorical", "name": "a", "choices": []}]}, "at least one choice"),
    ({"name": "s", "dimensions": [{"type": "integer", "name": "a", "low": 5, "high": 1}]}, "high 1 < low 5"),
    ({"name": "s", "dimensions": [{"type": "wibble", "name": "a"}]}, "unknown type 'wibble'"),
    ({"name": "s", "dimensions": [{"type": "integer", "name": "a", "low": 0, "high": 3, "colour": 1}]}, "colour"),
    ({"name": "s", "dimensions": [{"type": "integer", "name": "a", "low": 0, "high": 3, "when": {"zz": [1]}}]}, "'zz'"),
    ({"name": "s", "dimensions": [{"type": "categorical", "name": "a", "choices": [1]},
                                  {"type": "categorical", "name": "a", "choices": [2]}]}, "duplicate dimension name 'a'"),
    ({"name": "s", "dimensions": [{"type": "float", "name": "lr", "low": 0, "high": 1, "log": True}]}, "log scale"),
    ({"name": "s", "dimensions": []}, "no dimensions"),
    ({"name": "s", "dimensions": [{"type": "repeat", "name": "r", "min_count": 3, "max_count": 1,
                                   "block": [{"type": "integer", "name": "x", "low": 0, "high": 1}]}]}, "min_count"),
])
def test_malformed_definitions_are_one_clear_error(definition, needle):
    with pytest.raises(ConfigError) as err:
        SearchSpace.from_dict(definition)
    assert needle in str(err.value)
    assert "\n" not in str(err.value)


def test_validate_names_the_offending_value():
    space = make_space()
    with pytest.raises(ConfigError, match="'head'"):
        space.validate({"stages": [{"k": 3, "ch": 8, "op": "pool"}], "head": "zzz", "lr": 0.01})
    errs = space.errors({"stages": [{"k": 3, "ch": 8, "op": "pool", "groups": 1}], "head": "avg", "lr": 0.01})
    assert any("inactive" in e and "groups" in e for e in errs)


def test_mutation_is_deterministic_under_seed():
    space = make_space()
    a = space.sample(np.random.default_rng(0))
    r1, r2 = np.random.default_rng(9), np.random.default_rng(9)
    assert [space.mutate(a, r1).hash for _ in range(10)] == [space.mutate(a, r2).hash for _ in range(10)]
