"""The retraining report a person reads: report.html with its plots as PNG files.

Example:
    >>> write_report_html(report, Path("out"))     # out/report.html, curves.png, confusion.png
"""

from __future__ import annotations

import html
from pathlib import Path

from retrain.report_gallery import STYLE, gallery_html, per_class_bars_html


def _plots(report: dict, folder: Path) -> None:
    # Figure objects draw with the Agg canvas on their own: no pyplot, no process-wide backend switch.
    from matplotlib.figure import Figure

    h = report["history"]
    h2 = report.get("fine_tune", {}).get("history", {})
    fig = Figure(figsize=(9, 3.2))
    axes = fig.subplots(1, 2)
    for ax, key in zip(axes, ("loss", "accuracy")):
        ax.plot(h.get(key, []) + h2.get(key, []), label="train")
        ax.plot(h.get(f"val_{key}", []) + h2.get(f"val_{key}", []), label="validation")
        if h2:
            ax.axvline(len(h.get(key, [])) - 0.5, color="gray", linestyle=":", label="fine-tuning starts")
        ax.set_xlabel("epoch")
        ax.set_title(key)
        ax.legend()
    fig.tight_layout()
    fig.savefig(folder / "curves.png", dpi=90)

    labels = report["dataset"]["labels"]
    cm = report["test"]["confusion_matrix"]
    fig = Figure(figsize=(1.2 + 0.7 * len(labels), 1 + 0.6 * len(labels)))
    ax = fig.subplots()
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i, row in enumerate(cm):
        for j, n in enumerate(row):
            ax.text(j, i, str(n), ha="center", va="center", color="black" if n < max(map(max, cm)) / 2 else "white")
    fig.tight_layout()
    fig.savefig(folder / "confusion.png", dpi=90)


def write_report_html(report: dict, folder: Path) -> Path:
    """Write ``report.html``, ``curves.png`` and ``confusion.png`` into ``folder``."""
    folder = Path(folder)
    _plots(report, folder)
    esc = html.escape
    t = report["test"]
    rows = "".join(
        f"<tr><td>{esc(name)}</td><td>{m['precision']:.3f}</td><td>{m['recall']:.3f}</td><td>{m['f1']:.3f}</td><td>{m['support']}</td></tr>"
        for name, m in t["per_class"].items()
    )
    counts = "".join(f"<tr><td>{esc(k)}</td><td>{v}</td></tr>" for k, v in report["dataset"]["counts"].items())
    skipped = "".join(f"<li><code>{esc(s['path'])}</code>: {esc(s['reason'])}</li>" for s in report["skipped"]) or "<li>none</li>"
    baseline = report.get("baseline_raw_pixels_accuracy")
    ev = report["evaluation"]
    phases = f"Frozen features: {report['test_frozen_features']['accuracy']:.1%} ({ev['frozen']})."
    if "fine_tune" in report:
        ft = report["fine_tune"]
        phases += (f" Fine-tuned (last {ft['layers']} weight layers, {ft['parameters']:,} weights): "
                   f"{ft['test_accuracy']:.1%} on {ev['check_images']} held-out images where the frozen head had "
                   f"{ft['frozen_on_same_images']:.1%}: " + ("kept." if ft["kept"] else "not kept."))
    check = report.get("runtime_check")
    runtime = (f"Measured in the shipped runtimes on the {check['images']} images of {esc(ev['check'])}: TF.js "
               f"({check['backend']}, Node.js) {check['tfjs_accuracy']:.1%}, SavedModel {check['saved_model_accuracy']:.1%} "
               f"({check['same_predictions']}/{check['images']} identical predictions)." if check else "")
    seconds = ", ".join(f"{k} {v:.1f} s" for k, v in report.get("seconds", {}).items())
    levels = feature_choice_text(report.get("features", {}))
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>transferjs retraining report</title>
<style>body{{font:15px/1.45 system-ui,sans-serif;max-width:52rem;margin:2rem auto;padding:0 1rem}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:.2rem .6rem;text-align:right}}
td:first-child,th:first-child{{text-align:left}}{STYLE}</style></head><body>
<h1>Retraining report</h1>
<p>Backbone <code>{esc(report['backbone']['model_dir'])}</code>, features from
<code>{esc(report['backbone']['feature_node'])}</code> ({report['backbone']['feature_dim']} values). {esc(levels)}</p>
<h2>Held-out accuracy: {t['accuracy']:.1%}</h2>
<p>Every number here is a held-out estimate: {esc(ev['statement'])}. {esc(ev['delivered'])}</p>
<p>{esc(phases)} {f"Raw-pixel baseline (softmax regression on 32×32 pixels): {baseline:.1%}." if baseline is not None else ""}
{runtime}</p>
<h2>Per-class accuracy</h2>{per_class_bars_html(t)}
<h2>Most confidently misclassified held-out images</h2>{gallery_html(report.get("misclassified", []))}
<h2>Precision, recall, F1</h2>
<table><tr><th>class</th><th>precision</th><th>recall</th><th>F1</th><th>support</th></tr>{rows}</table>
<h2>Confusion matrix</h2><img src="confusion.png" alt="confusion matrix">
<h2>Training curves</h2><img src="curves.png" alt="loss and accuracy per epoch">
<h2>Data</h2><table><tr><th>class</th><th>images</th></tr>{counts}</table>
<h3>Skipped files</h3><ul>{skipped}</ul>
<h2>Timings</h2><p>{esc(seconds)}</p>
</body></html>
"""
    (folder / "report.html").write_text(page)
    return folder / "report.html"


def feature_choice_text(features: dict) -> str:
    """One sentence: which features the model uses, and both sets' inner cross-validation accuracy.

    Example:
        >>> feature_choice_text({"used": "multi-level", "dim": 1904, "default_dim": 1280, "taps": ["a:0"],
        ...                      "cv": {"default": {"accuracy": 0.70}, "multi-level": {"accuracy": 0.72}}})
        'Multi-level features used (1904 = 1280 + pooled a:0): cross-validated on the training images, default 70.0 %, multi-level 72.0 %.'
    """
    if "cv" not in features:
        return ""
    cv = features["cv"]
    used = (f"Multi-level features used ({features['dim']} = {features['default_dim']} + pooled {', '.join(features['taps'])})"
            if features["used"] == "multi-level" else "Default features used (the pooled stage outputs did not win)")
    return (f"{used}: cross-validated on the training images, default {cv['default']['accuracy'] * 100:.1f} %, "
            f"multi-level {cv['multi-level']['accuracy'] * 100:.1f} %.")
