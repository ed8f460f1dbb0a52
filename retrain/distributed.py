"""Retraining on several workers: TensorFlow's ``MultiWorkerMirroredStrategy`` collectives, configured by ``TF_CONFIG``.

Every worker runs the same ``retrain`` on the same data (shared storage). Feature extraction is
sharded (worker r computes every ``count``-th image into the shared feature cache); phase 1 is
synchronous data-parallel: the linear head's loss and gradient are sums over fixed **blocks** of the
training rows, each block summed by the worker that owns it, all-reduced, then added in block order.
Adding a block's exact partial to zeros is exact, so the summed numbers — and hence every L-BFGS step
— are bitwise the same for 1 worker and for any count up to ``BLOCKS``: the same seed gives the same
head. The chief (rank 0) alone writes outputs, checkpoints and reports.

Example:
    >>> workers = join_cluster()            # reads TF_CONFIG; Workers(rank=0, count=2)
    >>> workers.owned(BLOCKS)               # the blocks this worker sums
    [0, 2, 4, ...]
    >>> workers.all_sum(np.ones(3))         # array([2., 2., 2.]) on every worker
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from converter.errors import InputError

# Blocks of training rows whose partial sums are all-reduced: 1 worker and any count up to this give
# bitwise-equal heads (more workers: one block each, still synchronous, equal only among themselves).
BLOCKS = 32


@dataclass(frozen=True)
class Workers:
    """This process's place among the workers.

    Args:
        rank: 0 is the chief (writes outputs); count: how many workers.
        all_sum: ``all_sum(array) -> the element-wise sum over every worker``, in the array's dtype when
            float32 (fine-tuning's gradients), float64 otherwise (never a silent change of precision).
    """

    rank: int = 0
    count: int = 1
    all_sum: Callable[[np.ndarray], np.ndarray] = field(default=lambda a: a, repr=False, compare=False)

    @property
    def chief(self) -> bool:
        return self.rank == 0

    def owned(self, blocks: int) -> list[int]:
        """The blocks this worker sums: ``rank, rank + count, …``."""
        return list(range(self.rank, blocks, self.count))

    def shard(self, items: list) -> list:
        """This worker's share of ``items`` for feature extraction (every ``count``-th, from ``rank``)."""
        return items[self.rank :: self.count]

    def barrier(self) -> None:
        """Wait until every worker reaches this point (a one-number all-reduce)."""
        self.all_sum(np.zeros(1))


SINGLE = Workers()


def block_count(workers: Workers) -> int:
    return max(BLOCKS, workers.count)


def blocked_sum(workers: Workers, rows: int, partial: Callable[[slice], np.ndarray], size: int) -> np.ndarray:
    """``Σ_b partial(block b)`` over the blocks of ``range(rows)``, each computed by its owner, in block order.

    Args:
        rows: how many rows the blocks split (contiguous, about equal).
        partial: ``partial(slice of rows) -> float64 vector of length size`` (the block's own sum).
    """
    blocks = block_count(workers)
    bounds = np.linspace(0, rows, blocks + 1).astype(int)
    table = np.zeros((blocks, size))
    for b in workers.owned(blocks):
        if bounds[b + 1] > bounds[b]:
            table[b] = partial(slice(bounds[b], bounds[b + 1]))
    table = workers.all_sum(table) if workers.count > 1 else table
    total = np.zeros(size)
    for b in range(blocks):  # a fixed order: the same float additions whatever the worker count
        total += table[b]
    return total


def parse_tf_config(text: str) -> tuple[int, int]:
    """``(rank, count)`` from a ``TF_CONFIG`` (a ``chief`` task, if any, is rank 0; then the workers).

    Raises:
        InputError: not JSON, no cluster, or a task not in the cluster.
    """
    try:
        config = json.loads(text)
        cluster, task = config["cluster"], config["task"]
        kinds = [k for k in ("chief", "worker") if cluster.get(k)]
        ranks = {(k, i): n for n, (k, i) in enumerate((k, i) for k in kinds for i in range(len(cluster[k])))}
        return ranks[(task["type"], int(task["index"]))], len(ranks)
    except (ValueError, KeyError, TypeError) as e:
        raise InputError(f"TF_CONFIG: expected {{\"cluster\": {{\"worker\": [\"host:port\", …]}}, \"task\": "
                         f"{{\"type\": \"worker\", \"index\": i}}}}. Received: {text[:200]!r} ({type(e).__name__}: {e})") from None


def join_cluster(environ=os.environ) -> Workers:
    """This process's ``Workers`` from ``TF_CONFIG`` (``SINGLE`` when unset), its collectives started.

    Must run before TensorFlow executes anything else in the process (the strategy configures the runtime).
    """
    text = environ.get("TF_CONFIG")
    if not text:
        return SINGLE
    rank, count = parse_tf_config(text)
    import tensorflow as tf

    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    # Eager all-reduce (inside a tf.function the CPU strategy fails: "destinations can not be empty"):
    # a few per L-BFGS iteration, 20 ms each on loopback; TensorFlow's advice to wrap it is muted.
    tf.get_logger().addFilter(_EagerCollectiveNote())

    def all_sum(array: np.ndarray) -> np.ndarray:
        value = tf.constant(np.asarray(array, _reduced_dtype(array)))
        summed = strategy.run(lambda v: tf.distribute.get_replica_context().all_reduce("sum", v), args=(value,))
        return strategy.experimental_local_results(summed)[0].numpy()

    return Workers(rank, count, all_sum)


def _reduced_dtype(array) -> type:
    """float32 stays float32 (summed as float32, half the bytes); anything else is summed as float64.

    Example:
        >>> _reduced_dtype(np.ones(2, np.float32)), _reduced_dtype(np.ones(2))
        (<class 'numpy.float32'>, <class 'numpy.float64'>)
    """
    return np.float32 if np.asarray(array).dtype == np.float32 else np.float64


class _EagerCollectiveNote(logging.Filter):
    def filter(self, record) -> bool:
        return "eagerly has significant overhead" not in record.getMessage()
