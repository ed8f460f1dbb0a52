"""Keras sources: Keras 3 files, Keras 2 HDF5, SavedModel folders; safe mode."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import run_cli


def _report(out):
    return json.loads((out / "report.json").read_text())


def _assert_verified(report, reference="keras"):
    for stage in ("tensorflow", "tfjs"):
        parity = report["parity"][stage]
        assert parity["ok"] and parity["reference"] == reference, parity
        for o in parity["outputs"].values():
            assert o["note"] == "", o  # a constant output would make the check meaningless


@pytest.mark.slow
@pytest.mark.parametrize("name, size", [("MobileNetV2", 96), ("EfficientNetB0", 64), ("ResNet50", 64)])
def test_keras_applications_convert_with_parity(tmp_path, name, size):
    import keras

    from fixtures.models import calibrate_keras_batchnorm, randomize_keras_weights

    model = getattr(keras.applications, name)(weights=None, input_shape=(size, size, 3), classes=7)
    randomize_keras_weights(model)
    calibrate_keras_batchnorm(model, np.random.default_rng(1).uniform(-1, 1, (8, size, size, 3)).astype("float32"))
    model.save(tmp_path / "m.keras")
    proc = run_cli("convert", tmp_path / "m.keras", "-o", tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    report = _report(tmp_path / "out")
    _assert_verified(report)
    (inp,) = report["model"]["inputs"]
    assert inp["shape"] == [None, size, size, 3] and inp["layout"] == "NHWC"
    assert report["model"]["outputs"][0]["shape"] == [None, 7]
    layers = report["tfjs"]["layers_model"]
    if name == "EfficientNetB0":  # its Normalization layer has no TF.js layers class
        assert not layers["written"] and "Normalization: 1 layer(s): normalization" in layers["reason"]
        assert "no TF.js layers model" in proc.stdout
    else:  # Keras 3 models load in TF.js layers (tensorflowjs alone writes a model.json TF.js refuses)
        assert layers["written"] and layers["parity"]["ok"] and layers["parity"]["candidate"] == "tfjs-layers-wasm"


def _keras2_cnn():
    import tf_keras

    inp = tf_keras.Input((16, 16, 3), name="pixels")
    x = tf_keras.layers.Conv2D(4, 3, activation="relu")(inp)
    x = tf_keras.layers.BatchNormalization()(x)
    x = tf_keras.layers.GlobalAveragePooling2D()(x)
    return tf_keras.Model(inp, tf_keras.layers.Dense(3, activation="softmax", name="probs")(x))


def test_keras2_hdf5_including_an_old_release_marker(tmp_path):
    import h5py

    from fixtures.models import randomize_keras_weights

    model = randomize_keras_weights(_keras2_cnn())
    f = tmp_path / "old.h5"
    model.save(str(f))
    with h5py.File(f, "r+") as h5:  # as written by a Keras 2.0-era release
        h5.attrs["keras_version"] = "2.0.8"
    proc = run_cli("convert", f, "-o", tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    report = _report(tmp_path / "out")
    _assert_verified(report)
    assert report["model"]["inputs"][0]["name"] == "pixels"
    # Keras 2 weight names (batch_normalization_1/gamma…) must match in the TF.js layers model.
    assert report["tfjs"]["layers_model"]["written"] and report["tfjs"]["layers_model"]["parity"]["ok"]
    x = np.random.default_rng(0).uniform(size=(2, 16, 16, 3)).astype("float32")
    from converter.runtimes.tensorflow import run_saved_model

    got = run_saved_model(tmp_path / "out" / "saved_model", [{"pixels": x}])[0]["probs"]
    np.testing.assert_allclose(got, model(x).numpy(), atol=1e-5)


def _lambda_model(keras):
    inp = keras.Input((8,), name="x")
    x = keras.layers.Lambda(lambda t: t * 2.0 + 1.0)(inp)
    return keras.Model(inp, keras.layers.Dense(3, name="y")(x))


def test_lambda_layer_is_refused_then_accepted_with_trust_code(tmp_path):
    import keras

    _lambda_model(keras).save(tmp_path / "lam.keras")
    proc = run_cli("convert", tmp_path / "lam.keras", "-o", tmp_path / "out")
    assert proc.returncode == 2 and "Lambda" in proc.stderr and "--trust-code" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "out").exists()
    proc = run_cli("convert", tmp_path / "lam.keras", "-o", tmp_path / "out", "--trust-code")
    assert proc.returncode == 0, proc.stderr
    _assert_verified(_report(tmp_path / "out"))


def test_lambda_layer_in_keras2_hdf5_is_refused(tmp_path):
    import tf_keras

    _lambda_model(tf_keras).save(str(tmp_path / "lam.h5"))
    proc = run_cli("convert", tmp_path / "lam.h5", "-o", tmp_path / "out")
    assert proc.returncode == 2 and "Lambda" in proc.stderr and "--trust-code" in proc.stderr


def test_savedmodel_folder_source(tmp_path):
    import tensorflow as tf

    from fixtures.models import randomize_keras_weights

    model = randomize_keras_weights(_keras2_cnn())
    tf.saved_model.save(model, str(tmp_path / "sm"))
    proc = run_cli("convert", tmp_path / "sm", "-o", tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    report = _report(tmp_path / "out")
    assert report["source"]["format"] == "saved_model"
    _assert_verified(report, reference="tensorflow (source SavedModel)")


def test_layers_model_trains_further_in_node(tmp_path):
    """The JavaScript side of transfer learning: model.fit in Node.js on a Keras head."""
    import base64
    import subprocess

    import keras

    from converter.runtimes.node import js_dir, node_executable

    inp = keras.Input((16,), name="features")
    x = keras.layers.Dropout(0.1)(inp)
    head = keras.Model(inp, keras.layers.Dense(3, activation="softmax", name="probs")(x))
    head.save(tmp_path / "head.keras")
    proc = run_cli("convert", tmp_path / "head.keras", "-o", tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    rng = np.random.default_rng(0)
    centers = rng.standard_normal((3, 16)) * 3
    labels = np.repeat(np.arange(3), 20)
    feats = (centers[labels] + rng.standard_normal((60, 16))).astype(np.float32)
    onehot = np.eye(3, dtype=np.float32)[labels]
    enc = lambda a: {"dtype": "float32", "shape": list(a.shape), "data": base64.b64encode(a.tobytes()).decode()}
    req = {"model": str(tmp_path / "out" / "tfjs" / "layers"), "x": enc(feats), "y": enc(onehot), "epochs": 30, "learningRate": 0.05}
    (tmp_path / "req.json").write_text(json.dumps(req))
    subprocess.run([node_executable(), str(js_dir() / "fit_layers.mjs"), str(tmp_path / "req.json"), str(tmp_path / "res.json")],
                   check=True, timeout=300)
    res = json.loads((tmp_path / "res.json").read_text())
    assert "error" not in res, res
    assert res["losses"][-1] < 0.5 * res["losses"][0]
    pred = np.frombuffer(base64.b64decode(res["predictions"]["data"]), np.float32).reshape(60, 3)
    assert (pred.argmax(1) == labels).mean() > 0.9


def test_custom_class_needs_trust_code_and_its_import_path(tmp_path):
    import keras

    from fixtures.models import Scale

    inp = keras.Input((4,), name="x")
    keras.Model(inp, keras.layers.Dense(2, name="y")(Scale(3.0)(inp))).save(tmp_path / "custom.keras")
    proc = run_cli("convert", tmp_path / "custom.keras", "-o", tmp_path / "out", env={"PYTHONPATH": ""})
    assert proc.returncode == 2 and "--custom-objects package.module:Scale" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    proc = run_cli("convert", tmp_path / "custom.keras", "-o", tmp_path / "out", "--trust-code", "--custom-objects", "fixtures.models:Scale")
    assert proc.returncode == 0, proc.stderr
    _assert_verified(_report(tmp_path / "out"))
