"""The prosody warm start's questions (EmotionThinker-Base tasks) built from measured prosody."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from emorl.acoustics import LEVEL_NAMES
from emorl.data.batching import Collator
from emorl.data.corpus import Item
from emorl.data.prosody_tasks import MARGINS, ProsodyQuestions, contrast, prosody_task_scores
from emorl.pretraining import tasks as pretraining_tasks
from emorl.prompts import get_strategy


@pytest.mark.parametrize(
    "attribute, a, b, expected",
    [
        ("pitch", 220.0, 110.0, 12.0),  # an octave up: 12 semitones
        ("pitch", 100.0, 100.0, 0.0),  # the same
        ("speed", 3.0, 6.0, -1.0),  # half as fast: one octave of rate down
        ("volume", -20.0, -26.5, 6.5),  # dB differences as they are
        ("intonation", 4.0, 7.0, -3.0),  # pitch ranges in semitones
        ("pitch", float("nan"), 100.0, None),  # an unvoiced clip has no pitch to compare
        ("speed", 0.0, 2.0, None),  # no onsets: no rate on a log scale
    ],
)
def test_contrast_between_two_clips(attribute, a, b, expected):
    key = {"pitch": "f0_median_hz", "speed": "syllables_per_s", "volume": "energy_db", "intonation": "f0_range_st"}[attribute]
    got = contrast(attribute, {key: a}, {key: b})
    assert got == (pytest.approx(expected) if expected is not None else None)


def measurement(f0: float, rate: float, db: float, range_st: float) -> dict:
    return {"f0_median_hz": f0, "syllables_per_s": rate, "energy_db": db, "f0_range_st": range_st}


def write_tone(path, freq: float, seconds: float) -> str:
    import soundfile as sf

    t = np.arange(int(16000 * seconds)) / 16000
    sf.write(str(path), (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), 16000)
    return str(path)


@pytest.fixture
def clips(tmp_path):
    items, measured, levels = [], {}, {}
    for k in range(12):
        path = write_tone(tmp_path / f"c{k}.wav", freq=100.0 + 20 * k, seconds=0.5 + 0.25 * k)  # lengths differ
        items.append(Item(path=path, label="neutral", speaker=f"s{k % 2}", split="train"))
        # pitch rises with k by 2.2 semitones per clip; rate, volume and range vary too
        measured[path] = measurement(100.0 * 2 ** (2.2 * k / 12), 2.0 + 0.4 * k, -30.0 + k, float("nan") if k == 3 else 3.0 + k)
        levels[path] = {"pitch": ("low", "medium", "high")[k % 3], "speed": "fast", "volume": "quiet",
                        "intonation": "flat", "contour": "flat"}
    del levels[items[5].path]["pitch"]  # an attribute that could not be measured is never asked
    return items, measured, levels


def test_every_target_is_true_to_the_measurements(clips):
    items, measured, levels = clips
    questions = ProsodyQuestions(items, levels, measured, comparison_share=0.6, seed=3)
    kinds = set()
    for index in range(len(questions)):
        task = questions.task(index)
        kinds.add(task["kind"])
        answer = task["target"].removeprefix("<answer>").removesuffix("</answer>")
        if task["kind"] == "attribute":
            assert task["paths"] == [items[index].path]
            assert answer == levels[items[index].path][task["attribute"]]
            assert all(name in task["text"] for name in LEVEL_NAMES[task["attribute"]])  # its three levels are the options
        else:
            first, second = (measured[p] for p in task["paths"])
            assert items[index].path in task["paths"] and len(set(task["paths"])) == 2
            diff = contrast(task["attribute"], first, second)
            assert abs(diff) >= MARGINS[task["attribute"]]  # only comparisons a listener hears without doubt
            assert answer == ("first" if diff > 0 else "second")
    assert kinds == {"attribute", "comparison"}
    # each index's task is fixed by the seed; another seed draws others
    again = ProsodyQuestions(items, levels, measured, comparison_share=0.6, seed=3)
    other = ProsodyQuestions(items, levels, measured, comparison_share=0.6, seed=4)
    assert [again.task(i) for i in range(12)] == [questions.task(i) for i in range(12)]
    assert [other.task(i) for i in range(12)] != [questions.task(i) for i in range(12)]
    counts = questions.task_counts()
    assert sum(counts.values()) == 12 and counts["comparison"] >= 3


def test_attribute_questions_are_asked_in_the_words_the_base_was_pretrained_on(clips):
    # The embedded base learnt attribute questions from the pretraining mixture (its IR format, its two option
    # orders); eval.prosody_tasks and algo=prosody_sft ask the same questions, so a base's hearing is measured in
    # words it knows (asked in other words, the shipped base answered none of them with an option).
    items, measured, levels = clips
    questions = ProsodyQuestions(items, levels, measured, comparison_share=0.0, seed=1)
    ir, orders = get_strategy("ir"), set()
    for index in range(len(questions)):
        task = questions.task(index)
        names = LEVEL_NAMES[task["attribute"]]
        asked = {tuple(order): ir.prompt(order, question=pretraining_tasks.ATTRIBUTE_QUESTIONS[task["attribute"]])
                 for order in (list(names), list(names)[::-1])}
        assert task["text"] in asked.values(), task["text"]
        orders.add(next(o for o, text in asked.items() if text == task["text"]) == tuple(names))
    assert orders == {True, False}  # both of the pretraining's option orders are drawn


def test_a_clip_without_a_clear_partner_gets_an_attribute_question(clips):
    items, measured, levels = clips
    flat = {p: measurement(150.0, 3.0, -20.0, 5.0) for p in measured}  # every clip sounds the same
    questions = ProsodyQuestions(items, levels, flat, comparison_share=1.0)
    assert questions.task_counts() == {"attribute": 12}


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda m, lv: m.pop(next(iter(m))), "have no measured prosody"),  # a clip was never measured
        (lambda m, lv: lv.update({p: {"contour": "flat"} for p in lv}), "no prosodic attribute could be measured"),
    ],
)
def test_clips_without_measurements_are_refused_by_name(clips, change, message):
    items, measured, levels = clips
    change(measured, levels)
    with pytest.raises(ValueError, match=message):
        questions = ProsodyQuestions(items, levels, measured, comparison_share=0.0)
        questions.task(0)


def test_a_comparison_batch_carries_both_clips_in_prompt_order(tiny, clips):
    """Two clips per question: the processor gets them in prompt order, each with its own placeholders,
    and only the answer tokens are supervised."""
    model, processor = tiny
    items, measured, levels = clips
    questions = ProsodyQuestions(items, levels, measured, comparison_share=1.0, seed=0)
    pairs = [i for i in range(12) if questions.task(i)["kind"] == "comparison"][:2]
    examples = [questions[i] for i in pairs]
    assert all(isinstance(e.audio, list) and len(e.audio) == 2 for e in examples)
    batch = Collator(processor)(examples)
    assert batch["input_features"].shape[0] == 4  # four clips, in order
    frames = batch["feature_attention_mask"].sum(-1).tolist()
    expected = [min(math.ceil(len(a) / 160), 400) for e in examples for a in e.audio]
    assert frames == pytest.approx(expected, abs=1)
    per_row = (batch["input_ids"] == model.config.audio_token_id).sum(-1).tolist()
    per_clip = [((f - 1) // 2 + 1 - 2) // 2 + 1 for f in frames]
    assert per_row == [per_clip[0] + per_clip[1], per_clip[2] + per_clip[3]]
    answers = [processor.tokenizer.decode(row[row != -100]) for row in batch["labels"]]
    assert answers == [e.target + "<|im_end|>" for e in examples]
    with torch.no_grad():
        loss = model(**{k: batch[k] for k in ("input_ids", "attention_mask", "input_features",
                                             "feature_attention_mask")}, labels=batch["labels"]).loss
    assert np.isfinite(float(loss))
    # GRPO's rollouts index audio by prompt: two clips per prompt are refused, not mismatched
    from emorl import rollout
    from emorl.models.loading import end_token_ids, suppressed_token_ids

    plain = {k: v for k, v in batch.items() if k != "labels"}
    with pytest.raises(ValueError, match="4 audio clips for 2 prompts"):
        rollout.sample(model, processor, plain, num_generations=2, max_new_tokens=2,
                       suppress_ids=suppressed_token_ids(processor), end_ids=end_token_ids(model, processor))


@pytest.mark.parametrize(
    "answer, right, offside",
    [
        ("high", True, False),  # the gold level
        (" High. ", True, False),  # case, spaces and a final period do not matter
        ("low", False, False),  # another level: wrong, but an option
        ("loud", False, True),  # a level of another attribute: not an option
        (None, False, True),  # no answer tag
    ],
)
def test_prosody_task_scores_per_answer(answer, right, offside):
    task = {"kind": "attribute", "attribute": "pitch", "answer": "high"}
    scores = prosody_task_scores([task], [answer])
    assert scores["accuracy"] == {"all": float(right), "attribute": float(right), "attribute/pitch": float(right)}
    assert scores["not_an_option"]["all"] == float(offside)


def test_prosody_task_accuracy_scores_each_answer_against_its_own_question(tiny, small_corpus, cache_dir, monkeypatch):
    """emorl.evaluate's prosody questions: one per test clip, asked without its answer (the prompt
    ends where the answer starts), each answer scored against its own question across batches:
    an oracle that answers every other question right scores exactly one half."""
    from emorl import rollout
    from emorl.evaluation import prosody_task_accuracy
    from emorl.modules.datamodule import EmotionDataModule
    from emorl.prompts import get_strategy

    model, processor = tiny
    strategy = get_strategy("ir")
    datamodule = EmotionDataModule(small_corpus, strategy, processor, cache_dir=str(cache_dir))
    datamodule.setup("test")
    items = datamodule.dataset("test").items
    same = ProsodyQuestions(items, datamodule.prosody_levels(items), datamodule.measurements, seed=datamodule.options_seed)
    golds = [same.task(i)["target"] for i in range(len(same))]
    prompts: list[str] = []

    def oracle(model, processor, batch, **kwargs):
        texts = processor.tokenizer.batch_decode(batch["input_ids"])
        first = len(prompts)
        prompts.extend(texts)
        answers = [golds[i] if i % 2 == 0 else "<answer>none</answer>" for i in range(first, first + len(texts))]
        return rollout.Rollout(prompt={}, prompt_index=torch.arange(len(texts)), completion_ids=torch.zeros(0),
                               completion_mask=torch.zeros(0), texts=answers)

    monkeypatch.setattr(rollout, "sample", oracle)
    scores = prosody_task_accuracy(model, processor, datamodule, strategy, batch_size=3)
    n = len(items)
    assert scores["n"]["all"] == n == len(prompts) == 14
    assert scores["accuracy"]["all"] == pytest.approx(7 / 14)
    assert scores["not_an_option"]["all"] == pytest.approx(7 / 14)  # "none" is no option
    assert all(p.endswith("<|im_start|>assistant\n") for p in prompts)  # no answer in any prompt


@pytest.mark.slow
def test_prosody_sft_trains_on_measured_prosody_and_exports_the_base_of_a_grpo_run(cfg_factory, tmp_path):
    """algo=prosody_sft: every training target is a prosody answer (never an emotion label), the
    last model is exported (no selection by emotion labels), and a GRPO run starts from it."""
    from emorl.train import train

    cfg = cfg_factory("algo=prosody_sft", "trainer.max_steps=3", "eval.base=false", "trainer.val_check_interval=3",
                      f"paths.output_dir={tmp_path / 'base'}")
    assert cfg.checkpoint.select == "last" and cfg.data.training_task == "prosody"
    metrics, objects = train(cfg)
    questions = objects["datamodule"].dataset("train")
    assert isinstance(questions, ProsodyQuestions)
    tasks = [questions.task(i) for i in range(len(questions))]
    assert metrics["data"]["prosody_tasks"] == questions.task_counts() and sum(questions.task_counts().values()) == 42
    answers = {t["target"].removeprefix("<answer>").removesuffix("</answer>") for t in tasks}
    assert answers <= {n for names in LEVEL_NAMES.values() for n in names} | {"first", "second"}
    assert not answers & set(objects["datamodule"].labels)
    assert metrics["train"]["steps"] == 3
    grpo = cfg_factory(f"model.pretrained={tmp_path / 'base' / 'model'}", "trainer.max_steps=1", "eval.base=false",
                       "checkpoint.select=last", "save_model=false", f"paths.output_dir={tmp_path / 'grpo'}")
    after, objects = train(grpo)
    assert after["train"]["steps"] == 1
    start = objects["module"].reference  # the frozen copy of the starting model: the prosody base's weights
    exported = type(start).from_pretrained(str(tmp_path / "base" / "model"))
    assert torch.equal(start.lm_head.weight, exported.lm_head.weight)


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"training_task": "prosody", "targets": True, "task_alternation": True}, "not with data.training_task=prosody"),
        ({"training_task": "prosody", "targets": False}, "needs algo=prosody_sft"),  # prosody answers are targets
        ({"training_task": "prosodie", "targets": True}, "'prosodie' is not one of emotion, prosody"),  # a typo
    ],
)
def test_prosody_training_settings_that_cannot_work_are_refused(small_corpus, settings, message):
    from emorl.modules.datamodule import EmotionDataModule
    from emorl.prompts import get_strategy

    with pytest.raises(ValueError, match=message):
        EmotionDataModule(small_corpus, get_strategy("ir"), **settings)
