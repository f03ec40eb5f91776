"""Multi-fidelity strategies: successive halving, Hyperband and a BOHB-style variant.

* Successive halving (Jamieson & Talwalkar 2016; Karnin et al. 2013): evaluate
  ``n`` architectures at the lowest budget, keep the best ``1/eta`` at the next
  budget, and so on up to the largest budget.
* Hyperband (Li et al. 2018, JMLR 18): cycles through brackets that trade the
  number of architectures against the budget they start at, from "many at the
  lowest budget" to "few at the full budget".
* BOHB (Falkner, Klein & Hutter 2018, ICML): Hyperband whose new architectures
  come, with probability ``1 - random_fraction``, from a Parzen (TPE) model of
  the results at the largest budget that has enough of them (see
  :class:`nas_core.strategies.generative.ParzenModel`).

Budgets are values of one fidelity key of the estimator (``fidelity_key``, by
default ``"epochs"``): either the explicit ascending list ``budgets`` or the
geometric ladder from ``min_budget`` to ``max_budget`` by ``eta``. Every
proposal is a :class:`~nas_core.strategies.base.Proposal` carrying its budget,
e.g. ``Proposal(arch, {"epochs": 3})``; results are matched back by the
fidelity the study reports with them.

Brackets run asynchronously: when every job of the open brackets has been
issued and their results are outstanding (parallel workers), the next bracket
opens instead of waiting. A rejected architecture is replaced by a new one (a
rejection holds at every budget); failed ones are never promoted. A result the
strategy already knows (the same architecture at the same budget, from an
earlier bracket) fills its slot without a new proposal. The incumbent is the
best result at the largest budget (:attr:`incumbent`).

In a study, ``budget`` counts trials whatever their fidelity, so a low-budget
evaluation costs as much of it as a full one; compare multi-fidelity strategies
with others by the training they consume (``benchmarks/strategies.py`` charges an
evaluation at ``e`` epochs ``e / max`` of a full one).
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

from nas_core.errors import ConfigError
from nas_core.space import Architecture, SearchSpace
from nas_core.values import TrialState
from nas_core.strategies._decisions import DecisionSpace
from nas_core.strategies.base import Objective, Proposal, Strategy, TrialResult
from nas_core.strategies.generative import ParzenModel, choice_counts


def budget_ladder(min_budget: float, max_budget: float, eta: float) -> list[float]:
    """Budgets ``max_budget * eta**-k`` down to ``min_budget`` (ascending; integers stay integers)."""
    s_max = int(math.floor(math.log(max_budget / min_budget) / math.log(eta) + 1e-9))
    out = [max_budget * eta ** (-k) for k in range(s_max, -1, -1)]
    if float(min_budget).is_integer() and float(max_budget).is_integer():
        out = [int(round(b)) for b in out]
    return out


class SuccessiveHalving(Strategy):
    """Successive halving over one fidelity key. Options: ``fidelity_key``, ``budgets`` or
    ``min_budget``/``max_budget``, ``eta`` (3), ``n_configs`` (default ``eta ** (rungs - 1)``)."""

    name = "successive_halving"
    check_options = {"budgets": [1, 3, 9]}

    def __init__(self, space: SearchSpace, objectives: Sequence[Objective], *, seed: int = 0,
                 fidelity_key: str = "epochs", budgets: Sequence[float] | None = None, min_budget: float = 1,
                 max_budget: float = 9, eta: float = 3, n_configs: int | None = None):
        super().__init__(space, objectives, seed=seed)
        if eta <= 1:
            raise ConfigError(f"{self.name}: eta must be > 1, got {eta}")
        if budgets is None:
            if not 0 < min_budget <= max_budget:
                raise ConfigError(f"{self.name}: need 0 < min_budget <= max_budget, got {min_budget}, {max_budget}")
            budgets = budget_ladder(min_budget, max_budget, eta)
        budgets = list(budgets)
        if not budgets or any(b <= 0 for b in budgets) or sorted(budgets) != budgets or len(set(budgets)) != len(budgets):
            raise ConfigError(f"{self.name}: budgets must be distinct positive values in ascending order, got {budgets}")
        if not isinstance(fidelity_key, str) or not fidelity_key:
            raise ConfigError(f"{self.name}: fidelity_key must name an estimator fidelity, e.g. 'epochs'")
        self.fidelity_key = fidelity_key
        self.budgets = budgets
        self.eta = float(eta)
        self.s_max = len(budgets) - 1
        if n_configs is not None and n_configs < 1:
            raise ConfigError(f"{self.name}: n_configs must be >= 1, got {n_configs}")
        self.n_configs = n_configs
        self.brackets: list[dict[str, Any]] = []  # open brackets, oldest first
        self.n_brackets = 0  # brackets opened so far
        # what the strategy knows: "budget index|hash" -> [canonical, fitness or None (failed/rejected)]
        self.known: dict[str, list[Any]] = {}
        self.rejected: set[str] = set()
        self.incumbent: tuple[float, str] | None = None
        self.n_asked = 0

    # -- bracket schedule (overridden by Hyperband) --------------------------------------------
    def _bracket_shape(self, k: int) -> tuple[int, int]:
        """(first budget index, number of architectures) of the ``k``-th bracket."""
        n = self.n_configs or int(round(self.eta ** self.s_max))
        return 0, max(1, n)

    def _new_config(self, budget_index: int) -> Architecture:
        for _ in range(32):
            arch = self.space.sample(self.rng)
            if f"{budget_index}|{arch.hash}" not in self.known and arch.hash not in self.rejected:
                return arch
        self.fallback("repeat", "32 random draws for a new bracket were all known or rejected; using a known one")
        return arch

    # -- bookkeeping ------------------------------------------------------------------------------
    def _open_bracket(self) -> dict[str, Any]:
        b0, n0 = self._bracket_shape(self.n_brackets)
        self.n_brackets += 1
        sizes = [max(1, int(math.floor(n0 / self.eta ** k))) for k in range(self.s_max - b0 + 1)]
        bracket = {"id": self.n_brackets, "b0": b0, "sizes": sizes, "rung": 0, "configs": [], "issued": 0,
                   "results": {}, "replacements": 0}
        self.brackets.append(bracket)
        return bracket

    def _budget_value(self, index: int) -> Any:
        return self.budgets[index]

    def _index_of(self, fidelity: Mapping[str, Any]) -> int:
        v = fidelity.get(self.fidelity_key)
        if v is None:
            return self.s_max
        for i, b in enumerate(self.budgets):
            if abs(float(v) - float(b)) <= 1e-9 * max(1.0, abs(float(b))):
                return i
        return -1  # a budget this strategy did not propose

    def _promote(self, bracket: dict[str, Any]) -> None:
        """Move to the next rung once every result of the current one is in (repeatedly)."""
        while True:
            k = bracket["rung"]
            size = bracket["sizes"][k]
            if bracket["issued"] < size or len(bracket["results"]) < len(bracket["configs"]):
                return
            ok = [(f, i, c) for i, c in enumerate(bracket["configs"])
                  if (f := bracket["results"].get(c)) is not None]
            if k + 1 >= len(bracket["sizes"]) or not ok:
                self.brackets.remove(bracket)
                return
            ok.sort(key=lambda t: (-t[0], t[1]))
            nxt = bracket["sizes"][k + 1]
            bracket.update(rung=k + 1, configs=[c for _, _, c in ok[:nxt]], issued=0, results={},
                           sizes=bracket["sizes"][: k + 1] + [min(nxt, len(ok))] + bracket["sizes"][k + 2:])

    def _next_job(self, bracket: dict[str, Any]) -> Proposal | None:
        while True:
            k = bracket["rung"]
            bi = bracket["b0"] + k
            size = bracket["sizes"][k]
            if bracket["issued"] >= size:
                return None
            if bracket["issued"] < len(bracket["configs"]):
                canon = bracket["configs"][bracket["issued"]]
                arch = Architecture.from_json(canon)
            else:
                arch = self._new_config(bi)
                canon = arch.canonical
                if canon in bracket["configs"]:  # the space is (nearly) exhausted
                    bracket["sizes"][k] = len(bracket["configs"])
                    self._promote(bracket)
                    return None
                bracket["configs"].append(canon)
            bracket["issued"] += 1
            key = f"{bi}|{arch.hash}"
            if arch.hash in self.rejected or key in self.known:
                bracket["results"][canon] = None if arch.hash in self.rejected else self.known[key][1]
                self._promote(bracket)
                if bracket not in self.brackets:
                    return None
                continue
            return Proposal(arch, {self.fidelity_key: self._budget_value(bi)})

    def ask(self) -> Proposal:
        self.n_asked += 1
        for bracket in list(self.brackets):
            job = self._next_job(bracket)
            if job is not None:
                return job
        for _ in range(8):
            job = self._next_job(self._open_bracket())
            if job is not None:
                return job
        # everything known: propose anything at the full budget
        self.fallback("random", "no bracket has a job left; a random architecture at the full budget")
        arch = self.space.sample(self.rng)
        return Proposal(arch, {self.fidelity_key: self._budget_value(self.s_max)})

    def tell(self, arch: Architecture, result: TrialResult) -> None:
        bi = self._index_of(result.fidelity)
        f = self.fitness(result.metrics) if result.ok else -math.inf
        value = f if math.isfinite(f) else None
        if result.state == TrialState.REJECTED:
            self.rejected.add(arch.hash)
        if bi >= 0:
            self.known[f"{bi}|{arch.hash}"] = [arch.canonical, value]
            if bi == self.s_max and value is not None and (self.incumbent is None or value > self.incumbent[0]):
                self.incumbent = (value, arch.canonical)
        for bracket in list(self.brackets):
            k = bracket["rung"]
            canon = arch.canonical
            if canon not in bracket["configs"][: bracket["issued"]] or canon in bracket["results"]:
                continue
            if arch.hash in self.rejected:
                bracket["results"][canon] = None
                if k == 0 and bracket["replacements"] < 4 * bracket["sizes"][0]:
                    # a rejection holds at every budget: replace it with a new architecture
                    bracket["replacements"] += 1
                    bracket["configs"].remove(canon)
                    del bracket["results"][canon]
                    bracket["issued"] -= 1
            elif bi == bracket["b0"] + k:
                bracket["results"][canon] = value
            self._promote(bracket)

    # -- persistence ------------------------------------------------------------------------------
    def _extra_state(self) -> dict[str, Any]:
        return {"brackets": self.brackets, "n_brackets": self.n_brackets, "known": self.known,
                "rejected": sorted(self.rejected), "incumbent": list(self.incumbent) if self.incumbent else None,
                "n_asked": self.n_asked, "budgets": self.budgets}

    def _load_extra_state(self, state: Mapping[str, Any]) -> None:
        if [float(b) for b in state["budgets"]] != [float(b) for b in self.budgets]:
            raise ConfigError(f"{self.name}: stored state has budgets {state['budgets']}, not {self.budgets}")
        self.brackets = [dict(b, sizes=list(b["sizes"]), configs=list(b["configs"]), results=dict(b["results"]))
                         for b in state["brackets"]]
        self.n_brackets = int(state["n_brackets"])
        self.known = {k: list(v) for k, v in state["known"].items()}
        self.rejected = set(state["rejected"])
        inc = state["incumbent"]
        self.incumbent = (float(inc[0]), str(inc[1])) if inc else None
        self.n_asked = int(state["n_asked"])


class Hyperband(SuccessiveHalving):
    """Hyperband: brackets ``s = s_max .. 0`` in turn, bracket ``s`` starting
    ``ceil((s_max + 1) / (s + 1) * eta**s)`` architectures at budget index ``s_max - s``."""

    name = "hyperband"

    def _bracket_shape(self, k: int) -> tuple[int, int]:
        s = self.s_max - (k % (self.s_max + 1))
        n = int(math.ceil((self.s_max + 1) / (s + 1) * self.eta ** s))
        return self.s_max - s, n


class BOHB(Hyperband):
    """Hyperband with new architectures drawn from a Parzen model (BOHB-style).

    Extra options: ``random_fraction`` (1/3), ``min_points`` (observations at a
    budget before it is modelled, 10), ``top_fraction`` (0.15), ``n_candidates`` (24).
    """

    name = "bohb"

    def __init__(self, space: SearchSpace, objectives: Sequence[Objective], *, seed: int = 0,
                 random_fraction: float = 1 / 3, min_points: int = 10, top_fraction: float = 0.15,
                 n_candidates: int = 24, prior_weight: float = 1.0, **kwargs: Any):
        super().__init__(space, objectives, seed=seed, **kwargs)
        if not 0.0 <= random_fraction <= 1.0:
            raise ConfigError(f"bohb: random_fraction must be in [0, 1], got {random_fraction}")
        if not 0.0 < top_fraction < 1.0:
            raise ConfigError(f"bohb: top_fraction must be in (0, 1), got {top_fraction}")
        self.random_fraction = float(random_fraction)
        self.min_points = max(2, int(min_points))
        self.top_fraction = float(top_fraction)
        self.n_candidates = max(1, int(n_candidates))
        self.ds = DecisionSpace(space)
        self.model = ParzenModel(self.ds, prior_weight)
        self._counts: dict[str, np.ndarray] = {}

    def _counts_of(self, canon: str) -> np.ndarray:
        c = self._counts.get(canon)
        if c is None:
            c = choice_counts(self.ds, Architecture.from_json(canon))
            self._counts[canon] = c
        return c

    def _new_config(self, budget_index: int) -> Architecture:
        if self.rng.random() < self.random_fraction:
            return super()._new_config(budget_index)
        by_budget: dict[int, list[list[Any]]] = {}
        for key, v in self.known.items():
            by_budget.setdefault(int(key.split("|", 1)[0]), []).append(v)
        usable = [b for b, rows in by_budget.items() if sum(1 for r in rows if r[1] is not None) >= self.min_points]
        if not usable:
            return super()._new_config(budget_index)
        rows = by_budget[max(usable)]
        ok = sorted((r for r in rows if r[1] is not None), key=lambda r: -r[1])
        n_good = max(1, int(math.ceil(self.top_fraction * len(rows))))
        good = np.zeros(self.ds.width)
        for r in ok[:n_good]:
            good += self._counts_of(r[0])
        total = np.zeros(self.ds.width)
        for r in rows:
            total += self._counts_of(r[0])
        self.model.fit(good, total - good)
        best: tuple[float, Architecture] | None = None
        for _ in range(self.n_candidates):
            arch, score = self.model.sample(self.rng)
            if f"{budget_index}|{arch.hash}" in self.known or arch.hash in self.rejected:
                continue
            if best is None or score > best[0]:
                best = (score, arch)
        return best[1] if best is not None else super()._new_config(budget_index)
