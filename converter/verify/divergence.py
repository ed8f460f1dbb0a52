"""Where does a failing conversion start to differ? Bisect over the ONNX graph.

Each probe cuts the converted ONNX graph at one node's output, converts that
prefix with the same onnx2tf path, and compares TensorFlow with onnxruntime on
the same samples. Binary search finds the first node whose output is out of
tolerance in about log2(nodes) conversions; it only runs after a failure.

Example:
    >>> where = locate_divergence(onnx_model, samples, Tolerance(), workdir)
    >>> where["node"], where["op"]
    ('/features/features.3/Conv', 'Conv')
"""

from __future__ import annotations

from pathlib import Path

from converter.errors import ConversionError
from converter.layout import converted_layout, to_layout
from converter.runtimes.tensorflow import run_saved_model, signature_specs
from converter.sources.onnx import graph_inputs, onnx2tf_saved_model, rename_io
from converter.verify.compare import compare


def _float_node_outputs(model) -> list[tuple[int, str]]:
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    types = {vi.name: vi.type.tensor_type.elem_type for vi in list(inferred.graph.value_info) + list(inferred.graph.output)}
    return [(i, n.output[0]) for i, n in enumerate(model.graph.node) if n.output and types.get(n.output[0]) == onnx.TensorProto.FLOAT]


def _probe(model, tensor: str, samples: list[dict], tolerance, workdir: Path, verbose: bool):
    """Convert the prefix of ``model`` ending at ``tensor``; return its ParityReport."""
    import onnx
    import onnxruntime as ort

    inferred = onnx.shape_inference.infer_shapes(model)
    names = [i["name"] for i in graph_inputs(model)]
    prefix = rename_io(onnx.utils.Extractor(inferred).extract_model(names, [tensor]), {tensor: "probe_output"})
    session = ort.InferenceSession(prefix.SerializeToString(), providers=["CPUExecutionProvider"])
    used = [i.name for i in session.get_inputs()]
    ref = [{"out": session.run(None, {k: s[k] for k in used})[0]} for s in samples]
    saved = onnx2tf_saved_model(prefix, workdir, verbose=verbose)
    ins, outs = signature_specs(saved)
    feeds = []
    for s in samples:
        feed = {}
        for key, (shape, _) in ins.items():
            src_layout, layout = converted_layout(list(s[key].shape), shape)
            feed[key] = to_layout(s[key], src_layout, layout)
        feeds.append(feed)
    got = run_saved_model(saved, feeds)
    out_key = next(iter(outs))
    cand = []
    for r, g in zip(ref, got):
        src_layout, layout = converted_layout(list(r["out"].shape), list(g[out_key].shape))
        cand.append({"out": to_layout(g[out_key], layout, src_layout)})
    return compare("onnxruntime", ref, "tensorflow", cand, tolerance)


def _tensorflow_run_errors() -> tuple:
    import tensorflow as tf

    return (tf.errors.OpError,)


def locate_divergence(model, samples: list[dict], tolerance, workdir, verbose: bool = False) -> dict | None:
    """Find the first node whose output TensorFlow computes out of tolerance.

    Args:
        model: the ONNX model onnx2tf converted (folded, passes applied).
        samples: inputs keyed by the model's input names (source layout).
        tolerance: the conversion's ``Tolerance``.
        workdir: scratch folder for the probe conversions.

    Returns:
        ``{"node", "op", "max_abs", "probes"}``, or ``None`` when every probe
        converts within tolerance (the difference is outside onnx2tf's graph).
    """
    candidates = _float_node_outputs(model)
    lo, hi, found, probes = 0, len(candidates) - 1, None, 0
    while lo <= hi:
        mid = (lo + hi) // 2
        index, tensor = candidates[mid]
        probes += 1
        try:
            report = _probe(model, tensor, samples, tolerance, Path(workdir) / f"probe{probes}", verbose)
            ok = report.ok
        except (ConversionError, *_tensorflow_run_errors()):
            # A prefix onnx2tf cannot convert, or whose SavedModel fails to run, diverged there;
            # any other exception is a bug and surfaces.
            report, ok = None, False
        if ok:
            lo = mid + 1
        else:
            node = model.graph.node[index]
            err = next(iter(report.outputs.values())).max_abs if report else float("nan")
            found = {"node": node.name or tensor, "op": node.op_type, "max_abs": err}
            hi = mid - 1
    if found is not None:
        found["probes"] = probes
    return found
