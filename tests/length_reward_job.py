"""``python -m tests.length_reward_job <overrides>``: emorl.train scored by completion length.

The untrained test base earns no format or accuracy reward (zero advantages, no update);
completion lengths vary inside every group, so the weights move.  Run as a module so that
Lightning starts extra processes (DDP, DeepSpeed) with the same command.  Importing this
module changes nothing (pytest imports it for doctests); running it does.
"""

from emorl import train
from emorl.rewards.combine import RewardSet


def use_length_reward() -> None:
    train.build_rewards = lambda cfg, strategy, labels: RewardSet(
        {"length": lambda completions, **kw: [len(c) / 10 for c in completions]}, {}
    )


if __name__ == "__main__":
    use_length_reward()
    train.main()
