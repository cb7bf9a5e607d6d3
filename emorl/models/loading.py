"""Loading an audio-language backbone and its processor, and wrapping it for training.

One code path for every size: ``from_pretrained`` on a local directory or a hub id
(``Qwen/Qwen2-Audio-7B-Instruct``, ``Qwen/Qwen2.5-Omni-7B``).  The checkpoint's ``model_type``
picks the class (:data:`BACKBONES`); for Qwen2.5-Omni the trained model is its Thinker (audio in,
text out), loaded without the talker.  emorl never downloads anything itself; a hub id works
where the user's machine reaches the hub or has it cached.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import torch

log = logging.getLogger(__name__)

#: Weights the architecture fixes (Whisper-style sinusoidal positions of the audio encoder):
#: ``from_pretrained`` marks them trainable, full fine-tuning leaves them as they are.
FIXED_WEIGHTS = r".*audio_tower\.embed_positions\.weight"

#: LoRA targets: the language model's linear layers only, never the audio tower.
LANGUAGE_MODEL_LINEARS = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def looks_like_a_folder(path: str | Path) -> bool:
    """Whether ``path`` can only mean a folder: absolute, ``./``, ``../``, ``~``, or more than one ``/`` (a hub id
    is ``owner/name``).

    >>> looks_like_a_folder("/models/qwen"), looks_like_a_folder("Qwen/Qwen2-Audio-7B-Instruct")
    (True, False)
    """
    text = str(path)
    return Path(text).is_absolute() or text.startswith(("./", "../", "~", ".")) or text.count("/") > 1


def _qwen2_audio(path: str, kwargs: dict):
    from transformers import Qwen2AudioForConditionalGeneration

    return Qwen2AudioForConditionalGeneration.from_pretrained(path, **kwargs)


def _qwen2_5_omni(path: str, kwargs: dict):
    """The Thinker of a full Qwen2.5-Omni checkpoint (``thinker.*`` weights); the talker is never built."""
    from transformers import Qwen2_5OmniForConditionalGeneration

    full = Qwen2_5OmniForConditionalGeneration.from_pretrained(path, enable_audio_output=False, **kwargs)
    thinker = full.thinker
    thinker.generation_config = full.generation_config  # the checkpoint's end tokens
    thinker.name_or_path = full.name_or_path  # what a saved adapter names as its base
    return thinker


def _qwen2_5_omni_thinker(path: str, kwargs: dict):
    """A saved Thinker alone (what emorl exports after training a Qwen2.5-Omni model)."""
    from transformers import Qwen2_5OmniThinkerForConditionalGeneration

    return Qwen2_5OmniThinkerForConditionalGeneration.from_pretrained(path, **kwargs)


#: checkpoint ``model_type`` -> loader of the model emorl trains (audio in, text out).
BACKBONES = {
    "qwen2_audio": _qwen2_audio,
    "qwen2_5_omni": _qwen2_5_omni,
    "qwen2_5_omni_thinker": _qwen2_5_omni_thinker,
}


def model_type(path: str | Path) -> str:
    """The ``model_type`` of the checkpoint at ``path`` (its config.json, local or from the hub cache)."""
    from transformers import AutoConfig

    kind = AutoConfig.from_pretrained(str(path)).model_type
    if kind not in BACKBONES:
        raise ValueError(
            f"{path}: a {kind!r} checkpoint; emorl trains {sorted(BACKBONES)} models (model.pretrained)"
        )
    return kind


def load_backbone(path: str | Path, dtype: str = "float32", attn_implementation: str | None = None):
    """``(model, processor)`` from a directory or hub id, through ``from_pretrained``."""
    from transformers import AutoProcessor

    if dtype not in _DTYPES:
        raise ValueError(f"model.dtype {dtype!r} is not one of {sorted(_DTYPES)}")
    if looks_like_a_folder(path) and not Path(path).expanduser().is_dir():
        raise FileNotFoundError(
            f"{path}: no such model directory (model.pretrained, or the base model a saved adapter names). Give the "
            "folder of a saved model (config.json, weights and processor files), or a hub id such as "
            "Qwen/Qwen2-Audio-7B-Instruct"
        )
    kwargs = {"dtype": _DTYPES[dtype]}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    model = BACKBONES[model_type(path)](str(path), kwargs)
    processor = AutoProcessor.from_pretrained(str(path))
    processor.tokenizer.padding_side = "left"
    return model, processor


@dataclass
class LoraSettings:
    r: int = 16
    alpha: int = 32
    dropout: float = 0.0
    target_modules: str = LANGUAGE_MODEL_LINEARS


def wrap_for_training(model, lora: LoraSettings | dict | None, adapter: str | Path | None = None):
    """Make the trainable policy.

    * ``lora`` given, no ``adapter``: a fresh LoRA on the language model; the reference is the
      same model with adapters disabled.
    * ``adapter``: continue from a tuned peft adapter (e.g. an SFT run); a frozen copy of it is
      kept as adapter ``reference`` (no second full model).
    * ``lora`` None: full fine-tuning of every parameter the model itself trains (the audio
      encoder's fixed sinusoidal positions stay frozen, as transformers builds them).
    """
    if lora is None:
        if adapter:
            raise ValueError("model.adapter needs LoRA settings (model.lora) to continue from")
        for name, param in model.named_parameters():
            param.requires_grad_(not re.fullmatch(FIXED_WEIGHTS, name))
        return model
    from peft import LoraConfig, PeftModel, get_peft_model

    if adapter:
        model = PeftModel.from_pretrained(model, str(adapter), adapter_name="default", is_trainable=True)
        model.load_adapter(str(adapter), adapter_name="reference", is_trainable=False)
        model.set_adapter("default")
        return model
    settings = lora if isinstance(lora, LoraSettings) else LoraSettings(**lora)
    config = LoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=settings.target_modules,
        bias="none",
    )
    return get_peft_model(model, config)


def suppressed_token_ids(processor) -> list[int]:
    """Tokens a completion must never contain: audio placeholders and a new turn's start."""
    tok = processor.tokenizer
    names = ["<|AUDIO|>", "<|audio_bos|>", "<|audio_eos|>", "<|im_start|>",
             "<|IMAGE|>", "<|VIDEO|>", "<|vision_bos|>", "<|vision_eos|>"]  # Qwen2.5-Omni's vision placeholders
    ids = [tok.convert_tokens_to_ids(n) for n in names]
    return sorted({i for i in ids if i is not None and i != tok.unk_token_id})


def end_token_ids(model, processor) -> list[int]:
    """Ids that end a completion (the generation config's EOS list, and ``<|im_end|>``)."""
    eos = model.generation_config.eos_token_id
    eos = [eos] if isinstance(eos, int) else list(eos or [])
    im_end = processor.tokenizer.convert_tokens_to_ids("<|im_end|>")
    return sorted(set(eos + ([im_end] if im_end is not None else [])))


def enable_gradient_checkpointing(model) -> None:
    """Recompute activations in the backward pass instead of storing them (long completions on a GPU).

    The KV cache is off in training forward passes then, so GRPO's log-probs fall back to running
    the prompt with every completion (:func:`emorl.rollout.completion_log_probs` does this itself).
    """
    model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    if hasattr(model, "enable_input_require_grads"):
        model.enable_input_require_grads()  # LoRA: the frozen embeddings must pass gradients on
