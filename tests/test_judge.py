"""The rubric judge reward (EmotionThinker's reasoning scorer) with a tiny local judge."""

from __future__ import annotations

import pytest
import torch

from emorl.prompts import get_strategy
from emorl.rewards.judge import RUBRIC, expected_score, judge_prompt, make_judge_reward, reference_facts, rubric_reward
from tests.judges import build_tiny_judge, explanation

NEG = -1e9


@pytest.mark.parametrize(
    "logits, expected",
    [
        ([0, 0, 0, 0, 0], 3.0),  # no preference: the middle of the scale
        ([NEG, NEG, NEG, NEG, 0], 5.0),  # certain of 5
        ([0, NEG, NEG, NEG, NEG], 1.0),  # certain of 1
        ([NEG, NEG, NEG, 0, 0], 4.5),  # torn between 4 and 5
        ([0, NEG, NEG, NEG, 0], 3.0),  # torn between the extremes: the mean, not a mode
        ([100, 100, 100, 100, 101], 3.0 + 2 * (torch.e - 1) / (torch.e + 4)),  # shift-invariant softmax
    ],
)
def test_expected_score_is_the_mean_digit_under_the_restricted_distribution(logits, expected):
    assert expected_score(torch.tensor([logits], dtype=torch.float32)).item() == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize(
    "scores, expected",
    [
        ([5, 5, 5, 5], 1.0),  # best on every dimension
        ([1, 1, 1, 1], 0.0),  # worst on every dimension
        ([3, 3, 3, 3], 0.5),  # middling
        ([5, 1], 0.5),  # two dimensions: their mean
        ([2, 4, 4, 2], 0.5),
    ],
)
def test_rubric_reward_maps_ratings_to_the_unit_interval(scores, expected):
    assert rubric_reward(torch.tensor([scores], dtype=torch.float32)).item() == pytest.approx(expected)


def test_the_judges_question_holds_the_facts_the_reasoning_and_the_criterion():
    facts = reference_facts("anger", {"pitch": "high", "volume": "loud"}, "Get out now")
    prompt = judge_prompt("factual_alignment", facts, "  the voice is loud  ")
    for part in ('transcript: "Get out now"', "measured prosody: pitch high, volume loud", "emotion: anger",
                 "Explanation:\nthe voice is loud\n", RUBRIC["factual_alignment"]):
        assert part in prompt, part
    assert prompt.endswith("Score: ")
    assert reference_facts(None, None, "  ") == ""  # nothing known: no fact lines
    assert "(none)" in judge_prompt("fluency", "", "x")
    with pytest.raises(ValueError, match="rubric dimension 'style'"):
        judge_prompt("style", facts, "x")


@pytest.fixture(scope="module")
def judge_dir(tmp_path_factory):
    return build_tiny_judge(tmp_path_factory.mktemp("judge"))


def test_the_judge_rates_each_completion_whatever_the_batching(judge_dir):
    """The tiny judge rates 5 a reasoning that calls the voice tense and 1 one that calls it calm:
    every completion gets its own rating, whatever the batch size and padding (lengths differ)."""
    completions = [explanation(" tense"), explanation(" calm", 6), "", explanation(" tense", 12),
                   explanation(" calm"), "no reasoning here " * 3]
    # the empty completion is not judged (0); the plain text names neither word: the judge is torn (3 -> 0.5)
    expected = [1.0, 0.0, 0.0, 1.0, 0.0, 0.5]
    columns = dict(label=["anger"] * 6, prosody=[{"pitch": "high"}] * 6, transcript=["stop it"] * 6)
    for batch_size in (1, 4, 64):  # one prompt per forward, batches cutting through completions, one batch
        reward = make_judge_reward(model=str(judge_dir), batch_size=batch_size)
        assert reward(completions, **columns) == pytest.approx(expected, abs=1e-4), batch_size
    # reversed input, reversed ratings: no completion takes another's
    assert reward(completions[::-1], **columns) == pytest.approx(expected[::-1], abs=1e-4)


def test_only_the_think_section_is_judged_and_empty_reasoning_never_reaches_the_judge(judge_dir):
    esr = get_strategy("esr")
    reward = make_judge_reward(strategy=esr, model=str(judge_dir), dimensions=["factual_alignment", "fluency"])
    outside = "<think><synthesis>the voice sounds calm</synthesis></think><answer>tense</answer>"
    inside = "<think><synthesis>the voice sounds tense</synthesis></think><answer>calm</answer>"
    assert reward(["<answer>anger</answer>", "<think>  </think><answer>x</answer>"]) == [0.0, 0.0]
    assert reward.judge._model is None, "nothing to judge: the judge is not even loaded"
    assert reward([outside, inside]) == pytest.approx([0.0, 1.0], abs=1e-4)


@pytest.mark.parametrize(
    "settings, error, message",
    [
        ({}, ValueError, r"reward\.scorers\.judge\.model=<folder>"),  # no judge named
        ({"model": "/no/such/judge"}, FileNotFoundError, r"/no/such/judge: no such judge model folder"),  # a typo'd folder
        ({"model": "org/judge", "dimensions": ["factual_alignment", "style"]}, ValueError, r"'style'"),  # unknown dimension
        ({"model": "org/judge", "dimensions": []}, ValueError, r"each must be one of"),  # no dimension
    ],
)
def test_bad_judge_settings_are_refused_when_the_reward_is_built(settings, error, message):
    with pytest.raises(error, match=message):
        make_judge_reward(**settings)


def test_reward_ptr_takes_the_judge_as_its_scorer(cfg_factory, judge_dir):
    from emorl import builders

    cfg = cfg_factory("reward=ptr", "reasoning=esr", "reward.scorer=judge", f"reward.scorers.judge.model={judge_dir}")
    rewards = builders.build_rewards(cfg.reward, get_strategy("esr"), ["anger", "joy"])
    assert rewards.functions["reasoning"].__name__ == "rubric_judge" and rewards.weights["reasoning"] == 0.5
    default = builders.build_rewards(cfg_factory("reward=ptr", "reasoning=esr").reward, get_strategy("esr"), ["anger"])
    assert default.functions["reasoning"].__name__ == "grounding"
    with pytest.raises(ValueError, match=r"reward\.scorer 'judg' is not one of \['grounding', 'judge'\]"):
        builders.check_run_settings(cfg_factory("reward=ptr", "reasoning=esr", "reward.scorer=judg"))
