"""Phase 1: a new head on frozen features; metrics on the held-out test split.

Example:
    >>> head, history = train_head(x_train, y_train, x_val, y_val, classes=5, config=TrainConfig())
    >>> metrics(y_test, head.predict(x_test).argmax(1), labels)["accuracy"]
    0.71
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TrainConfig:
    """Head training settings; the defaults suit a few hundred to tens of thousands of images.

    Args:
        epochs: maximum epochs (early stopping on validation loss restores the best).
        batch_size: images per step.
        learning_rate: Adam's.
        dropout: before the dense layer.
        hidden: units of an optional hidden layer (0: none).
        label_smoothing: for the cross-entropy.
        patience: epochs without validation improvement before stopping.
        seed: everything random (weights, shuffling, splits) follows it.
    """

    epochs: int = 100
    batch_size: int = 32
    learning_rate: float = 1e-3
    dropout: float = 0.2
    hidden: int = 0
    label_smoothing: float = 0.0
    patience: int = 10
    seed: int = 0


def build_head(dim: int, classes: int, config: TrainConfig):
    """Dropout (+ optional hidden layer) + dense softmax, as a Keras model named for TF.js."""
    import keras

    inp = keras.Input((dim,), name="features")
    x = keras.layers.Dropout(config.dropout, seed=config.seed, name="dropout")(inp)
    if config.hidden:
        x = keras.layers.Dense(config.hidden, activation="relu", name="hidden")(x)
    out = keras.layers.Dense(classes, activation="softmax", name="probabilities")(x)
    return keras.Model(inp, out, name="head")


def class_weights(y: np.ndarray, classes: int) -> dict[int, float]:
    """Inverse-frequency weights, mean 1: imbalanced classes count alike."""
    counts = np.bincount(y, minlength=classes).astype(float)
    w = counts.sum() / (classes * np.maximum(counts, 1))
    return {i: float(v) for i, v in enumerate(w)}


def train_head(x_train, y_train, x_val, y_val, classes: int, config: TrainConfig):
    """Train the head; return it (best validation epoch restored) and the loss history."""
    import keras

    keras.utils.set_random_seed(config.seed)
    head = build_head(x_train.shape[1], classes, config)
    head.compile(
        optimizer=keras.optimizers.Adam(config.learning_rate),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing),
        metrics=["accuracy"],
    )
    onehot = np.eye(classes, dtype=np.float32)
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=config.patience, restore_best_weights=True)
    history = head.fit(
        x_train, onehot[y_train], validation_data=(x_val, onehot[y_val]), epochs=config.epochs,
        batch_size=config.batch_size, class_weight=class_weights(y_train, classes), callbacks=[stop], verbose=0,
    )
    return head, {k: [float(v) for v in vals] for k, vals in history.history.items()}


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


def raw_pixel_baseline(train_images, y_train, test_images, y_test, size: int = 32, seed: int = 0) -> float:
    """Test accuracy of softmax regression on raw pixels (size x size): the bar transfer must clear."""
    import keras
    import tensorflow as tf

    def flat(images):
        return np.stack([tf.image.resize(tf.convert_to_tensor(i, tf.float32), (size, size)).numpy().ravel() / 255 for i in images])

    keras.utils.set_random_seed(seed)
    x_train, x_test = flat(train_images), flat(test_images)
    mean, std = x_train.mean(0), x_train.std(0) + 1e-6
    classes = int(max(y_train.max(), y_test.max()) + 1)
    model = keras.Sequential([keras.Input((x_train.shape[1],)), keras.layers.Dense(classes, activation="softmax",
                                                                                  kernel_regularizer=keras.regularizers.l2(1e-3))])
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit((x_train - mean) / std, y_train, epochs=100, batch_size=32, verbose=0)
    return float(np.mean(model.predict((x_test - mean) / std, verbose=0).argmax(1) == y_test))
