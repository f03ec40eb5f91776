"""REINFORCE controller, after Zoph & Le 2017, "Neural Architecture Search with
Reinforcement Learning" (ICLR), in ask/tell form.

The controller is an autoregressive policy over the space's decisions (see
:mod:`nas_core.strategies._decisions`: one decision per active dimension, a count
decision per repeat, conditions honoured). Each decision's choice is drawn from a
softmax whose logits depend on every earlier choice through a small recurrent
state, the numpy counterpart of Zoph & Le's controller RNN::

    h_t = tanh(c + sum_{j<t} E[x_j])          # E: an embedding of every (decision, option)
    p(x_t | x_<t) = softmax(b_t + O_t h_t)     # b_t, O_t: per-decision output layer

The embedding ``E`` starts small and random (seeded), the output layer at zero,
so the first proposals are uniform. Every result updates the policy with the
REINFORCE gradient ``A * grad log p(arch)`` (Williams 1992) with the advantage
``A = (R - baseline) / scale``: ``baseline`` is an exponential moving average of
rewards (Zoph & Le's variance reduction) and ``scale`` a moving average of the
absolute deviation, which makes the learning rate independent of the metric's
units (an addition to the paper). Parameters move by Adam. The reward is the
first objective signed so that larger is better; a failed or rejected candidate
gets the worst reward seen so far, so the policy learns to avoid infeasible
regions. Proposals already told are re-drawn (up to ``max_redraws`` times) so
that a sharpening policy does not waste the study's proposals; when every draw
is an architecture already told (the policy has converged), a random
never-told architecture is proposed instead and counted in :attr:`n_explore`.

The policy is a numpy model, so the whole state (weights, Adam moments,
baseline, generator) is a JSON dict and a resumed study continues identically.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

from nas_core.errors import ConfigError
from nas_core.space import Architecture, SearchSpace
from nas_core.strategies._common import arrays_from_json, arrays_to_json
from nas_core.strategies._decisions import DecisionSpace
from nas_core.strategies.base import Objective, Strategy, TrialResult


class Reinforce(Strategy):
    """REINFORCE with a moving-average baseline over an autoregressive softmax policy.

    Options: ``lr`` (Adam step, default 0.05), ``hidden`` (size of the recurrent
    state, 16), ``baseline_decay`` (0.9), ``max_options`` (bins for wide or
    continuous dimensions, 16), ``max_redraws`` (16).
    """

    name = "reinforce"

    def __init__(self, space: SearchSpace, objectives: Sequence[Objective], *, seed: int = 0, lr: float = 0.05,
                 hidden: int = 16, baseline_decay: float = 0.9, max_options: int = 16, max_redraws: int = 16,
                 entropy_weight: float = 0.0):
        super().__init__(space, objectives, seed=seed)
        if lr <= 0:
            raise ConfigError(f"reinforce: lr must be > 0, got {lr}")
        if hidden < 1:
            raise ConfigError(f"reinforce: hidden must be >= 1, got {hidden}")
        if not 0.0 <= baseline_decay < 1.0:
            raise ConfigError(f"reinforce: baseline_decay must be in [0, 1), got {baseline_decay}")
        self.lr = float(lr)
        self.hidden = int(hidden)
        self.decay = float(baseline_decay)
        self.max_redraws = int(max_redraws)
        self.entropy_weight = float(entropy_weight)
        self.ds = DecisionSpace(space, max_options)
        init = np.random.default_rng([self.seed, 7])  # the weights' own stream: asks do not shift it
        self.params: dict[str, np.ndarray] = {
            "E": init.normal(0.0, 0.5, size=(self.ds.width, self.hidden)),
            "c": np.zeros(self.hidden),
            "O": np.zeros((self.ds.width, self.hidden)),
            "b": np.zeros(self.ds.width),
        }
        self.m = {k: np.zeros_like(v) for k, v in self.params.items()}
        self.v = {k: np.zeros_like(v) for k, v in self.params.items()}
        self.t = 0
        self.baseline: float | None = None
        self.scale: float | None = None
        self.worst: float | None = None
        self.seen: set[str] = set()
        self.n_asked = 0
        self.n_explore = 0

    # -- the policy ------------------------------------------------------------------------
    def _probs(self, t: int, made: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
        p = self.params
        pre = p["c"].copy()
        for tj, ij in made:
            pre += p["E"][self.ds.offsets[tj] + ij]
        h = np.tanh(pre)
        o, n = self.ds.offsets[t], self.ds.decisions[t].n
        logits = p["b"][o:o + n] + p["O"][o:o + n] @ h
        logits = logits - logits.max()
        e = np.exp(logits)
        return e / e.sum(), h

    def _draw(self) -> Architecture:
        def choose(t: int, made: list[tuple[int, int]]) -> int:
            n = self.ds.decisions[t].n
            if n == 1:
                return 0
            probs, _ = self._probs(t, made)
            return int(min(n - 1, np.searchsorted(np.cumsum(probs), self.rng.random() * probs.sum(), side="right")))

        arch, _ = self.ds.decode(choose)
        return arch

    def probabilities(self, arch: Architecture) -> float:
        """The policy's probability of proposing ``arch`` (up to the binning of wide dimensions)."""
        logp = 0.0
        made: list[tuple[int, int]] = []
        for t, i in self.ds.choices(arch):
            probs, _ = self._probs(t, made)
            logp += math.log(max(probs[i], 1e-300))
            made.append((t, i))
        return math.exp(logp)

    def ask(self) -> Architecture:
        self.n_asked += 1
        for _ in range(self.max_redraws):
            arch = self._draw()
            if arch.hash not in self.seen:
                return arch
        # the policy has (nearly) converged onto architectures it was told about: explore
        self.n_explore += 1
        return self.sample_unseen(self.seen)

    # -- learning ----------------------------------------------------------------------------
    def _gradient(self, arch: Architecture) -> dict[str, np.ndarray]:
        """Gradient of log p(arch) (plus the entropy bonus, if any) with respect to the parameters."""
        p = self.params
        g = {k: np.zeros_like(v) for k, v in p.items()}
        made: list[tuple[int, int]] = []
        for t, i in self.ds.choices(arch):
            n = self.ds.decisions[t].n
            if n > 1:
                probs, h = self._probs(t, made)
                o = self.ds.offsets[t]
                d_logits = -probs
                d_logits[i] += 1.0
                if self.entropy_weight:
                    logp = np.log(np.maximum(probs, 1e-300))
                    ent = -(probs * logp).sum()
                    d_logits = d_logits + self.entropy_weight * (-probs * (logp + ent))
                g["b"][o:o + n] += d_logits
                g["O"][o:o + n] += np.outer(d_logits, h)
                d_pre = (p["O"][o:o + n].T @ d_logits) * (1.0 - h * h)
                g["c"] += d_pre
                for tj, ij in made:
                    g["E"][self.ds.offsets[tj] + ij] += d_pre
            made.append((t, i))
        return g

    def _adam(self, grad: dict[str, np.ndarray], scale: float) -> None:
        b1, b2, eps = 0.9, 0.999, 1e-8
        self.t += 1
        for k, g in grad.items():
            g = -scale * g  # gradient ascent on A * log p
            self.m[k] = b1 * self.m[k] + (1 - b1) * g
            self.v[k] = b2 * self.v[k] + (1 - b2) * g * g
            mh = self.m[k] / (1 - b1 ** self.t)
            vh = self.v[k] / (1 - b2 ** self.t)
            self.params[k] = self.params[k] - self.lr * mh / (np.sqrt(vh) + eps)

    def tell(self, arch: Architecture, result: TrialResult) -> None:
        self.seen.add(arch.hash)
        reward = self.fitness(result.metrics) if result.ok else -math.inf
        if math.isfinite(reward):
            self.worst = reward if self.worst is None else min(self.worst, reward)
        elif self.worst is not None:
            reward = self.worst
        else:
            return  # nothing to compare an infeasible candidate with yet
        if self.baseline is None:
            self.baseline, self.scale = reward, 0.0
            return
        assert self.scale is not None  # set together with the baseline
        dev = reward - self.baseline
        self.scale = self.decay * self.scale + (1 - self.decay) * abs(dev)
        adv = dev / self.scale if self.scale > 1e-12 else 0.0
        adv = float(np.clip(adv, -5.0, 5.0))
        self.baseline = self.decay * self.baseline + (1 - self.decay) * reward
        if adv != 0.0:
            self._adam(self._gradient(arch), adv)

    # -- persistence ---------------------------------------------------------------------------
    def _extra_state(self) -> dict[str, Any]:
        return {"params": arrays_to_json(self.params), "m": arrays_to_json(self.m), "v": arrays_to_json(self.v),
                "t": self.t, "baseline": self.baseline, "scale": self.scale, "worst": self.worst,
                "seen": sorted(self.seen), "n_asked": self.n_asked, "n_explore": self.n_explore}

    def _load_extra_state(self, state: Mapping[str, Any]) -> None:
        self.params = arrays_from_json(state["params"])
        self.m = arrays_from_json(state["m"])
        self.v = arrays_from_json(state["v"])
        self.t = int(state["t"])
        self.baseline = state["baseline"]
        self.scale = state["scale"]
        self.worst = state["worst"]
        self.seen = set(state["seen"])
        self.n_asked = int(state["n_asked"])
        self.n_explore = int(state["n_explore"])
        if self.params["E"].shape != (self.ds.width, self.hidden):
            raise ConfigError("reinforce: stored policy does not match this space or 'hidden' option")
