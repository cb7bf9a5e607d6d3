"""Sampling groups of completions and computing their per-token log-probs.

Model inputs here are the processor's tensors: ``input_ids``/``attention_mask`` (left-padded
prompts) and ``input_features``/``feature_attention_mask`` (audio).  A rollout of B prompts
and G completions each holds N = B x G completions, grouped contiguously (prompt i owns rows
``i*G .. i*G+G-1``).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import torch

from emorl.algos import token_log_probs

MODEL_INPUTS = ("input_ids", "attention_mask", "input_features", "feature_attention_mask")


@dataclass
class Rollout:
    """Completions of one batch of prompts.

    Attributes:
        prompt: model inputs repeated per completion, each with N rows.
        completion_ids: (N, T) sampled tokens, padded after the end token.
        completion_mask: (N, T) 1 up to and including the first end token.
        texts: N decoded completions (special tokens removed).
    """

    prompt: dict
    completion_ids: torch.Tensor
    completion_mask: torch.Tensor
    texts: list[str]

    def rows(self, index: slice) -> Rollout:
        return Rollout(
            prompt={k: v[index] for k, v in self.prompt.items()},
            completion_ids=self.completion_ids[index],
            completion_mask=self.completion_mask[index],
            texts=self.texts[index],
        )


def model_inputs(batch: dict) -> dict:
    """The tensors a Qwen2-Audio forward takes, from a collated batch."""
    missing = [k for k in MODEL_INPUTS if k not in batch]
    if missing:
        raise KeyError(f"batch lacks model inputs {missing}; was the processor called with audio=?")
    return {k: batch[k] for k in MODEL_INPUTS}


def repeat_rows(inputs: dict, times: int) -> dict:
    """Repeat every tensor's rows ``times`` times, each row's copies contiguous."""
    return {k: v.repeat_interleave(times, dim=0) for k, v in inputs.items()}


def completion_mask(ids: torch.Tensor, end_ids: list[int]) -> torch.Tensor:
    """1 on tokens up to and including the first end token of each row: (N, T) -> (N, T) long.

    >>> completion_mask(torch.tensor([[5, 2, 0, 0], [5, 6, 7, 8]]), [2]).tolist()
    [[1, 1, 0, 0], [1, 1, 1, 1]]
    """
    is_end = torch.isin(ids, torch.tensor(end_ids, device=ids.device))
    ended_before = (is_end.long().cumsum(dim=1) - is_end.long()) > 0
    return (~ended_before).long()


@torch.no_grad()
def sample(
    model,
    processor,
    batch: dict,
    *,
    num_generations: int,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_p: float = 1.0,
    do_sample: bool = True,
    suppress_ids: list[int],
    end_ids: list[int],
) -> Rollout:
    """G completions for each prompt of ``batch`` (greedy when ``do_sample`` is False and G == 1)."""
    inputs = model_inputs(batch)
    prompt_len = inputs["input_ids"].shape[1]
    pad_id = processor.tokenizer.pad_token_id
    generate_kwargs = dict(
        max_new_tokens=max_new_tokens,
        do_sample=do_sample,
        num_return_sequences=num_generations,
        suppress_tokens=suppress_ids,
        eos_token_id=end_ids,
        pad_token_id=pad_id,
    )
    if do_sample:
        # Plain temperature sampling, whatever the checkpoint's generation_config says
        # (Qwen2-Audio ships top_k / top_p / repetition_penalty defaults): the log-probs that
        # GRPO computes are those of exactly this distribution.
        generate_kwargs.update(temperature=temperature, top_p=top_p, top_k=0, repetition_penalty=1.0)
    else:
        generate_kwargs.update(repetition_penalty=1.0)
    out = model.generate(**inputs, **generate_kwargs)
    ids = out[:, prompt_len:]
    mask = completion_mask(ids, end_ids)
    ids = torch.where(mask.bool(), ids, torch.full_like(ids, pad_id))
    texts = processor.tokenizer.batch_decode(ids, skip_special_tokens=True)
    return Rollout(prompt=repeat_rows(inputs, num_generations), completion_ids=ids, completion_mask=mask, texts=texts)


def completion_log_probs(model, rollout: Rollout, temperature: float = 1.0) -> torch.Tensor:
    """Per-token log-probs of the completions under ``model``: (N, T).

    Position ids follow the attention mask, so left padding does not shift positions.
    """
    prompt = rollout.prompt
    input_ids = torch.cat([prompt["input_ids"], rollout.completion_ids], dim=1)
    attention_mask = torch.cat([prompt["attention_mask"], rollout.completion_mask.to(prompt["attention_mask"].dtype)], dim=1)
    position_ids = (attention_mask.long().cumsum(dim=1) - 1).clamp(min=0)
    out = model(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=position_ids,
        input_features=prompt["input_features"],
        feature_attention_mask=prompt["feature_attention_mask"],
        use_cache=False,
    )
    t = rollout.completion_ids.shape[1]
    logits = out.logits[:, -t - 1 : -1]
    return token_log_probs(logits, rollout.completion_ids, temperature)


@contextmanager
def reference_policy(model):
    """Within this block ``model`` computes the reference policy.

    A peft model with a ``reference`` adapter switches to it (continuing from a tuned
    adapter); any other peft model runs with adapters disabled (the base model).
    """
    adapters = getattr(model, "peft_config", None)
    if adapters is None:
        raise TypeError("reference_policy needs a peft model; full fine-tuning keeps a separate reference copy")
    if "reference" in adapters:
        active = model.active_adapter
        model.set_adapter("reference")
        try:
            yield model
        finally:
            model.set_adapter(active)
            # set_adapter marks the active adapter trainable; the reference stays frozen.
            for name, param in model.named_parameters():
                if ".reference." in name:
                    param.requires_grad_(False)
    else:
        with model.disable_adapter():
            yield model
