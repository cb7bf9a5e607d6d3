"""What every corpus yields: items with a path, a label, a speaker and a split."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Item:
    """One utterance.  ``meta`` holds what a corpus knows beyond the label (prosody levels, key words)."""

    path: str
    label: str
    speaker: str
    split: str
    transcript: str = ""
    meta: dict = field(default_factory=dict)


def write_manifest(items: list[Item], path: Path) -> None:
    with open(path, "w") as f:
        for item in items:
            f.write(json.dumps(asdict(item)) + "\n")


def read_manifest(path: Path, labels: tuple[str, ...]) -> list[Item]:
    """Read a JSONL manifest; every label must be in ``labels`` (the error names the line)."""
    items = []
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                item = Item(**json.loads(line))
            except (json.JSONDecodeError, TypeError) as err:
                raise ValueError(f"{path}:{lineno}: not a manifest item ({err})") from err
            if item.label not in labels:
                raise ValueError(f"{path}:{lineno}: label {item.label!r} is not in the label set {list(labels)}")
            items.append(item)
    return items


def fingerprint(config: dict) -> str:
    """Short stable hash of a JSON-serialisable config (names cache directories)."""
    blob = json.dumps(config, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]
