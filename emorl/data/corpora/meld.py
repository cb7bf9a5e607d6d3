"""MELD (Poria et al., 2019): Friends utterances, 7 emotions, official train/dev/test.

Layout of the official ``MELD.Raw`` release (the clips' folders come out of its split archives)::

    train_sent_emo.csv  dev_sent_emo.csv  test_sent_emo.csv   (also accepted one level down:
    train_splits/dia{D}_utt{U}.mp4                              train/, dev/, test/)
    dev_splits_complete/dia{D}_utt{U}.mp4
    output_repeated_splits_test/dia{D}_utt{U}.mp4

A ``dia{D}_utt{U}.wav`` beside a clip (pre-extracted audio) is read instead of the video.
The CSVs' ``Dialogue_ID``/``Utterance_ID`` name the clip, ``Emotion`` is the label, ``Speaker``
and ``Utterance`` the speaker and transcript.  Two clips of the official release are known to be
unusable (a corrupt video in train, a missing one in dev); they are skipped and counted under any
policy so that a run on the release as distributed does not crash.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from emorl.data.corpus import Corpus, CorpusError, Item
from emorl.emotions import label_set

#: Split -> (annotation file, clip folders searched in order).
LAYOUT: dict[str, tuple[str, tuple[str, ...]]] = {
    "train": ("train_sent_emo.csv", ("train_splits", "train/train_splits")),
    "val": ("dev_sent_emo.csv", ("dev_splits_complete", "dev/dev_splits_complete", "dev_splits")),
    "test": ("test_sent_emo.csv", ("output_repeated_splits_test", "test/output_repeated_splits_test", "test_splits")),
}
CSV_DIRS = ("", "train", "dev", "test")
REQUIRED_COLUMNS = ("Dialogue_ID", "Utterance_ID", "Emotion", "Utterance", "Speaker")

#: (split, dialogue, utterance) -> defect, for clips of the official release known to be unusable.
KNOWN_BROKEN: dict[tuple[str, int, int], str] = {
    ("train", 125, 3): "corrupt video in the official MELD release (train_splits/dia125_utt3.mp4)",
    ("val", 110, 7): "clip missing from the official MELD release (dev_splits_complete/dia110_utt7.mp4)",
}


def read_csv_text(path: Path) -> str:
    """The CSV's text: UTF-8, or Windows-1252 (some MELD copies) when UTF-8 fails."""
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return raw.decode("cp1252", errors="replace")


class MELD(Corpus):
    """MELD's official splits: train, dev (as ``val``) and test.

    Args:
        root: the folder of the extracted release (``MELD.Raw``).
        on_bad_item: ``error`` or ``skip`` for missing/unreadable clips and unknown labels.
    """

    name = "meld"
    labels = label_set("meld")

    def _find(self, names: tuple[str, ...], what: str, is_dir: bool) -> Path:
        for name in names:
            path = self.root / name
            if (path.is_dir() if is_dir else path.is_file()):
                return path
        raise CorpusError(
            f"dataset.root={self.root}: no {what} found (looked for {', '.join(names)}); "
            "point dataset.root at the extracted MELD.Raw folder and extract its split archives there"
        )

    def load(self) -> list[Item]:
        self.check_root("the extracted MELD.Raw folder (with train_sent_emo.csv and the clip folders)")
        items = []
        for split, (csv_name, clip_dirs) in LAYOUT.items():
            csv_path = self._find(tuple(str(Path(d) / csv_name) for d in CSV_DIRS), csv_name, is_dir=False)
            clips = self._find(clip_dirs, f"{split} clip folder", is_dir=True)
            items.extend(self._read_split(split, csv_path, clips))
        return items

    def _read_split(self, split: str, csv_path: Path, clips: Path) -> list[Item]:
        reader = csv.DictReader(io.StringIO(read_csv_text(csv_path)))
        missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise CorpusError(f"{csv_path}: missing column(s) {missing}; is this MELD's official {csv_path.name}?")
        items = []
        for row_number, row in enumerate(reader, 2):  # line 1 is the header
            where = f"{csv_path}:{row_number}"
            try:
                dialogue, utterance = int(row["Dialogue_ID"]), int(row["Utterance_ID"])
            except ValueError:
                self.report.bad(where, f"Dialogue_ID/Utterance_ID are not integers: {row['Dialogue_ID']!r}, {row['Utterance_ID']!r}", split)
                continue
            label = row["Emotion"].strip().lower()
            if label not in self.labels:
                self.report.bad(where, f"emotion {row['Emotion']!r} is not one of MELD's labels {list(self.labels)}", split)
                continue
            stem = f"dia{dialogue}_utt{utterance}"
            known = KNOWN_BROKEN.get((split, dialogue, utterance))
            if known:
                self.report.bad(f"{clips / stem}.mp4", known, split, known=True)
                continue
            path = clips / f"{stem}.wav"
            if not path.exists():
                path = clips / f"{stem}.mp4"
            if not path.exists():
                self.report.bad(f"{where} ({path})", "clip not found", split)
                continue
            items.append(
                Item(
                    path=str(path),
                    label=label,
                    speaker=row["Speaker"].strip(),
                    split=split,
                    transcript=row["Utterance"].strip(),
                    meta={"dialogue": dialogue, "utterance": utterance, "sentiment": row.get("Sentiment", "")},
                )
            )
        return items
