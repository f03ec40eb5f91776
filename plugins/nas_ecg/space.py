"""Compound-scaled families of 1D CNN beat classifiers (EfficientNet-style).

Two spaces:

* ``ecg/efficient-cnn`` (:class:`EfficientECGSpace`, the documented way): the
  EfficientNet recipe. ``alpha``, ``beta``, ``gamma`` are fixed once for the
  space (:data:`COMPOUND_COEFFICIENTS`, chosen by the grid search at
  ``phi = 1`` under ``alpha * beta**2 * gamma ~= 2`` that
  :mod:`nas_ecg.compound` runs), and only ``phi`` scales a network. Rates are
  those the MAX30003 front end delivers (:data:`FRONT_END_RATES_HZ`): the
  scaled rate ``125 * gamma**phi`` is snapped to the nearest one.
* ``ecg/compound-cnn`` (:class:`CompoundECGSpace`): the free variant below, with
  ``alpha``, ``beta``, ``gamma`` searched per candidate and *any integer rate*
  ``round(180 * gamma**phi)`` (for front ends other than the MAX30003; a rate a
  target's front end cannot deliver is rejected before training).

The free variant:

A base network -- three stages at :data:`BASE_FS_HZ` -- is scaled by one
coefficient ``phi``, as in EfficientNet (Tan & Le 2019):

* depth: each stage's block count ``ceil(base_depth * alpha ** phi)``;
* width: each stage's channels ``round_to_4(base_channels * beta ** phi)``;
* resolution: the sampling rate ``fs = round(BASE_FS_HZ * gamma ** phi)`` Hz, so
  the beat window of 0.7 s holds ``round(0.25 fs) + round(0.45 fs)`` samples.

``alpha``, ``beta`` and ``gamma`` are searched from small grids rather than fixed
by a grid search at ``phi = 1``, so the search learns how this task prefers to
trade depth, width and rate. Per stage the search also picks the block
(``plain`` conv-BN-ReLU, depthwise-``separable``, or ``inverted`` residual
MobileNetV2-style with expansion 2 or 4), the kernel size, and the downsampling
(max or average pooling, or a stride-2 first convolution). The RR features
join the pooled convolutional features before the classifier, whose hidden
width is searched too.

Rates above 360 Hz (MIT-BIH's) or below the Nyquist limit of the declared band
are rejected before training by the task, with the reason.
"""

from __future__ import annotations

import math
from typing import Any

from nas_core.space import Architecture, Categorical, Integer, Repeat, SearchSpace

BASE_FS_HZ = 180.0
BASE_CHANNELS = (8, 16, 24)
BASE_DEPTH = (1, 1, 2)

#: MAX30003 ECG output rates (sps) that MIT-BIH's 360 Hz can feed without upsampling
#: (the datasheet's ECG rates are 512/256/128 at FMSTR = 32768 Hz, 500/250/125 at
#: 32000 Hz and 200 at 32000 x 0.64 kHz-derived clocks; 512 and 500 exceed 360 Hz)
FRONT_END_RATES_HZ = (125.0, 128.0, 200.0, 250.0, 256.0)
#: ``ecg/efficient-cnn``'s base network (phi = 0): 125 Hz, the lowest front-end rate
#: above the monitoring band's Nyquist limit (100 Hz), and two to three blocks per stage
EFFICIENT_BASE_FS_HZ = 125.0
EFFICIENT_BASE_DEPTH = (2, 2, 3)
#: alpha (depth), beta (width), gamma (rate) of ``ecg/efficient-cnn``: a balanced triple of the
#: compound grid (alpha * beta**2 * gamma = 2.13, within its 10 % of 2; the MACs of
#: :data:`nas_ecg.compound.DEFAULT_BASE` grow by 2.01 from phi = 0 to 1). The grid search of
#: :mod:`nas_ecg.compound` fixes them for a given base design; pass its result as
#: ``EfficientECGSpace(alpha=..., beta=..., gamma=...)``.
COMPOUND_COEFFICIENTS = {"alpha": 1.1, "beta": 1.1, "gamma": 1.6}
#: the phi values ``ecg/efficient-cnn`` searches
EFFICIENT_PHIS = (0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0, 6.0)


def snap_rate(fs: float, rates=FRONT_END_RATES_HZ) -> float:
    """The supported rate nearest to ``fs`` (the lower one on a tie)."""
    return float(min(rates, key=lambda r: (abs(r - fs), r)))
WINDOW_S = (0.25, 0.45)
IN_CHANNELS = 2
N_RR = 8
N_CLASSES = 5


def scaled(arch: Architecture | dict) -> dict[str, Any]:
    """The concrete network an architecture describes: rate, window length, per-stage depth and width."""
    a = arch.to_dict() if isinstance(arch, Architecture) else dict(arch)
    phi = a["phi"]
    front_end = a.get("rates") == "max30003"
    if front_end:  # ecg/efficient-cnn: snapped to the front end's rates, depth rounded to nearest
        fs = snap_rate(EFFICIENT_BASE_FS_HZ * a["gamma"] ** phi)
        depths = EFFICIENT_BASE_DEPTH
    else:
        fs = float(round(BASE_FS_HZ * a["gamma"] ** phi))
        depths = BASE_DEPTH
    length = round(WINDOW_S[0] * fs) + round(WINDOW_S[1] * fs)
    stages = []
    for i, st in enumerate(a["stages"]):
        base_c = BASE_CHANNELS[min(i, len(BASE_CHANNELS) - 1)]
        base_d = depths[min(i, len(depths) - 1)]
        d = base_d * a["alpha"] ** phi
        stages.append({**st,
                       "channels": max(4, int(4 * round(base_c * a["beta"] ** phi / 4))),
                       "depth": max(1, int(math.floor(d + 0.5)) if front_end else math.ceil(d - 1e-9))})
    return {"fs_hz": fs, "length": length, "stages": stages, "head_hidden": a["head_hidden"],
            "stem_channels": max(4, int(4 * round(8 * a["beta"] ** phi / 4)))}


def design_dimensions() -> list:
    """The base design both spaces search: per stage block, expansion, kernel and downsampling; the head."""
    return [
        Repeat("stages", [
            Categorical("block", ["plain", "separable", "inverted"]),
            Categorical("expansion", [2, 4], when={"block": ["inverted"]}),
            Categorical("kernel", [3, 5, 7, 9]),
            Categorical("downsample", ["max", "avg", "stride"]),
        ], min_count=2, max_count=3),
        Categorical("head_hidden", [0, 16, 32]),
    ]


class CompoundECGSpace(SearchSpace):
    """``ecg/compound-cnn``: 1D CNNs on beat windows plus RR features, any integer rate."""

    #: rates are not snapped to a front end's, so the task does not check them against one by default
    front_end_rates = False

    def mixed_support(self, **options):
        """Mixed-op support for DARTS and weight-sharing supernets (see :mod:`nas_ecg.supernet`)."""
        from nas_ecg.supernet import ECGMixedSupport

        return ECGMixedSupport(self, **options)

    def __init__(self) -> None:
        super().__init__("ecg-compound-cnn", [
            Integer("phi", -3, 3),
            Categorical("alpha", [1.0, 1.1, 1.2]),
            Categorical("beta", [1.0, 1.1, 1.2]),
            Categorical("gamma", [1.0, 1.1, 1.15, 1.25]),
            *design_dimensions(),
        ])

    def build(self, arch: Architecture):
        return ECGNet(scaled(arch))


class EfficientECGSpace(SearchSpace):
    """``ecg/efficient-cnn``: one compound coefficient ``phi`` scales a searched base design.

    ``alpha``, ``beta``, ``gamma`` are fixed for the space (default
    :data:`COMPOUND_COEFFICIENTS`) and stored in every architecture, so an
    architecture is self-describing; ``rates`` is ``"max30003"``: the rate is
    snapped to :data:`FRONT_END_RATES_HZ`.
    """

    def __init__(self, alpha: float | None = None, beta: float | None = None, gamma: float | None = None,
                 phis=EFFICIENT_PHIS) -> None:
        c = {**COMPOUND_COEFFICIENTS, **{k: v for k, v in (("alpha", alpha), ("beta", beta), ("gamma", gamma))
                                          if v is not None}}
        super().__init__("ecg-efficient-cnn", [
            Categorical("phi", [float(p) for p in phis]),
            Categorical("alpha", [float(c["alpha"])]),
            Categorical("beta", [float(c["beta"])]),
            Categorical("gamma", [float(c["gamma"])]),
            Categorical("rates", ["max30003"]),
            *design_dimensions(),
        ])
        self.coefficients = {k: float(c[k]) for k in ("alpha", "beta", "gamma")}

    def build(self, arch: Architecture):
        return ECGNet(scaled(arch))


def ECGNet(spec: dict[str, Any]):  # noqa: N802 - a factory, keeps torch out of module import
    import torch
    import torch.nn as nn

    def conv_bn(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, act: bool = True) -> list[nn.Module]:
        layers: list[nn.Module] = [nn.Conv1d(cin, cout, k, stride=stride, padding=k // 2, groups=groups, bias=False),
                                   nn.BatchNorm1d(cout)]
        if act:
            layers.append(nn.ReLU())
        return layers

    class Inverted(nn.Module):
        """MobileNetV2 inverted residual: 1x1 expand, depthwise k, 1x1 project (+ skip when shapes match)."""

        def __init__(self, cin: int, cout: int, k: int, stride: int, expansion: int):
            super().__init__()
            mid = cin * expansion
            self.body = nn.Sequential(*conv_bn(cin, mid, 1), *conv_bn(mid, mid, k, stride, groups=mid),
                                      *conv_bn(mid, cout, 1, act=False))
            self.skip = stride == 1 and cin == cout

        def forward(self, x):
            y = self.body(x)
            return x + y if self.skip else y

    def block(kind: str, cin: int, cout: int, k: int, stride: int, expansion: int) -> nn.Module:
        if kind == "plain":
            return nn.Sequential(*conv_bn(cin, cout, k, stride))
        if kind == "separable":
            return nn.Sequential(*conv_bn(cin, cin, k, stride, groups=cin), *conv_bn(cin, cout, 1))
        return Inverted(cin, cout, k, stride, expansion)

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            c = spec["stem_channels"]
            layers: list[nn.Module] = conv_bn(IN_CHANNELS, c, 5)
            for st in spec["stages"]:
                for d in range(st["depth"]):
                    stride = 2 if (d == 0 and st["downsample"] == "stride") else 1
                    layers.append(block(st["block"], c, st["channels"], st["kernel"], stride, st.get("expansion", 2)))
                    c = st["channels"]
                if st["downsample"] == "max":
                    layers.append(nn.MaxPool1d(2))
                elif st["downsample"] == "avg":
                    layers.append(nn.AvgPool1d(2))
            self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool1d(1), nn.Flatten())
            self.rr_norm = nn.BatchNorm1d(N_RR)
            h = spec["head_hidden"]
            if h:
                self.head = nn.Sequential(nn.Linear(c + N_RR, h), nn.ReLU(), nn.Linear(h, N_CLASSES))
            else:
                self.head = nn.Linear(c + N_RR, N_CLASSES)

        def forward(self, x, rr):
            return self.head(torch.cat([self.features(x), self.rr_norm(rr)], dim=1))

    return Net()
