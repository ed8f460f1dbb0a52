"""Phase 2 building blocks: lifting a converted graph's weights into variables, and the resumable loop."""

from __future__ import annotations

import numpy as np
import pytest


def test_lifted_weights_leave_outputs_unchanged_and_receive_gradients(tiny_converted):
    import tensorflow as tf

    from converter.graph.trainable import TrainableGraph
    from converter.graph.frozen import frozen_graph

    graph_def, frozen = frozen_graph(tiny_converted.model.saved_model)
    x_name, y_name = frozen.inputs[0].name, frozen.outputs[0].name
    fixed = TrainableGraph(graph_def, x_name, y_name, 0)
    top2 = TrainableGraph(graph_def, x_name, y_name, 2)
    assert len(top2.weight_layers) >= 3 and top2.trainable_layer_names == top2.weight_layers[-2:]
    assert len(top2.trainable_variables) == 4  # each layer's weights and bias
    assert fixed.trainable_variables == []
    x = tf.random.stateless_uniform([2, *frozen.inputs[0].shape[1:]], seed=(1, 2))
    np.testing.assert_array_equal(fixed(x).numpy(), top2(x).numpy())

    @tf.function
    def gradients(x):
        return tf.gradients(tf.reduce_sum(top2(x) ** 2), top2.trainable_variables)

    assert all(g is not None and float(tf.norm(g)) > 0 for g in gradients(x))


class _Killed(Exception):
    """Stands for a kill between two epochs: the run stops with its last checkpoint as a kill leaves it."""


def _head_problem(tmp_path, epochs: int, resume: bool, kill_before: int | None = None):
    """A head trained on a separable problem by the real loop; ``kill_before``: stop when that epoch starts."""
    import keras

    from retrain.loop import FitSpec, fit
    from retrain.train import TrainConfig, build_head, evaluate, train_step

    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 8)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int32)
    config = TrainConfig(seed=3, dropout=0.5)
    head = build_head(8, 2, config)
    opt = keras.optimizers.Adam(0.05)
    opt.build(head.trainable_variables)
    step = train_step(lambda v, training: head(v, training=training), head.trainable_variables, opt, 2, 0.0)

    def run_epoch(epoch):
        if epoch == kill_before:
            raise _Killed()
        order = np.random.default_rng([config.seed, epoch]).permutation(48)
        loss = correct = 0.0
        for i in np.array_split(order, 3):
            l, c = step(x[i], y[i], np.ones(len(i), np.float32))
            loss, correct = loss + float(l) * len(i), correct + float(c)
        return {"loss": loss / 48, "accuracy": correct / 48}

    spec = FitSpec("test", head.trainable_variables, head.non_trainable_variables + opt.variables, run_epoch,
                   lambda: evaluate(head(x[48:]).numpy(), y[48:]), epochs, patience=100)
    history = fit(spec, tmp_path / "ckpt.npz", resume=resume, log=lambda m: None)
    return history, [v.numpy() for v in head.variables]


def test_a_resumed_run_ends_where_an_uninterrupted_one_does(tmp_path):
    (tmp_path / "a").mkdir()
    straight, w_straight = _head_problem(tmp_path / "a", epochs=6, resume=False)
    assert straight["accuracy"][-1] > straight["accuracy"][0] and straight["loss"][-1] < straight["loss"][0]  # it learns
    (tmp_path / "b").mkdir()
    try:
        _head_problem(tmp_path / "b", epochs=6, resume=False, kill_before=3)  # killed after epoch 3's checkpoint
    except _Killed:
        pass
    resumed, w_resumed = _head_problem(tmp_path / "b", epochs=6, resume=True)
    assert resumed["resumed_from_epoch"] == 3
    np.testing.assert_allclose(resumed["val_loss"], straight["val_loss"], rtol=1e-5)
    np.testing.assert_allclose(resumed["loss"], straight["loss"], rtol=1e-5)
    for a, b in zip(w_resumed, w_straight):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_layer_wise_decay_moves_each_layer_by_its_own_rate(tiny_converted):
    """Adam's first step moves every weight by about its learning rate: the head by lr, layer d by lr * decay**d."""
    import tensorflow as tf

    from converter.graph.frozen import frozen_graph
    from converter.graph.trainable import TrainableGraph
    from retrain.finetune import LayerwiseAdam, layer_groups
    from retrain.train import TrainConfig, build_head, train_step

    graph_def, frozen = frozen_graph(tiny_converted.model.saved_model)
    x_name, y_name = frozen.inputs[0].name, frozen.outputs[0].name
    graph = TrainableGraph(graph_def, x_name, y_name, 2)
    by_layer = graph.variables_by_layer()
    assert [len(vs) for vs in by_layer] == [2, 2]  # weights and bias of each, the top layer first
    assert sum(by_layer, []) == graph.trainable_variables[2:] + graph.trainable_variables[:2]
    head = build_head(int(frozen.outputs[0].shape[-1]), 3, TrainConfig(dropout=0.0))
    groups = layer_groups(graph, head, decay=0.5)
    assert [m for _, m in groups] == [1.0, 0.5, 0.25]
    optimizer = LayerwiseAdam(groups, lambda multiplier: 1e-3 * multiplier)
    variables = [v for vs, _ in groups for v in vs]
    before = [v.numpy().copy() for v in variables]
    step = train_step(lambda x, training: head(graph(x), training=training), variables, optimizer, 3, 0.0)
    x = tf.random.stateless_uniform([4, *frozen.inputs[0].shape[1:]], seed=(1, 2))
    step(x, tf.constant([0, 1, 2, 0]), tf.ones(4))
    moved = iter(np.abs(v.numpy() - b).max() for v, b in zip(variables, before))
    for vs, multiplier in groups:
        for _ in vs:
            np.testing.assert_allclose(next(moved), 1e-3 * multiplier, rtol=0.02)


@pytest.fixture(scope="module")
def tiny_model(tiny_converted):
    """The tiny converted CNN with the preprocessing ``retrain`` resolves for it."""
    import dataclasses

    from retrain.api import _preprocessing

    return dataclasses.replace(tiny_converted.model, preprocessing=_preprocessing(tiny_converted.model))


def test_mixup_blends_each_image_with_its_keyed_partner_alike_on_one_and_two_workers(tiny_model, tmp_path):
    """Solid-grey images, one class each: every pixel is ``mix * own + (1 - mix) * partner``; shards slice the whole."""
    from PIL import Image

    from converter.images import normalize
    from retrain.data_parallel import ExampleSettings, shard_batches
    from retrain.distributed import Workers

    model = tiny_model
    p, layout = model.preprocessing, model.inputs[0].layout or "NHWC"
    grey = [0, 40, 80, 120, 160, 200, 240, 255]
    for i, v in enumerate(grey):
        Image.new("RGB", (8, 8), (v,) * 3).save(tmp_path / f"{i}.png")
    items = [(str(tmp_path / f"{i}.png"), i) for i in range(len(grey))]  # the label names the image
    order = np.random.default_rng(1).permutation(len(items))

    def batches(mixup, workers=Workers()):
        return list(shard_batches(items, model, order, 4, workers, ExampleSettings(0, 1, False, 0.0, 4, mixup)))

    def pixel(value):
        return float(np.asarray(normalize(np.full((1, *p.size, 3), value, np.float32), p, layout)).ravel()[0])

    mixed = batches(0.4)
    shares = np.concatenate([b.mix.numpy() for b in mixed])
    assert np.concatenate([b.y.numpy() for b in mixed]).tolist() == order.tolist()
    for b in mixed:
        for x, own, partner, mix in zip(b.x.numpy(), b.y.numpy(), b.partner.numpy(), b.mix.numpy()):
            assert x.ravel()[0] == pytest.approx(pixel(mix * grey[own] + (1 - mix) * grey[partner]), abs=1e-4)
    assert shares.min() >= 0.5 and shares.min() < 0.9  # really mixed, the own image the larger part
    for rank in (0, 1):  # each worker holds its contiguous slice of the same global batches
        for whole, part in zip(mixed, batches(0.4, Workers(rank, 2))):
            rows = np.array_split(np.arange(whole.global_size), 2)[rank]
            np.testing.assert_array_equal(part.x.numpy(), whole.x.numpy()[rows])
            np.testing.assert_array_equal(part.partner.numpy(), whole.partner.numpy()[rows])
    off = batches(0.0)
    assert all((b.mix.numpy() == 1).all() and (b.partner.numpy() == b.y.numpy()).all() for b in off)
    assert off[0].x.numpy().ravel()[0] == pytest.approx(pixel(grey[order[0]]), abs=1e-5)


def test_weight_average_delivers_the_point_between_the_start_and_the_fine_tuned_weights(tiny_model, tmp_path):
    """``fine_tune_weight_average=0.5``: every trained variable ends halfway back to where fine-tuning started."""
    from PIL import Image

    from retrain.features import FeatureExtractor
    from retrain.finetune import fine_tune
    from retrain.train import TrainConfig, build_head

    fx = FeatureExtractor(tiny_model)
    items = []
    for i in range(8):
        Image.new("RGB", (8, 8), (30 * i, 255 - 30 * i, 90)).save(tmp_path / f"{i}.png")
        items.append((str(tmp_path / f"{i}.png"), i % 2))

    def tuned(share):
        config = TrainConfig(fine_tune=2, fine_tune_epochs=2, batch_size=4, fine_tune_learning_rate=1e-2, augment=False,
                             fine_tune_weight_average=share)
        graph, head = fx.trainable(2), build_head(fx.dim, 2, config)
        variables = graph.trainable_variables + head.trainable_variables
        start = [v.numpy() for v in variables]
        fine_tune(graph, head, fx, items, [], 2, config, progress=False, log=lambda m: None)
        return start, [v.numpy() for v in variables]

    start, full = tuned(1.0)
    _, half = tuned(0.5)
    assert max(float(np.abs(f - s).max()) for f, s in zip(full, start)) > 1e-3  # fine-tuning moved the weights
    for s, f, h in zip(start, full, half):
        np.testing.assert_allclose(h, (s + f) / 2, rtol=1e-5, atol=1e-6)
