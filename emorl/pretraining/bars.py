"""Is a built base a good place for RL to start?  ``python -m emorl.pretraining.bars``.

Checks a base against the bars the embedded base is held to (``docs/embedded_default.md``), from the
folders that measure them::

    python -m emorl.pretraining.bars --evaluation <base>/zero_shot/ir <base>/zero_shot/eur <base>/zero_shot/esr \\
        [--sft <folders of SFT + IR runs>] [--grpo <folders of GRPO runs>]

* zero-shot (greedy ``emorl.evaluate`` folders of the base, one per reasoning strategy): every format at
  least 98% parsable and every class's recall at least 0.10; where the answers hold them (ESR's sections),
  key-word accuracy at least 80%, transcript WER at most 25%, prosody claims true at least 70% of the time;
* ``--sft`` (folders searched for training runs): every format's zero-shot UA at least 10 points below the
  SFT runs' mean test UA, so that RL has room to act;
* ``--grpo``: every run at least 8 points above the base in its own reasoning format (the run's own
  ``base`` scores where it measured them, else the evaluation of that format) and every class's recall
  after training at least 0.10.

Every score is a share of test clips; the table prints them in %.
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from emorl.pretraining.card import zero_shot_scores
from emorl.runs import load_runs, markdown

PARSABLE = 0.98        # share of answers an option is read from
LOWEST_RECALL = 0.10   # every class answered
ROOM = 0.10            # SFT + IR's mean UA over the base's zero-shot UA
GAIN = 0.08            # a GRPO run's UA over the base's, in every seed
#: Bars on what ESR's sections say about the clip: (score key, name, limit, met when at least the limit).
HEARING = (
    ("keyword_accuracy", "key words heard", 0.80, True),
    ("transcript_wer", "transcript WER", 0.25, False),
    ("faithfulness", "prosody claims true", 0.70, True),
)
#: Scores are shares of clips; a difference of two of them that is the limit up to rounding meets it.
TOLERANCE = 1e-9


@dataclass(frozen=True)
class Bar:
    """``measured`` (a share or a difference of shares; None where nothing measured it) against ``limit``."""

    name: str
    measured: float | None
    limit: float
    at_least: bool = True

    @property
    def met(self) -> bool | None:
        """True or False; None when not measured.

        >>> Bar("room", 0.71 - 0.61, 0.10).met, Bar("wer", 0.26, 0.25, at_least=False).met, Bar("x", None, 0.1).met
        (True, False, None)
        """
        if self.measured is None:
            return None
        if self.at_least:
            return self.measured >= self.limit - TOLERANCE
        return self.measured <= self.limit + TOLERANCE


def zero_shot_bars(scores: Mapping[str, Mapping]) -> list[Bar]:
    """Bars of the base's zero-shot answers.

    Args:
        scores: ``{reasoning: test scores}``: ``unparsed_rate``, ``recall`` ``{label: share}`` and, where the
            answers hold them, the :data:`HEARING` keys (None or absent: not measured in that format).
    """
    bars = []
    for name, s in scores.items():
        bars.append(Bar(f"{name}: parsable", 1.0 - s["unparsed_rate"], PARSABLE))
        bars.append(Bar(f"{name}: lowest recall", min(s["recall"].values()), LOWEST_RECALL))
        bars += [Bar(f"{name}: {label}", s[key], limit, at_least)
                 for key, label, limit, at_least in HEARING if s.get(key) is not None]
    return bars


def room_bars(zero_shot_ua: Mapping[str, float], sft_ua: Sequence[float], sft: str = "SFT + IR") -> list[Bar]:
    """Per reasoning format: the SFT runs' mean UA (``sft_ua``: one per seed) minus the base's zero-shot UA."""
    if not sft_ua:
        return []
    mean = statistics.mean(sft_ua)
    runs = f"{len(sft_ua)} run{'s' if len(sft_ua) > 1 else ''}"
    return [Bar(f"{name}: {sft} mean UA over zero-shot ({runs})", mean - ua, ROOM)
            for name, ua in zero_shot_ua.items()]


def gain_bars(runs: Sequence[Mapping]) -> list[Bar]:
    """Per GRPO run: its UA over its base's and its lowest recall.

    Args:
        runs: ``{"name", "reasoning", "base_ua", "ua", "recall": {label: share}}`` per run.
    """
    bars = []
    for run in runs:
        bars.append(Bar(f"GRPO {run['name']}: UA over the base ({run['reasoning']})", run["ua"] - run["base_ua"], GAIN))
        bars.append(Bar(f"GRPO {run['name']}: lowest recall", min(run["recall"].values()), LOWEST_RECALL))
    return bars


def _training_runs(folders: Sequence[Path], option: str) -> list[dict]:
    runs = [r for r in load_runs([str(f) for f in folders]) if "trained" in r]
    if folders and not runs:
        raise FileNotFoundError(f"{option} {' '.join(map(str, folders))}: no finished training run (metrics.json with "
                                "trained scores) under these folders")
    return runs


def collect(evaluations: Sequence[Path], sft: Sequence[Path] = (), grpo: Sequence[Path] = ()) -> list[Bar]:
    """Every bar the given folders measure; a folder that cannot be compared is refused by name."""
    metas = {}
    for folder in evaluations:
        (name, scores), = zero_shot_scores([folder]).items()
        if name in metas:
            raise ValueError(f"--evaluation {folder}: a second evaluation in {name} (the first: {metas[name][0]}); "
                             "pass one folder per reasoning strategy")
        metas[name] = (folder, scores)
    places = {(s["dataset"], s["split"]) for _, s in metas.values()}
    if len(places) > 1:
        raise ValueError(f"--evaluation: the folders score different data {sorted(places)}; evaluate the base on one "
                         "dataset and split")
    scores = {name: s for name, (_, s) in metas.items()}
    runs = {"--sft": _training_runs(sft, "--sft"), "--grpo": _training_runs(grpo, "--grpo")}
    for option, rs in runs.items():
        for run in rs:
            place = (run["group"].dataset, (run["config"].get("data") or {}).get("test_split", "test"))
            if places and place not in places:
                raise ValueError(f"{option} {run['path']}: tested on {place}, the base evaluated on {sorted(places)}; "
                                 "evaluate the base on the runs' dataset and test split")
    reasonings = sorted({r["group"].reasoning for r in runs["--sft"]})
    if len(reasonings) > 1:
        raise ValueError(f"--sft: runs in several reasoning formats {reasonings}; pass the runs of one (SFT + IR)")
    gains = []
    for run in runs["--grpo"]:
        reasoning = run["group"].reasoning
        if "base" in run:
            base_ua = run["base"]["ua"]
        elif reasoning in scores:
            base_ua = scores[reasoning]["ua"]
        else:
            raise ValueError(f"--grpo {run['path']}: trained in {reasoning}, but neither the run scored its base nor "
                             f"is an --evaluation of the base in {reasoning} given; pass one")
        gains.append({"name": f"{Path(run['path']).name} (seed {run.get('seed', '?')})", "reasoning": reasoning,
                      "base_ua": base_ua, "ua": run["trained"]["ua"], "recall": run["trained"]["recall"]})
    return (zero_shot_bars(scores)
            + room_bars({name: s["ua"] for name, s in scores.items()}, [r["trained"]["ua"] for r in runs["--sft"]],
                        f"SFT + {reasonings[0]}" if reasonings else "SFT")
            + gain_bars(gains))


def render(bars: Sequence[Bar]) -> str:
    """A Markdown table of the bars (scores in %) and a line naming the missed ones."""
    verdict = {True: "met", False: "**missed**", None: "not measured"}
    rows = [["bar", "measured", "limit", ""]]
    for bar in bars:
        measured = "–" if bar.measured is None else f"{100 * bar.measured:.1f}"
        rows.append([bar.name, measured, f"{'≥' if bar.at_least else '≤'} {100 * bar.limit:.1f}", verdict[bar.met]])
    missed = [bar.name for bar in bars if bar.met is False]
    met = sum(bar.met is True for bar in bars)
    return markdown(rows) + f"\n\n{met} of {len(bars)} bars met" + (f"; missed: {', '.join(missed)}" if missed else "")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Check a built base against the embedded base's bars.")
    parser.add_argument("--evaluation", type=Path, nargs="+", action="extend", default=[], required=True,
                        help="emorl.evaluate folders of the base, zero-shot, one per reasoning strategy")
    parser.add_argument("--sft", type=Path, nargs="+", action="extend", default=[],
                        help="folders holding SFT + IR runs from the base (searched for metrics.json)")
    parser.add_argument("--grpo", type=Path, nargs="+", action="extend", default=[],
                        help="folders holding GRPO runs from the base (searched for metrics.json)")
    args = parser.parse_args(argv)
    print(render(collect(args.evaluation, args.sft, args.grpo)))


if __name__ == "__main__":
    main()
