"""Phase 2: fine-tune the top of the converted graph together with the head, on streamed images.

Images are decoded batch by batch (``tf.data`` from a generator, prefetched), never all
held in memory; augmentation (flip, rotation, zoom, brightness, contrast) runs on the
fly on resized 0..255 pixels, before the model's normalisation, seeded by ``(seed, epoch)``.

Example:
    >>> graph = extractor.trainable(8)                    # last 8 weight layers become variables
    >>> history = fine_tune(graph, head, extractor, train, val, classes=5, config=config)
"""

from __future__ import annotations

import numpy as np


def image_dataset(items, model, batch_size: int, order=None, augment_seed: int | None = None):
    """``tf.data`` batches ``(model input, label)`` from ``items`` = [(path, label)], in ``order``."""
    import tensorflow as tf

    from converter.images import load_rgb, normalize, resize

    p, layout = model.preprocessing, (model.inputs[0].layout or "NHWC")
    order = np.arange(len(items)) if order is None else order

    def generate():
        for i in order:
            path, label = items[i]
            yield resize(load_rgb(path), p.size), np.int32(label)

    spec = (tf.TensorSpec((*p.size, 3), tf.float32), tf.TensorSpec((), tf.int32))
    data = tf.data.Dataset.from_generator(generate, output_signature=spec).batch(batch_size)
    if augment_seed is not None:
        augment = augmentation(augment_seed)
        data = data.map(lambda x, y: (augment(x, training=True), y))
    return data.map(lambda x, y: (normalize(x, p, layout), y)).prefetch(2)


def augmentation(seed: int):
    """Random flip, rotation (±18°), zoom (±10 %), brightness and contrast (±10 %) on 0..255 pixels."""
    import keras

    layers = keras.layers
    return keras.Sequential([
        layers.RandomFlip("horizontal", seed=seed),
        layers.RandomRotation(0.05, fill_mode="nearest", seed=seed + 1),
        layers.RandomZoom(0.1, fill_mode="nearest", seed=seed + 2),
        layers.RandomBrightness(0.1, value_range=(0, 255), seed=seed + 3),
        layers.RandomContrast(0.1, seed=seed + 4),
    ], name="augmentation")


def predict(forward, items, model, batch_size: int = 32) -> np.ndarray:
    """Probabilities of ``forward`` on ``items``' images (no augmentation)."""
    batches = [forward(x, False).numpy() for x, _ in image_dataset(items, model, batch_size)]
    return np.concatenate(batches) if batches else np.zeros((0, 0), np.float32)


def fine_tune(graph, head, extractor, train, val, classes: int, config, start: dict | None = None, checkpoint=None,
              resume: bool = False, progress: bool = True, log=print) -> dict:
    """Train ``graph``'s variables and ``head`` together; the best validation epoch is restored.

    Epochs are judged by validation accuracy (ties: lower loss): fine-tuning makes the head more
    confident, which raises the validation loss of a model that classifies better. An epoch must beat
    ``start`` (the phase-1 model's validation result); when none does, the weights go back to it.

    Args:
        graph: a ``TrainableGraph`` (the backbone up to the feature node).
        head: the phase-1 head (Keras).
        extractor: the ``FeatureExtractor`` (model, preprocessing, layout).
        train, val: lists of ``(path, label index)``.
        config: ``TrainConfig`` (``fine_tune_epochs``, ``fine_tune_learning_rate``, ``augment``, ``seed``).
        start: ``{"loss", "accuracy"}`` of the model before fine-tuning, on ``val``.
    """
    import keras

    from retrain.loop import FitSpec, fit
    from retrain.progress import Progress
    from retrain.train import class_weights, evaluate, train_step

    model, y_train = extractor.model, np.array([label for _, label in train])
    variables = graph.trainable_variables + head.trainable_variables
    optimizer = keras.optimizers.Adam(config.fine_tune_learning_rate)
    optimizer.build(variables)

    def forward(x, training):
        return head(graph(x), training=training)

    step = train_step(forward, variables, optimizer, classes, config.label_smoothing)
    weights = class_weights(y_train, classes)
    y_val = np.array([label for _, label in val])

    bars = []

    def run_epoch(epoch: int) -> dict:
        order = np.random.default_rng([config.seed, epoch]).permutation(len(train))
        seed = config.seed * 1000 + epoch * 10 if config.augment else None
        bars.append(Progress(f"fine-tune epoch {epoch + 1}", len(train), enabled=progress))
        loss = correct = seen = 0.0
        for x, y in image_dataset(train, model, config.batch_size, order, seed):
            l, c = step(x, y, weights[y.numpy()])
            loss, correct, seen = loss + float(l) * len(y), correct + float(c), seen + len(y)
            bars[-1].update(len(y), f"loss {loss / seen:.3f}")
        return {"loss": loss / len(train), "accuracy": correct / len(train)}

    def validate() -> dict:
        result = evaluate(predict(forward, val, model, config.batch_size), y_val)
        bars[-1].close(f"val_loss {result['loss']:.3f}  val_accuracy {result['accuracy']:.3f}")
        return result

    spec = FitSpec("fine-tune", variables, head.non_trainable_variables + optimizer.variables,
                   run_epoch, validate, config.fine_tune_epochs, config.fine_tune_patience, monitor="accuracy", start=start)
    history = fit(spec, checkpoint, resume, log)
    history["trainable_layers"] = graph.trainable_layer_names
    history["trainable_parameters"] = int(sum(np.prod(v.shape) for v in graph.trainable_variables))
    return {"history": history, "forward": forward}
