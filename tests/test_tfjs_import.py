"""TF.js models as a source: layers and graph model.json in, verified SavedModel out, retrained, exported.

Real models: nsfwjs' MobileNetV2 layers model (Keras 2.2.4 topology) and graph model (converter
v1.7.4, fused ops), both uint8-quantized. Small models built here cover transferjs' own bundles
(round trip, float32 and quantized) and the damaged-file cases.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from tests.conftest import run_cli
from tests.nsfwjs_models import GRAPH_MODEL, LAYERS_MODEL, available, extract_nsfwjs_model

needs_nsfwjs = pytest.mark.skipif(not available(), reason="nsfwjs is not installed (cd js && npm ci)")
TOLERANCE = 1e-4


def _import(model_json, out, **options):
    """``convert`` with the checks an import needs: TF.js (the source) vs TensorFlow on 2 samples."""
    from converter import ConvertOptions, convert

    return convert(model_json, out, ConvertOptions(samples=2, **options))


def _assert_import_parity(result) -> dict:
    parity = result.report.parity["tensorflow"]
    assert parity["ok"] and parity["reference"].startswith("tfjs-wasm"), parity
    for o in parity["outputs"].values():
        assert o["max_abs"] <= TOLERANCE and o["note"] == "", o
    return parity


@pytest.fixture(scope="module")
def nsfw_graph(tmp_path_factory):
    root = tmp_path_factory.mktemp("nsfw-graph")
    model_json = extract_nsfwjs_model(GRAPH_MODEL, root / "files")
    return {"json": model_json, "result": _import(model_json, root / "converted", export=None)}


@pytest.fixture(scope="module")
def nsfw_layers(tmp_path_factory):
    root = tmp_path_factory.mktemp("nsfw-layers")
    model_json = extract_nsfwjs_model(LAYERS_MODEL, root / "files")
    return {"json": model_json, "result": _import(model_json, root / "converted", export=None)}


@pytest.fixture(scope="module")
def emoji_tiny(tmp_path_factory):
    """10 emoji per category (50 images, 5 classes)."""
    from fixtures.emoji_dataset import build_emoji_dataset

    folder = tmp_path_factory.mktemp("emoji10")
    build_emoji_dataset(folder, per_class=10)
    return folder


@pytest.mark.slow
@needs_nsfwjs
def test_nsfwjs_graph_model_with_fused_ops_imports_with_parity(nsfw_graph):
    result = nsfw_graph["result"]
    parity = _assert_import_parity(result)
    source = result.report.source
    assert source["tfjs_kind"] == "graph" and source["fused_ops_split"] > 0 and source["weight_storage"] == ["uint8"]
    (inp,) = result.model.inputs
    assert inp.shape == [None, 224, 224, 3] and inp.layout == "NHWC"
    (out,) = result.model.outputs
    assert out.shape == [None, 5] and out.meaning == "probabilities" and list(parity["outputs"]) == [out.source_name]


@pytest.mark.slow
@needs_nsfwjs
def test_graph_model_weights_are_trainable_variables_that_take_gradients(nsfw_graph):
    import tensorflow as tf

    from converter.graph.frozen import frozen_graph

    saved = nsfw_graph["result"].model.saved_model
    loaded = tf.saved_model.load(str(saved))
    serve = loaded.signatures["serving_default"]
    variables = serve.trainable_variables
    graph_def, _ = frozen_graph(saved)
    weight_layers = [n for n in graph_def.node if n.op in ("Conv2D", "DepthwiseConv2dNative", "MatMul")]
    assert len(weight_layers) > 50 and len(variables) >= len(weight_layers)
    x = tf.random.uniform((1, 224, 224, 3))
    with tf.GradientTape() as tape:
        y = next(iter(serve(x).values()))
        loss = tf.reduce_sum(y * tf.range(5, dtype=tf.float32))
    grads = tape.gradient(loss, variables)
    assert all(g is not None for g in grads)
    assert sum(float(tf.reduce_max(tf.abs(g))) > 0 for g in grads) >= len(weight_layers)


@pytest.mark.slow
@needs_nsfwjs
def test_nsfwjs_keras2_layers_model_imports_with_parity_and_keeps_a_keras_file(nsfw_layers):
    result = nsfw_layers["result"]
    _assert_import_parity(result)
    assert result.report.source["tfjs_kind"] == "layers"
    assert result.model.keras_model and (result.model.directory / result.model.keras_model).is_file()
    assert result.model.outputs[0].meaning == "probabilities"


def _retrain_beats_raw_pixels(model_dir, data, out, cache, feature_node=None):
    from converter.runtimes.bundle_apps import predict_with_node
    from retrain import TrainConfig, retrain

    result = retrain(model_dir, data, out, TrainConfig(), cache_dir=cache, progress=False, log=lambda *a: None,
                     feature_node=feature_node)
    accuracy, baseline = result.report["test"]["accuracy"], result.report["baseline_raw_pixels_accuracy"]
    assert accuracy > baseline, (accuracy, baseline)
    labels = json.loads((result.bundle / "metadata.json").read_text())["labels"]
    images = [p for p, _ in result.held_out[:2]]
    predicted = predict_with_node(result.bundle, images, top=1)
    assert [r["top"][0]["label"] in labels for r in predicted] == [True, True]
    return accuracy, baseline


@pytest.mark.slow
@needs_nsfwjs
def test_retrain_of_the_imported_graph_model_beats_raw_pixels_and_runs_in_predict_mjs(nsfw_graph, emoji_tiny, tmp_path):
    _retrain_beats_raw_pixels(nsfw_graph["result"].model.directory, emoji_tiny, tmp_path / "out", tmp_path / "cache")


@pytest.mark.slow
@needs_nsfwjs
def test_retrain_of_the_imported_layers_model_beats_raw_pixels_and_runs_in_predict_mjs(nsfw_layers, emoji_tiny, tmp_path):
    from converter.graph.frozen import frozen_graph
    from retrain.features import candidate_nodes

    # Its classifier is a 256-128-5 MLP trained for nsfw classes: what feeds the last Dense is 128
    # task-specific units (0.28 on emoji, below raw pixels). The MobileNetV2 backbone ends at flatten_1.
    model = nsfw_layers["result"].model
    (node,) = [name for name, shape in candidate_nodes(*frozen_graph(model.saved_model)) if "flatten_1/" in name]
    _retrain_beats_raw_pixels(model.directory, emoji_tiny, tmp_path / "out", tmp_path / "cache", feature_node=node)


# --- transferjs' own bundles, small models, damaged files -------------------------------------------------


def _small_keras2(seed=0):
    import tf_keras

    from fixtures.models import randomize_keras_weights

    inp = tf_keras.Input((12, 12, 3), name="pixels")
    x = tf_keras.layers.Conv2D(4, 3, activation="relu")(inp)
    x = tf_keras.layers.DepthwiseConv2D(3, activation="relu6")(x)
    x = tf_keras.layers.Conv2D(64, 3, padding="same", activation="relu")(x)  # 2,304 weights: 8-bit per channel
    x = tf_keras.layers.GlobalAveragePooling2D()(x)
    return randomize_keras_weights(tf_keras.Model(inp, tf_keras.layers.Dense(3, activation="softmax", name="probs")(x)))


@pytest.fixture(scope="module")
def transferjs_bundles(tmp_path_factory):
    """A small Keras model converted by transferjs: its float32 graph bundle and both 8-bit ones."""
    from converter import ConvertOptions, convert
    from converter.api import export
    from converter.export.tfjs import ExportOptions

    root = tmp_path_factory.mktemp("roundtrip")
    _small_keras2().save(str(root / "small.h5"))
    first = convert(root / "small.h5", root / "converted", ConvertOptions(samples=2))
    for mode in ("uint8", "uint8-per-tensor"):
        export(root / "converted", root / mode, ExportOptions(quantize=mode))
    # Kernels restored once at load: the model.json initializer graph feeds the main graph.
    export(root / "converted", root / "uint8-at-load", ExportOptions(quantize="uint8", restore_at_load=True))
    return {"float32": first.bundle, "uint8": root / "uint8", "uint8-per-tensor": root / "uint8-per-tensor",
            "uint8-at-load": root / "uint8-at-load",
            "layers": first.bundle / "layers", "root": root}


@pytest.mark.parametrize("bundle", ["float32", "uint8", "uint8-per-tensor", "uint8-at-load", "layers"])
def test_a_transferjs_bundle_imports_back_with_parity(transferjs_bundles, bundle, tmp_path):
    folder = transferjs_bundles[bundle]
    result = _import(folder, tmp_path / "back")  # the folder: its model.json is found by content
    _assert_import_parity(result)
    assert result.report.source["tfjs_kind"] == ("layers" if bundle == "layers" else "graph")
    assert result.report.parity["tfjs"]["ok"]  # and it exports again
    if bundle != "layers":  # tensorflowjs 4.22 writes _FusedConv2D / FusedDepthwiseConv2dNative / _FusedMatMul
        assert result.report.source["fused_ops_split"] > 0
    if bundle.startswith("uint8"):  # per channel, small kernels stay float16 (README); per tensor, all 8-bit
        assert "uint8" in result.report.source["weight_storage"], result.report.source["weight_storage"]


def _damaged(transferjs_bundles, tmp_path, kind: str, how: str):
    folder = tmp_path / "model"
    shutil.copytree(transferjs_bundles["layers" if kind == "layers" else "float32"], folder)
    model_json = folder / "model.json"
    data = json.loads(model_json.read_text())
    shard = folder / data["weightsManifest"][0]["paths"][0]
    weights = data["weightsManifest"][0]["weights"]
    if how == "missing shard":
        shard.unlink()
        return model_json, shard.name
    if how == "short shard":
        shard.write_bytes(shard.read_bytes()[:-8])
        return model_json, shard.name
    if how == "manifest not matching topology":
        weights[0]["name"] += "_renamed"
        named = weights[0]["name"]
    else:  # unknown op
        node = next(n for n in data["modelTopology"]["node"] if n["op"] not in ("Const", "Placeholder"))
        node["op"], named = "NoSuchOpXyz", node["name"]
    model_json.write_text(json.dumps(data))
    return model_json, named


@pytest.mark.parametrize("kind, how", [("graph", "missing shard"), ("graph", "short shard"),
                                       ("graph", "manifest not matching topology"), ("graph", "unknown op"),
                                       ("layers", "short shard"), ("layers", "manifest not matching topology")])
def test_damaged_files_give_a_clear_error_naming_the_file_or_node(transferjs_bundles, tmp_path, kind, how):
    from converter.errors import TransferJSError

    model_json, named = _damaged(transferjs_bundles, tmp_path, kind, how)
    with pytest.raises(TransferJSError) as err:
        _import(model_json, tmp_path / "out")
    expected = 3 if how == "unknown op" else 2  # the exit-code contract: unsupported (nodes named) 3, bad input 2
    assert err.value.exit_code == expected and named in str(err.value), str(err.value)
    assert not (tmp_path / "out").exists()


def test_cli_refuses_an_op_tensorflow_lacks_with_exit_3(transferjs_bundles, tmp_path):
    model_json, named = _damaged(transferjs_bundles, tmp_path, "graph", "unknown op")
    proc = run_cli("convert", model_json, "-o", tmp_path / "out")
    assert proc.returncode == 3 and "NoSuchOpXyz" in proc.stderr and named in proc.stderr, proc.stderr
    assert not (tmp_path / "out").exists()


def test_detection_by_content(transferjs_bundles, tmp_path):
    from converter.errors import InputError
    from converter.sources.detect import detect_format

    bundle = transferjs_bundles["float32"]
    renamed = tmp_path / "weights-description.txt"
    shutil.copy(bundle / "model.json", renamed)
    assert detect_format(bundle) == detect_format(bundle / "model.json") == detect_format(renamed) == "tfjs"
    (tmp_path / "other.json").write_text(json.dumps({"format": "something else"}))
    with pytest.raises(InputError, match="modelTopology"):
        _import(tmp_path / "other.json", tmp_path / "out")


def test_quantized_weights_are_read_as_tfjs_reads_them(tmp_path):
    from converter.sources.tfjs_files import read_tfjs_files

    values = np.linspace(-1.5, 2.5, 12, dtype=np.float32)
    q = np.round((values - values.min()) / (4.0 / 255)).astype(np.uint8)
    (tmp_path / "s.bin").write_bytes(q.tobytes() + values.astype(np.float16).tobytes())
    manifest = [{"paths": ["s.bin"], "weights": [
        {"name": "a", "shape": [3, 4], "dtype": "float32", "quantization": {"dtype": "uint8", "scale": 4.0 / 255, "min": -1.5}},
        {"name": "b", "shape": [12], "dtype": "float32", "quantization": {"dtype": "float16"}}]}]
    (tmp_path / "model.json").write_text(json.dumps({"modelTopology": {"node": []}, "weightsManifest": manifest}))
    files = read_tfjs_files(tmp_path)
    assert files.weights["a"].dtype == np.float32 and files.weights["a"].shape == (3, 4)
    np.testing.assert_allclose(files.weights["a"].ravel(), values, atol=2.0 / 255 + 1e-6)
    np.testing.assert_allclose(files.weights["b"], values, atol=2e-3)


def _attr_list_s(*values):
    import base64

    return {"list": {"s": [base64.b64encode(v.encode()).decode() for v in values]}}


def _fused_ops_model(folder):
    """A hand-written graph model.json with every fused-op form old converters write (Prelu, LeakyRelu, Relu6)."""
    import base64

    rng = np.random.default_rng(3)
    weights = {"w": rng.normal(size=(3, 3, 2, 3)), "b": rng.normal(size=3), "alpha": rng.uniform(0.1, 0.5, 3),
               "dw": rng.normal(size=(3, 3, 3, 1)), "db": rng.normal(size=3), "shape": np.array([-1, 48]),
               "m": rng.normal(size=(48, 4)), "mb": rng.normal(size=4)}
    dtypes = {k: "int32" if k == "shape" else "float32" for k in weights}

    def const(name):
        dt = {"float32": "DT_FLOAT", "int32": "DT_INT32"}[dtypes[name]]
        dims = [{"size": str(d)} for d in weights[name].shape]
        return {"name": name, "op": "Const", "attr": {"value": {"tensor": {"dtype": dt, "tensorShape": {"dim": dims}}},
                                                      "dtype": {"type": dt}}}

    s = lambda v: {"s": base64.b64encode(v.encode()).decode()}  # noqa: E731
    ones = {"list": {"i": ["1", "1", "1", "1"]}}
    conv = {"T": {"type": "DT_FLOAT"}, "strides": ones, "dilations": ones, "padding": s("SAME"), "data_format": s("NHWC")}
    nodes = [{"name": "x", "op": "Placeholder", "attr": {"dtype": {"type": "DT_FLOAT"},
                                                         "shape": {"shape": {"dim": [{"size": "-1"}, {"size": "4"}, {"size": "4"}, {"size": "2"}]}}}},
             *[const(k) for k in weights],
             {"name": "conv", "op": "_FusedConv2D", "input": ["x", "w", "b"],
              "attr": {**conv, "num_args": {"i": "1"}, "fused_ops": _attr_list_s("BiasAdd", "LeakyRelu"), "leakyrelu_alpha": {"f": 0.2}}},
             # (TF.js 4.22 itself mis-runs LeakyRelu fused into a depthwise conv: NaN on cpu, alpha 0 on wasm)
             {"name": "dw_conv", "op": "FusedDepthwiseConv2dNative", "input": ["conv", "dw", "db", "alpha"],
              "attr": {**conv, "num_args": {"i": "2"}, "fused_ops": _attr_list_s("BiasAdd", "Prelu")}},
             {"name": "flat", "op": "Reshape", "input": ["dw_conv", "shape"], "attr": {"T": {"type": "DT_FLOAT"}, "Tshape": {"type": "DT_INT32"}}},
             {"name": "logits", "op": "_FusedMatMul", "input": ["flat", "m", "mb"],
              "attr": {"T": {"type": "DT_FLOAT"}, "transpose_a": {"b": False}, "transpose_b": {"b": False},
                       "num_args": {"i": "1"}, "fused_ops": _attr_list_s("BiasAdd", "Relu6")}}]
    folder.mkdir()
    (folder / "weights.bin").write_bytes(b"".join(weights[k].astype(dtypes[k]).tobytes() for k in weights))
    manifest = [{"paths": ["weights.bin"], "weights": [{"name": k, "shape": list(v.shape), "dtype": dtypes[k]} for k, v in weights.items()]}]
    (folder / "model.json").write_text(json.dumps({"format": "graph-model", "modelTopology": {"node": nodes, "versions": {"producer": 175}},
                                                   "weightsManifest": manifest}))
    return folder / "model.json"


def test_fused_ops_split_into_plain_tensorflow_ops_match_tfjs(tmp_path):
    result = _import(_fused_ops_model(tmp_path / "fused"), tmp_path / "out", export=None)
    _assert_import_parity(result)
    assert result.report.source["fused_ops_split"] == 3
    assert {"Conv2D", "DepthwiseConv2dNative", "MatMul", "LeakyRelu", "Relu6"} <= set(result.report.op_histogram)


def test_tf1_control_flow_is_refused_naming_its_nodes(tmp_path):
    from converter.errors import UnsupportedOpsError

    model_json = _fused_ops_model(tmp_path / "loop")
    data = json.loads(model_json.read_text())
    data["modelTopology"]["node"].append({"name": "loop/Enter", "op": "Enter", "input": ["x"],
                                          "attr": {"T": {"type": "DT_FLOAT"}, "frame_name": {"s": "bG9vcA=="}}})
    model_json.write_text(json.dumps(data))
    with pytest.raises(UnsupportedOpsError, match="loop/Enter") as err:
        _import(model_json, tmp_path / "out", export=None)
    assert err.value.exit_code == 3 and not (tmp_path / "out").exists()


def test_convert_summary_says_when_an_8_bit_source_becomes_a_float32_bundle():
    from transferjs.cli import summary

    report = {"source": {"path": "model.json", "format": "tfjs", "weight_storage": ["float32", "uint8"]},
              "model": {"inputs": [], "outputs": []}, "seconds": {"convert": 1.0},
              "tfjs": {"bytes": 4e6, "quantize": None, "layers_model": None}}
    assert "Pass --quantize uint8" in summary(report, "out")
    report["tfjs"]["quantize"] = "uint8"
    assert "note:" not in summary(report, "out")
    report["source"]["weight_storage"], report["tfjs"]["quantize"] = ["float32"], None
    assert "note:" not in summary(report, "out")
