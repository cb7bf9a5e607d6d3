"""``python -m tests.deepspeed_job <overrides>``: emorl.train with completions of uneven lengths.

Under several processes, process 0 stops sampling after 3 tokens and the others after 12:
completions of different lengths per process, the case ZeRO-3's ``synced_gpus`` exists for.

Run as a module so that Lightning starts the second process with the same command.  Importing
this module changes nothing; running it does.
"""

import torch

from emorl import rollout, train


def uneven_lengths() -> None:
    sample = rollout.sample

    def uneven_sample(*args, **kwargs):
        if kwargs.get("do_sample", True) and torch.distributed.is_initialized():
            kwargs["max_new_tokens"] = 3 if torch.distributed.get_rank() == 0 else 12
        return sample(*args, **kwargs)

    rollout.sample = uneven_sample


if __name__ == "__main__":
    uneven_lengths()
    train.main()
