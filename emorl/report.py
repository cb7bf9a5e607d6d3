"""Summarise runs: ``python -m emorl.report DIR [DIR ...] [--dynamics]``.

Finds every ``metrics.json`` under the given directories (single runs or sweeps).  Training runs
are grouped by (directory given, algo, reward, reasoning, dataset, and every other setting that
differs between them, the seed and output paths aside): mean ± std over seeds of the
base model's and the trained model's test UA / WA / F1, with the number of runs and their mean
wall time, then every class's recall after training and the lowest of them, and the folders of
the runs in each row.  Evaluations
(``emorl.evaluate``) are listed one per row, then averaged over seeds by what they evaluated
(the checkpoint's algo, reward and reasoning, or the base) and on which dataset: the
cross-corpus table (``python -m emorl.evaluate ckpt=<run> dataset=synthetic_heldout``).

``--paper`` lays the runs out as the paper's Tables 1–3 instead (:mod:`emorl.tables`).

``--dynamics`` adds, per group, how GRPO training went (from each run's ``csv`` log): validation
UA at every check, and per window of steps the policy's entropy, the share of groups whose
rewards vary, the accuracy reward and the labels the sampled completions answered (mean over the group's runs).
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
from collections import defaultdict
from pathlib import Path

import yaml

from emorl.runs import (
    WINDOW,
    RunGroup,
    algo_and_reward,
    damaged_listing,
    load_runs,
    markdown,
    mean_std,
    read_log,
    validation_curve,
    window_means,
)


def table(runs: list[dict]) -> str:
    groups: dict[RunGroup, list[dict]] = defaultdict(list)
    for run in runs:
        groups[run["group"]].append(run)
    lines = [["runs from", "algo", "reward", "reasoning", "dataset", "settings", "runs", "base UA", "base WA", "base F1",
              "trained UA", "trained WA", "trained F1", "trained unparsed", "train wall s"]]
    for group, rs in sorted(groups.items()):
        cells = [*group, str(len(rs))]
        for stage in ("base", "trained"):
            for key in ("ua", "wa", "f1"):
                cells.append(mean_std([r[stage][key] for r in rs if stage in r]))
        cells.append(mean_std([r["trained"]["unparsed_rate"] for r in rs if "trained" in r]))
        walls = [r["train"]["wall_time_s"] for r in rs if "train" in r]
        cells.append(f"{statistics.mean(walls):.0f}" if walls else "-")
        lines.append(cells)
    return markdown(lines)


def recall_table(runs: list[dict]) -> str:
    """Every class's test recall after training (mean ± std over a group's runs) and the lowest."""
    groups: dict[RunGroup, list[dict]] = defaultdict(list)
    for run in runs:
        if "trained" in run:
            groups[run["group"]].append(run)
    labels = list(dict.fromkeys(label for rs in groups.values() for r in rs for label in r["trained"]["recall"]))
    lines = [["runs from", "algo", "reward", "reasoning", "settings", *labels, "lowest"]]
    for group, rs in sorted(groups.items()):
        cells = [group.folder, group.algo, group.reward, group.reasoning, group.settings]
        cells += [mean_std([r["trained"]["recall"][label] for r in rs if label in r["trained"]["recall"]])
                  for label in labels]
        cells.append(mean_std([min(r["trained"]["recall"].values()) for r in rs]))
        lines.append(cells)
    return markdown(lines)


def run_listing(runs: list[dict]) -> str:
    """Which runs went into each row of :func:`table` (their folders)."""
    groups: dict[RunGroup, list[str]] = defaultdict(list)
    partial: dict[RunGroup, dict] = {}
    for run in runs:
        groups[run["group"]].append(run["path"])
        partial[run["group"]] = run.get("partial") or {}
    lines = []
    for group, paths in sorted(groups.items()):
        lines.append(f"- {' / '.join(group)}: {', '.join(paths)}")
        if partial[group]:
            recorded = ", ".join(f"{k} ({n} of {m})" for k, (n, m) in partial[group].items())
            lines.append(f"  settings only some of these runs record (not compared): {recorded}")
    return "\n".join(lines)


def dynamics(runs: list[dict], width: int = WINDOW) -> str:
    """Per group: validation UA at each check, and per window of steps entropy, the share of groups
    with reward variance and the sampled labels' shares (means over the group's runs)."""
    groups: dict[RunGroup, list[list[dict]]] = defaultdict(list)
    for run in runs:
        if "trained" in run and run["group"].algo == "grpo":
            groups[run["group"]].append(read_log(run["path"]))
    out = []
    for group, logs in sorted(groups.items()):
        logs = [rows for rows in logs if rows]
        if not logs:
            continue
        out.append(f"#### {' / '.join(group)} ({len(logs)} runs)")
        curves = [validation_curve(rows) for rows in logs]
        steps = sorted(set().union(*curves))
        out.append("val UA: " + ", ".join(
            f"step {s + 1}: {mean_std([c[s] for c in curves if s in c])}" for s in steps))
        keys = sorted({k for rows in logs for r in rows for k in r if k.startswith("train/sampled/")})
        accuracy = sorted({k for rows in logs for r in rows for k in r if k.startswith("train/accuracy/")})
        columns = ["train/reward/accuracy", "train/grad_norm", "train/entropy", "train/groups_with_variance", *keys,
                   *accuracy]
        names = ["accuracy reward", "grad norm", "entropy", "groups with variance", *(k.rsplit("/", 1)[1] for k in keys),
                 *(f"acc. {k.rsplit('/', 1)[1]}" for k in accuracy)]
        per_run = [{k: window_means(rows, k, width) for k in columns} for rows in logs]
        starts = sorted(set().union(*(m for r in per_run for m in r.values())))
        rows = [["steps", *names]]
        for start in starts:
            cells = [f"{start + 1}-{start + width}"]
            for k in columns:
                values = [r[k][start] for r in per_run if start in r[k]]
                cells.append(f"{statistics.mean(values):.2f}" if values else "-")
            rows.append(cells)
        out += [markdown(rows), ""]
    return "\n".join(out)


def evaluation_table(evals: list[dict]) -> str:
    lines = [["evaluation", "ckpt", "dataset", "split", "reasoning", "n", "UA", "WA", "F1", "unparsed", "faithfulness"]]
    for e in evals:
        t = e["test"]
        told = t.get("faithfulness")
        cells = [Path(e["path"]).name, Path(str(e.get("ckpt"))).name, e.get("dataset", "?"), e.get("split", "test"),
                 e.get("reasoning", "?"), str(t["n"]), *(f"{100 * t[k]:.1f}" for k in ("ua", "wa", "f1", "unparsed_rate")),
                 "-" if told is None else f"{100 * told:.1f}"]
        lines.append(cells)
    return markdown(lines)


def evaluated_group(evaluation: dict) -> tuple[str, str, str]:
    """(algo, reward, reasoning) of the run an evaluation's checkpoint comes from; ("base", "-", reasoning)
    for the untuned starting model."""
    ckpt = evaluation.get("ckpt")
    if not ckpt or ckpt == "None":
        return ("base", "-", evaluation.get("reasoning", "?"))
    run = Path(ckpt)
    run = run.parent if run.name == "model" else run
    config_file = run / "config_resolved.yaml"
    cfg = yaml.safe_load(config_file.read_text()) if config_file.exists() else {}
    return (*algo_and_reward(cfg, default_algo="?"), evaluation.get("reasoning", "?"))


def evaluation_summary(evals: list[dict]) -> str:
    """Evaluations averaged over seeds: by (directory given, evaluated model, dataset, split)."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for e in evals:
        groups[(e["group"].folder, *evaluated_group(e), e.get("dataset", "?"), e.get("split", "test"))].append(e)
    lines = [["runs from", "model", "reward", "reasoning", "dataset", "split", "runs", "UA", "WA", "F1", "unparsed",
              "lowest recall", "faithfulness"]]
    for group, es in sorted(groups.items()):
        cells = [*group, str(len(es))]
        cells += [mean_std([e["test"][k] for e in es]) for k in ("ua", "wa", "f1", "unparsed_rate")]
        cells.append(mean_std([min(e["test"]["recall"].values()) for e in es]))
        cells.append(mean_std([e["test"]["faithfulness"] for e in es if e["test"].get("faithfulness") is not None]))
        lines.append(cells)
    return markdown(lines)


def log_report_artifact(out: Path, group: str, project: str = "emorl") -> None:
    """Log the folder ``--paper`` wrote (tables as CSV / Markdown / LaTeX, plots) as a W&B artifact of type
    ``report`` from a run in the sweep's ``group``, with each CSV table also as a ``wandb.Table``."""
    import os

    import wandb

    run = wandb.init(project=project, group=group, job_type="report", name=f"{group}-report", dir=str(out),
                     mode=os.environ.get("WANDB_MODE", "offline"))
    for table_file in sorted(out.glob("*.csv")):
        with open(table_file, newline="") as f:
            rows = list(csv.reader(f))
        run.log({f"report/{table_file.stem}": wandb.Table(columns=rows[0], data=rows[1:])})
    for image in sorted(out.glob("*.png")):
        run.log({f"report/{image.stem}": wandb.Image(str(image))})
    artifact = wandb.Artifact(f"{group}-report", type="report")
    for path in sorted(p for p in out.iterdir() if p.is_file()):
        artifact.add_file(str(path))
    run.log_artifact(artifact)
    run.finish()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dirs", nargs="+", help="run or sweep directories to search for metrics.json")
    parser.add_argument("--dynamics", action="store_true", help="add validation curves and per-window training statistics")
    parser.add_argument("--window", type=int, default=WINDOW,
                        help=f"steps per window of --dynamics and of the --paper plots (default {WINDOW})")
    parser.add_argument("--paper", action="store_true",
                        help="the paper's tables: rows in its layout, its numbers beside ours, its claims checked, "
                             "unfinished jobs listed; also written as CSV / Markdown / LaTeX with plots into --out")
    parser.add_argument("--out", help="where --paper writes its files (default: <first dir>/report)")
    parser.add_argument("--no-plots", action="store_true", help="--paper without the PNG plots")
    parser.add_argument("--wandb", action="store_true",
                        help="--paper: also log its tables and plots to W&B as an artifact of the sweep (a run of "
                             "job type 'report' in the sweep's group; offline unless WANDB_MODE=online)")
    args = parser.parse_args(argv)
    missing = [d for d in args.dirs if not Path(d).is_dir()]
    if missing:
        raise SystemExit(f"no such folder: {', '.join(missing)} (give run or sweep folders)")
    damaged: list[tuple[str, str]] = []
    runs = load_runs(args.dirs, damaged)
    if damaged:
        print(damaged_listing(damaged), file=sys.stderr)
    if args.paper:
        from emorl.plots import plot_sweep
        from emorl.tables import render

        out = Path(args.out) if args.out else Path(args.dirs[0]) / "report"
        paper = render(args.dirs, runs, out)
        text = paper.text
        if not args.no_plots:
            written = plot_sweep(paper.scores, paper.paper, paper.dataset, out, args.window)
            text += "\n\nPlots: " + ", ".join(str(p) for p in written)
        print(text)
        print(f"\nwritten to {out}")
        if args.wandb:
            log_report_artifact(out, group=Path(args.dirs[0]).resolve().name)
        return
    if not runs:
        raise SystemExit(f"no metrics.json under {args.dirs}")
    trained = [r for r in runs if "test" not in r]
    evals = [r for r in runs if "test" in r]
    if trained:
        print(table(trained))
        print("\n" + recall_table(trained))
        print("\nRuns in each row:\n" + run_listing(trained))
        if args.dynamics:
            print("\n" + dynamics(trained, args.window))
    if evals:
        print(("\n" if trained else "") + evaluation_table(evals))
        print("\n" + evaluation_summary(evals))


if __name__ == "__main__":
    main()
