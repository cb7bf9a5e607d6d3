"""Summarise runs: ``python -m emorl.report DIR [DIR ...]``.

Finds every ``metrics.json`` under the given directories (single runs or sweeps).  Training runs
are grouped by (algo, reward, reasoning, dataset): mean ± std over seeds of the base model's and
the trained model's test UA / WA / F1, with the number of runs and their mean wall time.
Evaluations (``emorl.evaluate``) are listed one per row.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path

import yaml


def load_runs(dirs: list[str]) -> list[dict]:
    runs = []
    for d in dirs:
        for path in sorted(Path(d).rglob("metrics.json")):
            metrics = json.loads(path.read_text())
            config_file = path.parent / "config_resolved.yaml"
            cfg = yaml.safe_load(config_file.read_text()) if config_file.exists() else {}
            algo = (cfg.get("algo") or {}).get("name", "grpo")
            metrics["group"] = (
                algo,
                (cfg.get("reward") or {}).get("name", "?") if algo == "grpo" else "-",
                (cfg.get("reasoning") or {}).get("name", "?"),
                (cfg.get("dataset") or {}).get("name", "?"),
            )
            metrics["path"] = str(path.parent)
            runs.append(metrics)
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
        "| algo | reward | reasoning | dataset | runs | base UA | base WA | base F1 | trained UA | trained WA | "
        "trained F1 | trained unparsed | train wall s |"
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


def evaluation_table(evals: list[dict]) -> str:
    header = "| evaluation | ckpt | dataset | split | reasoning | n | UA | WA | F1 | unparsed |"
    lines = [header, "|---" * (header.count("|") - 1) + "|"]
    for e in evals:
        t = e["test"]
        cells = [Path(e["path"]).name, Path(str(e.get("ckpt"))).name, e.get("dataset", "?"), e.get("split", "test"),
                 e.get("reasoning", "?"), str(t["n"]), *(f"{100 * t[k]:.1f}" for k in ("ua", "wa", "f1", "unparsed_rate"))]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dirs", nargs="+", help="run or sweep directories to search for metrics.json")
    args = parser.parse_args(argv)
    runs = load_runs(args.dirs)
    if not runs:
        raise SystemExit(f"no metrics.json under {args.dirs}")
    trained = [r for r in runs if "test" not in r]
    evals = [r for r in runs if "test" in r]
    if trained:
        print(table(trained))
    if evals:
        print(("\n" if trained else "") + evaluation_table(evals))


if __name__ == "__main__":
    main()
