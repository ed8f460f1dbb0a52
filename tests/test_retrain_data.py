"""retrain.data: class folders, CSV, splits, and bad data found before training."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from converter.errors import InputError
from retrain.data import read_csv, scan_folder, split


def _png(path, color=(200, 30, 30), size=(20, 16), mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color if mode == "RGB" else color[0]).save(path)
    return path


@pytest.fixture
def folder(tmp_path):
    for c in ("cat", "dog", "fox"):
        for i in range(10):
            _png(tmp_path / c / f"{i}.png")
    return tmp_path


def test_class_folders_with_odd_files(folder):
    (folder / "cat" / "notes.txt").write_text("not an image")  # ignored
    (folder / "dog" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")  # skipped, listed
    _png(folder / "fox" / "gray.png", mode="L")
    _png(folder / "fox" / "sixteen.png", color=(40000, 0, 0), mode="I;16")
    data = scan_folder(folder)
    assert data.labels == ["cat", "dog", "fox"]
    assert data.counts() == {"cat": 10, "dog": 10, "fox": 12}
    assert [(p.endswith("broken.jpg"), "not a readable image" in why) for p, why in data.skipped] == [(True, True)]


def test_split_is_stratified_seeded_and_disjoint(folder):
    data = scan_folder(folder)
    a, b = split(data, 0.2, 0.2, seed=3), split(data, 0.2, 0.2, seed=3)
    assert a == b
    assert split(data, 0.2, 0.2, seed=4) != a
    all_idx = a["train"] + a["val"] + a["test"]
    assert sorted(all_idx) == list(range(len(data.items)))
    labels = np.array([y for _, y in data.items])
    for part, n in (("val", 2), ("test", 2), ("train", 6)):
        assert np.bincount(labels[a[part]]).tolist() == [n, n, n]


def test_given_train_val_test_folders_are_used(tmp_path):
    for s, n in (("train", 5), ("val", 2), ("test", 3)):
        for c in ("a", "b"):
            for i in range(n):
                _png(tmp_path / s / c / f"{i}.png")
    data = scan_folder(tmp_path)
    parts = split(data)
    assert {k: len(v) for k, v in parts.items()} == {"train": 10, "val": 4, "test": 6}
    assert all("/test/" in str(data.items[i][0]) for i in parts["test"])


def test_csv(tmp_path):
    rows = ["path,label"]
    for c in ("x", "y"):
        for i in range(4):
            _png(tmp_path / "img" / f"{c}{i}.png")
            rows.append(f"img/{c}{i}.png,{c}")
    (tmp_path / "data.csv").write_text("\n".join(rows))
    data = read_csv(tmp_path / "data.csv")
    assert data.counts() == {"x": 4, "y": 4}


@pytest.mark.parametrize("layout, needle", [
    ({"only": 5}, "at least 2"),
    ({"a": 5, "b": 0}, "without images"),
    ({}, "no class sub-folders"),
    ({"a": 5, "b": 2}, "Too few images"),
])
def test_bad_datasets_fail_before_training(tmp_path, layout, needle):
    for c, n in layout.items():
        (tmp_path / c).mkdir()
        for i in range(n):
            _png(tmp_path / c / f"{i}.png")
    with pytest.raises(InputError, match=needle):
        split(scan_folder(tmp_path), 0.2, 0.2)


def test_emoji_dataset_fixture(tmp_path):
    from fixtures.emoji_dataset import build_emoji_dataset

    counts = build_emoji_dataset(tmp_path, per_class=6)
    assert counts == {"activities": 6, "animals-nature": 6, "food-drink": 6, "objects": 6, "travel-places": 6}
    data = scan_folder(tmp_path)
    assert len(data.items) == 30 and not data.skipped
    with Image.open(data.items[0][0]) as img:
        assert img.mode == "RGB" and img.size == (64, 64)
