"""Accuracy rewards: binary (BCR) and emotion-similarity-weighted (ESWR, EMO-RL eq. 8).

The answer is read from the response's single answer block and must name exactly one of the
question's options; anything else scores 0.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from emorl.emotions import label_set, pair_similarity, similarity_matrix
from emorl.prompts import ReasoningStrategy, get_strategy, parse_label
from emorl.rewards.format import completion_text
from emorl.rewards.schedules import AlphaSchedule, get_alpha_schedule, training_progress


def _predictions(completions, options_per_item, strategy: ReasoningStrategy) -> list[str | None]:
    return [
        parse_label(strategy.extract_answer(completion_text(c)), options)
        for c, options in zip(completions, options_per_item, strict=True)
    ]


def _check_labels(labels: Sequence[str], known: Sequence[str]) -> None:
    lowered = {k.lower() for k in known}
    for label in labels:
        if str(label).lower() not in lowered:
            raise ValueError(f"gold label {label!r} is not in the reward's label set {list(known)}")


def make_bcr_reward(labels, strategy: str | ReasoningStrategy = "ir") -> Callable[..., list[float]]:
    """Binary classification reward: 1 for the gold label, else 0.

    ``labels`` is the label set (a corpus name such as ``"meld"`` or a list). The callable
    takes ``completions`` and the gold ``label`` column; an ``options`` column, when given,
    overrides the options per item.

    >>> bcr = make_bcr_reward(["joy", "anger"])
    >>> bcr(["<answer>Joy</answer>", "<answer>joy or anger</answer>"], label=["joy", "joy"])
    [1.0, 0.0]
    """
    return BCRReward(labels, strategy)


class BCRReward:
    """BCR as a callable object (picklable)."""

    __name__ = "accuracy_bcr"

    def __init__(self, labels, strategy: str | ReasoningStrategy = "ir") -> None:
        self.labels = label_set(labels)
        self.strategy = get_strategy(strategy)

    def __call__(self, completions, label, options=None, **kwargs) -> list[float]:
        _check_labels(label, self.labels)
        opts = options if options is not None else [self.labels] * len(completions)
        preds = _predictions(completions, opts, self.strategy)
        return [float(p is not None and p.lower() == str(g).lower()) for p, g in zip(preds, label, strict=True)]


def make_eswr_reward(
    labels,
    gamma: float = 0.7,
    alpha_schedule: str | AlphaSchedule = "linear",
    strategy: str | ReasoningStrategy = "ir",
    alpha_horizon: float = 1.0,
    wheel: dict[str, str] | None = None,
) -> Callable[..., list[float]]:
    """Emotion similarity-weighted reward (eq. 8).

    1 for the gold label; ``alpha * S[pred, gold]`` when the similarity exceeds ``gamma``;
    else 0.  ``alpha`` follows ``alpha_schedule`` over training progress taken from
    ``trainer_state`` (``global_step / max_steps``), or is given explicitly as ``alpha=``.
    ``alpha_horizon`` is the fraction of training over which the schedule runs (1: all of it;
    0.5: alpha reaches its end value half-way and stays there).  ``wheel`` places labels emorl does not
    know on Plutchik's wheel (``dataset.wheel``).

    >>> eswr = make_eswr_reward("meld")
    >>> [round(r, 4) for r in eswr(["<answer>fear</answer>"] * 2, label=["surprise", "joy"], alpha=1.0)]
    [0.8536, 0.0]
    """
    return ESWRReward(labels, gamma, alpha_schedule, strategy, alpha_horizon, wheel)


class ESWRReward:
    """ESWR as a callable object (picklable); :meth:`alpha_at` is the alpha a step's rewards use."""

    __name__ = "accuracy_eswr"

    def __init__(self, labels, gamma: float = 0.7, alpha_schedule: str | AlphaSchedule = "linear",
                 strategy: str | ReasoningStrategy = "ir", alpha_horizon: float = 1.0,
                 wheel: dict[str, str] | None = None) -> None:
        if not 0.0 <= float(gamma) <= 1.0:
            raise ValueError(f"ESWR gamma must lie in [0, 1], got {gamma}")
        if not 0.0 < float(alpha_horizon) <= 1.0:
            raise ValueError(f"ESWR alpha_horizon must lie in (0, 1], got {alpha_horizon}")
        self.labels = label_set(labels)
        self.strategy = get_strategy(strategy)
        self.gamma, self.alpha_horizon = float(gamma), float(alpha_horizon)
        self.base_schedule = get_alpha_schedule(alpha_schedule)
        self.wheel = dict(wheel) if wheel else None
        try:
            self.matrix = similarity_matrix(self.labels, self.wheel)
        except KeyError as error:
            raise ValueError(str(error).strip("\"'")) from None
        self.index = {name.lower(): i for i, name in enumerate(self.labels)}

    def schedule(self, progress: float) -> float:
        return self.base_schedule(min(progress / self.alpha_horizon, 1.0))

    def alpha_at(self, trainer_state) -> float:
        return self.schedule(training_progress(trainer_state))

    def logged(self, trainer_state) -> dict[str, float]:
        """What the trainer logs of this reward's state at a step (``train/alpha``): the alpha its rewards use."""
        return {"alpha": self.alpha_at(trainer_state)}

    def __call__(self, completions, label, options=None, trainer_state=None, alpha=None, **kwargs) -> list[float]:
        _check_labels(label, self.labels)
        a = float(alpha) if alpha is not None else self.alpha_at(trainer_state)
        opts = options if options is not None else [self.labels] * len(completions)
        rewards = []
        for pred, gold in zip(_predictions(completions, opts, self.strategy), label, strict=True):
            if pred is None:
                rewards.append(0.0)
            elif pred.lower() == str(gold).lower():
                rewards.append(1.0)
            else:
                i, j = self.index.get(pred.lower()), self.index[str(gold).lower()]
                # an option outside the label set (another corpus's label) is compared on the wheel
                sim = float(self.matrix[i, j]) if i is not None else pair_similarity(pred, str(gold), self.wheel)
                rewards.append(a * sim if sim > self.gamma else 0.0)
        return rewards
