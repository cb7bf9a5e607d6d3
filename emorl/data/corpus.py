"""What every corpus yields: items with a path, a label, a speaker and a split.

:class:`Corpus` is the base of the readers in :mod:`emorl.data.corpora`: it reads the corpus
once, applies the skip policy and answers ``items(split)``.  :class:`SkipReport` is the one
place where an unusable item either stops the run (``on_bad_item=error``, the default) or is
skipped and counted (``on_bad_item=skip``); items a protocol leaves out by design (IEMOCAP's
frustrated, ...) are counted as *excluded*.  Both counts reach the log and ``metrics.json``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import shutil
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
ON_BAD_ITEM = ("error", "skip")


@dataclass(frozen=True)
class Item:
    """One utterance.  ``meta`` holds what a corpus knows beyond the label (prosody levels, key words).

    ``key`` is the clip's place in its corpus (its path relative to the corpus folder, set by the corpus):
    what stays the same when the corpus is reached through another path.  Whatever is drawn per clip
    (its option order, its description task) is seeded by :attr:`clip_id`, never by ``path``.
    """

    path: str
    label: str
    speaker: str
    split: str
    transcript: str = ""
    meta: dict = field(default_factory=dict)
    key: str = ""

    @property
    def clip_id(self) -> str:
        """The clip's name wherever its corpus lives: its ``key``; its path for an item made by hand."""
        return self.key or self.path


def clip_key(path: str | Path, root: str | Path) -> str:
    """``path``'s place under ``root`` (POSIX); a path outside ``root`` is its own key.

    >>> clip_key("/data/meld/train/a.wav", "/data/meld"), clip_key("/elsewhere/a.wav", "/data/meld")
    ('train/a.wav', '/elsewhere/a.wav')
    """
    path, root = os.path.abspath(path), os.path.abspath(root)
    return Path(os.path.relpath(path, root)).as_posix() if Path(path).is_relative_to(root) else path


class CorpusError(ValueError):
    """A corpus that cannot be read as configured; the message names the file and the fix."""


class SkipReport:
    """Bad items stop the run (``error``) or are skipped and counted (``skip``); exclusions are counted.

    >>> report = SkipReport("skip", "demo")
    >>> report.bad("a.wav", "audio file not found", split="train")
    >>> report.exclude("frustrated", split="train")
    >>> report.summary()["skipped"], report.summary()["excluded"]
    ({'train': 1}, {'train': {'frustrated': 1}})
    """

    MAX_LISTED = 50
    MAX_LOGGED = 20  # warning lines per kind of defect; the rest are counted

    def __init__(self, on_bad_item: str = "error", corpus: str = "corpus") -> None:
        if on_bad_item not in ON_BAD_ITEM:
            raise ValueError(f"dataset.on_bad_item={on_bad_item!r}; choose one of {list(ON_BAD_ITEM)}")
        self.on_bad_item = on_bad_item
        self.corpus = corpus
        self.skipped: Counter[str] = Counter()
        self.reasons: Counter[str] = Counter()
        self.examples: list[str] = []
        self.excluded: dict[str, Counter[str]] = {}

    def bad(self, where: str, reason: str, split: str = "unknown", known: bool = False) -> None:
        """An unusable item: raise, or (skip policy, or a ``known`` defect of the release) count it."""
        if self.on_bad_item == "error" and not known:
            raise CorpusError(
                f"{where}: {reason}. Fix the file or the annotation, or set dataset.on_bad_item=skip "
                "to skip such items (they are counted in the log and metrics.json)"
            )
        self.skipped[split] += 1
        kind = reason.split(";")[0][:120]
        self.reasons[kind] += 1
        if len(self.examples) < self.MAX_LISTED:
            self.examples.append(f"{where}: {reason}")
        if self.reasons[kind] <= self.MAX_LOGGED:
            log.warning("%s: skipped %s (%s split): %s", self.corpus, where, split, reason)
            if self.reasons[kind] == self.MAX_LOGGED:
                log.warning("%s: further items skipped for %r are counted, not logged (metrics.json: skip_reasons)",
                            self.corpus, kind)

    def exclude(self, label: str, split: str = "unknown") -> None:
        """An item the protocol leaves out on purpose (a label outside the class set)."""
        self.excluded.setdefault(split, Counter())[label] += 1

    def summary(self) -> dict:
        return {
            "on_bad_item": self.on_bad_item,
            "skipped": dict(self.skipped),
            "skipped_total": sum(self.skipped.values()),
            "skip_reasons": dict(self.reasons),
            "skipped_examples": list(self.examples),
            "excluded": {split: dict(c) for split, c in self.excluded.items()},
            "excluded_total": sum(sum(c.values()) for c in self.excluded.values()),
        }


class Corpus:
    """Base of the corpus readers: ``labels``, ``items(split)`` and a :class:`SkipReport`.

    Subclasses implement :meth:`load`, returning every usable item with its split; bad items go
    through ``self.report.bad(...)``.  The corpus is read once, on the first ``items`` call.
    """

    name = "corpus"
    labels: tuple[str, ...] = ()

    def __init__(self, root: str | Path, on_bad_item: str = "error") -> None:
        self.root = Path(root)
        self.report = SkipReport(on_bad_item, self.name)
        self._items: list[Item] | None = None

    def load(self) -> list[Item]:
        raise NotImplementedError

    def check_root(self, hint: str) -> None:
        if not self.root.is_dir():
            raise CorpusError(f"dataset.root={self.root}: no such directory; point it at {hint}")

    def all_items(self) -> list[Item]:
        if self._items is None:
            self._items = [i if i.key else replace(i, key=clip_key(i.path, self.root))
                           for i in self._each_file_once(self.load())]
            counts = {split: sum(i.split == split for i in self._items) for split in SPLITS}
            log.info("%s: %s items from %s; %s", self.name, counts, self.root, self.report.summary())
        return self._items

    def _each_file_once(self, items: list[Item]) -> list[Item]:
        """Each audio file once: listed twice in a split it counts twice; in two splits it leaks."""
        first: dict[str, Item] = {}
        kept = []
        for item in items:
            key = os.path.realpath(item.path)
            seen = first.setdefault(key, item)
            if seen is item:
                kept.append(item)
            elif seen.split == item.split:
                self.report.bad(item.path, f"listed twice in the {item.split} split (it would be counted twice)", item.split)
            else:
                self.report.bad(
                    item.path,
                    f"in both the {seen.split} and the {item.split} split (a clip trained on and tested on leaks); "
                    "give each clip one split",
                    item.split,
                )
        return kept

    def items(self, split: str) -> list[Item]:
        """Items of ``split``: ``train``, ``val``, ``test``, or ``all`` (every split, e.g. for cross-corpus tests)."""
        if split not in (*SPLITS, "all"):
            raise ValueError(f"unknown split {split!r}; valid splits: {[*SPLITS, 'all']}")
        return [i for i in self.all_items() if split in ("all", i.split)]


def assign_split(key: str, val_fraction: float, test_fraction: float, seed: int) -> str:
    """A stable split for ``key`` (a speaker, or a path) drawn from the fractions.

    >>> assign_split("spk1", 0.0, 1.0, 0), assign_split("spk1", 0.0, 0.0, 0)
    ('test', 'train')
    """
    u = random.Random(f"{seed}:{key}").random()
    if u < test_fraction:
        return "test"
    if u < test_fraction + val_fraction:
        return "val"
    return "train"


def write_manifest(items: list[Item], path: Path) -> None:
    with open(path, "w") as f:
        for item in items:
            f.write(json.dumps(asdict(item)) + "\n")


def read_manifest(path: Path, labels: tuple[str, ...]) -> list[Item]:
    """Read a JSONL manifest of :class:`Item` records; every label must be in ``labels`` (the error names the line)."""
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


def read_built_manifest(folder: Path, split: str, labels: tuple[str, ...]) -> list[Item]:
    """The items of ``<folder>/<split>.jsonl`` of a corpus emorl built, each clip read from ``<folder>/audio/``.

    The manifest names the files where the corpus was built; its copy may be reached by another path (another
    cache folder, a mount): each clip is read from this folder and keyed by its place in it."""
    return [replace(item, path=str(folder / "audio" / Path(item.path).name), key=f"audio/{Path(item.path).name}")
            for item in read_manifest(folder / f"{split}.jsonl", labels)]


def build_once(target: Path, build: Callable[[Path], None]) -> Path:
    """``target`` built once: ``build(folder)`` fills a new temporary sibling folder, which is marked done and
    renamed into place.  A later call finds it done; of two processes building it at once, the second to finish
    drops its copy."""
    if (target / "done").exists():
        return target
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    build(tmp)
    (tmp / "done").write_text("ok\n")
    try:
        tmp.rename(target)
    except OSError:  # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)
        if not (target / "done").exists():
            raise
    return target


def fingerprint(config: dict) -> str:
    """Short stable hash of a JSON-serialisable config (names cache directories)."""
    blob = json.dumps(config, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


class RelabeledCorpus:
    """A corpus seen through a label mapping (cross-corpus tests): merged labels, original kept in ``meta``."""

    def __init__(self, corpus, mapping: dict[str, str]) -> None:
        missing = [label for label in corpus.labels if label not in mapping]
        if missing:
            raise ValueError(f"the label mapping leaves {missing} of {corpus.name} unmapped")
        self.corpus = corpus
        self.mapping = dict(mapping)
        self.name = corpus.name
        self.labels = tuple(dict.fromkeys(mapping[label] for label in corpus.labels))
        self.report = getattr(corpus, "report", None)

    def items(self, split: str) -> list[Item]:
        from dataclasses import replace

        return [
            replace(i, label=self.mapping[i.label], meta={**i.meta, "corpus_label": i.label})
            for i in self.corpus.items(split)
        ]
