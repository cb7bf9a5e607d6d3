"""``python -m tests.deepspeed_job <overrides>``: emorl.train with two test-only changes.

* A length reward: the untrained test base earns no format or accuracy reward (zero
  advantages, no update); completion lengths vary inside every group, so the weights move.
* Under several processes, process 0 stops sampling after 3 tokens and the others after 12:
  completions of different lengths per process, the case ZeRO-3's ``synced_gpus`` exists for.

Run as a module so that Lightning starts the second process with the same command.
"""

import torch

from emorl import rollout, train
from tests import length_reward_job  # noqa: F401  (the length reward)

_sample = rollout.sample


def uneven_sample(*args, **kwargs):
    if kwargs.get("do_sample", True) and torch.distributed.is_initialized():
        kwargs["max_new_tokens"] = 3 if torch.distributed.get_rank() == 0 else 12
    return _sample(*args, **kwargs)


rollout.sample = uneven_sample

if __name__ == "__main__":
    train.main()
