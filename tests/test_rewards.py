"""Rewards in TRL's convention: format (eq. 6), BCR, ESWR (eq. 8) and their sum (eq. 4)."""

import math
from types import SimpleNamespace

import pytest
import torch

from emorl.rewards import make_bcr_reward, make_eswr_reward, make_format_reward
from emorl.rewards.combine import RewardSet
from emorl.rewards.schedules import get_alpha_schedule

ADJ = 0.5 * (math.cos(math.radians(45)) + 1)
MELD = ["neutral", "joy", "sadness", "anger", "fear", "disgust", "surprise"]


def ans(label):
    return f"<answer>{label}</answer>"


BCR_CASES = [
    # (completion, gold, expected, why)
    (ans("joy"), "joy", 1.0, "correct"),
    (ans(" Joy. "), "joy", 1.0, "case, spaces, trailing period"),
    (ans("anger"), "joy", 0.0, "wrong"),
    (ans("fear"), "surprise", 0.0, "a near miss earns nothing under BCR"),
    (ans("joy or anger"), "joy", 0.0, "hedge with the gold label inside"),
    (ans("joy") + ans("joy"), "joy", 0.0, "two answer blocks"),
    ("joy", "joy", 0.0, "no answer block"),
    (ans("happiness"), "joy", 0.0, "not one of the options"),
    ("<think>joy</think>" + ans("neutral"), "joy", 0.0, "only the answer block counts"),
]


@pytest.mark.parametrize("completion,gold,expected,why", BCR_CASES)
def test_bcr(completion, gold, expected, why):
    assert make_bcr_reward(MELD)([completion], label=[gold]) == [expected], why


ESWR_CASES = [
    # (completion, gold, alpha, expected, why)
    (ans("surprise"), "surprise", 0.3, 1.0, "exact match is 1 whatever alpha"),
    (ans("neutral"), "neutral", 0.0, 1.0, "exact neutral match is 1 (not eq. 7's literal 1/2)"),
    (ans("fear"), "surprise", 1.0, ADJ, "wheel neighbours: alpha * S"),
    (ans("fear"), "surprise", 0.5, 0.5 * ADJ, "alpha scales the partial credit"),
    (ans("disgust"), "anger", 0.0, 0.0, "alpha 0: no partial credit left"),
    (ans("joy"), "fear", 1.0, 0.0, "90 degrees: S = 0.5 <= gamma"),
    (ans("neutral"), "sadness", 1.0, 0.0, "neutral vs emotion: S = 0.5 <= gamma"),
    (ans("joy"), "sadness", 1.0, 0.0, "opposites"),
    (ans("fear or surprise"), "surprise", 1.0, 0.0, "hedge"),
    ("surprise", "surprise", 1.0, 0.0, "no answer block"),
]


@pytest.mark.parametrize("completion,gold,alpha,expected,why", ESWR_CASES)
def test_eswr_with_explicit_alpha(completion, gold, alpha, expected, why):
    got = make_eswr_reward(MELD)([completion], label=[gold], alpha=alpha)
    assert got == [pytest.approx(expected, abs=1e-6)], why


def test_eswr_alpha_follows_trainer_state():
    reward = make_eswr_reward("meld", alpha_schedule="linear")
    for step, alpha in [(0, 1.0), (25, 0.75), (100, 0.0), (150, 0.0)]:
        state = SimpleNamespace(global_step=step, max_steps=100)
        assert reward([ans("fear")], label=["surprise"], trainer_state=state) == [pytest.approx(alpha * ADJ)]
    cosine = make_eswr_reward("meld", alpha_schedule="cosine")
    assert cosine([ans("fear")], label=["surprise"], trainer_state=SimpleNamespace(global_step=50, max_steps=100)) == [
        pytest.approx(0.5 * ADJ)
    ]


def test_eswr_gamma_moves_the_threshold():
    strict = make_eswr_reward(MELD, gamma=0.9)
    assert strict([ans("fear")], label=["surprise"], alpha=1.0) == [0.0]
    lenient = make_eswr_reward(MELD, gamma=0.4)
    assert lenient([ans("joy")], label=["fear"], alpha=1.0) == [pytest.approx(0.5)]


@pytest.mark.parametrize("gamma", [-0.1, 1.5])
def test_eswr_gamma_outside_unit_interval_is_refused(gamma):
    with pytest.raises(ValueError, match="gamma"):
        make_eswr_reward(MELD, gamma=gamma)


def test_eswr_without_progress_or_alpha_says_what_to_pass():
    with pytest.raises(ValueError, match="trainer_state"):
        make_eswr_reward(MELD)([ans("joy")], label=["joy"])


def test_unknown_schedule_lists_valid_names():
    with pytest.raises(ValueError, match=r"\['constant', 'cosine', 'linear'\]"):
        get_alpha_schedule("exp")


def test_gold_label_outside_label_set_is_an_error():
    with pytest.raises(ValueError, match="'boredom'"):
        make_bcr_reward(MELD)([ans("joy")], label=["boredom"])


def test_each_completion_is_scored_against_its_own_label():
    completions = [ans("joy"), ans("anger"), ans("joy"), ans("anger")]
    labels = ["joy", "joy", "anger", "anger"]
    assert make_bcr_reward(MELD)(completions, label=labels) == [1.0, 0.0, 0.0, 1.0]


def test_conversational_completions_and_extra_columns_as_trl_passes_them():
    completions = [[{"role": "assistant", "content": ans("joy")}], [{"role": "assistant", "content": "joy"}]]
    extra = dict(prompts=["p", "p"], completion_ids=[[1], [2]], trainer_state=SimpleNamespace(global_step=0, max_steps=1))
    assert make_bcr_reward(MELD)(completions, label=["joy", "joy"], **extra) == [1.0, 0.0]
    assert make_format_reward("ir", MELD)(completions, label=["joy", "joy"], **extra) == [1.0, 0.0]
    assert make_eswr_reward(MELD)(completions, label=["joy", "joy"], **extra) == [1.0, 0.0]


def test_total_is_format_plus_accuracy_and_components_stay_separate():
    rewards = RewardSet(
        {"format": make_format_reward("eur"), "accuracy": make_bcr_reward(MELD)}, {"format": 1.0, "accuracy": 1.0}
    )
    completions = ["<think>x</think>" + ans("joy"), ans("joy"), "<think>x</think>" + ans("anger"), "nothing"]
    total, parts = rewards(completions, label=["joy"] * 4)
    assert parts["format"].tolist() == [1.0, 0.0, 1.0, 0.0]
    assert parts["accuracy"].tolist() == [1.0, 1.0, 0.0, 0.0]
    assert torch.equal(total, torch.tensor([2.0, 1.0, 1.0, 0.0]))
    with pytest.raises(ValueError, match="unknown components"):
        RewardSet({"format": make_format_reward("eur")}, {"acc": 1.0})


def test_eswr_alpha_horizon_ends_the_decay_early():
    reward = make_eswr_reward(MELD, alpha_horizon=0.5)
    at = lambda step: reward([ans("fear")], label=["surprise"], trainer_state=SimpleNamespace(global_step=step, max_steps=100))
    assert at(25) == [pytest.approx(0.5 * ADJ)]  # half-way through the horizon
    assert at(50) == [0.0] and at(90) == [0.0]
    with pytest.raises(ValueError, match="alpha_horizon"):
        make_eswr_reward(MELD, alpha_horizon=0.0)


def test_eswr_scores_options_from_another_label_set_on_the_wheel():
    # cross-corpus questions may list a label the reward's set lacks (RAVDESS "fearful")
    reward = make_eswr_reward(MELD)
    options = [("fearful", "surprise", "joy")]
    assert reward([ans("fearful")], label=["surprise"], options=options, alpha=1.0) == [pytest.approx(ADJ)]
    assert reward([ans("joy")], label=["surprise"], options=options, alpha=1.0) == [0.0]


FORMAT_RULE_CASES = [
    # (strategy, rule, completion, gold, expected, why)
    ("ir", "paper", ans("joy"), "joy", 1.0, "IR, paper: tagged and correct"),
    ("ir", "paper", ans("anger"), "joy", 0.0, "IR, paper: tagged but wrong earns no format reward (section 3.3.1)"),
    ("ir", "paper", ans(" Joy. "), "joy", 1.0, "IR, paper: the answer is parsed as for accuracy"),
    ("ir", "paper", ans("happiness"), "joy", 0.0, "IR, paper: not an option"),
    ("ir", "paper", "joy", "joy", 0.0, "IR, paper: correct but not delimited"),
    ("ir", "paper", "I think " + ans("joy"), "joy", 0.0, "IR, paper: correct but text outside the tags"),
    ("ir", "structure", ans("anger"), "joy", 1.0, "IR, structure: any well-tagged answer"),
    ("ir", "structure", "joy", "joy", 0.0, "IR, structure: no tags"),
    ("eur", "paper", "<think>x</think>" + ans("anger"), "joy", 1.0, "EUR, paper: structure alone, a wrong answer too"),
    ("eur", "paper", ans("joy"), "joy", 0.0, "EUR, paper: the think block is missing"),
    ("esr", "paper", "<think>x</think>" + ans("joy"), "joy", 0.0, "ESR, paper: the four sections are missing"),
]


@pytest.mark.parametrize("strategy,rule,completion,gold,expected,why", FORMAT_RULE_CASES)
def test_format_reward_rules(strategy, rule, completion, gold, expected, why):
    reward = make_format_reward(strategy, MELD, rule=rule)
    assert reward([completion], label=[gold]) == [expected], why


def test_the_paper_rule_is_the_default_and_needs_the_gold_label():
    assert make_format_reward("ir", MELD)([ans("anger")], label=["joy"]) == [0.0]
    with pytest.raises(ValueError, match="label="):
        make_format_reward("ir", MELD)([ans("joy")])
    with pytest.raises(ValueError, match=r"Supported format rules are: \['paper', 'structure'\]"):
        make_format_reward("ir", MELD, rule="loose")
    # the question's own options decide what parses (cross-corpus questions)
    assert make_format_reward("ir")([ans("fearful")], label=["fearful"], options=[("fearful", "calm")]) == [1.0]


@pytest.mark.parametrize("make", [
    lambda: make_format_reward("ir", MELD),  # the paper's IR format rule (needs the answer)
    lambda: make_bcr_reward(MELD),
    lambda: make_eswr_reward(MELD, alpha_schedule="cosine"),
])
def test_rewards_are_picklable_and_score_the_same_after_a_round_trip(make):
    import pickle

    reward = make()
    copy = pickle.loads(pickle.dumps(reward))
    completions = ["<answer>fear</answer>", "<answer>joy</answer>", "joy"]
    columns = {"label": ["surprise", "joy", "joy"], "alpha": 1.0}
    assert copy(completions, **columns) == reward(completions, **columns)
    assert copy.__name__ == reward.__name__
