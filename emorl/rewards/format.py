"""Format reward (EMO-RL eq. 6): 1 when a response follows its strategy's structure, else 0."""

from __future__ import annotations

from collections.abc import Callable

from emorl.prompts import ReasoningStrategy, get_strategy


def completion_text(completion) -> str:
    """Text of a completion, given as a string or as TRL's conversational message list."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion and isinstance(completion[-1], dict):
        return str(completion[-1].get("content", ""))
    raise TypeError(f"completion must be a string or a list of messages, got {type(completion).__name__}")


def make_format_reward(strategy: str | ReasoningStrategy) -> Callable[..., list[float]]:
    """Binary format reward for a reasoning strategy (``ir``, ``eur``, ``esr`` or an object).

    >>> reward = make_format_reward("eur")
    >>> reward(["<think>calm voice</think><answer>neutral</answer>", "<answer>neutral</answer>"])
    [1.0, 0.0]
    """
    strategy = get_strategy(strategy)

    def format_reward(completions, **kwargs) -> list[float]:
        return [float(strategy.follows_format(completion_text(c))) for c in completions]

    format_reward.__name__ = f"format_{strategy.name}"
    format_reward.strategy = strategy
    return format_reward
