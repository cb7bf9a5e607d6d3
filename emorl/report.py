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
import json
import math
import statistics
import sys
from collections import defaultdict
from pathlib import Path

import yaml


def algo_and_reward(cfg: dict, default_algo: str) -> tuple[str, str]:
    """A run's algorithm and reward names from its resolved config (the reward only for GRPO).

    >>> algo_and_reward({"algo": {"name": "sft"}, "reward": {"name": "eswr"}}, default_algo="grpo")
    ('sft', '-')
    """
    algo = (cfg.get("algo") or {}).get("name", default_algo)
    return algo, (cfg.get("reward") or {}).get("name", "?") if algo == "grpo" else "-"


#: Settings that never make two runs unlike: where they were written, how they logged, the seed, and the
#: fold of a cross-validated corpus (a row averages its folds as it averages its seeds; see :func:`fold_note`).
FOLD_KEYS = ("dataset.fold", "dataset.corpus.fold", "dataset.test_session", "dataset.corpus.test_session")
FREE_KEYS = ("seed", "paths", "hydra", "logger", "resume", "num_threads", "trainer.enable_progress_bar",
             "trainer.default_root_dir", *FOLD_KEYS)


def fold_note(configs: list[dict]) -> str | None:
    """Which folds a row averages (None when its runs have one fold or none): ``dataset.fold``, else
    IEMOCAP's ``dataset.test_session`` (the other fold key :data:`FOLD_KEYS` frees).

    >>> fold_note([{"dataset": {"fold": 2}}, {"dataset": {"fold": 1}}, {"dataset": {"fold": 2}}])
    'folds 1, 2 averaged'
    >>> fold_note([{"dataset": {"fold": None, "test_session": s}} for s in (5, 4)])
    'folds 4, 5 averaged'
    """
    def fold(config: dict):
        dataset = config.get("dataset") or {}
        return dataset.get("fold") if dataset.get("fold") is not None else dataset.get("test_session")

    folds = sorted({fold(c) for c in configs} - {None})
    return f"folds {', '.join(map(str, folds))} averaged" if len(folds) > 1 else None


def flatten(node, prefix: str = "") -> dict[str, object]:
    """``{"a.b": 1}`` for ``{"a": {"b": 1}}``; lists are values.

    >>> flatten({"a": {"b": 1, "c": [1, 2]}, "d": None})
    {'a.b': 1, 'a.c': [1, 2], 'd': None}
    """
    if not isinstance(node, dict):
        return {prefix[:-1]: node}
    out: dict[str, object] = {}
    for key, value in node.items():
        out.update(flatten(value, f"{prefix}{key}."))
    return out


def differing_settings(configs: list[dict]) -> list[str]:
    """Keys whose values differ between runs' resolved configs, besides :data:`FREE_KEYS`, keys that
    hold the run's seed in every run (``data.seed: ${seed}``) and keys that only some of the runs
    record (:func:`partial_settings`: a setting a later version added).

    >>> differing_settings([{"seed": 0, "data": {"seed": 0}, "model": {"lr": 1e-4}},
    ...                     {"seed": 1, "data": {"seed": 1}, "model": {"lr": 3e-4}, "data2": {"new": False}}])
    ['model.lr']
    """
    flat = [flatten(c) for c in configs]
    keys = set.intersection(*(set(f) for f in flat)) if flat else set()
    seeded = lambda k: all(f.get(k) == f.get("seed") for f in flat)
    return [k for k in sorted(keys) if not _free(k) and not seeded(k) and len({repr(f.get(k)) for f in flat}) > 1]


def _free(key: str) -> bool:
    return any(key == f or key.startswith(f + ".") for f in FREE_KEYS)


def partial_settings(configs: list[dict]) -> dict[str, int]:
    """Keys that some runs' configs record and others lack (with how many record them): settings a
    later version of emorl added, or ``+key`` additions.  They do not split a row; the report lists them.

    >>> partial_settings([{"a": 1}, {"a": 1, "data": {"task_alternation": False}}, {"a": 2}])
    {'data.task_alternation': 1}
    """
    flat = [flatten(c) for c in configs]
    counts: dict[str, int] = defaultdict(int)
    for f in flat:
        for k in f:
            counts[k] += 1
    return {k: n for k, n in sorted(counts.items()) if n < len(flat) and not _free(k)}


def damaged_listing(damaged: list[tuple[str, str]]) -> str:
    """The result files that could not be read, one line each.

    >>> damaged_listing([("a/metrics.json", "JSONDecodeError: ...")])
    'damaged, left out: a/metrics.json (JSONDecodeError: ...)'
    """
    return "\n".join(f"damaged, left out: {path} ({error})" for path, error in damaged)


def load_runs(dirs: list[str], damaged: list[tuple[str, str]] | None = None) -> list[dict]:
    """Every ``metrics.json`` under ``dirs``, grouped by (directory given, algo, reward, reasoning,
    dataset, and every other setting that differs between the runs of that group).  A file that cannot
    be read is left out and added to ``damaged`` as ``(file, error)``."""
    runs = []
    for d in dirs:
        for path in sorted(Path(d).rglob("metrics.json")):
            try:
                metrics = json.loads(path.read_text())
                if not isinstance(metrics, dict):
                    raise ValueError(f"expected a JSON object, got {type(metrics).__name__}")
            except (ValueError, UnicodeDecodeError) as error:
                if damaged is not None:
                    damaged.append((str(path), f"{type(error).__name__}: {error}"))
                continue
            config_file = path.parent / "config_resolved.yaml"
            cfg = yaml.safe_load(config_file.read_text()) if config_file.exists() else {}
            metrics["config"] = cfg or {}
            metrics["group"] = (
                Path(d).name,
                *algo_and_reward(cfg, default_algo="grpo"),
                (cfg.get("reasoning") or {}).get("name", "?"),
                (cfg.get("dataset") or {}).get("name", "?"),
            )
            metrics["path"] = str(path.parent)
            runs.append(metrics)
    by_group: dict[tuple, list[dict]] = defaultdict(list)
    for run in runs:
        if "test" not in run:  # training runs; evaluations are grouped by what they evaluated
            by_group[run["group"]].append(run)
    for rs in by_group.values():
        keys = differing_settings([r["config"] for r in rs])
        folds = fold_note([r["config"] for r in rs])
        for r in rs:
            flat = flatten(r["config"])
            described = [f"{k}={flat.get(k)}" for k in keys] + ([folds] if folds else [])
            r["group"] = (*r["group"], ", ".join(described) or "-")
        partial = partial_settings([r["config"] for r in rs])
        for r in rs:
            r["partial"] = {k: (n, len(rs)) for k, n in partial.items()}
    return runs


def mean_std(values: list[float]) -> str:
    if not values:
        return "-"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.mean(values):.1f} ± {100 * sd:.1f}"


def table(runs: list[dict]) -> str:
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for run in runs:
        groups[run["group"]].append(run)
    header = (
        "| runs from | algo | reward | reasoning | dataset | settings | runs | base UA | base WA | base F1 | trained UA | "
        "trained WA | trained F1 | trained unparsed | train wall s |"
    )
    lines = [header, "|---" * (header.count("|") - 1) + "|"]
    for group, rs in sorted(groups.items()):
        cells = [*group, str(len(rs))]
        for stage in ("base", "trained"):
            for key in ("ua", "wa", "f1"):
                cells.append(mean_std([r[stage][key] for r in rs if stage in r]))
        cells.append(mean_std([r["trained"]["unparsed_rate"] for r in rs if "trained" in r]))
        walls = [r["train"]["wall_time_s"] for r in rs if "train" in r]
        cells.append(f"{statistics.mean(walls):.0f}" if walls else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def recall_table(runs: list[dict]) -> str:
    """Every class's test recall after training (mean ± std over a group's runs) and the lowest."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for run in runs:
        if "trained" in run:
            groups[run["group"]].append(run)
    labels = list(dict.fromkeys(label for rs in groups.values() for r in rs for label in r["trained"]["recall"]))
    header = "| runs from | algo | reward | reasoning | settings | " + " | ".join(labels) + " | lowest |"
    lines = [header, "|---" * (header.count("|") - 1) + "|"]
    for group, rs in sorted(groups.items()):
        cells = [*group[:4], group[5]]
        cells += [mean_std([r["trained"]["recall"][label] for r in rs if label in r["trained"]["recall"]])
                  for label in labels]
        cells.append(mean_std([min(r["trained"]["recall"].values()) for r in rs]))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run_listing(runs: list[dict]) -> str:
    """Which runs went into each row of :func:`table` (their folders)."""
    groups: dict[tuple, list[str]] = defaultdict(list)
    partial: dict[tuple, dict] = {}
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


def read_log(run_dir: str | Path) -> list[dict[str, float]]:
    """The rows of a run's CSV log (``csv/*/metrics.csv``), numbers only; [] when there is none."""
    files = sorted(Path(run_dir).glob("csv/*/metrics.csv"))
    if not files:
        return []
    with open(files[-1], newline="") as f:
        return [{k: float(v) for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(f)]


def validation_curve(rows: list[dict[str, float]]) -> dict[int, float]:
    """``{step: val/ua}`` of one run's log.

    >>> validation_curve([{"step": 49.0, "val/ua": 0.3}, {"step": 49.0, "train/loss": 1.0}, {"step": 99.0, "val/ua": 0.4}])
    {49: 0.3, 99: 0.4}
    """
    return {int(r["step"]): r["val/ua"] for r in rows if "val/ua" in r}


def window_means(rows: list[dict[str, float]], key: str, width: int) -> dict[int, float]:
    """Mean of ``key`` over training steps ``[k*width, (k+1)*width)``, by window start ``k*width``.

    >>> window_means([{"step": 0.0, "h": 1.0}, {"step": 1.0, "h": 3.0}, {"step": 2.0, "h": 5.0}], "h", 2)
    {0: 2.0, 2: 5.0}
    """
    sums: dict[int, list[float]] = defaultdict(list)
    for r in rows:
        if key in r and "step" in r and not math.isnan(r[key]):
            sums[int(r["step"]) // width * width].append(r[key])
    return {start: statistics.mean(v) for start, v in sorted(sums.items())}


def dynamics(runs: list[dict], width: int = 25) -> str:
    """Per group: validation UA at each check, and per window of steps entropy, the share of groups
    with reward variance and the sampled labels' shares (means over the group's runs)."""
    groups: dict[tuple, list[list[dict]]] = defaultdict(list)
    for run in runs:
        if "trained" in run and run["group"][1] == "grpo":
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
        columns = ["train/reward/accuracy", "train/grad_norm", "train/entropy", "train/groups_with_variance", *keys]
        names = ["accuracy reward", "grad norm", "entropy", "groups with variance", *(k.rsplit("/", 1)[1] for k in keys)]
        per_run = [{k: window_means(rows, k, width) for k in columns} for rows in logs]
        starts = sorted(set().union(*(m for r in per_run for m in r.values())))
        header = "| steps | " + " | ".join(names) + " |"
        out += [header, "|---" * (header.count("|") - 1) + "|"]
        for start in starts:
            cells = [f"{start + 1}-{start + width}"]
            for k in columns:
                values = [r[k][start] for r in per_run if start in r[k]]
                cells.append(f"{statistics.mean(values):.2f}" if values else "-")
            out.append("| " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def evaluation_table(evals: list[dict]) -> str:
    header = "| evaluation | ckpt | dataset | split | reasoning | n | UA | WA | F1 | unparsed | faithfulness |"
    lines = [header, "|---" * (header.count("|") - 1) + "|"]
    for e in evals:
        t = e["test"]
        told = t.get("faithfulness")
        cells = [Path(e["path"]).name, Path(str(e.get("ckpt"))).name, e.get("dataset", "?"), e.get("split", "test"),
                 e.get("reasoning", "?"), str(t["n"]), *(f"{100 * t[k]:.1f}" for k in ("ua", "wa", "f1", "unparsed_rate")),
                 "-" if told is None else f"{100 * told:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


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
        groups[(e["group"][0], *evaluated_group(e), e.get("dataset", "?"), e.get("split", "test"))].append(e)
    header = ("| runs from | model | reward | reasoning | dataset | split | runs | UA | WA | F1 | unparsed | lowest recall "
              "| faithfulness |")
    lines = [header, "|---" * (header.count("|") - 1) + "|"]
    for group, es in sorted(groups.items()):
        cells = [*group, str(len(es))]
        cells += [mean_std([e["test"][k] for e in es]) for k in ("ua", "wa", "f1", "unparsed_rate")]
        cells.append(mean_std([min(e["test"]["recall"].values()) for e in es]))
        cells.append(mean_std([e["test"]["faithfulness"] for e in es if e["test"].get("faithfulness") is not None]))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


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
    parser.add_argument("--window", type=int, default=25, help="steps per window of --dynamics (default 25)")
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
        from emorl.tables import render

        out = Path(args.out) if args.out else Path(args.dirs[0]) / "report"
        print(render(args.dirs, runs, out, plots=not args.no_plots))
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
