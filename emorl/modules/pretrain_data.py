"""The pretraining mixture as Lightning data: draw ``i`` of the mixture is example ``i``, whoever trains it.

Global step ``s`` of a run on ``P`` processes with ``B`` examples per process trains draws
``(s * P + rank) * B ... + B - 1``; each pass of the loader starts at the trainer's global step *when the
pass begins*, so a resumed run trains exactly the draws an uninterrupted one would, on any number of
processes that keeps ``P * B``.  (Lightning resumes a checkpoint taken mid-epoch by counting that epoch's
batches as already fetched, so the restored epoch ends early and a new pass begins; a start fixed when
the loader was built replayed the steps since the checkpoint.)
"""

from __future__ import annotations

from collections.abc import Callable

import lightning as L
import torch


class MixtureDraws(torch.utils.data.Dataset):
    """Example ``i`` of the mixture (``tasks.example(i)``)."""

    def __init__(self, tasks, length: int) -> None:
        self.tasks, self.length = tasks, int(length)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int):
        return self.tasks.example(int(index))


class StepBatches(torch.utils.data.Sampler[list[int]]):
    """The draws of steps ``start() .. steps - 1`` for process ``rank`` of ``replicas``; ``start`` is read
    again at every pass (the trainer's global step).

    >>> list(StepBatches(start=lambda: 1, steps=3, batch_size=2, replicas=2, rank=1))
    [[6, 7], [10, 11]]
    """

    def __init__(self, start: Callable[[], int], steps: int, batch_size: int, replicas: int = 1, rank: int = 0) -> None:
        self.start, self.steps, self.batch_size = start, int(steps), int(batch_size)
        self.replicas, self.rank = int(replicas), int(rank)

    def __len__(self) -> int:
        return max(0, self.steps - int(self.start()))

    def __iter__(self):
        for step in range(int(self.start()), self.steps):
            first = (step * self.replicas + self.rank) * self.batch_size
            yield list(range(first, first + self.batch_size))


class MixtureData(L.LightningDataModule):
    """Training batches drawn from the mixture, and fixed validation questions."""

    def __init__(self, tasks, collate, *, batch_size: int, steps: int, val_examples=(), val_batch_size: int = 35) -> None:
        super().__init__()
        self.tasks, self.collate = tasks, collate
        self.batch_size, self.steps = int(batch_size), int(steps)
        self.val_examples, self.val_batch_size = list(val_examples), int(val_batch_size)

    def train_dataloader(self):
        trainer = self.trainer
        sampler = StepBatches(lambda: trainer.global_step, self.steps, self.batch_size, trainer.world_size, trainer.global_rank)
        draws = MixtureDraws(self.tasks, (self.steps + 1) * self.batch_size * trainer.world_size)
        return torch.utils.data.DataLoader(draws, batch_sampler=sampler, collate_fn=self.collate, num_workers=0)

    def val_dataloader(self):
        return torch.utils.data.DataLoader(self.val_examples, batch_size=self.val_batch_size, shuffle=False,
                                           collate_fn=self.collate, num_workers=0)
