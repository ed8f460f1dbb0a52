"""transferjs: convert PyTorch, Keras and ONNX models to one verified TensorFlow graph,
retrain it, and ship it to TensorFlow.js.

The public API is imported lazily, so ``import converter`` loads no framework.

Example:
    >>> import converter
    >>> result = converter.convert("model.onnx", "out/")
"""

__all__ = ["convert", "ConvertOptions", "ExportOptions", "Tolerance"]


def __getattr__(name):
    if name in ("convert", "ConvertOptions"):
        from converter import pipeline

        return getattr(pipeline, name)
    if name == "ExportOptions":
        from converter.export.tfjs import ExportOptions

        return ExportOptions
    if name == "Tolerance":
        from converter.verify import Tolerance

        return Tolerance
    raise AttributeError(f"module 'converter' has no attribute {name!r}")
