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

``check_strategy(cls)`` holds a search strategy to the contract the study loop
relies on (every registered strategy is checked by the project's own tests, from
the registry): proposals lie in the space (:class:`ContractSpace`: conditions
inside a repeat, a nested repeat, conditional and log floats, non-scalar
choices), are deterministic under a seed and differ under another; a rejected
architecture is never proposed again; and the state round trip restores
*everything*: a strategy whose state went through JSON (as the store keeps it) into a fresh
instance (built with another seed) proposes exactly what the uninterrupted one
does. A strategy that forgets ``_extra_state``/``_load_extra_state`` fails there.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Sequence

import numpy as np

from nas_core.errors import ConfigError
from nas_core.estimators.base import EvalContext
from nas_core.plugins import Plugin, Registry
from nas_core.space import Architecture, Categorical, Dimension, Float, Integer, Repeat, SearchSpace

if TYPE_CHECKING:
    import torch


def _check(cond: bool, where: str, what: str) -> None:
    if not cond:
        raise AssertionError(f"{where}: {what}")


def _dummy_inputs(shape: Any) -> tuple[torch.Tensor, ...]:
    import torch

    if shape and isinstance(shape[0], (tuple, list)):
        return tuple(torch.randn(1, *s) for s in shape)
    return (torch.randn(1, *shape),)


def check_space(space: SearchSpace, where: str, *, n_samples: int = 8, seed: int = 0) -> list[Architecture]:
    rng = np.random.default_rng(seed)
    _check(SearchSpace.from_json(space.to_json()).to_dict() == space.to_dict(), where, "definition does not round-trip through JSON")
    from nas_core.space import unreachable_conditions

    bad = unreachable_conditions(space.dimensions, "")
    _check(not bad, where, "; ".join(b.lstrip(": ") for b in bad))
    size = space.size()
    _check(size == math.inf or size >= 1, where, f"size() returned {size}")
    archs = []
    for _ in range(n_samples):
        a = space.sample(rng)
        _check(space.contains(a), where, f"sample outside the space: {space.errors(a)}")
        _check(Architecture.from_json(a.to_json()) == a and Architecture.from_json(a.to_json()).hash == a.hash,
               where, "architecture does not round-trip through JSON")
        enc = space.encode(a)
        _check(bool(enc.shape == (space.encoding_size(),) and np.all(np.isfinite(enc))), where,
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


def _call(where: str, hook: str, fix: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Call a plugin hook; an exception becomes an AssertionError naming where, the hook and the fix."""
    try:
        return fn(*args, **kwargs)
    except AssertionError:
        raise
    except Exception as e:  # noqa: BLE001 - any bug in plugin code is reported the same way
        raise AssertionError(f"{where}: {hook} raised {type(e).__name__}: {e}; {fix}") from e


def check_target(target: Any, where: str) -> None:
    """A hardware target's figures are usable: positive clock and memories, finite cost model, an energy
    model that gives a positive energy per cycle when it is declared, and sources cited."""
    from nas_core.hardware.target import HardwareTarget

    _check(isinstance(target, HardwareTarget), where, f"the target factory returned {type(target).__name__}, "
           "not a HardwareTarget (load it with nas_core.hardware.target.load_target)")
    _check(target.clock_hz > 0 and target.sram_bytes > 0 and target.flash_bytes > 0, where,
           "clock, SRAM and flash must be positive")
    _check(math.isfinite(target.cycles_per_mac) and target.cycles_per_mac > 0
           and math.isfinite(target.layer_overhead_cycles) and target.layer_overhead_cycles >= 0, where,
           "cycles_per_mac must be positive and layer_overhead_cycles >= 0")
    if target.has_energy_model:
        e = _call(where, "energy_per_cycle()", "give energy_per_cycle_j, or active_current_a with voltage_v",
                  target.energy_per_cycle)
        _check(math.isfinite(e) and e > 0, where, f"energy per cycle is {e!r}; give energy_per_cycle_j, or "
               "active_current_a with voltage_v")
    _check(bool(target.sources), where, "cites no sources: add sources = [...] naming the datasheet of each figure")


def check_plugin(plugin: Plugin, *, n_samples: int = 6, seed: int = 0, task_options: Mapping[str, Any] | None = None,
                 train: bool = False, fidelity: Mapping[str, Any] | None = None, proxies: bool = True) -> None:
    """Check a plugin against the contract the core relies on (see the module docstring).

    Every mistake is an ``AssertionError`` naming the plugin, the space or target, and the fix.
    """
    import pickle

    import torch

    reg = Registry([plugin], discover=False)  # validates names and entry types
    name = plugin.name
    _check(bool(plugin.spaces), f"plugin '{name}'", "declares no spaces")
    targets = {}
    for key in plugin.targets:
        where = f"plugin '{name}' target '{key}'"
        qualified, target = _call(where, "loading the target", "check the target file against the schema",
                                  reg.target, f"{name}/{key}")
        check_target(target, where)
        targets[qualified] = target
    for key, entry in plugin.spaces.items():
        where = f"plugin '{name}' space '{key}'"
        space = _call(where, "the space factory", "fix the space definition", entry.space)
        _check(isinstance(space, SearchSpace), where, f"factory returned {type(space).__name__}, not a SearchSpace")
        task = _call(where, "the task factory", "check the task's options", entry.task, space,
                     **dict(task_options or {}))
        try:
            pickle.dumps(task)  # what the process and Ray executors do to send it to a worker
        except Exception as e:  # noqa: BLE001
            raise AssertionError(
                f"{where}: the task is not picklable ({type(e).__name__}: {e}); tasks travel to worker processes: "
                "keep open files, locks, lambdas and loaded data out of its attributes (load data lazily in "
                "prepare() or in the estimator's data factory)") from e
        for tkey, target in targets.items():
            missing = [k for k in task.target_keys if k not in (target.extra or {})]
            _check(not missing, f"plugin '{name}' target '{tkey.split('/', 1)[1]}'",
                   "lacks " + ", ".join(f"extra.{k} ({task.target_keys[k]})" for k in missing)
                   + f" that the task of space '{key}' needs; add it to the [extra] table of its target file")
        archs = check_space(space, where, n_samples=n_samples, seed=seed)
        estimator = _call(where, "task.estimator()", "return an Estimator", task.estimator)
        declared = getattr(estimator, "metric_names", None)
        _check(isinstance(declared, (tuple, list)) and bool(declared) and all(isinstance(m, str) for m in declared),
               where, f"the estimator declares metric_names {declared!r}; declare the metric names it returns")
        check_targets = list(targets.values()) or [None]
        for target in check_targets:
            static_names = set(task.static_metric_names(target))
            for o in task.default_objectives():
                _check(o.name in static_names | set(estimator.metric_names), where,
                       f"default objective '{o.name}' is not a metric the task produces (it produces "
                       f"{', '.join(sorted(static_names | set(estimator.metric_names)))}); name one of those in "
                       "default_objectives()")
        for i, a in enumerate(archs):
            torch.manual_seed(seed)
            model = _build(space, a, where)
            if i >= 3 and not any(d.condition is not None for d in _all_dims(space)):
                continue  # unconditional spaces: three forward passes suffice
            shape = task.input_shape(a)
            model.eval()
            with torch.no_grad():
                out = _call(where, f"the forward pass on input_shape() = {shape!r}",
                            "input_shape() gives one sample's shape without the batch dimension, in the layout "
                            "build() expects (channels first: (C, L) for 1D, (C, H, W) for 2D; a tuple of shapes "
                            "for several inputs)", model, *_dummy_inputs(shape))
            _check(isinstance(out, torch.Tensor) and bool(torch.isfinite(out).all()), where,
                   f"forward pass of {a.hash} gave a non-finite or non-tensor output")
            if task.n_outputs is not None:
                _check(tuple(out.shape) == (1, task.n_outputs), where,
                       f"the network of {a.hash} outputs shape {tuple(out.shape)} for one sample, but the task "
                       f"has n_outputs = {task.n_outputs}; size the last layer to the task's classes")
            state = _network_state(model)
            for target in check_targets:
                static = _call(where, "task.static_metrics()", "see the traceback", task.static_metrics, a, model,
                               target)
                _check_unchanged(where, a, state, model)
                names = set(task.static_metric_names(target))
                _check(names <= set(static), where,
                       f"static_metric_names() declares {sorted(names - set(static))} but static_metrics() does "
                       "not produce them; produce them or stop declaring them")
                _check(all(isinstance(v, (int, float)) and math.isfinite(v) for v in static.values()), where,
                       f"static metrics must be finite numbers: {static}")
                reasons = _call(where, "task.rejections()", "a domain rule must return a list of sentences, "
                                "never raise", task.rejections, a, static, target=target)
                _check(isinstance(reasons, (list, tuple)) and all(isinstance(r, str) and r for r in reasons), where,
                       f"rejections() returned {reasons!r}; return a list of non-empty sentences")
        if train:
            torch.manual_seed(seed)
            model = space.build(archs[0])
            metrics = _call(where, "estimator.evaluate()", "see the traceback", estimator.evaluate,
                            EvalContext(archs[0], model, seed, dict(fidelity or {})))
            _check(set(estimator.metric_names) <= set(metrics), where,
                   f"the estimator declares {sorted(set(estimator.metric_names) - set(metrics))} in metric_names but "
                   f"evaluate() does not return them (it returned {sorted(metrics)}); return them or stop declaring")
    if proxies:  # every zero-cost proxy runs on every space, finite and deterministic under a seed
        from nas_core.estimators.zero_cost import check_proxies

        check_proxies(plugin, n_archs=2, seed=seed, task_options=task_options)


def _network_state(model: Any) -> dict[str, Any]:
    """A copy of a network's parameters and buffers, and of every module's training flag."""
    state: dict[str, Any] = {k: v.detach().clone() for k, v in model.state_dict().items()}
    state["training flags"] = [m.training for m in model.modules()]
    return state


def _check_unchanged(where: str, arch: Architecture, before: dict[str, Any], model: Any) -> None:
    """``task.static_metrics`` left the network as :func:`_network_state` found it (NaN equals NaN)."""
    import torch

    after = _network_state(model)
    for key in sorted(set(before) | set(after)):
        a, b = before.get(key), after.get(key)
        if a is None or b is None:
            change = f"{key} {'added' if a is None else 'removed'}"
        elif isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
            same = a.shape == b.shape and a.dtype == b.dtype and (
                torch.equal(a, b) or (a.is_floating_point() and bool(torch.isclose(a, b, 0, 0, True).all())))
            change = "" if same else f"{key} changed"
        else:
            change = "" if a == b else f"{key} changed"
        _check(not change, where, f"static_metrics() changed the network of {arch.hash} ({change}); the in-process "
               "executor trains the network the static metrics were measured on: leave its weights, buffers and "
               "training flags as they were")


def _all_dims(space: SearchSpace) -> Iterator[Dimension]:
    from nas_core.space import Repeat

    stack = list(space.dimensions)
    while stack:
        d = stack.pop()
        yield d
        if isinstance(d, Repeat):
            stack.extend(d.block)


def _build(space: SearchSpace, arch: Architecture, where: str) -> Any:
    import torch

    try:
        model = space.build(arch)
    except KeyError as e:
        key = e.args[0] if e.args else "?"
        raise AssertionError(
            f"{where}: build() raised KeyError {key!r} on {arch.to_json()}: it reads a dimension that is not set "
            f"for this architecture (a dimension whose 'when' condition does not hold is absent); read it with "
            f"arch.get({key!r}) or only where its condition holds") from e
    except Exception as e:  # noqa: BLE001
        raise AssertionError(f"{where}: build() raised {type(e).__name__}: {e} on {arch.to_json()}") from e
    _check(isinstance(model, torch.nn.Module), where,
           f"build() returned {type(model).__name__}, not a torch.nn.Module; return the network")
    return model


# -- strategies ------------------------------------------------------------------------------------

class ContractSpace(SearchSpace):
    """The space of :func:`check_strategy`: conditions inside a repeat, a nested repeat, a conditional
    float, a log float and non-scalar JSON choices (what real plugin spaces use)."""

    def __init__(self) -> None:
        super().__init__("contract", [
            Repeat("blocks", [Categorical("op", ["conv", "pool", "skip"]),
                              Integer("width", 8, 64, step=8, when={"op": ["conv"]}),
                              Repeat("sub", [Categorical("k", [1, 3])], 0, 2)], 1, 3),
            Categorical("head", ["avg", "fc"]),
            Float("drop", 0.0, 0.5, when={"head": ["fc"]}),
            Float("lr", 1e-4, 1e-1, log=True),
            Categorical("cfg", [[1, 2], {"a": 1}]),
        ])


def contract_metrics(arch: Architecture, fidelity: Mapping[str, Any] | None = None) -> dict[str, float]:
    """A deterministic synthetic objective of :class:`ContractSpace` (``score`` max, ``cost`` min); a higher
    fidelity value (any numeric fidelity key) moves the score a little, as more training would."""
    blocks = arch["blocks"]
    s = -0.3 * abs(len(blocks) - 2) + sum(b.get("width", 0) / 64 for b in blocks) / len(blocks)
    s -= abs(math.log10(arch["lr"]) + 2.5) * 0.1
    s += 0.1 - abs(arch.get("drop", 0.0) - 0.25) if arch["head"] == "fc" else 0.0
    level = sum(float(v) for v in (fidelity or {}).values() if isinstance(v, (int, float)))
    cost = float(sum(b.get("width", 4) * (1 + len(b["sub"])) for b in blocks))
    return {"score": round(s + 0.01 * math.log1p(level), 9), "cost": cost}


def _contract_rejects(arch: Architecture) -> bool:
    """The contract's constraint: more than 64 cost units (about a third of random samples) is rejected."""
    return contract_metrics(arch)["cost"] > 64


def check_strategy(strategy: Any, *, options: Mapping[str, Any] | None = None, steps: int | None = None,
                   seed: int = 7, space: SearchSpace | None = None) -> None:
    """Check a strategy class (or a ``factory(space, objectives, seed)``) against the ask/tell contract.

    ``options`` default to the class's ``check_options``; ``steps`` (ask/tell pairs before the state
    round trip) to its ``check_steps``. Raises ``AssertionError`` naming the strategy and the broken
    property.
    """
    from nas_core.store import TrialState
    from nas_core.strategies.base import Objective, Proposal, Strategy, TrialResult

    make: Callable[[SearchSpace, Sequence[Objective], int], Any]  # may return anything: checked below
    cls: Any  # the Strategy subclass, or None for a factory
    if isinstance(strategy, type):
        cls = strategy
        opts = dict(cls.check_options if options is None else options)
        make = lambda sp, objs, s: cls(sp, objs, seed=s, **opts)  # noqa: E731
    else:
        cls, make = None, strategy
    space = space or ContractSpace()
    two = [Objective("score", "max"), Objective("cost", "min")]
    multi = getattr(cls, "multi_objective", None)
    if multi is None:  # a factory: single-objective unless it refuses one objective
        try:
            make(space, two[:1], seed)
            multi = False
        except ConfigError:
            multi = True
    objectives = two if multi else two[:1]
    probe = make(space, objectives, seed)
    where = f"strategy '{getattr(probe, 'name', type(probe).__name__)}'"
    _check(isinstance(probe, Strategy), where, f"is a {type(probe).__name__}, not a nas_core Strategy")
    n = int(steps if steps is not None else (cls.check_steps if cls else Strategy.check_steps))

    def loop(st: Any, k: int, start: int = 0, rejected: set[str] | None = None) -> list[tuple[str, str]]:
        out = []
        for i in range(k):
            p = st.ask()
            arch, fid = (p.arch, dict(p.fidelity)) if isinstance(p, Proposal) else (p, {})
            _check(isinstance(arch, Architecture), where, f"ask() returned {type(p).__name__}")
            _check(space.contains(arch), where, f"proposed an architecture outside the space: {space.errors(arch)}")
            if rejected is not None:
                _check(arch.hash not in rejected, where, f"proposed the rejected architecture {arch.hash} again")
            out.append((arch.hash, json.dumps(fid, sort_keys=True)))
            if _contract_rejects(arch):
                if rejected is not None:
                    rejected.add(arch.hash)
                st.tell(arch, TrialResult(TrialState.REJECTED, contract_metrics(arch), start + i, fid))
            else:
                st.tell(arch, TrialResult(TrialState.COMPLETE, contract_metrics(arch, fid), start + i, fid))
        return out

    rejected: set[str] = set()
    first = loop(make(space, objectives, seed), n + n // 2, rejected=rejected)
    _check(bool(rejected), where, "the contract's constraint rejected nothing (check the contract space)")
    again = loop(make(space, objectives, seed), n + n // 2)
    _check(first == again, where, f"not deterministic under seed {seed}: the two runs diverge at proposal "
           f"{next(i for i, (a, b) in enumerate(zip(first, again)) if a != b) + 1}" if first != again else "")
    other = loop(make(space, objectives, seed + 1), n + n // 2)
    _check(first != other, where, f"seeds {seed} and {seed + 1} propose the same sequence (is the seed used?)")
    st = make(space, objectives, seed)
    loop(st, n)
    try:
        text = json.dumps(st.state_dict(), sort_keys=True, allow_nan=True)  # as the store keeps it
    except (TypeError, ValueError) as e:
        raise AssertionError(f"{where}: state_dict() is not JSON ({e}); the store keeps it as JSON") from None
    fresh = make(space, objectives, seed + 12345)
    fresh.load_state_dict(json.loads(text))
    tail, resumed = first[n:], loop(fresh, n // 2, n)
    if resumed != tail:
        at = next(i for i, (a, b) in enumerate(zip(tail, resumed)) if a != b)
        raise AssertionError(
            f"{where}: after a state round trip at step {n} (state_dict -> JSON -> load_state_dict into a fresh "
            f"instance) proposal {n + at + 1} differs from the uninterrupted run's: the state misses something the "
            f"proposals depend on; save it in _extra_state() and restore it in _load_extra_state()")
