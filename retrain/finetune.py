"""Phase 2: fine-tune the top of the converted graph together with the head, on streamed images.

Images are decoded batch by batch (``tf.data`` from a generator, prefetched), never all held in
memory. Training is synchronous data-parallel (``data_parallel``; one worker is ``count=1``): each
worker trains on its shard of every global batch. Augmentation (flip, rotation, zoom, brightness,
contrast) on resized 0..255 pixels and the head's dropout are drawn per image from
``(seed, epoch, position)`` (``example_augmentation``), whichever worker sees the image.

Example:
    >>> graph = extractor.trainable(8)                    # last 8 weight layers become variables
    >>> history = fine_tune(graph, head, extractor, train, held_out, classes=5, config=config)
"""

from __future__ import annotations

import time

import numpy as np

from converter.images import load_rgb, normalize, resize
from retrain.data_parallel import DataParallelStep, ExampleSettings, shard_batches
from retrain.distributed import SINGLE, Workers
from retrain.loop import FitSpec, fit
from retrain.progress import Progress
from retrain.train import class_weights, evaluate


def image_dataset(items, model, batch_size: int):
    """``tf.data`` batches ``(model input, label)`` of ``items`` = [(path, label)], in order, not augmented."""
    import tensorflow as tf

    p, layout = model.preprocessing, (model.inputs[0].layout or "NHWC")

    def generate():
        for path, label in items:
            yield resize(load_rgb(path), p.size), np.int32(label)

    spec = (tf.TensorSpec((*p.size, 3), tf.float32), tf.TensorSpec((), tf.int32))
    data = tf.data.Dataset.from_generator(generate, output_signature=spec).batch(batch_size)
    return data.map(lambda x, y: (normalize(x, p, layout), y)).prefetch(2)


def predict(forward, items, model, batch_size: int = 32, workers: Workers = SINGLE, classes: int = 0) -> np.ndarray:
    """Probabilities of ``forward`` on ``items``' images (no augmentation).

    With several ``workers`` each predicts every ``count``-th image and the rows are gathered with
    ``all_sum`` (adding the others' zeros is exact): every worker returns the whole array.
    ``classes`` sizes it when this worker's share is empty.
    """
    mine = np.arange(workers.rank, len(items), workers.count)
    batches = [forward(x, False).numpy() for x, _ in image_dataset([items[i] for i in mine], model, batch_size)]
    if workers.count == 1:
        return np.concatenate(batches) if batches else np.zeros((0, classes), np.float32)
    out = np.zeros((len(items), batches[0].shape[1] if batches else classes), np.float32)
    if batches:
        out[mine] = np.concatenate(batches)
    return workers.all_sum(out)


def learning_rate_schedule(peak: float, steps: int):
    """Linear warm-up over the first 10 % of ``steps`` to ``peak``, then cosine decay to 0.

    The warm-up keeps the first steps, whose gradients come from a head fitted to frozen features,
    from tearing the pretrained weights; the decay lets the last epoch settle instead of being
    judged in mid-stride (a fixed schedule needs no best-epoch selection on held-out images).
    """
    import keras

    warmup = max(1, steps // 10)
    return keras.optimizers.schedules.CosineDecay(0.0, max(1, steps - warmup), warmup_target=peak, warmup_steps=warmup)


def layer_groups(graph, head, decay: float) -> list[tuple[list, float]]:
    """``[(variables, learning-rate multiplier)]``: the head 1, then each weight layer down ``decay`` times the one above.

    Layer-wise decay (discriminative learning rates): the layers nearest the input hold the most general
    features and move least. ``decay=1`` gives every variable the same rate.
    """
    groups = [(list(head.trainable_variables), 1.0)]
    for depth, layer in enumerate(graph.variables_by_layer(), start=1):
        if layer:
            groups.append((layer, decay**depth))
    return groups


class LayerwiseAdam:
    """Adam with one learning-rate schedule per group of variables (``apply_gradients`` like a Keras optimizer).

    Adam's step does not depend on the gradient's scale, so per-layer rates need one optimizer per rate.

    Example:
        >>> opt = LayerwiseAdam([(head_vars, 1.0), (top_layer_vars, 0.8)], lambda m: 3e-4 * m)
        >>> opt.apply_gradients(zip(grads, head_vars + top_layer_vars))
    """

    def __init__(self, groups: list[tuple[list, float]], schedule):
        import keras

        self.optimizers, self._group = [], {}
        for i, (variables, multiplier) in enumerate(groups):
            optimizer = keras.optimizers.Adam(schedule(multiplier))
            optimizer.build(variables)
            self.optimizers.append(optimizer)
            self._group.update({id(v): i for v in variables})

    @property
    def variables(self) -> list:
        return [v for optimizer in self.optimizers for v in optimizer.variables]

    def apply_gradients(self, pairs) -> None:
        buckets = [[] for _ in self.optimizers]
        for gradient, variable in pairs:
            buckets[self._group[id(variable)]].append((gradient, variable))
        for optimizer, bucket in zip(self.optimizers, buckets):
            if bucket:
                optimizer.apply_gradients(bucket)


def toward_start(variables: list, start: list, share: float) -> None:
    """Set each variable to ``share * itself + (1 - share) * its start``: weight-space averaging (WiSE-FT).

    Fine-tuning starts at the pretrained backbone and the frozen-feature head, so the straight line back
    to them stays in one basin; a point on it keeps much of what fine-tuning learned and much of what
    the pretrained weights knew, like an ensemble of the two at the cost of one model.

    Example:
        >>> start = [v.numpy() for v in variables]; fit(...); toward_start(variables, start, 0.5)
    """
    for variable, begin in zip(variables, start):
        variable.assign(share * variable.numpy() + (1 - share) * begin)


def fine_tune(graph, head, extractor, train, judge, classes: int, config, checkpoint=None, resume: bool = False,
              progress: bool = True, log=print, workers: Workers = SINGLE) -> dict:
    """Train ``graph``'s variables and ``head`` together for ``config.fine_tune_epochs`` (fixed schedule).

    Every epoch runs; the last one's weights are kept. ``judge`` (held-out images) is scored after each
    epoch for the curves and for the caller's keep-or-not decision; it chooses nothing here.

    Args:
        graph: a ``TrainableGraph`` (the backbone up to the feature node).
        head: the phase-1 head (Keras), trained on the same training images.
        extractor: the ``FeatureExtractor`` (model, preprocessing, layout).
        train, judge: lists of ``(path, label index)``; ``judge`` may be empty (a refit on every image).
        config: ``TrainConfig`` (``fine_tune_epochs``, ``fine_tune_learning_rate`` (the peak, the head's),
            ``fine_tune_layer_decay``, ``fine_tune_label_smoothing``, ``fine_tune_mixup``,
            ``fine_tune_weight_average``, ``augment``, ``dropout``, ``seed``).
        workers: every worker calls this with the same arguments; each trains on its shard of every
            global batch (``data_parallel``) and only the chief writes ``checkpoint``.

    Returns:
        ``{"history": dict, "forward": callable (images, training) -> probabilities}``.

    Example:
        >>> result = fine_tune(extractor.trainable(16), head, extractor, train, held_out, 5, TrainConfig())
    """
    model, y_train = extractor.model, np.array([label for _, label in train])
    variables = graph.trainable_variables + head.trainable_variables
    steps = config.fine_tune_epochs * -(-len(train) // config.batch_size)
    optimizer = LayerwiseAdam(layer_groups(graph, head, config.fine_tune_layer_decay),
                              lambda peak: learning_rate_schedule(config.fine_tune_learning_rate * peak, steps))

    def forward(x, training):
        return head(graph(x), training=training)

    step = DataParallelStep(graph, head, variables, optimizer, classes, config.fine_tune_label_smoothing, workers)
    weights = class_weights(y_train, classes)
    y_judge = np.array([label for _, label in judge])

    bars, trained = [], {"images": 0, "seconds": 0.0}
    run_epoch = _epoch_runner(step, train, extractor, weights, config, progress, bars, not judge, trained)

    def validate() -> dict:
        result = evaluate(predict(forward, judge, model, config.batch_size, workers, classes), y_judge)
        bars[-1].close(f"held-out loss {result['loss']:.3f}  accuracy {result['accuracy']:.3f}")
        return result

    start = [v.numpy() for v in variables] if config.fine_tune_weight_average < 1 else None
    spec = FitSpec("fine-tune", variables, head.non_trainable_variables + optimizer.variables, run_epoch,
                   validate if judge else None, config.fine_tune_epochs, config.fine_tune_epochs + 1, restore_best=False)
    history = fit(spec, checkpoint, resume, log, save=workers.chief)
    if start is not None:  # the checkpoints hold the trained weights; the average is taken after the last epoch
        toward_start(variables, start, config.fine_tune_weight_average)
    history["trainable_layers"] = graph.trainable_layer_names
    history["trainable_parameters"] = int(sum(np.prod(v.shape) for v in graph.trainable_variables))
    history["all_reduce_bytes_per_step"] = step.all_reduce_bytes if workers.count > 1 else 0
    # images of global batches trained per second of this process's epochs (decoding, steps, all-reduce)
    history["train_images_per_s"] = trained["images"] / trained["seconds"] if trained["seconds"] else None
    return {"history": history, "forward": forward}


def _head_dropout(head) -> float:
    """The rate of the head's input dropout (``build_head``'s layer "dropout"), 0 without one."""
    layer = next((layer for layer in head.layers if layer.name == "dropout"), None)
    return float(layer.rate) if layer is not None else 0.0


def _epoch_runner(step, train, extractor, weights, config, progress: bool, bars: list, closes: bool, trained: dict):
    """``run_epoch(epoch)``: one pass over ``train`` in the epoch's seeded order, this worker's shards.

    ``trained`` accumulates the global images and seconds of the epochs run (for images/s).
    """
    dropout = _head_dropout(step.head)

    def run_epoch(epoch: int) -> dict:
        start = time.perf_counter()
        order = np.random.default_rng([config.seed, epoch]).permutation(len(train))
        examples = ExampleSettings(config.seed, epoch, config.augment, dropout, extractor.dim, config.fine_tune_mixup)
        bars.append(Progress(f"fine-tune epoch {epoch + 1}/{config.fine_tune_epochs}", len(train), enabled=progress))
        loss = correct = seen = 0.0
        for batch in shard_batches(train, extractor.model, order, config.batch_size, step.workers, examples):
            l, c = step(batch, weights)
            loss, correct, seen = loss + l, correct + c, seen + batch.global_size
            bars[-1].update(batch.global_size, f"loss {loss / seen:.3f}")
        if closes:
            bars[-1].close()
        trained["images"] += len(train)
        trained["seconds"] += time.perf_counter() - start
        return {"loss": loss / len(train), "accuracy": correct / len(train)}

    return run_epoch
