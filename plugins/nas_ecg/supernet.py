"""One-shot search for the ECG compound space: DARTS support and a Once-for-All elastic supernet.

**Mixed-op support** (:class:`ECGMixedSupport`, registered for
:class:`~nas_ecg.space.CompoundECGSpace` on import): the compound coefficients
(``phi``, ``alpha``, ``beta``, ``gamma``), the number of stages, each stage's
downsampling and the head come from a template; every stage position is one
decision whose candidates are (block, expansion, kernel) -- ``plain``,
``separable``, ``inverted2``, ``inverted4`` times kernels 3, 5, 7, 9 -- shared
by all blocks of the stage, as the space ties them. Candidates are the very
modules :func:`~nas_ecg.space.ECGNet` builds, so a sub-network extracted from
the mixed network has the same layout and state-dict keys as ``space.build``.

**Elastic supernet** (:class:`ECGElasticSupernet`, Once-for-All, Cai et al.
ICLR 2020). One network holds, per stage and depth position, the largest
weights of each block type (plain, separable, inverted with expansion 4):

* *elastic kernel*: 9-tap kernels; smaller ones are the centre of the next
  larger one times a learned kernel-transformation matrix (9->7->5->3,
  initialised to identity), as in OFA;
* *elastic width*: the first ``c`` channels (and the first ``cin * e``
  expansion channels) of every weight and BatchNorm;
* *elastic depth*: the first ``depth`` blocks of each stage (2 or 3 stages);
* *elastic resolution*: the network is rate-agnostic (global average pooling);
  it is trained on a few sampling rates (``rates``) and a sub-network is scored
  on data at its own rate.

Training is **progressive shrinking** (:func:`train_progressive`): the largest
kernel, depth and width first, then elastic kernel, then depth, then width,
each phase sampling sub-networks from the space with the not-yet-elastic
dimensions held at their maximum; optional distillation from the largest
network. Block type, downsampling and head are sampled in every phase.
Sub-networks are scored with inherited weights after re-estimating their
BatchNorm statistics on training beats (:func:`evaluate_inherited`).

**Specialisation** (:func:`specialise`): for a hardware target, an
evolutionary search over the trained supernet's sub-networks that meet the
ECG task's constraints for that target (Nyquist, per-beat energy, real-time
latency, SRAM, flash, weight memory, layers), scored by inherited macro-F1 or
by an accuracy predictor trained on inherited scores (then the best few are
re-scored with inherited weights); it returns the standalone network
(``space.build(arch)`` with the inherited weights and recalibrated statistics),
optionally fine-tuned for a few epochs. The supernet is not trained again.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from nas_core.errors import ConfigError
from nas_core.estimators.lightning_trainer import ClassificationData
from nas_core.oneshot._data import Split, class_weight, recalibrate_bn, to_split
from nas_core.oneshot.mixed import MixedOp, MixedOpSupport
from nas_core.oneshot.supernet import Supernet, evaluate_subnet, evolve, sliced_batch_norm
from nas_core.space import Architecture
from nas_ecg.space import IN_CHANNELS, N_CLASSES, N_RR, CompoundECGSpace, ECGNet, scaled

__all__ = [
    "ECGElasticSupernet",
    "ECGMixedSupport",
    "ECGRateData",
    "ProgressiveShrinking",
    "Specialised",
    "collect_inherited_scores",
    "evaluate_inherited",
    "feasible_rates",
    "specialise",
    "train_progressive",
]

F1_CLASSES = (0, 1, 2, 3)
DEFAULT_TEMPLATE = {"phi": 0, "alpha": 1.0, "beta": 1.0, "gamma": 1.0, "head_hidden": 16,
                    "stages": [{"block": "plain", "kernel": 5, "downsample": "max"},
                               {"block": "plain", "kernel": 5, "downsample": "max"},
                               {"block": "plain", "kernel": 5, "downsample": "avg"}]}


def _op_name(st: Mapping[str, Any]) -> str:
    block = st["block"] + (str(st["expansion"]) if st["block"] == "inverted" else "")
    return f"{block}-k{st['kernel']}"


def _op_values(name: str) -> dict[str, Any]:
    block, k = name.rsplit("-k", 1)
    if block.startswith("inverted"):
        return {"block": "inverted", "expansion": int(block[len("inverted"):]), "kernel": int(k)}
    return {"block": block, "kernel": int(k)}


# ---------------------------------------------------------------------------------------------
# mixed-op support (DARTS, single-path one-shot)


class ECGMixedSupport(MixedOpSupport):
    """Per stage position, one decision over (block, expansion, kernel); the rest from a template.

    Args:
        space: the compound space (default a fresh :class:`CompoundECGSpace`).
        template: values of ``phi``, ``alpha``, ``beta``, ``gamma``, ``head_hidden`` and
            per stage ``downsample`` (the stage count is the template's); block and
            kernel in it are ignored.
        blocks: among ``plain``, ``separable``, ``inverted2``, ``inverted4``.
        kernels: among the space's kernels.
    """

    def __init__(self, space: CompoundECGSpace | None = None, *, template: Mapping[str, Any] | Architecture | None = None,
                 blocks: Sequence[str] = ("plain", "separable", "inverted2", "inverted4"),
                 kernels: Sequence[int] = (3, 5, 7, 9)):
        self.space = space or CompoundECGSpace()
        t = template.to_dict() if isinstance(template, Architecture) else copy.deepcopy(dict(template or DEFAULT_TEMPLATE))
        self.template = t
        self.ops = [f"{b}-k{k}" for b in blocks for k in kernels]
        for name in self.ops:
            self.space.validate(self._arch({f"stage{i}": name for i in range(len(t["stages"]))}))
        self.n_stages = len(t["stages"])

    def _arch(self, choices: Mapping[str, str]) -> Architecture:
        a = copy.deepcopy(self.template)
        stages = []
        for i, st in enumerate(a["stages"]):
            stages.append({"downsample": st["downsample"], **_op_values(choices[f"stage{i}"])})
        a["stages"] = stages
        return Architecture(a)

    def derive(self, choices: Mapping[str, str]) -> Architecture:
        for k, v in choices.items():
            if v not in self.ops:
                raise ConfigError(f"{k}: unknown candidate {v!r}; candidates: {self.ops}")
        return self.space.validate(self._arch(choices))

    def input_shape(self) -> tuple:
        return ((IN_CHANNELS, scaled(self._arch({f"stage{i}": self.ops[0] for i in range(self.n_stages)}))["length"]),
                (N_RR,))

    def path_of(self, arch: Architecture) -> dict[str, str] | None:
        a = arch.to_dict()
        t = self.template
        if any(a.get(k) != t[k] for k in ("phi", "alpha", "beta", "gamma", "head_hidden")):
            return None
        if len(a["stages"]) != len(t["stages"]):
            return None
        path = {}
        for i, (st, ts) in enumerate(zip(a["stages"], t["stages"])):
            if st["downsample"] != ts["downsample"] or _op_name(st) not in self.ops:
                return None
            path[f"stage{i}"] = _op_name(st)
        return path

    def _block_positions(self, spec: Mapping[str, Any]) -> list[tuple[int, int]]:
        """(stage, index in ``features``) of every block of the ECGNet for ``spec``."""
        out, idx = [], 3  # stem conv, BN, ReLU
        for s, st in enumerate(spec["stages"]):
            for _ in range(st["depth"]):
                out.append((s, idx))
                idx += 1
            if st["downsample"] in ("max", "avg"):
                idx += 1
        return out

    def build_mixed(self) -> nn.Module:
        nets = {}
        for name in self.ops:
            nets[name] = ECGNet(scaled(self._arch({f"stage{i}": name for i in range(self.n_stages)})))
        base = nets[self.ops[0]]
        spec = scaled(self._arch({f"stage{i}": self.ops[0] for i in range(self.n_stages)}))
        for s, idx in self._block_positions(spec):
            base.features[idx] = MixedOp(f"stage{s}", [(n, nets[n].features[idx]) for n in self.ops])
        return base


# ---------------------------------------------------------------------------------------------
# data per sampling rate


class ECGRateData:
    """DS1 search data per sampling rate, loaded once per rate.

    Args:
        loader: ``fs -> ClassificationData`` (default :func:`nas_ecg.data.search_data`
            with ``data_dir``/``cache_dir``).
        train_fraction: stratified share of the training beats kept (seed 0), to
            bound memory and time; the validation records are kept whole.
        npz_dir: where to keep the prepared arrays of each rate (``.npz``), so a
            later process skips the beat preprocessing.
    """

    def __init__(self, *, data_dir: Any = None, cache_dir: Any = None, npz_dir: str | Path | None = None,
                 train_fraction: float = 1.0, loader: Callable[[float], ClassificationData] | None = None):
        self.data_dir, self.cache_dir = data_dir, cache_dir
        self.npz_dir = Path(npz_dir) if npz_dir else None
        self.train_fraction = float(train_fraction)
        self.loader = loader
        self._data: dict[float, ClassificationData] = {}
        self._splits: dict[float, tuple[Split, Split]] = {}

    def _load(self, fs: float) -> ClassificationData:
        path = self.npz_dir / f"ecg_{fs:g}hz_{self.train_fraction:g}.npz" if self.npz_dir else None
        if path is not None and path.exists():
            z = np.load(path)
            return ClassificationData((z["x_train"], z["rr_train"]), z["y_train"], (z["x_val"], z["rr_val"]),
                                      z["y_val"], n_classes=int(z["n_classes"]))
        if self.loader is not None:
            d = self.loader(fs)
        else:
            from nas_ecg.data import search_data

            d = search_data(fs, data_dir=self.data_dir, cache_dir=self.cache_dir)
        if self.train_fraction < 1.0:
            from nas_core.oneshot._data import stratified_subset

            idx = stratified_subset(np.asarray(d.y_train), self.train_fraction, np.random.default_rng(0))
            xt = tuple(np.ascontiguousarray(np.asarray(x)[idx]) for x in d.x_train)
            d = ClassificationData(xt, np.asarray(d.y_train)[idx], d.x_val, d.y_val, d.n_classes)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp.npz")
            np.savez(tmp, x_train=d.x_train[0], rr_train=d.x_train[1], y_train=d.y_train, x_val=d.x_val[0],
                     rr_val=d.x_val[1], y_val=d.y_val, n_classes=d.n_classes)
            tmp.replace(path)
        return d

    def get(self, fs: float) -> ClassificationData:
        fs = float(fs)
        if fs not in self._data:
            self._data[fs] = self._load(fs)
        return self._data[fs]

    def splits(self, fs: float) -> tuple[Split, Split]:
        fs = float(fs)
        if fs not in self._splits:
            d = self.get(fs)
            self._splits[fs] = (to_split(d.x_train, d.y_train), to_split(d.x_val, d.y_val))
        return self._splits[fs]

    def for_arch(self, arch: Architecture) -> ClassificationData:
        return self.get(scaled(arch)["fs_hz"])

    def prefetch(self, rates: Sequence[float]) -> None:
        for fs in rates:
            self.splits(fs)


def feasible_rates(space: CompoundECGSpace | None = None, min_fs: float = 100.0, max_fs: float = 360.0) -> list[float]:
    """Every sampling rate the compound space can produce within ``[min_fs, max_fs]``."""
    space = space or CompoundECGSpace()
    dims = {d.name: d for d in space.dimensions}
    out = set()
    for phi in range(dims["phi"].low, dims["phi"].high + 1, dims["phi"].step):
        for g in dims["gamma"].choices:
            fs = scaled({"phi": phi, "gamma": g, "alpha": 1.0, "beta": 1.0, "stages": [], "head_hidden": 0})["fs_hz"]
            if min_fs <= fs <= max_fs:
                out.add(fs)
    return sorted(out)


# ---------------------------------------------------------------------------------------------
# elastic network


def _kaiming(*shape: int) -> nn.Parameter:
    return nn.Parameter(nn.init.kaiming_uniform_(torch.empty(*shape), a=math.sqrt(5)))


def _crop(w: torch.Tensor, k: int) -> torch.Tensor:
    o = (w.shape[-1] - k) // 2
    return w[..., o:o + k]


class _ElasticBlock(nn.Module):
    """Largest weights of the three block types at one (stage, depth) position."""

    def __init__(self, cin: int, cout: int, kernels: Sequence[int], emax: int):
        super().__init__()
        self.kernels = tuple(sorted(kernels, reverse=True))
        K = self.kernels[0]
        self.p_w, self.p_bn = _kaiming(cout, cin, K), nn.BatchNorm1d(cout)
        self.s_dw, self.s_bn1 = _kaiming(cin, 1, K), nn.BatchNorm1d(cin)
        self.s_pw, self.s_bn2 = _kaiming(cout, cin, 1), nn.BatchNorm1d(cout)
        mid = cin * emax
        self.i_ex, self.i_bn1 = _kaiming(mid, cin, 1), nn.BatchNorm1d(mid)
        self.i_dw, self.i_bn2 = _kaiming(mid, 1, K), nn.BatchNorm1d(mid)
        self.i_pr, self.i_bn3 = _kaiming(cout, mid, 1), nn.BatchNorm1d(cout)
        # OFA kernel transformation matrices, one chain per block type
        self.transform = nn.ParameterDict({f"{kind}_{k}": nn.Parameter(torch.eye(k))
                                           for kind in ("p", "s", "i") for k in self.kernels[1:]})

    def kernel(self, w: torch.Tensor, kind: str, k: int) -> torch.Tensor:
        if k not in self.kernels:
            raise ConfigError(f"kernel {k} is not one of the supernet's {self.kernels}")
        for kk in self.kernels[1:]:
            if w.shape[-1] <= k:
                break
            w = _crop(w, kk) @ self.transform[f"{kind}_{kk}"]
        return w

    def weights(self, cin: int, cout: int, kind: str, k: int, e: int) -> dict[str, torch.Tensor]:
        """The concrete weights of one sub-network block (for the forward pass and for extraction)."""
        if kind == "plain":
            return {"w": self.kernel(self.p_w[:cout, :cin], "p", k)}
        if kind == "separable":
            return {"dw": self.kernel(self.s_dw[:cin], "s", k), "pw": self.s_pw[:cout, :cin]}
        mid = cin * e
        return {"ex": self.i_ex[:mid, :cin], "dw": self.kernel(self.i_dw[:mid], "i", k), "pr": self.i_pr[:cout, :mid]}

    def forward(self, x: torch.Tensor, cin: int, cout: int, kind: str, k: int, stride: int, e: int) -> torch.Tensor:
        w = self.weights(cin, cout, kind, k, e)
        if kind == "plain":
            return F.relu(sliced_batch_norm(self.p_bn, F.conv1d(x, w["w"], stride=stride, padding=k // 2), cout))
        if kind == "separable":
            x = F.relu(sliced_batch_norm(self.s_bn1, F.conv1d(x, w["dw"], stride=stride, padding=k // 2, groups=cin), cin))
            return F.relu(sliced_batch_norm(self.s_bn2, F.conv1d(x, w["pw"]), cout))
        mid = cin * e
        y = F.relu(sliced_batch_norm(self.i_bn1, F.conv1d(x, w["ex"]), mid))
        y = F.relu(sliced_batch_norm(self.i_bn2, F.conv1d(y, w["dw"], stride=stride, padding=k // 2, groups=mid), mid))
        y = sliced_batch_norm(self.i_bn3, F.conv1d(y, w["pr"]), cout)
        return x + y if stride == 1 and cin == cout else y


class ECGElasticNet(nn.Module):
    """The elastic network; ``forward(x, rr)`` runs the active spec (see :func:`nas_ecg.space.scaled`)."""

    def __init__(self, stem_max: int, channels_max: Sequence[int], depth_max: Sequence[int], stage_counts: Sequence[int],
                 kernels: Sequence[int], emax: int, hidden_max: int):
        super().__init__()
        self.stem_max, self.channels_max, self.depth_max = stem_max, tuple(channels_max), tuple(depth_max)
        self.stem_w, self.stem_bn = _kaiming(stem_max, IN_CHANNELS, 5), nn.BatchNorm1d(stem_max)
        self.blocks = nn.ModuleList()
        for s, (cmax, dmax) in enumerate(zip(channels_max, depth_max)):
            prev = stem_max if s == 0 else channels_max[s - 1]
            self.blocks.append(nn.ModuleList([_ElasticBlock(prev if d == 0 else cmax, cmax, kernels, emax)
                                              for d in range(dmax)]))
        self.rr_norm = nn.BatchNorm1d(N_RR)
        self.hidden_max = hidden_max
        self.heads = nn.ModuleDict()
        for n in stage_counts:
            fm = channels_max[n - 1]
            self.heads[str(n)] = nn.ModuleDict({"h1": nn.Linear(fm + N_RR, hidden_max), "h2": nn.Linear(hidden_max, N_CLASSES),
                                                "lin": nn.Linear(fm + N_RR, N_CLASSES)})
        self.spec: dict[str, Any] | None = None

    def head_weights(self, n_stages: int, c: int, h: int) -> dict[str, torch.Tensor]:
        head = self.heads[str(n_stages)]
        fm = self.channels_max[n_stages - 1]

        def cols(w: torch.Tensor) -> torch.Tensor:  # the features' first c columns, then the RR columns
            return torch.cat([w[:, :c], w[:, fm:fm + N_RR]], dim=1)

        if h:
            return {"w1": cols(head["h1"].weight[:h]), "b1": head["h1"].bias[:h], "w2": head["h2"].weight[:, :h],
                    "b2": head["h2"].bias}
        return {"w": cols(head["lin"].weight), "b": head["lin"].bias}

    def forward(self, x: torch.Tensor, rr: torch.Tensor) -> torch.Tensor:
        spec = self.spec
        if spec is None:
            raise RuntimeError("no active sub-network; call set_active or set_spec first")
        c = spec["stem_channels"]
        x = F.relu(sliced_batch_norm(self.stem_bn, F.conv1d(x, self.stem_w[:c], padding=2), c))
        for s, st in enumerate(spec["stages"]):
            for d in range(st["depth"]):
                stride = 2 if d == 0 and st["downsample"] == "stride" else 1
                x = self.blocks[s][d](x, c, st["channels"], st["block"], st["kernel"], stride, st.get("expansion", 2))
                c = st["channels"]
            if st["downsample"] == "max":
                x = F.max_pool1d(x, 2)
            elif st["downsample"] == "avg":
                x = F.avg_pool1d(x, 2)
        z = torch.cat([F.adaptive_avg_pool1d(x, 1).flatten(1), self.rr_norm(rr)], dim=1)
        hw = self.head_weights(len(spec["stages"]), c, spec["head_hidden"])
        if spec["head_hidden"]:
            return F.linear(F.relu(F.linear(z, hw["w1"], hw["b1"])), hw["w2"], hw["b2"])
        return F.linear(z, hw["w"], hw["b"])


def _space_maxima(space: CompoundECGSpace) -> dict[str, Any]:
    dims = {d.name: d for d in space.dimensions}
    stages = dims["stages"]
    block = {d.name: d for d in stages.block}
    n = stages.max_count
    stem, chans, depth = 0, [0] * n, [0] * n
    for phi in range(dims["phi"].low, dims["phi"].high + 1, dims["phi"].step):
        for a in dims["alpha"].choices:
            for b in dims["beta"].choices:
                sp = scaled({"phi": phi, "alpha": a, "beta": b, "gamma": 1.0, "head_hidden": 0,
                             "stages": [{"block": "plain", "kernel": 3, "downsample": "max"}] * n})
                stem = max(stem, sp["stem_channels"])
                for i, st in enumerate(sp["stages"]):
                    chans[i], depth[i] = max(chans[i], st["channels"]), max(depth[i], st["depth"])
    return {"stem": stem, "channels": chans, "depth": depth,
            "stage_counts": list(range(stages.min_count, stages.max_count + 1)),
            "kernels": sorted(block["kernel"].choices), "emax": max(block["expansion"].choices),
            "hidden": max(dims["head_hidden"].choices)}


class ECGElasticSupernet(Supernet):
    """Once-for-All supernet over the whole compound space (see the module docstring)."""

    def __init__(self, space: CompoundECGSpace | None = None, *, seed: int = 0):
        self.space = space or CompoundECGSpace()
        self.maxima = _space_maxima(self.space)
        m = self.maxima
        torch.manual_seed(seed)
        self.module = ECGElasticNet(m["stem"], m["channels"], m["depth"], m["stage_counts"], m["kernels"], m["emax"],
                                    m["hidden"])

    # -- activation -------------------------------------------------------------------------------
    def set_spec(self, spec: Mapping[str, Any]) -> None:
        self.module.spec = dict(spec)

    def set_active(self, arch: Architecture) -> None:
        self.space.validate(arch)
        self.set_spec(scaled(arch))

    def sample_active(self, rng: np.random.Generator) -> Architecture:
        arch = self.space.sample(rng)
        self.set_spec(scaled(arch))
        return arch

    def covers(self, arch: Architecture) -> bool:
        return self.space.contains(arch)

    def largest_spec(self, like: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The largest network (max stages, depth, width, kernel, expansion, hidden); blocks from ``like``."""
        m = self.maxima
        base = list((like or {}).get("stages", []))
        stages = []
        for i in range(len(m["channels"])):
            st = dict(base[i]) if i < len(base) else {"block": "inverted", "downsample": "max"}
            st.update(channels=m["channels"][i], depth=m["depth"][i], kernel=m["kernels"][-1])
            if st["block"] == "inverted":
                st["expansion"] = m["emax"]
            stages.append(st)
        return {"fs_hz": (like or {}).get("fs_hz", 180.0), "stem_channels": m["stem"], "stages": stages,
                "head_hidden": m["hidden"]}

    def phase_spec(self, phase: str, rng: np.random.Generator) -> tuple[Architecture, dict[str, Any]]:
        """A sub-network for a progressive-shrinking phase: ``full``, ``kernel``, ``depth`` or ``width``."""
        arch = self.space.sample(rng)
        spec = scaled(arch)
        if phase == "width":
            return arch, spec
        m = self.maxima
        if phase in ("full", "kernel"):
            big = self.largest_spec(spec)
            if phase == "kernel":
                for i, st in enumerate(big["stages"]):
                    st["kernel"] = spec["stages"][i]["kernel"] if i < len(spec["stages"]) else st["kernel"]
            big["head_hidden"] = spec["head_hidden"]
            return arch, big
        if phase == "depth":
            spec["stem_channels"] = m["stem"]
            for i, st in enumerate(spec["stages"]):
                st["channels"] = m["channels"][i]
                if st["block"] == "inverted":
                    st["expansion"] = m["emax"]
            return arch, spec
        raise ConfigError(f"unknown progressive-shrinking phase {phase!r}; use full, kernel, depth or width")

    # -- extraction ---------------------------------------------------------------------------------
    def extract(self, arch: Architecture) -> nn.Module:
        """``space.build(arch)`` carrying the supernet's weights and BN statistics for this sub-network."""
        self.space.validate(arch)
        spec = scaled(arch)
        net = self.space.build(arch)
        m = self.module
        feats = list(net.features)
        with torch.no_grad():
            c = spec["stem_channels"]
            feats[0].weight.copy_(m.stem_w[:c])
            _copy_bn(feats[1], m.stem_bn, c)
            pos = 3
            for s, st in enumerate(spec["stages"]):
                for d in range(st["depth"]):
                    blk, cout = m.blocks[s][d], st["channels"]
                    e = st.get("expansion", 2)
                    w = blk.weights(c, cout, st["block"], st["kernel"], e)
                    mod = feats[pos]
                    if st["block"] == "plain":
                        mod[0].weight.copy_(w["w"])
                        _copy_bn(mod[1], blk.p_bn, cout)
                    elif st["block"] == "separable":
                        mod[0].weight.copy_(w["dw"])
                        _copy_bn(mod[1], blk.s_bn1, c)
                        mod[3].weight.copy_(w["pw"])
                        _copy_bn(mod[4], blk.s_bn2, cout)
                    else:
                        body = mod.body
                        body[0].weight.copy_(w["ex"])
                        _copy_bn(body[1], blk.i_bn1, c * e)
                        body[3].weight.copy_(w["dw"])
                        _copy_bn(body[4], blk.i_bn2, c * e)
                        body[6].weight.copy_(w["pr"])
                        _copy_bn(body[7], blk.i_bn3, cout)
                    pos += 1
                    c = cout
                if st["downsample"] in ("max", "avg"):
                    pos += 1
            _copy_bn(net.rr_norm, m.rr_norm, N_RR)
            hw = m.head_weights(len(spec["stages"]), c, spec["head_hidden"])
            if spec["head_hidden"]:
                net.head[0].weight.copy_(hw["w1"])
                net.head[0].bias.copy_(hw["b1"])
                net.head[2].weight.copy_(hw["w2"])
                net.head[2].bias.copy_(hw["b2"])
            else:
                net.head.weight.copy_(hw["w"])
                net.head.bias.copy_(hw["b"])
        net.train(m.training)
        return net

    def extract_calibrated(self, arch: Architecture, calib: Split, *, n: int = 2000, seed: int = 0) -> nn.Module:
        """:meth:`extract` after re-estimating the sub-network's BN statistics on ``calib`` (supernet untouched)."""
        saved = {k: v.clone() for k, v in self.module.state_dict().items() if "running_" in k or "num_batches" in k}
        try:
            self.set_active(arch)
            recalibrate_bn(self.module, calib, n=n, seed=seed)
            return self.extract(arch)
        finally:
            self.module.load_state_dict(saved, strict=False)


def _copy_bn(dst: nn.modules.batchnorm._BatchNorm, src: nn.modules.batchnorm._BatchNorm, c: int) -> None:
    dst.weight.copy_(src.weight[:c])
    dst.bias.copy_(src.bias[:c])
    dst.running_mean.copy_(src.running_mean[:c])
    dst.running_var.copy_(src.running_var[:c])
    dst.num_batches_tracked.copy_(src.num_batches_tracked)


# ---------------------------------------------------------------------------------------------
# progressive shrinking


@dataclass(frozen=True)
class ProgressiveShrinking:
    """Progressive-shrinking schedule: ``(phase, share of steps)`` in order, and the optimiser.

    Attributes:
        phases: ``full`` (largest kernel, depth, width), ``kernel``, ``depth``, ``width``.
        steps: total optimisation steps (one sampled sub-network and one batch each).
        rates: sampling rates trained on; a sub-network trains on the rate nearest its own.
        kd_weight: distillation from the largest network after the ``full`` phase (0 = off).
    """

    phases: tuple[tuple[str, float], ...] = (("full", 0.25), ("kernel", 0.25), ("depth", 0.25), ("width", 0.25))
    steps: int = 2000
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 0.0
    rates: tuple[float, ...] = (118.0, 180.0, 240.0, 352.0)
    kd_weight: float = 0.0
    class_weight_cap: float | None = 50.0
    grad_clip: float = 5.0
    max_time_s: float | None = None
    threads: int | None = None


def train_progressive(supernet: ECGElasticSupernet, data: ECGRateData, schedule: ProgressiveShrinking | None = None, *,
                      seed: int = 0, progress: Callable[[Mapping[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """Train the elastic supernet by progressive shrinking; returns per-phase figures."""
    sch = schedule or ProgressiveShrinking()
    if sch.threads:
        torch.set_num_threads(int(sch.threads))
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    rates = [float(r) for r in sch.rates]
    splits = {r: data.splits(r)[0] for r in rates}
    weights = {r: class_weight(splits[r].y.numpy(), N_CLASSES, "balanced", sch.class_weight_cap) for r in rates}
    iters: dict[float, Any] = {}

    def batch(r: float):
        while True:
            it = iters.get(r)
            if it is None:
                it = iters[r] = splits[r].batches(sch.batch_size, rng)
            try:
                return next(it)
            except StopIteration:
                iters[r] = None

    module = supernet.module
    module.train()
    t0 = time.monotonic()
    history: list[dict[str, Any]] = []
    total = sum(s for _, s in sch.phases)
    done = 0
    for phase, share in sch.phases:
        n_steps = int(round(sch.steps * share / total))
        opt = torch.optim.Adam(module.parameters(), lr=sch.lr, weight_decay=sch.weight_decay)
        losses = []
        for _ in range(n_steps):
            arch, spec = supernet.phase_spec(phase, rng)
            r = min(rates, key=lambda q: abs(q - spec["fs_hz"]))
            xs, y = batch(r)
            soft = None
            if sch.kd_weight and phase != "full":
                supernet.set_spec(supernet.largest_spec(spec))
                with torch.no_grad():
                    soft = torch.softmax(module(*xs), dim=1)
            supernet.set_spec(spec)
            logits = module(*xs)
            loss = F.cross_entropy(logits, y, weight=weights[r])
            if soft is not None:
                loss = loss + sch.kd_weight * F.kl_div(F.log_softmax(logits, 1), soft, reduction="batchmean")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(module.parameters(), sch.grad_clip)
            opt.step()
            losses.append(float(loss.detach()))
            done += 1
            if sch.max_time_s is not None and time.monotonic() - t0 > sch.max_time_s:
                break
        entry = {"phase": phase, "steps": len(losses), "loss_first": float(np.mean(losses[:20])) if losses else None,
                 "loss_last": float(np.mean(losses[-20:])) if losses else None, "elapsed_s": time.monotonic() - t0}
        history.append(entry)
        if progress:
            progress(dict(entry))
        if sch.max_time_s is not None and time.monotonic() - t0 > sch.max_time_s:
            break
    return history


# ---------------------------------------------------------------------------------------------
# inherited scores, specialisation


def evaluate_inherited(supernet: ECGElasticSupernet, arch: Architecture, data: ECGRateData, *,
                       calib_samples: int = 2000, seed: int = 0) -> dict[str, float]:
    """Validation scores of ``arch`` with inherited weights, at its own sampling rate (BN recalibrated)."""
    calib, val = data.splits(scaled(arch)["fs_hz"])
    return evaluate_subnet(supernet, arch, calib, val, N_CLASSES, f1_classes=F1_CLASSES, calib_samples=calib_samples,
                           seed=seed)


def collect_inherited_scores(supernet: ECGElasticSupernet, data: ECGRateData, n: int, *, seed: int = 0,
                             feasible: Callable[[Architecture], bool] = lambda a: True,
                             calib_samples: int = 2000) -> list[tuple[Architecture, float]]:
    """``n`` distinct random feasible sub-networks with their inherited macro-F1 (predictor training data)."""
    rng = np.random.default_rng(seed)
    out: dict[Architecture, float] = {}
    tries = 0
    while len(out) < n and tries < 50 * n:
        tries += 1
        a = supernet.space.sample(rng)
        if a in out or not feasible(a):
            continue
        out[a] = evaluate_inherited(supernet, a, data, calib_samples=calib_samples, seed=seed)["macro_f1"]
    return list(out.items())


@dataclass(frozen=True)
class Specialised:
    """The network specialised for one target, and what it cost."""

    target: str
    arch: Architecture
    model: nn.Module
    inherited: Mapping[str, float]
    static: Mapping[str, float]
    violations: tuple[str, ...]
    specialise_s: float
    search_s: float
    finetune_s: float = 0.0
    fine_tuned: Mapping[str, float] | None = None
    evaluations: int = 0
    history: tuple = ()
    details: Mapping[str, Any] = field(default_factory=dict)


def specialise(supernet: ECGElasticSupernet, target: Any, data: ECGRateData, *, task: Any = None,
               predictor: Any = None, population: int = 16, generations: int = 8, parents: int = 6,
               verify_top: int = 3, max_time_s: float | None = 200.0, calib_samples: int = 2000,
               fine_tune_epochs: int = 0, fine_tune_fraction: float = 0.25, fine_tune_lr: float = 1e-3,
               extra_constraints: Sequence[Any] = (), seed: int = 0) -> Specialised:
    """Evolutionary search over the trained supernet for ``target``; returns a network that meets its constraints.

    Args:
        target: a :class:`~nas_core.hardware.HardwareTarget` (e.g. ``load_ecg_target("nrf52840")``).
        task: the :class:`~nas_ecg.task.ECGTask` whose constraints and static metrics apply
            (default: monitoring band, 7 days on the target's battery).
        predictor: optional accuracy predictor with ``predict(archs) -> (mean, std)`` trained
            on inherited scores; the search then ranks by it and re-scores the best
            ``verify_top`` with inherited weights.
        max_time_s: wall-time limit of the evolutionary search (checked per generation).
        fine_tune_epochs: optional short fine-tuning of the extracted network (0 = none).
    """
    from nas_ecg.task import ECGTask

    t0 = time.monotonic()
    space = supernet.space
    task = task or ECGTask(space)
    constraints = list(task.default_constraints(target)) + list(extra_constraints)
    static_cache: dict[Architecture, tuple[dict[str, float], list[str]]] = {}

    def check(a: Architecture) -> tuple[dict[str, float], list[str]]:
        if a not in static_cache:
            static = task.static_metrics(a, space.build(a), target)
            reasons = [r for c in constraints if (r := c.violation(static))] + list(task.rejections(a, static, target=target))
            static_cache[a] = (static, reasons)
        return static_cache[a]

    inherited: dict[Architecture, dict[str, float]] = {}

    def inherit(a: Architecture) -> dict[str, float]:
        if a not in inherited:
            inherited[a] = evaluate_inherited(supernet, a, data, calib_samples=calib_samples, seed=seed)
        return inherited[a]

    if predictor is not None:
        def score(a: Architecture) -> float:
            return float(predictor.predict([a])[0][0])
    else:
        def score(a: Architecture) -> float:
            return inherit(a)["macro_f1"]

    best, best_score, history = evolve(space.sample, space.mutate, space.crossover, score,
                                       feasible=lambda a: not check(a)[1], population=population,
                                       generations=generations, parents=parents, seed=seed, max_time_s=max_time_s)
    if predictor is not None:
        ranked = sorted(static_cache, key=lambda a: -score(a) if not static_cache[a][1] else math.inf)
        finalists = [a for a in ranked if not static_cache[a][1]][:max(1, verify_top)]
        best = max(finalists, key=lambda a: inherit(a)["macro_f1"])
    search_s = time.monotonic() - t0
    fs = scaled(best)["fs_hz"]
    model = supernet.extract_calibrated(best, data.splits(fs)[0], n=calib_samples, seed=seed)
    static, reasons = check(best)
    tuned, ft_s = None, 0.0
    if fine_tune_epochs:
        from nas_core.estimators.base import EvalContext
        from nas_core.estimators.lightning_trainer import TrainingEstimator

        t1 = time.monotonic()
        est = TrainingEstimator(lambda: data.get(fs), epochs=fine_tune_epochs, data_fraction=fine_tune_fraction,
                                lr=fine_tune_lr, batch_size=256, class_weights="balanced", class_weight_cap=50.0,
                                macro_f1_classes=F1_CLASSES, threads=None)
        tuned = est.evaluate(EvalContext(best, model, seed, {}))
        ft_s = time.monotonic() - t1
    return Specialised(target=getattr(target, "name", str(target)), arch=best, model=model, inherited=inherit(best),
                       static=static, violations=tuple(reasons), specialise_s=time.monotonic() - t0, search_s=search_s,
                       finetune_s=ft_s, fine_tuned=tuned, evaluations=len(inherited), history=tuple(history),
                       details={"best_score": best_score, "scored_by": "predictor" if predictor is not None else "inherited",
                                "candidates_checked": len(static_cache),
                                "feasible_checked": sum(1 for v in static_cache.values() if not v[1])})
