"""Real pretrained models, converted end to end, checked on a real photo."""

from __future__ import annotations

import pytest

CAT_CLASSES = range(281, 286)  # ImageNet: tabby, tiger cat, Persian, Siamese, Egyptian cat


@pytest.mark.slow
def test_efficientnet_lite0_classifies_the_cat_alike_in_torch_tensorflow_and_tfjs(effnet):
    d = effnet
    top5 = d["top5"]
    assert set(top5) == {"torch", "tensorflow", "tfjs-wasm"}
    top1 = {runtime: top[0] for runtime, top in top5.items()}
    assert top1["torch"][0] in CAT_CLASSES and top1["torch"][1] > 0.5
    assert len({c for c, _ in top1.values()}) == 1, top1
    for runtime, (_, p) in top1.items():
        assert abs(p - top1["torch"][1]) < 1e-3, runtime
    report = d["result"].report
    assert report["source"]["format"] == "pytorch" and report["source"]["factory"].endswith("from_name")
    for stage in ("tensorflow", "tfjs"):
        assert report["parity"][stage]["ok"], report["parity"][stage]
    assert report["op_histogram"]["DepthwiseConv2dNative"] == 16
    # A standard CNN: the NCHW -> NHWC switch leaves no Transpose in the graph.
    assert "Transpose" not in report["op_histogram"] and "Transpose" not in report["tfjs"]["op_histogram"]
