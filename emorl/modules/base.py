"""What every emorl LightningModule shares: greedy evaluation, metrics, lean checkpoints.

:class:`EmotionModule` answers the emotion questions of the val/test loaders greedily, parses
the answers with the reasoning strategy and computes UA/WA/F1 (:mod:`emorl.metrics`); the
training algorithms (:mod:`emorl.modules.grpo`, :mod:`emorl.modules.sft`) subclass it and add
``training_step``.
"""

from __future__ import annotations

import logging
from collections import deque
from pathlib import Path

import lightning as L
import torch

from emorl import rollout
from emorl.data.sampling import ShardSampler, interleave
from emorl.metrics import classification_metrics
from emorl.prompts import ReasoningStrategy, parse_label

log = logging.getLogger(__name__)


class EmotionModule(L.LightningModule):
    """An audio-language model answering emotion questions, evaluated by UA/WA/F1.

    Args:
        policy: the model (a peft model for LoRA, or the full model).
        processor: its processor (tokenizer + feature extractor).
        strategy: the reasoning strategy whose answers are parsed.
        labels: the label set the questions list.
        optimizer: ``functools.partial`` of a torch optimizer (Hydra ``_partial_: true``);
            None for a module that only evaluates.
        suppress_ids / end_ids: token ids never generated / ending an answer.
        eval_max_new_tokens: budget of greedy answers at evaluation.
        run_dir: where evaluation artefacts go.
        seed: seed of anything random in training steps.

    Checkpoints hold the trainable parameters only (a LoRA adapter, or every weight of a full
    fine-tune), plus what subclasses add in :meth:`extra_state`; frozen weights come from the base.
    """

    def __init__(
        self,
        policy,
        processor,
        strategy: ReasoningStrategy,
        labels,
        optimizer,
        suppress_ids: list[int],
        end_ids: list[int],
        eval_max_new_tokens: int = 80,
        run_dir: str | Path | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.strict_loading = False  # checkpoints leave frozen weights out
        self.policy = policy
        self.processor = processor
        self.strategy = strategy
        self.labels = tuple(labels)
        self.optimizer_factory = optimizer
        self.suppress_ids = list(suppress_ids)
        self.end_ids = list(end_ids)
        self.eval_max_new_tokens = eval_max_new_tokens
        self.run_dir = Path(run_dir) if run_dir else None
        self.seed = seed
        self.eval_results: dict[str, dict] = {}
        self.eval_records: list[dict] = []  # per question of the last evaluation: path, label, prediction, text
        self._eval_records: list[dict] = []
        self.best_val_ua = float("-inf")
        self.best_val_step = -1
        self.recent_train_metrics: deque[dict[str, float]] = deque(maxlen=10)

    # ------------------------------------------------------------ optimiser
    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        params = [p for p in self.policy.parameters() if p.requires_grad]
        if not params:
            raise ValueError("the policy has no trainable parameters; check model.lora and model.adapter")
        return params

    def configure_optimizers(self):
        return self.optimizer_factory(self.trainable_parameters())

    def on_fit_start(self) -> None:
        """Train the policy in training mode (dropout, gradient checkpointing).

        Lightning keeps each module's mode as it finds it, and ``from_pretrained`` returns a model in
        evaluation mode: without this, every training step would run without LoRA dropout and
        without gradient checkpointing.  Evaluation loops switch to evaluation mode and back.
        """
        self.policy.train()

    @property
    def final_train_metrics(self) -> dict[str, float]:
        """Training metrics averaged over the last (up to) 10 steps."""
        if not self.recent_train_metrics:
            return {}
        keys = dict.fromkeys(k for m in self.recent_train_metrics for k in m)  # some (per-class) appear in some steps
        return {k: sum(m[k] for m in self.recent_train_metrics if k in m) / sum(k in m for m in self.recent_train_metrics)
                for k in keys}

    # ------------------------------------------------------- distribution
    def deepspeed(self) -> dict | None:
        """The DeepSpeed config of the running strategy, or None."""
        trainer = getattr(self, "_trainer", None)
        config = getattr(getattr(trainer, "strategy", None), "config", None)
        return config if isinstance(config, dict) and "zero_optimization" in config else None

    def parameters_sharded(self) -> bool:
        """DeepSpeed ZeRO-3 over several processes: generation must keep every process stepping."""
        config = self.deepspeed()
        return bool(config) and self.trainer.world_size > 1 and int(config["zero_optimization"].get("stage", 0)) == 3

    # ---------------------------------------------------------- checkpoints
    def export(self, model_dir) -> None:
        """Write, beside the exported policy in ``model_dir``, what evaluating it later needs (a generative
        policy: nothing; :meth:`restore` reads it back)."""

    @classmethod
    def restore(cls, model_dir, **arguments) -> EmotionModule:
        """The evaluation module of a model a run of this class exported into ``model_dir`` (``arguments``:
        :func:`emorl.builders.module_arguments`): for a generative policy, its greedy answers."""
        return EmotionModule(**arguments)

    def extra_state(self) -> dict:
        """Counters a resumed run needs beyond weights, optimizer and loop state."""
        return {
            "best_val_ua": self.best_val_ua,
            "best_val_step": self.best_val_step,
            "recent_train_metrics": list(self.recent_train_metrics),
        }

    def load_extra_state(self, state: dict) -> None:
        self.best_val_ua = state.get("best_val_ua", float("-inf"))
        self.best_val_step = state.get("best_val_step", -1)
        self.recent_train_metrics.clear()
        self.recent_train_metrics.extend(state.get("recent_train_metrics", []))

    def checkpointed(self, state_dict: dict) -> dict:
        """``state_dict`` less the frozen weights: what a checkpoint keeps of the model."""
        frozen = {name for name, p in self.named_parameters() if not p.requires_grad}
        return {k: v for k, v in state_dict.items() if k not in frozen}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["state_dict"] = self.checkpointed(checkpoint["state_dict"])
        checkpoint["emorl"] = self.extra_state()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.load_extra_state(checkpoint.get("emorl", {}))

    # ----------------------------------------------------------- evaluation
    @torch.no_grad()
    def predict_labels(self, batch: dict) -> tuple[list[str | None], list[str]]:
        """Greedy answers for a batch, parsed to labels (None when unparsable), and the texts."""
        ro = rollout.sample(
            self.policy,
            self.processor,
            batch,
            num_generations=1,
            max_new_tokens=self.eval_max_new_tokens,
            do_sample=False,
            suppress_ids=self.suppress_ids,
            end_ids=self.end_ids,
            synced_gpus=self.parameters_sharded(),
        )
        preds = [parse_label(self.strategy.extract_answer(t), opts) for t, opts in zip(ro.texts, batch["options"], strict=True)]
        return preds, ro.texts

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        preds, texts = self.predict_labels(batch)
        n = len(preds)
        self._eval_records.extend(
            {"path": p, "question": q, "label": y, "prediction": pred, "text": t}
            for p, q, y, pred, t in zip(
                batch.get("paths") or [""] * n, batch.get("questions") or [""] * n, batch["label"], preds, texts, strict=True
            )
        )

    test_step = validation_step

    def on_validation_epoch_start(self) -> None:
        self._eval_records = []

    on_test_epoch_start = on_validation_epoch_start

    def _gathered_records(self, records: list[dict], loader) -> list[dict]:
        """Every process's answers to its shard of the split (``loader``'s :class:`ShardSampler`), in the split's
        order, on every process (one process: ``records`` themselves)."""
        sampler = getattr(loader, "sampler", None)
        if not isinstance(sampler, ShardSampler):
            return records
        shards: list = [None] * torch.distributed.get_world_size()
        torch.distributed.all_gather_object(shards, records[: sampler.real])
        return interleave(shards)

    def _finish_eval(self, stage: str) -> dict:
        records, self._eval_records = self._eval_records, []
        loaders = self.trainer.val_dataloaders if stage == "val" else self.trainer.test_dataloaders
        records = self._gathered_records(records, loaders)
        preds, targets = [r["prediction"] for r in records], [r["label"] for r in records]
        result = classification_metrics(preds, targets, self.labels)
        self.eval_records = records
        values = {f"{stage}/{k}": result[k] for k in ("ua", "wa", "f1", "unparsed_rate")}
        values.update({f"{stage}/predicted/{k}": float(v) for k, v in result["predicted"].items()})
        values.update({f"{stage}/recall/{k}": v for k, v in result["recall"].items()})
        if stage == "val":
            if result["ua"] > self.best_val_ua:  # strictly better, as the best-checkpoint callback decides
                self.best_val_ua, self.best_val_step = result["ua"], int(self.global_step)
            values["val/ua_best"] = self.best_val_ua
        self.log_dict(values, sync_dist=True)  # every process holds the whole split's answers: the mean is the value
        self.eval_results[stage] = result
        if self.trainer.is_global_zero:
            self._log_eval_plots(stage, preds, targets, result)
        log.info(
            "%s step %d: UA %.3f WA %.3f F1 %.3f unparsed %.3f predicted %s",
            stage, self.global_step, result["ua"], result["wa"], result["f1"], result["unparsed_rate"], result["predicted"],
        )
        return result

    def _log_eval_plots(self, stage: str, preds: list[str | None], targets: list[str], result: dict) -> None:
        """W&B only: the confusion matrix (unparsable answers as their own column), per-class recall and the
        predicted-label histogram of this evaluation, as W&B charts."""
        from lightning.pytorch.loggers import WandbLogger

        runs = [lg.experiment for lg in self.loggers if isinstance(lg, WandbLogger)]
        if not runs:
            return
        import wandb

        names = [*self.labels, "unparsed"]
        index = {name: i for i, name in enumerate(names)}
        recall = wandb.Table(columns=["label", "recall"], data=[[k, float(v)] for k, v in result["recall"].items()])
        predicted = wandb.Table(columns=["label", "answers"], data=[[k, int(v)] for k, v in result["predicted"].items()])
        charts = {
            f"{stage}/confusion_matrix": wandb.plot.confusion_matrix(
                y_true=[index[t] for t in targets], preds=[index[p or "unparsed"] for p in preds], class_names=names,
                title=f"{stage} confusion (step {self.global_step})"),
            f"{stage}/recall_chart": wandb.plot.bar(recall, "label", "recall", title=f"{stage} recall per class"),
            f"{stage}/predicted_chart": wandb.plot.bar(predicted, "label", "answers", title=f"{stage} predicted labels"),
        }
        for run in runs:
            run.log({**charts, "trainer/global_step": int(self.global_step)})

    def on_validation_epoch_end(self) -> None:
        if not self.trainer.sanity_checking:
            self._finish_eval("val")

    def on_test_epoch_end(self) -> None:
        self._finish_eval("test")
