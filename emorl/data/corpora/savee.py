"""SAVEE (Jackson and Haq, 2014): four male speakers, 7 labels from the file-name prefix.

Layouts: ``AudioData/DC/a01.wav`` (the release; ``AudioData`` may be the root itself) or a flat
folder of ``DC_a01.wav``.  Prefixes: ``a`` anger, ``d`` disgust, ``f`` fear, ``h`` happiness,
``n`` neutral, ``sa`` sadness, ``su`` surprise.  Splits by speaker; ``fold=k`` (1-4) is
EmoBox's leave-one-speaker-out fold k: the k-th speaker of DC, JE, JK, KL is the test split and a
stable ``val_fraction`` share of the other speakers' clips the validation split.
"""

from __future__ import annotations

import re
from pathlib import Path

from emorl.data.corpus import Corpus, CorpusError, Item, assign_split
from emorl.emotions import label_set

SPEAKERS = ("DC", "JE", "JK", "KL")
PREFIXES = {"a": "anger", "d": "disgust", "f": "fear", "h": "happiness", "n": "neutral", "sa": "sadness", "su": "surprise"}
# "sa"/"su" before "a": the longest prefix wins
IN_SPEAKER_DIR = re.compile(r"^(?P<prefix>sa|su|a|d|f|h|n)(?P<number>\d\d)$")
FLAT = re.compile(r"^(?P<speaker>DC|JE|JK|KL)_(?P<prefix>sa|su|a|d|f|h|n)(?P<number>\d\d)$")


class SAVEE(Corpus):
    """SAVEE, 7 labels, split by speaker.

    Args:
        root: the ``AudioData`` folder, a folder holding it, or a flat folder of ``DC_a01.wav`` files.
        val_speakers / test_speakers: speakers of the validation and test splits (without ``fold``).
        fold: 1-4, leave-one-speaker-out (EmoBox): replaces val_speakers / test_speakers.
        val_fraction: with ``fold``, the share of the training speakers' clips held out for validation.
        on_bad_item: ``error`` or ``skip``.
    """

    name = "savee"
    labels = label_set("savee")

    def __init__(
        self,
        root: str | Path,
        val_speakers: list[str] = ("JK",),
        test_speakers: list[str] = ("KL",),
        fold: int | None = None,
        val_fraction: float = 0.1,
        on_bad_item: str = "error",
    ) -> None:
        if fold is not None:
            if fold not in range(1, len(SPEAKERS) + 1):
                raise ValueError(f"dataset.fold={fold}: SAVEE has folds 1-{len(SPEAKERS)} (one per speaker {list(SPEAKERS)})")
            val_speakers, test_speakers = (), (SPEAKERS[fold - 1],)
        self.fold, self.val_fraction = fold, val_fraction
        super().__init__(root, on_bad_item)
        unknown = (set(val_speakers) | set(test_speakers)) - set(SPEAKERS)
        if unknown:
            raise ValueError(f"dataset.val_speakers/test_speakers: unknown speakers {sorted(unknown)}; SAVEE has {list(SPEAKERS)}")
        if set(val_speakers) & set(test_speakers):
            raise ValueError("dataset.val_speakers and dataset.test_speakers must not share a speaker")
        self.val_speakers = set(val_speakers)
        self.test_speakers = set(test_speakers)

    def parse(self, path: Path) -> tuple[str, str] | str:
        """``(speaker, label)`` of a file, or the reason it is not a SAVEE file."""
        flat = FLAT.match(path.stem)
        if flat:
            return flat["speaker"], PREFIXES[flat["prefix"]]
        if path.parent.name in SPEAKERS:
            nested = IN_SPEAKER_DIR.match(path.stem)
            if nested:
                return path.parent.name, PREFIXES[nested["prefix"]]
        return (
            f"not a SAVEE file name (expected <speaker>/<prefix><NN>.wav or <speaker>_<prefix><NN>.wav with "
            f"speaker in {list(SPEAKERS)} and prefix in {list(PREFIXES)})"
        )

    def load(self) -> list[Item]:
        self.check_root("SAVEE's AudioData folder (DC, JE, JK, KL inside)")
        items = []
        for path in sorted(p for p in self.root.rglob("*.wav") if p.is_file()):
            parsed = self.parse(path)
            if isinstance(parsed, str):
                self.report.bad(str(path), parsed)
                continue
            speaker, label = parsed
            split = "test" if speaker in self.test_speakers else "val" if speaker in self.val_speakers else "train"
            if split == "train" and self.fold is not None:
                split = assign_split(path.name, self.val_fraction, 0.0, seed=0)
            items.append(Item(path=str(path), label=label, speaker=speaker, split=split))
        if not items:
            raise CorpusError(f"dataset.root={self.root}: no SAVEE .wav files found; point it at the AudioData folder")
        return items
