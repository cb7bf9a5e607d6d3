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
                 alternate: bool = False, weights=None, adaptive: AccuracyBalance | None = None) -> None:
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
        if adaptive is not None and (weights is not None or len(adaptive.item_class) != n):
            raise ValueError(f"an adaptive balance over {len(adaptive.item_class)} items, for {n} items and no fixed weights")
        # data.balance=accuracy: each batch drawn by the class weights its training accuracy set (AccuracyBalance)
        self.adaptive = adaptive
        self.epoch = 0
        self._skip: tuple[int, int] | None = None  # (epoch, batches) to skip on the next pass

    def set_epoch(self, epoch: int) -> None:  # called by Lightning at every epoch start
        self.epoch = epoch

    def resume(self, epoch: int, batches: int) -> None:
        self.epoch = epoch
        self._skip = (epoch, batches)

    def __len__(self) -> int:
        return self.n // (self.batch_size * self.num_replicas)

    def resuming(self) -> bool:
        """Whether the next pass continues a restored position (:meth:`resume`)."""
        return self._skip is not None

    def start_batch(self) -> int:
        """Batches of the current epoch skipped by a pending resume."""
        return self._skip[1] if self._skip and self._skip[0] == self.epoch else 0

    def __iter__(self):
        if self.adaptive is not None:
            yield from self._adaptive_batches()
            return
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

    def _adaptive_batches(self):
        """Each global batch drawn with replacement by the item weights the adaptive balance gives it then.

        Batch ``b`` of epoch ``e`` is the ``e * len(self) + b``-th batch of the run; its generator and its
        weights depend on that index only, so a resumed run draws what an uninterrupted one drew.
        """
        start = self.start_batch()
        self._skip = None
        size = self.batch_size * self.num_replicas
        for b in range(start, len(self)):
            index = self.epoch * len(self) + b
            generator = torch.Generator().manual_seed((self.seed * 1_000_003 + index) * 7919 + 1)
            picks = torch.multinomial(self.adaptive.item_weights(index), size, replacement=True, generator=generator)
            yield picks[self.rank * self.batch_size : (self.rank + 1) * self.batch_size].tolist()


class ResumableLoader(torch.utils.data.DataLoader):
    """A DataLoader over an :class:`EpochBatchSampler` with Lightning's ``state_dict``/``load_state_dict``."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.batches_done = 0
        self.epoch_done = 0
        self.next_epoch = 0  # the epoch the next pass draws

    def __iter__(self):
        # each pass is an epoch of its own: Lightning sets the epoch of a loader's sampler, not of its batch
        # sampler, so the loader counts its passes (a pending resume names its epoch itself)
        sampler = self.batch_sampler
        if not sampler.resuming():
            sampler.set_epoch(self.next_epoch)
        self.next_epoch = sampler.epoch + 1
        self.epoch_done = sampler.epoch
        self.batches_done = sampler.start_batch()
        for batch in super().__iter__():
            self.batches_done += 1
            yield batch

    def state_dict(self) -> dict:
        state = {"epoch": self.epoch_done, "batches": self.batches_done}
        adaptive = getattr(self.batch_sampler, "adaptive", None)
        return state if adaptive is None else {**state, "balance": adaptive.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.batch_sampler.resume(state["epoch"], state["batches"])
        adaptive = getattr(self.batch_sampler, "adaptive", None)
        if adaptive is not None:
            if "balance" not in state:
                raise ValueError("the checkpoint's training order was saved without data.balance=accuracy's class "
                                 "accuracies: resume it with the data.balance it was trained with")
            adaptive.load_state_dict(state["balance"])


class ShardSampler(torch.utils.data.Sampler[int]):
    """Process ``rank``'s share of an evaluation split: items ``rank, rank + world, ...``, padded with its last
    item to ``ceil(n / world)`` so that every process runs the same number of batches of the same sizes
    (ZeRO-3's generation steps all processes together).  :attr:`real` items are its own; the rest repeat.

    >>> [list(ShardSampler(5, r, 2)) for r in (0, 1)], [ShardSampler(5, r, 2).real for r in (0, 1)]
    ([[0, 2, 4], [1, 3, 3]], [3, 2])
    """

    def __init__(self, n: int, rank: int, world: int) -> None:
        if not 0 <= rank < world:
            raise ValueError(f"rank {rank} is not in [0, {world})")
        own = list(range(rank, n, world))
        self.real = len(own)
        size = -(-n // world)
        self.indices = own + [own[-1] if own else 0] * (size - len(own))

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def interleave(shards: list[list]) -> list:
    """The split's order back from the processes' shards (:class:`ShardSampler`'s real items): item ``j`` of
    shard ``r`` is the split's item ``r + j * len(shards)``.

    >>> interleave([[0, 2, 4], [1, 3]])
    [0, 1, 2, 3, 4]
    """
    out = []
    for j in range(max((len(s) for s in shards), default=0)):
        out.extend(s[j] for s in shards if j < len(s))
    return out


def inverse_class_frequency(labels) -> list[float]:
    """Each gold class equally likely: an item weighs 1 / its class's count.

    >>> inverse_class_frequency(["a", "a", "a", "b"])
    [0.3333333333333333, 0.3333333333333333, 0.3333333333333333, 1.0]
    """
    from collections import Counter

    counts = Counter(labels)
    return [1.0 / counts[label] for label in labels]


def accuracy_class_weights(accuracy: torch.Tensor, floor: float = 0.05) -> torch.Tensor:
    """The class weights of ``data.balance=accuracy``: ``w_c = (1 - a_c + floor) / sum_k (1 - a_k + floor)``.

    ``accuracy``: (C,) each class's training accuracy in [0, 1]; the weakest class is drawn most often,
    and ``floor`` keeps a class that is always right in the draw.  Returns (C,), summing to 1.

    >>> accuracy_class_weights(torch.tensor([0.0, 0.5, 1.0]), floor=0.0).tolist()
    [0.6666666666666666, 0.3333333333333333, 0.0]
    >>> accuracy_class_weights(torch.tensor([0.3, 0.3])).tolist()  # equal accuracies: equal weights
    [0.5, 0.5]
    """
    raw = 1.0 - accuracy.double().clamp(0.0, 1.0) + floor
    return raw / raw.sum()


def smoothed_accuracy(previous: torch.Tensor, seen: torch.Tensor, correct: torch.Tensor, counts: torch.Tensor,
                      decay: float) -> torch.Tensor:
    """Each class's running training accuracy after a step: ``a <- decay * a + (1 - decay) * correct / count``.

    ``previous``: (C,) the accuracies so far; ``seen``: (C,) bool, whether the class was ever observed (a
    class's first observation sets its accuracy); ``correct``, ``counts``: (C,) this step's correct and
    sampled answers per gold class (a class with none this step keeps its accuracy).  Returns (C,).

    >>> a = smoothed_accuracy(torch.tensor([0.5, 0.5, 0.2]), torch.tensor([True, False, True]),
    ...                       torch.tensor([6.0, 3.0, 0.0]), torch.tensor([6.0, 6.0, 0.0]), decay=0.9)
    >>> [round(x, 6) for x in a.tolist()]  # seen: moved a tenth of the way; first seen: set; not drawn: kept
    [0.55, 0.5, 0.2]
    """
    step = correct.double() / counts.double().clamp(min=1)
    moved = torch.where(seen, decay * previous.double() + (1 - decay) * step, step)
    return torch.where(counts > 0, moved, previous.double())


class AccuracyBalance:
    """``data.balance=accuracy``: the training prompts' classes weighted by their running training accuracy.

    The GRPO module calls :meth:`observe` after each step's rollouts with the step's correct and sampled
    answers per gold class (summed over processes, so every process draws the same weights).  Batch
    ``b`` is drawn by the accuracies observed up to step ``b - lag``, whether the loader fetches on demand
    (Lightning, for a loader with a length) or a batch ahead (a prefetching loader draws batch ``b`` before
    step ``b - 1`` is scored): an uninterrupted and a resumed run draw the same batches either way.
    Within a class the clips are equally likely.
    """

    lag = 2

    def __init__(self, labels, classes=None, decay: float = 0.9, floor: float = 0.05) -> None:
        labels = list(labels)
        self.classes = list(classes) if classes is not None else sorted(set(labels))
        unknown = sorted(set(labels) - set(self.classes))
        if unknown:
            raise ValueError(f"data.balance=accuracy: training labels {unknown} are not among the classes {self.classes}")
        index = {c: i for i, c in enumerate(self.classes)}
        self.item_class = torch.tensor([index[label] for label in labels], dtype=torch.long)
        self.counts = torch.bincount(self.item_class, minlength=len(self.classes)).double()
        self.decay, self.floor = decay, floor
        self.accuracy = torch.zeros(len(self.classes), dtype=torch.float64)
        self.seen = torch.zeros(len(self.classes), dtype=torch.bool)
        self.history: dict[int, torch.Tensor] = {}  # step -> the class weights after observing it

    def observe(self, step: int, correct, counts) -> None:
        """Step ``step``'s correct and sampled answers per class, (C,) each, in :attr:`classes` order."""
        correct, counts = torch.as_tensor(correct).double().cpu(), torch.as_tensor(counts).double().cpu()
        self.accuracy = smoothed_accuracy(self.accuracy, self.seen, correct, counts, self.decay)
        self.seen |= counts > 0
        self.history[step] = self.class_weights_now()
        for old in [s for s in self.history if s <= step - 2 * self.lag]:
            del self.history[old]

    def class_weights_now(self) -> torch.Tensor:
        """(C,) the class weights of the accuracies observed so far (classes not yet seen: the mean of the seen)."""
        if not self.seen.any():
            return torch.full((len(self.classes),), 1.0 / len(self.classes), dtype=torch.float64)
        filled = torch.where(self.seen, self.accuracy, self.accuracy[self.seen].mean())
        return accuracy_class_weights(filled, self.floor)

    def class_weights(self, batch: int) -> torch.Tensor:
        """(C,) the class weights batch ``batch`` is drawn by: those after step ``batch - lag`` (uniform before)."""
        earlier = [s for s in self.history if s <= batch - self.lag]
        if not earlier:
            return torch.full((len(self.classes),), 1.0 / len(self.classes), dtype=torch.float64)
        return self.history[max(earlier)]

    def item_weights(self, batch: int) -> torch.Tensor:
        """(N,) each training item's weight for batch ``batch``: its class's weight shared by the class's items."""
        per_class = self.class_weights(batch) / self.counts.clamp(min=1)
        return per_class[self.item_class]

    def state_dict(self) -> dict:
        return {"accuracy": self.accuracy.tolist(), "seen": self.seen.tolist(),
                "history": {int(s): w.tolist() for s, w in self.history.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.accuracy = torch.tensor(state["accuracy"], dtype=torch.float64)
        self.seen = torch.tensor(state["seen"], dtype=torch.bool)
        self.history = {int(s): torch.tensor(w, dtype=torch.float64) for s, w in state["history"].items()}


#: ``data.balance``: how the training prompts are drawn, each a function of the training labels (and the
#: classes) returning fixed per-item weights (None: a permutation) or an adaptive balance.  ``none``: each
#: item once an epoch; ``class``: items drawn with replacement, each gold class equally likely;
#: ``accuracy``: classes weighted by their running training accuracy, the weakest most often (GRPO only).
BALANCE = {
    "none": lambda labels, classes: None,
    "class": lambda labels, classes: inverse_class_frequency(labels),
    "accuracy": lambda labels, classes: AccuracyBalance(labels, classes),
}
#: the balances that learn from the training answers: they need an algorithm that samples answers (GRPO)
ADAPTIVE_BALANCES = frozenset({"accuracy"})


def class_balance_weights(labels, mode: str = "none", classes=None):
    """``data.balance``'s per-item sampling weights (None: no weights), or its :class:`AccuracyBalance`."""
    if mode not in BALANCE:
        raise ValueError(f"data.balance={mode!r} is not one of {', '.join(BALANCE)}")
    return BALANCE[mode](list(labels), classes)
