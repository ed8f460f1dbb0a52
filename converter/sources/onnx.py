"""ONNX source: read and check a model, fold it, run onnx2tf in a child process.

Example:
    >>> model = read_onnx("model.onnx")
    >>> model = fold_constants(model)
    >>> onnx2tf_saved_model(model, workdir)  # -> workdir/onnx2tf/ (a SavedModel)
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from converter.calibration import write_calibration_file
from converter.errors import ConversionError, InputError, UnsupportedOpsError
from converter.logs import log, subprocess_env
from converter.model import TensorSpec
from converter.sources.base import SourceModel, sanitize_names
from converter.sources.onnx_compat import all_nodes, rename_in_graph
from converter.sources.onnx_constant_outputs import constant_signature, split_constant_outputs
from converter.sources.onnx_control_flow import copy_outer_initializers_into_branches, specialise_scalar_ifs
from converter.sources.onnx_functions import onnx2tf_op_types, wants_expansion
from converter.sources.onnx_layout import layout_onnx2tf_options
from converter.sources.onnx_passes import run_passes
from converter.sources.onnx2tf_failure import explain_failure, keep_log
from converter.sources.onnx_shapes import _ONNX_DTYPES, dynamic_dims, fix_dynamic_dims, npz_scalars, npz_shapes, set_input_shapes, static_shape_nodes


__all__ = ["read_onnx", "fold_constants", "onnx2tf_saved_model", "set_input_shapes", "load_onnx_source", "OnnxSource"]


def read_onnx(path):
    """Load an ONNX file with its external data, refusing data outside its folder.

    Raises:
        InputError: empty, truncated or non-ONNX file; external data that escapes
            the model's folder or is missing; a model the ONNX checker rejects.
    """
    import onnx
    from onnx.external_data_helper import load_external_data_for_model, uses_external_data

    path = Path(path)
    data = _read_bytes(path)
    try:
        model = onnx.load_model_from_string(data)
    except Exception as e:
        raise InputError(
            f"Expected an ONNX model file. Received: '{path}' ({len(data)} bytes, starts with "
            f"{data[:8].hex(' ')}), which does not parse as ONNX: {_first_line(e)}"
        ) from None
    if not model.graph.node and not model.graph.output:
        raise InputError(f"Expected an ONNX model file. Received: '{path}' holds no graph (truncated or not ONNX)")
    folder = path.parent.resolve()
    bad = []
    for tensor in _all_tensors(model.graph):
        if uses_external_data(tensor):
            location = next((e.value for e in tensor.external_data if e.key == "location"), "")
            target = (folder / location).resolve()
            if Path(location).is_absolute() or not target.is_relative_to(folder):
                bad.append(f"{tensor.name} -> '{location}' (outside the model's folder)")
            elif not target.is_file():
                bad.append(f"{tensor.name} -> '{location}' (file not found)")
    if bad:
        raise InputError(f"External data of '{path}' refused:\n  " + "\n  ".join(bad))
    try:
        load_external_data_for_model(model, str(folder))
        onnx.checker.check_model(model, full_check=False)
    except Exception as e:
        raise InputError(f"'{path}' is not a valid ONNX model: {_first_line(e)}") from None
    return model


def _read_bytes(path: Path) -> bytes:
    if not path.is_file():
        raise InputError(f"Expected an ONNX model file. Received: '{path}' (not found)")
    data = path.read_bytes()
    if not data:
        raise InputError(f"Expected an ONNX model file. Received: '{path}' (empty file)")
    return data


def _first_line(e: Exception) -> str:
    text = str(e).strip() or type(e).__name__
    return text.splitlines()[0][:300]


def _all_tensors(graph):
    yield from graph.initializer
    for node in graph.node:
        for attr in node.attribute:
            if attr.t.ByteSize():
                yield attr.t
            for g in list(attr.graphs) + ([attr.g] if attr.g.ByteSize() else []):
                yield from _all_tensors(g)


def graph_inputs(model) -> list[dict]:
    """Inputs that are not initializers: name, shape (``None`` where dynamic), dtype, and
    dim_names (the ``dim_param`` of each dynamic dim, else ``None``)."""
    inits = {i.name for i in model.graph.initializer}
    result = []
    for i in model.graph.input:
        if i.name in inits:
            continue
        t = i.type.tensor_type
        shape = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
        names = [None if d.HasField("dim_value") else (d.dim_param or None) for d in t.shape.dim]
        result.append({"name": i.name, "shape": shape, "dtype": _ONNX_DTYPES.get(t.elem_type, str(t.elem_type)), "dim_names": names})
    return result


def graph_outputs(model) -> list[dict]:
    """Graph outputs: name, shape (``None`` where dynamic or unknown), dtype."""
    result = []
    for o in model.graph.output:
        t = o.type.tensor_type
        shape = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
        result.append({"name": o.name, "shape": shape, "dtype": _ONNX_DTYPES.get(t.elem_type, str(t.elem_type))})
    return result


def check_supported_ops(model, expandable_ok: bool = True) -> None:
    """Raise one error listing every op onnx2tf has no converter for.

    Args:
        model: the ``onnx.ModelProto``.
        expandable_ok: accept ops the ``expand_functions`` pass replaces by their ONNX
            function bodies (``False`` after the passes ran, or when that pass is disabled).

    Raises:
        UnsupportedOpsError: op type -> the nodes where it occurs.
    """
    known = onnx2tf_op_types()
    versions = {("" if o.domain == "ai.onnx" else o.domain): o.version for o in model.opset_import}
    missing: dict[str, list[str]] = {}
    for node in all_nodes(model.graph):
        domain = node.domain or "ai.onnx"
        if expandable_ok and wants_expansion(node, versions):
            continue
        if domain not in ("ai.onnx", "ai.onnx.ml") or node.op_type not in known:
            key = node.op_type if domain == "ai.onnx" else f"{domain}.{node.op_type}"
            missing.setdefault(key, []).append(node.name or f"<unnamed {node.op_type}>")
    if missing:
        raise UnsupportedOpsError("onnx2tf 1.28 (the ONNX -> TensorFlow converter)", missing)


def fold_constants(model):
    """Fold constant subgraphs into initializers (onnxsim), keeping dynamic dims.

    Before::  ConstantOfShape -> Mul -> Conv.W      After::  initializer -> Conv.W

    onnx2tf fails on weights computed by ``ConstantOfShape`` ("axes don't match
    array"), which old model-zoo files and PaddlePaddle exports contain.

    Raises:
        ConversionError: onnxsim could not produce an equivalent model.
    """
    import onnxsim

    try:
        simplified, ok = onnxsim.simplify(model, check_n=0, skip_shape_inference=False)
    except Exception as e:
        raise ConversionError(f"Folding constants (onnxsim) failed: {_first_line(e)}", stage="fold") from None
    if not ok:
        raise ConversionError("Folding constants (onnxsim) produced a model it could not validate", stage="fold")
    return simplified


def onnx2tf_saved_model(model, workdir: Path, keep_layout: bool = False, verbose: bool = False, log_stem: str = "model") -> Path:
    """Convert a (folded) ONNX model to a SavedModel with onnx2tf in a child process.

    Args:
        model: the ``onnx.ModelProto`` (external data already loaded).
        workdir: a private folder: onnx2tf's working directory and output.
        keep_layout: keep NCHW image inputs instead of switching to NHWC.
        verbose: stream onnx2tf's own log.
        log_stem: names the kept log of a failed run (``cache_root()/logs/onnx2tf-<stem>-….log``).

    Returns:
        The SavedModel folder onnx2tf wrote.

    Raises:
        ConversionError: onnx2tf failed; the message names the node, its shapes, the
            transferjs options that can help, and the kept full log.
    """
    import onnx


    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    write_calibration_file(workdir)
    onnx_path = workdir / "model.onnx"
    onnx.save_model(model, str(onnx_path), save_as_external_data=model.ByteSize() > 1_900_000_000)
    out = workdir / "onnx2tf"
    kwargs = {
        "input_onnx_file_path": str(onnx_path),
        "output_folder_path": str(out),
        "not_use_onnxsim": True,  # fold_constants already ran
        "verbosity": "info" if verbose else "error",
        # The ExportArchive save path: about 3x faster than onnx2tf's default
        # tf.saved_model.save of a Keras model (28 s -> 9 s on EfficientNet-Lite0).
        # Outputs come out as output_0, output_1, … in graph order; see rename_signature.
        "output_signaturedefs": True,
        # A grouped Conv (1 < group < channels) becomes one Conv2D with a short filter,
        # which TensorFlow runs and TF.js refuses; split into per-group convs instead.
        "disable_group_convolution": True,
    }
    if keep_layout:
        kwargs["keep_ncw_or_nchw_or_ncdhw_input_names"] = [i["name"] for i in graph_inputs(model)]
    kwargs.update(recurrent_onnx2tf_options(model))
    kwargs.update(layout_onnx2tf_options(model, kwargs.get("keep_shape_absolutely_input_names", ())))
    # An empty replacement file: after an error onnx2tf otherwise searches parameter
    # replacements for minutes, which rescued none of the real models measured.
    (workdir / "no_replacements.json").write_text(json.dumps({"format_version": 1, "operations": []}))
    kwargs["param_replacement_file"] = str(workdir / "no_replacements.json")
    req, res = workdir / "onnx2tf_request.json", workdir / "onnx2tf_result.json"
    req.write_text(json.dumps(kwargs))
    log_path = workdir / "onnx2tf.log"
    with open(log_path, "w") as log_file:
        child = subprocess.Popen(
            [sys.executable, "-m", "converter.sources.onnx2tf_runner", str(req), str(res)],
            cwd=workdir, env=subprocess_env(verbose), stdout=None if verbose else log_file, stderr=subprocess.STDOUT, text=True)
        # The caller needs TensorFlow next (the signature, then parity): importing it here,
        # while the child imports its own and converts, overlaps the two ~5 s imports
        # (EfficientNet-Lite0's to_saved_model: 13.6 s -> see BENCHMARKS.md).
        try:
            import tensorflow  # noqa: F401
        finally:
            child.wait()
    output = log_path.read_text()
    verdict = json.loads(res.read_text()) if res.exists() else {"ok": False, "error": f"exit status {child.returncode}"}
    if not verdict["ok"] or not (out / "saved_model.pb").exists():
        kept = keep_log(output + "\n" + verdict.get("traceback", ""), log_stem)
        raise ConversionError(explain_failure(model, verdict, output, kept, dynamic_dims(model)))
    log.debug("onnx2tf wrote %s", out)
    return out


RECURRENT_OPS = ("LSTM", "GRU", "RNN")


def recurrent_nodes(model) -> dict[str, list[str]]:
    """``{op type: node names}`` of the ONNX recurrent ops (LSTM, GRU, RNN) in the graph."""
    found: dict[str, list[str]] = {}
    for node in all_nodes(model.graph):
        if node.op_type in RECURRENT_OPS:
            found.setdefault(node.op_type, []).append(node.name or f"<unnamed {node.op_type}>")
    return found


def recurrent_onnx2tf_options(model) -> dict:
    """onnx2tf options a graph with LSTM/GRU/RNN needs; none for other graphs.

    onnx2tf's Keras RNN layers refuse an initial state whose shape it permuted
    ("initial_state ... not compatible with cell.state_size"): sequence and state
    inputs (rank <= 3: [batch, time, features], [layers, batch, hidden]) keep their
    shape as is. With static shapes the recurrence is unrolled into plain MatMuls; with
    a dynamic input dim (streaming audio: any number of frames) it stays a loop
    (a ``While`` that TF.js runs in ``executeAsync``), as unrolling needs a known length.
    """
    if not recurrent_nodes(model):
        return {}
    keep = [i["name"] for i in graph_inputs(model) if len(i["shape"]) <= 3]
    return {"enable_rnn_unroll": not dynamic_dims(model), **({"keep_shape_absolutely_input_names": keep} if keep else {})}


def index_input_ranges(model) -> dict[str, tuple[int, int]]:
    """Valid ranges of integer inputs that index a table (token ids into an embedding).

    An input feeding ``Gather``'s indices over an initializer of N rows accepts [0, N).
    """
    inits = {i.name: i for i in model.graph.initializer}
    ranges = {}
    for node in model.graph.node:
        if node.op_type == "Gather" and len(node.input) == 2 and node.input[0] in inits:
            rows = inits[node.input[0]].dims[0]
            ranges[node.input[1]] = (0, int(rows))
    return ranges


def image_layout(shape: list, dtype: str) -> str | None:
    """``"NCHW"`` for a 4-D float tensor whose dim 1 looks like channels (1, 3 or 4)."""
    if len(shape) == 4 and dtype.startswith("float") and shape[1] in (1, 3, 4):
        return "NCHW"
    return None


def rename_io(model, mapping: dict[str, str]):
    """Rename graph inputs/outputs (and every reference to them) in place."""
    if all(k == v for k, v in mapping.items()):
        return model

    rename_in_graph(model.graph, mapping)
    return model


def input_specs(model) -> list[TensorSpec]:
    """The ``TensorSpec`` of each graph input (``None`` where a dim is dynamic, named by its ``dim_param``)."""
    ranges = index_input_ranges(model)
    return [TensorSpec(name=i["name"], shape=i["shape"], dtype=i["dtype"], layout=image_layout(i["shape"], i["dtype"]),
                       value_range=ranges.get(i["name"]), dim_names=tuple(i["dim_names"]) if any(i["dim_names"]) else None)
            for i in graph_inputs(model)]


class OnnxSource(SourceModel):
    """An ONNX model: runs in onnxruntime, converts through onnx2tf.

    Dynamic input dims stay dynamic; when onnx2tf cannot convert the graph so (or it
    holds ops that need static shapes), they are sized by ``fix_dynamic_dims`` from
    ``sample_shapes`` or the model's metadata, and the conversion runs again.

    Example:
        >>> src = load_onnx_source("model.onnx")
        >>> src.run(samples)
    """

    def __init__(self, model, path=None, fmt: str = "onnx", details: dict | None = None, sample_shapes=None, batch="auto"):
        opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
        outputs = graph_outputs(model)
        super().__init__(fmt, input_specs(model), [o["name"] for o in outputs], path, {"opset": opset, **(details or {})},
                         runtime="onnxruntime", output_shapes={o["name"]: o["shape"] for o in outputs})
        self.model = model
        self.sample_shapes, self.batch = sample_shapes, batch
        self._session = None
        self.converted_onnx = None  # the ONNX graph onnx2tf got, set by to_saved_model
        self.converted_names: dict[str, str] = {}

    @property
    def bisectable_graph(self):
        return None if self.converted_onnx is None else (self.converted_onnx, self.converted_names)

    def run(self, samples):
        import onnxruntime as ort

        if self._session is None:
            opts = ort.SessionOptions()
            opts.log_severity_level = 4  # errors raise anyway; sample_dim_size expects some (an input too short)
            self._session = ort.InferenceSession(self.model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        return [dict(zip(self.output_names, self._session.run(self.output_names, s))) for s in samples]

    def to_saved_model(self, workdir, keep_layout=False, verbose=False, disabled_passes=()):
        workdir = Path(workdir)
        static_nodes = static_shape_nodes(self.model)
        reason = None
        if not dynamic_dims(self.model):
            return self._convert(workdir, keep_layout, verbose, disabled_passes)
        if static_nodes:
            reason = "onnx2tf converts " + ", ".join(static_nodes[:3]) + " only with static input shapes"
        else:
            try:
                return self._convert(workdir / "dynamic", keep_layout, verbose, disabled_passes)
            except ConversionError as e:
                reason = "with dynamic input dims " + str(e).splitlines()[0].rstrip(":")
        fixed = fix_dynamic_dims(self.model, self.sample_shapes, reason, keep_batch=self.batch == "dynamic")
        self.details["fixed_input_shapes"] = fixed
        self.inputs, self._session = input_specs(self.model), None
        return self._convert(workdir / "static", keep_layout, verbose, disabled_passes)

    def _convert(self, workdir, keep_layout, verbose, disabled_passes):
        import onnx

        names = [i.name for i in self.inputs] + self.output_names
        mapping = sanitize_names(names)
        model = rename_io(onnx.ModelProto.FromString(self.model.SerializeToString()), mapping)
        check_supported_ops(model)
        model = fold_constants(model)
        check_supported_ops(model)  # folding can fuse ops back into ones onnx2tf lacks (RMSNormalization)

        model, copied = copy_outer_initializers_into_branches(model)
        model, self.details["onnx_passes"] = run_passes(model, disabled_passes)
        check_supported_ops(model, expandable_ok=False)  # what expand_functions left (or was disabled for)
        if copied:
            self.details["onnx_passes"] = {**self.details["onnx_passes"], "copy_outer_initializers_into_branches": copied}
        self.converted_onnx, self.converted_names = model, mapping
        stem = self.path.stem if self.path else "model"
        model, constants = split_constant_outputs(model)
        if constants:
            self.details["constant_outputs"] = sorted(constants)
        raw = onnx2tf_saved_model(model, workdir, keep_layout=keep_layout, verbose=verbose, log_stem=stem)
        saved = constant_signature(raw, Path(workdir) / "renamed", model, constants)
        return saved, {v: k for k, v in mapping.items()}


def load_onnx_source(path, input_shapes=None, batch: str = "auto", sample_file=None) -> OnnxSource:
    """Read an ONNX file into an ``OnnxSource``; ``--input-shape`` sizes are applied, other dynamic dims kept.

    The ``--sample`` file's shapes size the dynamic dims only if the graph needs static
    shapes; the report's ``source.fixed_input_shapes`` then says which and why.
    """
    model = read_onnx(path)
    fixed = specialise_scalar_ifs(model, npz_scalars(sample_file) if sample_file else {})
    sample_shapes = npz_shapes(sample_file, graph_inputs(model)) if sample_file else None
    model = set_input_shapes(model, input_shapes, batch)
    details = {"fixed_inputs": {k: v["value"] for k, v in fixed.items()},
               "fixed_inputs_from": {k: f"{v['from']} (If {', '.join(v['if_nodes'])})" for k, v in fixed.items()}} if fixed else None
    return OnnxSource(model, Path(path), details=details, sample_shapes=sample_shapes, batch=batch)
