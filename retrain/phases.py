"""The two training phases as ``retrain`` runs them: each judged on held-out images, then refit on all.

Phase 1 (frozen features): held-out heads per fold (``evaluation``), then the delivered head chosen
and fitted the same way on every image. Phase 2 (fine-tuning): the check model (trained without the
check split) is fine-tuned and scored on the check split beside the frozen head on the same images;
it is kept only when it is better there, and then the delivered head is fine-tuned on every image
with the same fixed schedule.

Example:
    >>> frozen = frozen_phase(x, y, labels, plan, config)
    >>> tuned = fine_tune_phase(extractor, items, labels, plan, frozen, config, Path("run"))
    >>> tuned["summary"]["kept"], tuned["summary"]["test_accuracy"]
    (True, 0.81)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from retrain.distributed import SINGLE, Workers
from retrain.evaluation import EvaluationPlan, choose_head, head_columns, held_out_heads, keras_head
from retrain.finetune import fine_tune, predict
from retrain.train import evaluate, metrics


def frozen_phase(x: np.ndarray, y: np.ndarray, labels: list[str], plan: EvaluationPlan, config, log=print,
                 base_columns: int | None = None) -> dict:
    """Held-out heads per fold, and the head to deliver (refit on every image unless ``config.refit`` is off).

    ``base_columns``: ``x`` holds multi-level features whose first ``base_columns`` are the default ones;
    every head chooses between the two sets on its own training images (``choose_head``).

    Returns:
        ``{"held": held_out_heads(...), "metrics": on every scored image, "check_head", "delivered_head"}``.
    """
    held = held_out_heads(x, y, len(labels), plan, config, log, base_columns)
    scored = plan.scored()
    delivered = choose_head(x, y, len(labels), config, base_columns) if config.refit else held["heads"][0]
    return {"held": held, "metrics": metrics(y[scored], held["probabilities"][scored].argmax(1), labels),
            "check_head": held["heads"][0], "delivered_head": delivered}


def fine_tune_phase(fx, items: list, labels: list[str], plan: EvaluationPlan, frozen: dict, config,
                    checkpoints: Path, resume: bool = False, progress: bool = True, log=print,
                    workers: Workers = SINGLE) -> dict:
    """Phase 2 on the check split, kept only when it beats the frozen head there; then refit on ``items``.

    Args:
        fx: the ``FeatureExtractor`` (each model is fine-tuned on the features its head chose: ``for_columns``).
        items: every usable ``(path, label index)``, in the plan's positions.
        frozen: ``frozen_phase``'s result.
        workers: every worker runs this phase (data-parallel, the same decisions everywhere); only the
            chief writes checkpoints.

    Returns:
        ``{"summary": for the report, "check": (graph, head), "delivered": (graph, head),
        "check_probabilities": the kept model's on the check split}``.
    """

    classes, y = len(labels), np.array([label for _, label in items])
    check_items = [items[i] for i in plan.check]
    check_train = [items[i] for i in plan.check_training]
    frozen_p = frozen["held"]["probabilities"][plan.check]
    frozen_score = evaluate(frozen_p, y[plan.check])
    check_fx = fx.for_columns(head_columns(frozen["check_head"]))
    delivered_fx = fx.for_columns(head_columns(frozen["delivered_head"]))
    graph, head = check_fx.trainable(config.fine_tune), keras_head(frozen["check_head"], classes, config)
    result = fine_tune(graph, head, check_fx, check_train, check_items, classes, config, checkpoints / "fine_tune.npz",
                       resume, progress, log, workers)
    tuned_p = predict(result["forward"], check_items, fx.model, config.batch_size, workers, classes)
    tuned_score = evaluate(tuned_p, y[plan.check])
    kept = (tuned_score["accuracy"], -tuned_score["loss"]) > (frozen_score["accuracy"], -frozen_score["loss"])
    h = result["history"]
    summary = {"layers": len(h["trainable_layers"]), "parameters": h["trainable_parameters"], "history": h, "kept": kept,
               "test_accuracy": tuned_score["accuracy"], "frozen_on_same_images": frozen_score["accuracy"],
               "judged_on": f"{len(check_items)} held-out images the check model never trained on",
               "selected_by": "held-out accuracy (ties: loss) against the frozen head on the same images"}
    if not kept:
        log(f"fine-tune: held-out accuracy {tuned_score['accuracy']:.3f} does not beat the frozen head's "
            f"{frozen_score['accuracy']:.3f} on the same images; keeping the frozen-feature model")
        delivered_head = keras_head(frozen["delivered_head"], classes, config)
        return {"summary": summary, "check": (check_fx.extract, keras_head(frozen["check_head"], classes, config)),
                "delivered": (delivered_fx.extract, delivered_head), "check_probabilities": frozen_p}
    summary["test"] = metrics(y[plan.check], tuned_p.argmax(1), labels)
    delivered = (graph, head)
    if config.refit:
        log(f"fine-tune: kept ({tuned_score['accuracy']:.3f} vs frozen {frozen_score['accuracy']:.3f} held out); "
            f"refitting on all {len(items)} images")
        refit_graph, refit_head = delivered_fx.trainable(config.fine_tune), keras_head(frozen["delivered_head"], classes, config)
        refit = fine_tune(refit_graph, refit_head, delivered_fx, items, [], classes, config, checkpoints / "fine_tune_refit.npz",
                          resume, progress, log, workers)
        summary["refit_history"] = refit["history"]
        delivered = (refit_graph, refit_head)
    return {"summary": summary, "check": (graph, head), "delivered": delivered, "check_probabilities": tuned_p}
