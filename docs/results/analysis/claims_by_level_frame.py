"""How often an ESR answer's prosody claims name the clip's level in two frames of reference.

    python docs/results/analysis/claims_by_level_frame.py outputs/pretrain/base12/zero_shot/esr/predictions.jsonl \
        --cache <cache> --split test

Per attribute, the share of ``<prosody>`` claims ("speed fast") that equal the clip's level among *its speaker's*
clips of the split (the level faithfulness scores) and among the *training split's* clips (what a listener who
never heard the voice can know; the frame ``pretrain.corpus_levels`` trains on), and how often those two levels
agree (the ceiling of a listener who measures exactly in the second frame).  ``--cache``: emorl's cache folder
(the default synthetic corpus and its measurement file; clips it lacks are measured first).
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from emorl.acoustics import LEVEL_NAMES, ProsodyNorms, measure_items, prosody_cache
from emorl.data.corpus import Item
from emorl.data.synthetic import SyntheticCorpus


def count_claims(rows: Iterable[Mapping], items: Mapping[str, Item], train: Sequence[Item],
                 measured: Mapping[str, Mapping]) -> dict[str, list[int]]:
    """Per attribute, [claims, claims = speaker level, claims = training-split level, clips whose two levels agree].

    Args:
        rows: answers (``path``, ``text``); answers with no ``<prosody>`` section or about a clip not in ``items``
            are not counted.
        items: path -> the split's items (their speakers' levels are fitted on them).
        train: the training split's items (the corpus frame is fitted on them).
        measured: path -> measurement (:func:`emorl.acoustics.measure`) of every item of both.
    """
    own = ProsodyNorms.fit([measured[p] for p in items], [i.speaker for i in items.values()])
    heard = ProsodyNorms.fit([measured[i.path] for i in train])
    counts = {a: [0, 0, 0, 0] for a in LEVEL_NAMES}
    for row in rows:
        section = re.search(r"<prosody>(.*?)</prosody>", row["text"])
        if section is None or row["path"] not in items:
            continue
        by_speaker = own.levels(measured[row["path"]], items[row["path"]].speaker)
        by_corpus = heard.levels(measured[row["path"]], among_corpus=tuple(LEVEL_NAMES))
        for attribute, c in counts.items():
            claim = re.search(rf"{attribute} (\w+)", section.group(1))
            if claim and attribute in by_speaker and attribute in by_corpus:
                c[0] += 1
                c[1] += claim.group(1) == by_speaker[attribute]
                c[2] += claim.group(1) == by_corpus[attribute]
                c[3] += by_corpus[attribute] == by_speaker[attribute]
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("predictions")
    parser.add_argument("--cache", default=".cache")
    parser.add_argument("--split", default="test")
    args = parser.parse_args()
    corpus = SyntheticCorpus(Path(args.cache).resolve() / "synthetic")  # measurements are keyed by absolute paths
    items = {i.path: i for i in corpus.items(args.split)}
    train = corpus.items("train")
    # the corpus's measurement file, as evaluations and training runs keep it; what it lacks is measured now
    measured = measure_items([*items.values(), *train], prosody_cache(Path(args.cache).resolve(), corpus), workers=2)
    rows = (json.loads(line) for line in Path(args.predictions).read_text().splitlines())
    for attribute, (n, speaker, train_level, agree) in count_claims(rows, items, train, measured).items():
        if n:
            print(f"{attribute}: {n} claims; = speaker level {100 * speaker / n:.1f}%, = training-split level "
                  f"{100 * train_level / n:.1f}% (the two levels agree {100 * agree / n:.1f}%)")


if __name__ == "__main__":
    main()
