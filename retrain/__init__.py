"""Transfer learning on a converted model: a new head on frozen pretrained features, then fine-tuning.

Example:
    >>> from retrain import TrainConfig, retrain
    >>> result = retrain("out/effnet", "photos/", "out/pets", TrainConfig(fine_tune=16))
    >>> result.report["test"]["accuracy"], result.bundle
    (0.93, PosixPath('out/pets/tfjs'))
"""

from retrain.api import RetrainResult, default_cache_dir, retrain
from retrain.train import TrainConfig

__all__ = ["retrain", "RetrainResult", "TrainConfig", "default_cache_dir"]
