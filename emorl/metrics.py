"""SER metrics through torchmetrics: UA (macro recall), WA (overall accuracy), macro F1.

An unparsable answer is a prediction of an extra class ``C`` that no target has: it counts as
wrong for UA, WA and F1, and is reported as ``unparsed_rate``.

UA averages the recall of the classes present in the targets (``balanced_accuracy_score`` in
scikit-learn); macro F1 averages the F1 of every label of the label set, a label absent from
the targets scoring 0 (``f1_score(average="macro", labels=<all labels>)``), so that predicting
a class no clip has costs F1.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torchmetrics.functional.classification import (
    multiclass_accuracy,
    multiclass_confusion_matrix,
    multiclass_f1_score,
    multiclass_recall,
)


def predictions_to_indices(preds: Sequence[str | None], labels: Sequence[str]) -> torch.Tensor:
    """Label names (None for unparsed) to indices, unparsed -> ``len(labels)``: (N,) long."""
    index = {name.lower(): i for i, name in enumerate(labels)}
    return torch.tensor([index[p.lower()] if p is not None else len(labels) for p in preds], dtype=torch.long)


def classification_metrics(preds: Sequence[str | None], targets: Sequence[str], labels: Sequence[str]) -> dict:
    """UA, WA, F1, per-class recall, unparsed rate, predicted-label counts and the confusion matrix.

    Args:
        preds: N predicted labels, None where the answer could not be parsed.
        targets: N gold labels, each in ``labels``.
        labels: the C class names.

    Returns:
        dict with floats ``ua``, ``wa``, ``f1``, ``unparsed_rate``; ``recall`` and
        ``predicted`` keyed by label (``predicted`` also counts ``unparsed``); ``confusion``
        as a (C, C+1) nested list (rows: gold, columns: predicted, last column: unparsed).
    """
    if len(preds) != len(targets):
        raise ValueError(f"{len(preds)} predictions for {len(targets)} targets")
    if not targets:
        raise ValueError("no examples to score")
    c = len(labels)
    p = predictions_to_indices(preds, labels)
    t = predictions_to_indices(targets, labels)
    if (t == c).any():
        raise ValueError("a target label is None")
    recall = multiclass_recall(p, t, num_classes=c + 1, average="none")[:c]
    f1 = multiclass_f1_score(p, t, num_classes=c + 1, average="none")[:c]
    present = torch.bincount(t, minlength=c + 1)[:c] > 0
    confusion = multiclass_confusion_matrix(p, t, num_classes=c + 1)[:c]
    counts = torch.bincount(p, minlength=c + 1)
    return {
        "ua": float(recall[present].mean()),
        "wa": float(multiclass_accuracy(p, t, num_classes=c + 1, average="micro")),
        "f1": float(f1.mean()),
        "unparsed_rate": float((p == c).float().mean()),
        "recall": {label: float(recall[i]) for i, label in enumerate(labels)},
        "predicted": {**{label: int(counts[i]) for i, label in enumerate(labels)}, "unparsed": int(counts[c])},
        "confusion": confusion.tolist(),
        "n": len(targets),
    }


def plot_confusion(confusion: Sequence[Sequence[int]], labels: Sequence[str], path: str | Path, title: str = "") -> Path:
    """Write the confusion matrix (gold rows, predicted columns + unparsed) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix = torch.tensor(confusion, dtype=torch.float32)
    fig, ax = plt.subplots(figsize=(1.0 + 0.8 * matrix.shape[1], 1.0 + 0.8 * matrix.shape[0]))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(matrix.shape[1]), [*labels, "unparsed"], rotation=45, ha="right")
    ax.set_yticks(range(matrix.shape[0]), list(labels))
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            ax.text(j, i, int(matrix[i, j]), ha="center", va="center", fontsize=8)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
