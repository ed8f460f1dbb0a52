"""Labelled images for retraining: class folders or a CSV, checked, split.

Every problem with the data is found before any training: fewer than two
classes, an empty folder, a class too small for the split. Unreadable images are
skipped and listed with the reason; files that are not images are ignored.

Example:
    >>> data = scan_folder("photos/")              # photos/<class>/<image>
    >>> splits = split(data, val=0.15, test=0.15, seed=0)
    >>> len(splits["train"]), data.labels
    (600, ['cat', 'dog'])
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from converter.errors import InputError
from converter.images import IMAGE_EXTENSIONS, open_image

SPLIT_FOLDERS = ("train", "val", "test")


@dataclass
class Dataset:
    """Image paths with integer labels, the class names, and what was skipped.

    Args:
        items: ``(path, label index)`` pairs.
        labels: class names; index = label.
        skipped: ``(path, reason)`` for files that could not be used.
        given_splits: ``{"train"/"val"/"test": [item indices]}`` when the user laid them out.
    """

    items: list[tuple[Path, int]]
    labels: list[str]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    given_splits: dict[str, list[int]] | None = None

    def counts(self) -> dict[str, int]:
        """Images per class name."""
        c = np.bincount([y for _, y in self.items], minlength=len(self.labels))
        return {name: int(n) for name, n in zip(self.labels, c)}


def _readable(path: Path) -> str | None:
    """``None`` if the image header parses (and claims a size we decode), else why not."""
    from PIL import UnidentifiedImageError

    try:
        with open_image(path) as img:
            img.verify()
    except InputError as e:
        return str(e)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        return f"not a readable image ({type(e).__name__}: {str(e)[:120]})"
    return None


def _class_files(folder: Path) -> dict[str, list[Path]]:
    classes = {}
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        classes[sub.name] = sorted(p for p in sub.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    return classes


def _build(pairs: list[tuple[Path, str]], labels: list[str] | None = None) -> Dataset:
    labels = labels or sorted({name for _, name in pairs})
    index = {name: i for i, name in enumerate(labels)}
    items, skipped = [], []
    for path, name in pairs:
        why = _readable(path)
        if why:
            skipped.append((str(path), why))
        else:
            items.append((path, index[name]))
    return Dataset(items, labels, skipped)


def scan_folder(root) -> Dataset:
    """Read ``root/<class>/*`` (or ``root/{train,val,test}/<class>/*``).

    Raises:
        InputError: missing or empty folder, fewer than two classes, empty classes.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"Expected a folder of class sub-folders. Received: '{root}' (not a folder)")
    if (root / "train").is_dir() and set(p.name for p in root.iterdir() if p.is_dir()) <= set(SPLIT_FOLDERS):
        return _scan_given_splits(root)
    classes = _class_files(root)
    _check_classes(root, classes)
    return _build([(p, name) for name, files in classes.items() for p in files])


def _scan_given_splits(root: Path) -> Dataset:
    per_split = {s: _class_files(root / s) for s in SPLIT_FOLDERS if (root / s).is_dir()}
    _check_classes(root / "train", per_split["train"])
    labels = sorted(per_split["train"])
    for s, classes in per_split.items():
        extra = sorted(set(classes) - set(labels))
        if extra:
            raise InputError(f"'{root / s}' has classes not in train/: {extra}")
    pairs, owners = [], []
    for s, classes in per_split.items():
        for name, files in classes.items():
            pairs += [(p, name) for p in files]
            owners += [s] * len(files)
    data = _build(pairs, labels)
    kept = {str(p) for p, _ in data.items}
    owners = [o for (p, _), o in zip(pairs, owners) if str(p) in kept]
    data.given_splits = {s: [i for i, o in enumerate(owners) if o == s] for s in per_split}
    return data


def _check_classes(root: Path, classes: dict[str, list[Path]]) -> None:
    if not classes:
        raise InputError(f"'{root}' has no class sub-folders; expected {root}/<class name>/<images>")
    empty = [name for name, files in classes.items() if not files]
    if empty:
        raise InputError(f"Class folder(s) without images in '{root}': {empty} (images: {sorted(IMAGE_EXTENSIONS)})")
    if len(classes) < 2:
        raise InputError(f"'{root}' has {len(classes)} class ({list(classes)}); retraining needs at least 2")


def read_csv(path, allow_outside: bool = False) -> Dataset:
    """Read ``path,label`` rows (a header row is allowed); relative paths are from the CSV's folder.

    The images must lie inside the CSV's folder (``../`` and absolute paths, symbolic links resolved,
    are refused) unless ``allow_outside``: a CSV from someone else cannot make us read other files.

    Raises:
        InputError: unreadable CSV, malformed rows, paths outside its folder, missing files, fewer than two classes.
    """
    path = Path(path)
    try:
        rows = list(csv.reader(path.read_text().splitlines()))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise InputError(f"Cannot read '{path}' as a CSV: {getattr(e, 'strerror', None) or e}") from None
    if rows and [c.strip().lower() for c in rows[0][:2]] == ["path", "label"]:
        rows = rows[1:]
    bad = [i + 1 for i, r in enumerate(rows) if len(r) < 2 or not r[0].strip() or not r[1].strip()]
    if bad:
        raise InputError(f"'{path}': expected 'path,label' on every row; rows {bad[:10]} are not")
    pairs = [((path.parent / r[0].strip()), r[1].strip()) for r in rows]
    root = path.parent.resolve()
    outside = [r[0].strip() for r, (p, _) in zip(rows, pairs) if not p.resolve().is_relative_to(root)]
    if outside and not allow_outside:
        raise InputError(f"'{path}' names {len(outside)} file(s) outside its folder '{path.parent}': {outside[:5]}. "
                         f"Images must lie inside the CSV's folder; pass --allow-outside if you trust this CSV.")
    missing = [str(p) for p, _ in pairs if not p.is_file()]
    if missing:
        raise InputError(f"'{path}' names {len(missing)} missing file(s): {missing[:5]}")
    classes = {name: [p for p, n in pairs if n == name] for name in sorted({n for _, n in pairs})}
    _check_classes(path, classes)
    return _build(pairs)


def split(data: Dataset, val: float = 0.15, test: float = 0.15, seed: int = 0) -> dict[str, list[int]]:
    """Stratified, seeded split into item indices; the user's own split when given.

    Raises:
        InputError: a class has too few images to put one in every split.
    """
    if data.given_splits is not None:
        return data.given_splits
    rng = np.random.default_rng(seed)
    labels = np.array([y for _, y in data.items])
    result = {"train": [], "val": [], "test": []}
    small = []
    for c, name in enumerate(data.labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_test = int(round(len(idx) * test)) if test else 0
        n_val = int(round(len(idx) * val)) if val else 0
        n_test, n_val = max(n_test, 1 if test else 0), max(n_val, 1 if val else 0)
        if len(idx) - n_test - n_val < 1:
            small.append(f"{name} ({len(idx)} image(s))")
            continue
        result["test"] += idx[:n_test].tolist()
        result["val"] += idx[n_test : n_test + n_val].tolist()
        result["train"] += idx[n_test + n_val :].tolist()
    if small:
        raise InputError(f"Too few images for a train/val/test split (val {val}, test {test}) in: {', '.join(small)}")
    return {k: sorted(v) for k, v in result.items()}
