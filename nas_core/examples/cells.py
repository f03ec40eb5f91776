"""A cell-based search space (NASNet / DARTS style) on the 8x8 digits: ``digits/cells``.

Macro spaces (``digits/cnn``, ``ecg/compound-cnn``) choose a network's overall
structure. A cell-based space instead chooses two small computation graphs, a
*normal* cell and a *reduction* cell, and stacks copies of them:

    stem -> N x normal -> reduction -> N x normal -> global pool -> linear

Each cell has two inputs (the outputs of the two previous cells, ``0`` and ``1``)
and ``NODES`` intermediate nodes. Node ``j`` adds two operations, each applied to
an input chosen among the cell inputs and the nodes before it (``in_a``, ``in_b``
in ``0 .. j + 1``; the choices grow with ``j``, which is why they are separate
categorical dimensions). The cell's output is the concatenation of its nodes, as
in DARTS. In the reduction cell, operations applied to the cell inputs use stride
2. The space is declared with the ordinary dimensions, so every strategy,
predictor encoding and the store handle it like any other space.

Example::

    >>> import numpy as np
    >>> space = DigitsCellSpace()
    >>> arch = space.sample(np.random.default_rng(0))
    >>> sorted(arch.to_dict())[:3]
    ['cells_per_stage', 'channels', 'normal_n0_in_a']
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from nas_core.space import Architecture, Categorical, Dimension, SearchSpace

#: candidate operations of a cell edge
OPS = ("sep3", "sep5", "dil3", "max3", "avg3", "skip")
#: intermediate nodes per cell
NODES = 3


def _cell_dimensions(cell: str) -> list[Dimension]:
    dims: list[Dimension] = []
    for j in range(NODES):
        for side in ("a", "b"):
            dims.append(Categorical(f"{cell}_n{j}_in_{side}", list(range(j + 2))))
            dims.append(Categorical(f"{cell}_n{j}_op_{side}", list(OPS)))
    return dims


#: ``[((op_a, in_a), (op_b, in_b)) per node]``
_Genotype = Sequence[tuple[tuple[str, int], tuple[str, int]]]


def cell_genotype(arch: Architecture, cell: str) -> list[tuple[tuple[str, int], tuple[str, int]]]:
    """``[((op_a, in_a), (op_b, in_b)) per node]`` of the ``normal`` or ``reduce`` cell."""
    d = arch.to_dict()
    return [((d[f"{cell}_n{j}_op_a"], d[f"{cell}_n{j}_in_a"]), (d[f"{cell}_n{j}_op_b"], d[f"{cell}_n{j}_in_b"]))
            for j in range(NODES)]


class DigitsCellSpace(SearchSpace):
    """``digits/cells``: a normal and a reduction cell of 3 nodes, stacked 1 or 2 times per stage."""

    def __init__(self) -> None:
        super().__init__("digits-cells", [
            Categorical("channels", [8, 16]),
            Categorical("cells_per_stage", [1, 2]),
            *_cell_dimensions("normal"),
            *_cell_dimensions("reduce"),
        ])

    def build(self, arch: Architecture) -> CellNetwork:
        d = arch.to_dict()
        return CellNetwork(int(d["channels"]), int(d["cells_per_stage"]), cell_genotype(arch, "normal"),
                           cell_genotype(arch, "reduce"))


# -- the network -------------------------------------------------------------------------------------------


class ReLUConvBN(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, k: int = 1, stride: int = 1):
        super().__init__(nn.ReLU(), nn.Conv2d(c_in, c_out, k, stride, k // 2, bias=False), nn.BatchNorm2d(c_out))


class SepConv(nn.Sequential):
    def __init__(self, c: int, k: int, stride: int, dilation: int = 1):
        pad = dilation * (k // 2)
        super().__init__(nn.ReLU(), nn.Conv2d(c, c, k, stride, pad, dilation=dilation, groups=c, bias=False),
                         nn.Conv2d(c, c, 1, bias=False), nn.BatchNorm2d(c))


def make_op(name: str, c: int, stride: int) -> nn.Module:
    if name == "sep3":
        return SepConv(c, 3, stride)
    if name == "sep5":
        return SepConv(c, 5, stride)
    if name == "dil3":
        return SepConv(c, 3, stride, dilation=2)
    if name == "max3":
        return nn.MaxPool2d(3, stride, 1)
    if name == "avg3":
        return nn.AvgPool2d(3, stride, 1, count_include_pad=False)
    if name == "skip":
        return nn.Identity() if stride == 1 else ReLUConvBN(c, c, 1, stride)
    raise ValueError(f"unknown cell operation {name!r}")


class Cell(nn.Module):
    def __init__(self, genotype: _Genotype, c_prev_prev: int, c_prev: int, c: int, reduction: bool,
                 reduce_prev: bool):
        super().__init__()
        # the input from two cells back is larger when the previous cell reduced: bring it to this size
        self.pre0 = ReLUConvBN(c_prev_prev, c, 1, 2 if reduce_prev else 1)
        self.pre1 = ReLUConvBN(c_prev, c, 1, 1)
        self.inputs = [(a[1], b[1]) for a, b in genotype]
        self.ops = nn.ModuleList()
        for (op_a, in_a), (op_b, in_b) in genotype:
            self.ops.append(make_op(op_a, c, 2 if reduction and in_a < 2 else 1))
            self.ops.append(make_op(op_b, c, 2 if reduction and in_b < 2 else 1))
        self.out_channels = NODES * c

    def forward(self, s0: torch.Tensor, s1: torch.Tensor) -> torch.Tensor:
        states = [self.pre0(s0), self.pre1(s1)]
        for j, (in_a, in_b) in enumerate(self.inputs):
            states.append(self.ops[2 * j](states[in_a]) + self.ops[2 * j + 1](states[in_b]))
        return torch.cat(states[2:], dim=1)


class CellNetwork(nn.Module):
    def __init__(self, channels: int, per_stage: int, normal: _Genotype, reduce: _Genotype, n_classes: int = 10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels))
        plan = [False] * per_stage + [True] + [False] * per_stage
        c_pp, c_p, reduce_prev = channels, channels, False
        self.cells = nn.ModuleList()
        for reduction in plan:
            cell = Cell(reduce if reduction else normal, c_pp, c_p, channels, reduction, reduce_prev)
            self.cells.append(cell)
            c_pp, c_p, reduce_prev = c_p, cell.out_channels, reduction
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_p, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1)
        logits: torch.Tensor = self.classifier(torch.flatten(self.pool(s1), 1))
        return logits
