"""The synthetic corpus and the data module: deterministic, split by speaker, checked early."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from emorl.data.corpus import read_manifest
from emorl.data.datamodule import check_items
from emorl.data.synthetic import KEYWORDS, SyntheticCorpus, level


def test_corpus_is_split_by_speaker_and_balanced(small_corpus):
    splits = {s: small_corpus.items(s) for s in ("train", "val", "test")}
    speakers = {s: {i.speaker for i in items} for s, items in splits.items()}
    assert not speakers["train"] & speakers["test"]
    assert not speakers["train"] & speakers["val"]
    assert not speakers["val"] & speakers["test"]
    assert Counter(i.label for i in splits["train"]) == {label: 6 for label in small_corpus.labels}
    assert Counter(i.label for i in splits["test"]) == {label: 2 for label in small_corpus.labels}


def test_corpus_is_deterministic_by_seed(tmp_path):
    a = SyntheticCorpus(tmp_path / "a", train_per_class=2, val_per_class=1, test_per_class=1, seed=3)
    b = SyntheticCorpus(tmp_path / "b", train_per_class=2, val_per_class=1, test_per_class=1, seed=3)
    c = SyntheticCorpus(tmp_path / "c", train_per_class=2, val_per_class=1, test_per_class=1, seed=4)
    key = lambda corpus: [(i.transcript, i.speaker, i.meta["pitch"]) for i in corpus.items("train")]
    assert key(a) == key(b)
    assert key(a) != key(c)


def test_words_and_prosody_carry_emotion_with_a_set_share_of_neutral_or_contradicting_words(tmp_path):
    corpus = SyntheticCorpus(
        tmp_path, train_per_class=40, val_per_class=1, test_per_class=1, p_neutral_words=0.3, p_contradicting_words=0.2
    )
    items = corpus.items("train")
    words = Counter(i.meta["words"] for i in items)
    assert 0.2 < words["neutral"] / len(items) < 0.4
    assert 0.1 < words["contradicting"] / len(items) < 0.3
    for item in items:
        keyword = item.meta["keywords"][0]
        assert keyword in item.transcript.split()
        if item.meta["words"] == "matching":
            assert keyword in KEYWORDS[item.label]
        elif item.meta["words"] == "contradicting":
            assert keyword not in KEYWORDS[item.label] and keyword not in KEYWORDS["neutral"]
    # prosody follows the class: sad speech is slow and low, fear is high and fast
    sad = [i for i in items if i.label == "sadness"]
    fear = [i for i in items if i.label == "fear"]
    assert Counter(i.meta["speed"] for i in sad).most_common(1)[0][0] == "slow"
    assert Counter(i.meta["pitch"] for i in fear).most_common(1)[0][0] == "high"


@pytest.mark.parametrize("attribute,value,expected", [
    ("speed", 100, "slow"), ("speed", 160, "medium"), ("speed", 220, "fast"),
    ("pitch", 20, "low"), ("pitch", 90, "high"), ("volume", 60, "quiet"), ("volume", 190, "loud"),
])
def test_prosody_levels(attribute, value, expected):
    assert level(attribute, value) == expected


def test_manifest_label_outside_the_set_names_file_and_line(tmp_path, small_corpus):
    item = small_corpus.items("test")[0]
    line = json.dumps({**item.__dict__, "label": "boredom"})
    (tmp_path / "m.jsonl").write_text(json.dumps(item.__dict__) + "\n" + line + "\n")
    with pytest.raises(ValueError, match=r"m.jsonl:2: label 'boredom'"):
        read_manifest(tmp_path / "m.jsonl", small_corpus.labels)


def test_bad_audio_in_a_split_stops_before_training(tmp_path, small_corpus):
    from dataclasses import replace

    items = small_corpus.items("val")
    broken = tmp_path / "broken.flac"
    broken.write_bytes(b"not audio at all")
    with pytest.raises(ValueError, match="broken.flac"):
        check_items([*items, replace(items[0], path=str(broken))], small_corpus.labels, "val")
    with pytest.raises(ValueError, match="the val split is empty"):
        check_items([], small_corpus.labels, "val")
    with pytest.raises(ValueError, match="'boredom' is not in the label set"):
        check_items([replace(items[0], label="boredom")], small_corpus.labels, "val")


def test_shuffled_options_are_fixed_per_item_and_vary_between_items(small_corpus):
    from emorl.data.batching import EmotionQuestions
    from emorl.prompts import get_strategy

    items = small_corpus.items("train")
    ds = EmotionQuestions(items, get_strategy("ir"), small_corpus.labels, shuffle_options=True, seed=0)
    again = EmotionQuestions(items, get_strategy("ir"), small_corpus.labels, shuffle_options=True, seed=0)
    orders = [ds.options(i) for i in items]
    assert orders == [again.options(i) for i in items]
    assert len(set(orders)) > len(items) // 2
    assert all(sorted(o) == sorted(small_corpus.labels) for o in orders)
    example = ds[0]
    assert f"Options: {', '.join(example.options)}." in example.text
    fixed = EmotionQuestions(items, get_strategy("ir"), small_corpus.labels, shuffle_options=False)
    assert {fixed.options(i) for i in items} == {tuple(small_corpus.labels)}
