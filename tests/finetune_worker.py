"""One worker of a data-parallel ``fine_tune`` (test helper): trains and, as the chief, saves every weight.

    python tests/finetune_worker.py MODEL_DIR DATA OUT.npz [--layers 2] [--epochs 2] [--batch-size 16]

Run it plainly (one worker, ``SINGLE``) or as N workers with ``TF_CONFIG`` (``transferjs.workers.
run_local_workers``). Every worker fine-tunes the same seeded head and the last ``--layers`` weight
layers on every image of DATA (no judging, no checkpoint); the chief writes the trained variables,
graph's then head's, and the history to OUT.npz, so a test can compare the weights themselves.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("model_dir")
    p.add_argument("data")
    p.add_argument("out", type=Path)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=16)
    args = p.parse_args(argv)

    from retrain.distributed import join_cluster

    workers = join_cluster()  # before TensorFlow runs anything else

    import tensorflow as tf

    from converter.model import ConvertedModel
    from retrain.api import _preprocessing
    from retrain.data import scan_folder
    from retrain.features import FeatureExtractor
    from retrain.finetune import fine_tune
    from retrain.train import TrainConfig, build_head

    tf.config.experimental.enable_op_determinism()
    model = ConvertedModel.load(args.model_dir)
    fx = FeatureExtractor(dataclasses.replace(model, preprocessing=_preprocessing(model)))
    dataset = scan_folder(args.data)
    items = [(path, label) for path, label in dataset.items]
    config = TrainConfig(fine_tune=args.layers, fine_tune_epochs=args.epochs, batch_size=args.batch_size,
                         fine_tune_learning_rate=1e-3)
    graph, head = fx.trainable(args.layers), build_head(fx.dim, len(dataset.labels), config)
    result = fine_tune(graph, head, fx, items, [], len(dataset.labels), config, progress=False, log=lambda m: None,
                       workers=workers)
    if workers.chief:
        weights = {f"w{i}": v.numpy() for i, v in enumerate(graph.trainable_variables + head.trainable_variables)}
        np.savez(args.out, history=np.array(json.dumps(result["history"])), **weights)
    return 0


if __name__ == "__main__":
    sys.exit(main())
