"""The paper's tables from runs: ``python -m emorl.report --paper multirun_sweeps/table1``.

Each run is placed in a row of EMO-RL's tables by what it ran (:func:`row_id`: the algorithm,
the reward components it used, the prompt), whatever folder it is in; rows are laid out in the
paper's order and groups, mean ± std over the row's runs, the best of each of our columns in
bold, the paper's own numbers beside ours (``paper_results.yaml``, which cites the paper), then
one line per claim of the paper saying whether our runs order the rows the same way.  Jobs of a
sweep that failed (a folder without ``metrics.json``) or never ran (a combination of the sweep's
parameters without a folder) are listed, never dropped.
"""

from __future__ import annotations

import csv
import itertools
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import yaml

from emorl.runs import differing_settings, flatten, fold_note, markdown, summary

PAPER_FILE = Path(__file__).with_name("paper_results.yaml")
METRICS = ("ua", "wa", "f1")


def paper_results(path: str | Path = PAPER_FILE) -> dict:
    return yaml.safe_load(Path(path).read_text())


# --------------------------------------------------------------------------- which row a run is
def row_id(cfg: dict) -> str:
    """The paper row a run's resolved config ran: the ``row`` its experiment file declares; for runs without
    one (composed by hand, or by earlier versions), inferred from its algo, reward and reasoning.

    >>> row_id({"row": "eswr_esr", "algo": {"name": "grpo"}})
    'eswr_esr'

    >>> row_id({"algo": {"name": "grpo"}, "reward": {"name": "eswr", "format": {}, "accuracy": {}}, "reasoning": {"name": "esr"}})
    'eswr_esr'
    >>> row_id({"algo": {"name": "grpo"}, "reward": {"name": "format", "format": {}, "accuracy": None}, "reasoning": {"name": "eur"}})
    'format_eur'
    >>> row_id({"algo": {"name": "grpo"}, "reward": {"name": "bcr_only", "format": None, "accuracy": {}}, "reasoning": {"name": "ir"}})
    'accuracy_bcr'
    >>> row_id({"algo": {"name": "zero_shot"}, "reasoning": {"name": "eur"}}), row_id({"algo": {"name": "sft"}, "reasoning": {"name": "ir"}})
    ('zero_shot_cot', 'sft_ir')
    """
    if cfg.get("row"):
        return str(cfg["row"])
    algo = (cfg.get("algo") or {}).get("name", "?")
    reasoning = (cfg.get("reasoning") or {}).get("name", "?")
    if algo == "linear_probe":
        return "frozen_encoder"
    if algo == "zero_shot":
        return {"ir": "zero_shot_direct", "eur": "zero_shot_cot"}.get(reasoning, f"zero_shot_{reasoning}")
    if algo != "grpo":
        return f"{algo}_{reasoning}"
    reward = cfg.get("reward") or {}
    name = str(reward.get("name", "?")).removesuffix("_only")
    has_format, has_accuracy = reward.get("format") is not None, reward.get("accuracy") is not None
    if has_format and not has_accuracy:
        return f"format_{reasoning}"
    if has_accuracy and not has_format:
        return f"accuracy_{name}" + ("" if reasoning == "ir" else f"_{reasoning}")
    return f"{name}_{reasoning}"


# --------------------------------------------------------------------------- numbers
def cell(value: tuple[float, float] | None, best: bool = False) -> str:
    if value is None:
        return "–"
    text = f"{value[0]:.1f} ± {value[1]:.1f}"
    return f"**{text}**" if best else text


def paper_cell(value) -> str:
    return "–" if value is None else f"{float(value):.2f}"


def row_scores(runs: list[dict]) -> dict[str, dict]:
    """``{row id: {"runs": [...], "ua": (mean, std), ..., "cross": {corpus: {"ua": ..., "wa": ..., "f1": ...}}}}``."""
    rows: dict[str, list[dict]] = defaultdict(list)
    for run in runs:
        if "trained" in run:
            rows[row_id(run["config"])].append(run)
    out = {}
    for rid, rs in rows.items():
        scores = {m: summary([r["trained"][m] for r in rs]) for m in METRICS}
        cross: dict[str, dict] = defaultdict(dict)
        corpora = sorted({c for r in rs for c, v in (r.get("cross_corpus") or {}).items() if "ua" in v})
        for corpus in corpora:
            done = [r["cross_corpus"][corpus] for r in rs if "ua" in (r.get("cross_corpus") or {}).get(corpus, {})]
            cross[corpus] = {m: summary([d[m] for d in done]) for m in METRICS} | {"runs": len(done)}
        out[rid] = {"runs": rs, **scores, "cross": dict(cross),
                    "lowest_recall": summary([min(r["trained"]["recall"].values()) for r in rs])}
    return out


def _best(values: list[tuple[float, float] | None]) -> float | None:
    means = [v[0] for v in values if v is not None]
    return max(means) if means else None


def paper_corpus(layout: dict, dataset: str) -> str:
    """The paper's corpus shown beside ours: the same corpus where the paper has it, else its first (MELD)."""
    return dataset if dataset in layout["corpora"] else layout["corpora"][0]


# --------------------------------------------------------------------------- tables
def in_corpus_table(name: str, layout: dict, scores: dict[str, dict], dataset: str, everywhere: set[str]) -> list[list[str]]:
    """Rows of Table 1 or 3: group, row, runs, our UA/WA/F1, lowest class recall, the paper's UA/WA/F1.

    Table 1 also lists our rows that no paper table has (``everywhere``: every row id the paper's tables name)."""
    corpus = paper_corpus(layout, dataset)
    known = [r for r in layout["rows"] if r["id"] in scores or r.get(corpus)]
    extra = [rid for rid in sorted(scores) if rid not in everywhere] if name == "table1" else []
    best = {m: _best([scores[r["id"]][m] for r in known if r["id"] in scores]) for m in METRICS}
    header = ["group", "row", "runs", "UA", "WA", "F1", "lowest class recall",
              *(f"paper {corpus.upper()} {m.upper()}" for m in METRICS)]
    table = [header]
    for row in [*known, *({"id": rid, "label": rid, "group": "not in the paper"} for rid in extra)]:
        ours = scores.get(row["id"])
        paper = row.get(corpus) or [None] * 3
        if ours is None:
            table.append([row["group"], row["label"], "0", "–", "–", "–", "–", *map(paper_cell, paper)])
            continue
        table.append([row["group"], row["label"], str(len(ours["runs"])),
                      *(cell(ours[m], ours[m] is not None and ours[m][0] == best[m]) for m in METRICS),
                      cell(ours["lowest_recall"]), *map(paper_cell, paper)])
    return table


def cross_corpus_table(layout: dict, scores: dict[str, dict], names: dict[str, dict]) -> list[list[str]]:
    """Rows of Table 2: our UA/WA/F1 on each corpus the runs were evaluated on, the paper's WA on its corpora.

    Our rows that the paper's Table 2 lacks follow, labelled as ``names`` (row id -> a paper row) labels them."""
    corpora = sorted({c for s in scores.values() for c in s["cross"]})
    known = [r for r in layout["rows"] if r["id"] in scores or any(r.get(c) is not None for c in layout["corpora"])]
    extra = [rid for rid in sorted(scores) if scores[rid]["cross"] and rid not in {r["id"] for r in layout["rows"]}]
    header = ["group", "row", "runs", *(f"{c} {m.upper()}" for c in corpora for m in METRICS),
              *(f"paper {c.upper()} WA" for c in layout["corpora"])]
    best = {(c, m): _best([s["cross"].get(c, {}).get(m) for s in scores.values()]) for c in corpora for m in METRICS}
    table = [header]
    others = ({"id": rid, "label": names.get(rid, {}).get("label", rid),
               "group": names.get(rid, {}).get("group", "not in the paper") + " (not in the paper's Table 2)"} for rid in extra)
    for row in [*known, *others]:
        ours = scores.get(row["id"], {"cross": {}})
        cells = [str(max((ours["cross"].get(c, {}).get("runs", 0) for c in corpora), default=0))]
        for c in corpora:
            got = ours["cross"].get(c, {})
            cells += [cell(got.get(m), got.get(m) is not None and got[m][0] == best[(c, m)]) for m in METRICS]
        table.append([row["group"], row["label"], *cells, *(paper_cell(row.get(c)) for c in layout["corpora"])])
    return table


def latex(table: list[list[str]]) -> str:
    escape = lambda s: s.replace("±", r"$\pm$").replace("**", "").replace("%", r"\%").replace("_", r"\_").replace("–", "--")
    out = [r"\begin{tabular}{ll" + "r" * (len(table[0]) - 2) + "}", r"\toprule",
           " & ".join(escape(c) for c in table[0]) + r" \\", r"\midrule"]
    for row in table[1:]:
        out.append(" & ".join(rf"\textbf{{{escape(c)}}}" if c.startswith("**") else escape(c) for c in row) + r" \\")
    return "\n".join([*out, r"\bottomrule", r"\end{tabular}"])


# --------------------------------------------------------------------------- claims
def order_holds(values: list[tuple[float, float] | None]) -> str:
    """Whether means strictly decrease along ``values`` (the claimed order, best first).

    >>> order_holds([(50.0, 1.0), (40.0, 2.0)]), order_holds([(50.0, 1.0), (49.5, 2.0)]), order_holds([(40.0, 1.0), (50.0, 1.0)])
    ('holds', 'holds, within one std', 'does not hold')
    >>> order_holds([(50.0, 1.0), None])
    'not measured'
    """
    if any(v is None for v in values):
        return "not measured"
    pairs = list(zip(values, values[1:], strict=False))
    if not all(a[0] > b[0] for a, b in pairs):
        return "does not hold"
    close = any(a[0] - b[0] < max(a[1], b[1]) for a, b in pairs)
    return "holds, within one std" if close else "holds"


def _claim(text: str, ids: list[str], values: list) -> str:
    shown = ", ".join(f"{rid} {cell(v)}" for rid, v in zip(ids, values, strict=True))
    return f"- {text}: **{order_holds(values)}** ({shown})"


def claims(scores: dict[str, dict], cross_corpora: list[str], paper: dict | None = None) -> list[str]:
    """One line per claim of the paper (``claims`` in ``paper_results.yaml``): in-corpus claims on UA, claims
    across corpora on WA (Table 2's metric), once per evaluated corpus.  A claim is shown when any of its
    rows was run (``when: any``), or only when all were (``when: all``)."""
    lines = []
    for claim in (paper or paper_results())["claims"]:
        ids, metric, when = list(claim["rows"]), claim["metric"], claim.get("when", "any")
        present = [rid in scores for rid in ids]
        if not (all(present) if when == "all" else any(present)):
            continue
        for corpus in cross_corpora if claim.get("across_corpora") else [None]:
            if corpus is None:
                values = [scores.get(rid, {}).get(metric) for rid in ids]
            else:
                values = [scores.get(rid, {}).get("cross", {}).get(corpus, {}).get(metric) for rid in ids]
            text = claim["text"].format(corpus=corpus)
            lines.append(_claim(f"{text} ({metric.upper()})", ids, values))
    return lines


# --------------------------------------------------------------------------- jobs that did not finish
def _sweep_params(multirun: dict) -> dict[str, list[str]]:
    """The values each swept key takes: the sweeper's params, then the command line's overrides (Hydra's
    own parser reads both, so ``eval.cross_corpus=[a,b]`` is one value and ``seed=0,1`` two)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    hydra = multirun.get("hydra") or {}
    lines = [f"{k}={v}" for k, v in ((hydra.get("sweeper") or {}).get("params") or {}).items()]
    lines += [str(o) for o in ((hydra.get("overrides") or {}).get("task") or [])]
    params: dict[str, list[str]] = {}
    for override in parser.parse_overrides(lines):
        key = override.get_key_element().lstrip("+~")
        if override.is_sweep_override():
            params[key] = [str(v) for v in override.sweep_string_iterator()]
        else:
            params.pop(key, None)  # one value on the command line replaces the sweep over that key
    return params


def unfinished_jobs(sweep_dir: str | Path) -> list[str]:
    """Jobs of a Hydra sweep folder that failed (a job folder without ``metrics.json``: its last error line),
    have not finished (no error logged: still running, or killed) or never started (a combination of the
    sweep's parameters that no job folder ran)."""
    sweep = Path(sweep_dir)
    found, lines = set(), []
    for overrides_file in sorted(sweep.glob("*/.hydra/overrides.yaml")):
        job = overrides_file.parent.parent
        overrides = yaml.safe_load(overrides_file.read_text()) or []
        found.add(frozenset(o.lstrip("+~") for o in overrides))
        if not (job / "metrics.json").exists():
            errors = [line.strip() for log in sorted(job.glob("*.log")) for line in log.read_text(errors="replace").splitlines()
                      if "Error" in line or "Exception" in line]
            if errors:
                lines.append(f"- failed: {job.name} ({' '.join(overrides)}): {errors[-1]}")
            else:
                lines.append(f"- not finished: {job.name} ({' '.join(overrides)}): no metrics.json and no error in its "
                             "log (still running, or killed)")
    multirun_file = sweep / "multirun.yaml"
    if multirun_file.exists():
        params = _sweep_params(yaml.safe_load(multirun_file.read_text()) or {})
        keys = sorted(params)
        for combo in itertools.product(*(params[k] for k in keys)):
            wanted = {f"{k}={v}" for k, v in zip(keys, combo, strict=True)}
            if not any(wanted <= job for job in found):
                lines.append(f"- missing: {' '.join(sorted(wanted))} (no job folder)")
    return lines


# --------------------------------------------------------------------------- the report
def mixed_settings(scores: dict[str, dict]) -> list[str]:
    """Rows whose runs differ in a setting other than the seed: the report averages them, and says so."""
    lines = []
    for rid, s in sorted(scores.items()):
        folds = fold_note([r["config"] for r in s["runs"]])
        if folds:
            lines.append(f"- {rid}: {folds}")
        keys = differing_settings([r["config"] for r in s["runs"]])
        if keys:
            values = {k: sorted({repr(flatten(r["config"]).get(k)) for r in s["runs"]}) for k in keys}
            lines.append(f"- {rid} averages runs that differ in: " + "; ".join(f"{k} ({', '.join(v)})" for k, v in values.items()))
    return lines


@dataclass
class PaperReport:
    """The paper's tables as text, and what the plots are drawn from (:func:`emorl.plots.plot_sweep`)."""

    text: str
    scores: dict
    paper: dict
    dataset: str


def render(dirs: list[str], runs: list[dict], out_dir: str | Path | None = None) -> PaperReport:
    """The paper's tables from ``runs`` (as :func:`emorl.runs.load_runs` reads them) in Markdown; with
    ``out_dir`` also each table as CSV, Markdown and LaTeX (``report.md`` the whole text)."""
    paper = paper_results()
    trained = [r for r in runs if "trained" in r]
    scores = row_scores(trained)
    datasets = sorted({(r["config"].get("dataset") or {}).get("name", "?") for r in trained})
    dataset = datasets[0] if len(datasets) == 1 else "?"
    sections, tables = [], {}
    for name in ("table1", "table3"):
        layout = paper[name]
        if any(r["id"] in scores for r in layout["rows"]):
            everywhere = {r["id"] for t in ("table1", "table2", "table3") for r in paper[t]["rows"]}
            tables[name] = in_corpus_table(name, layout, scores, dataset, everywhere)
            sections.append(f"### {layout['title']} — ours on {', '.join(datasets)}, "
                            f"the paper on {paper_corpus(layout, dataset).upper()}\n\n" + markdown(tables[name]))
    cross = sorted({c for s in scores.values() for c in s["cross"]})
    if cross:
        names = {r["id"]: r for t in ("table3", "table1") for r in paper[t]["rows"]}
        tables["table2"] = cross_corpus_table(paper["table2"], scores, names)
        sections.append(f"### {paper['table2']['title']} — ours: trained on {', '.join(datasets)}, "
                        f"zero-shot on {', '.join(cross)}\n\n" + markdown(tables["table2"]))
    text = "\n\n".join(sections) or "No run matches a row of the paper's tables."
    text += "\n\n**The paper's claims on these runs** (mean ± std over seeds):\n" + "\n".join(claims(scores, cross, paper) or ["- none measured"])
    mixed = mixed_settings(scores)
    if mixed:
        text += "\n\nRows that average runs with different settings or folds:\n" + "\n".join(mixed)
    unfinished = [line for d in dirs for line in unfinished_jobs(d)]
    text += "\n\nJobs that did not finish:\n" + ("\n".join(unfinished) if unfinished else "- none")
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        for name, table in tables.items():
            with open(out / f"{name}.csv", "w", newline="") as f:
                csv.writer(f).writerows([[c.replace("**", "") for c in row] for row in table])
            (out / f"{name}.md").write_text(markdown(table) + "\n")
            (out / f"{name}.tex").write_text(latex(table) + "\n")
        (out / "report.md").write_text(text + "\n")
    return PaperReport(text, scores, paper, dataset)
