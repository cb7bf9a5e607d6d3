"""The GRPO LightningModule on the tiny model: a real step, alignment of rewards, early errors."""

from __future__ import annotations

import pytest
import torch

from emorl.modules.grpo import GRPOConfig
from emorl.rollout import Rollout
from emorl.train import train

LORA = "model.lora={r: 8, alpha: 16}"


@pytest.mark.parametrize("variant", [
    [LORA, "model.lr=1e-3"],                       # LoRA, one update per rollout batch
    [LORA, "model.lr=1e-3", "algo.grpo.num_iterations=2"],  # two clipped updates on the same rollouts
    ["model.lora=null", "model.lr=1e-4"],          # full fine-tuning with a frozen reference copy
    ["algo.grpo.loss_type=dr_grpo", "algo.grpo.micro_batch_size=2", "algo.grpo.num_generations=2"],
])
def test_a_training_step_changes_parameters_and_loss_is_finite(cfg_factory, monkeypatch, variant):
    cfg = cfg_factory("trainer.max_steps=1", "eval.base=false", *variant)
    captured = {}

    from emorl.modules import grpo

    original = grpo.GRPOModule.on_fit_start if hasattr(grpo.GRPOModule, "on_fit_start") else None

    def snapshot(self):
        captured["before"] = {n: p.detach().clone() for n, p in self.policy.named_parameters() if p.requires_grad}
        if original:
            original(self)

    monkeypatch.setattr(grpo.GRPOModule, "on_fit_start", snapshot, raising=False)
    # An untrained base earns 0 everywhere (zero advantages, no gradient): score by length instead,
    # which always varies within a group of sampled completions.
    from emorl import train as train_module
    from emorl.rewards.combine import RewardSet

    monkeypatch.setattr(
        train_module, "build_rewards",
        lambda cfg, strategy, labels: RewardSet({"length": lambda completions, **kw: [len(c) / 10 for c in completions]}, {}),
    )
    metrics, objects = train(cfg)
    module = objects["module"]
    after = {n: p.detach() for n, p in module.policy.named_parameters() if p.requires_grad}
    assert captured["before"].keys() == after.keys() and after
    changed = [n for n in after if not torch.equal(captured["before"][n], after[n])]
    assert changed, "no trainable parameter moved after one GRPO step"
    if LORA not in variant:
        assert any("audio_tower" in n for n in after) and module.reference is not None
        ref_params = dict(module.reference.named_parameters())
        assert not any(p.requires_grad for p in ref_params.values())
        name = changed[0]
        assert not torch.equal(ref_params[name], after[name]), "the reference must not follow the policy"
    else:
        assert all("lora_" in n for n in after)
    final = metrics["train"]["final"]
    assert torch.isfinite(torch.tensor(final["train/loss"]))
    assert final["train/kl"] >= 0
    iterations = 2 if "algo.grpo.num_iterations=2" in variant else 1
    assert metrics["train"]["steps"] == iterations  # Lightning counts optimizer steps
    assert set(metrics["trained"]) >= {"ua", "wa", "f1", "unparsed_rate", "recall", "confusion", "predicted"}
    assert (cfg.paths.output_dir and (module.run_dir / "metrics.json").exists())


def test_each_completion_is_scored_against_its_own_prompt(cfg_factory):
    from hydra.utils import instantiate

    from emorl.train import build_rewards

    cfg = cfg_factory("reward=bcr", "reasoning=ir")
    strategy = instantiate(cfg.reasoning)
    labels = ("neutral", "joy", "sadness", "anger", "fear", "disgust", "surprise")
    from emorl.modules.grpo import GRPOModule, TrainingProgress

    module = GRPOModule.__new__(GRPOModule)
    torch.nn.Module.__init__(module)
    module.algo = GRPOConfig(num_generations=3, prompts_per_step=2, micro_batch_size=3)
    module.rewards = build_rewards(cfg, strategy, labels)
    module._progress = lambda: TrainingProgress(0, 10)
    texts = ["<answer>joy</answer>", "<answer>anger</answer>", "<answer>joy</answer>",
             "<answer>joy</answer>", "<answer>anger</answer>", "<answer>anger</answer>"]
    ro = Rollout(prompt={}, prompt_index=torch.arange(2).repeat_interleave(3), completion_ids=torch.zeros(6, 1),
                 completion_mask=torch.ones(6, 1), texts=texts)
    batch = {"label": ["joy", "anger"], "options": [labels, labels]}
    total, parts = module.score(ro, batch)
    assert parts["accuracy"].tolist() == [1.0, 0.0, 1.0, 0.0, 1.0, 1.0]
    assert total.tolist() == [2.0, 1.0, 2.0, 1.0, 2.0, 2.0]


@pytest.mark.parametrize("fields,match", [
    (dict(num_generations=1), "num_generations"),
    (dict(prompts_per_step=3, num_generations=6, micro_batch_size=4), "not divisible"),
    (dict(loss_type="ppo"), "Supported loss types"),
    (dict(beta=-1.0), "beta"),
])
def test_invalid_grpo_settings_fail_before_training(fields, match):
    with pytest.raises(ValueError, match=match):
        GRPOConfig(**fields)


def test_invalid_settings_fail_before_any_model_is_built(cfg_factory, tmp_path):
    cfg = cfg_factory("algo.grpo.num_generations=1", f"paths.cache_dir={tmp_path / 'empty'}")
    with pytest.raises(ValueError, match="num_generations"):
        train(cfg)
    assert not (tmp_path / "empty").exists()
    cfg = cfg_factory("reward.accuracy.gamma=1.5")
    with pytest.raises(ValueError, match="gamma"):
        train(cfg)


@pytest.mark.parametrize("iterations,passes", [
    (1, 3),  # rollout, reference log-probs, policy forward (no old log-probs: the ratio is 1)
    (2, 5),  # + old log-probs once, + a second policy forward
])
def test_a_grpo_step_encodes_each_clip_once_per_pass(cfg_factory, monkeypatch, iterations, passes):
    from emorl import train as train_module
    from emorl.modules import grpo
    from emorl.rewards.combine import RewardSet

    monkeypatch.setattr(train_module, "build_rewards", lambda cfg, strategy, labels: RewardSet(
        {"length": lambda completions, **kw: [len(c) / 10 for c in completions]}, {}))
    rows: list[int] = []
    counting = {"on": False}
    original_fit_start = grpo.GRPOModule.on_fit_start

    def hook_towers(self):
        for model in (self.policy, self.reference):
            model.model.audio_tower.register_forward_pre_hook(
                lambda m, args, kwargs: rows.append(kwargs.get("input_features", args[0] if args else None).shape[0])
                if counting["on"] else None, with_kwargs=True)
        original_fit_start(self)

    original_step = grpo.GRPOModule.training_step

    def counted_step(self, batch, batch_idx):
        counting["on"] = True
        try:
            return original_step(self, batch, batch_idx)
        finally:
            counting["on"] = False

    monkeypatch.setattr(grpo.GRPOModule, "on_fit_start", hook_towers)
    monkeypatch.setattr(grpo.GRPOModule, "training_step", counted_step)
    # 2 prompts x G=3; micro-batches of 3 completions: one prompt each
    cfg = cfg_factory("trainer.max_steps=1", "eval.base=false", "model.lora=null", "model.lr=1e-4",
                      f"algo.grpo.num_iterations={iterations}", f"trainer.max_steps={iterations}")
    train_module.train(cfg)
    assert sum(rows) == 2 * passes, rows  # 2 clips per pass, never one per completion (6)


def test_bench_table_reports_shared_over_plain_ratios():
    from emorl.bench import PHASES, table

    plain = {**dict.fromkeys(PHASES, 1.0), "step": 4.0, "tokens_per_s": 100.0, "peak_mib": 800.0}
    shared = {**dict.fromkeys(PHASES, 0.5), "step": 2.0, "tokens_per_s": 200.0, "peak_mib": 600.0}
    lines = table({"tiny": {"plain": plain, "shared": shared}}).splitlines()
    ratio = [cell.strip() for cell in lines[-1].split("|")[3:-1]]
    assert ratio == ["**0.50**"] * 5 + ["**2.00**", "**0.75**"]  # phases and step halve, tokens/s doubles
