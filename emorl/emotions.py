"""Emotion knowledge as data: label sets, Plutchik's wheel and the similarity matrix.

Everything emorl knows about emotions lives here, so that rewards, prompts and corpora
never carry their own ``if`` chains over label names.

The similarity matrix is eq. 7 of EMO-RL (Li et al., 2025): two labels are compared by the
angle between them on Plutchik's wheel of emotions (Plutchik, 1982),
``S = (cos(delta) + 1) / 2`` on the smaller arc, and ``S = 1/2`` when exactly one side is
neutral.  Unlike a literal reading of eq. 7, an exact match is always 1, neutral included.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch

#: Angles in degrees of Plutchik's eight primary emotions on the wheel.
PLUTCHIK_ANGLES: dict[str, float] = {
    "joy": 0.0,
    "trust": 45.0,
    "fear": 90.0,
    "surprise": 135.0,
    "sadness": 180.0,
    "disgust": 225.0,
    "anger": 270.0,
    "anticipation": 315.0,
}

#: The point of the wheel's centre: no emotion.
NEUTRAL = "neutral"

#: Where each corpus label sits on the wheel (a primary emotion or ``neutral``).
#: Corpora name the same emotion differently (``happy``, ``happiness``, ``joy``); this one
#: table maps them all.  RAVDESS ``calm`` has no primary on the wheel and sits at its centre.
WHEEL_POSITION: dict[str, str] = {
    **{name: name for name in PLUTCHIK_ANGLES},
    "neutral": NEUTRAL,
    "calm": NEUTRAL,
    "happy": "joy",
    "happiness": "joy",
    "excited": "joy",
    "sad": "sadness",
    "angry": "anger",
    "fearful": "fear",
    "surprised": "surprise",
}

#: Label sets of the corpora, in the order the question lists them.
LABEL_SETS: dict[str, tuple[str, ...]] = {
    "meld": ("neutral", "joy", "sadness", "anger", "fear", "disgust", "surprise"),
    "iemocap4": ("neutral", "happy", "angry", "sad"),
    "ravdess": ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"),
    "savee": ("neutral", "happiness", "sadness", "anger", "fear", "disgust", "surprise"),
}


def wheel_position(label: str, wheel: Mapping[str, str] | None = None) -> str:
    """Return the wheel point of ``label`` (a Plutchik primary or ``neutral``); ``wheel`` places labels emorl
    does not know (``{"frustrated": "anger"}``, from ``dataset.wheel``).

    >>> wheel_position("happy"), wheel_position("frustrated", {"frustrated": "anger"})
    ('joy', 'anger')
    """
    key = label.strip().lower()
    extra = {str(k).strip().lower(): str(v).strip().lower() for k, v in (wheel or {}).items()}
    for name, point in extra.items():
        if point not in PLUTCHIK_ANGLES and point != NEUTRAL:
            raise ValueError(f"dataset.wheel places {name!r} at {point!r}, which is no point of Plutchik's wheel; "
                             f"choose one of {', '.join([*PLUTCHIK_ANGLES, NEUTRAL])}")
    if key in extra:
        return extra[key]
    if key not in WHEEL_POSITION:
        known = ", ".join(sorted(WHEEL_POSITION))
        raise KeyError(
            f"emotion label {label!r} has no place on Plutchik's wheel, which ESWR's similarity needs; give it one: "
            f"dataset.wheel={{{key}: <one of {', '.join([*PLUTCHIK_ANGLES, NEUTRAL])}>}}, or use reward=bcr "
            f"(known labels: {known})"
        )
    return WHEEL_POSITION[key]


def pair_similarity(a: str, b: str, wheel: Mapping[str, str] | None = None) -> float:
    """Similarity of two labels, eq. 7 with exact matches at 1.

    >>> round(pair_similarity("fear", "surprise"), 4)
    0.8536
    >>> pair_similarity("neutral", "neutral"), pair_similarity("neutral", "joy")
    (1.0, 0.5)
    """
    if a.strip().lower() == b.strip().lower():
        return 1.0
    pa, pb = wheel_position(a, wheel), wheel_position(b, wheel)
    if NEUTRAL in (pa, pb):
        return 0.5
    delta = abs(PLUTCHIK_ANGLES[pa] - PLUTCHIK_ANGLES[pb]) % 360.0
    delta = min(delta, 360.0 - delta)
    return 0.5 * (math.cos(math.radians(delta)) + 1.0)


def similarity_matrix(labels: Sequence[str], wheel: Mapping[str, str] | None = None) -> torch.Tensor:
    """The emotion-state-transition matrix ``S`` of eq. 7 for a label set.

    Args:
        labels: C distinct label names, each known to :data:`WHEEL_POSITION`.

    Returns:
        Tensor of shape (C, C), symmetric, ones on the diagonal, values in [0, 1].

    >>> S = similarity_matrix(["joy", "sadness", "neutral"])
    >>> S.tolist()
    [[1.0, 0.0, 0.5], [0.0, 1.0, 0.5], [0.5, 0.5, 1.0]]
    """
    if len(set(label.lower() for label in labels)) != len(labels):
        raise ValueError(f"label set has duplicates: {list(labels)}")
    c = len(labels)
    matrix = torch.empty(c, c, dtype=torch.float32)
    for i, a in enumerate(labels):
        for j, b in enumerate(labels):
            matrix[i, j] = pair_similarity(a, b, wheel)
    return matrix


def label_set(name_or_labels: str | Sequence[str]) -> tuple[str, ...]:
    """Resolve a corpus name (``meld``) or an explicit list to a tuple of labels."""
    if isinstance(name_or_labels, str):
        if name_or_labels not in LABEL_SETS:
            raise KeyError(f"unknown label set {name_or_labels!r}; known: {sorted(LABEL_SETS)}")
        return LABEL_SETS[name_or_labels]
    labels = tuple(str(x) for x in name_or_labels)
    if not labels or any(not label.strip() for label in labels):
        raise ValueError(f"label set {list(labels)}: every label needs a name")
    return labels  # any names: only ESWR's similarity (and cross-corpus maps) need their places on the wheel


def cross_corpus_mapping(target: Sequence[str], trained: Sequence[str]) -> dict[str, str]:
    """Map a target corpus's labels onto the labels asked and scored for a model trained on ``trained``.

    Target labels that share a point of the wheel are merged when the training labels hold fewer
    labels at that point, so the model is never asked to separate what it never learnt to separate:
    RAVDESS ``calm`` and ``neutral`` both sit at the centre, MELD has one label there, so ``calm``
    maps to ``neutral``.  The kept label is the one named like a training label, else the one named
    like the point, else the first listed.  Every other target label maps to itself (also those with
    no counterpart at all: they stay options the model never saw).

    >>> mapping = cross_corpus_mapping(LABEL_SETS["ravdess"], LABEL_SETS["meld"])
    >>> mapping["calm"], mapping["fearful"], len(set(mapping.values()))
    ('neutral', 'fearful', 7)
    """
    def point(label: str) -> str:  # a label without a place on the wheel is a point of its own
        try:
            return wheel_position(label)
        except KeyError:
            return f"label:{label.strip().lower()}"

    trained_at: dict[str, list[str]] = {}
    for label in trained:
        trained_at.setdefault(point(label), []).append(label)
    target_at: dict[str, list[str]] = {}
    for label in target:
        target_at.setdefault(point(label), []).append(label)
    mapping = {label: label for label in target}
    for point, group in target_at.items():
        if len(group) <= len(trained_at.get(point, [])) or not trained_at.get(point):
            continue
        keep = next((g for g in group if g in trained_at[point]), None) or next((g for g in group if g == point), group[0])
        for label in group:
            mapping[label] = keep
    return mapping
