"""Run the converter over ONNX's backend node tests; publish the pass rate per op.

The ``onnx`` wheel ships ``onnx/backend/test/data/node/<case>/``: a one-op model
(``model.onnx``) with inputs and expected outputs (``test_data_set_0/*.pb``).
Each case goes through the project's own ONNX path (``read_onnx``,
``set_input_shapes`` with the test's shapes, then the one product method
``OnnxSource.to_saved_model``: op check, folding, the ONNX passes, onnx2tf,
signature renaming; then ``run_saved_model``) and the product's comparator
(``converter.verify.compare``), and passes only if every output matches the expected one
(atol 1e-4, rtol 1e-3 for floats; integers and booleans exactly). Weights and
attribute-like inputs (Conv ``W``, ``Reduce*`` ``axes``…) become initializers, as
in an exported model (``CONSTANT_INPUTS``; ``--as-is`` feeds them at run time).

A child process per model would spend ~5 s importing TensorFlow, so long-lived
worker processes each convert many cases in turn, running onnx2tf's runner
in-process (``_InProcessSubprocess``); the parent restarts a worker that hangs
past the per-case timeout or dies.

Usage::

    python bench/onnx_conformance.py [--ops Relu,Conv] [--limit N] [--jobs 1]
        [--out docs/onnx-conformance.md] [--json bench/results/onnx_conformance.json]

Example:
    >>> results = run_cases(["test_relu", "test_conv_with_strides_padding"])
    >>> [r["status"] for r in results]
    ['passed', 'passed']
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import queue
import re
import select
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script, ``converter`` lives one folder up
    sys.path.insert(0, str(ROOT))

from converter.verify.tolerance import TOLERANCES  # noqa: E402  the one tolerance table

TOLERANCE = TOLERANCES["conformance"]
ATOL, RTOL = TOLERANCE.atol, TOLERANCE.rtol
CASE_TIMEOUT_S = 60
STARTUP_TIMEOUT_S = 300  # importing TensorFlow and onnx2tf on a busy machine
RECYCLE_AFTER = 150  # cases per worker before a fresh one: onnx2tf and TF keep global state

# ONNX element types TensorFlow (or numpy) cannot hold: string, complex, bfloat16,
# the float8 / 4-bit / float4 families and anything newer.
_UNSUPPORTED_DTYPES = {
    8: "string", 14: "complex64", 15: "complex128", 16: "bfloat16", 17: "float8e4m3fn", 18: "float8e4m3fnuz",
    19: "float8e5m2", 20: "float8e5m2fnuz", 21: "uint4", 22: "int4", 23: "float4e2m1", 24: "float8e8m0",
    25: "uint2", 26: "int2",
}
_TRAINING_DOMAINS = ("ai.onnx.preview.training",)

# Inputs (by the op schema's input name) that exported models carry as initializers:
# layer weights, and values that were attributes in older opsets (axes, shape, pads…).
# The node tests feed them at run time, which onnx2tf rejects for most ops (Conv's W,
# Reduce*'s axes); frozen, each case looks like the op does inside a real model.
CONSTANT_INPUTS = {
    "Conv": {"W", "B"}, "ConvTranspose": {"W", "B"}, "DeformConv": {"W", "B"},
    "ConvInteger": {"w", "x_zero_point", "w_zero_point"},
    "QLinearConv": {"x_scale", "x_zero_point", "w", "w_scale", "w_zero_point", "y_scale", "y_zero_point", "B"},
    "QLinearMatMul": {"a_scale", "a_zero_point", "b_scale", "b_zero_point", "y_scale", "y_zero_point"},
    "MatMulInteger": {"a_zero_point", "b_zero_point"},
    "QuantizeLinear": {"y_scale", "y_zero_point"}, "DequantizeLinear": {"x_scale", "x_zero_point"},
    "BatchNormalization": {"scale", "B", "input_mean", "input_var"},
    "InstanceNormalization": {"scale", "B"}, "LayerNormalization": {"Scale", "B"},
    "GroupNormalization": {"scale", "bias"}, "RMSNormalization": {"scale"}, "PRelu": {"slope"},
    "GRU": {"W", "R", "B"}, "LSTM": {"W", "R", "B", "P"}, "RNN": {"W", "R", "B"},
    "Squeeze": {"axes"}, "Unsqueeze": {"axes"}, "Pad": {"pads", "constant_value", "axes"},
    "Slice": {"starts", "ends", "axes", "steps"}, "Split": {"split"}, "Tile": {"repeats"},
    "Expand": {"shape"}, "Reshape": {"shape"}, "Resize": {"roi", "scales", "sizes"}, "Upsample": {"scales"},
    "TopK": {"K"}, "Clip": {"min", "max"}, "OneHot": {"depth", "values"}, "Trilu": {"k"}, "CumSum": {"axis"},
    "Dropout": {"ratio"}, "CenterCropPad": {"shape"}, "Col2Im": {"image_shape", "block_shape"},
    "MaxUnpool": {"output_shape"}, "NonMaxSuppression": {"max_output_boxes_per_class", "iou_threshold", "score_threshold"},
    "DFT": {"dft_length", "axis"}, "STFT": {"frame_step", "window", "frame_length"}, "AffineGrid": {"size"},
}
_REDUCE_AXES = {"axes"}  # every Reduce* op (opset 18 moved axes to an input)


def node_test_root() -> Path:
    """The folder of ONNX's backend node tests inside the installed ``onnx`` wheel.

    Example:
        >>> node_test_root().name
        'node'
    """
    import onnx

    return Path(onnx.__file__).parent / "backend" / "test" / "data" / "node"


def _resolve(case) -> Path:
    path = Path(case)
    return path if path.is_dir() else node_test_root() / str(case)


# --- what a case is -------------------------------------------------------------------


def _squash(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _node_label(node) -> str:
    domain = node.domain or "ai.onnx"
    return node.op_type if domain == "ai.onnx" else f"{domain}.{node.op_type}"


def _op_by_name(case_name: str) -> str | None:
    # Last resort: the longest ONNX op name the test name starts with.
    import onnx.defs

    key = _squash(case_name.removeprefix("test_"))
    names = {s.name for s in onnx.defs.get_all_schemas_with_history()}
    hits = [n for n in names if key.startswith(_squash(n))]
    return max(hits, key=len) if hits else None


def case_op(case_dir: Path) -> tuple[str, bool]:
    """(op type the case tests, whether it is an ``_expanded`` function body).

    A one-node model names its op. An ``*_expanded[_verN]`` case is the op's
    function body inlined into primitives; it is labelled with the op of its
    one-node sibling (``test_sce_mean_expanded`` -> ``SoftmaxCrossEntropyLoss``).

    Example:
        >>> case_op(node_test_root() / "test_conv_with_strides_padding")
        ('Conv', False)
    """
    base = _base_name(case_dir.name)
    model = _op_model(case_dir)
    if len(model.graph.node) == 1:
        return _node_label(model.graph.node[0]), base != case_dir.name
    return _op_by_name(base) or base.removeprefix("test_"), base != case_dir.name


def _base_name(case_name: str) -> str:
    return re.sub(r"_expanded(_ver\d+)?$", "", case_name)


def _op_model(case_dir: Path):
    # An expanded case's op is the one node of its sibling, whose inputs have the same names.
    import onnx

    sibling = case_dir.parent / _base_name(case_dir.name)
    source = sibling if sibling.is_dir() else case_dir
    return onnx.load(str(source / "model.onnx"), load_external_data=False)


def constant_inputs(case_dir: Path) -> list[str]:
    """Graph inputs of the case that a real model would hold as constants (see CONSTANT_INPUTS).

    Example:
        >>> constant_inputs(node_test_root() / "test_conv_with_strides_padding")
        ['W']
    """
    import onnx.defs

    model = _op_model(case_dir)
    if len(model.graph.node) != 1:
        return []
    node = model.graph.node[0]
    wanted = _REDUCE_AXES if node.op_type.startswith("Reduce") else CONSTANT_INPUTS.get(node.op_type, set())
    opset = next((o.version for o in model.opset_import if o.domain == node.domain), None)
    try:
        schema = onnx.defs.get_schema(node.op_type, opset or 1, node.domain)
    except onnx.defs.SchemaError:
        return []
    formal = [i.name for i in schema.inputs]
    graph_inputs = {i.name for i in model.graph.input}
    return [name for k, name in enumerate(node.input)
            if k and name in graph_inputs and formal[min(k, len(formal) - 1)] in wanted]


def _value_kinds(model):
    graph = model.graph
    for vi in list(graph.input) + list(graph.output):
        kind = vi.type.WhichOneof("value")
        yield kind, vi.type.tensor_type.elem_type if kind == "tensor_type" else None
    for init in graph.initializer:
        yield "tensor_type", init.data_type


def skip_reason(case_dir: Path) -> str | None:
    """Why a case cannot run through TensorFlow at all, or ``None``.

    Skipped: dtypes TensorFlow or numpy cannot hold (string, complex, bfloat16,
    float8, 4-bit), sequence/optional/map values, and training-mode ops.

    Example:
        >>> skip_reason(node_test_root() / "test_equal_string")
        'dtype string'
    """
    import onnx

    model = onnx.load(str(case_dir / "model.onnx"), load_external_data=False)
    for kind, elem in _value_kinds(model):
        if kind != "tensor_type":
            return kind.removesuffix("_type") + " value"
        if elem in _UNSUPPORTED_DTYPES:
            return f"dtype {_UNSUPPORTED_DTYPES[elem]}"
    for node in model.graph.node:
        if node.domain in _TRAINING_DOMAINS:
            return "training op"
        if any(a.name == "training_mode" and a.i for a in node.attribute):
            return "training mode"
    if "training" in case_dir.name:  # Dropout's training_mode is an input, not an attribute
        return "training mode"
    return None


def describe_case(case) -> dict:
    """The case's name, op label and skip reason, without converting anything.

    Example:
        >>> describe_case("test_relu")
        {'case': 'test_relu', 'op': 'Relu', 'expanded': False, 'constant_inputs': [], 'skip': None}
    """
    case_dir = _resolve(case)
    op, expanded = case_op(case_dir)
    return {"case": case_dir.name, "op": op, "expanded": expanded, "constant_inputs": constant_inputs(case_dir),
            "skip": skip_reason(case_dir)}


# --- one case, in a process that may import TensorFlow ----------------------------------


class CaseFailure(Exception):
    """A case failed at ``stage`` (load, shapes, unsupported, fold, passes, convert, run, mismatch)."""

    def __init__(self, stage: str, message: str):
        super().__init__(message)
        self.stage = stage


def load_test_data(case_dir: Path, model) -> tuple[dict, dict]:
    """``({input name: array}, {output name: array})`` of ``test_data_set_0``.

    The ``.pb`` files are numbered in the order of the graph's inputs (those that
    are not initializers) and outputs.
    """
    import onnx
    from onnx import numpy_helper

    data = case_dir / "test_data_set_0"
    inits = {i.name for i in model.graph.initializer}
    in_names = [i.name for i in model.graph.input if i.name not in inits]
    out_names = [o.name for o in model.graph.output]

    def read(prefix, names):
        arrays = {}
        for k, name in enumerate(names):
            path = data / f"{prefix}_{k}.pb"
            if path.exists():  # an optional input left out has no file
                arrays[name] = numpy_helper.to_array(onnx.load_tensor(str(path)))
        return arrays

    return read("input", in_names), read("output", out_names)


def prepare_model(case_dir: Path, inputs: dict, constants=()):
    """Read a case as a user's model: weights frozen, every input's shape fixed (``--input-shape``).

    Args:
        case_dir: the case folder.
        inputs: every input's test array, by ONNX name.
        constants: inputs to turn into initializers (their test arrays become the values).

    Returns:
        The ``onnx.ModelProto``, ready for ``OnnxSource``.

    Raises:
        CaseFailure: stage ``load`` or ``shapes``.
    """
    from converter.errors import InputError
    from converter.sources.onnx import read_onnx, set_input_shapes

    try:
        model = read_onnx(case_dir / "model.onnx")
    except InputError as e:
        raise CaseFailure("load", str(e)) from None
    freeze_inputs(model, {name: inputs[name] for name in constants if name in inputs})
    feeds = {k: v for k, v in inputs.items() if k not in constants}
    _declare_missing_shapes(model, feeds)
    try:
        return set_input_shapes(model, {k: list(v.shape) for k, v in feeds.items()}, batch="static")
    except InputError as e:
        raise CaseFailure("shapes", str(e)) from None


def freeze_inputs(model, values: dict) -> None:
    """Turn graph inputs into initializers holding ``values`` (in place).

    Example:
        >>> freeze_inputs(model, {"W": np.ones((1, 1, 3, 3), np.float32)})
    """
    from onnx import numpy_helper

    keep = [i for i in model.graph.input if i.name not in values]
    del model.graph.input[:]
    model.graph.input.extend(keep)
    model.graph.initializer.extend(numpy_helper.from_array(v, name) for name, v in values.items())


def _declare_missing_shapes(model, inputs: dict) -> None:
    # A few node tests leave an input's shape out entirely; give it the data's rank
    # so set_input_shapes can fill in the dims.
    for inp in model.graph.input:
        t = inp.type.tensor_type
        if inp.name in inputs and not t.HasField("shape"):
            for _ in inputs[inp.name].shape:
                t.shape.dim.add()


def convert_model(model, workdir: Path) -> tuple[Path, dict]:
    """Convert by the product's one method, ``OnnxSource.to_saved_model``.

    Args:
        model: the case's model from ``prepare_model``.
        workdir: an empty folder for the ONNX file and the SavedModels.

    Returns:
        (the SavedModel, {ONNX name: signature key}).

    Raises:
        CaseFailure: stage ``unsupported``, ``fold``, ``passes`` or ``convert`` (the error's own stage).
    """
    from converter.errors import ConversionError, UnsupportedOpsError
    from converter.sources.onnx import OnnxSource

    try:
        saved, names = OnnxSource(model, batch="static").to_saved_model(workdir)
    except UnsupportedOpsError as e:
        raise CaseFailure("unsupported", ", ".join(e.ops)) from None
    except ConversionError as e:
        raise CaseFailure(e.stage, str(e).removeprefix("onnx2tf could not convert the model: ").split("\n")[0]) from None
    except Exception as e:  # rename_signature on a SavedModel onnx2tf got wrong
        raise CaseFailure("convert", f"{type(e).__name__}: {_first_line(e)}") from None
    return saved, {name: key for key, name in names.items()}


class _InProcessSubprocess:
    """Stands in for ``subprocess`` inside ``converter.sources.onnx`` in a worker.

    ``onnx2tf_saved_model`` starts ``python -m converter.sources.onnx2tf_runner REQ RES`` (``Popen``)
    in its workdir; a worker runs that same ``main`` in-process instead, saving the
    ~5 s TensorFlow import per case while every argument stays the project's own.
    """

    PIPE, STDOUT = subprocess.PIPE, subprocess.STDOUT
    _RUNNER = ["-m", "converter.sources.onnx2tf_runner"]

    @classmethod
    def run(cls, cmd, cwd=None, **_ignored):
        from converter.sources import onnx2tf_runner

        if list(cmd[1:3]) != cls._RUNNER:
            raise RuntimeError(f"converter.sources.onnx now runs {cmd[1:3]}, not the onnx2tf runner; update {__file__}")
        previous = os.getcwd()
        os.chdir(cwd)  # onnx2tf finds its calibration file in the cwd
        try:
            code = onnx2tf_runner.main([str(a) for a in cmd[3:]])
        finally:
            os.chdir(previous)
        return subprocess.CompletedProcess(cmd, code, stdout="")

    @classmethod
    def Popen(cls, cmd, cwd=None, **_ignored):  # noqa: N802 (subprocess's name)
        """``run`` at once; ``wait()`` then returns its exit status (the caller's log file stays empty)."""
        return _Finished(cls.run(cmd, cwd=cwd).returncode)


class _Finished:
    """A child that has already ended: what ``_InProcessSubprocess.Popen`` returns."""

    def __init__(self, returncode: int):
        self.returncode = returncode

    def wait(self, timeout=None) -> int:
        return self.returncode


def run_converted(saved: Path, inputs: dict, mapping: dict) -> dict:
    """Run the SavedModel on ONNX-layout inputs (by ONNX name); outputs keyed by ONNX name.

    Inputs go channels-last where the signature's shapes say onnx2tf moved them.

    Raises:
        CaseFailure: stage ``run``.
    """
    from converter.runtimes.tensorflow import run_saved_model, signature_specs
    from converter.layout import converted_layout, to_layout

    keymap = {key: name for name, key in mapping.items()}
    try:
        tf_ins, _ = signature_specs(saved)
        feeds = {}
        for key, (shape, _dtype) in tf_ins.items():
            array = inputs[keymap.get(key, key)]
            feeds[key] = to_layout(array, *converted_layout(list(array.shape), shape))
        missing = sorted(set(inputs) - {keymap.get(k, k) for k in feeds})
        if missing:
            raise CaseFailure("run", f"inputs missing from the signature: {missing}")
        outs = run_saved_model(saved, [feeds])[0]
    except CaseFailure:
        raise
    except Exception as e:  # any TF failure is this case's verdict
        raise CaseFailure("run", f"{type(e).__name__}: {_first_line(e)}") from None
    return {keymap.get(k, k): v for k, v in outs.items()}


def compare_outputs(expected: dict, actual: dict) -> list[str]:
    """Problems of ``actual`` against ``expected`` (empty: all match), by the product's comparator.

    ``converter.verify.compare`` with the table's ``conformance`` rule: floats
    ``|a - e| <= atol + rtol * |e|``, NaN where expected NaN; integers and booleans equal
    (int64 -> int32 is accepted). A channels-last output is first moved back to
    channels-first when its shape says so.

    Example:
        >>> compare_outputs({"y": np.ones(3)}, {"y": np.ones(3) + 1e-6})
        []
    """
    import numpy as np

    from converter.layout import converted_layout, to_layout
    from converter.verify.compare import compare

    moved = {}
    for name, got in actual.items():
        want = expected.get(name)
        got = np.asarray(got)
        moved[name] = got if want is None else to_layout(got, *reversed(converted_layout(list(np.shape(want)), list(got.shape))))
    missing = [f"{name}: missing (the SavedModel returned {sorted(actual)})" for name in expected if name not in actual]
    report = compare("onnx", [{k: np.asarray(v) for k, v in expected.items()}], "tensorflow",
                     [{k: v for k, v in moved.items() if k in expected}], TOLERANCE)
    problems = missing + list(report.problems)
    for o in report.failures():
        if o.name not in actual:
            continue
        problems.append(f"{o.name}: {o.note.strip('()')}" if not o.shape_ok else f"{o.name}: max abs {o.max_abs:.3g} (max rel {o.max_rel:.3g})")
    return problems


def run_case(case, workdir, freeze: bool = True) -> dict:
    """Convert one node test case and compare it with its expected outputs, in-process.

    Args:
        case: a case name (``"test_relu"``) or its folder.
        workdir: an empty folder for the ONNX file and the SavedModel; its parent
            (the cwd) must hold onnx2tf's calibration file.
        freeze: feed weights and attribute-like inputs as constants (``CONSTANT_INPUTS``),
            as a real model holds them; ``False`` feeds every input at run time.

    Returns:
        ``{"case", "status": "passed" | "failed", "stage", "message", "seconds"}``;
        ``stage`` is ``None`` for a pass.

    Example:
        >>> run_case("test_relu", Path("/tmp/case"))["status"]
        'passed'
    """
    case_dir, workdir = _resolve(case), Path(workdir)
    start = time.perf_counter()
    result = {"case": case_dir.name, "status": "passed", "stage": None, "message": ""}
    try:
        import onnx

        inputs, expected = load_test_data(case_dir, onnx.load(str(case_dir / "model.onnx"), load_external_data=False))
        constants = constant_inputs(case_dir) if freeze else []
        saved, mapping = convert_model(prepare_model(case_dir, inputs, constants), workdir)
        actual = run_converted(saved, {k: v for k, v in inputs.items() if k not in constants}, mapping)
        problems = compare_outputs(expected, actual)
        if problems:
            raise CaseFailure("mismatch", "; ".join(problems))
    except CaseFailure as e:
        result.update(status="failed", stage=e.stage, message=str(e)[:500])
    except Exception as e:  # a bug outside the stages above still must not stop the run
        result.update(status="failed", stage="error", message=f"{type(e).__name__}: {_first_line(e)}")
    result["seconds"] = round(time.perf_counter() - start, 3)
    return result


def _first_line(e: Exception) -> str:
    text = str(e).strip() or type(e).__name__
    return text.splitlines()[0][:300]


# --- the worker process -----------------------------------------------------------------


def worker_main() -> int:
    """Serve cases from stdin (one JSON line each) until EOF; answer on the original stdout.

    The cwd is a scratch folder the parent made (and removes): onnx2tf reads its
    calibration file from there. onnx2tf and TensorFlow print to file descriptors
    1 and 2 from Python and C++, so both go to a per-case log; answers use a
    private copy of the original fd 1.
    """
    answers = os.fdopen(os.dup(1), "w", buffering=1)
    home = Path.cwd()
    from converter.calibration import write_calibration_file

    calibration = write_calibration_file(home)
    import tensorflow as tf

    from converter.sources import onnx2tf_runner

    import converter.sources.onnx as onnx_source

    onnx2tf_runner._skip_tflite(tf)
    import onnx2tf  # noqa: F401  import once, here, not inside the first case's timeout

    onnx_source.subprocess = _InProcessSubprocess

    answers.write(json.dumps({"ready": True}) + "\n")
    for line in sys.stdin:
        request = json.loads(line)
        workdir = Path(tempfile.mkdtemp(dir=home))
        # A link, so write_calibration_file finds the file instead of rebuilding it per case.
        os.link(calibration, workdir / calibration.name)
        with _fds_to(workdir / "case.log"):
            result = run_case(request["case"], workdir, request.get("freeze", True))
        if result["stage"] == "convert":
            result["log_tail"] = _log_tail(workdir / "case.log")
        shutil.rmtree(workdir, ignore_errors=True)
        tf.keras.backend.clear_session()
        answers.write(json.dumps(result) + "\n")
    return 0


class _fds_to:
    """Point file descriptors 1 and 2 at ``path`` for the duration of a ``with``."""

    def __init__(self, path: Path):
        self.path = path

    def __enter__(self):
        sys.stdout.flush(), sys.stderr.flush()
        self.saved = os.dup(1), os.dup(2)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(fd, 1), os.dup2(fd, 2)
        os.close(fd)

    def __exit__(self, *exc):
        sys.stdout.flush(), sys.stderr.flush()
        for target, fd in zip((1, 2), self.saved):
            os.dup2(fd, target)
            os.close(fd)


def _log_tail(path: Path, lines: int = 6) -> str:
    text = re.sub(r"\x1b\[[0-9;]*m", "", path.read_text(errors="replace")) if path.exists() else ""
    return "\n".join(line for line in text.strip().splitlines()[-lines:])[:1500]


class Worker:
    """A worker process, restarted when a case hangs, crashes it, or it grows old.

    Example:
        >>> with Worker() as w:
        ...     w.run("test_relu")["status"]
        'passed'
    """

    def __init__(self, timeout: float = CASE_TIMEOUT_S):
        self.timeout = timeout
        self.proc = None
        self.served = 0
        self.stderr = None
        self.home = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _start(self) -> None:
        from converter.logs import subprocess_env

        self.stderr = tempfile.TemporaryFile()
        self.home = tempfile.mkdtemp(prefix="onnx-conformance-")
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--worker"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr, cwd=self.home,
            env={**subprocess_env(), "PYTHONPATH": str(ROOT)}, text=True,
        )
        self.served = 0
        if not isinstance(self._read(STARTUP_TIMEOUT_S), dict):
            self.stderr.seek(0)
            tail = self.stderr.read().decode(errors="replace")[-2000:]
            self.close()
            raise RuntimeError(f"the conformance worker did not start:\n{tail}")

    def _read(self, timeout: float) -> dict | str:
        """The worker's next answer, or ``"timeout"``, or ``"eof"`` (it died)."""
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            return "timeout"
        line = self.proc.stdout.readline()
        return json.loads(line) if line else "eof"

    def run(self, case, freeze: bool = True) -> dict:
        """Run one case in the worker; a hang or crash becomes a failed result."""
        # A worker that died after its last answer (or grew old) is replaced first.
        if self.proc is None or self.proc.poll() is not None or self.served >= RECYCLE_AFTER:
            self.close()
            self._start()
        self.served += 1
        start = time.perf_counter()
        try:
            self.proc.stdin.write(json.dumps({"case": str(case), "freeze": freeze}) + "\n")
            self.proc.stdin.flush()
            result = self._read(self.timeout)
        except BrokenPipeError:
            result = "eof"
        if isinstance(result, dict):
            return result
        self.close(kill=result == "timeout")
        stage, message = ("timeout", f"no answer in {self.timeout:g} s") if result == "timeout" else ("crash", "the worker died")
        return {"case": _resolve(case).name, "status": "failed", "stage": stage, "message": message,
                "seconds": round(time.perf_counter() - start, 3)}

    def close(self, kill: bool = False) -> None:
        """Stop the worker process: EOF on its stdin, or kill (a hung one), then reap it."""
        if self.proc is None:
            return
        try:
            if kill:
                self.proc.kill()
            self.proc.stdin.close()
            self.proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):  # OSError: a broken pipe to a dead worker
            self.proc.kill()
            self.proc.wait()
        self.proc = None
        if self.stderr:
            self.stderr.close()
            self.stderr = None
        shutil.rmtree(self.home, ignore_errors=True)  # a killed worker leaves its cases behind


# --- many cases -------------------------------------------------------------------------


def run_cases(cases, jobs: int = 1, timeout: float = CASE_TIMEOUT_S, progress=None, freeze: bool = True) -> list[dict]:
    """Describe, skip or run every case; one result per case, in the given order.

    Args:
        cases: case names or folders.
        jobs: worker processes running side by side.
        timeout: seconds one case may take before its worker is restarted.
        progress: called with each result as it arrives.
        freeze: feed weights and attribute-like inputs as constants (see ``run_case``).

    Example:
        >>> [r["status"] for r in run_cases(["test_relu", "test_equal_string"])]
        ['passed', 'skipped']
    """
    described = [describe_case(c) for c in cases]
    results: list[dict | None] = [None] * len(described)
    todo: queue.Queue = queue.Queue()
    for i, d in enumerate(described):
        if d["skip"]:
            results[i] = {**d, "status": "skipped", "stage": None, "message": d["skip"], "seconds": 0.0}
            _report(progress, results[i])
        else:
            todo.put(i)
    lock = threading.Lock()

    def drain():
        with Worker(timeout) as worker:
            while True:
                try:
                    i = todo.get_nowait()
                except queue.Empty:
                    return
                result = {**described[i], **worker.run(_resolve(cases[i]), freeze)}
                if not freeze:
                    result["constant_inputs"] = []
                with lock:
                    results[i] = result
                    _report(progress, result)

    threads = [threading.Thread(target=drain) for _ in range(max(1, jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def _report(progress, result) -> None:
    if progress:
        progress(result)


def select_cases(ops: list[str] | None = None, limit: int | None = None) -> list[Path]:
    """Case folders in name order, filtered by op type (expanded bodies included).

    Example:
        >>> [p.name for p in select_cases(["Relu"])][:1]
        ['test_relu']
    """
    cases = sorted(p for p in node_test_root().iterdir() if (p / "model.onnx").exists())
    if ops:
        wanted = {op.lower() for op in ops}
        cases = [p for p in cases if case_op(p)[0].lower() in wanted]
    return cases[:limit] if limit else cases


# --- the report -------------------------------------------------------------------------


def op_row_label(result: dict) -> str:
    """``"Softmax"``, or ``"Softmax (expanded)"`` for an inlined function body."""
    return result["op"] + (" (expanded)" if result.get("expanded") else "")


def summarize(results: list[dict]) -> dict[str, dict]:
    """Per op label: cases, passed, failed, skipped, and counts of each failure stage.

    Example:
        >>> summarize([{"op": "Relu", "status": "passed", "stage": None}])["Relu"]["passed"]
        1
    """
    table: dict[str, dict] = {}
    for r in results:
        row = table.setdefault(op_row_label(r), {"cases": 0, "passed": 0, "failed": 0, "skipped": 0, "stages": {}, "skips": {}})
        row["cases"] += 1
        row[r["status"]] += 1
        if r["status"] == "failed":
            row["stages"][r["stage"]] = row["stages"].get(r["stage"], 0) + 1
        elif r["status"] == "skipped":
            row["skips"][r["message"]] = row["skips"].get(r["message"], 0) + 1
    # Standard ONNX ops by name, then other domains' (``ai.onnx.ml.Binarizer``) after them.
    return dict(sorted(table.items(), key=lambda kv: ("." in kv[0].split(" ")[0], kv[0].lower())))


def library_versions() -> dict:
    """Installed versions of onnx, onnx2tf, onnxsim and tensorflow, for the page's header."""
    from importlib.metadata import PackageNotFoundError, version

    result = {}
    for pkg in ("onnx", "onnx2tf", "onnxsim", "tensorflow"):
        try:
            result[pkg] = version(pkg)
        except PackageNotFoundError:
            result[pkg] = "not installed"
    return result


def _rate(passed: int, run: int) -> str:
    return f"{passed / run:.0%}" if run else "–"


def _stages_text(row: dict) -> str:
    parts = [f"{stage} {n}" for stage, n in sorted(row["stages"].items())]
    parts += [f"skipped: {reason} {n}" for reason, n in sorted(row["skips"].items())]
    return ", ".join(parts)


def render_markdown(results: list[dict], meta: dict) -> str:
    """The Markdown page: header with versions, command and totals, then one row per op.

    ``pass rate`` is passed / (cases - skipped); skipped cases never count as passes.
    """
    table = summarize(results)
    totals = {s: sum(r["status"] == s for r in results) for s in ("passed", "failed", "skipped")}
    ran = totals["passed"] + totals["failed"]
    stages: dict[str, int] = {}
    for r in results:
        if r["status"] == "failed":
            stages[r["stage"]] = stages.get(r["stage"], 0) + 1
    versions = ", ".join(f"{k} {v}" for k, v in meta["versions"].items())
    lines = [
        "# ONNX backend node tests through the converter",
        "",
        "<!-- Generated by bench/onnx_conformance.py; do not edit by hand. -->",
        "",
        f"- Date: {meta['date']}",
        f"- Versions: {versions}",
        f"- Command: `{meta['command']}`",
        f"- Wall time: {meta['wall_seconds'] / 60:.1f} min ({meta['jobs']} worker process(es))",
        f"- Cases: {len(results)}; passed {totals['passed']}, failed {totals['failed']}, skipped {totals['skipped']}",
        f"- **Total pass rate: {_rate(totals['passed'], ran)}** of the {ran} cases run "
        f"({_rate(totals['passed'], len(results))} of all {len(results)} cases)",
        f"- Failure stages: {', '.join(f'{k} {v}' for k, v in sorted(stages.items())) or 'none'}",
        "",
        "Each case is `onnx/backend/test/data/node/<case>`: a model, its inputs and expected outputs. "
        "It goes through the project's ONNX path (`read_onnx`, `set_input_shapes` with the test's input "
        "shapes, then the product's one method `OnnxSource.to_saved_model`: the op check, `fold_constants`, the ONNX "
        "passes (`expand_functions` among them), onnx2tf, `rename_signature`; then `run_saved_model`), is compared by "
        "the product's comparator (`converter.verify.compare`), and passes only if every "
        f"output matches (floats: atol {ATOL:g}, rtol {RTOL:g}; integers and booleans exactly). "
        "Inputs and outputs are moved between NCHW and NHWC where the SavedModel's shapes say onnx2tf did.",
        "",
        (f"Weights and attribute-like inputs (Conv `W`/`B`, normalization scales, `Reduce*` `axes`, `Reshape` "
         f"`shape`, `Pad` `pads`, `Clip` `min`/`max`, … see `CONSTANT_INPUTS`) are fed as initializers holding the "
         f"test's values, as exported models hold them; the node tests feed them at run time, which onnx2tf "
         f"rejects for most of these ops. {meta['constant_cases']} cases ran so."
         if meta.get("constant_inputs", True) else
         "Every input, weights included, is fed at run time as the node test defines it (`--as-is`)."),
        "",
        "Failure stages: `load` (read_onnx refused the file), `shapes` (set_input_shapes), `unsupported` "
        "(no onnx2tf converter for the op, checked before and after folding), `fold` (onnxsim), `passes` "
        "(the project's ONNX passes), `convert` (onnx2tf or the signature renaming failed), `run` (the SavedModel "
        "raised), `mismatch` (wrong values or shape), `timeout` / `crash` (the worker hung or died). "
        "Skipped cases (dtypes TensorFlow cannot hold, sequence/optional values, training mode) are not in "
        "the pass rate. `(expanded)` rows are the op's ONNX function body inlined into primitive ops.",
        "",
        "| op type | cases | passed | pass rate | failure stages |",
        "|---|---:|---:|---:|---|",
    ]
    for label, row in table.items():
        ran_here = row["passed"] + row["failed"]
        lines.append(f"| {label} | {row['cases']} | {row['passed']} | {_rate(row['passed'], ran_here)} | {_stages_text(row)} |")
    return "\n".join(lines) + "\n"


# --- command line -----------------------------------------------------------------------


def _parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ops", help="comma-separated op types to run (default: all)")
    p.add_argument("--limit", type=int, help="run only the first N cases (after --ops)")
    p.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--timeout", type=float, default=CASE_TIMEOUT_S, help="seconds per case (default 60)")
    p.add_argument("--out", default="docs/onnx-conformance.md", help="the Markdown table")
    p.add_argument("--json", default="bench/results/onnx_conformance.json", help="the per-case results")
    p.add_argument("--as-is", action="store_true", help="feed every input at run time, weights and axes included")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def _print_progress(total: int):
    done = [0]

    def show(result):
        done[0] += 1
        detail = f"{result['stage']}: {result['message'][:120]}" if result["status"] == "failed" else result["message"]
        print(f"[{done[0]}/{total}] {result['case']} {result['status']} {detail}".rstrip(), file=sys.stderr, flush=True)

    return show


def main(argv: list[str] | None = None) -> int:
    """Run the selected cases, write the Markdown table and the JSON; 0 unless it broke."""
    args = _parse(sys.argv[1:] if argv is None else argv)
    if args.worker:
        return worker_main()
    from transferjs.console import configure

    configure()
    cases = select_cases(args.ops.split(",") if args.ops else None, args.limit)
    start = time.perf_counter()
    results = run_cases(cases, jobs=args.jobs, timeout=args.timeout, progress=_print_progress(len(cases)), freeze=not args.as_is)
    meta = {
        "date": datetime.date.today().isoformat(),
        "versions": library_versions(),
        "command": "python bench/onnx_conformance.py " + shlex.join(sys.argv[1:] if argv is None else argv),
        "wall_seconds": round(time.perf_counter() - start, 1),
        "jobs": args.jobs,
        "constant_inputs": not args.as_is,
        "constant_cases": sum(bool(r.get("constant_inputs")) and r["status"] != "skipped" for r in results),
        "tolerance": {"atol": ATOL, "rtol": RTOL},
    }
    for path, text in ((args.out, render_markdown(results, meta)), (args.json, json.dumps({"meta": meta, "cases": results}, indent=1) + "\n")):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text)
    passed = sum(r["status"] == "passed" for r in results)
    print(f"{passed}/{len(results)} passed in {meta['wall_seconds']:.0f} s; wrote {args.out} and {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
