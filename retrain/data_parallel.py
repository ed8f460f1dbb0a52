"""Synchronous data-parallel fine-tuning steps: each worker's shard of a global batch, gradients all-reduced.

Every worker walks the same global batches (the epoch's seeded order) and takes its contiguous
shard of each. It computes the float32 gradient of the **summed** weighted loss of its shard (so the
shards' gradients add up to the global batch's), the gradients of all variables travel as one
float32 vector through ``Workers.all_sum``, are divided by the global batch size (Keras'
"sum over batch size") and every worker applies the same optimizer update: the variables stay equal
on every worker. One worker is the same code with ``count=1`` (its shard is the whole batch).

Example:
    >>> step = DataParallelStep(graph, head, variables, optimizer, classes=5, label_smoothing=0.1, workers=workers)
    >>> for batch in shard_batches(train, model, order, 32, workers, examples):
    ...     loss_sum, correct = step(batch)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from converter.images import load_rgb, normalize, resize
from retrain.distributed import SINGLE, Workers
from retrain.example_augmentation import augment_image, dropout_mask, example_key, mixup_pair


_NO_PARTNER = np.zeros((0, 0, 3), np.float32)  # without mixup: no second image through tf.data


@dataclass(frozen=True)
class ExampleSettings:
    """How one epoch's training examples are drawn: ``seed`` and ``epoch`` key every image's randomness.

    Args:
        augment: augment images (``example_augmentation.augment_image``).
        dropout: the head's dropout rate on the features (a per-image mask; 0: none).
        dim: the feature dimension (the mask's length).
        mixup: the Beta(a, a) concentration of mixup (0: off): each image is blended with a partner image
            drawn from the whole training set by its key, ``lam * image + (1 - lam) * partner`` with
            ``lam = max(l, 1 - l)``, and its target blended alike (``example_augmentation.mixup_pair``).
    """

    seed: int
    epoch: int
    augment: bool
    dropout: float
    dim: int
    mixup: float = 0.0


@dataclass
class ShardBatch:
    """This worker's shard of one global batch (``x`` etc. ``None`` when the shard is empty).

    ``y`` is each example's own label, ``partner`` its mixup partner's label and ``mix`` its own label's
    share of the target (``partner = y``, ``mix = 1`` without mixup).
    """

    global_size: int
    x: object = None
    y: object = None
    mask: object = None
    partner: object = None
    mix: object = None


def global_batches(count: int, batch_size: int) -> list[np.ndarray]:
    """Positions ``0 … count-1`` of an epoch's order cut into consecutive global batches."""
    return [np.arange(s, min(s + batch_size, count)) for s in range(0, count, batch_size)]


def shard(batch: np.ndarray, workers: Workers) -> np.ndarray:
    """This worker's contiguous share of a global batch (``np.array_split`` into ``count`` parts)."""
    return np.array_split(batch, workers.count)[workers.rank]


def shard_batches(items, model, order: np.ndarray, batch_size: int, workers: Workers, examples: ExampleSettings):
    """This worker's ``ShardBatch`` for every global batch of ``items`` in ``order`` (decoded as they go).

    Args:
        items: ``[(path, label index)]``; order: the epoch's permutation of them.
        model: the ``ConvertedModel`` (its preprocessing and input layout).

    Yields:
        One ``ShardBatch`` per global batch, the same number on every worker.
    """
    import tensorflow as tf

    p, layout = model.preprocessing, (model.inputs[0].layout or "NHWC")
    batches = global_batches(len(order), batch_size)
    shards = [shard(b, workers) for b in batches]
    positions = np.concatenate(shards) if shards else np.zeros(0, int)

    def generate():
        for k in positions:
            key = example_key(examples.seed, examples.epoch, int(k))
            path, label = items[order[k]]
            other, mix = mixup_pair(key, len(items), examples.mixup)  # (own index, 1.0) when off
            other_path, other_label = items[other] if examples.mixup else (path, label)
            partner = resize(load_rgb(other_path), p.size) if examples.mixup else _NO_PARTNER
            yield resize(load_rgb(path), p.size), np.int32(label), key, partner, np.int32(other_label), np.float32(mix)

    def prepare(image, label, key, partner, other_label, mix):
        if examples.augment:
            image = augment_image(image, key)
            if examples.mixup:
                partner = augment_image(partner, tf.random.experimental.stateless_fold_in(key, 1))
        if examples.mixup:
            image = mix * image + (1 - mix) * partner
        return image, label, dropout_mask(key, examples.dropout, examples.dim), other_label, mix

    spec = (tf.TensorSpec((*p.size, 3), tf.float32), tf.TensorSpec((), tf.int32), tf.TensorSpec((2,), tf.int64),
            tf.TensorSpec((None, None, 3), tf.float32), tf.TensorSpec((), tf.int32), tf.TensorSpec((), tf.float32))
    data = tf.data.Dataset.from_generator(generate, output_signature=spec).map(prepare).prefetch(2 * batch_size)
    stream = iter(data)
    for batch, mine in zip(batches, shards):
        if not len(mine):
            yield ShardBatch(len(batch))
            continue
        x, y, mask, partner, mix = (tf.stack(part) for part in zip(*(next(stream) for _ in mine)))
        yield ShardBatch(len(batch), normalize(x, p, layout), y, mask, partner, mix)


class DataParallelStep:
    """One synchronous step: this shard's gradients, all-reduced as one float32 vector, the same update everywhere.

    Args:
        graph: the ``TrainableGraph`` (images -> features); head: the Keras head (features -> probabilities).
        variables: what trains (graph's, then head's); optimizer: ``apply_gradients`` like Keras'.
        classes, label_smoothing: the cross-entropy's.
        workers: ``Workers`` (``SINGLE``: one worker, the same code).

    Example:
        >>> loss_sum, correct = step(batch)     # sums over the whole global batch, on every worker
    """

    def __init__(self, graph, head, variables: list, optimizer, classes: int, label_smoothing: float,
                 workers: Workers = SINGLE):
        import keras
        import tensorflow as tf

        self.workers, self.variables, self.head = workers, variables, head
        self.sizes = [int(np.prod(v.shape)) for v in variables]
        ce = keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing, reduction="sum")

        @tf.function
        def shard_gradients(x, y, w, mask, partner, mix):
            p = head(graph(x) * mask, training=False)  # dropout is the per-image mask, seeded by the image
            target = mix[:, None] * tf.one_hot(y, classes) + (1 - mix[:, None]) * tf.one_hot(partner, classes)
            loss = ce(target, p, sample_weight=w)
            correct = tf.reduce_sum(tf.cast(tf.argmax(p, 1, output_type=tf.int32) == y, tf.float32))
            # Symbolic gradients: ops that import_graph_def creates are not recorded by a GradientTape.
            grads = [tf.zeros_like(v) if g is None else tf.convert_to_tensor(g)
                     for g, v in zip(tf.gradients(loss, variables), variables)]
            return tf.concat([tf.reshape(g, [-1]) for g in grads] + [tf.stack([loss, correct])], 0)

        @tf.function
        def apply(flat, size):
            parts = tf.split(flat[:-2] / size, self.sizes)
            optimizer.apply_gradients([(tf.reshape(g, v.shape), v) for g, v in zip(parts, variables)])

        self._shard_gradients, self._apply = shard_gradients, apply

    @property
    def all_reduce_bytes(self) -> int:
        """Bytes each step sends through ``all_sum``: every gradient and two sums, float32."""
        return 4 * (sum(self.sizes) + 2)

    def __call__(self, batch: ShardBatch, weights: np.ndarray) -> tuple[float, float]:
        """Train on one global batch; ``(summed weighted loss, correct predictions)`` over all of it.

        Args:
            weights: per-class weights (indexed by label); a mixed example weighs as its target's blend.
        """
        if batch.x is None:
            flat = np.zeros(sum(self.sizes) + 2, np.float32)
        else:
            mix = batch.mix.numpy()
            w = mix * weights[batch.y.numpy()] + (1 - mix) * weights[batch.partner.numpy()]
            flat = self._shard_gradients(batch.x, batch.y, w, batch.mask, batch.partner, batch.mix).numpy()
        if self.workers.count > 1:
            flat = self.workers.all_sum(flat)  # eager: the CPU collectives refuse to run in a tf.function
        self._apply(flat, np.float32(batch.global_size))
        return float(flat[-2]), float(flat[-1])

