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
    labels = label_set(labels)
    strategy = get_strategy(strategy)

    def accuracy_bcr(completions, label, options=None, **kwargs) -> list[float]:
        _check_labels(label, labels)
        opts = options if options is not None else [labels] * len(completions)
        preds = _predictions(completions, opts, strategy)
        return [float(p is not None and p.lower() == str(g).lower()) for p, g in zip(preds, label, strict=True)]

    return accuracy_bcr


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
    if not 0.0 <= float(gamma) <= 1.0:
        raise ValueError(f"ESWR gamma must lie in [0, 1], got {gamma}")
    if not 0.0 < float(alpha_horizon) <= 1.0:
        raise ValueError(f"ESWR alpha_horizon must lie in (0, 1], got {alpha_horizon}")
    labels = label_set(labels)
    strategy = get_strategy(strategy)
    base_schedule = get_alpha_schedule(alpha_schedule)

    def schedule(progress: float) -> float:
        return base_schedule(min(progress / alpha_horizon, 1.0))

    try:
        matrix = similarity_matrix(labels, wheel)
    except KeyError as error:
        raise ValueError(str(error).strip("\"'")) from None
    index = {name.lower(): i for i, name in enumerate(labels)}

    def accuracy_eswr(completions, label, options=None, trainer_state=None, alpha=None, **kwargs) -> list[float]:
        _check_labels(label, labels)
        a = float(alpha) if alpha is not None else schedule(training_progress(trainer_state))
        opts = options if options is not None else [labels] * len(completions)
        rewards = []
        for pred, gold in zip(_predictions(completions, opts, strategy), label, strict=True):
            if pred is None:
                rewards.append(0.0)
            elif pred.lower() == str(gold).lower():
                rewards.append(1.0)
            else:
                i, j = index.get(pred.lower()), index[str(gold).lower()]
                # an option outside the label set (another corpus's label) is compared on the wheel
                s = float(matrix[i, j]) if i is not None else pair_similarity(pred, str(gold), wheel)
                rewards.append(a * s if s > gamma else 0.0)
        return rewards

    accuracy_eswr.alpha_at = lambda trainer_state: schedule(training_progress(trainer_state))
    return accuracy_eswr
