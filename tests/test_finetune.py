"""Phase 2 building blocks: lifting a converted graph's weights into variables, and the resumable loop."""

from __future__ import annotations

import numpy as np


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
