"""What a model answers for the clips of some classes, by the key word each clip's sentence carries.

    python docs/results/analysis/answers_by_key_word.py docs/results/runs/main_after_fix/base_answers.jsonl \
        docs/results/runs/main_after_fix/main_s*/answers.jsonl --corpus <the default corpus's folder> --labels joy surprise

``--corpus``: the folder of the synthetic corpus the answers were given on (``<cache>/synthetic/<key>``,
where ``python -m emorl.train`` generated it); its ``test.jsonl`` names each clip's key word and the
class that word belongs to.  Each answers file holds ``{"clip", "label", "prediction"}`` per line
(``predictions.jsonl`` of a run or an evaluation works too: ``path`` is read when ``clip`` is absent).
Beside each key word: the emotions the NRC Emotion Lexicon gives it (what the embedded base learned
the word conveys; ``-`` where the lexicon lacks the word), then the three most frequent answers.  First, per
file, the accuracy over the clips whose words match their emotion, are neutral or contradict it.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter, defaultdict
from pathlib import Path

from emorl.pretraining.lexicon import read_lexicon


def most_common(counts: Counter, k: int) -> list[tuple[str, int]]:
    """The ``k`` most frequent answers, ties in alphabetical order (the same output on every run)."""
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:k]


def clip_row(answer: dict, clips: dict[str, dict]) -> dict:
    """The corpus row of the clip an answer is about (its ``clip``, or its ``path`` in ``predictions.jsonl``)."""
    return clips[Path(answer.get("clip") or answer["path"]).name]


def by_words(answers: list[dict], clips: dict[str, dict]) -> str:
    """Accuracy over the clips whose words match their emotion, are neutral or contradict it (the corpus's
    ``meta.words``), e.g. ``matching 73.9% (357), neutral 62.3% (199)``: how far an answer rests on the words."""
    right: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for a in answers:
        kind = str(clip_row(a, clips).get("meta", {}).get("words", "?"))
        right[kind][0] += a["prediction"] == a["label"]
        right[kind][1] += 1
    return ", ".join(f"{kind} {100 * k / n:.1f}% ({n})" for kind, (k, n) in sorted(right.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("answers", nargs="+", help="answers files (answers.jsonl or predictions.jsonl)")
    parser.add_argument("--corpus", required=True, help="the synthetic corpus's folder (holds test.jsonl)")
    parser.add_argument("--labels", nargs="+", default=["joy", "surprise"], help="the true classes to break down")
    args = parser.parse_args()
    clips = {}
    for line in (Path(args.corpus) / "test.jsonl").read_text().splitlines():
        row = json.loads(line)
        clips[Path(row["path"]).name] = row
    lexicon = read_lexicon(None)
    for path in args.answers:
        answers = [json.loads(line) for line in Path(path).read_text().splitlines()]
        print(path)
        print("  accuracy by what the words say: " + by_words(answers, clips))
        for label in args.labels:
            by_word: dict[tuple[str, str], Counter] = defaultdict(Counter)
            for a in answers:
                row = clip_row(a, clips)
                if a["label"] != label:
                    continue
                meta = row.get("meta", {})
                word = (meta.get("keywords") or ["?"])[0]
                by_word[(str(meta.get("word_class")), word)][str(a["prediction"])] += 1
            answered = Counter()
            for counts in by_word.values():
                answered.update(counts)
            n = sum(answered.values())
            print(f"  {label} clips ({n}): " + ", ".join(f"{p} {c / n:.2f}" for p, c in most_common(answered, 4)))
            for (word_class, word), counts in sorted(by_word.items(), key=lambda kv: (kv[0][0] != label, kv[0])):
                if word_class != label:
                    continue  # the clips whose key word is of their own class: what the words should decide
                k = sum(counts.values())
                conveys = "+".join(lexicon.get(word) or ()) or "-"
                print(f"    {word:13s} lexicon {conveys:20s} n={k:3d}  "
                      + ", ".join(f"{p} {c / k:.2f}" for p, c in most_common(counts, 3)))


if __name__ == "__main__":
    main()
