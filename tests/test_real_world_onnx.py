"""Real-world ONNX classes (issue 11: 1, 2, 5, 6), each a small model built here, converted with no flags.

Every fixture goes through ``transferjs convert`` (the CLI, as a user runs it) and is then
run in TF.js (wasm, Node.js) and compared with onnxruntime, at two input sizes where the
model's dims are dynamic.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import run_cli


def _tfjs_matches_onnxruntime(out, onnx_path, inputs: list[dict], atol=1e-4):
    """Run the bundle in ``out/tfjs`` in TF.js (wasm) on each input dict; compare with onnxruntime."""
    import onnxruntime as ort

    from converter.model import ConvertedModel
    from converter.runtimes.tfjs_node import run_bundle
    from converter.verify.parity import to_converted_inputs, to_source_outputs

    model = ConvertedModel.load(out)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = to_source_outputs(model, run_bundle(out / "tfjs", to_converted_inputs(model, inputs)).samples)
    for sample, outputs in zip(inputs, got):
        names = [o.name for o in session.get_outputs()]
        for name, want in zip(names, session.run(names, sample)):
            assert outputs[name].shape == want.shape, (name, outputs[name].shape, want.shape)
            np.testing.assert_allclose(outputs[name], want, atol=atol, rtol=1e-3)
    return model


def _convert(path, out, *args):
    proc = run_cli("convert", path, "-o", out, *args)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads((out / "report.json").read_text())


# ----------------------------------------------------------------------------- class 1


def _detector(path, **export):
    """A detector neck in miniature: stride-4 backbone, FPN upsample to a lateral, a head flattened to [N, 6, H*W/4]."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    class Det(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1, self.c2 = nn.Conv2d(3, 8, 3, 2, 1), nn.Conv2d(8, 16, 3, 2, 1)
            self.lat, self.head = nn.Conv2d(8, 16, 1), nn.Conv2d(16, 6, 1)

        def forward(self, images):
            a = F.relu(self.c1(images))
            b = F.relu(self.c2(a))
            p = F.interpolate(b, size=a.shape[2:], mode="nearest") + self.lat(a)
            q = F.interpolate(p, scale_factor=2.0, mode="bilinear", align_corners=False)
            return self.head(p).flatten(2), q.mean(dim=(2, 3))

    torch.manual_seed(0)
    torch.onnx.export(Det().eval(), torch.randn(1, 3, 32, 32), str(path), input_names=["images"], output_names=["boxes", "pooled"],
                      opset_version=13, dynamo=False, **export)
    return path


def test_class1_dynamic_height_width_stay_dynamic_into_tfjs(tmp_path):
    path = _detector(tmp_path / "det.onnx", dynamic_axes={"images": {0: "batch", 2: "height", 3: "width"},
                                                          "boxes": {0: "batch", 2: "anchors"}, "pooled": {0: "batch"}})
    report = _convert(path, tmp_path / "out")
    assert "fixed_input_shapes" not in report["source"]  # no silent 224
    assert report["source"]["onnx_passes"]["static_reshape_targets"] == 1
    rng = np.random.default_rng(0)
    sizes = [(1, 32, 48), (2, 64, 40)]
    model = _tfjs_matches_onnxruntime(tmp_path / "out", path, [{"images": rng.uniform(-1, 1, (n, 3, h, w)).astype(np.float32)}
                                                               for n, h, w in sizes])
    assert model.inputs[0].shape == [None, None, None, 3]


def test_class1_fixed_size_comes_from_the_models_metadata_when_a_graph_needs_one(tmp_path):
    """A ConvTranspose needs static shapes: the size the exporter wrote (Ultralytics' ``imgsz``) is used."""
    import onnx
    import torch
    from torch import nn

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU(), nn.ConvTranspose2d(8, 4, 2, 2)).eval()
    torch.onnx.export(net, torch.randn(1, 3, 32, 32), str(tmp_path / "m.onnx"), input_names=["images"], output_names=["up"],
                      opset_version=13, dynamo=False, dynamic_axes={"images": {0: "batch", 2: "height", 3: "width"}})
    model = onnx.load(str(tmp_path / "m.onnx"))
    model.graph.node[-1].name = "up/ConvTranspose"
    rng = np.random.default_rng(1)
    model.metadata_props.add(key="imgsz", value="[24, 40]")
    onnx.save(model, str(tmp_path / "m.onnx"))
    report = _convert(tmp_path / "m.onnx", tmp_path / "out")
    fixed = report["source"]["fixed_input_shapes"]["images"]
    assert fixed["shape"] == [1, 3, 24, 40] and "metadata_props 'imgsz'" in fixed["from"] and "ConvTranspose" in fixed["why"]
    _tfjs_matches_onnxruntime(tmp_path / "out", tmp_path / "m.onnx", [{"images": rng.uniform(-1, 1, (1, 3, 24, 40)).astype(np.float32)}])
    # Without metadata, sample or --input-shape: refused, naming the dims and the options.
    del model.metadata_props[:]
    onnx.save(model, str(tmp_path / "bare.onnx"))
    proc = run_cli("convert", tmp_path / "bare.onnx", "-o", tmp_path / "bare")
    assert proc.returncode == 3, proc.stderr
    assert "ConvTranspose 'up/ConvTranspose' only with static input shapes" in proc.stderr
    assert "images: dims 2 ('height'), 3 ('width')" in proc.stderr and "--input-shape images:" in proc.stderr
