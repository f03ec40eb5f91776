"""Full-integer int8 TFLite export for microcontrollers, verified in TensorFlow Lite Micro.

``nas export DIR --trial N --format tflite`` (needs the ``mcu`` extra) goes:

1. PyTorch -> float TFLite with ``litert-torch`` (batch 1, the PyTorch input layout is kept:
   the ECG model's two inputs stay ``(1, 2, L)`` and ``(1, 8)``);
2. float -> full-integer int8 with ``ai-edge-quantizer`` (static recipe: int8 weights per
   channel, int8 activations per tensor, int8 inputs and outputs), calibrated on the task's
   calibration inputs (``Task.calibration_data`` or the estimator's training split);
3. checks: every operator's tensors are integer (a float fallback is an error naming the
   layer), every operator has a TensorFlow Lite Micro kernel, and the model runs in the
   ``tflite-micro`` Python interpreter on the task's validation inputs: class agreement with
   PyTorch must reach ``min_agreement`` (default :data:`AGREEMENT_THRESHOLD`);
4. a firmware bundle next to the ``.tflite``: ``model_data.h``/``model_data.cc`` (the model as
   an ``alignas(16)`` C array), ``model_ops.h`` (the op resolver the model needs), the arena
   size the TFLM interpreter recorded, and a README with a minimal TFLM invocation.

Nothing is written when a check fails. A layer the converter cannot take, an operator TFLM lacks
or a tensor left in float is a :class:`ConfigError` that names the layer (the PyTorch module
path litert-torch records in the tensor names, e.g. ``GELU_2`` = child ``2`` of a Sequential).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from nas_core.errors import ConfigError

#: least class agreement (TFLM int8 vs PyTorch fp32 argmax on validation inputs) an export must reach
AGREEMENT_THRESHOLD = 0.99
#: validation inputs run through the TFLM interpreter (one invoke each)
N_VALIDATION_MAX = 2000
#: calibration inputs used for the activation ranges
N_CALIBRATION_MAX = 256

#: TFLite builtin operator -> the ``tflite::MicroMutableOpResolver`` method that registers it
RESOLVER_METHODS = {
    "ABS": "AddAbs", "ADD": "AddAdd", "ARG_MAX": "AddArgMax", "AVERAGE_POOL_2D": "AddAveragePool2D",
    "BATCH_MATMUL": "AddBatchMatMul", "CONCATENATION": "AddConcatenation", "CONV_2D": "AddConv2D",
    "COS": "AddCos", "DEPTHWISE_CONV_2D": "AddDepthwiseConv2D", "DEQUANTIZE": "AddDequantize",
    "ELU": "AddElu", "EXP": "AddExp", "EXPAND_DIMS": "AddExpandDims", "FULLY_CONNECTED": "AddFullyConnected",
    "HARD_SWISH": "AddHardSwish", "LEAKY_RELU": "AddLeakyRelu", "LOG_SOFTMAX": "AddLogSoftmax",
    "LOGISTIC": "AddLogistic", "MAXIMUM": "AddMaximum", "MAX_POOL_2D": "AddMaxPool2D", "MEAN": "AddMean",
    "MINIMUM": "AddMinimum", "MUL": "AddMul", "PAD": "AddPad", "PADV2": "AddPadV2", "PRELU": "AddPrelu",
    "QUANTIZE": "AddQuantize", "REDUCE_MAX": "AddReduceMax", "RELU": "AddRelu", "RELU6": "AddRelu6",
    "RESHAPE": "AddReshape", "RSQRT": "AddRsqrt", "SIN": "AddSin", "SLICE": "AddSlice", "SOFTMAX": "AddSoftmax",
    "SPLIT": "AddSplit", "SPLIT_V": "AddSplitV", "SQUEEZE": "AddSqueeze", "STRIDED_SLICE": "AddStridedSlice",
    "SUB": "AddSub", "SUM": "AddSum", "TANH": "AddTanh", "TRANSPOSE": "AddTranspose",
}
#: tensor types that count as a float fallback inside a full-integer model
_FLOAT_TYPES = ("FLOAT32", "FLOAT16", "FLOAT64", "BFLOAT16")


def require_mcu() -> None:
    """Raise a ConfigError naming the extra when the converter or the TFLM interpreter is missing."""
    missing = []
    for module, package in (("litert_torch", "litert-torch"), ("ai_edge_quantizer", "ai-edge-quantizer"),
                            ("tflite_micro", "tflite-micro")):
        try:
            with _captured_output():  # their imports log from C++ (absl) and Python (torchao) to stderr
                __import__(module)
        except ImportError:
            missing.append(package)
    if missing:
        raise ConfigError(f"--format tflite needs {', '.join(missing)}: pip install 'nas-core[mcu]' "
                          "(with -c constraints.txt)")


@contextlib.contextmanager
def _captured_output() -> Iterator[list[str]]:
    """Capture what the converter and TFLM print: file descriptors 1 and 2 (C++ logging), ``sys.stdout``/
    ``sys.stderr`` (progress bars) and warnings; the captured text is appended to the yielded list at the end."""
    import io
    import sys
    import warnings

    out: list[str] = []
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    text = io.StringIO()
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), 1)
        os.dup2(tmp.fileno(), 2)
        try:
            with warnings.catch_warnings(), contextlib.redirect_stdout(text), contextlib.redirect_stderr(text):
                warnings.simplefilter("ignore")
                yield out
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            tmp.seek(0)
            out.append(tmp.read().decode("utf-8", "replace") + text.getvalue())


# -- model structure -----------------------------------------------------------------------------

def _schema() -> Any:
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as fb

    return fb


def _read(model: bytes) -> Any:
    fb = _schema()
    return fb.ModelT.InitFromObj(fb.Model.GetRootAsModel(bytearray(model), 0))


def _enum_names(enum: Any) -> dict[int, str]:
    return {v: k for k, v in vars(enum).items() if not k.startswith("_") and isinstance(v, int)}


def layer_of(tensor_name: bytes | str | None) -> str:
    """The PyTorch layer litert-torch names in a tensor name, e.g. ``GELU_2 (torch.nn.modules.activation.GELU)``."""
    name = tensor_name.decode("utf-8", "replace") if isinstance(tensor_name, bytes) else (tensor_name or "")
    last = name.split(";")[0].split("/")[-1]
    found = re.fullmatch(r"(?:[\w]+\.)*([A-Za-z_]\w*?)_(\w+)", last)
    if "/" not in name or not found:
        return f"tensor {name!r}" if name else "an unnamed tensor"
    cls = last.rsplit("_", 1)[0]
    return f"{found.group(1)}_{found.group(2)} ({cls})"


def operators(model: bytes) -> list[dict[str, Any]]:
    """Each operator of the main subgraph: ``{"op": builtin name, "layer": ..., "types": [...]}``."""
    fb = _schema()
    m = _read(model)
    ops, types = _enum_names(fb.BuiltinOperator), _enum_names(fb.TensorType)
    sg = m.subgraphs[0]
    out = []
    for op in sg.operators or []:
        code = m.operatorCodes[op.opcodeIndex]
        name = ops.get(max(code.builtinCode, code.deprecatedBuiltinCode), f"CUSTOM:{code.customCode!r}")
        tensors = [sg.tensors[i] for i in [*(op.inputs if op.inputs is not None else []),
                                           *(op.outputs if op.outputs is not None else [])] if i >= 0]
        outs = [sg.tensors[i] for i in (op.outputs if op.outputs is not None else [])]
        out.append({"op": name, "layer": layer_of(outs[0].name if outs else None),
                    "types": sorted({types.get(t.type, str(t.type)) for t in tensors})})
    return out


def check_full_integer(model: bytes) -> None:
    """Raise if any operator still computes in float (a silent float fallback)."""
    for op in operators(model):
        floats = [t for t in op["types"] if t in _FLOAT_TYPES]
        if floats:
            raise ConfigError(f"layer {op['layer']} stays {floats[0].lower()} after int8 quantization (TFLite "
                              f"operator {op['op']}); a full-integer export refuses a float fallback")


def resolver_ops(model: bytes) -> list[str]:
    """The distinct builtin operators of the model, in first-use order."""
    seen: list[str] = []
    for op in operators(model):
        if op["op"] not in seen:
            seen.append(op["op"])
    return seen


def resolver_method(op: str) -> str:
    """``CONV_2D`` -> ``AddConv2D`` (the table, else TFLM's naming rule)."""
    if op in RESOLVER_METHODS:
        return RESOLVER_METHODS[op]
    return "Add" + "".join(p[:1].upper() + p[1:].lower() if not p[:1].isdigit() else p.upper()
                           for p in op.split("_"))


# -- conversion ----------------------------------------------------------------------------------

def _layer_of_aten(model: Any, example: tuple[Any, ...], aten: str) -> str | None:
    """The module path of the first node of ``torch.export(model)`` calling ``aten`` (e.g. ``aten.erfinv``)."""
    import torch

    try:
        program = torch.export.export(model, example)
        graphs = [program.graph, program.run_decompositions().graph]  # the converter sees the decomposed ops
    except Exception:  # noqa: BLE001 - only a better error message is lost
        return None
    for graph in graphs:
        for node in graph.nodes:
            if node.op == "call_function" and str(node.target).split(".")[:2] == aten.split(".")[:2]:
                stack = node.meta.get("nn_module_stack") or {}
                if stack:
                    path, cls = list(stack.values())[-1]
                    cls_name = getattr(cls, "__name__", None) or str(cls).rsplit(".", 1)[-1].strip("'>")
                    return f"{path or '<model>'} ({cls_name})"
    return None


def to_float_tflite(model: Any, example: tuple[Any, ...]) -> bytes:
    """Float TFLite flatbuffer of ``model`` (batch 1) through litert-torch; a failure names the layer."""
    import litert_torch

    try:
        with _captured_output() as log, tempfile.TemporaryDirectory() as tmp:
            edge = litert_torch.convert(model.eval(), example)
            path = Path(tmp) / "float.tflite"
            edge.export(str(path))
            data = path.read_bytes()
    except Exception as exc:  # noqa: BLE001 - the converter raises RuntimeError, ValueError, ...
        text = str(exc)
        found = re.search(r"Lowering not found: (aten\.\w+)", text)
        if found:
            where = _layer_of_aten(model, example, found.group(1))
            raise ConfigError(f"layer {where or '(unknown)'} uses {found.group(1)}, which litert-torch cannot "
                              "convert to TFLite") from None
        first = next((ln.strip() for ln in text.splitlines() if ln.strip()), type(exc).__name__)
        raise ConfigError(f"litert-torch cannot convert the model to TFLite: {first[:300]}") from None
    del log
    return data


def _signature_inputs(model: bytes) -> list[str]:
    from ai_edge_litert.interpreter import Interpreter

    sig = Interpreter(model_content=model).get_signature_list()
    key = "serving_default" if "serving_default" in sig else next(iter(sig))
    return list(sig[key]["inputs"])


def quantize_int8(float_model: bytes, calibration: Sequence[np.ndarray]) -> bytes:
    """Full-integer int8 (per-channel weights, per-tensor activations, int8 I/O) calibrated on ``calibration``."""
    from ai_edge_quantizer import quantizer, recipe

    names = _signature_inputs(float_model)
    if len(names) != len(calibration):
        raise ConfigError(f"the model has {len(names)} inputs but the calibration data has {len(calibration)}")
    n = min(len(calibration[0]), N_CALIBRATION_MAX)
    samples = [{name: np.ascontiguousarray(x[i:i + 1], dtype=np.float32) for name, x in zip(names, calibration)}
               for i in range(n)]
    with _captured_output():
        qt = quantizer.Quantizer(bytearray(float_model), recipe.static_wi8_ai8())
        result = qt.quantize(qt.calibrate({"serving_default": samples}, num_threads=1),
                             enable_progress_report=False)
    return bytes(result.quantized_model)


# -- TFLite Micro --------------------------------------------------------------------------------

def tflm_interpreter(model: bytes, arena_size: int | None = None) -> Any:
    """A ``tflite_micro`` interpreter for ``model``; an operator TFLM lacks is an error naming the layer."""
    from tflite_micro.python.tflite_micro import runtime

    try:
        with _captured_output() as log:
            return runtime.Interpreter.from_bytes(model, arena_size=arena_size)
    except (RuntimeError, ValueError) as exc:
        text = "".join(log)
        found = re.search(r"Didn't find op for builtin opcode '(\w+)'", text)
        if found:
            layer = next((o["layer"] for o in operators(model) if o["op"] == found.group(1)), "(unknown)")
            raise ConfigError(f"layer {layer} becomes the TFLite operator {found.group(1)}, which TensorFlow Lite "
                              "Micro has no kernel for") from None
        detail = next((ln.strip() for ln in text.splitlines() if ln.strip()), str(exc))
        raise ConfigError(f"TensorFlow Lite Micro cannot load the model: {detail[:300]}") from None


def arena_bytes(interpreter: Any) -> int:
    """The tensor arena the interpreter's recording allocator used (head + tail), in bytes."""
    with _captured_output() as log:
        interpreter.print_allocations()
    found = re.search(r"Arena allocation total (\d+) bytes", "".join(log))
    if not found:
        raise ConfigError("the TFLM interpreter did not report its arena use")
    return int(found.group(1))


def run_tflm(interpreter: Any, xs: Sequence[np.ndarray]) -> np.ndarray:
    """Dequantized outputs of the int8 model for float inputs ``xs`` (one invoke per sample)."""
    ins = [interpreter.get_input_details(i) for i in range(len(xs))]
    out_d = interpreter.get_output_details(0)
    o_scale = float(out_d["quantization_parameters"]["scales"][0])
    o_zero = int(out_d["quantization_parameters"]["zero_points"][0])
    rows = []
    for s in range(len(xs[0])):
        for i, (x, d) in enumerate(zip(xs, ins)):
            q = d["quantization_parameters"]
            scale, zero = float(q["scales"][0]), int(q["zero_points"][0])
            v = np.clip(np.round(np.asarray(x[s:s + 1], dtype=np.float32) / scale) + zero, -128, 127)
            interpreter.set_input(v.astype(np.int8).reshape(tuple(int(n) for n in d["shape"])), i)
        interpreter.invoke()
        rows.append((interpreter.get_output(0).astype(np.float32) - o_zero) * o_scale)
    return np.concatenate([r.reshape(1, -1) for r in rows]) if rows else np.zeros((0, 0), np.float32)


# -- comparison ----------------------------------------------------------------------------------

def _macro_f1(pred: np.ndarray, y: np.ndarray) -> float:
    from sklearn.metrics import f1_score

    return float(f1_score(y, pred, average="macro", labels=np.unique(np.concatenate([y, pred])), zero_division=0))


def compare(torch_out: np.ndarray, tflm_out: np.ndarray, y: np.ndarray | None) -> dict[str, Any]:
    """Class agreement, max |logit difference|, and accuracy/macro-F1 of both when ``y`` holds class labels."""
    res: dict[str, Any] = {"n": int(len(torch_out)), "max_abs_diff": float(np.max(np.abs(tflm_out - torch_out)))}
    classes = torch_out.ndim == 2 and torch_out.shape[1] > 1
    res["agreement"] = float(np.mean(np.argmax(torch_out, 1) == np.argmax(tflm_out, 1))) if classes else None
    labelled = (classes and y is not None and y.ndim == 1 and len(y) == len(torch_out)
                and np.issubdtype(y.dtype, np.integer))
    if labelled and y is not None:
        p32, p8 = np.argmax(torch_out, 1), np.argmax(tflm_out, 1)
        res.update(accuracy_fp32=float(np.mean(p32 == y)), accuracy_int8=float(np.mean(p8 == y)),
                   macro_f1_fp32=_macro_f1(p32, y), macro_f1_int8=_macro_f1(p8, y))
        res["accuracy_change"] = res["accuracy_int8"] - res["accuracy_fp32"]
        res["macro_f1_change"] = res["macro_f1_int8"] - res["macro_f1_fp32"]
    return res


# -- firmware bundle -----------------------------------------------------------------------------

def c_array(model: bytes, symbol: str = "g_model") -> tuple[str, str]:
    """(``model_data.h``, ``model_data.cc``) holding ``model`` as an ``alignas(16)`` byte array and its length."""
    header = (f"// Generated by nas export --format tflite. Do not edit.\n#ifndef NAS_MODEL_DATA_H_\n"
              f"#define NAS_MODEL_DATA_H_\n\nextern const unsigned char {symbol}[];\n"
              f"extern const unsigned int {symbol}_len;\n\n#endif  // NAS_MODEL_DATA_H_\n")
    rows = [", ".join(f"0x{b:02x}" for b in model[i:i + 12]) for i in range(0, len(model), 12)]
    body = ",\n    ".join(rows)
    source = (f"// Generated by nas export --format tflite. Do not edit.\n#include \"model_data.h\"\n\n"
              f"alignas(16) const unsigned char {symbol}[] = {{\n    {body}\n}};\n"
              f"const unsigned int {symbol}_len = {len(model)};\n")
    return header, source


def parse_c_array(source: str) -> bytes:
    """The bytes of a ``model_data.cc`` written by :func:`c_array` (for round-trip checks)."""
    body = source.split("{", 1)[1].split("}", 1)[0]
    data = bytes(int(tok, 16) for tok in re.findall(r"0x([0-9a-fA-F]{2})", body))
    found = re.search(r"_len = (\d+);", source)
    if not found or int(found.group(1)) != len(data):
        raise ValueError("model_data.cc: the length does not match the array")
    return data


def ops_header(ops: Sequence[str]) -> str:
    """``model_ops.h``: a resolver type sized for the model and a function registering its operators."""
    calls = "\n".join(f"  if (r.{resolver_method(op)}() != kTfLiteOk) return kTfLiteError;  // {op}" for op in ops)
    return (f"// Generated by nas export --format tflite. Do not edit.\n#ifndef NAS_MODEL_OPS_H_\n"
            f"#define NAS_MODEL_OPS_H_\n\n#include \"tensorflow/lite/micro/micro_mutable_op_resolver.h\"\n\n"
            f"constexpr int kModelOpCount = {len(ops)};\nusing ModelOpResolver = "
            f"tflite::MicroMutableOpResolver<kModelOpCount>;\n\n"
            f"inline TfLiteStatus RegisterModelOps(ModelOpResolver& r) {{\n{calls}\n  return kTfLiteOk;\n}}\n\n"
            f"#endif  // NAS_MODEL_OPS_H_\n")


def _readme(name: str, info: Mapping[str, Any]) -> str:
    inputs = "\n".join(f"| {i} | {d['shape']} | {d['scale']:.6g} | {d['zero_point']} |"
                       for i, d in enumerate(info["inputs"]))
    out = info["output"]
    sets = "\n".join(f"  // input {i}: q = round(x / {d['scale']:.6g}) + {d['zero_point']}, clamped to [-128, 127]\n"
                     f"  int8_t* in{i} = interpreter.input({i})->data.int8;"
                     for i, d in enumerate(info["inputs"]))
    return f"""# TFLM bundle for {name}

Generated by `nas export --format tflite`: a full-integer int8 model (int8 weights per channel, int8
activations per tensor, int8 inputs and outputs), checked in the `tflite-micro` Python interpreter.

| file | what |
| --- | --- |
| `model_data.h`, `model_data.cc` | the `.tflite` as `alignas(16) const unsigned char g_model[]` and `g_model_len` |
| `model_ops.h` | `RegisterModelOps()`: the {len(info['ops'])} operators the model needs ({', '.join(info['ops'])}) |
| `bundle.json` | arena size, operators, input/output quantization |

Tensor arena: **{info['arena_bytes']} bytes** as recorded by the TFLM interpreter on the export host (a
64-bit build; a 32-bit MCU needs about the same or a little less). Add a margin of a few hundred bytes.

Inputs keep the PyTorch layout (batch 1):

| input | shape | scale | zero point |
| --- | --- | --- | --- |
{inputs}

Output {out['shape']}: `x = (q - {out['zero_point']}) * {out['scale']:.6g}` (the class with the largest q is the
prediction; no dequantization is needed for argmax).

```cpp
#include "model_data.h"
#include "model_ops.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/schema/schema_generated.h"

constexpr int kArenaSize = {info['arena_bytes']} + 512;
alignas(16) static uint8_t tensor_arena[kArenaSize];

int classify() {{
  const tflite::Model* model = tflite::GetModel(g_model);
  static ModelOpResolver resolver;
  if (RegisterModelOps(resolver) != kTfLiteOk) return -1;
  static tflite::MicroInterpreter interpreter(model, resolver, tensor_arena, kArenaSize);
  if (interpreter.AllocateTensors() != kTfLiteOk) return -1;
{sets}
  // ... fill the inputs ...
  if (interpreter.Invoke() != kTfLiteOk) return -1;
  const TfLiteTensor* out = interpreter.output(0);
  int best = 0;
  for (int i = 1; i < out->dims->data[out->dims->size - 1]; ++i)
    if (out->data.int8[i] > out->data.int8[best]) best = i;
  return best;
}}
```
"""


def write_bundle(directory: Path, name: str, model: bytes, ops: Sequence[str], arena: int,
                 interpreter: Any, n_inputs: int) -> dict[str, Any]:
    """Write the firmware bundle into ``directory``; returns what ``bundle.json`` holds."""
    from nas_core.safety import confined

    def q(d: Mapping[str, Any]) -> dict[str, Any]:
        p = d["quantization_parameters"]
        return {"shape": [int(v) for v in d["shape"]], "dtype": "int8", "scale": float(p["scales"][0]),
                "zero_point": int(p["zero_points"][0])}

    info = {"model": name, "model_bytes": len(model), "arena_bytes": arena, "ops": list(ops),
            "resolver": [f"{resolver_method(op)}()" for op in ops],
            "inputs": [q(interpreter.get_input_details(i)) for i in range(n_inputs)],
            "output": q(interpreter.get_output_details(0))}
    directory.mkdir(parents=True, exist_ok=True)
    header, source = c_array(model)
    for fname, text in (("model_data.h", header), ("model_data.cc", source), ("model_ops.h", ops_header(ops)),
                        ("README.md", _readme(name, info)),
                        ("bundle.json", json.dumps(info, indent=2, sort_keys=True) + "\n")):
        confined(directory, fname).write_text(text)
    return info


def evenly_spaced(n: int, most: int) -> np.ndarray:
    """Indices of at most ``most`` of ``n`` samples spread evenly over all of them (all when ``n <= most``),
    so that data ordered by record or class (ECG validation beats) is not checked on its first part only."""
    if n <= most:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, most).round().astype(np.int64))


def export_int8_tflite(model: Any, example: tuple[Any, ...], calibration: Sequence[np.ndarray] | None,
                       x_val: Sequence[np.ndarray] | None, y_val: np.ndarray | None,
                       min_agreement: float = AGREEMENT_THRESHOLD) -> dict[str, Any]:
    """Convert, quantize and verify ``model``; returns ``{"model": bytes, "ops", "arena_bytes", "check", ...}``.

    ``example`` are batch-1 float tensors; the check runs on ``x_val`` (else on the calibration
    inputs; at most :data:`N_VALIDATION_MAX`, evenly spaced over them). Nothing is written here.
    """
    import torch

    require_mcu()
    if calibration is None or not len(calibration) or not len(calibration[0]):
        raise ConfigError("no calibration data: the task offers no calibration_data() and its estimator no "
                          "training split, so int8 activation ranges cannot be set")
    float_model = to_float_tflite(model, example)
    int8 = quantize_int8(float_model, calibration)
    check_full_integer(int8)
    interp = tflm_interpreter(int8)
    arena = arena_bytes(interp)
    tflm_interpreter(int8, arena)  # the recorded size suffices on its own
    source = "validation"
    if x_val is None:
        x_val, y_val, source = calibration, None, "calibration"
    pick = evenly_spaced(len(x_val[0]), N_VALIDATION_MAX)
    xs = [np.asarray(np.asarray(x)[pick], dtype=np.float32) for x in x_val]
    y = None if y_val is None else np.asarray(y_val)[pick]
    with torch.no_grad():
        ref = np.concatenate([model(*(torch.as_tensor(x[s:s + 256]) for x in xs)).numpy()
                              for s in range(0, len(xs[0]), 256)])
    check = compare(ref, run_tflm(interp, xs), y)
    check.update(inputs=source, min_agreement=min_agreement, against="the PyTorch fp32 model with the trial's weights")
    if check["agreement"] is not None and check["agreement"] < min_agreement:
        raise ConfigError(f"the int8 TFLite model agrees with PyTorch on only {check['agreement']:.2%} of "
                          f"{check['n']} {source} inputs (< {min_agreement:.0%}; max |logit difference| "
                          f"{check['max_abs_diff']:.3g}); nothing was written")
    return {"model": int8, "float_bytes": len(float_model), "ops": resolver_ops(int8), "arena_bytes": arena,
            "check": check, "interpreter": interp}
