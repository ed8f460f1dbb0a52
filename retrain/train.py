"""Phase 1: a new head on frozen features (the hidden-layer variant; the linear one: ``linear_probe``); metrics.

Example:
    >>> head, history = train_head(x_train, y_train, x_val, y_val, classes=5, config=TrainConfig())
    >>> metrics(y_test, head.predict(x_test).argmax(1), labels)["accuracy"]
    0.71
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from converter.images import load_rgb, resize
from retrain.linear_probe import choose_and_fit, stratified_folds
from retrain.loop import FitSpec, fit
from retrain.progress import Progress


@dataclass(frozen=True)
class TrainConfig:
    """Retraining settings; the defaults suit a few dozen to tens of thousands of images.

    Args:
        l2: the linear head's regularisation strength (``None``: chosen by cross-validation).
        folds: k of the k-fold cross-validation that chooses settings and estimates held-out accuracy.
        kfold_max_images: up to this many images, held-out accuracy is a k-fold estimate; above it, a
            fixed test split (``test_split`` of ``retrain``).
        refit: after choosing settings on held-out images, train the exported model on every image
            (``False``: export the model that was evaluated, trained without its held-out images).
        hidden: units of an optional hidden layer: that head (Adam, dropout, early stopping) competes with
            the linear one on the same folds; the better held-out accuracy wins (0: linear only).
        epochs, batch_size, learning_rate, dropout, patience: the hidden-layer head's training (Adam).
        label_smoothing: for the heads' cross-entropy.
        seed: everything random (folds, splits, weights, shuffling, augmentation) follows it.
        fine_tune: phase 2 trains the last N weight layers of the backbone with the head (0: off); kept
            only when it beats the frozen head on the held-out images it was not trained on.
        fine_tune_epochs: phase 2's fixed epoch budget (warm-up, then cosine decay; the last epoch is kept).
        fine_tune_learning_rate: phase 2's peak learning rate (Adam), the head's and the top layer's.
        fine_tune_layer_decay: each weight layer further down trains at this times the rate of the one above.
        fine_tune_label_smoothing: phase 2's (it keeps the head from growing over-confident on few images).
        fine_tune_mixup: phase 2's mixup concentration (Beta(a, a); 0: off): each training image is blended
            with another one, and its target alike (``example_augmentation.mixup_pair``).
        fine_tune_weight_average: the fine-tuned weights' share in the delivered ones, the rest the starting
            weights' (pretrained backbone, frozen-feature head; WiSE-FT); 1: the fine-tuned weights as trained.
            0.5 measured better than 1 on 9 of 10 folds of the demo task with EfficientNet-Lite0, worse on 4 of 5
            with Lite2, whose frozen head is weaker (BENCHMARKS.md, issue 15 fifth pass).
        augment: random flip/rotation/zoom/brightness/contrast during phase 2.
        multi_level: also consider the pooled outputs of the backbone's last 3 stages beside its features
            (``feature_taps``); used only when they win the inner cross-validation (``choose_head``).
            Not for ``--feature-node``, nor for data sets past ``kfold_max_images`` (streamed) or workers.
    """

    l2: float | None = None
    folds: int = 5
    kfold_max_images: int = 2000
    refit: bool = True
    epochs: int = 100
    batch_size: int = 32
    learning_rate: float = 1e-3
    dropout: float = 0.2
    hidden: int = 0
    label_smoothing: float = 0.0
    patience: int = 10
    seed: int = 0
    fine_tune: int = 0
    fine_tune_epochs: int = 3
    fine_tune_learning_rate: float = 3e-4
    fine_tune_layer_decay: float = 1.0
    fine_tune_label_smoothing: float = 0.1
    fine_tune_mixup: float = 0.0
    fine_tune_weight_average: float = 0.5
    augment: bool = True
    multi_level: bool = True


def build_head(dim: int, classes: int, config: TrainConfig):
    """Dropout (+ optional hidden layer) + dense softmax, as a Keras model named for TF.js."""
    import keras

    # Seeded initializers and dropout: the seed decides the weights without touching global random state.
    inp = keras.Input((dim,), name="features")
    x = keras.layers.Dropout(config.dropout, seed=config.seed, name="dropout")(inp)
    if config.hidden:
        x = keras.layers.Dense(config.hidden, activation="relu", name="hidden",
                               kernel_initializer=keras.initializers.GlorotUniform(seed=config.seed))(x)
    out = keras.layers.Dense(classes, activation="softmax", name="probabilities",
                             kernel_initializer=keras.initializers.GlorotUniform(seed=config.seed + 1))(x)
    return keras.Model(inp, out, name="head")


def head_from_probe(probe, classes: int, config: TrainConfig):
    """The Keras head (``build_head``, no hidden layer) holding a fitted ``LinearProbe``'s weights."""
    import dataclasses

    head = build_head(probe.kernel.shape[0], classes, dataclasses.replace(config, hidden=0))
    head.get_layer("probabilities").set_weights([probe.kernel.astype(np.float32), probe.bias.astype(np.float32)])
    return head


def class_weights(y: np.ndarray, classes: int) -> np.ndarray:
    """Inverse-frequency weight per class (float32, mean 1 over the samples): imbalanced classes count alike."""
    counts = np.bincount(y, minlength=classes).astype(float)
    return (counts.sum() / (classes * np.maximum(counts, 1))).astype(np.float32)


def train_step(forward, variables: list, optimizer, classes: int, label_smoothing: float):
    """A compiled step: ``step(x, y, weights) -> (loss, correct)``, updating ``variables``.

    ``forward(x, training)`` returns probabilities; ``weights`` are per-sample (class weights).
    """
    import keras
    import tensorflow as tf

    ce = keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing)

    @tf.function
    def step(x, y, w):
        p = forward(x, True)
        loss = ce(tf.one_hot(y, classes), p, sample_weight=w)
        # Symbolic gradients: ops that import_graph_def creates are not recorded by a GradientTape.
        optimizer.apply_gradients(zip(tf.gradients(loss, variables), variables))
        return loss, tf.reduce_sum(tf.cast(tf.argmax(p, 1, output_type=tf.int32) == y, tf.float32))

    return step


def evaluate(probabilities: np.ndarray, y: np.ndarray) -> dict:
    """Unweighted cross-entropy and accuracy of predicted ``probabilities`` for labels ``y``."""
    p = np.clip(probabilities[np.arange(len(y)), y], 1e-7, 1.0)
    return {"loss": float(-np.log(p).mean()), "accuracy": float((probabilities.argmax(1) == y).mean())}


def train_head(x_train, y_train, x_val, y_val, classes: int, config: TrainConfig, checkpoint=None,
               resume: bool = False, progress: bool = True, log=print):
    """Train the head on features; return it (best validation epoch restored) and the history."""
    import keras

    head = build_head(x_train.shape[1], classes, config)
    optimizer = keras.optimizers.Adam(config.learning_rate)
    optimizer.build(head.trainable_variables)
    step = train_step(lambda x, training: head(x, training=training), head.trainable_variables, optimizer,
                      classes, config.label_smoothing)
    weights = class_weights(y_train, classes)
    bar = Progress("head", config.epochs, enabled=progress)

    def run_epoch(epoch: int) -> dict:
        order = np.random.default_rng([config.seed, epoch]).permutation(len(y_train))
        loss = correct = 0.0
        for start in range(0, len(order), config.batch_size):
            i = order[start : start + config.batch_size]
            l, c = step(x_train[i], y_train[i].astype(np.int32), weights[y_train[i]])
            loss, correct = loss + float(l) * len(i), correct + float(c)
        return {"loss": loss / len(order), "accuracy": correct / len(order)}

    def validate() -> dict:
        result = evaluate(head(x_val, training=False).numpy(), y_val)
        bar.update(1, f"val_accuracy {result['accuracy']:.3f}")
        return result

    spec = FitSpec("head", head.trainable_variables, head.non_trainable_variables + optimizer.variables,
                   run_epoch, validate, config.epochs, config.patience)
    history = fit(spec, checkpoint, resume, log)
    bar.total = max(bar.done, 1)
    bar.close(f"best epoch {history['best_epoch']}")
    return head, history


def metrics(y_true: np.ndarray, y_pred: np.ndarray, labels: list[str]) -> dict:
    """Accuracy, per-class precision/recall/F1 and the confusion matrix (rows: true class)."""
    k = len(labels)
    cm = np.zeros((k, k), int)
    for t, p in zip(y_true, y_pred):
        cm[t, p] += 1
    per_class = {}
    for i, name in enumerate(labels):
        tp = cm[i, i]
        precision = tp / cm[:, i].sum() if cm[:, i].sum() else 0.0
        recall = tp / cm[i].sum() if cm[i].sum() else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[name] = {"precision": float(precision), "recall": float(recall), "f1": float(f1), "support": int(cm[i].sum())}
    return {"accuracy": float(np.trace(cm) / max(cm.sum(), 1)), "per_class": per_class, "confusion_matrix": cm.tolist()}


def raw_pixel_baseline(train_paths, y_train, test_paths, y_test, size: int = 32, seed: int = 0) -> float:
    """Test accuracy of softmax regression on raw pixels (size x size): the bar transfer must clear.

    The same linear head as on features (L2 strength chosen by 3-fold cross-validation on the training
    images), on standardized pixels. Images are read one at a time and kept only at ``size`` x ``size``.
    """

    def flat(paths):
        x = np.empty((len(paths), size * size * 3), np.float32)
        for i, p in enumerate(paths):
            x[i] = resize(load_rgb(p), (size, size)).numpy().ravel() / 255
        return x

    x_train, x_test = flat(train_paths), flat(test_paths)
    classes = int(max(y_train.max(), y_test.max()) + 1)
    folds = stratified_folds(y_train, max(2, min(3, int(np.bincount(y_train)[np.bincount(y_train) > 0].min()))), seed)
    probe = choose_and_fit(x_train, y_train, classes, folds)
    return float(np.mean(probe.predict_proba(x_test).argmax(1) == y_test))
