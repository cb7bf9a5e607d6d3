"""The tiny backbones through the real transformers / peft code paths.

Every test that takes ``tiny`` runs twice: on the tiny Qwen2-Audio and on the tiny Qwen2.5-Omni
(its Thinker, loaded from a checkpoint laid out as Qwen2.5-Omni-7B's).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from emorl import rollout
from emorl.data.batching import Collator, Example
from emorl.models.loading import end_token_ids, load_backbone, suppressed_token_ids, wrap_for_training
from emorl.models.tiny import build_tiny_backbone

LORA = {"r": 4, "alpha": 8}


@pytest.fixture(params=["qwen2_audio", "qwen2_5_omni"])
def tiny(request):
    """A fresh (model, processor) of each tiny backbone."""
    base = request.getfixturevalue("tiny_base" if request.param == "qwen2_audio" else "tiny_omni_base")
    return load_backbone(base)


def test_the_omni_base_is_laid_out_as_the_7b_checkpoint_and_loads_as_its_thinker(tiny_omni_base, tmp_path):
    config = json.loads((tiny_omni_base / "config.json").read_text())
    assert config["architectures"] == ["Qwen2_5OmniForConditionalGeneration"]  # thinker.* weights, as the 7B
    assert not config["enable_audio_output"] and (tiny_omni_base / "spk_dict.pt").exists()
    model, processor = load_backbone(tiny_omni_base)
    assert type(model).__name__ == "Qwen2_5OmniThinkerForConditionalGeneration"
    assert not any("talker" in n or "token2wav" in n for n, _ in model.named_parameters())
    assert model.generation_config.eos_token_id == end_token_ids(model, processor)  # the checkpoint's end tokens kept
    # a trained Thinker is saved alone and loads by its own model_type
    model.save_pretrained(tmp_path / "thinker")
    processor.save_pretrained(tmp_path / "thinker")
    again, _ = load_backbone(tmp_path / "thinker")
    assert type(again).__name__ == type(model).__name__
    key = "lm_head.weight"
    assert torch.equal(again.state_dict()[key], model.state_dict()[key])


def test_a_checkpoint_of_another_architecture_is_refused_with_the_key(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "whisper"}))
    with pytest.raises(ValueError, match=r"'whisper' checkpoint.*model\.pretrained"):
        load_backbone(tmp_path)


def test_omni_placeholders_per_clip_are_those_of_qwen2_5_omnis_processor(tiny_omni_base):
    """The tiny Omni's processor gives each clip as many <|AUDIO|> tokens as Qwen2_5OmniProcessor
    computes for its features (its own length function), and the Thinker takes them all."""
    from transformers.models.qwen2_5_omni.processing_qwen2_5_omni import _get_feat_extract_output_lengths

    from emorl.models.tiny import omni_audio_token_count

    model, processor = load_backbone(tiny_omni_base)
    rng = np.random.default_rng(1)
    waves = [(0.1 * rng.standard_normal(n)).astype(np.float32) for n in (4000, 16000, 23999, 64000, 90000)]
    batch = _batch(processor, waves)
    frames = batch["feature_attention_mask"].sum(-1)
    expected = _get_feat_extract_output_lengths(frames)
    assert expected.tolist() == [omni_audio_token_count(int(f)) for f in frames]
    assert (batch["input_ids"] == model.config.audio_token_id).sum(-1).tolist() == expected.tolist()
    assert expected.tolist()[-2:] == [100, 100]  # cut to the 4 s window
    with torch.no_grad():
        assert torch.isfinite(model(**rollout.model_inputs(batch)).logits).all()


def test_embedded_base_loads_through_from_pretrained(tiny_base):
    model, processor = load_backbone(tiny_base)
    config = json.loads((tiny_base / "config.json").read_text())
    assert config["architectures"] == ["Qwen2AudioForConditionalGeneration"]
    n = sum(p.numel() for p in model.parameters())
    assert 1e5 < n < 5e6, n
    # a 4 s window: feature extractor and encoder agree
    assert processor.feature_extractor.chunk_length == 4
    assert model.config.audio_config.max_source_positions == 4 * 100 // 2
    assert processor.__class__.__name__ == "Qwen2AudioProcessor"
    assert (tiny_base / "warm_start.json").exists()


def test_build_is_reproducible_by_seed(tmp_path):
    texts = ["Which emotion does the speaker express? <answer>joy</answer>"] * 20
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        build_tiny_backbone(tmp_path / name, texts, seed=seed, vocab_size=300)
    weights = {name: load_backbone(tmp_path / name)[0].state_dict() for name in "abc"}
    key = "lm_head.weight"
    assert torch.equal(weights["a"][key], weights["b"][key])
    assert not torch.equal(weights["a"][key], weights["c"][key])


def _batch(processor, waves, text="Which emotion does the speaker express? Options: joy, anger."):
    return Collator(processor)([Example(audio=w, text=text) for w in waves])


def test_waveform_changes_the_logits(tiny):
    model, processor = tiny
    rng = np.random.default_rng(0)
    a = (0.1 * rng.standard_normal(16000)).astype(np.float32)
    b = (0.1 * rng.standard_normal(24000)).astype(np.float32)
    batch_a, batch_b = _batch(processor, [a]), _batch(processor, [a * 0.01 + np.float32(0.2)])
    assert "input_features" in batch_a  # the processor got audio= (audios= would be dropped)
    n_audio = (batch_a["input_ids"] == model.config.audio_token_id).sum().item()
    assert n_audio == 25  # 1 s -> 25 audio tokens
    assert (_batch(processor, [b])["input_ids"] == model.config.audio_token_id).sum().item() == 37
    with torch.no_grad():
        la = model(**rollout.model_inputs(batch_a)).logits[:, -1]
        lb = model(**rollout.model_inputs(batch_b)).logits[:, -1]
    assert not torch.allclose(la, lb, atol=1e-5)


def test_full_fine_tuning_trains_every_weight_but_the_fixed_audio_positions(tiny):
    model, _ = tiny
    policy = wrap_for_training(model, None)
    frozen = [n for n, p in policy.named_parameters() if not p.requires_grad]
    # sinusoidal, fixed by the architecture: a weight in Qwen2-Audio's encoder, a buffer in Qwen2.5-Omni's
    if model.config.model_type == "qwen2_audio":
        assert frozen == ["model.audio_tower.embed_positions.weight"]
    else:
        assert frozen == [] and any(n.endswith("positional_embedding.positional_embedding") for n, _ in policy.named_buffers())


def test_lora_trains_only_the_language_model(tiny):
    model, _ = tiny
    policy = wrap_for_training(model, LORA)
    trainable = [n for n, p in policy.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n and "language_model" in n for n in trainable)
    assert not any("audio_tower" in n for n in trainable)


def _rollout(model, processor, batch, g=2, tokens=8):
    return rollout.sample(
        model, processor, batch, num_generations=g, max_new_tokens=tokens,
        suppress_ids=suppressed_token_ids(processor), end_ids=end_token_ids(model, processor),
    )


def test_reference_log_probs_equal_policy_at_step_zero(tiny, esr_batch):
    model, processor = tiny
    policy = wrap_for_training(model, LORA)
    ro = _rollout(policy, processor, esr_batch)
    with torch.no_grad():
        logp = rollout.completion_log_probs(policy, ro)
        with rollout.reference_policy(policy) as ref:
            ref_logp = rollout.completion_log_probs(ref, ro)
    assert torch.equal(logp, ref_logp)
    # after an update the policy moves and the reference does not
    with torch.no_grad():
        for name, p in policy.named_parameters():
            if "lora_B" in name:
                p.add_(0.05)
        moved = rollout.completion_log_probs(policy, ro)
        with rollout.reference_policy(policy) as ref:
            again = rollout.completion_log_probs(ref, ro)
    assert not torch.allclose(moved, logp)
    assert torch.equal(again, ref_logp)


def test_continuing_from_an_adapter_keeps_a_frozen_reference_copy(tiny, esr_batch, tmp_path):
    model, processor = tiny
    tuned = wrap_for_training(model, LORA)
    with torch.no_grad():
        for name, p in tuned.named_parameters():
            if "lora_B" in name:
                p.add_(0.03)
    tuned.save_pretrained(tmp_path / "adapter")
    fresh, _ = load_backbone_again(tiny)
    policy = wrap_for_training(fresh, LORA, adapter=tmp_path / "adapter")
    ro = _rollout(policy, processor, esr_batch)
    with torch.no_grad():
        logp = rollout.completion_log_probs(policy, ro)
        with rollout.reference_policy(policy) as ref:
            ref_logp = rollout.completion_log_probs(ref, ro)
        with policy.disable_adapter():
            base_logp = rollout.completion_log_probs(policy, ro)
    assert torch.allclose(logp, ref_logp, atol=1e-6)  # starts at the tuned adapter, not the base
    assert not torch.allclose(logp, base_logp, atol=1e-4)
    trainable = [n for n, p in policy.named_parameters() if p.requires_grad]
    assert trainable and not any(".reference." in n for n in trainable)


def load_backbone_again(tiny):
    model, processor = tiny
    return load_backbone(model.name_or_path)


def test_sampled_completions_never_contain_audio_placeholders(tiny, esr_batch):
    model, processor = tiny
    audio_id = model.config.audio_token_id
    with torch.no_grad():  # make <|AUDIO|> by far the likeliest next token
        model.lm_head.weight[audio_id] = 50 * model.lm_head.weight.abs().max()
    bare = model.generate(**rollout.model_inputs(esr_batch), max_new_tokens=4, do_sample=True,
                          pad_token_id=processor.tokenizer.pad_token_id)
    assert (bare[:, esr_batch["input_ids"].shape[1]:] == audio_id).any(), "the bias should show without suppression"
    ro = _rollout(model, processor, esr_batch, g=3, tokens=6)
    assert not (ro.completion_ids == audio_id).any()
    assert not torch.isin(ro.completion_ids, torch.tensor(suppressed_token_ids(processor))).any()


def test_completion_mask_stops_after_the_first_end_token():
    ids = torch.tensor([[7, 9, 2, 7, 2], [2, 7, 7, 7, 7], [7, 7, 7, 7, 7]])
    assert rollout.completion_mask(ids, [2, 3]).tolist() == [[1, 1, 1, 0, 0], [1, 0, 0, 0, 0], [1, 1, 1, 1, 1]]


def _left_padded_batch(tiny, small_corpus):
    """Three IR questions on clips of different lengths: left padding in the batch."""
    from emorl.data.batching import EmotionQuestions
    from emorl.prompts import get_strategy

    _, processor = tiny
    items = small_corpus.items("test")
    ds = EmotionQuestions([items[0], items[5], items[9]], get_strategy("ir"), small_corpus.labels)
    batch = Collator(processor)([ds[i] for i in range(3)])
    assert (batch["attention_mask"] == 0).any(), "the batch should be left-padded"
    return batch


@pytest.mark.parametrize("share_prompt", [True, False])
def test_forward_log_probs_match_the_sampling_distribution(tiny, small_corpus, share_prompt):
    """Log-probs recomputed by a forward pass (shared prompt or not) equal those generate() sampled from.

    Three prompts of different lengths (left padding), two completions each: a completion paired
    with another prompt's audio would get other log-probs.
    """
    model, processor = tiny
    inputs = rollout.model_inputs(_left_padded_batch(tiny, small_corpus))
    torch.manual_seed(0)
    with torch.no_grad():
        out = model.generate(
            **inputs, max_new_tokens=6, do_sample=True, top_k=0, output_logits=True, return_dict_in_generate=True,
            num_return_sequences=2,
            eos_token_id=end_token_ids(model, processor), pad_token_id=processor.tokenizer.pad_token_id,
        )
    ids = out.sequences[:, inputs["input_ids"].shape[1]:]
    mask = rollout.completion_mask(ids, end_token_ids(model, processor))
    sampled = torch.stack(out.logits, dim=1).log_softmax(-1).gather(-1, ids[..., None])[..., 0]
    index = torch.arange(3).repeat_interleave(2)
    ro = rollout.Rollout(prompt=inputs, prompt_index=index, completion_ids=ids, completion_mask=mask, texts=[""] * 6)
    with torch.no_grad():
        recomputed = rollout.completion_log_probs(model, ro, share_prompt=share_prompt)
    assert torch.allclose(recomputed[mask.bool()], sampled[mask.bool()], atol=1e-4)
    # pairing completions with the wrong prompts' audio changes the log-probs
    order = [2, 3, 4, 5, 0, 1]
    shuffled = rollout.Rollout(prompt=inputs, prompt_index=index, completion_ids=ids[order],
                               completion_mask=mask[order], texts=[""] * 6)
    with torch.no_grad():
        wrong = rollout.completion_log_probs(model, shuffled, share_prompt=share_prompt)
    assert not torch.allclose(wrong, recomputed[order], atol=1e-4)


def _count_encoder_rows(model) -> list[int]:
    """Rows (clips) the audio encoder processes, appended per call."""
    rows: list[int] = []

    def clips(module, args, kwargs):
        if kwargs.get("feature_lens") is not None:  # Qwen2.5-Omni: the clips' frames concatenated, one length per clip
            rows.append(len(kwargs["feature_lens"]))
        else:
            rows.append((args[0] if args else kwargs["input_features"]).shape[0])

    model.model.audio_tower.register_forward_pre_hook(clips, with_kwargs=True)
    return rows


def test_shared_prompt_sampling_draws_the_same_completions_and_encodes_each_clip_once(tiny, small_corpus):
    model, processor = tiny
    batch = _left_padded_batch(tiny, small_corpus)
    rows = _count_encoder_rows(model)
    runs = {}
    for share in (True, False):
        rows.clear()
        torch.manual_seed(3)
        ro = rollout.sample(model, processor, batch, num_generations=4, max_new_tokens=10, share_prompt=share,
                            suppress_ids=suppressed_token_ids(processor), end_ids=end_token_ids(model, processor))
        runs[share] = (ro, sum(rows))
    (shared, shared_rows), (plain, plain_rows) = runs[True], runs[False]
    assert shared_rows == 3 and plain_rows == 12  # one encoding per clip, against one per completion
    # same distribution and the same random numbers: the same 12 completions
    assert torch.equal(shared.completion_ids, plain.completion_ids)
    assert shared.texts == plain.texts and len(set(shared.texts)) > 1


def test_shared_prompt_log_probs_and_gradients_equal_the_full_forward(tiny, small_corpus):
    model, processor = tiny
    batch = _left_padded_batch(tiny, small_corpus)
    torch.manual_seed(1)
    ro = rollout.sample(model, processor, batch, num_generations=2, max_new_tokens=8,
                        suppress_ids=suppressed_token_ids(processor), end_ids=end_token_ids(model, processor))
    chunk = ro.rows(slice(1, 5))  # a micro-batch that cuts through two groups
    grads, values = {}, {}
    for share in (True, False):
        model.zero_grad()
        logp = rollout.completion_log_probs(model, chunk, share_prompt=share)
        (logp * chunk.completion_mask).sum().backward()
        values[share] = logp.detach()
        grads[share] = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    mask = chunk.completion_mask.bool()
    assert torch.allclose(values[True][mask], values[False][mask], atol=1e-5)
    assert grads[True].keys() == grads[False].keys() and any("audio_tower" in n for n in grads[True])
    for name, g in grads[True].items():
        assert torch.allclose(g, grads[False][name], atol=1e-5, rtol=1e-4), name


def test_log_probs_with_gradient_checkpointing_equal_those_without(tiny, small_corpus):
    from emorl.models.loading import enable_gradient_checkpointing

    model, processor = tiny
    batch = _left_padded_batch(tiny, small_corpus)
    torch.manual_seed(2)
    ro = rollout.sample(model, processor, batch, num_generations=2, max_new_tokens=6,
                        suppress_ids=suppressed_token_ids(processor), end_ids=end_token_ids(model, processor))
    model.train()
    plain = rollout.completion_log_probs(model, ro)
    plain.sum().backward()
    grad = model.lm_head.weight.grad.clone()
    model.zero_grad()
    enable_gradient_checkpointing(model)
    checkpointed = rollout.completion_log_probs(model, ro)  # no KV cache in training: the full forward
    checkpointed.sum().backward()
    assert torch.allclose(plain, checkpointed, atol=1e-5)
    assert torch.allclose(grad, model.lm_head.weight.grad, atol=1e-5)


def test_log_probs_are_those_of_the_sampler_when_tokens_are_suppressed(tiny, esr_batch):
    """The sampler never draws the audio placeholders (their probability renormalises over the rest);
    the log-probs GRPO computes must be of that same distribution, or the ratio is biased."""
    model, processor = tiny
    audio_id = model.config.audio_token_id
    with torch.no_grad():  # give the suppressed <|AUDIO|> most of the probability mass
        model.lm_head.weight[audio_id] = 50 * model.lm_head.weight.abs().max()
    suppress, end_ids = suppressed_token_ids(processor), end_token_ids(model, processor)
    inputs = rollout.model_inputs(esr_batch)
    torch.manual_seed(0)
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=6, do_sample=True, top_k=0, suppress_tokens=suppress,
                             output_scores=True, return_dict_in_generate=True, eos_token_id=end_ids,
                             pad_token_id=processor.tokenizer.pad_token_id)
    ids = out.sequences[:, inputs["input_ids"].shape[1]:]
    mask = rollout.completion_mask(ids, end_ids)
    sampler = torch.stack(out.scores, dim=1).log_softmax(-1).gather(-1, ids[..., None])[..., 0]  # after suppression
    ro = rollout.Rollout(prompt=inputs, prompt_index=torch.arange(3), completion_ids=ids, completion_mask=mask, texts=[""] * 3)
    with torch.no_grad():
        scored = rollout.completion_log_probs(model, ro, suppress_ids=suppress)
    assert torch.allclose(scored[mask.bool()], sampler[mask.bool()], atol=1e-4)
    assert (scored[~mask.bool()] == 0).all()  # padding after the end is no part of the completion


def test_sampling_runs_in_evaluation_mode_and_restores_every_modules_mode(tiny, esr_batch):
    model, processor = tiny
    policy = wrap_for_training(model, {"r": 4, "alpha": 8, "dropout": 0.5})
    with torch.no_grad():  # adapters that act, so that their dropout would show
        for name, p in policy.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    policy.train()
    policy.base_model.model.model.audio_tower.eval()  # a mixed state must come back as it was
    before = [m.training for m in policy.modules()]
    seen = []
    hook = policy.base_model.model.lm_head.register_forward_pre_hook(lambda m, args: seen.append(policy.training))
    _rollout(policy, processor, esr_batch, g=2, tokens=4)
    hook.remove()
    assert seen and not any(seen), "every forward of the sampler runs in evaluation mode (no dropout)"
    assert [m.training for m in policy.modules()] == before
    # with dropout 0.5 active, two samplings from the same seed would differ; in evaluation mode they agree
    torch.manual_seed(5)
    first = _rollout(policy, processor, esr_batch, g=2, tokens=6).completion_ids
    torch.manual_seed(5)
    assert torch.equal(first, _rollout(policy, processor, esr_batch, g=2, tokens=6).completion_ids)
