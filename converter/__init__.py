"""transferjs' converter: PyTorch, Keras, ONNX models -> one verified TensorFlow graph -> TF.js bundles.

The public API is imported lazily, so ``import converter`` loads no framework.

Example:
    >>> import converter
    >>> result = converter.convert("model.onnx", "out/")
    >>> converter.export("out/", "bundle-f16/", converter.ExportOptions(quantize="float16"))
    >>> converter.verify_bundle("out/").ok
    True
"""

__all__ = ["convert", "export", "verify_bundle", "ConvertOptions", "ExportOptions", "Tolerance"]

_HOMES = {
    "convert": "converter.pipeline",
    "ConvertOptions": "converter.pipeline",
    "export": "converter.api",
    "verify_bundle": "converter.api",
    "ExportOptions": "converter.export.tfjs",
    "Tolerance": "converter.verify.tolerance",
}


def __getattr__(name):
    if name in _HOMES:
        import importlib

        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'converter' has no attribute {name!r}")
