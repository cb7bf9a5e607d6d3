"""RAVDESS (Livingstone and Russo, 2018): 24 actors, labels in the file name.

``Actor_12/03-01-05-01-02-01-12.wav`` = modality (01 audio-video, 02 video-only, 03 audio-only),
vocal channel (01 speech, 02 song), emotion (01 neutral, 02 calm, 03 happy, 04 sad, 05 angry,
06 fearful, 07 disgust, 08 surprised), intensity (01 normal, 02 strong), statement (01 "Kids are
talking by the door", 02 "Dogs are sitting by the door"), repetition (01, 02), actor (01-24; odd
male, even female).  Every ``.wav``/``.mp4`` under the root is read; speech and audio-only by
default; the splits are by actor.
"""

from __future__ import annotations

import re
from pathlib import Path

from emorl.data.corpus import Corpus, CorpusError, Item, assign_split
from emorl.emotions import label_set

EMOTIONS = {1: "neutral", 2: "calm", 3: "happy", 4: "sad", 5: "angry", 6: "fearful", 7: "disgust", 8: "surprised"}
MODALITIES = {1: "audio-video", 2: "video-only", 3: "audio-only"}
CHANNELS = {1: "speech", 2: "song"}
STATEMENTS = {1: "Kids are talking by the door", 2: "Dogs are sitting by the door"}
FILE_NAME = re.compile(r"^(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)$")
AUDIO_SUFFIXES = {".wav", ".mp4"}


def parse_name(stem: str) -> dict[str, int] | str:
    """The fields of a RAVDESS file name, or the reason it is not one.

    >>> parse_name("03-01-05-01-02-01-12")["emotion"]
    5
    >>> parse_name("03-01-09-01-02-01-12")
    'emotion code 09 is not in 01-08'
    """
    match = FILE_NAME.match(stem)
    if not match:
        return "the name is not seven two-digit fields (modality-channel-emotion-intensity-statement-repetition-actor)"
    keys = ("modality", "channel", "emotion", "intensity", "statement", "repetition", "actor")
    fields = dict(zip(keys, (int(g) for g in match.groups()), strict=True))
    valid = {
        "modality": MODALITIES, "channel": CHANNELS, "emotion": EMOTIONS, "intensity": {1: 0, 2: 0},
        "statement": STATEMENTS, "repetition": {1: 0, 2: 0}, "actor": range(1, 25),
    }
    ranges = {"modality": "01-03", "channel": "01-02", "emotion": "01-08", "intensity": "01-02",
              "statement": "01-02", "repetition": "01-02", "actor": "01-24"}
    for key in keys:
        if fields[key] not in valid[key]:
            return f"{key} code {fields[key]:02d} is not in {ranges[key]}"
    return fields


class RAVDESS(Corpus):
    """RAVDESS, 8 labels, split by actor.

    Args:
        root: the folder holding the ``Actor_XX`` folders (searched recursively).
        channels: ``speech`` and/or ``song``.
        modalities: which recordings to read: ``audio-only`` (the .wav release) and/or ``audio-video``.
        val_actors / test_actors: actor numbers of the validation and test splits.
        fold: 1-6, EmoBox's fold size (4 actors each, all 8 classes): actors 4k-3 .. 4k are the test
            split and a stable ``val_fraction`` share of the other actors' clips the validation split;
            replaces val_actors / test_actors.  (EmoBox groups the actors differently: to use its exact
            folds, read its fold files with ``dataset=emobox``.)
        val_fraction: with ``fold``, the share of the training actors' clips held out for validation.
        on_bad_item: ``error`` or ``skip``.
    """

    name = "ravdess"
    labels = label_set("ravdess")

    def __init__(
        self,
        root: str | Path,
        channels: list[str] = ("speech",),
        modalities: list[str] = ("audio-only",),
        val_actors: list[int] = (21, 22),
        test_actors: list[int] = (23, 24),
        fold: int | None = None,
        val_fraction: float = 0.1,
        on_bad_item: str = "error",
    ) -> None:
        super().__init__(root, on_bad_item)
        if fold is not None:
            if fold not in range(1, 7):
                raise ValueError(f"dataset.fold={fold}: RAVDESS has folds 1-6 (4 actors each)")
            val_actors, test_actors = (), tuple(range(4 * fold - 3, 4 * fold + 1))
        self.fold, self.val_fraction = fold, val_fraction
        for value, known, setting in ((channels, CHANNELS, "channels"), (modalities, MODALITIES, "modalities")):
            unknown = set(value) - set(known.values())
            if unknown:
                raise ValueError(f"dataset.{setting}: unknown {sorted(unknown)}; choose from {list(known.values())}")
        overlap = set(val_actors) & set(test_actors)
        if overlap:
            raise ValueError(f"dataset.val_actors and dataset.test_actors share actors {sorted(overlap)}")
        self.channels = set(channels)
        self.modalities = set(modalities)
        self.val_actors = set(val_actors)
        self.test_actors = set(test_actors)

    def split_of(self, actor: int) -> str:
        return "test" if actor in self.test_actors else "val" if actor in self.val_actors else "train"

    def load(self) -> list[Item]:
        self.check_root("the folder holding RAVDESS's Actor_01 .. Actor_24 folders")
        items = []
        files = sorted(p for p in self.root.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())
        for path in files:
            fields = parse_name(path.stem)
            if isinstance(fields, str):
                self.report.bad(str(path), f"not a RAVDESS file name: {fields}")
                continue
            if MODALITIES[fields["modality"]] not in self.modalities or CHANNELS[fields["channel"]] not in self.channels:
                continue  # another release's recordings, by configuration
            split = self.split_of(fields["actor"])
            if split == "train" and self.fold is not None:
                split = assign_split(path.name, self.val_fraction, 0.0, seed=0)
            items.append(
                Item(
                    path=str(path),
                    label=EMOTIONS[fields["emotion"]],
                    speaker=f"Actor_{fields['actor']:02d}",
                    split=split,
                    transcript=STATEMENTS[fields["statement"]],
                    meta={"intensity": "strong" if fields["intensity"] == 2 else "normal",
                          "channel": CHANNELS[fields["channel"]], "repetition": fields["repetition"]},
                )
            )
        if not items:
            raise CorpusError(
                f"dataset.root={self.root}: no RAVDESS {sorted(self.channels)} {sorted(self.modalities)} recordings found; "
                "point it at the folder holding Actor_01 .. Actor_24, or check dataset.channels and dataset.modalities"
            )
        return items
