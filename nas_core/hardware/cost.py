"""Analytic cost model: params, MACs, peak activation memory, flash, latency, energy.

:func:`measure_costs` runs one forward pass of a built model on a dummy input of
batch size 1 (in eval mode, under ``torch.no_grad``; every module's training flag
is restored afterwards) and observes it with module hooks plus a
:class:`torch.overrides.TorchFunctionMode`. It returns a :class:`CostReport`.

**Units of work.** A *unit* is a leaf module (no children) or any module that has
a MAC counter (built in or registered with :func:`register_mac_counter`). A unit
is opaque: one step for memory accounting and one call of its counter; modules
and tensor operations inside it are not looked at. Everything else is a
container whose own tensor operations (``x + y``, ``torch.cat``, ``F.relu``,
``x.flatten(1)`` ...) are recorded as steps too.

**MACs** (multiply-accumulates, per sample):

* ``ConvNd`` (1d/2d/3d, grouped and depthwise included):
  ``output elements * in_channels / groups * prod(kernel_size)``
* ``ConvTransposeNd``: ``input elements * out_channels / groups * prod(kernel_size)``
* ``Linear``: ``output elements * in_features`` (i.e. ``in * out`` per leading position)
* BatchNorm/InstanceNorm/GroupNorm/LayerNorm/RMSNorm, PReLU, Embedding, and every
  leaf without parameters (activations, pooling, dropout, flatten, ...): 0.
  Norm layers are assumed folded into the neighbouring convolution at export.
  Bias additions are not counted.

A module invoked twice counts twice. ``layers`` is the number of unit
invocations with a non-zero MAC count; it multiplies the target's
``layer_overhead_cycles``. With ``strict=True`` (the default) a module that
owns parameters directly but has no counter (``nn.LSTM``, a custom layer calling
``F.conv1d`` on its own weight, ...) raises :class:`~nas_core.errors.ConfigError`
instead of being silently counted as 0; register a counter for it, or pass
``strict=False``.

**Peak activation memory.** The forward pass is a sequence of steps: the model
input(s) appear at step 0, then each unit call and each container-level tensor
operation is one step that *uses* its input tensors and *produces* its output
tensors, and a last step uses the model output(s). Tensors are identified by
their storage, so views (``view``, ``flatten``, slicing) and in-place results
(``ReLU(inplace=True)``, ``x += y``) share one buffer; parameters and registered
buffers are not activations. A buffer is live from the first step that touches
it to the last; its size is ``elements * act_bytes`` (the whole storage). The
peak is the maximum over steps of the summed size of live buffers. Hence a plain
``nn.Sequential`` needs ``max(in + out)`` over its layers, while in a residual
block ``return x + body(x)`` the block input stays live through ``body`` until
the addition, where ``x``, ``body(x)`` and the sum are live together. This is a
model of an ideal arena planner with no fragmentation and no scratch buffers
(im2col etc. are not counted).

**Flash.** ``params * 4`` bytes for float32 weights and ``params * 1`` for int8
weights; int8 bias (int32), per-channel scale and zero-point overheads, code
size and BatchNorm running statistics (registered buffers, not parameters) are
ignored.

**Deployment estimates** (what a full-integer int8 TensorFlow Lite Micro build
needs; ``benchmarks/deploy.py`` measures both against ``nas export --format
tflite`` and the TFLM interpreter, ``benchmarks/results/deploy.md``). With
``steps`` the recorded steps (unit calls plus container-level tensor operations,
model input and output not counted) and ``channels`` the output channels (or
features) summed over the layers with MACs:

* ``arena_int8_bytes`` (the tensor arena) =
  ``ceil(int8 peak * (1 + TFLM_PLANNER_MARGIN))`` (planned activations: 16-byte
  alignment and the greedy planner's fragmentation) + the largest CMSIS-NN scratch
  buffer of one layer (:func:`cmsis_nn_scratch_bytes`; the reference kernels of the
  TFLM Python interpreter need none) + ``TFLM_ARENA_FIXED_BYTES +
  TFLM_ARENA_BYTES_PER_STEP * steps + TFLM_ARENA_BYTES_PER_CHANNEL * channels``
  (the interpreter's persistent data: an eval tensor per tensor, node and
  registration per operator, per-channel requantization multipliers and shifts);
* ``tflite_int8_bytes`` (the ``.tflite`` in flash) = ``params +
  TFLITE_FIXED_BYTES + TFLITE_BYTES_PER_STEP * steps + TFLITE_BYTES_PER_CHANNEL *
  channels`` (int32 biases, a float32 scale and an int64 zero point per channel of
  every weight and bias tensor, and per tensor and operator the flatbuffer tables
  and the tensor names litert-torch writes, about half of a small model's file).

The constants are upper bounds fitted on the 28 architectures of that benchmark's
Part A (``ecg/compound-cnn`` and ``digits/cnn`` with non-trivial BatchNorm, which
litert-torch keeps as separate operators after a Conv1d; TFLM on x86-64, whose 8-byte
pointers make the persistent part larger than on a 32-bit MCU) and checked on trained
ECG trials (Part B); a hardware constraint on them means the model fits with these
margins. They overestimate 2D networks (digits) by up to 2.5x. The raw
``peak_act_bytes`` and ``flash_int8_bytes`` underestimate the measured arena by up to
about 10x and the file by up to about 36x for models of a few thousand parameters.

**Latency and energy** (only with a target), see :func:`estimate_latency_energy`:
``cycles = cycles_per_mac * MACs + layer_overhead_cycles * layers``,
``latency = cycles / clock_hz``, ``energy = cycles * energy_per_cycle``.

Example::

    >>> import torch.nn as nn
    >>> from nas_core.hardware import measure_costs
    >>> net = nn.Sequential(nn.Conv1d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 98, 2))
    >>> r = measure_costs(net, (1, 100))
    >>> r.macs, r.params, r.peak_act_bytes   # 4*98*1*3 + 392*2, 16 + 786, 392 + 392
    (1960, 802, 784)
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Union

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from nas_core.errors import ConfigError
from nas_core.hardware.target import HardwareTarget

__all__ = [
    "TFLITE_BYTES_PER_CHANNEL",
    "TFLITE_BYTES_PER_STEP",
    "TFLITE_FIXED_BYTES",
    "TFLM_ARENA_BYTES_PER_CHANNEL",
    "TFLM_ARENA_BYTES_PER_STEP",
    "TFLM_ARENA_FIXED_BYTES",
    "TFLM_PLANNER_MARGIN",
    "CostReport",
    "MacCounter",
    "cmsis_nn_scratch_bytes",
    "estimate_latency_energy",
    "measure_costs",
    "measure_host_latency_ms",
    "register_mac_counter",
]

#: ``fn(module, inputs, output) -> MACs`` of one (batch-1) call of ``module``
MacCounter = Callable[[nn.Module, tuple[Any, ...], Any], int]

Shape = Sequence[int]
InputShape = Union[Shape, Sequence[Shape]]

#: share added to the ideal int8 activation peak for TFLM's planner (16-byte alignment of every tensor,
#: fragmentation of its greedy plan); measured head / ideal peak: <= 1.04 on Part A, up to 1.25 on trained ECG trials
TFLM_PLANNER_MARGIN = 0.3
#: TFLM persistent arena data (upper bound on ``benchmarks/deploy.py`` Part A: fit 323 B + 384 B per step
#: + 5.8 B per channel, x86-64): fixed part, per recorded step, per output channel of a layer with MACs
TFLM_ARENA_FIXED_BYTES = 512
TFLM_ARENA_BYTES_PER_STEP = 392
TFLM_ARENA_BYTES_PER_CHANNEL = 6
#: ``.tflite`` bytes beyond one per parameter (upper bound on the same models: fit 1264 B per step + 19.2 B
#: per channel): fixed part (model tables, signature, metadata), per recorded step, per output channel
TFLITE_FIXED_BYTES = 1024
TFLITE_BYTES_PER_STEP = 1280
TFLITE_BYTES_PER_CHANNEL = 20


def cmsis_nn_scratch_bytes(module: nn.Module, inputs: tuple[Any, ...]) -> int:
    """Scratch buffer CMSIS-NN's int8 kernel for ``module`` asks TFLM for on a Cortex-M with the DSP extension.

    ``arm_convolve_s8`` (and ``_1_x_n``): ``2 * in_channels * prod(kernel) * sizeof(int16)``; a 1x1 convolution
    with stride 1 and a fully connected layer: 0; ``arm_depthwise_conv_s8_opt``: ``in_channels * prod(kernel) *
    sizeof(int16)``; average pooling: ``channels * sizeof(int32)``. Other modules: 0.
    """
    m: Any = module
    if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        k = math.prod(m.kernel_size)
        if m.groups == m.in_channels and m.groups > 1:
            return int(2 * m.in_channels * k)
        if k == 1 and all(st == 1 for st in m.stride):
            return 0
        return int(4 * (m.in_channels // m.groups) * k)
    if isinstance(module, (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d)):
        x = _first_tensor(inputs)
        return int(4 * x.shape[1]) if x.dim() > 1 else 0
    return 0


# --------------------------------------------------------------------------------
# results


@dataclass(frozen=True)
class CostReport:
    """Costs of one model for one input shape (per sample, batch size 1)."""

    params: int
    macs: int
    layers: int
    peak_act_bytes: int
    flash_fp32_bytes: int
    flash_int8_bytes: int
    latency_ms: float | None = None
    energy_uj: float | None = None
    #: estimated TFLM tensor arena of the full-integer int8 model (see the module docstring)
    arena_int8_bytes: int | None = None
    #: estimated size of the full-integer int8 ``.tflite`` file
    tflite_int8_bytes: int | None = None

    def as_metrics(self) -> dict[str, float]:
        """Metric name -> value, named like the fields; ``None`` values left out."""
        names = (
            "params",
            "macs",
            "layers",
            "peak_act_bytes",
            "flash_fp32_bytes",
            "flash_int8_bytes",
            "latency_ms",
            "energy_uj",
            "arena_int8_bytes",
            "tflite_int8_bytes",
        )
        return {n: float(getattr(self, n)) for n in names if getattr(self, n) is not None}


def estimate_latency_energy(macs: int, layers: int, target: HardwareTarget) -> tuple[float, float | None]:
    """``(latency_ms, energy_uj)`` of ``macs`` MACs in ``layers`` layers on ``target``.

    ``energy_uj`` is ``None`` when the target has no energy model.
    """
    cycles = target.cycles_per_mac * macs + target.layer_overhead_cycles * layers
    latency_ms = cycles / target.clock_hz * 1e3
    energy_uj = cycles * target.energy_per_cycle() * 1e6 if target.has_energy_model else None
    return latency_ms, energy_uj


# --------------------------------------------------------------------------------
# MAC counters


def _first_tensor(obj: Any) -> torch.Tensor:
    for t in _iter_tensors(obj):
        return t
    raise ConfigError(f"expected a tensor, got {type(obj).__name__}")


def _conv_macs(module: nn.Module, inputs: tuple[Any, ...], output: Any) -> int:
    m: Any = module
    return int(_first_tensor(output).numel() * (m.in_channels // m.groups) * math.prod(m.kernel_size))


def _conv_transpose_macs(module: nn.Module, inputs: tuple[Any, ...], output: Any) -> int:
    m: Any = module
    return int(_first_tensor(inputs).numel() * (m.out_channels // m.groups) * math.prod(m.kernel_size))


def _linear_macs(module: nn.Module, inputs: tuple[Any, ...], output: Any) -> int:
    m: Any = module
    return int(_first_tensor(output).numel() * m.in_features)


def _zero_macs(module: nn.Module, inputs: tuple[Any, ...], output: Any) -> int:
    return 0


def _builtin_counters() -> Mapping[type[nn.Module], MacCounter]:
    table: dict[type[nn.Module], MacCounter] = {
        nn.Conv1d: _conv_macs,
        nn.Conv2d: _conv_macs,
        nn.Conv3d: _conv_macs,
        nn.ConvTranspose1d: _conv_transpose_macs,
        nn.ConvTranspose2d: _conv_transpose_macs,
        nn.ConvTranspose3d: _conv_transpose_macs,
        nn.Linear: _linear_macs,
        # parametrised layers with no multiply-accumulates worth counting
        nn.modules.batchnorm._NormBase: _zero_macs,  # BatchNorm*, InstanceNorm*
        nn.GroupNorm: _zero_macs,
        nn.LayerNorm: _zero_macs,
        nn.PReLU: _zero_macs,
        nn.Embedding: _zero_macs,
    }
    rms = getattr(nn, "RMSNorm", None)
    if rms is not None:
        table[rms] = _zero_macs
    return MappingProxyType(table)


_BUILTIN_COUNTERS = _builtin_counters()
# Registry filled by plugins at import time, like timm's model registry. It is the
# one piece of module state here; measure_costs(mac_counters=...) overrides it
# per call without touching it.
_REGISTERED_COUNTERS: dict[type[nn.Module], MacCounter] = {}


def register_mac_counter(module_type: type[nn.Module], fn: MacCounter, *, replace: bool = False) -> None:
    """Count MACs of ``module_type`` (and its subclasses) with ``fn(module, inputs, output)``.

    ``fn`` sees one batch-1 call and returns its MAC count. A module with a counter
    is treated as one opaque unit: the modules inside it are not counted again.
    Registering a type that already has a counter (built in or registered)
    needs ``replace=True``; registering the same function twice is a no-op.

    Call it once, when the plugin module that defines the layer is imported::

        class Scale(nn.Module):          # y = x * s, one multiply per output element
            def __init__(self, n):
                super().__init__()
                self.s = nn.Parameter(torch.ones(n, 1))
            def forward(self, x):
                return x * self.s

        register_mac_counter(Scale, lambda module, inputs, output: output.numel())

    For a one-off measurement pass ``measure_costs(..., mac_counters={Scale: fn})``
    instead; it leaves the registry alone.
    """
    if not isinstance(module_type, type) or not issubclass(module_type, nn.Module):
        raise ConfigError(f"register_mac_counter: module_type must be an nn.Module subclass, got {module_type!r}")
    if not callable(fn):
        raise ConfigError(f"register_mac_counter: counter for {module_type.__qualname__} is not callable: {fn!r}")
    existing = _REGISTERED_COUNTERS.get(module_type) or _BUILTIN_COUNTERS.get(module_type)
    if existing is not None and existing is not fn and not replace:
        raise ConfigError(
            f"register_mac_counter: {module_type.__module__}.{module_type.__qualname__} already has a MAC counter; "
            "pass replace=True to override it"
        )
    _REGISTERED_COUNTERS[module_type] = fn


def _counter_for(
    module_type: type[nn.Module], overrides: Mapping[type[nn.Module], MacCounter] | None
) -> MacCounter | None:
    for cls in module_type.__mro__:
        if overrides is not None and cls in overrides:
            return overrides[cls]
        if cls in _REGISTERED_COUNTERS:
            return _REGISTERED_COUNTERS[cls]
        if cls in _BUILTIN_COUNTERS:
            return _BUILTIN_COUNTERS[cls]
    return None


# --------------------------------------------------------------------------------
# tracing


def _iter_tensors(obj: Any) -> Iterator[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, (list, tuple)):
        for o in obj:
            yield from _iter_tensors(o)
    elif isinstance(obj, Mapping):
        for o in obj.values():
            yield from _iter_tensors(o)


class _Tracer(TorchFunctionMode):
    """Records steps (used buffers, produced buffers) and counts MACs."""

    def __init__(
        self,
        model: nn.Module,
        overrides: Mapping[type[nn.Module], MacCounter] | None,
        strict: bool,
    ) -> None:
        super().__init__()
        self.overrides = overrides
        self.strict = strict
        self.names = {m: (n or "<root>") for n, m in model.named_modules()}
        self.ignored: set[int] = set()
        for t in list(model.parameters()) + list(model.buffers()):
            if t.numel() > 0:
                self.ignored.add(t.untyped_storage().data_ptr())
        self.opaque_depth = 0
        self.busy = False
        self.steps: list[tuple[list[int], list[int]]] = []
        self.elements: dict[int, int] = {}
        self.keep: list[torch.Tensor] = []  # keeps storages alive so addresses are not reused
        self.macs = 0
        self.layers = 0
        self.channels = 0  # output channels (features) summed over the layers with MACs
        self.scratch = 0  # the largest CMSIS-NN scratch buffer of one unit

    # -- buffers ----------------------------------------------------------------------
    def _keys(self, obj: Any) -> list[int]:
        keys: list[int] = []
        for t in _iter_tensors(obj):
            if t.layout != torch.strided or t.device.type == "meta":
                continue
            storage = t.untyped_storage()
            ptr = storage.data_ptr()
            if storage.nbytes() == 0 or ptr in self.ignored:
                continue
            if ptr not in self.elements:
                self.elements[ptr] = storage.nbytes() // t.element_size()
                self.keep.append(t)
            if ptr not in keys:
                keys.append(ptr)
        return keys

    def record(self, uses: Any, produces: Any) -> None:
        self.busy = True
        try:
            self.steps.append((self._keys(uses), self._keys(produces)))
        finally:
            self.busy = False

    def peak_elements(self) -> int:
        first: dict[int, int] = {}
        last: dict[int, int] = {}
        for i, (uses, produces) in enumerate(self.steps):
            for k in uses + produces:
                first.setdefault(k, i)
                last[k] = i
        delta = [0] * (len(self.steps) + 1)
        for k, i in first.items():
            delta[i] += self.elements[k]
            delta[last[k] + 1] -= self.elements[k]
        peak = live = 0
        for d in delta:
            live += d
            peak = max(peak, live)
        return peak

    # -- module hooks -------------------------------------------------------------------
    def is_unit(self, module: nn.Module) -> bool:
        return next(module.children(), None) is None or _counter_for(type(module), self.overrides) is not None

    def pre_hook(self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if self.opaque_depth > 0 or self.is_unit(module):
            self.opaque_depth += 1
        elif self.strict and next(module.parameters(recurse=False), None) is not None:
            self._no_counter(module)

    def post_hook(self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any) -> None:
        if self.opaque_depth == 0:  # a container at the top level of tracing
            return
        self.opaque_depth -= 1
        if self.opaque_depth > 0:  # inside another unit
            return
        self.record((args, kwargs), output)
        self.scratch = max(self.scratch, cmsis_nn_scratch_bytes(module, args))
        counter = _counter_for(type(module), self.overrides)
        if counter is None:
            if self.strict and next(module.parameters(recurse=False), None) is not None:
                self._no_counter(module)
            return
        self.busy = True
        try:
            value = counter(module, args, output)
        finally:
            self.busy = False
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or value != int(value):
            raise ConfigError(
                f"MAC counter for {type(module).__qualname__} (module '{self.names.get(module, '?')}') "
                f"returned {value!r}; it must return a non-negative integer"
            )
        if value > 0:
            self.macs += int(value)
            self.layers += 1
            out = _first_tensor(output)
            self.channels += int(out.shape[1]) if out.dim() > 1 else int(out.numel())

    def _no_counter(self, module: nn.Module) -> None:
        cls = type(module)
        raise ConfigError(
            f"no MAC counter for {cls.__module__}.{cls.__qualname__} (module '{self.names.get(module, '?')}'), "
            "which owns parameters; register one with nas_core.hardware.register_mac_counter "
            "or pass strict=False to count it as 0 MACs"
        )

    # -- container-level tensor operations --------------------------------------------------
    def __torch_function__(
        self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None
    ) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if self.opaque_depth == 0 and not self.busy:
            # metadata queries (x.shape, x.size(0), x.dim()) return no tensor and are not uses;
            # __setitem__ writes into its first argument and returns None
            if getattr(func, "__name__", "") == "__setitem__" or next(_iter_tensors(out), None) is not None:
                self.record((args, kwargs), out)
        return out


# --------------------------------------------------------------------------------
# public entry points


def _normalize_shapes(input_shape: InputShape) -> tuple[tuple[int, ...], ...]:
    if isinstance(input_shape, (str, bytes)) or not isinstance(input_shape, Sequence) or len(input_shape) == 0:
        raise ConfigError(f"input_shape must be a non-empty shape like (1, 250) or a tuple of shapes, got {input_shape!r}")
    items: list[Any] = list(input_shape)
    if all(isinstance(d, int) and not isinstance(d, bool) for d in items):
        shapes = [tuple(items)]
    elif all(isinstance(s, Sequence) and not isinstance(s, (str, bytes)) for s in items):
        shapes = [tuple(s) for s in items]
    else:
        raise ConfigError(f"input_shape must be a shape like (1, 250) or a tuple of shapes, got {input_shape!r}")
    for s in shapes:
        if len(s) == 0 or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in s):
            raise ConfigError(
                f"input_shape {s!r} must be a non-empty tuple of positive ints (without the batch dimension)"
            )
    return tuple(shapes)


def _dummy_inputs(model: nn.Module, shapes: tuple[tuple[int, ...], ...]) -> list[torch.Tensor]:
    device, dtype = torch.device("cpu"), torch.float32
    for p in model.parameters():
        device = p.device
        if p.is_floating_point():
            dtype = p.dtype
        break
    return [torch.zeros((1, *s), device=device, dtype=dtype) for s in shapes]


class _EvalMode:
    """Eval mode inside the block; every module's own training flag restored after."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.flags: list[tuple[nn.Module, bool]] = []

    def __enter__(self) -> None:
        self.flags = [(m, m.training) for m in self.model.modules()]
        self.model.eval()

    def __exit__(self, *exc: object) -> None:
        # pre-order, through train() so that modules overriding it (e.g. e2cnn's
        # filter caches) see the change; a parent's call resets its children, which
        # come later in the list and are fixed in turn
        for m, flag in self.flags:
            if m.training != flag:
                m.train(flag)


def measure_costs(
    model: nn.Module,
    input_shape: InputShape,
    target: HardwareTarget | None = None,
    *,
    act_bytes: int = 1,
    strict: bool = True,
    mac_counters: Mapping[type[nn.Module], MacCounter] | None = None,
) -> CostReport:
    """Params, MACs, peak activation memory and flash of ``model``; latency and energy on ``target``.

    Args:
        model: the built network; it is called once as ``model(*inputs)``.
        input_shape: one shape without the batch dimension, e.g. ``(1, 250)``, or a
            tuple of shapes for a model with several inputs, e.g. ``((1, 250), (8,))``.
        target: hardware target for the analytic latency and energy (omitted when ``None``).
        act_bytes: bytes per activation element (1 for int8 deployment, 4 for float32).
        strict: raise when a module that owns parameters has no MAC counter.
        mac_counters: per-call counters that take precedence over registered ones.

    See the module docstring for the exact cost model.
    """
    if isinstance(act_bytes, bool) or not isinstance(act_bytes, int) or act_bytes <= 0:
        raise ConfigError(f"act_bytes must be a positive integer (1 for int8, 4 for float32), got {act_bytes!r}")
    if target is not None and not isinstance(target, HardwareTarget):
        raise ConfigError(f"target must be a HardwareTarget or None, got {type(target).__name__}")
    shapes = _normalize_shapes(input_shape)
    with torch.no_grad(), _EvalMode(model):
        # created in eval mode: buffers a module registers in eval (caches) are not activations
        tracer = _Tracer(model, mac_counters, strict)
        handles = []
        try:
            for m in model.modules():
                handles.append(m.register_forward_pre_hook(tracer.pre_hook, prepend=True, with_kwargs=True))
                handles.append(m.register_forward_hook(tracer.post_hook, with_kwargs=True))
            inputs = _dummy_inputs(model, shapes)
            tracer.record((), inputs)
            with tracer:
                output = model(*inputs)
            tracer.record(output, ())
        finally:
            for h in handles:
                h.remove()

    params = sum(p.numel() for p in model.parameters())
    peak = tracer.peak_elements()
    steps = max(0, len(tracer.steps) - 2)  # without the model input and output records
    arena = (math.ceil(peak * (1.0 + TFLM_PLANNER_MARGIN)) + tracer.scratch + TFLM_ARENA_FIXED_BYTES
             + TFLM_ARENA_BYTES_PER_STEP * steps + TFLM_ARENA_BYTES_PER_CHANNEL * tracer.channels)
    tflite = params + TFLITE_FIXED_BYTES + TFLITE_BYTES_PER_STEP * steps + TFLITE_BYTES_PER_CHANNEL * tracer.channels
    latency_ms = energy_uj = None
    if target is not None:
        latency_ms, energy_uj = estimate_latency_energy(tracer.macs, tracer.layers, target)
    return CostReport(
        params=params,
        macs=tracer.macs,
        layers=tracer.layers,
        peak_act_bytes=peak * act_bytes,
        flash_fp32_bytes=params * 4,
        flash_int8_bytes=params,
        latency_ms=latency_ms,
        energy_uj=energy_uj,
        arena_int8_bytes=arena,
        tflite_int8_bytes=tflite,
    )


def measure_host_latency_ms(model: nn.Module, input_shape: InputShape, *, repeats: int = 20, warmup: int = 3) -> float:
    """Median wall time in ms of one batch-1 forward pass on this machine's CPU/device.

    For reports only: it depends on the host and its load, so never assert on it.
    """
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ConfigError(f"repeats must be an integer >= 1, got {repeats!r}")
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise ConfigError(f"warmup must be an integer >= 0, got {warmup!r}")
    shapes = _normalize_shapes(input_shape)
    times: list[float] = []
    with torch.no_grad(), _EvalMode(model):
        inputs = _dummy_inputs(model, shapes)
        for _ in range(warmup):
            model(*inputs)
        for _ in range(repeats):
            start = time.perf_counter()
            model(*inputs)
            times.append((time.perf_counter() - start) * 1e3)
    return float(statistics.median(times))
