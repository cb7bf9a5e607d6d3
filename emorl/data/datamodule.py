"""The LightningDataModule: corpus splits as emotion questions, checked before training.

This is the one file of :mod:`emorl.data` that imports Lightning.
"""

from __future__ import annotations

import logging

import lightning as L
import torch

from emorl.data.audio import load_audio
from emorl.data.batching import Collator, EmotionQuestions
from emorl.data.corpus import Item
from emorl.prompts import ReasoningStrategy

log = logging.getLogger(__name__)


def check_items(items: list[Item], labels, split: str) -> None:
    """Fail before training on an empty split, a foreign label or unusable audio (the error names it)."""
    if not items:
        raise ValueError(f"the {split} split is empty; check dataset settings and the corpus root")
    allowed = {label for label in labels}
    for item in items:
        if item.label not in allowed:
            raise ValueError(f"{item.path}: label {item.label!r} is not in the label set {list(labels)}")
        load_audio(item.path)


class EmotionDataModule(L.LightningDataModule):
    """Train / val / test dataloaders of emotion questions from a corpus.

    Args:
        corpus: object with ``labels`` and ``items(split)``.
        strategy: reasoning strategy whose prompt every question uses.
        processor: the model's processor.
        batch_size: prompts per training step.
        eval_batch_size: prompts per evaluation batch.
        check_audio: read every file once before training to fail early on bad audio.
        shuffle_options: list the labels in a per-item order (fixed by ``options_seed`` and path).
        options_seed: seed of the option orders (part of the evaluation protocol: keep it fixed).
        seed: order of the training prompts.
    """

    def __init__(
        self,
        corpus,
        strategy: ReasoningStrategy,
        processor,
        batch_size: int = 8,
        eval_batch_size: int = 64,
        num_workers: int = 0,
        check_audio: bool = True,
        shuffle_options: bool = True,
        options_seed: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.corpus = corpus
        self.strategy = strategy
        self.collate = Collator(processor)
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.num_workers = num_workers
        self.check_audio = check_audio
        self.shuffle_options = shuffle_options
        self.options_seed = options_seed
        self.seed = seed
        self.datasets: dict[str, EmotionQuestions] = {}

    @property
    def labels(self):
        return self.corpus.labels

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        for split in ("train", "val", "test"):
            items = self.corpus.items(split)
            if self.check_audio:
                check_items(items, self.labels, split)
            self.datasets[split] = EmotionQuestions(
                items, self.strategy, self.labels, shuffle_options=self.shuffle_options, seed=self.options_seed
            )
        if len(self.datasets["train"]) < self.batch_size:
            raise ValueError(
                f"the train split has {len(self.datasets['train'])} items, fewer than one batch of {self.batch_size}"
            )
        log.info("data: %s", {k: len(v) for k, v in self.datasets.items()})

    def _loader(self, split: str, batch_size: int, shuffle: bool) -> torch.utils.data.DataLoader:
        generator = torch.Generator().manual_seed(self.seed) if shuffle else None
        return torch.utils.data.DataLoader(
            self.datasets[split],
            batch_size=batch_size,
            shuffle=shuffle,
            drop_last=shuffle,
            generator=generator,
            num_workers=self.num_workers,
            collate_fn=self.collate,
        )

    def train_dataloader(self):
        return self._loader("train", self.batch_size, shuffle=True)

    def val_dataloader(self):
        return self._loader("val", self.eval_batch_size, shuffle=False)

    def test_dataloader(self):
        return self._loader("test", self.eval_batch_size, shuffle=False)
