"""Any other corpus, from a manifest: JSONL or CSV rows of ``path,label[,split,speaker,transcript]``.

Relative paths are read from the manifest's folder (or ``audio_root``).  The label set is
declared in the config (a name such as ``meld`` or a list of labels).  Rows without a split are
assigned one from ``val_fraction``/``test_fraction``, by speaker when the row names one (so
that no speaker crosses splits), else by path; the draw is stable across runs.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from emorl.data.corpus import SPLITS, Corpus, CorpusError, Item, assign_split
from emorl.emotions import label_set

SPLIT_ALIASES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "dev": "val", "test": "test"}


class ManifestCorpus(Corpus):
    """Items listed in a JSONL or CSV manifest.

    Args:
        path: the manifest (``.jsonl`` or ``.csv``).
        labels: a label-set name (``meld``, ``iemocap4``, ``ravdess``, ``savee``) or a list of labels.
        audio_root: folder of relative paths (default: the manifest's folder).
        val_fraction / test_fraction: split shares for rows without a ``split``.
        seed: seed of that assignment.
        on_bad_item: ``error`` or ``skip``.
    """

    name = "manifest"

    def __init__(
        self,
        path: str | Path,
        labels: str | list[str],
        audio_root: str | Path | None = None,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        seed: int = 0,
        on_bad_item: str = "error",
    ) -> None:
        path = Path(path)
        super().__init__(audio_root or path.parent, on_bad_item)
        self.path = path
        self.labels = label_set(labels) if isinstance(labels, str) else tuple(str(label) for label in labels)
        if len(set(self.labels)) != len(self.labels) or len(self.labels) < 2:
            raise ValueError(f"dataset.labels={list(self.labels)}: need at least two distinct labels")
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.seed = seed

    def rows(self) -> list[tuple[str, dict]]:
        """``(where, row)`` for every row of the manifest."""
        if not self.path.is_file():
            raise CorpusError(f"dataset.path={self.path}: manifest not found; give the path of a .jsonl or .csv manifest")
        text = read_manifest_text(self.path)
        if self.path.suffix.lower() == ".csv":
            reader = csv.DictReader(io.StringIO(text))  # quoted fields may hold newlines
            if not {"path", "label"} <= set(reader.fieldnames or []):
                raise CorpusError(f"{self.path}: the header must name at least the columns path,label; got {reader.fieldnames}")
            return [(f"{self.path}:{n}", row) for n, row in enumerate(reader, 2)]
        rows = []
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise CorpusError(f"{self.path}:{n}: not a JSON object ({err})") from err
            if not isinstance(row, dict):
                raise CorpusError(f"{self.path}:{n}: expected a JSON object with path and label")
            rows.append((f"{self.path}:{n}", row))
        return rows

    def load(self) -> list[Item]:
        items = []
        for where, row in self.rows():
            split_value = str(row.get("split") or "").strip().lower()
            if not row.get("path") or not row.get("label"):
                self.report.bad(where, "row without a path or a label", split_value or "unknown")
                continue
            label = str(row["label"]).strip()
            if label not in self.labels:
                self.report.bad(where, f"label {label!r} is not in dataset.labels {list(self.labels)}", split_value or "unknown")
                continue
            speaker = str(row.get("speaker") or "").strip()
            path = Path(row["path"])
            if not path.is_absolute():
                path = self.root / path
                if not inside(path, self.root):
                    self.report.bad(where, f"relative path {row['path']!r} leaves the corpus folder {self.root} "
                                    "(relative paths are read inside dataset.audio_root); give an absolute path", split_value or "unknown")
                    continue
            if split_value:
                if split_value not in SPLIT_ALIASES:
                    self.report.bad(where, f"split {row['split']!r} is not one of {sorted(SPLIT_ALIASES)}")
                    continue
                split = SPLIT_ALIASES[split_value]
            else:
                # the row's path as written: the split stays when the corpus folder moves
                split = assign_split(speaker or str(row["path"]), self.val_fraction, self.test_fraction, self.seed)
            if not path.exists():
                self.report.bad(f"{where} ({path})", "audio file not found", split)
                continue
            items.append(
                Item(path=str(path), label=label, speaker=speaker or path.stem, split=split,
                     transcript=str(row.get("transcript") or ""))
            )
        if not items:
            raise CorpusError(f"{self.path}: no usable rows")
        assert {i.split for i in items} <= set(SPLITS)
        return items


def read_manifest_text(path: Path) -> str:
    """A manifest's text: UTF-8 (a byte-order mark, as spreadsheet exports write, is not data) or UTF-16 with its
    byte-order mark; anything else is refused, naming the file.

    >>> import tempfile; f = Path(tempfile.mkdtemp()) / "m.csv"; _ = f.write_bytes("path,label\\n".encode("utf-16"))
    >>> read_manifest_text(f)
    'path,label\\n'
    """
    raw = path.read_bytes()
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        return raw.decode("utf-16")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise CorpusError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start}); save the manifest as "
                          "UTF-8 (or UTF-16 with a byte-order mark)") from None


def inside(path: Path, root: Path) -> bool:
    """Whether ``path``, its links followed, lies inside ``root`` (a link loop leads nowhere: not inside)."""
    import os

    try:
        return Path(os.path.realpath(path, strict=True)).is_relative_to(os.path.realpath(root))
    except (OSError, RuntimeError):
        return Path(os.path.abspath(path)).is_relative_to(os.path.abspath(root)) and not path.is_symlink()

