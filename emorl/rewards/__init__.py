"""Reward functions in TRL's convention: ``fn(completions, **kwargs) -> list[float]``.

Dataset columns (``label``, ``options``) and ``trainer_state`` arrive as keyword arguments,
so every reward here also plugs into ``trl.GRPOTrainer(reward_funcs=[...])`` unchanged.
"""

from emorl.rewards.accuracy import make_bcr_reward, make_eswr_reward
from emorl.rewards.format import make_format_reward
from emorl.rewards.grounding import make_grounding_reward
from emorl.rewards.schedules import ALPHA_SCHEDULES, get_alpha_schedule

__all__ = [
    "ALPHA_SCHEDULES",
    "get_alpha_schedule",
    "make_bcr_reward",
    "make_eswr_reward",
    "make_format_reward",
    "make_grounding_reward",
]
