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

from emorl.algos import token_log_probs, token_log_probs_and_entropy

MODEL_INPUTS = ("input_ids", "attention_mask", "input_features", "feature_attention_mask")


@dataclass
class Rollout:
    """Completions of one batch of prompts.

    Attributes:
        prompt: model inputs of the B prompts, one row each (audio features included).
        prompt_index: (N,) the prompt row of each completion (a prompt's completions contiguous).
        completion_ids: (N, T) sampled tokens, padded after the end token.
        completion_mask: (N, T) 1 up to and including the first end token.
        texts: N decoded completions (special tokens removed).
    """

    prompt: dict
    prompt_index: torch.Tensor
    completion_ids: torch.Tensor
    completion_mask: torch.Tensor
    texts: list[str]

    def rows(self, index: slice) -> Rollout:
        """The completions ``index`` (their prompts stay addressed by ``prompt_index``)."""
        return Rollout(
            prompt=self.prompt,
            prompt_index=self.prompt_index[index],
            completion_ids=self.completion_ids[index],
            completion_mask=self.completion_mask[index],
            texts=self.texts[index],
        )


def concat(rollouts: list[Rollout], prompt: dict, pad_id: int) -> Rollout:
    """One rollout from several over rows of the same ``prompt`` (completions padded to the longest)."""
    t = max(r.completion_ids.shape[1] for r in rollouts)
    pad = lambda x, value: torch.nn.functional.pad(x, (0, t - x.shape[1]), value=value)
    return Rollout(
        prompt=prompt,
        prompt_index=torch.cat([r.prompt_index for r in rollouts]),
        completion_ids=torch.cat([pad(r.completion_ids, pad_id) for r in rollouts]),
        completion_mask=torch.cat([pad(r.completion_mask, 0) for r in rollouts]),
        texts=[text for r in rollouts for text in r.texts],
    )


def replace_completions(ro: Rollout, rows: list[int], ids: list[list[int]], texts: list[str], pad_id: int) -> Rollout:
    """``ro`` with the completions of ``rows`` replaced by token sequences ``ids`` (each ending with its end
    token) and their ``texts``; the completions are padded to the longest (guided groups' gold answers).

    >>> ro = Rollout(prompt={}, prompt_index=torch.tensor([0, 0]), completion_ids=torch.tensor([[5, 9], [6, 9]]),
    ...              completion_mask=torch.tensor([[1, 1], [1, 1]]), texts=["a", "b"])
    >>> new = replace_completions(ro, [1], [[7, 8, 9]], ["g"], pad_id=0)
    >>> new.completion_ids.tolist(), new.completion_mask.tolist(), new.texts
    ([[5, 9, 0], [7, 8, 9]], [[1, 1, 0], [1, 1, 1]], ['a', 'g'])
    """
    width = max([ro.completion_ids.shape[1], *(len(x) for x in ids)])
    pad = lambda x, value: torch.nn.functional.pad(x, (0, width - x.shape[1]), value=value)  # noqa: E731
    completion_ids, mask = pad(ro.completion_ids, pad_id).clone(), pad(ro.completion_mask, 0).clone()
    out_texts = list(ro.texts)
    for row, tokens, text in zip(rows, ids, texts, strict=True):
        completion_ids[row] = pad_id
        mask[row] = 0
        completion_ids[row, : len(tokens)] = torch.tensor(tokens, dtype=completion_ids.dtype)
        mask[row, : len(tokens)] = 1
        out_texts[row] = text
    return Rollout(prompt=ro.prompt, prompt_index=ro.prompt_index, completion_ids=completion_ids, completion_mask=mask,
                   texts=out_texts)


def merge_batches(batches: list[dict], pad_id: int) -> dict:
    """Several collated batches of prompts as one (prompts left-padded to the longest, columns joined).

    Left padding does not change what a prompt means: positions follow the attention mask.
    """
    width = max(b["input_ids"].shape[1] for b in batches)
    out: dict = {}
    for key in batches[0]:
        values = [b[key] for b in batches]
        if key in ("input_ids", "attention_mask"):
            fill = pad_id if key == "input_ids" else 0
            out[key] = torch.cat([torch.nn.functional.pad(v, (width - v.shape[1], 0), value=fill) for v in values])
        elif torch.is_tensor(values[0]):
            out[key] = torch.cat(values)
        else:
            out[key] = [x for v in values for x in v]
    return out


def take_groups(batch: dict, ro: Rollout, groups: list[int], group_size: int) -> tuple[dict, Rollout]:
    """The prompts ``groups`` of ``batch`` and their completions, as a batch and rollout of their own.

    >>> batch = {"input_ids": torch.tensor([[1], [2], [3]]), "label": ["a", "b", "c"]}
    >>> ro = Rollout(prompt=batch, prompt_index=torch.arange(3).repeat_interleave(2), completion_ids=torch.arange(6)[:, None],
    ...              completion_mask=torch.ones(6, 1), texts=list("uvwxyz"))
    >>> sub, part = take_groups(batch, ro, [2, 0], 2)
    >>> sub["label"], part.texts, part.prompt_index.tolist()
    (['c', 'a'], ['y', 'z', 'u', 'v'], [0, 0, 1, 1])
    """
    index = torch.tensor(groups, dtype=torch.long)
    sub = {k: v[index.to(v.device)] if torch.is_tensor(v) else [v[i] for i in groups] for k, v in batch.items()}
    rows = [i * group_size + j for i in groups for j in range(group_size)]
    rows_t = torch.tensor(rows, dtype=torch.long, device=ro.completion_ids.device)
    part = Rollout(
        prompt={k: sub[k] for k in MODEL_INPUTS if k in sub},
        prompt_index=torch.arange(len(groups), device=ro.prompt_index.device).repeat_interleave(group_size),
        completion_ids=ro.completion_ids[rows_t],
        completion_mask=ro.completion_mask[rows_t],
        texts=[ro.texts[r] for r in rows],
    )
    return sub, part


def model_inputs(batch: dict) -> dict:
    """The tensors a Qwen2-Audio forward takes, from a collated batch."""
    missing = [k for k in MODEL_INPUTS if k not in batch]
    if missing:
        raise KeyError(f"batch lacks model inputs {missing}; was the processor called with audio=?")
    return {k: batch[k] for k in MODEL_INPUTS}


def positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids that skip left padding, as ``generate`` computes them: (N, L) -> (N, L).

    >>> positions(torch.tensor([[0, 1, 1], [1, 1, 1]])).tolist()
    [[0, 0, 1], [0, 1, 2]]
    """
    return (attention_mask.long().cumsum(dim=-1) - 1).masked_fill(attention_mask == 0, 0)


@contextmanager
def evaluation_mode(model):
    """Within this block every submodule of ``model`` is in evaluation mode; each one's own mode is restored after.

    Evaluation mode turns dropout off, and transformers keeps the KV cache in it even with
    gradient checkpointing enabled (in training mode checkpointed layers drop the cache).
    """
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, training in modes:
            module.training = training


def shared_prefix(model, prompt: dict, prompt_index: torch.Tensor):
    """The KV cache of each prompt but its last token, computed once per prompt, one row per completion.

    The audio encoder and the prompt's forward pass run on the distinct prompts of
    ``prompt_index`` (N,) only; the cache rows are then indexed out to the N completions
    (differentiably: gradients of the completions add up on their shared prompt).  Returns
    None when the model keeps no cache (gradient checkpointing in training mode).
    """
    one_clip_per_prompt(prompt)
    used, inverse = torch.unique(prompt_index, sorted=True, return_inverse=True)
    ids = prompt["input_ids"][used]
    mask = prompt["attention_mask"][used]
    audio_token = getattr(getattr(model, "config", None), "audio_token_id", None)
    if audio_token is not None and bool((ids[:, -1] == audio_token).any()):
        raise ValueError("a prompt ends with an audio token; the chat template must put the question after the audio")
    out = model(
        input_ids=ids[:, :-1],
        attention_mask=mask[:, :-1],
        position_ids=positions(mask)[:, :-1],
        input_features=prompt["input_features"][used],
        feature_attention_mask=prompt["feature_attention_mask"][used],
        use_cache=True,
    )
    cache = out.cache
    if cache is None or cache.get_seq_length() == 0:  # checkpointed layers in training mode keep no cache
        return None
    cache.batch_select_indices(inverse.to(ids.device))
    return cache


def one_clip_per_prompt(prompt: dict) -> None:
    """Rollouts index the audio features by prompt: refuse prompts that carry several clips (or none)."""
    clips, prompts = prompt["input_features"].shape[0], prompt["input_ids"].shape[0]
    if clips != prompts:
        raise ValueError(f"{clips} audio clips for {prompts} prompts: GRPO rollouts and their log-probs take one clip per "
                         "prompt (questions comparing clips are for supervised training and greedy evaluation)")


def forget_rope_deltas(model) -> None:
    """Drop the position offsets a multimodal-RoPE model (Qwen2.5-Omni) keeps from its last ``generate``.

    Generating from a prefilled cache reuses them, sized for the last call's batch; without them
    the model recomputes positions from the full prompt (for audio and text: the plain positions).
    """
    for module in model.modules():
        if getattr(module, "rope_deltas", None) is not None:
            module.rope_deltas = None


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
    share_prompt: bool = True,
    synced_gpus: bool = False,
) -> Rollout:
    """G completions for each prompt of ``batch`` (greedy when ``do_sample`` is False and G == 1).

    Whatever state the model is in (training mode, gradient checkpointing, LoRA dropout),
    sampling runs in evaluation mode with a KV cache and with the audio of every prompt; the
    model's modes are restored afterwards.  So the completions come from the distribution that
    :func:`completion_log_probs` scores in evaluation mode.

    With ``share_prompt`` (the default) each prompt's audio is encoded and its prompt prefilled
    once, and the G samples continue from copies of that KV cache; otherwise ``generate`` copies
    the raw prompt G times first (``num_return_sequences``), running the encoder and the prefill
    G times.  Both draw from the same distribution with the same random numbers.
    ``synced_gpus`` keeps every process generating until all are done (DeepSpeed ZeRO-3, whose
    forward passes gather parameters from every process).
    """
    inputs = model_inputs(batch)
    prompt_len = inputs["input_ids"].shape[1]
    pad_id = processor.tokenizer.pad_token_id
    index = torch.arange(inputs["input_ids"].shape[0], device=inputs["input_ids"].device).repeat_interleave(num_generations)
    generate_kwargs = dict(
        max_new_tokens=max_new_tokens,
        do_sample=do_sample,
        suppress_tokens=suppress_ids,
        eos_token_id=end_ids,
        synced_gpus=synced_gpus,
        pad_token_id=pad_id,
        use_cache=True,
    )
    if do_sample:
        # Plain temperature sampling, whatever the checkpoint's generation_config says
        # (Qwen2-Audio ships top_k / top_p / repetition_penalty defaults): the log-probs that
        # GRPO computes are those of exactly this distribution.
        generate_kwargs.update(temperature=temperature, top_p=top_p, top_k=0, repetition_penalty=1.0)
    else:
        generate_kwargs.update(repetition_penalty=1.0)
    with evaluation_mode(model):
        if share_prompt:
            cache = shared_prefix(model, inputs, index)
            if cache is None:
                raise RuntimeError(
                    "the model returned no KV cache for the prompts in evaluation mode; sampling from the "
                    "prompt tokens alone would drop the audio. Set algo.grpo.share_prompt=false for this model"
                )
            forget_rope_deltas(model)
            out = model.generate(
                input_ids=inputs["input_ids"][index],
                attention_mask=inputs["attention_mask"][index],
                cache=cache,
                **generate_kwargs,
            )
        else:
            out = model.generate(**inputs, num_return_sequences=num_generations, **generate_kwargs)
    ids = out[:, prompt_len:]
    mask = completion_mask(ids, end_ids)
    ids = torch.where(mask.bool(), ids, torch.full_like(ids, pad_id))
    texts = processor.tokenizer.batch_decode(ids, skip_special_tokens=True)
    return Rollout(prompt=inputs, prompt_index=index, completion_ids=ids, completion_mask=mask, texts=texts)


def completion_log_probs(
    model,
    rollout: Rollout,
    temperature: float = 1.0,
    share_prompt: bool = True,
    suppress_ids: list[int] | None = None,
    with_entropy: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Per-token log-probs of the completions under ``model``: (N, T); with ``with_entropy``
    also the entropy of the sampling distribution at each completion position: (N, T).

    ``temperature`` and ``suppress_ids`` must be those the completions were sampled with, so that
    the log-probs are those of the sampling distribution (suppressed tokens have probability 0 and
    the rest renormalise, as ``generate(suppress_tokens=...)`` does).  The model runs in whatever
    mode it is in: training mode for the policy's gradient pass, :func:`evaluation_mode` for
    measurements of the sampling or reference policy.

    With ``share_prompt`` each distinct prompt (audio encoder and prompt tokens) runs once and
    the completions continue from its cache; otherwise, or when the model keeps no cache
    (gradient checkpointing in training mode), every completion runs with its own copy of the
    prompt.  Position ids follow the attention mask, so left padding does not shift them.
    """
    prompt, index = rollout.prompt, rollout.prompt_index
    prompt_mask = prompt["attention_mask"][index]
    completion_mask = rollout.completion_mask.to(prompt_mask.dtype)
    attention_mask = torch.cat([prompt_mask, completion_mask], dim=1)
    position_ids = positions(attention_mask)
    t = rollout.completion_ids.shape[1]
    cache = shared_prefix(model, prompt, index) if share_prompt and not _checkpointing(model) else None
    if cache is not None:
        p = prompt_mask.shape[1]
        # the prompt's last token, then every completion token but the last: T positions
        input_ids = torch.cat([prompt["input_ids"][index][:, -1:], rollout.completion_ids[:, :-1]], dim=1)
        out = model(
            input_ids=input_ids,
            attention_mask=attention_mask[:, :-1],
            position_ids=position_ids[:, p - 1 : -1],
            cache=cache,
            use_cache=True,
        )
        logits = out.logits
    else:
        one_clip_per_prompt(prompt)  # (shared_prefix checks the cached path)
        out = model(
            input_ids=torch.cat([prompt["input_ids"][index], rollout.completion_ids], dim=1),
            attention_mask=attention_mask,
            position_ids=position_ids,
            input_features=prompt["input_features"][index],
            feature_attention_mask=prompt["feature_attention_mask"][index],
            use_cache=False,
        )
        logits = out.logits[:, -t - 1 : -1]
    padding = rollout.completion_mask == 0  # after the end: no part of a completion
    if not with_entropy:
        return token_log_probs(logits, rollout.completion_ids, temperature, suppress_ids).masked_fill(padding, 0.0)
    logp, entropy = token_log_probs_and_entropy(logits, rollout.completion_ids, temperature, suppress_ids)
    return logp.masked_fill(padding, 0.0), entropy.masked_fill(padding, 0.0)


def _checkpointing(model) -> bool:
    """Whether a checkpointed layer of ``model`` is in training mode: transformers turns its KV cache off.

    The layers are asked, not the model: a wrapper (peft) can be in training mode around layers
    that are not, and the other way round.
    """
    return any(getattr(m, "gradient_checkpointing", False) is True and m.training for m in model.modules())


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
