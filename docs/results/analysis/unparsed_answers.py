"""What the answers a parser could not read hold instead of an option.

    python docs/results/analysis/unparsed_answers.py outputs/pretrain/base14_s0/zero_shot/esr/predictions.jsonl

The file is an evaluation's ``predictions.jsonl`` (``question``, ``prediction``, ``text`` per line; an unread answer
has ``prediction`` null).  Prints, of the unread answers, how many hold in their answer block: nothing (no block),
a prosody level (a word of :data:`emorl.acoustics.LEVEL_NAMES`: an attribute question's answer), another name of an
option's emotion (``happiness`` among options naming ``joy``: a synonym question's answer), an emotion none of the
options names, or another word (a topic, a key word); then the most common openings of their ``<synthesis>``.
"""

from __future__ import annotations

import argparse
import json
import re
from collections import Counter
from pathlib import Path

from emorl.acoustics import LEVEL_NAMES
from emorl.emotions import wheel_position
from emorl.prompts import get_strategy

KINDS = ("no answer block", "a prosody level", "another name of an option's emotion",
         "an emotion no option names", "another word")
LEVELS = {level for names in LEVEL_NAMES.values() for level in names}


def _point(word: str) -> str | None:
    try:
        return wheel_position(word)
    except KeyError:
        return None


def options_of(question: str) -> list[str]:
    """The options a question lists (``Options: a, b, c.``).

    >>> options_of("Which emotion? Options: joy, anger, neutral. Give only the chosen option.")
    ['joy', 'anger', 'neutral']
    """
    found = re.search(r"Options: (.*?)\.(?:\s|$)", question)
    return [o.strip() for o in found.group(1).split(",")] if found else []


def kind(text: str, options: list[str], answer_tag: str = "answer") -> str:
    """Which of :data:`KINDS` the last ``answer_tag`` block of ``text`` holds (an answer not among ``options``)."""
    blocks = re.findall(rf"<{answer_tag}>(.*?)</{answer_tag}>", text, flags=re.S)
    if not blocks:
        return KINDS[0]
    said = blocks[-1].strip().lower()
    if said in LEVELS:
        return KINDS[1]
    point = _point(said)
    if point is None:
        return KINDS[4]
    return KINDS[2] if point in {_point(o) for o in options} else KINDS[3]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("predictions", type=Path)
    parser.add_argument("--strategy", default="esr", help="the answer format asked (its answer tag and sections)")
    parser.add_argument("--top", type=int, default=8, help="how many synthesis openings to print")
    args = parser.parse_args()
    strategy = get_strategy(args.strategy)
    rows = [json.loads(line) for line in args.predictions.read_text().splitlines() if line.strip()]
    unread = [r for r in rows if r.get("prediction") is None]
    kinds = Counter(kind(r["text"], options_of(r.get("question", "")), strategy.answer_tag) for r in unread)
    print(f"{len(unread)} of {len(rows)} answers name no option")
    for k in KINDS:
        print(f"  {k:38s} {kinds[k]:4d}")
    openings = Counter(" ".join((strategy.reasoning_parts(r["text"]).get("synthesis") or "<none>").split()[:4])
                       for r in unread)
    print("their synthesis begins:")
    for opening, n in openings.most_common(args.top):
        print(f"  {n:4d}  {opening}")


if __name__ == "__main__":
    main()
