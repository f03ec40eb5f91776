"""One-shot support for the digits example space (``digits/cnn``).

* :class:`DigitsMixedSupport` - the space's mixed-op support for DARTS and
  single-path one-shot: one decision per stage position, whose candidates are
  the stage's (block, kernel) pairs and, from the second stage on, ``skip``
  (the stage is absent: a parameter-free identity, the op DARTS tends to
  collapse into). Channels, pooling, head, hidden layer and activation come
  from a template (defaults: 16 channels, pooling after the first stage only,
  average-pooling head, no hidden layer, ReLU). Importing this module
  registers it, so ``mixed_support(DigitsCNNSpace())`` finds it.
* :class:`DigitsElasticSupernet` - a Once-for-All-style elastic supernet over
  the *whole* digits space: weights of the largest stage (32 channels, 5x5
  kernels) sliced to any width and centre-cropped to 3x3, both block types,
  any pooling, either head and hidden width. Sub-networks extract to the
  network ``DigitsCNNSpace.build`` makes, with copied weights.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, cast

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from nas_core.errors import ConfigError
from nas_core.examples.digits import DigitsCNNSpace
from nas_core.oneshot.mixed import MixedOp, MixedOpSupport
from nas_core.oneshot.supernet import Supernet, sliced_batch_norm
from nas_core.space import Architecture, Categorical, Repeat

__all__ = ["DigitsElasticSupernet", "DigitsMixedSupport"]

_ACT = {"relu": nn.ReLU, "gelu": nn.GELU}


def _stage(cin: int, cout: int, block: str, k: int, act: str, pool: bool) -> nn.Sequential:
    # the layers DigitsCNNSpace.build makes for one stage
    if block == "plain":
        layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, padding=k // 2, bias=False)]
    else:
        layers = [nn.Conv2d(cin, cin, k, padding=k // 2, groups=cin, bias=False), nn.Conv2d(cin, cout, 1, bias=False)]
    layers += [nn.BatchNorm2d(cout), _ACT[act]()]
    if pool:
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


class DigitsMixedSupport(MixedOpSupport):
    """Mixed-op support of ``digits/cnn``: per stage position, (block, kernel) candidates or ``skip``.

    Args:
        space: the digits space (default a fresh ``DigitsCNNSpace``).
        channels: channels of every stage (one width, so that ``skip`` keeps shapes).
        max_stages: stage positions (1-3); positions after the first may be skipped.
        first_pool: max-pooling after the first stage (later stages never pool, so
            that a skipped stage and a present one have the same output shape).
        head, hidden, dropout, activation: fixed dimensions of the derived architectures.
    """

    def __init__(self, space: DigitsCNNSpace | None = None, *, channels: int = 16, max_stages: int = 3,
                 first_pool: bool = True, head: str = "avg", hidden: int = 0, dropout: float = 0.0,
                 activation: str = "relu"):
        self.space = space or DigitsCNNSpace()
        dims = {d.name: d for d in self.space.dimensions}
        stages = cast(Repeat, dims["stages"])
        block = {d.name: cast(Categorical, d) for d in stages.block}  # a digits stage is four categoricals
        if not block["channels"].validate(channels):
            raise ConfigError(f"channels={channels} is not a choice of the digits space {list(block['channels'].choices)}")
        if not 1 <= max_stages <= stages.max_count:
            raise ConfigError(f"max_stages must be in 1..{stages.max_count}, got {max_stages}")
        self.channels, self.max_stages, self.first_pool = channels, max_stages, bool(first_pool)
        self.fixed: dict[str, Any] = {"head": head, "hidden": hidden, "activation": activation}
        if hidden:
            self.fixed["dropout"] = float(dropout)
        self.ops = [f"{b}{k}" for b in block["block"].choices for k in block["kernel"].choices]
        self._op = {f"{b}{k}": (b, k) for b in block["block"].choices for k in block["kernel"].choices}
        # fail early on a template outside the space
        self.space.validate(self.derive({"stage0": self.ops[0], **{f"stage{i}": "skip" for i in range(1, max_stages)}}))

    def input_shape(self) -> tuple[int, ...]:
        return (1, 8, 8)

    def build_mixed(self) -> nn.Module:
        act = self.fixed["activation"]
        layers: list[nn.Module] = []
        cin = 1
        for i in range(self.max_stages):
            pool = self.first_pool and i == 0
            cands: list[tuple[str, nn.Module]] = []
            if i > 0:
                cands.append(("skip", nn.Identity()))
            for name in self.ops:
                b, k = self._op[name]
                cands.append((name, _stage(cin, self.channels, b, k, act, pool)))
            layers.append(MixedOp(f"stage{i}", cands))
            cin = self.channels
        size = 4 if self.first_pool else 8
        if self.fixed["head"] == "avg":
            layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
            feat = self.channels
        else:
            layers.append(nn.Flatten())
            feat = self.channels * size * size
        if self.fixed["hidden"]:
            layers += [nn.Linear(feat, self.fixed["hidden"]), _ACT[act](), nn.Dropout(self.fixed["dropout"])]
            feat = self.fixed["hidden"]
        layers.append(nn.Linear(feat, 10))
        return nn.Sequential(*layers)

    def derive(self, choices: Mapping[str, str]) -> Architecture:
        stages = []
        for i in range(self.max_stages):
            c = choices[f"stage{i}"]
            if c == "skip":
                continue
            if c not in self._op:
                raise ConfigError(f"stage{i}: unknown candidate {c!r}; candidates: {self.ops + ['skip']}")
            b, k = self._op[c]
            stages.append({"channels": self.channels, "kernel": k, "block": b, "pool": self.first_pool and i == 0})
        if not stages:
            raise ConfigError("every stage is skipped; the first stage has no skip candidate")
        return Architecture({"stages": stages, **self.fixed})

    def path_of(self, arch: Architecture) -> dict[str, str] | None:
        a = arch.to_dict()
        if any(a.get(k) != v for k, v in self.fixed.items()) or set(a) != {"stages", *self.fixed}:
            return None
        stages = a["stages"]
        if len(stages) > self.max_stages:
            return None
        path = {}
        for i in range(self.max_stages):
            if i >= len(stages):
                path[f"stage{i}"] = "skip"
                continue
            st = stages[i]
            if st["channels"] != self.channels or st["pool"] != (self.first_pool and i == 0):
                return None
            path[f"stage{i}"] = f"{st['block']}{st['kernel']}"
        return path


# -- elastic supernet over the whole space -------------------------------------------------------------


class _DigitsElasticNet(nn.Module):
    """Largest weights of every stage and head; forward runs the active architecture."""

    C, K, STAGES, HIDDEN = 32, 5, 3, 64

    def __init__(self) -> None:
        super().__init__()
        C, K = self.C, self.K
        self.plain = nn.ParameterList()
        self.dw = nn.ParameterList()
        self.pw = nn.ParameterList()
        self.bn_plain = nn.ModuleList()
        self.bn_dwsep = nn.ModuleList()
        for i in range(self.STAGES):
            cin = 1 if i == 0 else C
            self.plain.append(nn.Parameter(nn.init.kaiming_uniform_(torch.empty(C, cin, K, K), a=5 ** 0.5)))
            self.dw.append(nn.Parameter(nn.init.kaiming_uniform_(torch.empty(cin, 1, K, K), a=5 ** 0.5)))
            self.pw.append(nn.Parameter(nn.init.kaiming_uniform_(torch.empty(C, cin, 1, 1), a=5 ** 0.5)))
            self.bn_plain.append(nn.BatchNorm2d(C))
            self.bn_dwsep.append(nn.BatchNorm2d(C))
        # heads: feature size depends on the head type and the final spatial size (8, 4, 2, 1)
        self.sizes = (8, 4, 2, 1)
        self.hid = nn.ModuleDict({"avg": nn.Linear(C, self.HIDDEN)})
        self.out0 = nn.ModuleDict({"avg": nn.Linear(C, 10)})
        for s in self.sizes:
            self.hid[f"flat{s}"] = nn.Linear(C * s * s, self.HIDDEN)
            self.out0[f"flat{s}"] = nn.Linear(C * s * s, 10)
        self.out = nn.Linear(self.HIDDEN, 10)
        self.arch: dict[str, Any] | None = None

    @staticmethod
    def crop(w: torch.Tensor, k: int) -> torch.Tensor:
        o = (w.shape[-1] - k) // 2
        return w[..., o:o + k, o:o + k]

    @staticmethod
    def bn(m: nn.modules.batchnorm._BatchNorm, x: torch.Tensor, c: int) -> torch.Tensor:
        return sliced_batch_norm(m, x, c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.arch
        if a is None:
            raise RuntimeError("no active sub-network; call set_active first")
        acts: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {"relu": F.relu, "gelu": F.gelu}
        act = acts[a["activation"]]
        cin, size = 1, 8
        for i, st in enumerate(a["stages"]):
            k, c = st["kernel"], st["channels"]
            if st["block"] == "plain":
                x = F.conv2d(x, self.crop(self.plain[i][:c, :cin], k), padding=k // 2)
                x = self.bn(cast(nn.BatchNorm2d, self.bn_plain[i]), x, c)
            else:
                x = F.conv2d(x, self.crop(self.dw[i][:cin], k), padding=k // 2, groups=cin)
                x = F.conv2d(x, self.pw[i][:c, :cin])
                x = self.bn(cast(nn.BatchNorm2d, self.bn_dwsep[i]), x, c)
            x = act(x)
            if st["pool"] and size >= 2:
                x = F.max_pool2d(x, 2)
                size //= 2
            cin = c
        if a["head"] == "avg":
            x = x.mean(dim=(2, 3))
            key, cols = "avg", cin
        else:
            x = x.flatten(1)
            key, cols = f"flat{size}", cin * size * size
        h = a["hidden"]
        if h:
            lin = cast(nn.Linear, self.hid[key])
            x = act(F.linear(x, lin.weight[:h, :cols], lin.bias[:h]))
            x = F.dropout(x, a.get("dropout", 0.0), self.training)
            return F.linear(x, self.out.weight[:, :h], self.out.bias)
        lin = cast(nn.Linear, self.out0[key])
        return F.linear(x, lin.weight[:, :cols], lin.bias)


class DigitsElasticSupernet(Supernet):
    """Once-for-All-style supernet over the whole digits space (weight slicing, kernel centre-crop)."""

    space: DigitsCNNSpace
    module: _DigitsElasticNet
    def __init__(self, space: DigitsCNNSpace | None = None, *, seed: int = 0):
        self.space = space or DigitsCNNSpace()
        torch.manual_seed(seed)
        self.module = _DigitsElasticNet()

    def covers(self, arch: Architecture) -> bool:
        return self.space.contains(arch)

    def set_active(self, arch: Architecture) -> None:
        self.space.validate(arch)
        self.module.arch = arch.to_dict()

    def sample_active(self, rng: np.random.Generator) -> Architecture:
        arch = self.space.sample(rng)
        self.module.arch = arch.to_dict()
        return arch

    def extract(self, arch: Architecture) -> nn.Module:
        self.space.validate(arch)
        net = self.space.build(arch)
        m = self.module
        layers: list[Any] = list(net)  # the layers DigitsCNNSpace.build makes, read by position
        pos = 0
        cin, size = 1, 8
        with torch.no_grad():
            for i, st in enumerate(arch["stages"]):
                k, c = st["kernel"], st["channels"]
                if st["block"] == "plain":
                    layers[pos].weight.copy_(m.crop(m.plain[i][:c, :cin], k))
                    pos += 1
                    bn = cast(nn.BatchNorm2d, m.bn_plain[i])
                else:
                    layers[pos].weight.copy_(m.crop(m.dw[i][:cin], k))
                    layers[pos + 1].weight.copy_(m.pw[i][:c, :cin])
                    pos += 2
                    bn = cast(nn.BatchNorm2d, m.bn_dwsep[i])
                _copy_bn(layers[pos], bn, c)
                pos += 2  # BN, activation
                if st["pool"] and size >= 2:
                    pos += 1
                    size //= 2
                cin = c
            if arch["head"] == "avg":
                key, cols = "avg", cin
                pos += 2
            else:
                key, cols = f"flat{size}", cin * size * size
                pos += 1
            h = arch["hidden"]
            if h:
                hid = cast(nn.Linear, m.hid[key])
                layers[pos].weight.copy_(hid.weight[:h, :cols])
                layers[pos].bias.copy_(hid.bias[:h])
                layers[pos + 3].weight.copy_(m.out.weight[:, :h])
                layers[pos + 3].bias.copy_(m.out.bias)
            else:
                out0 = cast(nn.Linear, m.out0[key])
                layers[pos].weight.copy_(out0.weight[:, :cols])
                layers[pos].bias.copy_(out0.bias)
        net.train(m.training)
        return net


def _copy_bn(dst: nn.BatchNorm2d, src: nn.BatchNorm2d, c: int) -> None:
    # both track running statistics (nn.BatchNorm2d's default)
    assert dst.running_mean is not None and dst.running_var is not None and dst.num_batches_tracked is not None
    assert src.running_mean is not None and src.running_var is not None and src.num_batches_tracked is not None
    dst.weight.copy_(src.weight[:c])
    dst.bias.copy_(src.bias[:c])
    dst.running_mean.copy_(src.running_mean[:c])
    dst.running_var.copy_(src.running_var[:c])
    dst.num_batches_tracked.copy_(src.num_batches_tracked)
