"""A test-only reward component, chosen by configuration like any other (``_target_``).

The untrained test base earns no format or accuracy reward (zero advantages, no update);
completion lengths vary inside every group, so a length reward moves the weights.  Runs started
from the project root select it with :data:`LENGTH_REWARD` (``tests`` is importable there, also
in the extra processes Lightning starts for DDP and DeepSpeed).
"""

from __future__ import annotations


def make_length_reward(labels=None, strategy=None, per_char: float = 0.1, only=None):
    """Score a completion by its length in characters (``only``: for questions of these gold labels, else 0).

    >>> make_length_reward()(["abc", ""])
    [0.30000000000000004, 0.0]
    >>> make_length_reward(only=["joy"])(["abc", "abc"], label=["joy", "anger"])
    [0.30000000000000004, 0.0]
    """

    def length(completions, label=None, **kwargs) -> list[float]:
        gold = label if label is not None else [None] * len(completions)
        return [len(c) * per_char if only is None or y in only else 0.0 for c, y in zip(completions, gold, strict=True)]

    return length


def make_char_reward(labels=None, strategy=None, char: str = "e", sign: float = 1.0):
    """``sign`` x the share of a completion's characters that are ``char``.

    The completion made of ``char`` alone earns the most (``sign`` 1) or the least (-1); every
    sampled completion earns something in between, so groups always hold different rewards.

    >>> make_char_reward(char="e", sign=-1.0)(["eeee", "ea", "x", ""])
    [-1.0, -0.5, -0.0, -0.0]
    """

    def share(completions, **kwargs) -> list[float]:
        return [sign * c.count(char) / max(len(c), 1) for c in completions]

    return share


#: Overrides that score completions by length alone.
LENGTH_REWARD = ["reward.format=null", "reward.accuracy=null", "+reward.length={_target_: tests.rewards.make_length_reward}"]


def make_grounding_probe_reward(labels=None, strategy=None):
    """1 for a completion whose clip came with measured prosody levels and a transcript, else 0:
    shows that the data module's measurements reach reward functions as columns."""
    levels = {"pitch": {"low", "medium", "high"}, "speed": {"slow", "medium", "fast"}}

    def probe(completions, prosody=None, transcript=None, **kwargs) -> list[float]:
        if prosody is None or transcript is None:
            return [0.0] * len(completions)
        return [float(bool(p) and all(p.get(a) in ok for a, ok in levels.items()) and bool(t))
                for p, t in zip(prosody, transcript, strict=True)]

    return probe
