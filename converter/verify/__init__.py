"""Verification: the same inputs through two runtimes, every output compared, all failures reported.

``compare`` and the tolerance table are pure numpy; ``parity`` runs the runtimes
(source, TensorFlow, TF.js in Node.js) behind one ``Runner`` shape; ``divergence``
finds the first ONNX node where a failing conversion starts to differ.

Example:
    >>> from converter.verify import compare, Tolerance
    >>> compare("onnxruntime", ref, "tensorflow", got, Tolerance()).ok
    True
"""

from converter.verify.compare import OutputParity, ParityReport, compare
from converter.verify.tolerance import TOLERANCES, Tolerance, tolerance_for

__all__ = ["compare", "OutputParity", "ParityReport", "Tolerance", "TOLERANCES", "tolerance_for"]
