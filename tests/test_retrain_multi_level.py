"""Multi-level features: the pooled outputs of a CNN's last stages beside its features, chosen on held-out folds.

A small converted CNN with inverted bottlenecks (``fixtures.models.stage_cnn``: stages of 16, 24, 32, 40
channels, expansions to 48-96, a 64-channel head) stands in for EfficientNet-Lite0.
"""

from __future__ import annotations

import json

import numpy as np
import pytest


@pytest.fixture(scope="module")
def stage_model(tmp_path_factory):
    """``StageCNN`` exported to ONNX and converted by transferjs; the backbone as ``retrain`` loads it."""
    import torch

    from converter import convert
    from fixtures.models import stage_cnn
    from retrain.api import _backbone

    model, example = stage_cnn()
    root = tmp_path_factory.mktemp("stage")
    torch.onnx.export(model, example, str(root / "stage.onnx"), input_names=["image"], output_names=["logits"],
                      dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}}, opset_version=17, dynamo=False)
    convert(root / "stage.onnx", root / "converted")
    return _backbone(root / "converted", None, log=lambda m: None)


@pytest.fixture(scope="module")
def stage_images(tmp_path_factory):
    """4 classes x 6 seeded 32x32 PNGs (a colour and a stripe direction per class), as class folders."""
    from PIL import Image

    root = tmp_path_factory.mktemp("stage-images")
    rng = np.random.default_rng(0)
    for c in range(4):
        (root / f"class{c}").mkdir()
        for i in range(6):
            img = rng.uniform(0, 80, (32, 32, 3))
            img[..., c % 3] += 120
            stripes = (np.arange(32) // 4 % 2 * 50)[:, None] if c < 2 else (np.arange(32) // 4 % 2 * 50)[None, :]
            img += stripes[..., None]
            Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(root / f"class{c}" / f"{i}.png")
    return root


def test_the_taps_are_the_last_three_stage_outputs_not_the_expansions(stage_model, tiny_converted):
    from converter.graph.frozen import frozen_graph
    from retrain.api import _backbone
    from retrain.feature_taps import channel_widths
    from retrain.features import FeatureExtractor

    fx = FeatureExtractor(stage_model, multi_level=True)
    graph_def, frozen = frozen_graph(stage_model.saved_model)
    widths = [w for w, _ in channel_widths(graph_def, frozen.graph, fx.node)]
    assert widths == [3, 8, 16, 48, 24, 72, 32, 96, 40, 64]  # up into each expansion, down to each stage's width
    assert [int(frozen.graph.get_tensor_by_name(t).shape[-1]) for t in fx.taps] == [24, 32, 40]
    assert (fx.base_dim, fx.dim) == (64, 64 + 24 + 32 + 40)
    assert fx.key != fx.base().key == FeatureExtractor(stage_model).key  # the cache follows the taps
    assert FeatureExtractor(stage_model, fx.node, multi_level=True).taps == []  # --feature-node: no taps
    tiny = FeatureExtractor(_backbone(tiny_converted.model.directory, None, log=lambda m: None), multi_level=True)
    assert tiny.taps == [] and tiny.dim == tiny.base_dim == 16  # a single stage: nothing to tap


def test_multi_level_features_are_the_default_ones_then_the_pooled_taps(stage_model):
    import tensorflow as tf

    from retrain.features import FeatureExtractor

    fx = FeatureExtractor(stage_model, multi_level=True)
    x = np.random.default_rng(1).uniform(0, 1, (3, 32, 32, 3)).astype(np.float32)
    with tf.Graph().as_default() as g:  # the frozen graph run as it is, pooled in numpy
        tf.graph_util.import_graph_def(fx.graph_def, name="")
        with tf.compat.v1.Session(graph=g) as session:
            base, *taps = session.run([fx.node, *fx.taps], {fx.placeholder: x})
    manual = np.concatenate([base, *(t.mean(axis=(1, 2)) for t in taps)], axis=1)
    features = fx(x)
    assert features.shape == (3, 160)
    np.testing.assert_allclose(features, manual, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(features[:, :64], FeatureExtractor(stage_model)(x), rtol=1e-5, atol=1e-5)
    tuned = fx.trainable(2)  # fine-tuning: the same concatenation, its top layers as variables
    assert len(tuned.trainable_variables) == 4
    np.testing.assert_allclose(tuned(tf.constant(x)).numpy(), manual, rtol=1e-5, atol=1e-5)


def test_a_multi_level_classifier_scores_the_same_in_tfjs_as_its_saved_model(stage_model, stage_images, tmp_path):
    from converter.verify.parity import tensorflow_vs_tfjs
    from retrain.data import scan_folder
    from retrain.features import FeatureExtractor, cached_features
    from retrain.linear_probe import fit_softmax_regression
    from retrain.runtime_check import score_in_runtimes
    from retrain.train import TrainConfig, head_from_probe
    from retrain.writing import write_classifier

    fx = FeatureExtractor(stage_model, multi_level=True)
    dataset = scan_folder(stage_images)
    items = [(p, label) for p, label in dataset.items]
    x, ok, _ = cached_features(fx, [p for p, _ in items], tmp_path / "cache")
    y = np.array([label for _, label in items])
    head = head_from_probe(fit_softmax_regression(x, y, 4, 0.1), 4, TrainConfig())
    model, bundle, _ = write_classifier(tmp_path / "out", stage_model, fx, (fx.extract, head), dataset.labels, "ml")
    assert head.input_shape == (None, 160)
    check = score_in_runtimes(model, bundle, items)
    assert check["tfjs_accuracy"] == check["saved_model_accuracy"] and check["same_predictions"] == len(items)
    assert check["max_abs_probability_diff"] < 1e-4
    assert tensorflow_vs_tfjs(model, bundle).ok


def test_retrain_reports_the_feature_choice_and_ships_what_it_chose(stage_model, stage_images, tmp_path):
    from converter.model import ConvertedModel
    from retrain import TrainConfig, retrain

    result = retrain(stage_model.directory, stage_images, tmp_path / "out", TrainConfig(folds=3), baseline=False,
                     cache_dir=tmp_path / "cache", progress=False, log=lambda m: None)
    features = result.report["features"]
    assert features["default_dim"] == 64 and features["multi_level_dim"] == 160 and len(features["taps"]) == 3
    assert set(features["cv"]) == {"default", "multi-level"} and len(features["held_out_folds_chose"]) == 3
    dim = 160 if features["used"] == "multi-level" else 64
    assert features["dim"] == result.report["backbone"]["feature_dim"] == dim
    backbone = json.loads((tmp_path / "out" / "tfjs-transfer" / "head" / "model.json").read_text())
    assert f"[null, {dim}]" in json.dumps(backbone)  # the head's input: the features it chose
    assert result.report["parity_tfjs"]["ok"] and result.report["parity_tfjs_backbone"]["ok"]
    assert "cross-validated on the training images" in (tmp_path / "out" / "report.html").read_text()
    off = retrain(stage_model.directory, stage_images, tmp_path / "off", TrainConfig(folds=3, multi_level=False),
                  baseline=False, cache_dir=tmp_path / "cache", progress=False, log=lambda m: None, verify=False)
    assert off.report["features"]["used"] == "default" and "cv" not in off.report["features"]
    assert ConvertedModel.load(tmp_path / "off").outputs[0].shape == [None, 4]


def test_a_feature_set_that_cannot_help_is_not_chosen():
    from retrain.evaluation import choose_head, held_out_heads, plan_evaluation
    from retrain.train import TrainConfig

    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 30)
    signal = rng.normal(0, 1, (90, 8)) + np.eye(3)[y] @ rng.normal(0, 2, (3, 8))
    noise = rng.normal(0, 1, (90, 40))
    config = TrainConfig()
    head = choose_head(np.hstack([signal, noise]), y, 3, config, base_columns=8)
    assert head.feature_set == "default" and head.columns == 8
    assert head.cv["default"]["accuracy"] >= head.cv["multi-level"]["accuracy"]
    # the same choice made on each fold's training images only (nested) ...
    plan = plan_evaluation(y, config)
    held = held_out_heads(np.hstack([signal, noise]), y, 3, plan, config, log=lambda m: None, base_columns=8)
    assert {h.feature_set for h in held["heads"]} == {"default"}
    # ... and the extra columns are chosen when they are where the signal is
    head = choose_head(np.hstack([noise[:, :8], signal]), y, 3, config, base_columns=8)
    assert head.feature_set == "multi-level" and head.columns == 16
    assert head.predict_proba(np.hstack([noise[:, :8], signal])).shape == (90, 3)
