"""Plutchik similarity (EMO-RL eq. 7, exact matches at 1)."""

import math

import pytest
import torch

from emorl.emotions import LABEL_SETS, pair_similarity, similarity_matrix, wheel_position

ADJACENT = 0.5 * (math.cos(math.radians(45)) + 1)  # 0.8536
NINETY = 0.5
OPPOSITE = 0.0

CASES = [
    # (a, b, expected, why)
    ("joy", "joy", 1.0, "exact match"),
    ("neutral", "neutral", 1.0, "exact neutral match is 1, not eq. 7's literal 1/2"),
    ("neutral", "anger", 0.5, "exactly one side neutral"),
    ("sadness", "neutral", 0.5, "neutral on the other side"),
    ("fear", "surprise", ADJACENT, "45 degrees apart"),
    ("surprise", "sadness", ADJACENT, "45 degrees apart"),
    ("anger", "disgust", ADJACENT, "45 degrees apart"),
    ("joy", "anticipation", ADJACENT, "315 vs 0: the smaller arc is 45 degrees"),
    ("joy", "fear", NINETY, "90 degrees apart"),
    ("joy", "sadness", OPPOSITE, "opposite on the wheel"),
    ("anger", "fear", OPPOSITE, "270 vs 90: opposite"),
    ("happy", "joy", 1.0, "IEMOCAP's happy sits on joy; different names, same point"),
    ("calm", "neutral", 0.5, "RAVDESS calm sits at the centre, a different label from neutral"),
    ("Fear", "SURPRISE", ADJACENT, "case does not matter"),
]


@pytest.mark.parametrize("a,b,expected,why", CASES)
def test_pair_similarity(a, b, expected, why):
    assert pair_similarity(a, b) == pytest.approx(expected, abs=1e-6), why
    assert pair_similarity(b, a) == pytest.approx(expected, abs=1e-6), "symmetric"


@pytest.mark.parametrize("name", sorted(LABEL_SETS))
def test_matrix_of_every_corpus_is_symmetric_with_unit_diagonal(name):
    labels = LABEL_SETS[name]
    s = similarity_matrix(labels)
    assert s.shape == (len(labels), len(labels))
    assert torch.equal(s, s.T)
    assert torch.equal(torch.diagonal(s), torch.ones(len(labels)))
    assert ((s >= 0) & (s <= 1)).all()


def test_meld_pairs_above_gamma_are_exactly_the_wheel_neighbours():
    labels = LABEL_SETS["meld"]
    s = similarity_matrix(labels)
    above = {(labels[i], labels[j]) for i in range(7) for j in range(7) if i < j and s[i, j] > 0.7}
    assert above == {("sadness", "disgust"), ("sadness", "surprise"), ("anger", "disgust"), ("fear", "surprise")}


def test_an_unknown_label_names_the_setting_that_places_it_on_the_wheel():
    # the remedy is configuration (dataset.wheel), not an edit of emorl's code
    with pytest.raises(KeyError, match=r"dataset.wheel=\{boredom: "):
        wheel_position("boredom")
    assert wheel_position("boredom", {"boredom": "sadness"}) == "sadness"
    with pytest.raises(ValueError, match="duplicates"):
        similarity_matrix(["joy", "Joy"])


MAPPING_CASES = [
    # (target labels, trained labels, expected merged labels, why)
    ("ravdess", "meld", {"calm": "neutral"}, "calm and neutral share the centre; MELD has one label there"),
    ("ravdess", "ravdess", {}, "trained on the same labels: nothing merged"),
    ("iemocap4", "meld", {}, "one target label per wheel point: names may differ (happy vs joy), none merged"),
    ("savee", "meld", {}, "SAVEE's seven labels sit on MELD's seven points"),
    ("meld", "iemocap4", {}, "fear, disgust, surprise have no counterpart: kept as options, not merged"),
    (("neutral", "calm", "joy"), ("calm", "joy"), {"neutral": "calm"}, "the label named like a trained one is kept"),
    (("calm", "neutral", "joy"), ("neutral", "joy"), {"calm": "neutral"}, "else the one named like the point"),
]


@pytest.mark.parametrize("target,trained,merged,why", MAPPING_CASES)
def test_cross_corpus_mapping(target, trained, merged, why):
    from emorl.emotions import cross_corpus_mapping, label_set

    target, trained = label_set(target), label_set(trained)
    mapping = cross_corpus_mapping(target, trained)
    assert set(mapping) == set(target), why
    assert {k: v for k, v in mapping.items() if k != v} == merged, why
    assert set(mapping.values()) <= set(target), "questions only ever list target labels"
