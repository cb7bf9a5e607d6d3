"""A frozen-encoder baseline: the backbone's own audio tower, frozen, and a small head trained on the labels.

EMO-RL's W/o-LALM rows (Table 1) are self-supervised encoders evaluated as EmoBox evaluates them:
features from the last Transformer layer of the frozen model, pooled over time, and a downstream
classifier with a 256-unit hidden layer trained on the training split.  ``algo=linear_probe``
does the same with the audio tower of the model emorl fine-tunes, so that the table has all three
groups on any corpus: what the encoder alone knows, the LALM zero-shot, the LALM fine-tuned.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from emorl.modules.base import EmotionModule


def audio_tower_of(model) -> nn.Module:
    """The Whisper-style audio encoder of a Qwen2-Audio model (also under a peft wrapper)."""
    from transformers.models.qwen2_audio.modeling_qwen2_audio import Qwen2AudioEncoder

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    for owner in (base, getattr(base, "model", None)):
        tower = getattr(owner, "audio_tower", None)
        if isinstance(tower, Qwen2AudioEncoder):  # features (B, mel, frames) in, frames out
            return tower
    raise ValueError(f"algo=linear_probe needs a Qwen2-Audio backbone (its audio_tower); {type(base).__name__} has none")


def encoder_frames(mel_frames: Tensor) -> Tensor:
    """Output frames of Qwen2-Audio's audio encoder for ``mel_frames`` input frames: (B,) -> (B,).

    The encoder's second convolution halves the frames (stride 2, padding 1) and its pooling halves them
    again (kernel 2, stride 2) (Chu et al. 2024, Qwen2-Audio; tests compare it with transformers' encoder).

    >>> encoder_frames(torch.tensor([3000, 101, 1])).tolist()
    [750, 25, 0]
    """
    after_conv = (mel_frames - 1) // 2 + 1
    return (after_conv - 2) // 2 + 1


def masked_mean_pool(hidden: Tensor, lengths: Tensor) -> Tensor:
    """Mean over each sequence's first ``lengths`` frames: (B, T, D), (B,) -> (B, D).

    >>> masked_mean_pool(torch.tensor([[[1.0], [3.0], [100.0]]]), torch.tensor([2])).tolist()
    [[2.0]]
    """
    mask = (torch.arange(hidden.shape[1], device=hidden.device)[None, :] < lengths[:, None]).to(hidden.dtype)
    return (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1.0)


class LinearProbeModule(EmotionModule):
    """Frozen audio tower -> mean over time -> Linear(D, hidden) -> ReLU -> Linear(hidden, classes).

    Only the head trains (cross-entropy on the gold label); evaluation answers the arg-max label,
    so the probe never produces an unparsable answer.  Checkpoints hold the head alone.
    """

    HEAD_FILE = "probe_head.pt"

    def __init__(self, *args, hidden: int = 256, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.policy.requires_grad_(False)
        width = self.tower.config.d_model
        self.hidden = hidden
        self.head = nn.Sequential(nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, len(self.labels)))

    @property
    def tower(self) -> nn.Module:  # looked up, not registered: the checkpoint holds the head alone
        return audio_tower_of(self.policy)

    def export(self, model_dir) -> None:
        """Write the head beside the exported backbone (``model/probe_head.pt``)."""
        torch.save({"state_dict": self.head.state_dict(), "labels": list(self.labels), "hidden": self.hidden},
                   f"{model_dir}/{self.HEAD_FILE}")

    @classmethod
    def restore(cls, model_dir, **arguments) -> LinearProbeModule:
        """The probe exported into ``model_dir`` (``arguments``: :func:`emorl.builders.module_arguments`), to score
        a corpus whose labels are its training labels."""
        saved = torch.load(f"{model_dir}/{cls.HEAD_FILE}", map_location="cpu")
        labels = arguments["labels"]
        if list(labels) != saved["labels"]:
            raise ValueError(
                f"{model_dir}: this frozen-encoder probe answers its training labels {saved['labels']}; the corpus "
                f"asks {list(labels)}. Evaluate it on a corpus with those labels (the embedded held-out corpus has MELD's)"
            )
        module = cls(hidden=saved["hidden"], **arguments)
        module.head.load_state_dict(saved["state_dict"])
        return module.eval()

    def trainable_parameters(self) -> list[nn.Parameter]:
        return list(self.head.parameters())

    def on_fit_start(self) -> None:
        self.policy.eval()  # frozen: no dropout in the encoder
        self.head.train()

    def features(self, batch: dict) -> Tensor:
        """Pooled last-layer features of the batch's clips: (B, D)."""
        with torch.no_grad():
            hidden = self.tower(batch["input_features"]).last_hidden_state
            lengths = encoder_frames(batch["feature_attention_mask"].sum(-1))
        return masked_mean_pool(hidden.float(), lengths.to(hidden.device))

    def logits(self, batch: dict) -> Tensor:
        return self.head(self.features(batch))

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        targets = torch.tensor([self.labels.index(y) for y in batch["label"]], device=self.device)
        logits = self.logits(batch)
        loss = nn.functional.cross_entropy(logits, targets)
        values = {"train/loss": float(loss.detach()), "train/accuracy": float((logits.argmax(-1) == targets).float().mean())}
        self.log_dict(values, on_step=True, batch_size=len(targets))
        self.recent_train_metrics.append(values)
        return loss

    @torch.no_grad()
    def predict_labels(self, batch: dict) -> tuple[list[str | None], list[str]]:
        preds = [self.labels[i] for i in self.logits(batch).argmax(-1).tolist()]
        return preds, list(preds)
