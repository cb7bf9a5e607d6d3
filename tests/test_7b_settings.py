"""The ``model=qwen2_audio_7b`` and ``model=qwen2_5_omni_7b`` configurations' own code path, run on
the tiny models of the same architecture (the tiny Omni laid out as Qwen2.5-Omni-7B's checkpoint).

Every setting of ``conf/model/<name>.yaml`` but the weights: LoRA on the language
model (with its dropout), gradient checkpointing, the paper's learning rate, and the module in
training mode as Lightning runs ``training_step``; the GRPO settings are the defaults (G = 6,
temperature 1, beta 0.04) with fewer prompts and tokens.  The CPU test runs float32; its twin
marked ``gpu`` runs the same in bf16 on CUDA.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from emorl import builders, rollout
from emorl.data.batching import Collator, Example
from emorl.prompts import get_strategy
from tests.rewards import LENGTH_REWARD

SETTINGS = {  # device -> overrides beside model=qwen2_audio_7b
    "cpu": ["model.dtype=float32", "trainer=cpu"],
    "cuda": ["model.dtype=bfloat16", "trainer=gpu", "trainer.devices=1"],
}
GRPO = ["algo.grpo.num_generations=6", "algo.grpo.micro_batch_size=6", "algo.grpo.max_new_tokens=16"]
ATOL = {"cpu": 1e-5, "cuda": 5e-2}  # bf16 rounds the shared-prefix and full-forward paths differently


BASES = {"qwen2_audio_7b": "tiny_base", "qwen2_5_omni_7b": "tiny_omni_base"}  # 7B config -> tiny model of its kind


def seven_b_config(cfg_factory, tiny_base, device: str, *extra, model: str = "qwen2_audio_7b"):
    return cfg_factory(f"model={model}", f"model.pretrained={tiny_base}", *SETTINGS[device], *GRPO, *extra)


def questions(processor, waves, device):
    """ESR questions on the given waveforms (equal lengths: only the audio differs between calls)."""
    labels = ["neutral", "joy", "sadness", "anger", "fear", "disgust", "surprise"]
    text = get_strategy("esr").prompt(labels)
    batch = Collator(processor)([Example(audio=w, text=text, label="joy", options=labels) for w in waves])
    return {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}


def waves(kind: str, n: int = 2, seconds: float = 2.0) -> list[np.ndarray]:
    t = np.arange(int(16000 * seconds)) / 16000
    rng = np.random.default_rng(0)
    if kind == "tone":
        return [(0.3 * np.sin(2 * np.pi * (180 + 40 * i) * t)).astype(np.float32) for i in range(n)]
    return [(0.3 * rng.standard_normal(t.size)).astype(np.float32) for _ in range(n)]


def modes(model) -> list[bool]:
    return [m.training for m in model.modules()]


def check_rollouts_hear_the_audio(cfg, device):
    from emorl.models.loading import end_token_ids, suppressed_token_ids

    policy, processor, reference = builders.build_policy(cfg, str(cfg.model.pretrained))
    policy.to(device)
    assert reference is None, "LoRA: the reference is the policy with its adapters disabled"
    assert policy.is_gradient_checkpointing, "the 7B configuration checkpoints gradients"
    trainable = [n for n, p in policy.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n and "language_model" in n for n in trainable)
    assert any(isinstance(m, torch.nn.Dropout) and m.p == cfg.model.lora.dropout for m in policy.modules())
    policy.train()  # as Lightning runs training_step
    before = modes(policy)
    g = cfg.algo.grpo
    sample = lambda batch: rollout.sample(  # noqa: E731
        policy, processor, batch, num_generations=g.num_generations, max_new_tokens=g.max_new_tokens,
        temperature=g.temperature, suppress_ids=suppressed_token_ids(processor), end_ids=end_token_ids(policy, processor),
    )
    tone, noise = questions(processor, waves("tone"), device), questions(processor, waves("noise"), device)
    assert torch.equal(tone["input_ids"], noise["input_ids"]), "the prompts differ only in their audio"
    torch.manual_seed(0)
    heard_tone = sample(tone)
    torch.manual_seed(0)
    heard_noise = sample(noise)
    assert modes(policy) == before, "sampling restores every module's training mode"
    # 1. the completions depend on the clip: the same random numbers give other samples for other audio
    assert not torch.equal(heard_tone.completion_ids, heard_noise.completion_ids)
    # 2. they are the samples of the policy in evaluation mode without checkpointing (no dropout, KV cache)
    policy.gradient_checkpointing_disable()
    policy.eval()
    torch.manual_seed(0)
    plain = sample(tone)
    assert torch.equal(heard_tone.completion_ids, plain.completion_ids)
    return policy, processor, heard_tone, suppressed_token_ids(processor)


def check_policy_equals_reference_at_step_zero(cfg, policy, ro, suppress_ids, device):
    from emorl.models.loading import enable_gradient_checkpointing

    enable_gradient_checkpointing(policy)
    policy.train()
    g = cfg.algo.grpo
    logp = rollout.completion_log_probs(policy, ro, g.temperature, g.share_prompt, suppress_ids)  # the gradient pass
    logp.sum().backward()  # checkpointed layers recompute: gradients reach the adapters
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for n, p in policy.named_parameters() if "lora_" in n)
    with torch.no_grad(), rollout.reference_policy(policy) as ref, rollout.evaluation_mode(ref):
        ref_logp = rollout.completion_log_probs(ref, ro, g.temperature, g.share_prompt, suppress_ids)
    mask = ro.completion_mask.bool()
    assert torch.isfinite(logp[mask]).all()
    assert torch.allclose(logp.detach()[mask].float(), ref_logp[mask].float(), atol=ATOL[device])


def run_a_grpo_step(cfg, monkeypatch):
    from emorl.modules import grpo
    from emorl.train import train

    seen = []
    original = grpo.GRPOModule.training_step

    def observed(self, batch, batch_idx):  # the policy as the training step finds it
        seen.append((all(m.training for m in self.policy.modules()), rollout._checkpointing(self.policy)))
        return original(self, batch, batch_idx)

    monkeypatch.setattr(grpo.GRPOModule, "training_step", observed)
    metrics, objects = train(cfg)
    assert seen == [(True, True)], "every layer in training mode, gradient checkpointing active"
    policy = objects["module"].policy
    moved = [n for n, p in policy.named_parameters() if "lora_B" in n and p.detach().abs().sum() > 0]
    assert moved, "no adapter weight moved in one GRPO step"
    final = metrics["train"]["final"]
    assert np.isfinite(final["train/loss"]) and final["train/advantage_abs"] > 0
    assert metrics["train"]["steps"] == 1


@pytest.mark.parametrize("model", sorted(BASES))
@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def test_the_7b_configuration_samples_with_the_audio_and_trains(cfg_factory, request, model, device, monkeypatch):
    tiny_base = request.getfixturevalue(BASES[model])
    cfg = seven_b_config(cfg_factory, tiny_base, device, model=model)
    policy, processor, ro, suppress_ids = check_rollouts_hear_the_audio(cfg, device)
    check_policy_equals_reference_at_step_zero(cfg, policy, ro, suppress_ids, device)
    step = seven_b_config(cfg_factory, tiny_base, device, *LENGTH_REWARD, "trainer.max_steps=1", "eval.base=false",
                          "checkpoint.select=last", model=model)
    run_a_grpo_step(step, monkeypatch)
