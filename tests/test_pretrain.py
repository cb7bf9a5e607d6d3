"""The embedded base's pretraining: the mixture's builders, what may enter it, and the training pipeline."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from emorl.acoustics import LEVEL_NAMES
from emorl.data.corpus import Item
from emorl.data.prosody_tasks import ATTRIBUTE_QUESTIONS, COMPARISON_PROMPTS
from emorl.emotions import wheel_position
from emorl.pretraining.tasks import (
    EXPERIMENT,
    FORMATTED_TASKS,
    PRETRAIN,
    SPEECH,
    TASKS,
    Clip,
    PretrainTasks,
    meaning_phrase,
    rate_answer,
)
from emorl.prompts import get_strategy

LEXICON = {"furious": ("anger", "disgust"), "glad": ("joy",), "abacus": (), "afraid": ("fear",),
           "gloomy": ("sadness",), "shocked": ("surprise",), "gross": ("disgust",),
           # key words of the clips below: the lexicon knows four of them (one conveys nothing: neutral)
           "kw0": ("joy",), "kw3": ("anger", "disgust"), "kw101": ("fear",), "kw104": ()}
WEIGHTS = {name: 1.0 for name in TASKS}
FORMATS = {"ir": 1.0, "eur": 1.0, "esr": 1.0}


def clip(k: int, source: str, label: str = "anger", split: str = "train", pitch: float = 150.0) -> Clip:
    meta = {"keywords": [f"kw{k}"], "topic": f"topic{k % 3}", "voice": "male" if k % 2 else "female", "word_class": label}
    item = Item(path=f"/{source}/{split}/{k}.flac", label=label, speaker=f"s{k % 2}", split=split,
                transcript=f"the topic{k % 3} was kw{k} today", meta=meta)
    levels = {"pitch": ("low", "medium", "high")[k % 3], "speed": "fast", "volume": "quiet", "intonation": "flat",
              "contour": "flat"}
    measurement = {"f0_median_hz": pitch * (1 + k), "f0_range_st": 4.0 + k % 5, "energy_db": -20.0 - k,
                   "syllables_per_s": 3.0 + 0.5 * (k % 4), "pause_share": 0.1}
    return Clip(item, source, levels, measurement)


LABELS = ("neutral", "joy", "sadness", "anger", "fear", "disgust", "surprise")
CLIPS = [clip(k, EXPERIMENT, LABELS[k % 7]) for k in range(14)] + [clip(100 + k, PRETRAIN, LABELS[k % 7]) for k in range(14)]
# the speech corpus: no label, no key word or topic, no measured prosody
CLIPS += [Clip(Item(path=f"/speech/train/{k}.flac", label="", speaker=f"v{k}", split="train",
                    transcript=f"the next word is w{k}"), SPEECH, {}, {}) for k in range(4)]


def tasks(weights=None, clips=CLIPS, formats=FORMATS, word_formats=None, attributes=None,
          task_formats=None, speeds=()) -> PretrainTasks:
    return PretrainTasks(clips, lambda path: np.full(800, len(path), np.float32), LEXICON, weights or WEIGHTS, formats,
                         word_formats, attributes=attributes, task_formats=task_formats, speeds=speeds)


def only(task: str, **kw) -> PretrainTasks:
    return tasks({task: 1.0}, **kw)


def answer(example) -> str:
    return get_strategy("ir").extract_answer(example.target)


def draws(t: PretrainTasks, n: int = 200):
    return [t.example(i) for i in range(n)]


def by_path(path: str) -> Clip:
    return next(c for c in CLIPS if c.item.path == path)


# Each builder's answer is the clip's own fact (table-driven: task -> check of one drawn example).
BUILDER_CASES = {
    # speech recognition: the answer is the clip's transcript, word for word
    "transcribe": lambda ex: answer(ex) == ex.item.transcript,
    # speech corpus: a speech-corpus clip's transcript, word for word
    "speech": lambda ex: by_path(ex.item.path).source == SPEECH and answer(ex) == ex.item.transcript,
    # key word: the clip's marked key word, listed among the options
    "keyword": lambda ex: answer(ex) == ex.item.meta["keywords"][0] and answer(ex) in ex.options,
    # topic and voice: the clip's own
    "topic": lambda ex: answer(ex) == ex.item.meta["topic"],
    "voice": lambda ex: answer(ex) == ex.item.meta["voice"] and set(ex.options) == {"male", "female"},
    # attribute: a measured level of the clip (never the generator's setting), options = that attribute's levels
    "attribute": lambda ex: answer(ex) in by_path(ex.item.path).levels.values()
    and tuple(sorted(ex.options)) in {tuple(sorted(v)) for v in LEVEL_NAMES.values()},
    # description: every measured level, in the acoustics module's wording
    "describe": lambda ex: answer(ex).startswith(f"pitch {by_path(ex.item.path).levels['pitch']}"),
    # emotion: only ever a pretraining-corpus clip, answered with a name of its own wheel point
    "emotion": lambda ex: by_path(ex.item.path).source == PRETRAIN
    and wheel_position(answer(ex)) == wheel_position(ex.item.label),
    # the word's meaning: text only, one of the emotions the lexicon gives the word
    "word_meaning": lambda ex: ex.audio == [] and ex.item is None and any(
        wheel_position(answer(ex)) == wheel_position(e) for e in LEXICON[_word_of(ex)] or ("neutral",)),
    # the heard key word's meaning: a clip whose key word the lexicon holds, answered with an emotion the lexicon
    # gives that word (not the clip's label: kw0's clip is neutral, its word conveys joy), no other of them an option
    "heard_meaning": lambda ex: by_path(ex.item.path).keyword in LEXICON
    and wheel_position(answer(ex)) in {wheel_position(e) for e in LEXICON[by_path(ex.item.path).keyword] or ("neutral",)}
    and not ({wheel_position(o) for o in ex.options if o != answer(ex)}
             & {wheel_position(e) for e in LEXICON[by_path(ex.item.path).keyword]}),
    # rate: the clip's measured syllables per second, to the nearest half, as a free answer (no options)
    "rate": lambda ex: abs(float(answer(ex)) - by_path(ex.item.path).measurement["syllables_per_s"]) <= 0.25
    and float(answer(ex)) % 0.5 == 0 and not ex.options,
    # position: the option listed where the question says
    "position": lambda ex: answer(ex) == {"first": ex.options[0], "second": ex.options[1], "last": ex.options[-1]}[
        ex.text.split("listed ")[1].split("?")[0]],
    # synonym: the option on the same wheel point as the named emotion
    "synonym": lambda ex: wheel_position(answer(ex)) == wheel_position(ex.text.split("the word ")[1].split("?")[0]),
}


def _word_of(example) -> str:
    text = example.text
    if "the word " in text:
        return text.split("the word ")[1].split(" ")[0]
    sentence = text.split("'")[1]
    return next(w for w in sentence.split() if w in LEXICON)


@pytest.mark.parametrize("task", sorted(BUILDER_CASES))
def test_each_builder_answers_the_clips_own_fact(task):
    made = [ex for ex in draws(only(task), 60) if ex.task == task]
    assert made, f"no {task} example drawn"
    for ex in made:
        assert BUILDER_CASES[task](ex), (task, ex.text, ex.target)


@pytest.mark.parametrize("rate, said", [
    (4.26, "4.5"),   # above the midpoint: rounds up
    (4.24, "4.0"),   # below it: rounds down
    (7.0, "7.0"),    # a multiple of the step is said as it is, with one decimal
    (0.1, "0.0"),    # a near-silent clip's rate rounds to nothing
    (12.8, "13.0"),  # no upper cap: the tower is asked what it hears
])
def test_the_rate_answer_is_the_nearest_half_syllable_per_second(rate, said):
    assert rate_answer(rate) == said


def test_a_clip_with_no_measured_rate_is_asked_what_was_said_instead():
    silent = [Clip(c.item, c.source, c.levels, {**c.measurement, "syllables_per_s": float("nan")}) for c in CLIPS[:4]]
    made = draws(only("rate", clips=silent), 20)
    assert {ex.task for ex in made} == {"transcribe"}
    assert all(answer(ex) == ex.item.transcript for ex in made)


OPTIONS = ("neutral", "joy", "anger")
# (task, answer block, gold): one validation record each; the metrics below count them by answer format
VALIDATION_RECORDS = [
    ("transcribe", "the game was fun", "the game was fun"),  # heard right
    ("transcribe", "the game was", "the game was fun"),      # one word of four missed: WER 1/8 over both
    ("emotion/ir", "joy", "joy"),                            # IR: right
    ("emotion/ir", "anger", "joy"),                          # IR: wrong but an option
    ("emotion/esr", "joy", "joy"),                           # ESR: right
    ("emotion/esr", "unhappy", "joy"),                       # ESR: a heard word, no option: unparsed
    ("emotion/esr", None, "anger"),                          # ESR: no answer block: unparsed
    ("emotion/esr", "anger", "neutral"),                     # ESR: wrong but an option
]


def test_validation_counts_each_formats_unparsed_answers_apart():
    from emorl.modules.pretrain import validation_metrics

    records = [{"task": t, "answer": a, "gold": g, "options": OPTIONS} for t, a, g in VALIDATION_RECORDS]
    values = validation_metrics(records)
    assert set(values) == {"val/wer", "val/emotion_accuracy", "val/unparsed", "val/emotion_accuracy/esr",
                           "val/unparsed/esr"}
    assert values["val/wer"] == pytest.approx(1 / 8)
    assert values["val/emotion_accuracy"] == pytest.approx(0.5) and values["val/unparsed"] == 0.0
    assert values["val/emotion_accuracy/esr"] == pytest.approx(0.25)
    assert values["val/unparsed/esr"] == pytest.approx(0.5)


def test_validation_asks_each_clip_its_emotion_in_every_format_and_what_was_said():
    from emorl.pretrain import validation_examples

    val = [clip(200 + k, PRETRAIN, LABELS[k % 7], split="val") for k in range(5)]
    made = validation_examples(val, 3, lambda path: np.zeros(8, np.float32), seed=0, formats=("ir", "esr"))
    assert [ex.task for ex in made] == ["transcribe", "emotion/ir", "emotion/esr"] * 3
    for said, ir, esr in zip(made[::3], made[1::3], made[2::3], strict=True):
        assert said.item is ir.item is esr.item and said.label == said.item.transcript and ir.label == said.item.label
        assert ir.text == get_strategy("ir").prompt(ir.options) and esr.text == get_strategy("esr").prompt(esr.options)
    assert len({ex.item.path for ex in made}) == 3
    # the validation's transcription question is word for word the one the transcribe task trains on
    trained = next(ex for ex in draws(only("transcribe"), 20) if ex.task == "transcribe")
    assert {ex.text for ex in made[::3]} == {trained.text}


def test_comparisons_name_the_clip_with_more_of_the_attribute():
    t = only("compare")
    checked = 0
    for ex in draws(t, 80):
        if ex.task != "compare":
            continue
        first, second = ex.audio
        # the tasks' audio is a waveform filled with the length of the clip's path: find the clips back
        a = next(c for c in CLIPS if len(c.item.path) == first[0] and c.item.path == ex.item.path)
        assert a.item.path == ex.item.path
        assert answer(ex) in ("first", "second")
        if "louder" in ex.text:  # energy falls with k in these clips: the lower k is the louder one
            b_candidates = [c for c in CLIPS if c.source == a.source and len(c.item.path) == second[0]]
            louder_first = all(a.measurement["energy_db"] > c.measurement["energy_db"] for c in b_candidates)
            quieter_first = all(a.measurement["energy_db"] < c.measurement["energy_db"] for c in b_candidates)
            if louder_first or quieter_first:
                assert answer(ex) == ("first" if louder_first else "second")
                checked += 1
    assert checked > 0


def test_esr_answers_hold_the_clips_own_transcript_key_word_and_measured_prosody():
    esr = get_strategy("esr")
    t = tasks(formats={"esr": 1.0})
    seen = 0
    for ex in draws(t, 200):
        if ex.item is None or not ex.target.startswith("<think><transcript>"):
            continue
        parts = esr.reasoning_parts(ex.target)
        c = by_path(ex.item.path)
        assert parts["transcript"] == c.item.transcript
        assert parts["keywords"] == c.keyword
        assert parts["prosody"].startswith(f"pitch {c.levels['pitch']}")
        seen += 1
    assert seen > 20


def test_the_emotion_synthesis_says_what_the_key_word_conveys_as_the_lexicon_task_does():
    esr = get_strategy("esr")
    for ex in draws(only("emotion", formats={"esr": 1.0}), 30):
        synthesis = esr.reasoning_parts(ex.target)["synthesis"]
        c = by_path(ex.item.path)
        assert synthesis.startswith(c.keyword + " conveys ")
        assert synthesis.endswith(f"the voice sounds {answer(ex)}")
    assert meaning_phrase("abacus", "neutral") == "abacus conveys no emotion"


def test_the_heard_meaning_synthesis_names_the_word_heard():
    esr = get_strategy("esr")
    made = draws(only("heard_meaning", formats={"esr": 1.0}), 40)
    for ex in made:
        c = by_path(ex.item.path)
        parts = esr.reasoning_parts(ex.target)
        assert parts["keywords"] == c.keyword and parts["synthesis"] == meaning_phrase(c.keyword, answer(ex))
    # both corpora's clips are asked, each of the four the lexicon knows
    assert {ex.item.path for ex in made} == {c.item.path for c in CLIPS if c.keyword in LEXICON}


def test_heard_meaning_needs_a_clip_whose_key_word_the_lexicon_holds():
    unknown = [c for c in CLIPS if c.keyword not in LEXICON]
    with pytest.raises(ValueError, match="heard_meaning > 0 needs clips whose key word the lexicon holds"):
        only("heard_meaning", clips=unknown)


def test_no_experiment_clip_is_ever_asked_its_emotion():
    for ex in draws(tasks(), 1500):
        if ex.item is not None and by_path(ex.item.path).source == EXPERIMENT:
            assert ex.task != "emotion"
            # nor is any question about it answered with its gold label's wheel point by an emotion question
            assert not ex.text.startswith(("Which emotion does the speaker", "What emotion do you hear", "How does the speaker feel"))


@pytest.mark.parametrize("split", ["val", "test"])
def test_an_evaluation_clip_is_refused(split):
    with pytest.raises(ValueError, match=f"a '{split}' clip may not enter the pretraining data"):
        tasks(clips=[*CLIPS, clip(999, EXPERIMENT, split=split)])


def test_the_draws_are_a_pure_function_of_seed_and_index():
    a, b = tasks(), tasks()
    assert [a.example(i).target for i in range(50)] == [b.example(i).target for i in range(50)]
    assert [a.example(i).target for i in range(50)] != [a.example(i + 50).target for i in range(50)]


@pytest.mark.parametrize("weights, message", [
    ({"transcribe": 1.0, "dictation": 1.0}, "unknown tasks \\['dictation'\\]"),  # a misspelt task
    ({"transcribe": -1.0, "emotion": 2.0}, "weights must be >= 0"),  # a negative weight
    ({"transcribe": 0.0}, "sum to more than 0"),  # nothing to draw
])
def test_bad_task_weights_are_refused(weights, message):
    with pytest.raises(ValueError, match=message):
        tasks(weights)


def asked(example) -> str:
    """The prosody attribute an attribute or comparison question asks about."""
    prompts = [(n, q.split(" Options")[0]) for n, q in ATTRIBUTE_QUESTIONS.items()] + list(COMPARISON_PROMPTS.items())
    return next(n for n, q in prompts if q in example.text)


def attribute_shares(t: PretrainTasks, n: int = 1200) -> dict[str, float]:
    names = [asked(ex) for ex in draws(t, n) if ex.task in ("attribute", "compare")]
    return {a: names.count(a) / len(names) for a in ATTRIBUTE_QUESTIONS}


@pytest.mark.parametrize("attributes, expected", [
    (None, {"pitch": 0.25, "speed": 0.25, "volume": 0.25, "intonation": 0.25}),  # unset: each asked equally often
    ({"speed": 1.0}, {"pitch": 0.0, "speed": 1.0, "volume": 0.0, "intonation": 0.0}),  # speed alone
    ({"pitch": 1.0, "speed": 3.0, "volume": 1.0, "intonation": 1.0}, {"pitch": 1 / 6, "speed": 0.5, "volume": 1 / 6,
                                                                      "intonation": 1 / 6}),  # speed three times as often
])
def test_attribute_and_comparison_questions_ask_each_attribute_by_its_weight(attributes, expected):
    t = tasks({"attribute": 1.0, "compare": 1.0}, attributes=attributes)
    shares = attribute_shares(t)
    for name, share in expected.items():
        assert shares[name] == pytest.approx(share, abs=0.04), (name, shares)  # 1200 draws: ~0.013 std at 0.25


def test_unset_attribute_weights_draw_as_the_shipped_base_was_built():
    """Unset, an attribute is drawn by one uniform integer (the shipped mixture's draws, which are a pure
    function of seed and index, stay what they were)."""
    t, names = tasks(), tuple(ATTRIBUTE_QUESTIONS)
    ours, old = np.random.default_rng(7), np.random.default_rng(7)
    assert [t.prosody_attribute(ours, names) for _ in range(50)] == [names[int(old.integers(len(names)))] for _ in range(50)]
    assert ours.random() == old.random()  # and nothing more is drawn


@pytest.mark.parametrize("attributes, message", [
    ({"speed": 1.0, "tempo": 1.0}, "unknown attributes \\['tempo'\\]"),  # a misspelt attribute
    ({"speed": -1.0, "pitch": 1.0}, "weights must be >= 0"),  # a negative weight
    ({"speed": 0.0}, "sum to more than 0"),  # nothing to ask
])
def test_bad_attribute_weights_are_refused(attributes, message):
    with pytest.raises(ValueError, match="pretrain.attributes: .*" + message):
        tasks(attributes=attributes)


def test_the_attributes_corpus_levels_names_are_placed_among_the_corpus_in_every_pretraining_clip(tmp_path,
                                                                                                 monkeypatch):
    from emorl import acoustics
    from emorl.pretrain import pretraining_clips
    from tests.conftest import pretrain_config

    asked = []
    levels = acoustics.ProsodyNorms.levels

    def recorded(self, measurement, speaker=None, among_corpus=()):
        asked.append((speaker, frozenset(among_corpus)))
        return levels(self, measurement, speaker, among_corpus)

    monkeypatch.setattr(acoustics.ProsodyNorms, "levels", recorded)
    clips, val = pretraining_clips(pretrain_config(tmp_path, "pretrain.corpus_levels=[speed]"), tmp_path)
    assert len(asked) == len(clips) + len(val) > 0
    assert {among for _, among in asked} == {frozenset({"speed"})} and all(speaker for speaker, _ in asked)


def test_a_clip_the_pretraining_measured_is_not_measured_again_by_a_training_run(tmp_path, monkeypatch):
    from hydra.utils import instantiate

    import emorl.acoustics as acoustics
    from emorl.acoustics import measure_items, prosody_cache
    from emorl.pretrain import pretraining_clips
    from tests.conftest import pretrain_config

    cfg = pretrain_config(tmp_path, "pretrain.measure_workers=1")
    pretraining_clips(cfg, tmp_path)
    measured = []
    monkeypatch.setattr(acoustics, "measure", lambda wav, sr=16000: measured.append(1) or {})
    experiment = instantiate(cfg.dataset.corpus)  # the data module of a training run reads this file
    measure_items(experiment.items("train"), prosody_cache(tmp_path, experiment))
    assert len(experiment.items("train")) == 14 and measured == []


@pytest.mark.parametrize("names, message", [
    ("[tempo]", "unknown attributes \\['tempo'\\]"),  # a misspelt attribute
    ("[speed,contour]", "unknown attributes \\['contour'\\]"),  # the contour is a name, not a level
])
def test_unknown_corpus_level_attributes_are_refused_before_any_clip_is_built(tmp_path, names, message):
    from emorl.pretrain import pretraining_clips
    from tests.conftest import pretrain_config

    with pytest.raises(ValueError, match="pretrain.corpus_levels: " + message):
        pretraining_clips(pretrain_config(tmp_path, f"pretrain.corpus_levels={names}"), tmp_path)
    assert not (tmp_path / "synthetic").exists()


def test_emotion_questions_need_the_pretraining_corpus():
    with pytest.raises(ValueError, match="needs clips of the pretraining corpus"):
        tasks({"emotion": 1.0}, clips=[c for c in CLIPS if c.source == EXPERIMENT])


def test_speech_questions_need_the_speech_corpus_and_its_clips_are_asked_nothing_else():
    with pytest.raises(ValueError, match=r"pretrain.tasks.speech > 0 needs clips of the speech corpus"):
        tasks({"speech": 1.0}, clips=[c for c in CLIPS if c.source != SPEECH])
    with pytest.raises(ValueError, match="needs clips of the experiment or the pretraining corpus"):
        tasks({"speech": 1.0}, clips=[c for c in CLIPS if c.source == SPEECH])
    asked = [ex for ex in draws(tasks(), 600) if ex.item is not None and ex.item.path.startswith("/speech/")]
    assert asked and {ex.task for ex in asked} == {"speech"}


def test_the_lexicon_file_is_read_as_words_and_the_label_sets_emotions(tmp_path):
    from emorl.pretraining.lexicon import read_lexicon

    path = tmp_path / "lexicon.json"
    path.write_text('{"furious": ["anger", "negative"], "trusty": ["trust"], "New York": ["joy"]}')
    assert read_lexicon(path) == {"furious": ("anger",), "trusty": ()}
    with pytest.raises(FileNotFoundError, match="pretrain.lexicon.path="):
        read_lexicon(tmp_path / "missing.json")


def test_the_published_lexicon_is_found_and_covers_every_emotion():
    pytest.importorskip("nrclex")  # the build-time extra (pip install 'emorl[pretrain]')
    from emorl.pretraining.lexicon import EMOTIONS, read_lexicon

    lexicon = read_lexicon()
    assert len(lexicon) > 5000
    assert lexicon["furious"] == ("anger", "disgust")
    for emotion in EMOTIONS:
        assert sum(emotion in e for e in lexicon.values()) > 300, emotion


def test_pretraining_on_a_fixed_batch_lowers_the_loss(tiny):
    """The module's loss falls over a few steps on one batch of mixed tasks, text-only questions included."""
    from emorl.data.batching import Collator
    from emorl.modules.pretrain import PretrainModule

    model, processor = tiny
    t = tasks()
    examples = [t.example(i) for i in range(12)]
    text_only = [isinstance(ex.audio, list) and not ex.audio for ex in examples]  # audio is a list only when empty or two clips
    assert any(text_only) and not all(text_only)
    batch = Collator(processor)(examples)
    module = PretrainModule(model, processor, lr=3e-3, warmup_steps=1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    losses = []
    for _ in range(8):
        logits = model(**module.forward_inputs(batch)).logits
        from emorl.modules.pretrain import token_losses

        per_token = token_losses(logits, batch["labels"])
        loss = per_token.sum() / (batch["labels"][:, 1:] != -100).sum()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(float(loss))
    assert losses[-1] < 0.8 * losses[0], losses


def test_token_loss_matches_the_models_own_loss(tiny, esr_batch):
    from emorl.data.batching import Collator, Example
    from emorl.modules.pretrain import token_losses

    model, processor = tiny
    ex = [Example(audio=np.zeros(8000, np.float32), text="q", target="<answer>joy</answer>"),
          Example(audio=[], text="what does glad convey?", target="<answer>joy</answer>")]
    batch = Collator(processor)(ex)
    with torch.no_grad():
        out = model(**{k: batch[k] for k in ("input_ids", "attention_mask", "input_features", "feature_attention_mask")},
                    labels=batch["labels"])
    mine = token_losses(out.logits, batch["labels"])
    assert float(mine.sum() / (batch["labels"][:, 1:] != -100).sum()) == pytest.approx(float(out.loss), rel=1e-5)


# Which formats each builder's answer may take (table: task -> whether its answer is an emotion name).
ANSWERS_AN_EMOTION = {
    "emotion": True,    # the clip's emotion, in one corpus's names
    "position": True,   # an option of an emotion list, by place
    "synonym": True,    # the option naming the same emotion
    "keyword": False,   # a word the speaker said
    "topic": False,     # what the sentence is about
    "voice": False,     # male / female
    "attribute": False,  # a measured level
    "heard_meaning": True,  # what the heard key word conveys
}


@pytest.mark.parametrize("task", sorted(FORMATTED_TASKS))
def test_questions_answered_with_another_word_than_an_emotion_take_their_own_formats(task):
    """With formats ESR only and word formats IR only, an emotion-name answer is always reasoned in ESR's
    sections and a key word, topic, voice or level is always a bare answer (its conclusion never an ESR synthesis)."""
    t = tasks({task: 1.0}, formats={"esr": 1.0}, word_formats={"ir": 1.0})
    starts = {ex.target.startswith("<think><transcript>") for ex in draws(t, 40) if ex.task == task}
    assert starts == {ANSWERS_AN_EMOTION[task]}  # a task the table here lacks fails: say what its answer is


def test_word_formats_default_to_the_formats_and_bad_weights_are_named():
    t = tasks({"topic": 1.0}, formats={"esr": 1.0})
    assert all(ex.target.startswith("<think><transcript>") for ex in draws(t, 20))
    with pytest.raises(ValueError, match="pretrain.word_formats"):
        tasks(word_formats={"ir": 0.0})


# pretrain.task_formats: one task's own formats over formats / word_formats; the other tasks keep theirs.
# (formats are ESR only; word_formats as given; expected: task -> is its answer reasoned in ESR's sections)
TASK_FORMATS = [
    # a level answer (attribute) kept out of ESR, the key word still in ESR
    ({"esr": 1.0}, {"attribute": {"ir": 1.0}}, {"attribute": False, "keyword": True}),
    # an emotion-name answer (synonym) kept out of ESR, the emotion question still in ESR
    ({"esr": 1.0}, {"synonym": {"eur": 1.0}}, {"synonym": False, "emotion": True}),
    # an override to ESR where the word formats say IR: the topic takes ESR, the voice stays IR
    ({"ir": 1.0}, {"topic": {"esr": 1.0}}, {"topic": True, "voice": False}),
]


@pytest.mark.parametrize("word_formats, overrides, in_esr", TASK_FORMATS)
def test_a_task_given_its_own_formats_takes_them_and_the_others_keep_theirs(word_formats, overrides, in_esr):
    t = tasks({task: 1.0 for task in in_esr}, formats={"esr": 1.0}, word_formats=word_formats,
              task_formats=overrides)
    examples = draws(t, 80)
    seen = {task: {ex.target.startswith("<think><transcript>") for ex in examples if ex.task == task} for task in in_esr}
    assert seen == {task: {esr} for task, esr in in_esr.items()}


def test_task_formats_name_an_unknown_task_or_bad_weights():
    with pytest.raises(ValueError, match=r"pretrain.task_formats: unknown tasks \['atribute'\]"):
        tasks(task_formats={"atribute": {"ir": 1.0}})
    with pytest.raises(ValueError, match=r"pretrain.task_formats.attribute"):
        tasks(task_formats={"attribute": {"ir": 0.0}})
    with pytest.raises(ValueError, match=r"unknown tasks \['transcribe'\]"):  # a free-text answer takes no format
        tasks(task_formats={"transcribe": {"ir": 1.0}})


# The whole command at reduced scale: a tiny experiment corpus and pretraining corpus, a few steps.
PRETRAIN_SMALL = (
    "dataset.corpus.train_per_class=2", "dataset.corpus.val_per_class=1", "dataset.corpus.test_per_class=1",
    "pretrain.corpus.train_per_class=2", "pretrain.corpus.val_per_class=1",
    "pretrain.steps=6", "pretrain.batch_size=3", "pretrain.every_n_steps=2", "pretrain.val_every=3",
    "pretrain.val_clips=2", "pretrain.warmup_steps=1", "pretrain.tokenizer_examples=60", "pretrain.max_new_tokens=4",
    "model.build.vocab_size=512",
)


def launch_pretrain(run_dir, cache, *extra):
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.Popen([sys.executable, "-m", "emorl.pretrain", *PRETRAIN_SMALL, f"paths.cache_dir={cache}",
                             f"hydra.run.dir={run_dir}", *extra], env=env, cwd=Path(__file__).parents[1],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


@pytest.mark.slow
def test_the_pretraining_command_builds_a_base_and_a_killed_build_resumes_to_the_same_weights(tmp_path, cache_dir):
    """``python -m emorl.pretrain`` end to end: the base and its summary are written, and a build killed after its
    first checkpoint, run again with the same command, ends with the weights of an uninterrupted build."""
    import json
    import signal

    from safetensors.torch import load_file

    from emorl.checkpointing import FILE_HEADER, checkpoint_bytes, optimizer_bytes, run_bytes, tensor_bytes
    from emorl.models.loading import load_backbone
    from tests.processes import signal_once_written

    pytest.importorskip("nrclex")
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    out, _ = launch_pretrain(straight, cache_dir).communicate(timeout=600)
    summary = json.loads((straight / "pretrain.json").read_text())
    assert summary["steps"] == 6 and summary["examples"] == 18, out[-2000:]
    assert summary["clips"] == {"experiment_train": 14, "pretrain_train": 14, "pretrain_val": 7, "speech_train": 0}
    assert set(summary["validation"]) >= {"val/wer", "val/emotion_accuracy", "val/unparsed/eur", "val/unparsed/esr"}
    # the room the build checked for before its first step holds the files it wrote, and not many times over
    model, _ = load_backbone(straight / "model")
    counted = checkpoint_bytes(tensor_bytes(model.state_dict().values()), optimizer_bytes(model.parameters()))
    written = (straight / "checkpoints" / "last.ckpt").stat().st_size
    assert written <= counted <= 1.1 * written + FILE_HEADER, (written, counted)
    exported = sum(f.stat().st_size for f in (straight / "model").rglob("*") if f.is_file())
    assert exported <= run_bytes(0, tensor_bytes(model.state_dict().values())) <= 1.1 * exported + FILE_HEADER

    signal_once_written(launch_pretrain(killed, cache_dir), killed / "checkpoints" / "last.ckpt", signal.SIGKILL)  # no grace: 6 steps
    assert not (killed / "pretrain.json").exists(), "the build finished before it was killed"
    out, _ = launch_pretrain(killed, cache_dir).communicate(timeout=600)
    assert json.loads((killed / "pretrain.json").read_text())["steps"] == 6, out[-2000:]
    assert "Restored" in out or "resum" in out.lower(), out[-2000:]  # it continued, it did not start over
    a, b = load_file(straight / "model" / "model.safetensors"), load_file(killed / "model" / "model.safetensors")
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=1e-5, atol=1e-6, msg=name)


@pytest.mark.slow
def test_a_build_stopped_by_sigterm_saves_exits_143_and_resumes_to_the_weights_of_an_uninterrupted_one(
        tmp_path, cache_dir):
    """SIGTERM to the command (what a scheduler sends) stops the build at a step, saves ``last.ckpt`` there, exits 143
    saying how to continue, and the same command resumes from it to the weights of a build never stopped.  One
    process; two stopped mid-step: the test below.  Its log too is an uninterrupted build's: the resumed command
    once deleted the rows of the steps before the stop."""
    import os
    import signal

    from safetensors.torch import load_file

    from emorl.runs import read_log
    from tests.processes import signal_once_written

    pytest.importorskip("nrclex")
    steps = ("pretrain.steps=8", "trainer.log_every_n_steps=1")
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    procs = [launch_pretrain(straight, cache_dir, *steps)]
    try:
        out, _ = procs[0].communicate(timeout=600)
        assert (straight / "pretrain.json").exists(), out[-3000:]
        procs.append(launch_pretrain(stopped, cache_dir, *steps))
        out = signal_once_written(procs[1], stopped / "checkpoints" / "last.ckpt", signal.SIGTERM, timeout_s=300)
        # stopped, not finished: 128 + SIGTERM (not 0: a script would go on to a missing model)
        assert procs[1].returncode == 143, out[-3000:]
        assert "SIGTERM: saved" in out and f"hydra.run.dir={stopped}" in out, out[-3000:]  # how to continue
        assert not (stopped / "pretrain.json").exists(), "the build finished before it was stopped"
        procs.append(launch_pretrain(stopped, cache_dir, *steps))
        out, _ = procs[2].communicate(timeout=600)
        assert (stopped / "pretrain.json").exists(), out[-3000:]
        assert "Restored" in out or "resum" in out.lower(), out[-3000:]  # it continued, it did not start over
    finally:
        for proc in procs:  # a rank left behind by a hung or failed build
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    a, b = load_file(straight / "model" / "model.safetensors"), load_file(stopped / "model" / "model.safetensors")
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=1e-5, atol=1e-6, msg=name)
    # every step's loss logged once, the steps before the stop included, as the uninterrupted build logged them
    logged = [read_log(straight), read_log(stopped)]
    losses = [{int(r["step"]): r["train/loss"] for r in rows if "train/loss" in r} for rows in logged]
    assert sorted(losses[0]) == list(range(8)), losses[0]
    assert sorted(losses[1]) == sorted(losses[0]), (losses[1], losses[0])
    torch.testing.assert_close(torch.tensor([losses[1][s] for s in range(8)]), torch.tensor([losses[0][s] for s in range(8)]),
                               rtol=1e-4, atol=1e-6)
    assert len(logged[1]) == len(logged[0]), (logged[1], logged[0])  # no step's row twice


@pytest.mark.slow
def test_the_pretraining_command_builds_a_tiny_omni_base_that_model_tiny_omni_loads(tmp_path, cache_dir):
    """The same command builds the Qwen2.5-Omni variant (model.build.architecture): its thinker, as emorl exports one."""
    from transformers import Qwen2_5OmniThinkerForConditionalGeneration

    from emorl.models.loading import load_backbone

    pytest.importorskip("nrclex")
    run = tmp_path / "omni"
    out, _ = launch_pretrain(run, cache_dir, "pretrain.steps=2", "model.build.architecture=qwen2_5_omni").communicate(
        timeout=600)
    assert (run / "pretrain.json").exists(), out[-2000:]
    model, processor = load_backbone(run / "model")
    assert isinstance(model, Qwen2_5OmniThinkerForConditionalGeneration)
    assert processor.tokenizer.convert_tokens_to_ids("<|im_end|>") is not None


@pytest.mark.slow
def test_a_two_process_build_sent_sigterm_mid_step_stops_both_processes_at_that_step_and_saves(tmp_path, cache_dir):
    """``trainer.devices=2 trainer.strategy=ddp`` (the documented build), process 0 sent SIGTERM during a step, before
    its backward pass (tests/sigterm_job.py).  Lightning's own handler broadcast from inside the signal handler, which
    there met the other process's gradient all-reduce: both waited for ever (a CI run timed out so).  Both processes
    must stop at the end of that step, save ``last.ckpt`` there and exit 143."""
    import os
    import sys
    from pathlib import Path

    import torch

    from tests.processes import failure_report, run_command
    from tests.sigterm_job import STOP_AT_STEP

    pytest.importorskip("nrclex")
    run_dir = tmp_path / "stopped"
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    done = run_command([sys.executable, "-m", "tests.sigterm_job", *PRETRAIN_SMALL, "pretrain.steps=8",
                        "trainer.devices=2", "trainer.strategy=ddp", f"paths.cache_dir={cache_dir}",
                        f"hydra.run.dir={run_dir}"], cwd=Path(__file__).parents[1], env=env, timeout_s=240)
    assert done.returncode == 143, failure_report(done.stdout)
    assert not (run_dir / "pretrain.json").exists(), "the build finished: it was never stopped"
    saved = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert saved["global_step"] == STOP_AT_STEP + 1  # the end of the step the signal came in, not a later one
    # each process says where it stopped: the same step on both
    said = [line for line in done.stdout.splitlines() if "terminated at step" in line]
    assert len(said) == 2 and all(f"terminated at step {STOP_AT_STEP + 1};" in line for line in said), said


# change_speed: a tone played faster is shorter and higher by the same factor (16 kHz, 1 s of a 200 Hz tone).
SPEEDS = [
    (1.0, 16000, 200.0),   # as recorded: the very samples
    (1.1, 14545, 220.0),   # 10% faster: 1/1.1 of the samples, 10% higher
    (0.9, 17778, 180.0),   # 10% slower: longer and lower
    (1.25, 12800, 250.0),  # a quarter faster
]


@pytest.mark.parametrize("factor, samples, hz", SPEEDS)
def test_a_clip_played_faster_is_shorter_and_higher_by_the_factor(factor, samples, hz):
    from emorl.data.audio import change_speed

    t = np.arange(16000) / 16000
    out = change_speed((0.5 * np.sin(2 * np.pi * 200.0 * t)).astype(np.float32), factor)
    assert out.dtype == np.float32 and abs(out.size - samples) <= 1
    spectrum = np.abs(np.fft.rfft(out * np.hanning(out.size)))
    peak_hz = np.argmax(spectrum) * 16000 / out.size
    assert peak_hz == pytest.approx(hz, abs=1.5)  # one FFT bin is 1 to 1.25 Hz here
    assert np.abs(out).max() == pytest.approx(0.5, abs=0.02)  # as loud as before


def test_only_clips_asked_what_was_said_are_played_at_another_speed():
    """With speeds [2.0], transcribe and speech examples hold half the clip's samples; every task whose answer holds
    the clip's prosody or voice (a level, an ESR section, male / female) hears it as recorded."""
    from emorl.pretraining.tasks import SPEED_PERTURBED_TASKS

    lengths: dict[str, set[int]] = {}
    for ex in draws(tasks(speeds=[2.0]), 300):
        for wav in ex.audio if isinstance(ex.audio, list) else [ex.audio]:
            lengths.setdefault(ex.task, set()).add(len(wav))
    assert set(SPEED_PERTURBED_TASKS) <= set(lengths)
    assert {t: n for t, n in lengths.items() if t in SPEED_PERTURBED_TASKS} == {t: {400} for t in SPEED_PERTURBED_TASKS}
    assert {t: n for t, n in lengths.items() if t not in SPEED_PERTURBED_TASKS} == {
        t: {800} for t in lengths if t not in SPEED_PERTURBED_TASKS}


@pytest.mark.parametrize("speeds", [[0.0], [3.0], [1.0, -1.0]])  # silence, another signal, a negative factor
def test_a_speed_no_voice_has_is_refused_by_name(speeds):
    with pytest.raises(ValueError, match=r"pretrain.speeds: .* from 0.5 to 2.0"):
        tasks(speeds=speeds)


def test_the_configured_speeds_reach_the_mixture(tmp_path):
    """``pretrain.speeds`` on the command line: the mixture the build draws plays what-was-said clips at it."""
    from emorl.pretrain import mixture
    from tests.conftest import pretrain_config

    cfg = pretrain_config(tmp_path, "pretrain.speeds=[2.0]", "pretrain.tasks.transcribe=1.0")
    mix = mixture(cfg, CLIPS, lambda path: np.zeros(800, np.float32), LEXICON)
    transcribed = [ex for ex in draws(mix, 100) if ex.task == "transcribe"]
    assert transcribed and {len(ex.audio) for ex in transcribed} == {400}
    assert mixture(pretrain_config(tmp_path), CLIPS, lambda path: np.zeros(800, np.float32), LEXICON).speeds == ()
