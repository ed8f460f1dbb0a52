"""A feature store on disk: every image's features in one ``.npy``, written and read in chunks.

Holding an (N, dim) float32 matrix in memory grows with the data set (1280-d features of a
million images are 5 GB). The store writes the rows in order, chunk by chunk, to one standard
``.npy`` file (``np.load(path, mmap_mode="r")`` opens it too), and reads them back chunk by chunk
with plain file reads: pages sit in the OS page cache, not in the process, so the peak resident
memory of a reader is one chunk whatever N is. It is written beside its final name and renamed
when complete; ``manifest.json`` (written last) holds its shape, the model's feature key and the
SHA-256 of the rows, checked when the store is opened (a truncated or altered store is refused).

Example:
    >>> with FeatureStoreWriter("run/features", count=100_000, dim=1280, key=fx.key) as writer:
    ...     for rows, ok in chunks:
    ...         writer.append(rows, ok)
    >>> store = FeatureStore("run/features", key=fx.key)
    >>> for positions, rows in store.batches():        # (<= 1024,) int, (<= 1024, 1280) float32
    ...     ...
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path

import numpy as np

from converter.atomic import remove_stale_files, write_atomic
from converter.errors import InputError
from converter.images import load_rgb, preprocess
from retrain.features import read_cache_entry

FEATURES, OK, MANIFEST = "features.npy", "ok.npy", "manifest.json"
# 1,024 rows of 1,280 float32 features are 5 MB: what a reader holds, whatever the number of images.
CHUNK_ROWS = 1024


class FeatureStoreWriter:
    """Writes ``count`` rows of ``dim`` float32 features in order; complete only when every row is written.

    Args:
        folder: the store's folder (created).
        count, dim: the matrix's shape.
        key: what the features depend on (``FeatureExtractor.key``), checked when the store is opened.
    """

    def __init__(self, folder, count: int, dim: int, key: str):
        self.folder, self.count, self.dim, self.key = Path(folder), int(count), int(dim), key
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / MANIFEST).unlink(missing_ok=True)  # an old store is invalid from here on
        self.partial = self.folder / (FEATURES + ".partial")
        self.file = open(self.partial, "wb")
        np.lib.format.write_array_header_1_0(self.file, {"descr": "<f4", "fortran_order": False,
                                                         "shape": (self.count, self.dim)})
        self.offset = self.file.tell()
        self.sha, self.written, self.ok = hashlib.sha256(), 0, np.zeros(self.count, bool)

    def append(self, rows: np.ndarray, ok: np.ndarray | None = None) -> None:
        """The next ``len(rows)`` rows (``ok``: which hold real features; default all)."""
        data = np.ascontiguousarray(rows, "<f4")
        if data.ndim != 2 or data.shape[1] != self.dim or self.written + len(data) > self.count:
            raise ValueError(f"expected rows of {self.dim} features, at most {self.count - self.written} more; "
                             f"received shape {data.shape}")
        self.file.write(data.tobytes())
        self.sha.update(data.tobytes())
        self.ok[self.written : self.written + len(data)] = True if ok is None else ok
        self.written += len(data)

    def close(self) -> "FeatureStore":
        """Finish the store: data renamed into place, then ``ok.npy``, then the manifest."""
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        if self.written != self.count:
            raise ValueError(f"feature store '{self.folder}': {self.written} of {self.count} rows written")
        os.replace(self.partial, self.folder / FEATURES)
        buffer = io.BytesIO()
        np.save(buffer, self.ok)
        write_atomic(self.folder / OK, buffer.getvalue())
        manifest = {"count": self.count, "dim": self.dim, "key": self.key, "offset": self.offset,
                    "sha256": self.sha.hexdigest()}
        write_atomic(self.folder / MANIFEST, json.dumps(manifest).encode())
        return FeatureStore(self.folder, self.key, verify=False)

    def __enter__(self):
        return self

    def __exit__(self, kind, value, traceback):
        if kind is not None:  # an incomplete store never looks complete
            self.file.close()
            self.partial.unlink(missing_ok=True)
        return False


class FeatureStore:
    """A complete store, read chunk by chunk.

    Args:
        folder: written by ``FeatureStoreWriter``.
        key: the expected feature key (``None``: any).
        verify: check the rows' SHA-256 against the manifest (one streaming pass).

    Raises:
        InputError: no complete store there, another model's, or rows that do not match the manifest.
    """

    def __init__(self, folder, key: str | None = None, verify: bool = True):
        self.folder = Path(folder)
        try:
            manifest = json.loads((self.folder / MANIFEST).read_text())
            self.ok = np.load(self.folder / OK, allow_pickle=False)
            size = (self.folder / FEATURES).stat().st_size
        except (OSError, ValueError, EOFError) as e:
            raise InputError(f"No complete feature store in '{self.folder}' ({type(e).__name__}: {e})") from None
        self.count, self.dim, self.offset = manifest["count"], manifest["dim"], manifest["offset"]
        if key is not None and manifest["key"] != key:
            raise InputError(f"Feature store '{self.folder}' holds another model's features "
                             f"(key {manifest['key']}, expected {key})")
        if size != self.offset + 4 * self.count * self.dim or self.ok.shape != (self.count,):
            raise InputError(f"Feature store '{self.folder}' is truncated: {size} bytes for {self.count} x {self.dim}")
        if verify:
            sha = hashlib.sha256()
            for _, rows in self.batches():
                sha.update(rows.tobytes())
            if sha.hexdigest() != manifest["sha256"]:
                raise InputError(f"Feature store '{self.folder}' does not match its manifest (altered or damaged)")

    def rows(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` as a fresh (stop - start, dim) float32 array (a file read, no mapping)."""
        stop = min(stop, self.count)
        with open(self.folder / FEATURES, "rb") as f:
            f.seek(self.offset + 4 * start * self.dim)
            data = np.fromfile(f, "<f4", count=(stop - start) * self.dim)
        return data.reshape(stop - start, self.dim)

    def batches(self, positions: np.ndarray | None = None, rows: int = CHUNK_ROWS):
        """Yield ``(positions, features)`` chunk by chunk, in row order.

        ``positions``: the rows wanted (sorted ascending; default all); each chunk of the file is read
        once and the wanted rows of it yielded, so a subset costs one pass over the file too.
        """
        wanted = None if positions is None else np.asarray(positions, int)
        for start in range(0, self.count, rows):
            if wanted is None:
                yield np.arange(start, min(start + rows, self.count)), self.rows(start, start + rows)
                continue
            lo, hi = np.searchsorted(wanted, [start, start + rows])
            if hi > lo:
                picked = wanted[lo:hi]
                yield picked, self.rows(start, start + rows)[picked - start]

    def take(self, positions) -> np.ndarray:
        """The rows at ``positions`` (any order) in memory: for subsets small enough to hold."""
        positions = np.asarray(positions, int)
        order = np.argsort(positions, kind="stable")
        out = np.empty((len(positions), self.dim), np.float32)
        done = 0
        for picked, rows in self.batches(positions[order]):
            out[order[done : done + len(picked)]] = rows
            done += len(picked)
        return out


def extract_to_store(fx, paths: list, cache_dir: Path, folder: Path, batch_size: int = 32, progress=None):
    """Every image's features, in order, into a store at ``folder`` (via the per-image cache in ``cache_dir``).

    The streaming counterpart of ``features.cached_features``: the same cache entries are read and
    written, but no (N, dim) matrix is ever held; only one batch of images and features is.

    Returns:
        ``(FeatureStore, {path: reason} for unreadable images)``; the store's ``ok`` marks readable rows.
    """
    cache = Path(cache_dir) / fx.key
    cache.mkdir(parents=True, exist_ok=True)
    remove_stale_files(cache)
    keys = [cache / (hashlib.sha256(Path(p).read_bytes()).hexdigest()[:32] + ".npy") for p in paths]
    known = sum(k.exists() for k in keys)
    if progress:
        progress(known, len(paths))
    failed, computed = {}, 0
    with FeatureStoreWriter(folder, len(paths), fx.dim, fx.key) as writer:
        for start in range(0, len(paths), batch_size):
            chunk = list(zip(paths[start : start + batch_size], keys[start : start + batch_size]))
            rows, ok = np.zeros((len(chunk), fx.dim), np.float32), np.zeros(len(chunk), bool)
            todo, images = [], []
            for j, (p, key) in enumerate(chunk):
                cached = read_cache_entry(key, fx.dim)
                if cached is not None:
                    rows[j], ok[j] = cached, True
                    continue
                try:
                    images.append(load_rgb(p))
                    todo.append((j, key))
                except InputError as e:
                    failed[str(p)] = str(e)
            if images:
                x = preprocess(images, fx.model.preprocessing, fx.input.layout or "NHWC")
                for (j, key), f in zip(todo, fx(x)):
                    rows[j], ok[j] = f, True
                    buffer = io.BytesIO()
                    np.save(buffer, np.asarray(f, np.float32))
                    write_atomic(key, buffer.getvalue())
                computed += len(todo)
            writer.append(rows, ok)
            if progress:
                progress(known + computed, len(paths))
        store = writer.close()
    return store, failed
