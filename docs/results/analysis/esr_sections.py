"""Whether an ESR answer's sections build on each other: the key word heard, and the word its synthesis names.

    python docs/results/analysis/esr_sections.py outputs/pretrain/base4/zero_shot/esr/predictions.jsonl \
        --corpus <cache>/synthetic/<default key> --pretraining-corpus <cache>/synthetic/<pretraining key>

``--corpus``: the folder of the synthetic corpus the answers were given on (its ``*.jsonl``, one per split,
name each clip's sentence and key word: a test or a validation evaluation); ``--pretraining-corpus``: the
embedded base's pretraining corpus (every ``*.jsonl`` in it: the key words its emotion questions were
trained on).  The answers file is an ESR
evaluation's ``predictions.jsonl`` (``path``, ``label``, ``prediction``, ``text`` per line).

Prints how many ``<keywords>`` sections name the clip's key word, and for those that do not whether the
``<transcript>`` held it (the word was heard, another picked) or not (misheard), and whether a misheard
transcript says words that only the pretraining corpus's sentences say (the base wrote a sentence it was
pretrained on instead of the one it heard) or only this corpus's words, and the key words named right per
speaker (an unheard voice the base cannot hear shows here); then which word the
``<synthesis>`` begins with ("<word> conveys <emotion>"): the key word the answer itself heard, a key word of
the pretraining corpus, another key word of the answered corpus, or another word, with the share of right
answers after each.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path

from emorl.prompts import get_strategy

SOURCES = ("the heard key word", "a pretraining-corpus key word", "another key word of this corpus", "another word")
ESR = get_strategy("esr")


def classify(answer: Mapping, key_word: str, corpus_words: set[str], pretraining_words: set[str],
             pretraining_only: set[str]) -> tuple[str, str | None]:
    """``(key word outcome, synthesis source)`` of one ESR answer about a clip whose key word is ``key_word``.

    ``corpus_words`` / ``pretraining_words``: the key words of the answered / the pretraining corpus;
    ``pretraining_only``: the words the pretraining corpus's sentences say and the answered corpus's never do.
    Key word outcome: ``right``, ``heard, another picked`` (the transcript holds it), ``misheard,
    pretraining-corpus words`` (the transcript says a word of ``pretraining_only``), ``misheard, this
    corpus's words`` or ``no section``; synthesis source: one of :data:`SOURCES` (None without a synthesis).
    """
    parts = ESR.reasoning_parts(answer["text"])
    keywords, transcript, synthesis = (parts.get(t) for t in ("keywords", "transcript", "synthesis"))
    if keywords is None:
        outcome = "no section"
    elif keywords == key_word:
        outcome = "right"
    else:
        said = (transcript or "").lower().split()
        if key_word in said:
            outcome = "heard, another picked"
        else:
            outcome = "misheard, " + ("pretraining-corpus words" if pretraining_only.intersection(said) else "this corpus's words")
    if not synthesis:
        return outcome, None
    first = synthesis.split()[0]
    if keywords is not None and first == keywords:
        return outcome, SOURCES[0]
    if first in pretraining_words:
        return outcome, SOURCES[1]
    return outcome, SOURCES[2] if first in corpus_words else SOURCES[3]


def key_words(rows: Iterable[Mapping]) -> set[str]:
    return {w for r in rows for w in r.get("meta", {}).get("keywords", [])}


def sentence_words(rows: Iterable[Mapping]) -> set[str]:
    return {w for r in rows for w in (r.get("transcript") or "").lower().split()}


def read_rows(folder: Path) -> list[dict]:
    return [json.loads(line) for f in sorted(folder.glob("*.jsonl")) for line in f.read_text().splitlines() if line]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("predictions", help="an ESR evaluation's predictions.jsonl")
    parser.add_argument("--corpus", required=True, help="the answered synthetic corpus's folder (holds its splits' *.jsonl)")
    parser.add_argument("--pretraining-corpus", required=True, help="the pretraining corpus's folder")
    args = parser.parse_args()
    rows, pretraining_rows = read_rows(Path(args.corpus)), read_rows(Path(args.pretraining_corpus))
    by_clip = {Path(r["path"]).name: r for r in rows}
    corpus_words, pretraining_words = key_words(rows), key_words(pretraining_rows)
    pretraining_only = sentence_words(pretraining_rows) - sentence_words(rows)
    outcomes, sources, right, clips, heard = Counter(), Counter(), Counter(), Counter(), Counter()
    for line in Path(args.predictions).read_text().splitlines():
        answer = json.loads(line)
        row = by_clip[Path(answer["path"]).name]
        outcome, source = classify(answer, row["meta"]["keywords"][0], corpus_words, pretraining_words, pretraining_only)
        outcomes[outcome] += 1
        clips[row.get("speaker")] += 1
        heard[row.get("speaker")] += outcome == "right"
        if source is not None:
            sources[source] += 1
            right[source] += answer["prediction"] == answer["label"]
    n = sum(outcomes.values())
    print(f"{args.predictions}: {n} answers")
    print("  key words: " + ", ".join(f"{k} {v} ({v / n:.1%})" for k, v in outcomes.most_common()))
    print("  key word right by speaker: " + ", ".join(f"{s} {heard[s]}/{clips[s]}" for s in sorted(clips, key=str)))
    print("  the synthesis names:")
    for source in SOURCES:
        if sources[source]:
            print(f"    {source:34s} {sources[source]:4d}  right answers {right[source] / sources[source]:.2f}")


if __name__ == "__main__":
    main()
