"""What a person looks at first in a retraining report: the held-out images the model got most
confidently wrong (thumbnails with true and predicted labels) and per-class accuracy at a glance.

Example:
    >>> wrong = confident_mistakes(paths, y, probabilities, labels, top=12)
    >>> write_thumbnails(wrong, Path("out"))          # out/misclassified/00.png, ...
    >>> html = gallery_html(wrong) + per_class_bars_html(report["test"])
"""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np

from converter.images import load_rgb

THUMBNAIL_FOLDER = "misclassified"


def confident_mistakes(paths: list, y: np.ndarray, probabilities: np.ndarray, labels: list[str], top: int = 12) -> list[dict]:
    """The ``top`` wrong predictions with the highest predicted probability, most confident first.

    Args:
        paths, y: the scored images and their true label indices.
        probabilities: (N, classes) predicted on them by a model that never trained on them.
    """
    predicted = probabilities.argmax(1)
    wrong = np.flatnonzero(predicted != y)
    order = wrong[np.argsort(-probabilities[wrong, predicted[wrong]], kind="stable")][:top]
    return [{"path": str(paths[i]), "true": labels[int(y[i])], "predicted": labels[int(predicted[i])],
             "confidence": float(probabilities[i, predicted[i]]),
             "true_probability": float(probabilities[i, y[i]])} for i in order]


def write_thumbnails(mistakes: list[dict], folder: Path, size: int = 96) -> None:
    """Write each mistake's image as ``folder/misclassified/NN.png`` and record it as ``thumbnail``."""
    from PIL import Image

    out = Path(folder) / THUMBNAIL_FOLDER
    out.mkdir(parents=True, exist_ok=True)
    for n, m in enumerate(mistakes):
        img = Image.fromarray(load_rgb(m["path"]))
        img.thumbnail((size, size))
        name = f"{THUMBNAIL_FOLDER}/{n:02d}.png"
        img.save(Path(folder) / name)
        m["thumbnail"] = name


def gallery_html(mistakes: list[dict]) -> str:
    """A grid of the thumbnails with 'true → predicted (confidence)' under each."""
    if not mistakes:
        return "<p>No held-out image was misclassified.</p>"
    esc = html.escape
    cells = "".join(
        f'<figure><img src="{esc(m["thumbnail"])}" alt="{esc(Path(m["path"]).name)}" width="96" height="96">'
        f'<figcaption>true <b>{esc(m["true"])}</b><br>predicted <b>{esc(m["predicted"])}</b> '
        f'({m["confidence"]:.0%})</figcaption></figure>'
        for m in mistakes if "thumbnail" in m)
    return f'<div class="gallery">{cells}</div>'


def per_class_bars_html(metrics: dict) -> str:
    """One bar per class: its held-out accuracy (recall), with the count behind it."""
    esc = html.escape
    rows = []
    for name, m in metrics["per_class"].items():
        right = int(round(m["recall"] * m["support"]))
        rows.append(f'<div class="bar"><span class="name">{esc(name)}</span><span class="track"><span class="fill" '
                    f'style="width:{100 * m["recall"]:.1f}%"></span></span><span>{m["recall"]:.0%} '
                    f'({right}/{m["support"]})</span></div>')
    return "".join(rows)


STYLE = (".gallery{display:flex;flex-wrap:wrap;gap:.6rem}.gallery figure{margin:0;width:7.5rem;font-size:12px}"
         ".gallery img{image-rendering:pixelated;border:1px solid #ccc;background:#fff}"
         ".bar{display:flex;align-items:center;gap:.5rem;margin:.15rem 0}.bar .name{width:10rem}"
         ".bar .track{width:18rem;height:.9rem;background:#eee}.bar .fill{display:block;height:100%;background:#3b7dd8}")
