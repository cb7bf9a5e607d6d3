"""The training order: a seeded permutation per epoch that a checkpoint can resume mid-epoch.

Lightning saves the ``state_dict`` of a training dataloader that has one and restores it on
resume; :class:`ResumableLoader` reports how many batches of which epoch it has handed out, and
:class:`EpochBatchSampler` skips them after a restore.  The batches after a resume are exactly
those an uninterrupted run would have drawn.
"""

from __future__ import annotations

import torch


class EpochBatchSampler(torch.utils.data.Sampler[list[int]]):
    """Batches of a seeded permutation of ``range(n)``; full batches only; the order depends on (seed, epoch).

    With ``num_replicas`` processes, global batch b is ``num_replicas * batch_size`` items of the
    permutation and process ``rank`` takes its own ``batch_size`` of them: every process sees
    other prompts, and all of them the same number of batches.

    >>> s = EpochBatchSampler(10, 4, seed=0)
    >>> len(s), [len(b) for b in s]
    (2, [4, 4])
    >>> first = list(s); s.resume(epoch=0, batches=1); list(s) == first[1:]
    True
    >>> r0, r1 = EpochBatchSampler(10, 2, num_replicas=2, rank=0), EpochBatchSampler(10, 2, num_replicas=2, rank=1)
    >>> [a + b for a, b in zip(r0, r1)] == list(EpochBatchSampler(10, 4))
    True
    >>> [min(b) >= 10 for b in EpochBatchSampler(10, 2, alternate=True)]  # task alternation: odd batches
    [False, True, False, True, False]
    >>> sorted({i for b in EpochBatchSampler(4, 2, weights=[0, 1, 0, 1]) for i in b})  # weights 0: never drawn
    [1, 3]
    """

    def __init__(self, n: int, batch_size: int, seed: int = 0, num_replicas: int = 1, rank: int = 0,
                 alternate: bool = False, weights=None) -> None:
        if n < batch_size * num_replicas:
            raise ValueError(f"{n} items are fewer than one batch of {batch_size} on each of {num_replicas} processes")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} is not in [0, {num_replicas})")
        self.n = n
        self.batch_size = batch_size
        self.seed = seed
        self.num_replicas = num_replicas
        self.rank = rank
        self.alternate = alternate  # odd batches ask the second task of the same items: indices n + i
        # per-item weights: each epoch draws n items with replacement in proportion to them (class balance)
        self.weights = None if weights is None else torch.as_tensor(weights, dtype=torch.float64)
        if self.weights is not None and (len(self.weights) != n or not (self.weights >= 0).all() or self.weights.sum() <= 0):
            raise ValueError(f"sampler weights: {len(self.weights)} non-negative weights with a positive sum for {n} items")
        self.epoch = 0
        self._skip: tuple[int, int] | None = None  # (epoch, batches) to skip on the next pass

    def set_epoch(self, epoch: int) -> None:  # called by Lightning at every epoch start
        self.epoch = epoch

    def resume(self, epoch: int, batches: int) -> None:
        self.epoch = epoch
        self._skip = (epoch, batches)

    def __len__(self) -> int:
        return self.n // (self.batch_size * self.num_replicas)

    def start_batch(self) -> int:
        """Batches of the current epoch skipped by a pending resume."""
        return self._skip[1] if self._skip and self._skip[0] == self.epoch else 0

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        if self.weights is None:
            order = torch.randperm(self.n, generator=generator).tolist()
        else:
            order = torch.multinomial(self.weights, self.n, replacement=True, generator=generator).tolist()
        start = self.start_batch()
        self._skip = None
        size = self.batch_size * self.num_replicas
        for b in range(start, len(self)):
            first = b * size + self.rank * self.batch_size
            offset = self.n if self.alternate and b % 2 else 0
            yield [offset + i for i in order[first : first + self.batch_size]]


class ResumableLoader(torch.utils.data.DataLoader):
    """A DataLoader over an :class:`EpochBatchSampler` with Lightning's ``state_dict``/``load_state_dict``."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.batches_done = 0
        self.epoch_done = 0

    def __iter__(self):
        sampler = self.batch_sampler
        self.epoch_done = sampler.epoch
        self.batches_done = sampler.start_batch()
        for batch in super().__iter__():
            self.batches_done += 1
            yield batch

    def state_dict(self) -> dict:
        return {"epoch": self.epoch_done, "batches": self.batches_done}

    def load_state_dict(self, state: dict) -> None:
        self.batch_sampler.resume(state["epoch"], state["batches"])


def inverse_class_frequency(labels) -> list[float]:
    """Each gold class equally likely: an item weighs 1 / its class's count.

    >>> inverse_class_frequency(["a", "a", "a", "b"])
    [0.3333333333333333, 0.3333333333333333, 0.3333333333333333, 1.0]
    """
    from collections import Counter

    counts = Counter(labels)
    return [1.0 / counts[label] for label in labels]


#: ``data.balance``: how the training prompts are drawn. ``none``: each item once an epoch (a permutation);
#: ``class``: items drawn with replacement, each gold class equally likely.
BALANCE = {"none": lambda labels: None, "class": inverse_class_frequency}


def class_balance_weights(labels, mode: str = "none") -> list[float] | None:
    """The per-item sampling weights of ``data.balance`` (None: no weights)."""
    if mode not in BALANCE:
        raise ValueError(f"data.balance={mode!r} is not one of {', '.join(BALANCE)}")
    return BALANCE[mode](list(labels))
