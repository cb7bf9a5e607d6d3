"""Run folders as data: read every ``metrics.json`` under some folders, group runs by what they ran,
flatten and compare their settings, and summarise a group's values (mean ± std); the runs' CSV logs.

What :mod:`emorl.report`, :mod:`emorl.tables` and :mod:`emorl.plots` build on, and the resume check's
flattening (:mod:`emorl.checkpointing`).  No model, no Lightning: plain files in, plain data out.
"""

from __future__ import annotations

import csv
import json
import math
import statistics
from collections import defaultdict
from pathlib import Path
from typing import NamedTuple

import yaml


def algo_and_reward(cfg: dict, default_algo: str) -> tuple[str, str]:
    """A run's algorithm and reward names from its resolved config (the reward only for GRPO).

    >>> algo_and_reward({"algo": {"name": "sft"}, "reward": {"name": "eswr"}}, default_algo="grpo")
    ('sft', '-')
    """
    algo = (cfg.get("algo") or {}).get("name", default_algo)
    return algo, (cfg.get("reward") or {}).get("name", "?") if algo == "grpo" else "-"


#: Settings that never make two runs unlike: where they were written, how they logged, the seed, whether the
#: starting model was scored first and on which other corpora the result was (neither changes the trained
#: model), and the fold of a cross-validated corpus (a row averages its folds as it averages its seeds; see
#: :func:`fold_note`).
FOLD_KEYS = ("dataset.fold", "dataset.corpus.fold", "dataset.test_session", "dataset.corpus.test_session")
FREE_KEYS = ("seed", "paths", "hydra", "logger", "resume", "num_threads", "trainer.enable_progress_bar",
             "trainer.default_root_dir", "eval.base", "eval.cross_corpus", *FOLD_KEYS)


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

    >>> differing_settings([{"eval": {"base": True}, "model": {"lr": 1e-4}}, {"eval": {"base": False}, "model": {"lr": 1e-4}}])
    []
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


class RunGroup(NamedTuple):
    """What puts runs in one row: the folder given, algorithm, reward (``-`` but for GRPO), reasoning,
    dataset, and every other setting that differs between the runs of the row (``-`` for none; empty for
    evaluations, which are grouped by what they evaluated)."""

    folder: str
    algo: str
    reward: str
    reasoning: str
    dataset: str
    settings: str = ""


def load_runs(dirs: list[str], damaged: list[tuple[str, str]] | None = None) -> list[dict]:
    """Every ``metrics.json`` under ``dirs``, each with its ``group`` (a :class:`RunGroup`), ``config`` and
    ``path``.  A file that cannot
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
            metrics["group"] = RunGroup(
                Path(d).name,
                *algo_and_reward(cfg, default_algo="grpo"),
                (cfg.get("reasoning") or {}).get("name", "?"),
                (cfg.get("dataset") or {}).get("name", "?"),
            )
            metrics["path"] = str(path.parent)
            runs.append(metrics)
    by_group: dict[RunGroup, list[dict]] = defaultdict(list)
    for run in runs:
        if "test" not in run:  # training runs; evaluations are grouped by what they evaluated
            by_group[run["group"]].append(run)
    for rs in by_group.values():
        keys = differing_settings([r["config"] for r in rs])
        folds = fold_note([r["config"] for r in rs])
        for r in rs:
            flat = flatten(r["config"])
            described = [f"{k}={flat.get(k)}" for k in keys] + ([folds] if folds else [])
            r["group"] = r["group"]._replace(settings=", ".join(described) or "-")
        partial = partial_settings([r["config"] for r in rs])
        for r in rs:
            r["partial"] = {k: (n, len(rs)) for k, n in partial.items()}
    return runs


def summary(values: list[float]) -> tuple[float, float] | None:
    """(mean, sample std; 0 for one value) in %, or None for no value.

    >>> [round(v, 4) for v in summary([0.5, 0.7])], summary([])
    ([60.0, 14.1421], None)
    """
    if not values:
        return None
    return 100 * statistics.mean(values), 100 * (statistics.stdev(values) if len(values) > 1 else 0.0)


def mean_std(values: list[float]) -> str:
    """``mean ± std`` in % (:func:`summary`), ``-`` for no value.

    >>> mean_std([0.5, 0.7]), mean_std([])
    ('60.0 ± 14.1', '-')
    """
    value = summary(values)
    return "-" if value is None else f"{value[0]:.1f} ± {value[1]:.1f}"


def markdown(table: list[list[str]]) -> str:
    """A Markdown table: the first row is the header.

    >>> print(markdown([["a", "b"], ["1", "2"]]))
    | a | b |
    |---|---|
    | 1 | 2 |
    """
    lines = ["| " + " | ".join(table[0]) + " |", "|---" * len(table[0]) + "|"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in table[1:]])


def log_files(run_dir: str | Path) -> list[Path]:
    """A run's CSV logs, one per attempt (a resumed run logs into a new ``csv/version_<n>``), in the order they were
    written: ``csv/metrics.csv`` (the layout of earlier builds), then ``csv/version_<n>/metrics.csv`` by ``n``."""
    csv_dir = Path(run_dir) / "csv"
    versions = [p for p in csv_dir.glob("version_*/metrics.csv") if p.parent.name.removeprefix("version_").isdigit()]
    versions.sort(key=lambda p: int(p.parent.name.removeprefix("version_")))
    return [p for p in [csv_dir / "metrics.csv"] if p.is_file()] + versions


def join_attempts(attempts: list[list[dict[str, float]]]) -> list[dict[str, float]]:
    """One log from its attempts' logs, oldest first: each attempt's rows replace the earlier rows from its first
    step on (the steps after the checkpoint it resumed from, run again).  An attempt with no row changes nothing.

    >>> join_attempts([[{"step": 0.0, "a": 1.0}, {"step": 1.0, "a": 2.0}, {"step": 2.0, "a": 3.0}], [], [{"step": 1.0, "a": 9.0}]])
    [{'step': 0.0, 'a': 1.0}, {'step': 1.0, 'a': 9.0}]
    """
    rows: list[dict[str, float]] = []
    for attempt in attempts:
        if attempt:
            first = min(r["step"] for r in attempt)
            rows = [r for r in rows if r["step"] < first] + attempt
    return rows


def read_log(run_dir: str | Path) -> list[dict[str, float]]:
    """The rows of a run's CSV log, numbers only, its attempts joined (:func:`join_attempts`); [] when there is none."""
    attempts = []
    for path in log_files(run_dir):
        with open(path, newline="") as f:
            attempts.append([{k: float(v) for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(f)])
    return join_attempts(attempts)


def validation_curve(rows: list[dict[str, float]]) -> dict[int, float]:
    """``{step: val/ua}`` of one run's log.

    >>> validation_curve([{"step": 49.0, "val/ua": 0.3}, {"step": 49.0, "train/loss": 1.0}, {"step": 99.0, "val/ua": 0.4}])
    {49: 0.3, 99: 0.4}
    """
    return {int(r["step"]): r["val/ua"] for r in rows if "val/ua" in r}


#: Steps per window of the training curves: ``emorl.report --dynamics`` and the paper report's plots
#: (``--window``).
WINDOW = 25


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
