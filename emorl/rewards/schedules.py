"""Schedules of ESWR's partial-credit coefficient alpha (eq. 8: alpha goes from 1 to 0).

Each schedule maps training progress ``p`` in [0, 1] to alpha in [0, 1].
"""

from __future__ import annotations

import math
from collections.abc import Callable

AlphaSchedule = Callable[[float], float]


def linear(p: float) -> float:
    """alpha = 1 - p."""
    return 1.0 - p


def cosine(p: float) -> float:
    """alpha = (1 + cos(pi p)) / 2: slow start, slow end."""
    return 0.5 * (1.0 + math.cos(math.pi * p))


def constant(p: float) -> float:
    """alpha = 1 throughout (an ablation: partial credit never fades)."""
    return 1.0


ALPHA_SCHEDULES: dict[str, AlphaSchedule] = {"linear": linear, "cosine": cosine, "constant": constant}


def get_alpha_schedule(name: str | AlphaSchedule) -> AlphaSchedule:
    """Look a schedule up by name (or pass a callable through)."""
    if callable(name):
        return name
    if name not in ALPHA_SCHEDULES:
        raise ValueError(f"Unsupported alpha schedule: {name!r}. Supported schedules are: {sorted(ALPHA_SCHEDULES)}")
    return ALPHA_SCHEDULES[name]


def training_progress(trainer_state) -> float:
    """Fraction of training done, from an object with ``global_step`` and ``max_steps``.

    Works with ``transformers.TrainerState`` and with emorl's own state alike; clipped to [0, 1].
    """
    if trainer_state is None:
        raise ValueError(
            "ESWR needs training progress for alpha: pass trainer_state= (with global_step and "
            "max_steps) or an explicit alpha="
        )
    max_steps = getattr(trainer_state, "max_steps", 0) or 0
    if max_steps <= 0:
        raise ValueError(f"trainer_state.max_steps must be positive to schedule alpha, got {max_steps}")
    return min(max(trainer_state.global_step / max_steps, 0.0), 1.0)
