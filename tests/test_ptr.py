"""GRPO-PTR: tau per group on hand-computed groups, the progressive schedule, and the ablation switches."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from emorl.rewards.ptr import PTRRewardSet, group_trust, reasoning_switch

TAU_CASES = [
    # (outcome, reasoning, G, expected tau per completion, why)
    ([1, 0, 1, 0], [0.9, 0.1, 0.6, 0.6], 2, [1.0, 1.0, 1.0, 1.0], "correct ones reason at least as well: 1"),
    ([1, 0], [0.2, 0.8], 2, [math.exp(-0.6)] * 2, "correct reasons worse by 0.6: exp(-0.6)"),
    ([1, 1, 0, 0], [0.0, 0.4, 0.5, 0.9], 4, [math.exp(0.2 - 0.7)] * 4, "means of each kind: 0.2 vs 0.7"),
    ([1, 1, 1], [0.0, 0.0, 0.0], 3, [1.0] * 3, "all correct: nothing to compare"),
    ([0, 0, 0], [1.0, 0.0, 0.5], 3, [1.0] * 3, "all wrong: nothing to compare"),
    ([1, 0, 0], [float("nan"), 0.9, 0.1], 3, [1.0] * 3, "the correct one was not scored: no comparison"),
    ([1, 0, 0], [0.2, float("nan"), 0.6], 3, [math.exp(-0.4)] * 3, "an unscored wrong one is left out of the mean"),
]


@pytest.mark.parametrize("outcome,reasoning,g,expected,why", TAU_CASES)
def test_tau_on_hand_computed_groups(outcome, reasoning, g, expected, why):
    tau = group_trust(torch.tensor(outcome, dtype=torch.float32), torch.tensor(reasoning), g)
    assert tau.tolist() == pytest.approx(expected, abs=1e-6), why


@pytest.mark.parametrize("step,accuracy,start,threshold,on", [
    (0, 1.0, 50, 0.0, False),    # before the start step
    (50, 0.49, 50, 0.5, False),  # accuracy below the threshold
    (50, 0.5, 50, 0.5, True),    # both reached
    (0, 0.0, 0, 0.0, True),      # no schedule: always on
])
def test_the_reasoning_term_switches_on_where_configured(step, accuracy, start, threshold, on):
    assert reasoning_switch(step, accuracy, start, threshold) is on


def _set(**kwargs):
    functions = {
        "format": lambda completions, **kw: [1.0] * len(completions),
        "accuracy": lambda completions, label=None, **kw: [float(c == y) for c, y in zip(completions, label, strict=True)],
        "reasoning": lambda completions, score=None, **kw: list(score),
    }
    return PTRRewardSet(functions, {"format": 0.3, "accuracy": 1.0, "reasoning": 0.5}, **kwargs)


def test_total_is_format_outcome_and_trusted_reasoning():
    # one group of 2: the correct answer reasons worse (0.2 vs 0.8): tau = exp(-0.6)
    completions, label, score = ["joy", "anger"], ["joy", "joy"], [0.2, 0.8]
    state = SimpleNamespace(global_step=100)
    tau = math.exp(-0.6)
    total, parts = _set(start_step=10, accuracy_threshold=0.5)(completions, group_size=2, trainer_state=state,
                                                               label=label, score=score)
    assert total.tolist() == pytest.approx([0.3 + 1.0 + 0.5 * tau * 0.2, 0.3 + 0.5 * tau * 0.8])
    assert parts["tau"].tolist() == pytest.approx([tau, tau]) and parts["reasoning_on"].tolist() == [1.0, 1.0]
    # without tau (ablation): the scorer's values as they are
    total, _ = _set(use_tau=False)(completions, group_size=2, trainer_state=state, label=label, score=score)
    assert total.tolist() == pytest.approx([0.3 + 1.0 + 0.1, 0.3 + 0.4])
    # before the start step: no reasoning term
    total, parts = _set(start_step=200)(completions, group_size=2, trainer_state=state, label=label, score=score)
    assert total.tolist() == pytest.approx([1.3, 0.3]) and parts["reasoning_on"].tolist() == [0.0, 0.0]


def test_the_combiner_names_components_that_exist():
    with pytest.raises(ValueError, match="reward.combine.reasoning='judge' names no reward component"):
        _set(reasoning="judge")
