"""Plots of a sweep (PNG), from the rows of :func:`emorl.tables.row_scores` and the runs' CSV logs.

* ``<table>_bars.png``: each row's mean UA with ± std error bars, the paper's UA beside it;
* ``table2_bars.png``: the same for every cross-corpus evaluation;
* ``val_ua.png``: validation UA over training steps per row (mean over its runs);
* ``rewards.png``: each reward component over steps per row (window means);
* ``sampled_labels.png``: per row, the share of sampled completions answering each label over steps.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from emorl.runs import WINDOW, read_log, validation_curve, window_means
from emorl.tables import paper_corpus


def _mean_curves(curves: list[dict[int, float]]) -> tuple[list[int], list[float]]:
    """Steps and the mean over ``curves`` at each step any of them has."""
    steps = sorted(set().union(*curves)) if curves else []
    return steps, [statistics.mean(c[s] for c in curves if s in c) for s in steps]


def bar_chart(labels: list[str], ours: list[tuple[float, float] | None], paper: list[float | None], title: str, path: Path,
              paper_label: str) -> Path:
    fig, ax = plt.subplots(figsize=(max(6.0, 0.7 * len(labels) + 2), 4.0))
    x = range(len(labels))
    ax.bar([i - 0.2 for i in x], [v[0] if v else 0.0 for v in ours], 0.4, yerr=[v[1] if v else 0.0 for v in ours],
           capsize=3, label="ours (mean ± std)")
    ax.bar([i + 0.2 for i in x], [p or 0.0 for p in paper], 0.4, alpha=0.5, hatch="//", label=paper_label)
    ax.set_xticks(list(x), labels, rotation=40, ha="right", fontsize=8)
    ax.set_ylabel("%")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_sweep(scores: dict[str, dict], paper: dict, dataset: str, out: Path, window: int = WINDOW) -> list[Path]:
    """Every plot of the module docstring that the runs have data for; returns the files written."""
    written = []
    for name in ("table1", "table3"):
        layout = paper[name]
        corpus = paper_corpus(layout, dataset)
        rows = [r for r in layout["rows"] if r["id"] in scores]
        if rows:
            written.append(bar_chart([r["label"] for r in rows], [scores[r["id"]]["ua"] for r in rows],
                                     [(r.get(corpus) or [None])[0] for r in rows], f"{layout['title']} (UA)",
                                     out / f"{name}_bars.png", f"paper, {corpus.upper()} UA"))
    cross = sorted({c for s in scores.values() for c in s["cross"]})
    for corpus in cross:
        ids = [rid for rid, s in scores.items() if corpus in s["cross"]]
        written.append(bar_chart(ids, [scores[rid]["cross"][corpus]["ua"] for rid in ids], [None] * len(ids),
                                 f"zero-shot on {corpus} (UA)", out / f"table2_{corpus}_bars.png", "paper: other corpora"))

    logs = {rid: [rows for rows in (read_log(r["path"]) for r in s["runs"]) if rows] for rid, s in sorted(scores.items())}
    logs = {rid: ls for rid, ls in logs.items() if ls}
    trained = {rid: ls for rid, ls in logs.items() if any("val/ua" in row for rows in ls for row in rows)}
    if trained:
        fig, ax = plt.subplots(figsize=(7, 4))
        for rid, ls in trained.items():
            steps, ua = _mean_curves([validation_curve(rows) for rows in ls])
            ax.plot([s + 1 for s in steps], [100 * v for v in ua], marker="o", label=rid)
        ax.set_xlabel("step")
        ax.set_ylabel("validation UA (%)")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / "val_ua.png", dpi=110)
        plt.close(fig)
        written.append(out / "val_ua.png")

    components = sorted({k for ls in logs.values() for rows in ls for row in rows for k in row if k.startswith("train/reward/")})
    if components:
        fig, axes = plt.subplots(1, len(components), figsize=(5 * len(components), 3.6), squeeze=False)
        for ax, key in zip(axes[0], components, strict=True):
            for rid, ls in logs.items():
                steps, values = _mean_curves([window_means(rows, key, window) for rows in ls])
                if steps:
                    ax.plot([s + 1 for s in steps], values, label=rid)
            ax.set_title(key.rsplit("/", 1)[1] + f" reward ({window}-step means)", fontsize=9)
            ax.set_xlabel("step")
        axes[0][0].legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / "rewards.png", dpi=110)
        plt.close(fig)
        written.append(out / "rewards.png")

    sampled = {rid: ls for rid, ls in logs.items() if any(k.startswith("train/sampled/") for rows in ls for row in rows for k in row)}
    if sampled:
        fig, axes = plt.subplots(len(sampled), 1, figsize=(7, 2.4 * len(sampled)), squeeze=False)
        for ax, (rid, ls) in zip(axes[:, 0], sampled.items(), strict=True):
            keys = sorted({k for rows in ls for row in rows for k in row if k.startswith("train/sampled/")})
            shares = defaultdict(list)
            steps: list[int] = []
            for key in keys:
                steps, values = _mean_curves([window_means(rows, key, window) for rows in ls])
                shares[key] = values
            ax.stackplot([s + 1 for s in steps], *(shares[k] for k in keys), labels=[k.rsplit("/", 1)[1] for k in keys])
            ax.set_title(f"{rid}: labels of the sampled completions ({window}-step means)", fontsize=9)
            ax.set_ylim(0, 1)
        axes[0, 0].legend(fontsize=6, ncol=4, loc="upper right")
        axes[-1, 0].set_xlabel("step")
        fig.tight_layout()
        fig.savefig(out / "sampled_labels.png", dpi=110)
        plt.close(fig)
        written.append(out / "sampled_labels.png")
    return written
