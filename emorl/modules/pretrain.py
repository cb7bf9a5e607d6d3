"""Pretraining the embedded base: next-token loss on the mixture's targets, logged per task.

The LightningModule wires :mod:`emorl.pretraining.tasks`'s examples to the backbone: cross-entropy
on the response tokens (the collator masks prompt and padding), AdamW with a linear warm-up and
a cosine decay, the loss of each task logged apart.  Validation asks the *pretraining* corpus's
validation clips (never an experiment clip) what was said and which emotion they express (in
each answer format of ``pretrain.val_formats``), greedily, and logs the word error rate, the emotion
accuracy and the share of answers naming no option per format: how far the base hears words and
emotion while it trains, and whether a format's answers stop naming an option (a base that answers
ESR questions with a heard word shows it here, before any evaluation).
"""

from __future__ import annotations

import math
from collections import defaultdict

import lightning as L
import torch

from emorl import rollout
from emorl.prompts import get_strategy, parse_label


def token_losses(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-token cross-entropy of next-token prediction, 0 where ``labels`` is -100.

    logits: (B, L, V); labels: (B, L) -> (B, L - 1).

    >>> logits = torch.zeros(1, 3, 4); labels = torch.tensor([[-100, 2, -100]])
    >>> [[round(x, 5) for x in row] for row in token_losses(logits, labels).tolist()], round(math.log(4), 5)
    ([[1.38629, 0.0]], 1.38629)
    """
    shifted, target = logits[:, :-1].float(), labels[:, 1:]
    mask = target != -100
    loss = torch.nn.functional.cross_entropy(shifted.transpose(1, 2), target.clamp(min=0), reduction="none")
    return loss * mask


def per_task_means(losses: torch.Tensor, mask: torch.Tensor, tasks: list[str]) -> dict[str, float]:
    """Mean token loss of each task's rows. losses, mask: (B, T); tasks: B names.

    >>> per_task_means(torch.tensor([[1.0, 3.0], [4.0, 0.0]]), torch.tensor([[1, 1], [1, 0]]), ["a", "b"])
    {'a': 2.0, 'b': 4.0}
    """
    sums, counts = defaultdict(float), defaultdict(float)
    for row, task in enumerate(tasks):
        sums[task] += float(losses[row].sum())
        counts[task] += float(mask[row].sum())
    return {t: sums[t] / counts[t] for t in sums if counts[t]}


def cosine_with_warmup(step: int, warmup: int, total: int, floor: float) -> float:
    """The learning-rate factor at ``step``: linear warm-up to 1, then cosine down to ``floor``.

    >>> [round(cosine_with_warmup(s, 10, 110, 0.1), 3) for s in (0, 9, 60, 110)]
    [0.1, 1.0, 0.55, 0.1]
    """
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def validation_metrics(records: list[dict]) -> dict[str, float]:
    """The validation figures of greedy answers: ``val/wer`` over the ``transcribe`` records; per answer format
    ``f`` of the ``emotion/<f>`` records, the accuracy and the share naming no option (``val/emotion_accuracy``
    and ``val/unparsed`` for IR, the keys of earlier builds; ``.../<f>`` for the others).

    Args:
        records: dicts with ``task``, ``answer`` (the answer block's text, None when there is none), ``gold``
            and ``options``.
    """
    import jiwer

    values = {}
    said = [r for r in records if r["task"] == "transcribe"]
    if said:
        values["val/wer"] = float(jiwer.wer([r["gold"] for r in said], [(r["answer"] or "").strip() for r in said]))
    asked = defaultdict(list)
    for r in records:
        kind, _, name = r["task"].partition("/")
        if kind == "emotion":
            asked[name or "ir"].append(r)
    for name, group in sorted(asked.items()):
        suffix = "" if name == "ir" else f"/{name}"
        preds = [parse_label(r["answer"], r["options"]) for r in group]
        values[f"val/emotion_accuracy{suffix}"] = sum(p == r["gold"] for p, r in zip(preds, group, strict=True)) / len(group)
        values[f"val/unparsed{suffix}"] = sum(p is None for p in preds) / len(group)
    return values


class PretrainModule(L.LightningModule):
    """Supervised pretraining of a backbone on the mixture.

    Args:
        policy / processor: the backbone and its processor.
        lr, weight_decay, warmup_steps, min_lr_ratio: AdamW and its schedule (to ``trainer.max_steps``).
        max_new_tokens: budget of the greedy answers at validation.
        suppress_ids / end_ids: token ids never generated / ending an answer.
    """

    def __init__(self, policy, processor, *, lr: float, weight_decay: float = 0.0, warmup_steps: int = 200,
                 min_lr_ratio: float = 0.1, max_new_tokens: int = 40, suppress_ids=(), end_ids=()) -> None:
        super().__init__()
        self.policy = policy
        self.processor = processor
        self.lr, self.weight_decay = float(lr), float(weight_decay)
        self.warmup_steps, self.min_lr_ratio = int(warmup_steps), float(min_lr_ratio)
        self.max_new_tokens = int(max_new_tokens)
        self.suppress_ids, self.end_ids = list(suppress_ids), list(end_ids)
        self.strategy = get_strategy("ir")
        self._val: list[dict] = []
        self.last_val: dict = {}
        self.train_seconds = 0.0  # wall time of training steps, over every resumption (in the checkpoint)
        self._step_start = None

    def forward_inputs(self, batch: dict) -> dict:
        keys = [k for k in rollout.MODEL_INPUTS if k in batch]  # a text-only batch has no audio features
        return {k: batch[k] for k in keys}

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        logits = self.policy(**self.forward_inputs(batch)).logits
        losses = token_losses(logits, batch["labels"])
        mask = batch["labels"][:, 1:] != -100
        loss = losses.sum() / mask.sum().clamp(min=1)
        values = {"train/loss": loss.detach(), "train/target_tokens": mask.sum().float()}
        values.update({f"train/loss/{t}": v for t, v in per_task_means(losses.detach(), mask, batch["task"]).items()})
        self.log_dict(values, on_step=True, batch_size=len(batch["task"]))
        return loss

    def on_train_start(self) -> None:
        self.policy.train()  # from_pretrained returns the model in evaluation mode

    def on_train_batch_start(self, batch, batch_idx) -> None:
        import time

        self._step_start = time.time()

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        import time

        if self._step_start is not None:
            self.train_seconds += time.time() - self._step_start

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["emorl"] = {"train_seconds": self.train_seconds, "last_val": self.last_val}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        state = checkpoint.get("emorl", {})
        self.train_seconds = float(state.get("train_seconds", 0.0))
        self.last_val = dict(state.get("last_val", {}))

    def configure_optimizers(self):
        decay = [p for n, p in self.policy.named_parameters() if p.ndim >= 2]
        rest = [p for n, p in self.policy.named_parameters() if p.ndim < 2]
        optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": self.weight_decay},
                                       {"params": rest, "weight_decay": 0.0}], lr=self.lr)
        total = int(self.trainer.max_steps)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: cosine_with_warmup(s, self.warmup_steps, total, self.min_lr_ratio))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    # ------------------------------------------------------------ validation
    @torch.no_grad()
    def validation_step(self, batch: dict, batch_idx: int) -> None:
        ro = rollout.sample(self.policy, self.processor, batch, num_generations=1, max_new_tokens=self.max_new_tokens,
                            do_sample=False, suppress_ids=self.suppress_ids, end_ids=self.end_ids)
        for task, text, gold, options in zip(batch["task"], ro.texts, batch["label"], batch["options"], strict=True):
            self._val.append({"task": task, "answer": self.strategy.extract_answer(text), "gold": gold, "options": options})

    def on_validation_epoch_end(self) -> None:
        records, self._val = self._val, []
        values = validation_metrics(records)
        if values:
            self.log_dict(values, sync_dist=True)
        self.last_val = values
