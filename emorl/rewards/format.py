"""Format reward (EMO-RL section 3.3.1, eq. 6): 1 when a response follows its strategy's format, else 0.

Two rules, chosen by name:

* ``paper`` (the default): the paper's rule.  For IR, which asks for the answer alone, "the
  reward is granted only when the final answer is both correct and correctly delimited by
  <answer> tags"; for EUR and ESR the structure alone earns it.
* ``structure``: the structure alone earns it, for every strategy (IR's format reward is then a
  bonus for any well-tagged answer, right or wrong).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from emorl.prompts import ReasoningStrategy, get_strategy, parse_label


def completion_text(completion) -> str:
    """Text of a completion, given as a string or as TRL's conversational message list."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion and isinstance(completion[-1], dict):
        return str(completion[-1].get("content", ""))
    raise TypeError(f"completion must be a string or a list of messages, got {type(completion).__name__}")


FORMAT_RULES = ("paper", "structure")


def answer_must_be_correct(strategy: ReasoningStrategy, rule: str) -> bool:
    """Whether ``rule`` grants ``strategy``'s format reward only to a correct answer.

    >>> answer_must_be_correct(get_strategy("ir"), "paper"), answer_must_be_correct(get_strategy("esr"), "paper")
    (True, False)
    >>> answer_must_be_correct(get_strategy("ir"), "structure")
    False
    """
    if rule not in FORMAT_RULES:
        raise ValueError(f"Unsupported format rule: {rule!r}. Supported format rules are: {list(FORMAT_RULES)}")
    return rule == "paper" and strategy.think_tag is None


def make_format_reward(
    strategy: str | ReasoningStrategy, labels: Sequence[str] | None = None, rule: str = "paper"
) -> Callable[..., list[float]]:
    """Binary format reward for a reasoning strategy (``ir``, ``eur``, ``esr`` or an object).

    Under ``rule="paper"`` an IR response also needs the correct answer, so the reward function
    then takes the gold ``label`` column (and ``options``, when the question's options differ
    from ``labels``).

    >>> reward = make_format_reward("eur")
    >>> reward(["<think>calm voice</think><answer>neutral</answer>", "<answer>neutral</answer>"])
    [1.0, 0.0]
    >>> ir = make_format_reward("ir", labels=["joy", "anger"])
    >>> ir(["<answer>joy</answer>", "<answer>anger</answer>", "joy"], label=["joy", "joy", "joy"])
    [1.0, 0.0, 0.0]
    """
    return FormatReward(strategy, labels, rule)


class FormatReward:
    """The format reward as a callable object (picklable, as TRL's reward functions are to its workers)."""

    def __init__(self, strategy: str | ReasoningStrategy, labels: Sequence[str] | None = None, rule: str = "paper"):
        self.strategy = get_strategy(strategy)
        self.rule = rule
        self.needs_answer = answer_must_be_correct(self.strategy, rule)
        self.known = list(labels) if labels is not None else None
        self.__name__ = f"format_{self.strategy.name}"

    def __call__(self, completions, label=None, options=None, **kwargs) -> list[float]:
        texts = [completion_text(c) for c in completions]
        follows = [self.strategy.follows_format(t) for t in texts]
        if not self.needs_answer:
            return [float(f) for f in follows]
        if label is None:
            raise ValueError(
                f"the paper's {self.strategy.name.upper()} format reward needs the gold answer: pass label=, "
                "or build it with rule='structure'"
            )
        opts = options if options is not None else [self.known] * len(texts)
        if any(o is None for o in opts):
            raise ValueError("the paper's IR format reward needs the options: pass options= or build it with labels=")
        out = []
        for text, ok, gold, choices in zip(texts, follows, label, opts, strict=True):
            answer = parse_label(self.strategy.extract_answer(text), choices) if ok else None
            out.append(float(answer is not None and answer.lower() == str(gold).lower()))
        return out
