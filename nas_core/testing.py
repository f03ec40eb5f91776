"""Conformance kit for plugins: run ``check_plugin(plugin)`` in a plugin's own tests.

Like scikit-learn's ``check_estimator``, it exercises the contract the core relies
on and raises ``AssertionError`` naming the plugin, entry and property that broke::

    from nas_core.testing import check_plugin
    from my_package.plugin import plugin

    def test_conformance():
        check_plugin(plugin())

Checked for every space: JSON round trip of the definition; samples lie in the
space, have stable hashes and round-trip through JSON; mutation, crossover and
neighbours stay in the space; encodings have the declared fixed length; the space
builds a ``torch.nn.Module`` whose forward pass runs on the task's input shape;
hardware costs and the task's static metrics are finite numbers; default
objectives name metrics the task produces. Every target loads with positive
clock and memories. Every zero-cost proxy (synflow, snip, grad_norm, fisher,
jacob_cov, naswot, params, macs) runs on two candidates of each space, finite and
deterministic under a seed (``proxies=False`` skips this). With ``train=True`` one
candidate is also trained at the smallest fidelity the caller gives.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

from nas_core.estimators.base import EvalContext
from nas_core.plugins import Plugin, Registry
from nas_core.space import Architecture, SearchSpace


def _check(cond: bool, where: str, what: str) -> None:
    if not cond:
        raise AssertionError(f"{where}: {what}")


def _dummy_inputs(shape: Any):
    import torch

    if shape and isinstance(shape[0], (tuple, list)):
        return tuple(torch.randn(1, *s) for s in shape)
    return (torch.randn(1, *shape),)


def check_space(space: SearchSpace, where: str, *, n_samples: int = 8, seed: int = 0) -> list[Architecture]:
    rng = np.random.default_rng(seed)
    _check(SearchSpace.from_json(space.to_json()).to_dict() == space.to_dict(), where, "definition does not round-trip through JSON")
    size = space.size()
    _check(size == math.inf or size >= 1, where, f"size() returned {size}")
    archs = []
    for _ in range(n_samples):
        a = space.sample(rng)
        _check(space.contains(a), where, f"sample outside the space: {space.errors(a)}")
        _check(Architecture.from_json(a.to_json()) == a and Architecture.from_json(a.to_json()).hash == a.hash,
               where, "architecture does not round-trip through JSON")
        enc = space.encode(a)
        _check(enc.shape == (space.encoding_size(),) and np.all(np.isfinite(enc)), where,
               f"encoding has shape {enc.shape}, expected ({space.encoding_size()},)")
        m = space.mutate(a, rng)
        _check(space.contains(m), where, f"mutation left the space: {space.errors(m)}")
        archs.append(a)
    for a, b in zip(archs, archs[1:]):
        c = space.crossover(a, b, rng)
        _check(space.contains(c), where, f"crossover left the space: {space.errors(c)}")
    for nb in space.neighbours(archs[0])[:50]:
        _check(space.contains(nb) and nb != archs[0], where, f"bad neighbour {nb}")
    return archs


def check_plugin(plugin: Plugin, *, n_samples: int = 6, seed: int = 0, task_options: Mapping[str, Any] | None = None,
                 train: bool = False, fidelity: Mapping[str, Any] | None = None, proxies: bool = True) -> None:
    import torch

    reg = Registry([plugin], discover=False)  # validates names and entry types
    name = plugin.name
    _check(bool(plugin.spaces), f"plugin '{name}'", "declares no spaces")
    targets = {}
    for key in plugin.targets:
        qualified, target = reg.target(f"{name}/{key}")
        where = f"plugin '{name}' target '{key}'"
        _check(target.clock_hz > 0 and target.sram_bytes > 0 and target.flash_bytes > 0, where,
               "clock, SRAM and flash must be positive")
        targets[qualified] = target
    target = next(iter(targets.values()), None)
    for key, entry in plugin.spaces.items():
        where = f"plugin '{name}' space '{key}'"
        space = entry.space()
        _check(isinstance(space, SearchSpace), where, f"factory returned {type(space).__name__}, not a SearchSpace")
        task = entry.task(space, **dict(task_options or {}))
        archs = check_space(space, where, n_samples=n_samples, seed=seed)
        estimator = task.estimator()
        static_names = set(task.static_metric_names(target))
        for o in task.default_objectives():
            _check(o.name in static_names | set(estimator.metric_names), where,
                   f"default objective '{o.name}' is not a metric the task produces")
        for a in archs[:3]:
            torch.manual_seed(seed)
            model = space.build(a)
            _check(isinstance(model, torch.nn.Module), where, f"build() returned {type(model).__name__}")
            model.eval()
            with torch.no_grad():
                out = model(*_dummy_inputs(task.input_shape(a)))
            _check(bool(torch.isfinite(out).all()), where, f"forward pass of {a.hash} gave non-finite output")
            static = task.static_metrics(a, model, target)
            _check(static_names <= set(static), where, f"static metrics miss {sorted(static_names - set(static))}")
            _check(all(isinstance(v, (int, float)) and math.isfinite(v) for v in static.values()), where,
                   f"static metrics must be finite numbers: {static}")
        if train:
            torch.manual_seed(seed)
            model = space.build(archs[0])
            metrics = estimator.evaluate(EvalContext(archs[0], model, seed, dict(fidelity or {})))
            _check(set(estimator.metric_names) <= set(metrics), where,
                   f"evaluate() returned {sorted(metrics)}, declared {sorted(estimator.metric_names)}")
    if proxies:  # every zero-cost proxy runs on every space, finite and deterministic under a seed
        from nas_core.estimators.zero_cost import check_proxies

        check_proxies(plugin, n_archs=2, seed=seed, task_options=task_options)
