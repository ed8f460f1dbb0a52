"""The PyTorch MobileNetV2 fixture computes the same function as keras.applications.MobileNetV2.

``bench/tfjs_latency.py`` relies on it: it times the transferjs conversion of
the mirror against ``tensorflowjs_converter`` on the Keras original.
"""

from __future__ import annotations

import numpy as np
import pytest


# Even size: TF "same" stride-2 padding is (0, 1); odd size: (1, 1).
@pytest.mark.parametrize("size", [96, 65])
def test_mirror_matches_keras(size):
    from torch import nn

    from fixtures.mobilenet_v2_torch import from_keras, max_abs_diff, random_mobilenet_v2

    keras_model = random_mobilenet_v2(size, classes=10, seed=0)
    mirror = from_keras(keras_model)
    x = np.random.default_rng(1).uniform(-1, 1, (2, size, size, 3)).astype(np.float32)

    ref = np.asarray(keras_model(x, training=False))
    # The check means something only if the output depends on the input.
    assert np.abs(ref[0] - ref[1]).max() > 1e-3
    assert max_abs_diff(keras_model, mirror, x) < 1e-4

    # ... and it would see a padding on the wrong side (PyTorch's symmetric habit).
    mirror.stem.pad = nn.ZeroPad2d((1, 0, 1, 0) if size % 2 == 0 else (2, 0, 2, 0))
    assert max_abs_diff(keras_model, mirror, x) > 1e-3
