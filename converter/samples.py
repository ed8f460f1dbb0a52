"""Inputs for parity checks: seeded random samples and the user's own ``.npz``.

A sample is ``{input name: numpy array}`` in the *source* model's layout.

Example:
    >>> from converter.model import TensorSpec
    >>> s = random_samples([TensorSpec("x", [None, 3, 8, 8], "float32", "NCHW")], n=3)
    >>> s[0]["x"].shape
    (2, 3, 8, 8)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from converter.errors import InputError

DYNAMIC_BATCH = 2  # a batch of 2 also checks that the batch dimension really is dynamic
DYNAMIC_DIM = 16


def random_samples(inputs, n: int = 3, seed: int = 0, dim_size: int = DYNAMIC_DIM) -> list[dict[str, np.ndarray]]:
    """Return ``n`` seeded random samples, each value inside its input's valid range.

    Float inputs: uniform in ``value_range`` when set (raw pixels: [0, 255]), else in
    [-1, 1] for images (a normalised picture's range), else standard normal. Integer inputs: uniform in ``value_range`` (token ids inside the
    vocabulary), default [0, 2). Dynamic dims: ``DYNAMIC_BATCH`` for the first, else
    ``dim_size`` (``DYNAMIC_DIM`` unless the source needs longer: ``SourceModel.sample_dim_size``);
    dims that share a name (``TensorSpec.dim_names``) get one size, see ``named_dim_sizes``.
    """
    rng = np.random.default_rng(seed)
    named = named_dim_sizes(inputs, dim_size)
    samples = []
    for _ in range(n):
        sample = {}
        for spec in inputs:
            names = spec.dim_names or (None,) * len(spec.shape)
            shape = [d if d is not None else named.get(name, DYNAMIC_BATCH if i == 0 else dim_size)
                     for i, (d, name) in enumerate(zip(spec.shape, names))]
            dtype = np.dtype(spec.dtype)
            if dtype.kind == "f":
                if spec.value_range:
                    value = rng.uniform(*spec.value_range, shape)
                elif spec.layout:
                    value = rng.uniform(-1.0, 1.0, shape)
                else:
                    value = rng.standard_normal(shape)
            elif dtype.kind == "b":
                value = rng.integers(0, 2, shape).astype(bool)
            else:
                low, high = spec.value_range or (0, 2)
                value = rng.integers(low, high, shape)
            sample[spec.name] = value.astype(dtype)
        samples.append(sample)
    return samples


def named_dim_sizes(inputs, dim_size: int = DYNAMIC_DIM) -> dict[str, int]:
    """One size per dim name shared by the inputs: ``DYNAMIC_BATCH`` for a name that is the first
    dim of some input (a batch, wherever else it appears), else ``dim_size``.

    Example:
        >>> audio = TensorSpec("audio", [None, None], "float32", dim_names=("batch", "time"))
        >>> h0 = TensorSpec("h0", [1, None, 8], "float32", dim_names=(None, "batch", None))
        >>> named_dim_sizes([audio, h0], 1024)
        {'batch': 2, 'time': 1024}
    """
    sizes: dict[str, int] = {}
    for spec in inputs:
        for i, (d, name) in enumerate(zip(spec.shape, spec.dim_names or ())):
            if d is None and name is not None and (i == 0 or name not in sizes):
                sizes[name] = DYNAMIC_BATCH if i == 0 else dim_size
    return sizes


def load_npz_sample(path, inputs) -> dict[str, np.ndarray]:
    """Read the user's sample: one array per input, keyed by input name.

    A file with a single array is accepted for a single-input model whatever its key.

    Raises:
        InputError: unreadable file, missing inputs, or wrong rank or dtype kind.
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except Exception as e:
        raise InputError(f"Expected a .npz file of input arrays. Received: '{path}' ({e})") from None
    if len(inputs) == 1 and len(arrays) == 1:
        arrays = {inputs[0].name: next(iter(arrays.values()))}
    problems = []
    for spec in inputs:
        a = arrays.get(spec.name, arrays.get(spec.source_name or spec.name))
        if a is None:
            problems.append(f"input '{spec.name}' missing (file has {sorted(arrays)})")
        elif a.ndim != len(spec.shape) or any(d is not None and d != s for d, s in zip(spec.shape, a.shape)):
            problems.append(f"input '{spec.name}': expected shape {spec.shape}, received {list(a.shape)}")
        else:
            arrays[spec.name] = a.astype(spec.dtype)
    if problems:
        raise InputError(f"Sample '{path}' does not fit the model:\n  " + "\n  ".join(problems))
    return {spec.name: arrays[spec.name] for spec in inputs}
