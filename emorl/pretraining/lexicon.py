"""What words mean: a published word-emotion lexicon, read as data.

The embedded base learns the emotion words convey from the NRC Emotion Lexicon (Mohammad and
Turney, 2013, *Crowdsourcing a Word-Emotion Association Lexicon*, Computational Intelligence
29(3)), as the ``nrclex`` package ships it (``nrclex/data/nrc_en.json``: English words tagged with
Plutchik's eight emotions and a polarity).  It is a build-time extra (``pip install
'emorl[pretrain]'``); its file is read directly, none of the package's own code is imported.  The
lexicon is for research use (its terms); emorl ships no copy of it.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Mapping
from pathlib import Path

from emorl.emotions import NEUTRAL

#: The lexicon's emotions that are points of the label sets' wheel (trust and anticipation are in no label set).
EMOTIONS = ("anger", "disgust", "fear", "joy", "sadness", "surprise")
POLARITIES = ("positive", "negative")

INSTALL_HINT = "install the build-time extra: pip install 'emorl[pretrain]' (or give pretrain.lexicon.path=<nrc_en.json>)"


def lexicon_path(path: str | Path | None = None) -> Path:
    """The lexicon file: ``path`` when given, else the one the installed ``nrclex`` package ships."""
    if path:
        found = Path(path)
        if not found.is_file():
            raise FileNotFoundError(f"pretrain.lexicon.path={str(path)!r}: no such file; {INSTALL_HINT}")
        return found
    spec = importlib.util.find_spec("nrclex")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"the word-emotion lexicon (package nrclex) is not installed; {INSTALL_HINT}")
    found = Path(next(iter(spec.submodule_search_locations))) / "data" / "nrc_en.json"
    if not found.is_file():
        raise FileNotFoundError(f"{found}: the installed nrclex ships no lexicon file there; {INSTALL_HINT}")
    return found


def read_lexicon(path: str | Path | None = None) -> dict[str, tuple[str, ...]]:
    """``{word: emotions}``: every single-word entry and its emotions among :data:`EMOTIONS` (possibly none).

    Entries with none of them (``trust`` only, a polarity only) convey none of the label sets' emotions.
    """
    raw = json.loads(lexicon_path(path).read_text(encoding="utf-8"))
    if not isinstance(raw, Mapping):
        raise ValueError(f"{lexicon_path(path)}: expected a JSON object of word -> tags")
    return tags_to_emotions(raw)


def tags_to_emotions(raw: Mapping[str, list[str]]) -> dict[str, tuple[str, ...]]:
    """Keep single lower-case words; map each to its tags among :data:`EMOTIONS`, sorted.

    >>> tags_to_emotions({"furious": ["anger", "disgust", "negative"], "abacus": ["trust"], "ice cream": ["joy"]})
    {'abacus': (), 'furious': ('anger', 'disgust')}
    """
    out = {}
    for word, tags in raw.items():
        if not isinstance(word, str) or not word.isalpha() or not word.islower():
            continue
        out[word] = tuple(sorted(t for t in set(tags) if t in EMOTIONS))
    return dict(sorted(out.items()))


def conveyed(emotions: tuple[str, ...]) -> tuple[str, ...]:
    """The answers a word with lexicon ``emotions`` may get: its emotions, or neutral when it has none.

    >>> conveyed(("anger", "disgust")), conveyed(())
    (('anger', 'disgust'), ('neutral',))
    """
    return emotions or (NEUTRAL,)
