"""The analysis scripts that docs/results.md runs print what the answers say."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).parents[1]


def test_answers_by_key_word_breaks_a_class_down_by_the_word_its_clips_carry(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    rows = [  # three joy clips saying "delighted", one saying "glad", one surprise clip saying "delighted"
        ("a.flac", "joy", "delighted", "joy"), ("b.flac", "joy", "delighted", "joy"), ("c.flac", "joy", "delighted", "joy"),
        ("d.flac", "joy", "glad", "joy"), ("e.flac", "surprise", "delighted", "joy"),
    ]
    (corpus / "test.jsonl").write_text("\n".join(json.dumps(
        {"path": f"audio/{clip}", "label": label, "meta": {"keywords": [word], "word_class": word_class,
                                                           "words": "matching" if word_class == label else "contradicting"}})
        for clip, label, word, word_class in rows))
    answers = tmp_path / "answers.jsonl"
    said = {"a.flac": "surprise", "b.flac": "surprise", "c.flac": "joy", "d.flac": "joy", "e.flac": "joy"}
    answers.write_text("\n".join(json.dumps({"clip": c, "label": label, "prediction": said[c]}) for c, label, _, _ in rows))
    out = subprocess.run([sys.executable, "docs/results/analysis/answers_by_key_word.py", str(answers),
                          "--corpus", str(corpus), "--labels", "joy"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    lines = out.splitlines()
    # c, d right of the four matching clips; e (surprise said with a joy word) answered joy: wrong
    assert lines[1].endswith("accuracy by what the words say: contradicting 0.0% (1), matching 50.0% (4)")
    assert "joy clips (4): joy 0.50, surprise 0.50" in lines[2]  # the surprise clip is not a joy clip
    delighted = next(line for line in lines if line.strip().startswith("delighted"))
    assert "n=  3" in delighted and "surprise 0.67, joy 0.33" in delighted
    glad = next(line for line in lines if line.strip().startswith("glad"))
    assert "n=  1" in glad and "joy 1.00" in glad


def esr(transcript: str | None, keywords: str | None, synthesis: str | None, answer: str = "joy") -> dict:
    parts = [f"<{t}>{v}</{t}>" for t, v in (("transcript", transcript), ("keywords", keywords), ("synthesis", synthesis)) if v]
    return {"text": f"<think>{''.join(parts)}</think><answer>{answer}</answer>"}


def load_esr_sections():
    import importlib.util

    spec = importlib.util.spec_from_file_location("esr_sections", ROOT / "docs/results/analysis/esr_sections.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CORPUS_WORDS, PRETRAINING_WORDS = {"glad", "vile", "lonely"}, {"elated", "afraid"}
PRETRAINING_ONLY = {"elated", "afraid", "we", "were", "concert"}  # words only the pretraining corpus's sentences say


@pytest.mark.parametrize("answer, key_word, expected", [
    # heard and named; the synthesis builds on it
    (esr("I am so glad", "glad", "glad conveys joy"), "glad", ("right", "the heard key word")),
    # the transcript holds the key word, the keywords section names another word of it
    (esr("so glad and lonely", "lonely", "lonely conveys sadness"), "glad", ("heard, another picked", "the heard key word")),
    # misheard: another emotion word of this corpus in its place; the synthesis names a word of the pretraining corpus
    (esr("the letter was lonely", "lonely", "afraid conveys fear"), "vile", ("misheard, this corpus's words", "a pretraining-corpus key word")),
    # misheard as a sentence of the pretraining corpus (it says words only that corpus says)
    (esr("we were elated when the concert started", "elated", "elated conveys joy"), "vile",
     ("misheard, pretraining-corpus words", "the heard key word")),
    # right key word, but the synthesis names another word of the answered corpus
    (esr("this is vile", "vile", "glad conveys joy"), "vile", ("right", "another key word of this corpus")),
    # a word of neither corpus
    (esr("this is vile", "vile", "the voice sounds angry"), "vile", ("right", "another word")),
    # no keywords section, no synthesis
    (esr("this is vile", None, None), "vile", ("no section", None)),
])
def test_esr_sections_says_which_key_word_was_heard_and_what_the_synthesis_names(answer, key_word, expected):
    assert load_esr_sections().classify(answer, key_word, CORPUS_WORDS, PRETRAINING_WORDS, PRETRAINING_ONLY) == expected


def test_esr_sections_counts_outcomes_and_accuracy_per_source(tmp_path):
    corpus, pretraining = tmp_path / "corpus", tmp_path / "pretraining"
    corpus.mkdir(), pretraining.mkdir()
    (corpus / "test.jsonl").write_text("\n".join(json.dumps({"path": f"audio/{c}.flac", "speaker": who, "meta": {"keywords": [w]}})
                                                 for c, w, who in (("a", "glad", "en+m1"), ("b", "vile", "en+f1"), ("c", "vile", "en+m1"))))
    (pretraining / "train.jsonl").write_text(json.dumps({"path": "audio/p.flac", "transcript": "we were afraid",
                                                        "meta": {"keywords": ["afraid"]}}))
    answers = [("a", "joy", "joy", esr("I am so glad", "glad", "glad conveys joy")),
               ("b", "fear", "fear", esr("we were lonely", "lonely", "afraid conveys fear", answer="fear")),
               ("c", "disgust", "fear", esr("this is vile", "vile", "afraid conveys fear", answer="fear"))]
    predictions = tmp_path / "predictions.jsonl"
    predictions.write_text("\n".join(json.dumps({"path": f"x/{c}.flac", "label": label, "prediction": said, "text": a["text"]})
                                     for c, label, said, a in answers))
    out = subprocess.run([sys.executable, "docs/results/analysis/esr_sections.py", str(predictions), "--corpus", str(corpus),
                          "--pretraining-corpus", str(pretraining)], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert "right 2 (66.7%), misheard, pretraining-corpus words 1 (33.3%)" in out  # "we were" only the pretraining corpus says
    assert "key word right by speaker: en+f1 0/1, en+m1 2/2" in out  # the one misheard clip is en+f1's
    heard = next(line for line in out.splitlines() if "the heard key word" in line)
    pretrained = next(line for line in out.splitlines() if "a pretraining-corpus key word" in line)
    assert heard.split()[-1] == "1.00" and " 1 " in heard  # one answer, right
    assert pretrained.split()[-1] == "0.50" and " 2 " in pretrained  # two answers: fear for fear (right), fear for disgust


def load_script(name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, ROOT / f"docs/results/analysis/{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_claims_by_level_frame_scores_each_claim_in_the_speakers_and_the_training_splits_frame():
    from emorl.data.corpus import Item

    def measured(rate: float) -> dict:
        return {"syllables_per_s": rate, "f0_median_hz": 100 + rate, "energy_db": -30 + rate, "f0_range_st": rate}

    # one test speaker whose 12 clips talk at 1..12 syllables/s: by speaker slow 1-4, medium 5-8, fast 9-12;
    # the training split's tertile cuts are 5.0 and 15.3: 1-4 slow, 5-12 medium
    test = {f"t{r}.flac": Item(path=f"t{r}.flac", label="joy", speaker="a", split="test") for r in range(1, 13)}
    train = [Item(path=f"r{k}.flac", label="joy", speaker="b", split="train") for k in range(6)]
    rates = {**{f"t{r}.flac": float(r) for r in range(1, 13)},
             **{f"r{k}.flac": r for k, r in enumerate((0.5, 1.0, 7.0, 8.0, 30.0, 40.0))}}
    measurements = {path: measured(rate) for path, rate in rates.items()}
    fast = "<think><prosody>pitch high, speed fast</prosody></think><answer>joy</answer>"
    slow = fast.replace("speed fast", "speed slow")
    rows = [{"path": f"t{r}.flac", "text": slow if r <= 4 else fast} for r in range(1, 13)]
    rows += [{"path": "t1.flac", "text": "<answer>joy</answer>"},  # no prosody section: not counted
             {"path": "r0.flac", "text": slow}]                    # not a clip of the split: not counted
    counts = load_script("claims_by_level_frame").count_claims(rows, test, train, measurements)
    # slow claims (1-4) are right in both frames, fast claims right by speaker for 9-12 only, never by the corpus
    assert counts["speed"] == [12, 8, 4, 8]
    # pitch: the 12 claims say high; high by speaker for 9-12 (f0 tracks the rate), by the corpus for none
    assert counts["pitch"] == [12, 4, 0, 8]
    assert counts["volume"] == [0, 0, 0, 0] and counts["intonation"] == [0, 0, 0, 0]


@pytest.mark.parametrize("answer, rate", [
    (" 4.5 ", 4.5),   # the rate task's answer, spaces around it
    ("5", 5.0),       # a whole number
    ("fast", None),   # a level word, not a rate
    (None, None),     # no answer block
    ("nan", None),    # not a finite number
])
def test_rate_answers_reads_a_number_or_nothing(answer, rate):
    assert load_script("rate_answers").rate_of(answer) == rate


def test_rate_answers_scores_only_the_numbers_against_the_measured_rates():
    figures = load_script("rate_answers").rate_figures([2.0, 4.0, None, 0.0, 8.0], [2.0, 4.5, 3.0, 3.0, 8.0])
    assert figures["numbers"] == pytest.approx(3 / 5)  # None and a zero rate are not rates
    assert figures["mae"] == pytest.approx(0.5 / 3)
    assert 0.99 < figures["correlation"] < 1.0  # log 2, log 4, log 8 against log 2, log 4.5, log 8


def test_speed_probe_finds_the_rate_in_features_that_hold_it_and_not_in_noise():
    rng = np.random.default_rng(0)
    rate_train, rate_test = np.log(rng.uniform(2, 8, 300)), np.log(rng.uniform(2, 8, 150))
    noise = lambda n: rng.normal(size=(n, 8))
    # a tower whose first feature is the log rate (with a little noise): the probe reads it back
    holds = lambda r: np.column_stack([r + rng.normal(0, 0.02, len(r)), noise(len(r))])
    # every test clip's speaker level: its level among the training split's rates (cuts at the tertiles of 2..8)
    cuts = np.quantile(rate_train, [1 / 3, 2 / 3])
    speaker = [("slow", "medium", "fast")[int(np.searchsorted(cuts, r))] for r in rate_test]
    probe = load_script("speed_probe").probe_figures
    f = probe(holds(rate_train), rate_train, holds(rate_test), rate_test, speaker)
    assert f["test_correlation"] > 0.98 and f["train_correlation"] > 0.98
    assert f["listener_speaker"] == pytest.approx(100.0)  # the speaker levels were made the training-split levels
    assert f["probe_speaker"] > 90 and f["probe_corpus"] > 90  # only clips at a cut can fall the other side
    # a tower whose features are noise: no correlation to speak of, levels near chance (a third)
    f = probe(noise(300), rate_train, noise(150), rate_test, speaker)
    assert abs(f["test_correlation"]) < 0.3 and f["probe_speaker"] < 55


def load_unparsed_answers():
    import importlib.util

    spec = importlib.util.spec_from_file_location("unparsed_answers", ROOT / "docs/results/analysis/unparsed_answers.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


OPTIONS = ["joy", "anger", "neutral"]


@pytest.mark.parametrize("text, expected", [
    # cut off before any answer block
    ("<think><synthesis>medium</synthesis></think>", "no answer block"),
    # an attribute question's answer: a prosody level
    ("<think><synthesis>medium</synthesis></think><answer> loud</answer>", "a prosody level"),
    # a synonym question's answer: another name of an option's emotion (happiness is joy)
    ("<think><synthesis>joy and happiness name the same emotion</synthesis></think><answer>happiness</answer>",
     "another name of an option's emotion"),
    # an emotion on the wheel that no option names
    ("<answer>sadness</answer>", "an emotion no option names"),
    # a topic or a key word
    ("<answer>trip</answer>", "another word"),
    # the last block counts
    ("<answer>joy</answer> <answer>slow</answer>", "a prosody level"),
])
def test_unparsed_answers_says_what_an_unread_answer_holds(text, expected):
    assert load_unparsed_answers().kind(text, OPTIONS) == expected


def test_unparsed_answers_counts_the_unread_answers_by_kind(tmp_path):
    question = "Which emotion does the speaker express? Options: joy, anger, neutral. Give only the chosen option."
    rows = [("<answer>joy</answer>", "joy"), ("<answer>loud</answer>", None), ("<answer>quiet</answer>", None),
            ("<think><synthesis>joy and happiness name the same emotion</synthesis></think><answer>happiness</answer>",
             None)]
    predictions = tmp_path / "predictions.jsonl"
    predictions.write_text("\n".join(json.dumps({"question": question, "text": t, "prediction": p}) for t, p in rows))
    out = subprocess.run([sys.executable, "docs/results/analysis/unparsed_answers.py", str(predictions)], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout.splitlines()
    assert out[0] == "3 of 4 answers name no option"
    counts = {line[:40].strip(): int(line[40:]) for line in out[1:6]}
    assert counts == {"no answer block": 0, "a prosody level": 2, "another name of an option's emotion": 1,
                      "an emotion no option names": 0, "another word": 0}
    assert out[7].split() == ["2", "<none>"] and out[8].split()[:2] == ["1", "joy"]
