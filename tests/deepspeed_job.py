"""``python -m tests.deepspeed_job <overrides>``: emorl.train with processes whose steps differ.

Under several processes:

- process 0 stops sampling after 3 tokens and the others after 12: completions of different
  lengths per process, the case ZeRO-3's ``synced_gpus`` exists for;
- process 0's groups all hold rewards that differ and none of its samples is right; the others'
  groups hold equal rewards, and their samples are all right in the first step and all wrong
  after it: dynamic sampling has enough groups on process 0 but must draw again on the others,
  and in the first step only process 0 has failed prompts to replay.  Every forward pass one
  process runs alone is a parameter gather the others never join.

Run as a module so that Lightning starts the second process with the same command.  Importing
this module changes nothing; running it does.
"""

import torch

from emorl import rollout, train
from emorl.modules.grpo import GRPOModule


def rank() -> int | None:
    return torch.distributed.get_rank() if torch.distributed.is_initialized() else None


def uneven_lengths() -> None:
    sample = rollout.sample

    def uneven_sample(*args, **kwargs):
        if kwargs.get("do_sample", True) and rank() is not None:
            kwargs["max_new_tokens"] = 3 if rank() == 0 else 12
        return sample(*args, **kwargs)

    rollout.sample = uneven_sample


def processes_that_disagree() -> None:
    score, answered = GRPOModule.score, GRPOModule.answered_correctly

    def disagreeing_score(self, ro, batch, progress):
        total, components = score(self, ro, batch, progress)
        if rank() is None:
            return total, components
        varied = torch.arange(len(total), dtype=total.dtype) % self.algo.num_generations
        return (varied if rank() == 0 else torch.zeros_like(total)), components

    def disagreeing_answers(self, batch, ro):
        correct = answered(self, batch, ro)
        if rank() is None:
            return correct
        return torch.full_like(correct, rank() != 0 and self.rollout_batches == 0)

    GRPOModule.score, GRPOModule.answered_correctly = disagreeing_score, disagreeing_answers


if __name__ == "__main__":
    uneven_lengths()
    processes_that_disagree()
    train.main()
