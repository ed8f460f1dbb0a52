"""Real-world ONNX classes (issue 11: 1, 2, 4, 5, 6), each a small model of ``fixtures/real_world_onnx.py``, converted with no flags.

Every fixture goes through ``transferjs convert`` (the CLI, as a user runs it) and is then
run in TF.js (wasm, Node.js) and compared with onnxruntime, at two input sizes where the
model's dims are dynamic.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import fixtures.real_world_onnx as rwo
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


def test_class1_dynamic_height_width_stay_dynamic_into_tfjs(tmp_path):
    path, _, _ = rwo.rw1_detector_dynamic_hw(tmp_path)
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
    rwo.conv_transpose_model(tmp_path / "m.onnx")
    rng = np.random.default_rng(1)
    report = _convert(tmp_path / "m.onnx", tmp_path / "out")
    fixed = report["source"]["fixed_input_shapes"]["images"]
    assert fixed["shape"] == [1, 3, 24, 40] and "metadata_props 'imgsz'" in fixed["from"] and "ConvTranspose" in fixed["why"]
    _tfjs_matches_onnxruntime(tmp_path / "out", tmp_path / "m.onnx", [{"images": rng.uniform(-1, 1, (1, 3, 24, 40)).astype(np.float32)}])
    # Without metadata, sample or --input-shape: refused, naming the dims and the options.
    rwo.conv_transpose_model(tmp_path / "bare.onnx", imgsz=None)
    proc = run_cli("convert", tmp_path / "bare.onnx", "-o", tmp_path / "bare")
    assert proc.returncode == 3, proc.stderr
    assert "ConvTranspose 'up/ConvTranspose' only with static input shapes" in proc.stderr
    assert "images: dims 2 ('height'), 3 ('width')" in proc.stderr and "--input-shape images:" in proc.stderr


# ----------------------------------------------------------------------------- class 2


def test_class2_paddle_classifier_with_at_names_and_a_shape_slice_concat_flatten(tmp_path):
    rng = np.random.default_rng(2)
    path = rwo.paddle_classifier(tmp_path / "cls.onnx", rng)
    report = _convert(path, tmp_path / "out")
    assert report["source"]["onnx_passes"]["sanitize_node_names"] >= 10
    _tfjs_matches_onnxruntime(tmp_path / "out", path, [{"x": rng.uniform(-1, 1, s).astype(np.float32)} for s in ((1, 3, 24, 24), (3, 3, 32, 48))])


def test_class2_paddle_fpn_with_conv_transpose_and_a_dynamic_batch(tmp_path):
    """ConvTranspose with a dynamic batch: converted with a batch of 1 (said in the report), matching in TF.js."""
    rng = np.random.default_rng(3)
    path = rwo.paddle_fpn(tmp_path / "det.onnx", rng)
    report = _convert(path, tmp_path / "out")
    fixed = report["source"]["fixed_input_shapes"]["x"]
    assert fixed["shape"] == [1, 3, 32, 32] and fixed["from"] == "a batch of 1" and "ConvTranspose" in fixed["why"]
    _tfjs_matches_onnxruntime(tmp_path / "out", path, [{"x": rng.uniform(-1, 1, (1, 3, 32, 32)).astype(np.float32)}])


def test_class2_paddle_text_recogniser_with_feature_maps_of_height_1(tmp_path):
    """[N, 3, 32, W] -> convs with stride (2, 1) to height 1 -> a conv on [N, C, 1, T] -> [N, T, classes], two widths."""
    rng = np.random.default_rng(4)
    path = rwo.paddle_recogniser(tmp_path / "rec.onnx", rng)
    report = _convert(path, tmp_path / "out")
    assert "fixed_input_shapes" not in report["source"]
    _tfjs_matches_onnxruntime(tmp_path / "out", path, [{"x": rng.uniform(-1, 1, s).astype(np.float32)} for s in ((1, 3, 32, 40), (2, 3, 32, 64))])


# ----------------------------------------------------------------------------- class 5


def test_class5_old_model_zoo_classifier_ir3_opset9_softmax_on_1x1000x1x1(tmp_path):
    rng = np.random.default_rng(5)
    rwo.old_model_zoo(tmp_path / "zoo.onnx", rng)
    report = _convert(tmp_path / "zoo.onnx", tmp_path / "out")
    assert report["source"]["opset"] == 9 and report["source"]["onnx_passes"]["upgrade_old_opset"] == 1
    assert [i["name"] for i in report["model"]["inputs"]] == ["data_0"]  # weights listed as inputs are not inputs
    x = rng.uniform(-1, 1, (1, 3, 16, 16)).astype(np.float32)
    _tfjs_matches_onnxruntime(tmp_path / "out", tmp_path / "zoo.onnx", [{"data_0": x}], atol=1e-6)
    (probs,) = __import__("onnxruntime").InferenceSession(str(tmp_path / "zoo.onnx")).run(None, {"data_0": x})
    assert probs.max() < 0.5  # a real distribution over 1000 classes, not all ones


# ----------------------------------------------------------------------------- class 6


def test_class6_failure_names_the_node_in_transferjs_terms_and_keeps_the_full_log(tmp_path):
    """With the name pass disabled, onnx2tf stops at Paddle's '@' names: the message says where and what helps."""
    path = rwo.paddle_bad_names(tmp_path / "bad.onnx", np.random.default_rng(6))
    proc = run_cli("convert", path, "-o", tmp_path / "out", "--disable-pass", "sanitize_node_names", env={"TRANSFERJS_CACHE": str(tmp_path / "cache")})
    assert proc.returncode == 3, proc.stdout + proc.stderr
    err = proc.stderr
    assert "onnx2tf could not convert node '" in err and "What can help" in err and "--disable-pass" in err
    assert "keep the ONNX pass sanitize_node_names on" in err  # the cause, in transferjs terms
    for advice in ("-b or -ois", "-kt or -kat", "-onwdt", "Read this and deal with it"):
        assert advice not in err
    log_path = err.split("Full onnx2tf log: ")[1].split()[0]
    assert log_path.startswith(str(tmp_path / "cache" / "logs")) and "not a valid scope name" in open(log_path).read()
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- class 4


def _audio_inputs(rng, n, sr=16000, batch=1):
    return {"audio": rng.uniform(-1, 1, (batch, n)).astype(np.float32), "sr": np.array(sr, np.int64),
            "h0": rng.standard_normal((1, batch, 8)).astype(np.float32) * 0.5, "c0": rng.standard_normal((1, batch, 8)).astype(np.float32) * 0.5}


def test_class4_streaming_audio_converts_with_no_flags_and_runs_at_two_lengths(tmp_path):
    """The sample rate is the constant the If compares with; time stays dynamic; the LSTM stays a loop with its state."""
    path = rwo.streaming_audio_model(tmp_path / "vad.onnx")
    report = _convert(path, tmp_path / "out")
    assert report["source"]["fixed_inputs"] == {"sr": 16000}
    assert "fixed_input_shapes" not in report["source"]
    assert "While" in report["op_histogram"] or "LoopCond" in report["op_histogram"]  # a loop over frames, not unrolled
    assert report["parity"]["tensorflow"]["ok"]
    rng = np.random.default_rng(41)
    model = _tfjs_matches_onnxruntime(tmp_path / "out", path, [_audio_inputs(rng, n) for n in (1024, 1600)], atol=1e-5)
    assert [i.name for i in model.inputs] == ["audio", "h0", "c0"] and model.inputs[0].shape == [1, None]


def test_class4_the_other_sample_rate_comes_from_the_users_sample(tmp_path):
    path = rwo.streaming_audio_model(tmp_path / "vad.onnx")
    rng = np.random.default_rng(42)
    np.savez(tmp_path / "sample.npz", **_audio_inputs(rng, 1024, sr=8000))
    report = _convert(path, tmp_path / "out", "--sample", tmp_path / "sample.npz")
    assert report["source"]["fixed_inputs"] == {"sr": 8000} and "--sample" in report["source"]["fixed_inputs_from"]["sr"]
    _tfjs_matches_onnxruntime(tmp_path / "out", path, [_audio_inputs(rng, n, sr=8000) for n in (1024, 1600)], atol=1e-5)
    meta = json.loads((tmp_path / "out" / "tfjs" / "metadata.json").read_text())
    assert meta["fixedInputs"] == [{"name": "sr", "value": 8000, "from": report["source"]["fixed_inputs_from"]["sr"]}]
    assert "sr" not in [i["name"] for i in meta["inputs"]]
    proc = _predict_mjs(tmp_path / "out" / "tfjs", tmp_path / "nope.png")  # the note comes before any input is read
    assert "note: this bundle was converted with sr = 8000 (from the --sample" in proc.stderr, proc.stderr


def _predict_mjs(bundle, *args):
    import os
    import subprocess

    from converter.runtimes.node import js_dir, node_executable

    env = {**os.environ, "NODE_PATH": str(js_dir() / "node_modules")}
    return subprocess.run([node_executable(), str(bundle / "predict.mjs"), *map(str, args)], capture_output=True, text=True, env=env, timeout=120)


def test_class4_sample_rate_from_the_models_metadata(tmp_path):
    path = rwo.streaming_audio_model(tmp_path / "vad.onnx", metadata={"sample_rate": "8000"})
    report = _convert(path, tmp_path / "out")
    assert report["source"]["fixed_inputs"] == {"sr": 8000} and "metadata_props 'sample_rate'" in report["source"]["fixed_inputs_from"]["sr"]


def test_class4_an_if_on_a_scalar_with_no_known_value_is_refused_naming_input_and_node(tmp_path):
    """``If(sr > 12000)``: no Equal to read the value from, no metadata, no sample -> exit 3 before onnx2tf runs."""
    path = rwo.streaming_audio_model(tmp_path / "vad.onnx", compare_with=12000, compare_op="Greater")
    proc = run_cli("convert", path, "-o", tmp_path / "out")
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "If node 'If_0'" in proc.stderr and "scalar input 'sr'" in proc.stderr and "--sample" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_class4_parity_samples_are_long_enough_for_the_conv_front_end(tmp_path):
    """16 samples are shorter than the k256 kernel: 4x the shortest length that runs (256) is used."""
    from converter.sources.onnx import load_onnx_source

    assert load_onnx_source(rwo.streaming_audio_model(tmp_path / "vad.onnx")).sample_dim_size() == 1024


def test_class4_dims_that_share_a_dim_param_get_one_size_in_parity_samples(tmp_path):
    """``audio [batch, time]``, ``h0 [1, batch, 8]``: the source runs the random samples only if both batches are equal."""
    from converter.model import TensorSpec
    from converter.samples import named_dim_sizes, random_samples
    from converter.sources.onnx import load_onnx_source

    source = load_onnx_source(rwo.streaming_audio_model(tmp_path / "vad.onnx", batch="batch"))
    audio, h0 = source.inputs[0], source.inputs[1]
    assert audio.dim_names == ("batch", "time") and h0.dim_names == (None, "batch", None)
    assert named_dim_sizes(source.inputs, 1024) == {"batch": 2, "time": 1024}
    (sample,) = random_samples(source.inputs, 1, dim_size=1024)
    assert sample["audio"].shape == (2, 1024) and sample["h0"].shape == sample["c0"].shape == (1, 2, 8)
    assert source.run([sample])[0]["out"].shape == (7, 2, 8)
    # spec.json written before dim_names existed still loads; a written one keeps them
    old = {"name": "h0", "shape": [1, None, 8], "dtype": "float32"}
    assert TensorSpec.from_dict(old).dim_names is None
    assert TensorSpec.from_dict({**old, "dim_names": [None, "batch", None]}) == h0


def test_class4_dynamic_batch_and_time_converts_with_no_flags_and_runs_at_two_batch_sizes(tmp_path):
    """The usual real layout: the batch is a ``dim_param`` shared by ``audio`` and the LSTM state; the
    Transpose to ``[frames, batch, 8]`` is lifted a rank so onnx2tf keeps its perm (``lift_batch_moving_transposes``)."""
    path = rwo.streaming_audio_model(tmp_path / "vad.onnx", batch="batch")
    report = _convert(path, tmp_path / "out")
    assert report["source"]["onnx_passes"]["lift_batch_moving_transposes"] == 1
    assert "fixed_input_shapes" not in report["source"] and report["parity"]["tensorflow"]["ok"]
    rng = np.random.default_rng(43)
    model = _tfjs_matches_onnxruntime(tmp_path / "out", path, [_audio_inputs(rng, n, batch=b) for b, n in ((1, 1024), (3, 1600))], atol=1e-5)
    assert [i.shape for i in model.inputs] == [[None, None], [1, None, 8], [1, None, 8]]
    assert model.inputs[1].dim_names == (None, "batch", None)


def test_a_torch_export_dim_shared_by_two_inputs_gets_one_size_in_parity_samples(tmp_path):
    """``.pt2`` with ``Dim("batch")`` at ``x`` dim 0 and ``h`` dim 1: the dynamo export names both ``s…``; one size."""
    import torch

    from converter.samples import random_samples
    from converter.sources.torch import load_torch_file

    class AddState(torch.nn.Module):
        def forward(self, x, h):
            return x.unsqueeze(0) + h

    batch = torch.export.Dim("batch")
    program = torch.export.export(AddState(), (torch.randn(3, 4), torch.randn(1, 3, 4)), dynamic_shapes=({0: batch}, {1: batch}))
    torch.export.save(program, tmp_path / "state.pt2")
    source = load_torch_file(tmp_path / "state.pt2")
    x, h = source.inputs
    assert x.dim_names[0] is not None and h.dim_names == (None, x.dim_names[0], None)
    (sample,) = random_samples(source.inputs, 1)
    assert sample["x"].shape == (2, 4) and sample["h"].shape == (1, 2, 4)
    assert next(iter(source.run([sample])[0].values())).shape == (1, 2, 4)
