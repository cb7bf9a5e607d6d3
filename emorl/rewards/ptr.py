"""GRPO-PTR (EmotionThinker, ICLR 2026): a reasoning reward trusted only as far as it agrees with the outcome.

The total reward of a completion is ``w_format·format + w_outcome·outcome + w_reasoning·τ·reasoning``
(the paper: 0.3, 1.0, 0.5).  τ is computed per group of G completions of one prompt: 1 when the
correct completions' mean reasoning reward is at least the incorrect ones', else
``exp(mean_correct - mean_incorrect)`` (< 1): a reasoning scorer that prefers wrong answers is
trusted less.  The reasoning term is switched on progressively: from ``start_step`` on, and only
for batches whose sampled accuracy reaches ``accuracy_threshold`` (the paper switches it on once
training accuracy reaches about 50%).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch

from emorl.rewards.combine import RewardSet


def group_trust(outcome: torch.Tensor, reasoning: torch.Tensor, group_size: int) -> torch.Tensor:
    """τ per completion (each group's value repeated over its G completions).

    Args:
        outcome: (N,) 1 for a correct completion, 0 otherwise (N = groups × G, groups contiguous).
        reasoning: (N,) reasoning rewards (NaN where the scorer gave none: left out of the means).
        group_size: G.

    Returns:
        (N,) τ: 1 where the group's correct completions' mean reasoning reward is at least the
        incorrect ones' (or where the group lacks either kind), else ``exp(difference)``.

    >>> [round(t, 6) for t in group_trust(torch.tensor([1., 0., 1., 0.]), torch.tensor([0.2, 0.8, 0.9, 0.1]), 2).tolist()]
    [0.548812, 0.548812, 1.0, 1.0]
    """
    if outcome.shape != reasoning.shape or outcome.numel() % group_size:
        raise ValueError(f"group_trust: outcome {tuple(outcome.shape)} and reasoning {tuple(reasoning.shape)} "
                         f"must be the same (groups x {group_size},) shape")
    correct = (outcome > 0.5).view(-1, group_size)
    scored = torch.nan_to_num(reasoning, nan=0.0).view(-1, group_size)
    present = ~torch.isnan(reasoning).view(-1, group_size)
    taus = []
    for c, r, p in zip(correct, scored, present, strict=True):
        right, wrong = c & p, ~c & p
        if right.any() and wrong.any():
            difference = float(r[right].mean() - r[wrong].mean())
            taus.append(1.0 if difference >= 0 else math.exp(difference))
        else:
            taus.append(1.0)
    return torch.tensor(taus, dtype=torch.float32).repeat_interleave(group_size)


def reasoning_switch(step: int, batch_accuracy: float, start_step: int = 0, accuracy_threshold: float = 0.0) -> bool:
    """Whether the reasoning term counts for this batch (the progressive schedule).

    >>> reasoning_switch(10, 0.6, start_step=20), reasoning_switch(30, 0.4, 20, 0.5), reasoning_switch(30, 0.5, 20, 0.5)
    (False, False, True)
    """
    return step >= start_step and batch_accuracy >= accuracy_threshold


@dataclass
class PTRRewardSet(RewardSet):
    """:class:`RewardSet` whose total weighs the reasoning component by the group's τ and the schedule.

    ``outcome`` and ``reasoning`` name the components (the accuracy reward and the reasoning
    scorer); the other components are summed with their weights as usual.  ``use_tau=False`` and
    ``start_step=0, accuracy_threshold=0`` give the ablations (no τ, no schedule).  Adds the
    components ``tau`` and ``reasoning_on``, which are no reward functions: the GRPO module logs them as
    ``train/reward_info/*``, beside the rewards (not part of the total).
    """

    outcome: str = "accuracy"
    reasoning: str = "reasoning"
    use_tau: bool = True
    start_step: int = 0
    accuracy_threshold: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        for role in ("outcome", "reasoning"):
            if getattr(self, role) not in self.functions:
                raise ValueError(f"reward.combine.{role}={getattr(self, role)!r} names no reward component; "
                                 f"components: {sorted(self.functions)}")

    def __call__(self, completions: list[str], group_size: int = 1, trainer_state=None, **columns):
        _, parts = super().__call__(completions, trainer_state=trainer_state, **columns)
        outcome, reasoning = parts[self.outcome], parts[self.reasoning]
        tau = group_trust(outcome, reasoning, group_size) if self.use_tau else torch.ones_like(outcome)
        step = int(getattr(trainer_state, "global_step", 0) or 0)
        on = reasoning_switch(step, float(outcome.mean()), self.start_step, self.accuracy_threshold)
        total = torch.zeros(len(completions))
        for name, values in parts.items():
            weight = self.weights.get(name, 1.0)
            if name == self.reasoning:
                values = tau * values if on else torch.zeros_like(values)
            total = total + weight * torch.nan_to_num(values, nan=0.0)
        parts["tau"] = tau
        parts["reasoning_on"] = torch.full((len(completions),), float(on))
        return total, parts


def make_ptr_combiner(outcome: str = "accuracy", reasoning: str = "reasoning", use_tau: bool = True,
                      start_step: int = 0, accuracy_threshold: float = 0.0) -> Callable[[Mapping, Mapping], PTRRewardSet]:
    """``reward.combine``'s factory: ``(functions, weights) -> PTRRewardSet``."""

    def combine(functions, weights):
        return PTRRewardSet(functions, weights, outcome=outcome, reasoning=reasoning, use_tau=use_tau,
                            start_step=start_step, accuracy_threshold=accuracy_threshold)

    return combine
