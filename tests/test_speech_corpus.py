"""The speech corpus (many sentences, many voices, transcripts only) and what the pretraining takes of it."""

from __future__ import annotations

import re

import numpy as np
import pytest
import soundfile as sf

from emorl.data.audio import SAMPLE_RATE
from emorl.data.speech import FRAMES, UNLABELLED, SpeechCorpus
from emorl.data.synthetic import STYLES
from tests.conftest import pretrain_config

WORDS = ("apple", "border", "candle", "distant", "evening", "feather", "garden", "harbour")
VOICES = {"en-us+Alex": "male", "en+aunty": "female", "en-us-nyc+linda": "female"}


def _slots(frame: str) -> str:
    """A frame as a pattern of its words, every slot one word: ``the {a} was`` -> ``the \\w+ was``."""
    return "^" + re.sub(r"\\\{[abc]\\\}", r"\\w+", re.escape(frame)) + "$"


def _frame_of(transcript: str, words=WORDS) -> str | None:
    """The frame the transcript fills with words of ``words`` (None: no frame does)."""
    for frame in FRAMES:
        own = set(re.sub(r"\{[abc]\}", " ", frame).split())
        if re.match(_slots(frame), transcript) and set(transcript.split()) - own <= set(words):
            return frame
    return None


def test_clips_say_list_words_in_the_frames_by_the_voices_and_fit_the_window(tmp_path):
    corpus = SpeechCorpus(tmp_path, WORDS, VOICES, clips=24, seed=3, max_seconds=2.5)
    items = corpus.items("train")
    assert len(items) == 24
    for item in items:
        assert _frame_of(item.transcript), item.transcript  # a frame filled with words of the list
        assert item.speaker in VOICES and item.meta["voice"] == VOICES[item.speaker]
        assert item.split == "train" and item.label == UNLABELLED
        wav, rate = sf.read(item.path)
        assert rate == SAMPLE_RATE and 0.3 * SAMPLE_RATE < len(wav) <= 2.5 * SAMPLE_RATE, item.transcript
    # many frames and every voice: 24 clips of 30 frames and 3 voices
    assert len({_frame_of(i.transcript) for i in items}) >= 10
    assert {i.speaker for i in items} == set(VOICES)
    assert corpus.items("val") == [] and corpus.items("test") == []


def test_the_corpus_is_a_pure_function_of_its_settings(tmp_path):
    a = SpeechCorpus(tmp_path / "a", WORDS, VOICES, clips=6, seed=1).items("train")
    b = SpeechCorpus(tmp_path / "b", list(reversed(WORDS)), VOICES, clips=6, seed=1).items("train")
    other = SpeechCorpus(tmp_path / "c", WORDS, VOICES, clips=6, seed=2).items("train")
    assert [(i.transcript, i.speaker) for i in a] == [(i.transcript, i.speaker) for i in b]
    assert [i.transcript for i in a] != [i.transcript for i in other]
    for x, y in zip(a, b, strict=True):
        np.testing.assert_allclose(sf.read(x.path)[0], sf.read(y.path)[0], atol=1e-4)
    assert SpeechCorpus(tmp_path, WORDS, VOICES, clips=6).dir != SpeechCorpus(tmp_path, WORDS[:-1], VOICES, clips=6).dir


def test_no_frame_is_a_sentence_frame_of_an_emotion_corpus():
    for name, style in STYLES.items():
        for template in style.templates:
            sentence = template.format(kw="word", topic="word").lower()
            assert not any(re.match(_slots(f), sentence) for f in FRAMES), (name, template)


@pytest.mark.parametrize("words, voices, clips, message", [
    (WORDS[:2], VOICES, 4, "at least 3 words"),   # too few words to fill a frame's slots
    (WORDS, {}, 4, "at least one voice"),          # nobody to speak
    (WORDS, VOICES, 0, "clips must be > 0"),       # an empty corpus
])
def test_bad_settings_are_refused_with_the_setting_named(tmp_path, words, voices, clips, message):
    with pytest.raises(ValueError, match=message):
        SpeechCorpus(tmp_path, words, voices, clips=clips)


def test_the_speech_corpus_of_the_pretraining_never_holds_an_unheard_voice_or_a_held_out_word(tmp_path):
    """Its voices: the configured styles' and the experiment corpus's training speakers, never a validation or test
    speaker of the experiment or the pretraining corpus, never a held-out voice; its words: no held-out word."""
    from hydra.utils import instantiate

    from emorl.data.synthetic import SyntheticCorpus
    from emorl.pretrain import speech_corpus, style_words

    cfg = pretrain_config(tmp_path, "pretrain.speech.clips=5")
    experiment = instantiate(cfg.dataset.corpus)
    pretrain_corpus = SyntheticCorpus(tmp_path / "synthetic", **cfg.pretrain.corpus)
    heldout = STYLES["heldout"]
    lexicon = {w: () for w in ("apple", "border", "candle", *sorted(style_words(heldout)))}
    lexicon["ecstatic"] = ("joy",)  # a held-out key word the lexicon holds
    speech = speech_corpus(cfg.pretrain.speech, tmp_path, experiment, pretrain_corpus, lexicon)

    assert speech.words == ["apple", "border", "candle"]
    unheard = {i.speaker for c in (experiment, pretrain_corpus) for s in ("val", "test") for i in c.items(s)}
    # the pretraining corpus's validation voices are voices of the configured style: left out, not only absent
    assert unheard & set(STYLES["pretrain_voices"].voices)
    assert not unheard & set(speech.voices) and not set(heldout.voices) & set(speech.voices)
    heard = {i.speaker for i in experiment.items("train")}
    assert heard <= set(speech.voices)  # the experiment's training voices speak it too
    assert set(speech.voices) - heard <= set(STYLES["pretrain_voices"].voices)
    assert speech_corpus(pretrain_config(tmp_path).pretrain.speech, tmp_path, experiment, pretrain_corpus,
                         lexicon) is None  # clips: 0, the shipped setting


@pytest.mark.parametrize("exclude_words,exclude_voices,says_heldout_word,has_heldout_voice", [
    # the shipped setting: the held-out corpus is neither said nor heard speaking
    ("[heldout]", "[heldout]", False, False),
    # its lexicon words said by other voices: a study of hearing the held-out words before evaluation
    ("[]", "[heldout]", True, False),
    # its voices saying other words: a study of hearing the held-out voices
    ("[heldout]", "[]", False, True),
])
def test_the_held_out_corpus_words_and_voices_are_excluded_apart(tmp_path, exclude_words, exclude_voices,
                                                                 says_heldout_word, has_heldout_voice):
    from hydra.utils import instantiate

    from emorl.data.synthetic import SyntheticCorpus
    from emorl.pretrain import speech_corpus

    cfg = pretrain_config(tmp_path, "pretrain.speech.clips=5", "pretrain.speech.voices=[pretrain_voices,heldout]",
                           f"pretrain.speech.exclude_words={exclude_words}",
                           f"pretrain.speech.exclude_voices={exclude_voices}")
    experiment = instantiate(cfg.dataset.corpus)
    pretrain_corpus = SyntheticCorpus(tmp_path / "synthetic", **cfg.pretrain.corpus)
    lexicon = {"apple": (), "border": (), "candle": (), "ecstatic": ("joy",)}  # "ecstatic": a held-out key word
    speech = speech_corpus(cfg.pretrain.speech, tmp_path, experiment, pretrain_corpus, lexicon)
    assert ("ecstatic" in speech.words) == says_heldout_word and "apple" in speech.words
    assert bool(set(STYLES["heldout"].voices) & set(speech.voices)) == has_heldout_voice


def test_the_pretraining_asks_the_speech_clips_only_what_was_said(tmp_path):
    pytest.importorskip("nrclex")
    from emorl.pretrain import pretraining_clips
    from emorl.pretraining.lexicon import read_lexicon
    from emorl.pretraining.tasks import SPEECH, TASKS, PretrainTasks

    cfg = pretrain_config(tmp_path, "pretrain.speech.clips=8")
    lexicon = read_lexicon()
    clips, _ = pretraining_clips(cfg, tmp_path, lexicon)
    speech = [c for c in clips if c.source == SPEECH]
    assert len(speech) == 8 and all(c.item.transcript for c in speech)
    tasks = PretrainTasks(clips, lambda path: np.zeros(800, np.float32), lexicon, {n: 1.0 for n in TASKS},
                          {"ir": 1.0, "esr": 1.0})
    speech_paths = {c.item.path for c in speech}
    asked = [tasks.example(i) for i in range(400)]
    assert {ex.task for ex in asked if ex.item is not None and ex.item.path in speech_paths} == {"speech"}
    assert all(ex.item.path in speech_paths for ex in asked if ex.task == "speech")
