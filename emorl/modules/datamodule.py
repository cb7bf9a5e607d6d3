"""The LightningDataModule: corpus splits as emotion questions, checked before training.

This is the one file of :mod:`emorl.data` that imports Lightning.
"""

from __future__ import annotations

import logging

import lightning as L
import torch

from emorl.data.batching import Collator, EmotionQuestions
from emorl.data.checks import check_items
from emorl.data.corpus import Item, SkipReport
from emorl.data.sampling import (
    AccuracyBalance,
    EpochBatchSampler,
    ResumableLoader,
    ShardSampler,
    class_balance_weights,
)
from emorl.prompts import ReasoningStrategy, gold_response

log = logging.getLogger(__name__)


class EmotionDataModule(L.LightningDataModule):
    """Train / val / test dataloaders of emotion questions from a corpus.

    Args:
        corpus: object with ``labels`` and ``items(split)``.
        strategy: reasoning strategy whose prompt every question uses.
        processor: the model's processor; ``None`` to check the splits before any model exists
            (:meth:`setup` needs none), then :meth:`use_processor` before the loaders are asked for.
        batch_size: prompts per training step.
        eval_batch_size: prompts per evaluation batch.
        check_audio: read every file once before use to fail early on bad audio.
        shuffle_options: list the labels in a per-item order (fixed by ``options_seed`` and path).
        options_seed: seed of the option orders (part of the evaluation protocol: keep it fixed).
        seed: order of the training prompts.
        test_split: the split ``trainer.test`` scores (``all``: every item, for cross-corpus tests).
        targets: give training questions their gold response (supervised fine-tuning).
        prosody: measure the training clips' prosody (:mod:`emorl.acoustics`, cached in
            ``cache_dir``) and give each question its levels, relative to its speaker (grounding rewards).
        task_alternation: supervised batches alternate between the emotion question and a
            description-only task about the same clips (measured prosody, or the transcript).
        training_task: ``emotion`` (the emotion question), or ``prosody``: the training split asks
            prosody questions built from measured prosody (:mod:`emorl.data.prosody_tasks`,
            ``algo=prosody_sft``); validation and test still ask the emotion question.
        comparison_share: with ``training_task=prosody``, the share of comparison questions.
    """

    def __init__(
        self,
        corpus,
        strategy: ReasoningStrategy,
        processor=None,
        batch_size: int = 8,
        eval_batch_size: int = 64,
        num_workers: int = 0,
        check_audio: bool = True,
        shuffle_options: bool = True,
        options_seed: int = 0,
        seed: int = 0,
        test_split: str = "test",
        targets: bool = False,
        prosody: bool = False,
        cache_dir: str | None = None,
        task_alternation: bool = False,
        balance: str = "none",
        training_task: str = "emotion",
        comparison_share: float = 0.5,
    ) -> None:
        super().__init__()
        self.corpus = corpus
        self.strategy = strategy
        self.collate = Collator(processor) if processor is not None else None
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.num_workers = num_workers
        self.check_audio = check_audio
        self.shuffle_options = shuffle_options
        self.options_seed = options_seed
        self.seed = seed
        self.balance = balance
        self.accuracy_balance: AccuracyBalance | None = None  # data.balance=accuracy, once the training loader exists
        self.test_split = test_split
        self.targets = targets
        self.prosody = prosody
        self.cache_dir = cache_dir
        self.task_alternation = task_alternation
        if task_alternation and not targets:
            raise ValueError("algo.task_alternation alternates supervised tasks: it needs algo=sft (data.targets=true)")
        if training_task not in ("emotion", "prosody"):
            raise ValueError(f"data.training_task={training_task!r} is not one of emotion, prosody")
        if training_task == "prosody" and task_alternation:
            raise ValueError("algo.task_alternation alternates the emotion question with a description: not with "
                             "data.training_task=prosody (its questions are all about prosody)")
        if training_task == "prosody" and not targets:
            raise ValueError("data.training_task=prosody trains on prosody answers: it needs algo=prosody_sft")
        self.training_task, self.comparison_share = training_task, comparison_share
        self.measurements: dict[str, dict] = {}
        self.task_counts: dict[str, int] = {}  # training_task=prosody: questions of each kind
        self.datasets: dict[str, EmotionQuestions] = {}
        self.seconds: dict[str, float] = {}  # clip durations, read while checking the audio
        self.truncated: dict[str, dict] = {}  # per split: clips longer than the model's audio window
        self.report: SkipReport = getattr(corpus, "report", None) or SkipReport("error", getattr(corpus, "name", "corpus"))

    def use_processor(self, processor) -> None:
        """Batch with ``processor`` (the model's, once it is loaded); report clips its window cuts."""
        self.collate = Collator(processor)
        extractor = getattr(processor, "feature_extractor", None)
        if extractor is not None and getattr(extractor, "n_samples", None):
            self.count_truncated(extractor.n_samples / extractor.sampling_rate)

    def count_truncated(self, window_s: float) -> dict[str, dict]:
        """Clips of each checked split longer than ``window_s`` (the model hears their first ``window_s``)."""
        self.truncated = {}
        for split, dataset in self.datasets.items():
            long = [self.seconds[i.path] for i in dataset.items if self.seconds.get(i.path, 0.0) > window_s + 1e-3]
            if long:
                self.truncated[split] = {"clips": len(long), "of": len(dataset), "window_s": round(window_s, 2),
                                         "longest_s": round(max(long), 2)}
                log.warning(
                    "data: %d of %d clips of the %s split are longer than the model's %.1f s audio window (longest "
                    "%.1f s); the model hears only their first %.1f s", len(long), len(dataset), split, window_s,
                    max(long), window_s,
                )
        return self.truncated

    def _collate(self):
        if self.collate is None:
            raise RuntimeError("EmotionDataModule has no processor yet: call use_processor(processor) first")
        return self.collate

    @property
    def labels(self):
        return self.corpus.labels

    def dataset(self, split: str) -> EmotionQuestions:
        """The questions of ``split`` (``train``, ``val``, ``test`` or ``all``), checked on first use."""
        if split not in self.datasets:
            items = check_items(self.corpus.items(split), self.labels, split, self.report, audio=self.check_audio,
                                seconds=self.seconds)
            if split == "train" and self.training_task == "prosody":
                self.datasets[split] = self.prosody_questions(items)
                return self.datasets[split]
            target = gold_response if self.targets and split == "train" else None
            # measured prosody: for grounding rewards, and for reasoning-augmented SFT targets
            wanted = self.prosody or (target is not None and (self.strategy.think_tag or self.task_alternation))
            levels = self.prosody_levels(items) if wanted and split == "train" else None
            if target is not None:
                for item in items:  # every target can be built (reasoning needs transcripts): fail now, not mid-epoch
                    target(self.strategy, item.label, item=item, levels=(levels or {}).get(item.path))
            self.datasets[split] = EmotionQuestions(
                items, self.strategy, self.labels, shuffle_options=self.shuffle_options, seed=self.options_seed,
                target=target, prosody=levels,
            )
            log.info("data: %s split of %s: %d questions", split, getattr(self.corpus, "name", "corpus"), len(items))
        return self.datasets[split]

    def prosody_levels(self, items: list[Item]) -> dict[str, dict]:
        """``{path: levels}`` of ``items``, each relative to its speaker's clips (or to all of them)."""
        from emorl.acoustics import ProsodyNorms, measure_items, prosody_cache

        cache = prosody_cache(self.cache_dir, self.corpus) if self.cache_dir else None
        log.info("data: measuring the prosody of %d clips (cached in %s)", len(items), cache)
        measured = measure_items(items, cache)
        self.measurements.update({i.path: measured[i.path] for i in items})
        norms = ProsodyNorms.fit([measured[i.path] for i in items], [i.speaker for i in items])
        return {i.path: norms.levels(measured[i.path], i.speaker) for i in items}

    def prosody_questions(self, items: list[Item]):
        """The training split as prosody questions (attribute levels, comparisons), from measured prosody."""
        from emorl.data.prosody_tasks import ProsodyQuestions

        levels = self.prosody_levels(items)
        questions = ProsodyQuestions(items, levels, self.measurements, answer_tag=self.strategy.answer_tag,
                                     comparison_share=self.comparison_share, seed=self.seed)
        self.task_counts = questions.task_counts()
        log.info("data: train split of %s as prosody questions: %s", getattr(self.corpus, "name", "corpus"),
                 self.task_counts)
        return questions

    def setup(self, stage: str | None = None) -> None:
        splits = {"fit": ("train", "val"), "validate": ("val",), "test": (self.test_split,)}.get(stage or "", ())
        for split in splits:
            self.dataset(split)
        for split in splits:
            counts = self.class_counts()[split]
            log.info("data: %s split clips per label: %s", split, counts)
            missing = [label for label, n in counts.items() if n == 0]
            if split == "train":
                self.labels_without_training_clips = missing
            if missing and split == "train" and getattr(self.datasets[split], "items", None):
                log.warning("data: the train split has no clip of %s (labels %s): the model cannot learn %s from it; "
                            "check the corpus's labels or dataset.labels", ", ".join(missing), list(self.labels),
                            "them" if len(missing) > 1 else "it")
        if stage == "fit" and len(self.datasets["train"]) < self.batch_size:
            raise ValueError(
                f"the train split has {len(self.datasets['train'])} items, fewer than one batch of {self.batch_size}"
            )

    def class_counts(self) -> dict[str, dict[str, int]]:
        """Clips per label (every label of the set, zeros included) in each split read so far."""
        from collections import Counter

        out = {}
        for split, dataset in self.datasets.items():
            counts = Counter(item.label for item in getattr(dataset, "items", []))
            out[split] = {label: int(counts.get(label, 0)) for label in self.labels}
        return out

    def summary(self) -> dict:
        """Questions and clips per label per split, and the corpus's skip report (for ``metrics.json``)."""
        out = {"questions": {k: len(v) for k, v in self.datasets.items()}, "classes": self.class_counts(),
               "labels_without_training_clips": list(getattr(self, "labels_without_training_clips", [])),
               "truncated": self.truncated, **self.report.summary()}
        if self.task_counts:
            out["prosody_tasks"] = self.task_counts
        return out

    def train_dataloader(self):
        """Seeded order per epoch, resumable mid-epoch (its position is saved in Lightning checkpoints).

        Under DDP every process draws its own ``batch_size`` prompts of each global batch (the
        trainer runs with ``use_distributed_sampler=False``); evaluation loaders give every
        process the whole split, so that every process computes the same metrics.
        """
        dataset = self.dataset("train")
        trainer = getattr(self, "trainer", None)
        replicas, rank = (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)
        labels = [item.label for item in dataset.items] if hasattr(dataset, "items") else [""] * len(dataset)
        weights = class_balance_weights(labels, self.balance)  # None: a permutation per epoch
        # data.balance=accuracy: the GRPO module reports each step's answers to it (observe)
        self.accuracy_balance = weights if isinstance(weights, AccuracyBalance) else None
        sampler = EpochBatchSampler(len(dataset), self.batch_size, seed=self.seed, num_replicas=replicas, rank=rank,
                                    alternate=self.task_alternation, weights=None if self.accuracy_balance else weights,
                                    adaptive=self.accuracy_balance)
        return ResumableLoader(dataset, batch_sampler=sampler, num_workers=self.num_workers, collate_fn=self._collate())

    def train_batch_of(self, clips: list[str]) -> dict:
        """The training questions of ``clips`` (:attr:`~emorl.data.corpus.Item.clip_id`), collated (the failure
        buffer's prompts)."""
        dataset = self.dataset("train")
        if getattr(self, "_train_index", None) is None:
            self._train_index = {item.clip_id: i for i, item in enumerate(dataset.items)}
        unknown = [c for c in clips if c not in self._train_index]
        if unknown:
            raise KeyError(f"the failure buffer names clips the training split does not hold: {unknown[:3]} "
                           "(a checkpoint of a run on another corpus?)")
        return self._collate()([dataset[self._train_index[c]] for c in clips])

    def random_train_batch(self, size: int, seed: int) -> dict:
        """``size`` training questions drawn at random by ``seed``, collated (extra prompts for dynamic sampling)."""
        dataset = self.dataset("train")
        index = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))[:size].tolist()
        return self._collate()([dataset[i] for i in index])

    def _eval_loader(self, split: str) -> torch.utils.data.DataLoader:
        """The split in order; under several processes each scores its own shard (:class:`ShardSampler`) and the
        module gathers the answers, so that every process computes the whole split's metrics."""
        dataset = self.dataset(split)
        trainer = getattr(self, "trainer", None)
        world, rank = (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)
        return torch.utils.data.DataLoader(
            dataset,
            batch_size=self.eval_batch_size,
            shuffle=False,
            sampler=ShardSampler(len(dataset), rank, world) if world > 1 else None,
            num_workers=self.num_workers,
            collate_fn=self._collate(),
        )

    def val_dataloader(self):
        return self._eval_loader("val")

    def test_dataloader(self):
        return self._eval_loader(self.test_split)
