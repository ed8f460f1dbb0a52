"""Calibration images: photo crops that ship with scikit-image, or the user's own images.

onnx2tf 1.28 downloads ``calibration_image_sample_data_20x128x128x3_float32.npy``
from the internet for every model with static-batch image inputs, unless that
file is in its working directory. We write it there ourselves, so conversion
never touches the network. ``--quantize uint8`` rounds its kernels by what they compute on
calibration images (``export.per_channel``): the same photo crops by default, or, with
``--calibration-images``, images like the user's data (``image_calibration_inputs``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from converter.errors import InputError
from converter.images import IMAGE_EXTENSIONS, load_rgb, resize

CALIBRATION_FILE = "calibration_image_sample_data_20x128x128x3_float32.npy"
_PHOTOS = ("chelsea", "coffee", "astronaut", "rocket", "immunohistochemistry")


def sample_photos(size: int = 128) -> np.ndarray:
    """Return 20 real RGB photo crops, float32 in [0, 1], shape (20, size, size, 3).

    Four crops (corners cut to a square, then the centre, then flipped) of five
    scikit-image photos, resized with Pillow.

    Example:
        >>> sample_photos().shape
        (20, 128, 128, 3)
    """
    import skimage.data
    from PIL import Image

    crops = []
    for name in _PHOTOS:
        img = getattr(skimage.data, name)()[..., :3]
        h, w = img.shape[:2]
        s = min(h, w)
        squares = [img[:s, :s], img[h - s :, w - s :], img[(h - s) // 2 :, (w - s) // 2 :][:s, :s]]
        squares.append(squares[2][:, ::-1])
        for sq in squares:
            crops.append(np.asarray(Image.fromarray(np.ascontiguousarray(sq)).resize((size, size), Image.BILINEAR)))
    return (np.stack(crops).astype(np.float32) / 255.0)[:20]


def write_calibration_file(folder) -> Path:
    """Write onnx2tf's calibration file into ``folder``; return its path."""
    path = Path(folder) / CALIBRATION_FILE
    if not path.exists():
        np.save(path, sample_photos())
    return path


# Calibration images used at most (seeded choice when more are given): the graph runs over every one
# of them, so the cost grows with the count; 64 is 3 x the 20 photo crops.
MAX_CALIBRATION_IMAGES = 64
SEED = 0


def _image_input(model):
    """``(input spec, square size)`` of a model with one float image input of known size, else ``None``."""
    p = model.preprocessing
    if len(model.inputs) != 1 or p is None or model.inputs[0].layout not in ("NHWC", "NCHW"):
        return None
    spec = model.inputs[0]
    dims = spec.shape[1:3] if spec.layout == "NHWC" else spec.shape[2:4]
    size = tuple(p.size) if p.size else tuple(dims)
    if not all(isinstance(d, int) and d > 0 for d in size) or size[0] != size[1] or not spec.dtype.startswith("float"):
        return None
    return spec, size[0]


def _as_model_input(pixels: np.ndarray, model, spec) -> dict[str, np.ndarray]:
    """Resized 0..255 RGB pixels ``(N, h, w, 3)`` -> ``{input: batch}`` as ``model.preprocessing`` says."""
    p = model.preprocessing
    if p.channel_order == "BGR":
        pixels = pixels[..., ::-1]
    x = pixels if p.baked else (pixels * p.scale - np.asarray(p.mean, np.float32)) / np.asarray(p.std, np.float32)
    x = x.astype(np.float32)
    return {spec.name: np.ascontiguousarray(x.transpose(0, 3, 1, 2)) if spec.layout == "NCHW" else x}


def calibration_inputs(model) -> dict[str, np.ndarray] | None:
    """The 20 photo crops of ``sample_photos`` as the model's image input, preprocessed as it expects.

    For a model with one float image input whose preprocessing is known (``model.preprocessing``
    with a size, or the input's own static size); ``None`` otherwise (then nothing is calibrated).

    Example:
        >>> calibration_inputs(model)["image"].shape
        (20, 224, 224, 3)
    """
    found = _image_input(model)
    if found is None:
        return None
    spec, size = found
    return _as_model_input(sample_photos(size) * 255.0, model, spec)


def find_calibration_images(paths) -> list[Path]:
    """Image files among ``paths`` (files, or folders searched recursively as ``retrain`` reads them).

    Raises:
        InputError: a path that does not exist, a file that is not an image by its name, a folder
            with no image, naming it and the option.

    Example:
        >>> find_calibration_images(["photos/"])[:1]
        [PosixPath('photos/cat/1.jpg')]
    """
    files = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
                           and not any(part.startswith(".") for part in p.relative_to(path).parts))
            if not found:
                raise InputError(f"--calibration-images folder '{path}' holds no image "
                                 f"(searched recursively for {', '.join(sorted(IMAGE_EXTENSIONS))})")
            files += found
        elif path.is_file():
            if path.suffix.lower() not in IMAGE_EXTENSIONS:
                raise InputError(f"--calibration-images expects image files ({', '.join(sorted(IMAGE_EXTENSIONS))}) "
                                 f"or folders. Received: '{path}'")
            files.append(path)
        else:
            raise InputError(f"--calibration-images path '{path}' does not exist")
    return list(dict.fromkeys(files))


def choose_calibration_images(files: list[Path], limit: int = MAX_CALIBRATION_IMAGES) -> list[Path]:
    """At most ``limit`` of ``files``: all of them, or a seeded choice (``SEED``) kept in their order.

    Example:
        >>> len(choose_calibration_images([Path(f"{i}.png") for i in range(100)]))
        64
    """
    if len(files) <= limit:
        return list(files)
    keep = np.sort(np.random.default_rng(SEED).choice(len(files), limit, replace=False))
    return [files[i] for i in keep]


def image_calibration_inputs(model, paths) -> tuple[dict[str, np.ndarray], dict]:
    """The user's images as the model's image input (resized as the bundle does, then ``model.preprocessing``).

    Args:
        model: a ``ConvertedModel`` with one image input of known size (as for ``calibration_inputs``).
        paths: files and folders (``find_calibration_images``); at most ``MAX_CALIBRATION_IMAGES`` are used.

    Returns:
        ``({input: batch}, the record for metadata.json: source, images used, images found, paths given)``.

    Raises:
        InputError: a bad path, an unreadable image (naming it), or a model whose image input and
            preprocessing are not known (nothing could be calibrated).

    Example:
        >>> feeds, record = image_calibration_inputs(model, ["data/"])
        >>> record["images"], feeds["image"].shape
        (64, (64, 224, 224, 3))
    """
    found = _image_input(model)
    if found is None:
        raise InputError(f"--calibration-images needs a model with one float image input of known size and "
                         f"preprocessing (NHWC or NCHW, square; convert it with --image-size/--mean/--std); "
                         f"'{model.source.get('path') or model.directory}' has inputs "
                         f"{[(t.name, t.shape, t.layout) for t in model.inputs]} and preprocessing {model.preprocessing}")
    spec, size = found
    files = find_calibration_images(paths)
    chosen = choose_calibration_images(files)
    pixels = np.stack([np.asarray(resize(load_rgb(f), (size, size)), np.float32) for f in chosen])
    record = {"source": "user images", "images": len(chosen), "found": len(files),
              "paths": [str(p) for p in paths], "choice": f"seeded ({SEED}), at most {MAX_CALIBRATION_IMAGES}"}
    return _as_model_input(pixels, model, spec), record
