"""Op histograms of TensorFlow and TF.js graphs (what the report shows).

Example:
    >>> op_histogram("out/saved_model")["Conv2D"]
    52
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from converter.runtimes.tensorflow import serving_function

# Plumbing, not computation: left out of histograms.
_PLUMBING = {"Placeholder", "Const", "Identity", "NoOp", "IdentityN", "StatefulPartitionedCall", "PartitionedCall"}


def op_histogram(saved_model_dir, signature: str = "serving_default") -> dict[str, int]:
    """Count the ops of the frozen serving function (function bodies inlined)."""
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2


    frozen = convert_variables_to_constants_v2(serving_function(saved_model_dir, signature))
    graph_def = frozen.graph.as_graph_def()
    counts = Counter(n.op for n in graph_def.node if n.op not in _PLUMBING)
    for fn in graph_def.library.function:
        counts.update(n.op for n in fn.node_def if n.op not in _PLUMBING)
    return dict(sorted(counts.items()))


def tfjs_op_histogram(bundle_dir) -> dict[str, int]:
    """Count the ops of a TF.js graph model's ``model.json``."""
    topo = json.loads((Path(bundle_dir) / "model.json").read_text())["modelTopology"]
    counts = Counter(n["op"] for n in topo.get("node", []) if n["op"] not in _PLUMBING)
    for fn in topo.get("library", {}).get("function", []):
        counts.update(n["op"] for n in fn.get("nodeDef", []) if n["op"] not in _PLUMBING)
    return dict(sorted(counts.items()))
