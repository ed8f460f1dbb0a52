"""Bake image preprocessing into the graph: raw 0-255 pixels of any size in.

Example:
    >>> baked = bake_preprocessing(ConvertedModel.load("out"), Path("tmp/baked"))
    >>> baked.inputs[0].shape
    [None, None, None, 3]
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from converter.errors import InputError
from converter.model import ConvertedModel, Preprocessing, TensorSpec


def bake_preprocessing(model: ConvertedModel, folder: Path) -> ConvertedModel:
    """Write a model whose image input takes raw RGB pixels (0-255, any H x W).

    Before::  serving_default(image: [N, 224, 224, 3] normalized) -> logits
    After::   serving_default(image: [N, H, W, 3] pixels 0-255)
                = original(((resize(pixels, 224x224) * scale) - mean) / std) -> logits

    The resize is bilinear with half-pixel centers and no antialiasing, as in
    ``converter.images`` and the bundle's ``preprocess.mjs``.

    Raises:
        InputError: the model has not exactly one image input, or no preprocessing size.
    """
    import tensorflow as tf

    images = [t for t in model.inputs if t.layout and len(t.shape) == 4]
    if len(model.inputs) != 1 or len(images) != 1:
        raise InputError("--bake-preprocessing needs a model with exactly one image input")
    (inp,) = images
    p = model.preprocessing or Preprocessing()  # the bundle's documented default: pixels scaled to [0, 1]
    size = p.size or tuple(inp.shape[1:3] if inp.layout == "NHWC" else inp.shape[2:4])
    if not all(isinstance(d, int) for d in size):
        raise InputError("--bake-preprocessing needs an image size: the model's input has none, convert it with --image-size H,W")
    loaded = tf.saved_model.load(str(model.saved_model))
    fn = loaded.signatures["serving_default"]
    mean, std = np.asarray(p.mean, np.float32), np.asarray(p.std, np.float32)

    class Baked(tf.Module):
        def __init__(self):
            super().__init__()
            self.graph = loaded

        @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32, name=inp.name)])
        def serve(self, pixels):
            x = tf.image.resize(pixels, size, method="bilinear", antialias=False)
            x = (x * p.scale - mean) / std
            if inp.layout == "NCHW":
                x = tf.transpose(x, [0, 3, 1, 2])
            return fn(**{inp.name: x})

    folder = Path(folder)
    module = Baked()
    tf.saved_model.save(module, str(folder / "saved_model"), signatures={"serving_default": module.serve})
    baked_input = TensorSpec(inp.name, [None, None, None, 3], "float32", "NHWC", inp.source_name, inp.source_layout, (0, 255))
    baked = dataclasses.replace(model, directory=folder, inputs=[baked_input],
                                preprocessing=dataclasses.replace(p, size=tuple(size), baked=True))
    baked.save()
    return baked
