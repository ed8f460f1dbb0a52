"""PyTorch source: an ``nn.Module`` (or a file that holds one) -> ONNX -> the ONNX path.

Files are data, not code: state dicts load with ``weights_only=True``; a pickle
that needs more is refused unless the user opts in with ``trust_code``.

Example:
    >>> src = torch_source(model, (torch.randn(1, 3, 224, 224),), input_names=["image"])
    >>> src.run([{"image": x}])
"""

from __future__ import annotations

import importlib
import inspect
import io
import json
import zipfile
from pathlib import Path

import numpy as np

from converter.errors import InputError, UntrustedCodeError
from converter.logs import log
from converter.sources.onnx import OnnxSource, recurrent_nodes

OPSET = 17


def _flatten_outputs(out) -> list:
    if isinstance(out, dict):
        return list(out.values())
    if isinstance(out, (tuple, list)):
        return [t for o in out for t in _flatten_outputs(o)]
    return [out]


def _default_output_names(out) -> list[str]:
    if isinstance(out, dict):
        return [str(k) for k in out]
    flat = _flatten_outputs(out)
    return ["output"] if len(flat) == 1 else [f"output_{i}" for i in range(len(flat))]


def _default_input_names(module, n: int) -> list[str]:
    try:
        params = [p for p in inspect.signature(module.forward).parameters.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        names = [p.name for p in params][:n]
    except (TypeError, ValueError):
        names = []
    return names if len(names) == n else [f"input_{i}" for i in range(n)]


class TorchSource(OnnxSource):
    """A PyTorch module: runs in torch, converts through its ONNX export."""

    def __init__(self, module, onnx_model, input_names, output_names, path=None, details=None):
        super().__init__(onnx_model, path, fmt="pytorch", details=details)
        self.runtime = "torch"
        self.module = module
        self.input_order = input_names
        self.output_names = output_names

    def run(self, samples):
        import torch

        results = []
        with torch.inference_mode():
            for s in samples:
                out = self.module(*[torch.from_numpy(np.ascontiguousarray(s[n])) for n in self.input_order])
                flat = [t.detach().cpu().numpy() for t in _flatten_outputs(out)]
                results.append(dict(zip(self.output_names, flat)))
        return results


def torch_source(module, example_inputs, input_names=None, output_names=None, batch: str = "dynamic", path=None, details=None) -> TorchSource:
    """Export ``module`` to ONNX (TorchScript exporter, opset 17) and wrap it.

    Args:
        module: the ``torch.nn.Module`` (put in eval mode here).
        example_inputs: a tuple of tensors with the shapes to export.
        input_names, output_names: names in the converted model (default: the
            ``forward`` parameter names; ``output`` or ``output_0…``).
        batch: ``"dynamic"`` (dim 0 of every input and output) or ``"static"``.

    Raises:
        InputError: the module cannot run on the example inputs or cannot be exported.
    """
    import torch

    try:
        module = module.eval()
    except NotImplementedError:
        pass  # an ExportedProgram's module has no train/eval switch; it is fixed at export
    if isinstance(example_inputs, torch.Tensor):
        example_inputs = (example_inputs,)
    example_inputs = tuple(example_inputs)
    with torch.inference_mode():
        try:
            out = module(*example_inputs)
        except Exception as e:
            shapes = [tuple(t.shape) for t in example_inputs]
            raise InputError(f"The PyTorch module fails on example inputs of shape {shapes}: {e}") from None
    input_names = list(input_names or _default_input_names(module, len(example_inputs)))
    output_names = list(output_names or _default_output_names(out))
    dynamic = {n: {0: "batch"} for n in input_names + output_names} if batch == "dynamic" else None
    model = _export_onnx(module, example_inputs, input_names, output_names, dynamic)
    details = {"torch": torch.__version__, "onnx_opset": OPSET, **(details or {})}

    recurrent = recurrent_nodes(model)
    if dynamic and recurrent:
        # Dim 0 of an LSTM/GRU state input is num_layers, not the batch, and onnx2tf
        # unrolls a recurrence only with static shapes: keep the example's shapes.
        model = _export_onnx(module, example_inputs, input_names, output_names, None)
        details["batch"] = f"static (recurrent ops {', '.join(sorted(recurrent))} need the example's shapes)"
        log.info("Recurrent ops (%s): converting with the example inputs' static shapes %s",
                 ", ".join(sorted(recurrent)), [tuple(t.shape) for t in example_inputs])
    return TorchSource(module, model, input_names, output_names, path=path, details=details)


def _export_onnx(module, example_inputs, input_names, output_names, dynamic):
    import onnx
    import torch

    buf = io.BytesIO()
    try:
        torch.onnx.export(
            module, example_inputs, buf, input_names=input_names, output_names=output_names,
            dynamic_axes=dynamic, opset_version=OPSET, dynamo=False, do_constant_folding=True,
        )
    except Exception as e:
        raise InputError(f"torch.onnx.export failed on the module: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    return onnx.load_model_from_string(buf.getvalue())


def _example_inputs(input_shapes: dict | None, what: str):
    import torch

    if not input_shapes:
        raise InputError(f"{what} needs example input shapes: pass --input-shape NAME:D0,D1,… (e.g. image:1,3,224,224)")
    names = list(input_shapes)
    return names, tuple(torch.randn(*[abs(d) if d and d > 0 else 1 for d in input_shapes[n]]) for n in names)


def load_factory(spec: str, kwargs: dict | None = None):
    """Build a module from ``package.module:Name`` (a class, function or ``Class.method``).

    Importing the named module runs its code: the user names it, the model file cannot.

    Raises:
        InputError: the spec is malformed, or the import or the call fails.
    """
    if ":" not in spec:
        raise InputError(f"Expected a factory as 'package.module:Name'. Received: '{spec}'")
    mod_name, attr = spec.split(":", 1)
    try:
        factory = importlib.import_module(mod_name)
        for part in attr.split("."):  # "Class.from_name" names a classmethod
            factory = getattr(factory, part)
    except (ImportError, AttributeError) as e:
        raise InputError(f"Cannot import model factory '{spec}': {e}") from None
    try:
        return factory(**(kwargs or {}))
    except Exception as e:
        raise InputError(f"Model factory '{spec}' failed with kwargs {kwargs or {}}: {e}") from None


def load_torch_file(path, input_shapes=None, factory: str | None = None, factory_kwargs=None, trust_code=False, batch="dynamic") -> TorchSource:
    """Load a PyTorch file: ExportedProgram (.pt2), TorchScript, or a state dict + factory.

    Raises:
        InputError: unreadable file, missing factory or shapes, or mismatched weights.
        UntrustedCodeError: a pickle that needs code to load, without ``trust_code``.
    """
    path = Path(path)
    check_torch_file(path)  # before torch starts: a second, and torch's own messages for these files mislead
    import torch

    kind = torch_file_kind(path)
    details = {"file_kind": kind}
    if kind == "exported_program":
        return _exported_program_source(path, details, input_shapes)
    if kind == "torchscript":
        module = torch.jit.load(str(path), map_location="cpu")
        names, args = _example_inputs(input_shapes, "A TorchScript file")
        return torch_source(module, args, input_names=names, batch=batch, path=path, details=details)
    obj = _load_pickle(path, trust_code)
    if isinstance(obj, torch.nn.Module):
        module = obj
    elif isinstance(obj, dict):
        if factory is None:
            raise InputError(
                f"'{path}' is a state dict (weights only). Name the code that builds the model: "
                f"--model-factory package.module:Name [--model-kwargs JSON]"
            )
        module = load_factory(factory, factory_kwargs)
        state = obj.get("state_dict", obj) if isinstance(obj.get("state_dict"), dict) else obj
        try:
            module.load_state_dict(state)
        except RuntimeError as e:
            raise InputError(f"The weights in '{path}' do not fit {factory}: {str(e).splitlines()[0]}") from None
        details["factory"] = factory
    else:
        raise InputError(f"Expected a PyTorch module or state dict in '{path}'. Received a {type(obj).__name__}")
    names, args = _example_inputs(input_shapes, "A PyTorch checkpoint")
    return torch_source(module, args, input_names=names, batch=batch, path=path, details=details)


def _exported_program_source(path: Path, details: dict, input_shapes=None) -> TorchSource:
    """An ExportedProgram keeps its own dynamic dims; the dynamo exporter converts it as is."""
    import torch

    try:
        ep = torch.export.load(str(path))
    except Exception as e:
        raise InputError(f"Cannot read ExportedProgram '{path}': {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    names = [s.arg.name for s in ep.graph_signature.input_specs if s.kind.name == "USER_INPUT"]
    if input_shapes:
        names, args = _example_inputs(input_shapes, "This ExportedProgram")
    elif getattr(ep, "example_inputs", None):
        args = ep.example_inputs[0]
    else:
        names, args = _example_inputs(input_shapes, "This ExportedProgram (saved without example inputs)")
    module = ep.module()
    with torch.inference_mode():
        out_names = _default_output_names(module(*args))
    try:
        program = torch.onnx.export(ep, dynamo=True, input_names=names, output_names=out_names, optimize=True, verbose=False)
    except Exception as e:
        raise InputError(f"torch.onnx.export (dynamo) failed on '{path}': {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    details = {"torch": torch.__version__, "onnx_exporter": "dynamo", **details}
    return TorchSource(module, program.model_proto, names, out_names, path=path, details=details)


def check_torch_file(path: Path) -> None:
    """Refuse, by its bytes, a file that is no PyTorch file before torch reads it (its own messages mislead).

    PyTorch writes a zip archive with ``data.pkl`` (``torch.save``), ``constants.pkl`` (TorchScript) or
    ``serialized_exported_program.json`` (``torch.export.save``), or, before 1.6, a bare pickle.

    Raises:
        InputError: naming the file and what it is instead (empty, damaged zip, another zip, other bytes).
    """
    try:
        with path.open("rb") as f:
            head = f.read(8)
    except OSError as e:
        raise InputError(f"Cannot read PyTorch file '{path}': {e.strerror}") from None
    shown = " ".join(f"{b:02x}" for b in head[:4])
    if not head:
        raise InputError(f"Expected a PyTorch file. Received: '{path}' (empty file)")
    if head.startswith(b"PK"):
        try:
            with zipfile.ZipFile(path) as z:
                members = z.namelist()
        except (zipfile.BadZipFile, OSError, ValueError) as e:
            raise InputError(f"'{path}' is a damaged or truncated zip archive ({e}); PyTorch files are zip archives: "
                             f"save or download it again") from None
        marks = ("data.pkl", "constants.pkl", "serialized_exported_program.json", "/version")
        if not any(m.endswith(marks) for m in members):
            raise InputError(f"'{path}' is a zip archive but not a PyTorch file (no data.pkl, constants.pkl or "
                             f"serialized_exported_program.json; it holds {members[:5]})")
    elif head[0] != 0x80:  # every pickle torch.save writes starts with the PROTO opcode
        raise InputError(f"Expected a PyTorch file (a zip archive or a pickle). Received: '{path}' "
                         f"(starts with bytes {shown})")


def torch_file_kind(path: Path) -> str:
    """``"exported_program"``, ``"torchscript"`` or ``"pickle"`` from the archive's members."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            members = z.namelist()
        if any(m.endswith("serialized_exported_program.json") or "/models/" in m and m.endswith(".json") for m in members):
            return "exported_program"
        if any(m.endswith("constants.pkl") or "/code/" in m for m in members):
            return "torchscript"
    return "pickle"


def _load_pickle(path: Path, trust_code: bool):
    import pickle

    import torch

    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if not trust_code:
            raise UntrustedCodeError(
                f"'{path}' is a pickle that needs code to load ({str(e).splitlines()[0][:200]}). "
                f"Unpickling an untrusted file can run any code on this machine. Only if you trust "
                f"its author, pass --trust-code; better, save a state dict (model.state_dict()) instead."
            ) from None
    except Exception as e:
        raise InputError(f"Cannot read PyTorch file '{path}': {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    return torch.load(str(path), map_location="cpu", weights_only=False)


def parse_kwargs(text: str | None) -> dict:
    """``--model-kwargs`` JSON text -> dict (``InputError`` when it is not a JSON object)."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError as e:
        raise InputError(f"Expected --model-kwargs as a JSON object. Received: {text!r} ({e})") from None
    if not isinstance(value, dict):
        raise InputError(f"Expected --model-kwargs as a JSON object. Received: {text!r}")
    return value
