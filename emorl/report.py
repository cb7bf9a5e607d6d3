"""Summarise runs: ``python -m emorl.report DIR [DIR ...]``.

Finds every ``metrics.json`` under the given directories (single runs or sweeps), groups them by
(reward, reasoning) and prints mean ± std over seeds of the base model's and the trained
model's test UA / WA / F1, with the number of runs and their mean wall time.
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
            metrics["group"] = (cfg.get("reward", {}).get("name", "?"), cfg.get("reasoning", {}).get("name", "?"))
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
    header = "| reward | reasoning | runs | base UA | base WA | base F1 | trained UA | trained WA | trained F1 | trained unparsed | train wall s |"
    lines = [header, "|---" * (header.count("|") - 1) + "|"]
    for (reward, reasoning), rs in sorted(groups.items()):
        cells = [reward, reasoning, str(len(rs))]
        for stage in ("base", "trained"):
            for key in ("ua", "wa", "f1"):
                cells.append(mean_std([r[stage][key] for r in rs if stage in r]))
        cells.append(mean_std([r["trained"]["unparsed_rate"] for r in rs if "trained" in r]))
        walls = [r["train"]["wall_time_s"] for r in rs if "train" in r]
        cells.append(f"{statistics.mean(walls):.0f}" if walls else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dirs", nargs="+", help="run or sweep directories to search for metrics.json")
    args = parser.parse_args(argv)
    runs = load_runs(args.dirs)
    if not runs:
        raise SystemExit(f"no metrics.json under {args.dirs}")
    print(table(runs))


if __name__ == "__main__":
    main()
