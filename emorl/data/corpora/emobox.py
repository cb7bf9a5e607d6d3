"""EmoBox's own folds, read from its metadata: ``dataset=emobox``.

EmoBox (Ma et al., 2024) publishes, per corpus, ``<corpus>/fold_<k>/<corpus>_{train,test}_fold_<k>.jsonl``
(one clip per line: ``key``, ``wav`` relative to the folder the corpora were downloaded into, and
``emo``) and ``<corpus>/label_map.json`` (EmoBox's names of the emotions).  Reading these files
gives the exact clips of EmoBox's folds, so that numbers compare with its leaderboard.  EmoBox has
no validation split: a stable ``val_fraction`` share of the training list validates.

Emotion names are matched to the configured label set by name, else by their place on Plutchik's
wheel (EmoBox's ``Fear`` is RAVDESS's ``fearful``); a name with no counterpart is a bad item.
"""

from __future__ import annotations

import json
from pathlib import Path

from emorl.data.corpora.manifest import ManifestCorpus
from emorl.data.corpus import CorpusError, assign_split
from emorl.emotions import NEUTRAL, wheel_position


def match_label(name: str, labels: tuple[str, ...]) -> str | None:
    """The label of ``labels`` that EmoBox's emotion ``name`` stands for, or None.

    >>> ravdess = ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised")
    >>> match_label("Fear", ravdess), match_label("Surprise", ravdess), match_label("Calm", ravdess)
    ('fearful', 'surprised', 'calm')
    >>> match_label("Frustrated", ravdess) is None
    True
    """
    key = name.strip().lower()
    if key in labels:
        return key
    try:
        point = wheel_position(key)
    except KeyError:
        return None
    same = [label for label in labels if label != "calm" and _point(label) == point]
    if point == NEUTRAL:
        same = [label for label in same if label == NEUTRAL]
    return same[0] if len(same) == 1 else None


def _point(label: str) -> str | None:
    try:
        return wheel_position(label)
    except KeyError:
        return None


class EmoBoxFolds(ManifestCorpus):
    """One fold of one corpus as EmoBox's metadata lists it.

    Args:
        root: EmoBox's metadata folder of the corpus (``EmoBox/data/ravdess``: ``fold_1`` .. and ``label_map.json``).
        audio_root: the folder the ``wav`` paths are relative to (where EmoBox's downloads live).
        fold: the fold (1 ..).
        labels: a label-set name or a list of labels (default: the folder's name, e.g. ``ravdess``).
        val_fraction: share of the training list held out for validation (stable by clip key).
        on_bad_item: ``error`` or ``skip``.
    """

    def __init__(self, root: str | Path, audio_root: str | Path, fold: int = 1, labels: str | list[str] | None = None,
                 val_fraction: float = 0.1, seed: int = 0, on_bad_item: str = "error") -> None:
        root = Path(root)
        super().__init__(root / f"fold_{fold}" / f"{root.name}_train_fold_{fold}.jsonl", labels or root.name,
                         audio_root=audio_root, val_fraction=val_fraction, test_fraction=0.0, seed=seed,
                         on_bad_item=on_bad_item)
        self.name = f"emobox-{root.name}"
        self.meta_root, self.fold = root, fold

    def rows(self) -> list[tuple[str, dict]]:
        folds = sorted(p.name for p in self.meta_root.glob("fold_*"))
        label_map_file = self.meta_root / "label_map.json"
        label_map = json.loads(label_map_file.read_text()) if label_map_file.exists() else {}
        rows = []
        for split in ("train", "test"):
            path = self.meta_root / f"fold_{self.fold}" / f"{self.meta_root.name}_{split}_fold_{self.fold}.jsonl"
            if not path.is_file():
                raise CorpusError(f"{path}: not found; dataset.root must be EmoBox's metadata folder of one corpus "
                                  f"and dataset.fold one of its folds ({', '.join(folds) or 'none found'})")
            for n, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), 1):
                if not line.strip():
                    continue
                where = f"{path}:{n}"
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError as err:
                    raise CorpusError(f"{where}: not a JSON object ({err})") from err
                emotion = str(label_map.get(entry.get("emo"), entry.get("emo") or ""))
                label = match_label(emotion, self.labels) if emotion else None
                rows.append((where, {"path": entry.get("wav"), "label": label or emotion, "speaker": "",
                                     "split": split if split == "test" else
                                     assign_split(str(entry.get("key") or entry.get("wav")), self.val_fraction, 0.0, self.seed)}))
        return rows
