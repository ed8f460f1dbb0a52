"""The input normalization a known pretrained architecture was trained with, to catch a forgotten one.

A converted model carries the preprocessing recorded at convert time (``--mean/--std``) and retrain
uses it. When none was recorded, the features are computed on plain [0, 1] pixels; for an
architecture whose weights expect something else that silently costs accuracy (about 5 points
for EfficientNet-Lite on the emoji task), so retrain says so once, before training.

Example:
    >>> expected_normalization({"factory": "efficientnet_lite_pytorch:EfficientNet.from_name"})
    ('EfficientNet-Lite', (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
"""

from __future__ import annotations

import json
import re

IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
HALF = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))

# (pattern in the model's recorded source description, architecture, (mean, std) on [0, 1] pixels).
# EfficientNet-Lite and Keras' MobileNet family take [-1, 1]; torchvision's ImageNet models the ImageNet
# statistics. Keras' EfficientNet/ConvNeXt rescale inside the graph, so they are absent on purpose.
KNOWN = (
    (r"efficientnet[-_]?lite", "EfficientNet-Lite", HALF),
    (r"keras.*mobilenet|mobilenet.*keras", "Keras MobileNet", HALF),
    (r"torchvision|resnet|mobilenet_v[23]|regnet|densenet|shufflenet|squeezenet|mnasnet", "torchvision ImageNet", IMAGENET),
)


def expected_normalization(source: dict) -> tuple[str, tuple, tuple] | None:
    """``(architecture, mean, std)`` if ``source`` (a converted model's provenance) names a known one."""
    text = json.dumps(source, sort_keys=True).lower()
    for pattern, name, (mean, std) in KNOWN:
        if re.search(pattern, text):
            return name, mean, std
    return None


def missing_normalization_warning(model, overrides: dict | None) -> str | None:
    """The message to print when ``model`` is a known architecture but no normalization was recorded or given.

    Args:
        model: the converted backbone (``source``, ``preprocessing``).
        overrides: the ``Preprocessing`` fields the user passed to retrain (``mean``/``std`` count as given).
    """
    if overrides and ("mean" in overrides or "std" in overrides):
        return None
    p = model.preprocessing
    if p is not None and (tuple(p.mean) != (0.0, 0.0, 0.0) or tuple(p.std) != (1.0, 1.0, 1.0) or p.baked):
        return None
    known = expected_normalization(model.source or {})
    if known is None:
        return None
    name, mean, std = known
    return (f"warning: {model.directory} looks like {name}, whose weights expect pixels normalized with mean "
            f"{','.join(map(str, mean))} and std {','.join(map(str, std))}, but it records no normalization; "
            "its features are computed on plain [0, 1] pixels, which usually costs accuracy. Convert it again "
            f"with --mean {','.join(map(str, mean))} --std {','.join(map(str, std))}, or pass them to retrain.")
