"""Per-output-channel 8-bit kernels in a graph plain TF.js loads and runs (``--quantize uint8``).

TF.js stores one affine range ``{scale, min}`` per weight tensor and dequantizes
at load. After batch norm is folded into a convolution, the output channels of one
kernel differ in scale by orders of magnitude, and one range rounds the small ones
away. Here each conv / depthwise / matmul kernel ``W`` is stored divided by its
per-output-channel scale ``s`` (the channel's max ``|w|``): every channel spans the
full 8-bit range under one per-tensor range. One small float16 vector restores it:

Before::  y = _FusedConv2D(x, W, b) fused_ops=[BiasAdd, Relu6]       W: float32 [3, 3, 16, 32]
After::   W/per_channel = Mul(W, W/channel_scale)                     W: uint8 (W / s), scale: float16 [32]
          y = _FusedConv2D(x, W/per_channel, b) fused_ops=[BiasAdd, Relu6]

The conv keeps its fused bias and activation (the wasm backend's fused kernel), and
the result is exactly ``W`` up to rounding, whatever activation follows. Everything
that is not such a kernel (biases, scale vectors, small kernels) is stored as float16.

Example:
    >>> quantize_per_channel(Path("out/tfjs"))      # after tensorflowjs wrote float32 weights
    {'per_channel_uint8': 81, 'float16': 180}
"""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path

import numpy as np

from converter.export.calibrated_rounding import calibrated_codes
from converter.export.layer_inputs import sequential_kernel_inputs
from converter.export.weights import weights_manifest
from converter.tfjs_initializer import computed_at_load

PER_CHANNEL_SUFFIX = "/per_channel"
# model.json ``userDefinedMetadata`` key (TF.js keeps it as ``model.metadata``): how each kernel was rounded.
ROUNDING_KEY = "transferjsRounding"
SCALE_SUFFIX = "/channel_scale"
# Kernels smaller than this stay float16: the bytes 8 bits would save do not pay for an added op.
MIN_KERNEL_ELEMENTS = 2048
_KERNEL_OPS = {"Conv2D", "_FusedConv2D", "DepthwiseConv2dNative", "FusedDepthwiseConv2dNative", "MatMul", "_FusedMatMul"}
_BYTES = {"float32": 4, "int32": 4, "bool": 1, "uint8": 1, "float16": 2, "uint16": 2}


def channel_scale(w: np.ndarray, op: str, transpose_b: bool = False) -> np.ndarray:
    """Per-output-channel max ``|w|`` of a kernel, shaped to broadcast against it (dead channels: 1).

    Conv2D ``[H, W, Cin, Cout]`` -> ``[Cout]``; depthwise ``[H, W, C, M]`` -> ``[C, M]``;
    MatMul ``[K, N]`` -> ``[N]`` (``transpose_b``: ``[N, K]`` -> ``[N, 1]``).
    """
    if "Depthwise" in op:
        s = np.abs(w).max(axis=(0, 1))
    elif "MatMul" in op and transpose_b:
        s = np.abs(w).max(axis=1, keepdims=True)
    else:
        s = np.abs(w).reshape(-1, w.shape[-1]).max(axis=0)
    return np.where(s > 0, s, 1.0).astype(np.float32)


def affine_uint8(data: np.ndarray) -> tuple[np.ndarray, dict]:
    """tensorflowjs' per-tensor affine uint8 (zero exactly representable): ``(q, {"min", "scale"})``."""
    lo, hi = float(data.min()), float(data.max())
    if lo == hi:
        return np.zeros(data.shape, np.uint8), {"min": lo, "scale": 1.0}
    scale = (hi - lo) / 255
    if lo <= 0 <= hi:
        lo = -np.round(-lo / scale) * scale
        hi = 255 * scale + lo
    q = np.round((data.clip(lo, hi) - lo) / scale).astype(np.uint8)
    return q, {"min": float(lo), "scale": float(scale)}


def _raw_weights(bundle_dir: Path) -> list[tuple[dict, bytes]]:
    """Every manifest entry with its bytes, in order."""
    manifest = weights_manifest(bundle_dir)
    data = b"".join((bundle_dir / p).read_bytes() for group in manifest for p in group["paths"])
    out, offset = [], 0
    for group in manifest:
        for w in group["weights"]:
            dtype = w.get("quantization", {}).get("dtype", w["dtype"])
            size = int(np.prod(w["shape"])) * _BYTES[dtype] if w["shape"] else _BYTES[dtype]
            out.append((w, data[offset : offset + size]))
            offset += size
    return out


def _kernels(nodes: list[dict], specs: dict) -> dict[str, tuple[str, bool]]:
    """Weights used only as the filter (input 1) of conv/depthwise/matmul nodes: ``{name: (op, transpose_b)}``."""
    uses: dict[str, list] = {}
    for node in nodes:
        for i, inp in enumerate(node.get("input", [])):
            uses.setdefault(inp.split(":")[0], []).append((node, i))
    kernels = {}
    for name, spec in specs.items():
        found = uses.get(name, [])
        if spec["dtype"] != "float32" or not found or any(n["op"] not in _KERNEL_OPS or i != 1 for n, i in found):
            continue
        ops = {(n["op"].replace("_Fused", "").replace("Fused", ""), bool(n.get("attr", {}).get("transpose_b", {}).get("b")))
               for n, _ in found}
        if len(ops) == 1:
            kernels[name] = (found[0][0]["op"], ops.pop()[1])
    return kernels


def _scale_nodes(kernel: dict, name: str, shape: list) -> tuple[dict, dict]:
    """The Const node of the scale vector and the Mul that restores the kernel."""
    const = copy.deepcopy(kernel)
    const["name"] = name + SCALE_SUFFIX
    const.setdefault("attr", {}).setdefault("value", {}).setdefault("tensor", {})["tensorShape"] = {
        "dim": [{"size": str(d)} for d in shape]}
    mul = {"name": name + PER_CHANNEL_SUFFIX, "op": "Mul", "input": [name, name + SCALE_SUFFIX], "attr": {"T": {"type": "DT_FLOAT"}}}
    return const, mul


def _float16_entry(spec: dict, raw: bytes) -> tuple[dict, bytes]:
    if spec["dtype"] != "float32" or "quantization" in spec:
        return spec, raw
    values = np.frombuffer(raw, np.float32)
    if np.abs(values).max(initial=0) > 65000:  # beyond float16 (e.g. a bias divided by a tiny scale)
        return spec, raw
    values = values.astype(np.float16)
    return {**spec, "quantization": {"dtype": "float16", "original_dtype": "float32"}}, values.tobytes()


_ELEMENTWISE = {"Add", "AddV2", "AddN", "Sub", "Mul", "BiasAdd", "Relu", "Relu6", "Sigmoid", "Tanh", "Elu", "Identity",
                "FusedBatchNorm", "FusedBatchNormV3", "Maximum", "Minimum", "LeakyRelu", "Prelu"}
_SIMPLE_ACTIVATIONS = {"Relu", "Relu6", "Sigmoid", "Tanh", "Elu"}


def _fused_ops(node: dict) -> list[str]:
    return [base64.b64decode(f).decode() for f in node.get("attr", {}).get("fused_ops", {}).get("list", {}).get("s", [])]


def _linear_bias(node: dict, specs: dict, uses: dict) -> str | None:
    """The bias weight of a fused conv/matmul (``fused_ops=[BiasAdd, ...]``), if only that node reads it."""
    bias = node["input"][2].split(":")[0] if len(node.get("input", [])) > 2 else None
    if not _fused_ops(node)[:1] == ["BiasAdd"] or bias not in specs or len(uses.get(bias, [])) != 1:
        return None
    return bias if specs[bias]["dtype"] == "float32" and len(specs[bias]["shape"]) == 1 else None


def _movable_activation(node: dict, specs: dict, uses: dict) -> bool:
    """``fused_ops=[BiasAdd, act]`` with an argument-free activation and its own bias weight."""
    fused = _fused_ops(node)
    return len(fused) == 2 and fused[1] in _SIMPLE_ACTIVATIONS and _linear_bias(node, specs, uses) is not None


def _ints(attr: dict, key: str) -> list[int]:
    return [int(i) for i in attr.get(key, {}).get("list", {}).get("i", [])]


def spatial_sizes(nodes: list[dict], specs: dict, raw: dict) -> dict[str, int]:
    """Output positions per image (H x W; 1 for matmuls) of the nodes whose size follows from
    the NHWC placeholders through convolutions, pads and element-wise ops; others are absent."""
    by_name, memo = {n["name"]: n for n in nodes}, {}

    def hw(name: str):
        name = name.split(":")[0]
        if name in memo:
            return memo[name]
        memo[name] = None  # also guards against cycles
        node, result = by_name.get(name), None
        if node is None:
            return None
        op, attr, inputs = node["op"], node.get("attr", {}), [i for i in node.get("input", []) if not i.startswith("^")]
        if op == "Placeholder":
            dims = [int(d.get("size", -1)) for d in attr.get("shape", {}).get("shape", {}).get("dim", [])]
            result = tuple(dims[1:3]) if len(dims) == 4 and min(dims[1:3]) > 0 else None
        elif op in _KERNEL_OPS and "MatMul" in op:
            result = (1, 1)
        elif op in _KERNEL_OPS and hw(inputs[0]) and set(_ints(attr, "dilations") or [1]) == {1}:
            (h, w), k = hw(inputs[0]), specs.get(inputs[1].split(":")[0], {}).get("shape")
            stride, pad = (_ints(attr, "strides") or [1, 1, 1, 1])[1:3], base64.b64decode(attr.get("padding", {}).get("s", "")).decode()
            if k and pad == "SAME":
                result = (-(-h // stride[0]), -(-w // stride[1]))
            elif k and pad == "VALID":
                result = ((h - k[0]) // stride[0] + 1, (w - k[1]) // stride[1] + 1)
        elif op in ("Pad", "PadV2", "MirrorPad") and hw(inputs[0]) and inputs[1] in raw:
            pads = np.frombuffer(raw[inputs[1]], np.int32).reshape(-1, 2)
            result = (hw(inputs[0])[0] + int(pads[1].sum()), hw(inputs[0])[1] + int(pads[2].sum())) if len(pads) == 4 else None
        elif op in _ELEMENTWISE:
            result = next((hw(i) for i in inputs if hw(i)), None)
        memo[name] = result
        return result

    return {n["name"]: hw(n["name"])[0] * hw(n["name"])[1] for n in nodes if hw(n["name"])}


def _plan(nodes: list[dict], entries: list, at_load: bool = False) -> dict[str, tuple[np.ndarray, dict | None, str | None]]:
    """``{kernel: (scale, node whose output is rescaled or None, its bias or None)}`` for kernels worth 8 bits.

    The scale is restored where that costs fewer multiplications per image: on the kernel
    (its size) or on the node's output (positions x channels; twice that when the node's
    activation has to move after the rescale). Unknown output size, or ``at_load`` (the
    kernel's restore runs once, not per image): on the kernel.
    """
    specs = {w["name"]: w for w, _ in entries}
    raw = {w["name"]: r for w, r in entries}
    uses: dict[str, list] = {}
    for node in nodes:
        for inp in node.get("input", []):
            uses.setdefault(inp.split(":")[0], []).append(node)
    names, positions = {n["name"] for n in nodes}, spatial_sizes(nodes, specs, raw)
    plan = {}
    for name, (op, transpose_b) in _kernels(nodes, specs).items():
        size = int(np.prod(specs[name]["shape"]))
        if size < MIN_KERNEL_ELEMENTS or name not in names:
            continue
        s = channel_scale(np.frombuffer(raw[name], np.float32).reshape(specs[name]["shape"]), op, transpose_b)
        consumer = uses[name][0] if len(uses[name]) == 1 and not transpose_b else None
        fused = _fused_ops(consumer) if consumer else None
        bias = _linear_bias(consumer, specs, uses) if fused and fused[0] == "BiasAdd" else None
        movable = fused == [] or (bias is not None and (len(fused) == 1 or _movable_activation(consumer, specs, uses)))
        out_cost = positions.get(consumer["name"], 0) * s.size * (2 if fused and len(fused) > 1 else 1) if consumer else 0
        if movable and 0 < out_cost < size and not at_load:
            plan[name] = (s, consumer, bias)
        else:
            plan[name] = (s, None, None)
    return plan


def _restore_scales(nodes: list[dict], plan: dict) -> list[dict]:
    """Graph nodes that give each planned kernel its scale back (see the module docstring)."""
    by_name = {n["name"]: n for n in nodes}
    added = []
    for name, (s, folded, _) in plan.items():
        shape = [int(s.size)] if folded is not None else list(s.shape)
        const, mul = _scale_nodes(by_name[name], name, shape)
        added.append(const)
        if folded is not None:  # y = act(Mul(conv(x, W / s) + b / s, s)): after the fused bias add
            original, fused = folded["name"], _fused_ops(folded)
            folded["name"] = original + "/unscaled"
            mul.update(name=original, input=[folded["name"], const["name"]])
            if len(fused) == 2:  # the activation moves after the rescale
                folded["attr"]["fused_ops"] = {"list": {"s": [base64.b64encode(b"BiasAdd").decode()]}}
                mul["name"] = original + "/rescaled"
                added.append({"name": original, "op": fused[1], "input": [mul["name"]], "attr": {"T": {"type": "DT_FLOAT"}}})
        else:  # the kernel itself: W = Mul(W / s, s), before the conv
            for node in nodes:
                node["input"] = [name + PER_CHANNEL_SUFFIX if i in (name, name + ":0") else i for i in node.get("input", [])]
        added.append(mul)
    return added


def quantize_per_channel(bundle_dir, shard_size: int = 4 * 1024 * 1024, calibration: dict | None = None,
                         at_load: bool = False) -> dict[str, int]:
    """Rewrite a float32 TF.js graph model's weights: kernels per-channel uint8, the rest float16.

    Args:
        bundle_dir: the TF.js graph model's folder.
        shard_size: bytes per weight shard file.
        calibration: ``{signature input: batch}`` of calibration inputs; then each kernel is
            rounded by its layer's output error (``calibrated_rounding``, GPTQ) and its bias
            corrected; ``None``: nearest rounding.
        at_load: restore every kernel once, when the model first runs (``tfjs_initializer``),
            instead of one ``Mul`` per kernel per run: the main graph is the float32 graph.

    Returns:
        ``{"per_channel_uint8": kernels, "scale_on_output": of those, rescaled on the node's
        output (after its bias add), "calibrated": of those, rounded by calibration,
        "float16_sensitive": kernels kept float16 by their calibration error, "float16": other tensors}``.
    """
    bundle_dir = Path(bundle_dir)
    model_json = bundle_dir / "model.json"
    model = json.loads(model_json.read_text())
    nodes = model["modelTopology"]["node"]
    entries = _raw_weights(bundle_dir)
    plan = _plan(nodes, entries, at_load)
    rounded, shifts, errors = _calibrated(model, entries, plan, calibration) if calibration else ({}, {}, {})
    sizes = {name: int(np.prod(w["shape"])) for w, _ in entries for name in [w["name"]] if name in plan}
    for name in most_sensitive(errors, sizes, int(FLOAT16_BUDGET * sum(sizes.values()))):
        del plan[name], rounded[name]  # stored as float16 like the small kernels, its bias as it was
        shifts.pop(name, None)
    shifts = dict(shifts.values())
    bias_scale = {bias: s.reshape(-1) for s, _, bias in plan.values() if bias}
    on_output = sum(node is not None for _, node, _ in plan.values())
    new_entries = []
    counts = {"per_channel_uint8": len(plan), "scale_on_output": on_output, "calibrated": len(rounded),
              "float16_sensitive": len(sizes) - len(plan), "float16": 0}
    for spec, raw in entries:
        name = spec["name"]
        if name in plan:
            s = plan[name][0]
            q, affine = rounded[name] if name in rounded else affine_uint8(np.frombuffer(raw, np.float32).reshape(spec["shape"]) / s)
            new_entries.append(({**spec, "quantization": {"dtype": "uint8", **affine, "original_dtype": "float32"}}, q.tobytes()))
            shape = [int(s.size)] if plan[name][1] is not None else list(s.shape)
            spec, raw = {"name": name + SCALE_SUFFIX, "shape": shape, "dtype": "float32"}, s.tobytes()
        elif name in bias_scale or name in shifts:
            bias = np.frombuffer(raw, np.float32) - shifts.get(name, 0.0)
            raw = (bias / bias_scale.get(name, 1.0)).astype(np.float32).tobytes()
        entry = _float16_entry(spec, raw)
        counts["float16"] += entry[0] is not spec and not spec["name"].endswith(SCALE_SUFFIX)
        new_entries.append(entry)
    model["modelTopology"]["node"] = nodes + _restore_scales(nodes, plan)
    if at_load:
        shapes = {w["name"] + PER_CHANNEL_SUFFIX: w["shape"] for w, _ in entries if w["name"] in plan}
        computed_at_load(model, list(shapes), shapes)
    model.setdefault("userDefinedMetadata", {})[ROUNDING_KEY] = {
        **{name: "calibrated (GPTQ + bias correction)" if name in rounded else "nearest" for name in plan},
        **{name: "float16: most sensitive by calibration output error" for name in sizes if name not in plan}}
    model["weightsManifest"] = _write_shards(bundle_dir, new_entries, shard_size)
    model_json.write_text(json.dumps(model))
    return counts


# Kernel elements kept in float16 (the most sensitive kernels, by their calibration output error),
# as a fraction of all 8-bit kernel elements: each costs one byte more than uint8.
FLOAT16_BUDGET = 0.02
# Bias correction also removing the mean error that rounded layers before a kernel pass on to it
# (W_q mean(x̃) - W mean(x), sequential only): EfficientNet-Lite0, 12 groups, mean calibration KL
# 8.9e-4 without, 4.6e-3 with (5x worse; max Δp on the calibration crops 0.026 -> 0.042). Off.
DRIFT_CORRECTION = False
_NUMPY = {"float32": np.float32, "int32": np.int32, "bool": np.bool_}


def _calibrated(model: dict, entries: list, plan: dict, calibration: dict) -> tuple[dict, dict]:
    """``({kernel: (codes, affine)}, {bias: shift})``: GPTQ rounding and bias correction from the
    calibration batch run through the graph (``layer_inputs.sequential_kernel_inputs``: with
    ``GROUPS`` > 1 later kernels see the earlier ones rounded)."""
    nodes = model["modelTopology"]["node"]
    weights = {w["name"]: np.frombuffer(r, _NUMPY[w["dtype"]]).reshape(w["shape"]) for w, r in entries
               if w["dtype"] in _NUMPY and "quantization" not in w}
    filters = {n["input"][1].split(":")[0]: n for n in nodes if n["op"] in _KERNEL_OPS and len(n.get("input", [])) > 1}
    specs = {w["name"]: w for w, _ in entries}
    uses: dict[str, list] = {}
    for node in nodes:
        for inp in node.get("input", []):
            uses.setdefault(inp.split(":")[0], []).append(node)
    kernels = {k: (filters[k], filters[k]["op"]) for k in plan if k in filters}
    names = model.get("signature", {}).get("inputs", {})
    feeds = {names.get(k, {}).get("name", k if ":" in k else k + ":0"): v for k, v in calibration.items()}
    biases = {}
    for name, (node, _) in kernels.items():
        bias = _linear_bias(node, specs, uses) if _fused_ops(node)[:1] == ["BiasAdd"] else _added_bias(node, specs, uses)
        if bias is not None and len(uses.get(name, [])) == 1:
            biases[name] = bias

    def round_kernel(name: str, inputs, float_mean):
        node, op = kernels[name]
        transpose_b = bool(node.get("attr", {}).get("transpose_b", {}).get("b"))
        codes, grid, shift, error = calibrated_codes(weights[name], plan[name][0], op, transpose_b, inputs,
                                                     float_mean if DRIFT_CORRECTION else None)
        dequantized = grid.values(codes.astype(np.float64)) * plan[name][0]
        replaced = {name: dequantized}
        if name in biases:
            replaced[biases[name]] = weights[biases[name]] - shift
        return ((codes, {"min": grid.low, "scale": grid.step}), shift.astype(np.float32), error), replaced

    results = sequential_kernel_inputs(nodes, weights, feeds, kernels, round_kernel, float_means=DRIFT_CORRECTION)
    rounded = {name: r[0] for name, r in results.items()}
    shifts = {name: (biases[name], r[1]) for name, r in results.items() if name in biases}
    return rounded, shifts, {name: r[2] for name, r in results.items()}


def most_sensitive(errors: dict[str, float], sizes: dict[str, int], budget: int) -> list[str]:
    """Kernels to keep in float16: the largest relative calibration output error first, within ``budget`` elements.

    Example:
        >>> most_sensitive({"a": 1e-4, "b": 1e-5}, {"a": 100, "b": 10}, 100)
        ['a']
    """
    kept, used = [], 0
    for name in sorted(errors, key=lambda k: -errors[k]):
        if used + sizes[name] <= budget:
            kept.append(name)
            used += sizes[name]
    return kept


def _added_bias(node: dict, specs: dict, uses: dict) -> str | None:
    """The bias of a conv without a fused one, added after its residual sum: the 1-D Const of
    ``AddV2(b, AddN(conv, skip))`` (grappler's rewrite of ``conv + b + skip``), if only it reads b."""
    width = (specs.get(node["input"][1].split(":")[0], {}).get("shape") or [None])[-1]
    step = node
    for _ in range(2):
        consumers = uses.get(step["name"], [])
        if len(consumers) != 1 or consumers[0]["op"] not in ("AddN", "AddV2", "Add"):
            return None
        step = consumers[0]
        for inp in step.get("input", []):
            spec = specs.get(inp.split(":")[0])
            if spec and spec["dtype"] == "float32" and spec["shape"] == [width] and len(uses.get(spec["name"], [])) == 1:
                return spec["name"]
    return None


def _write_shards(bundle_dir: Path, entries: list[tuple[dict, bytes]], shard_size: int) -> list[dict]:
    """Replace the bundle's shard files with ``entries``' bytes; the new ``weightsManifest``."""
    for group in weights_manifest(bundle_dir):
        for p in group["paths"]:
            (bundle_dir / p).unlink(missing_ok=True)
    data = b"".join(raw for _, raw in entries)
    n = max(1, -(-len(data) // shard_size))
    paths = [f"group1-shard{i + 1}of{n}.bin" for i in range(n)]
    for i, p in enumerate(paths):
        (bundle_dir / p).write_bytes(data[i * shard_size : (i + 1) * shard_size])
    return [{"paths": paths, "weights": [spec for spec, _ in entries]}]
