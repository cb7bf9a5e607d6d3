"""Supervised fine-tuning on the gold answer (EMO-RL's SFT + IR baseline, Table 1).

Cross-entropy on the response tokens only (prompt and padding masked to -100 by the
collator), one optimizer step per batch; evaluation is :class:`EmotionModule`'s, the same as
GRPO's, so that the two are compared by one evaluator.
"""

from __future__ import annotations

import torch

from emorl import rollout
from emorl.modules.base import EmotionModule


class SFTModule(EmotionModule):
    """Cross-entropy on the gold IR answer."""

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        if "labels" not in batch:
            raise KeyError("an SFT batch needs 'labels' (the datamodule builds them with data.targets=true)")
        out = self.policy(**rollout.model_inputs(batch), labels=batch["labels"])
        tokens = (batch["labels"] != -100).sum()
        values = {"train/loss": float(out.loss.detach()), "train/target_tokens": float(tokens)}
        self.log_dict(values, on_step=True, batch_size=len(batch["label"]))
        self.recent_train_metrics.append(values)
        return out.loss
