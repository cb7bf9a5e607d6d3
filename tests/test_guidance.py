"""Guided groups (LUFFY): the gold completion in a group that has none, its shaped ratio, and the switch off."""

from __future__ import annotations

from collections import deque
from types import SimpleNamespace

import pytest
import torch

from emorl import algos
from emorl.modules.grpo import GRPOConfig, GRPOModule, TrainingProgress
from emorl.rollout import Rollout

LABELS = ("neutral", "joy", "sadness", "anger", "fear", "disgust", "surprise")


def test_the_shaped_ratios_gradient_is_lufffys_hand_computed_value():
    # f(p) = p / (p + g); d(-A f)/d(log p) = -A * g * p / (p + g)^2: p=0.2, g=0.1, A=2 -> -2 * 0.02 / 0.09
    logp = torch.log(torch.tensor([[0.2]])).requires_grad_(True)
    loss = algos.shaped_off_policy_surrogate(logp, torch.tensor([2.0]), gamma=0.1).sum()
    loss.backward()
    assert logp.grad.item() == pytest.approx(-2 * 0.1 * 0.2 / 0.3**2, rel=1e-5)
    # the plain policy gradient's weight at the same token would be -A * 1 (ratio 1): shaping keeps a low-p
    # token's gradient from vanishing with p while bounding the high-p ones
    assert abs(logp.grad.item()) < 2.0


def test_grpo_loss_takes_the_shaped_ratio_on_guided_rows_only():
    torch.manual_seed(0)
    logp = torch.log(torch.rand(3, 4) * 0.9 + 0.05)
    adv, mask = torch.tensor([1.0, -0.5, 2.0]), torch.ones(3, 4)
    plain, _ = algos.grpo_loss(logp, None, None, adv, mask, beta=0.0)
    unchanged, _ = algos.grpo_loss(logp, None, None, adv, mask, beta=0.0, off_policy=torch.zeros(3, dtype=torch.bool))
    assert torch.equal(plain, unchanged)  # no guided row: bitwise the unguided loss
    guided, metrics = algos.grpo_loss(logp, None, None, adv, mask, beta=0.0,
                                      off_policy=torch.tensor([False, False, True]), shaping_gamma=0.1)
    on_policy = -(adv[:2, None] * torch.ones(2, 4)).mean(dim=1).sum()  # ratio 1 in value on sampled rows
    shaped = algos.shaped_off_policy_surrogate(logp[2:], adv[2:], 0.1).mean()
    assert float(guided) == pytest.approx(float((on_policy + shaped) / 3), rel=1e-6)
    assert float(metrics["off_policy_share"]) == pytest.approx(1 / 3)


@pytest.mark.parametrize("rule, correct, expected", [
    ("off", [[False, False], [True, False]], [False, False]),  # the paper's method: nothing guided
    ("failed", [[False, False], [True, False]], [True, False]),  # only the group with no correct sample
    ("failed_or_share", [[False, False], [True, False]], [True, True]),  # share 1: every group as well
])
def test_guidance_rules(rule, correct, expected):
    assert algos.get_guidance(rule)(torch.tensor(correct), 1.0, torch.Generator().manual_seed(0)).tolist() == expected


def test_an_unknown_guidance_rule_is_refused_with_the_rules():
    with pytest.raises(ValueError, match="algo.grpo.guidance='gold'.*Supported guidances"):
        GRPOConfig(guidance="gold")


def guided_module(tiny, guidance: str, cfg_factory):
    from hydra.utils import instantiate

    from emorl.builders import build_rewards
    from emorl.models.loading import end_token_ids

    model, processor = tiny
    cfg = cfg_factory("reward=bcr", "reasoning=ir")
    module = GRPOModule.__new__(GRPOModule)
    torch.nn.Module.__init__(module)
    module.algo = GRPOConfig(num_generations=3, prompts_per_step=2, micro_batch_size=3, guidance=guidance, dynamic_sampling=False)
    module.strategy = instantiate(cfg.reasoning)
    module.rewards = build_rewards(cfg.reward, module.strategy, LABELS)
    module.processor, module.end_ids, module.seed, module.rollout_batches = processor, end_token_ids(model, processor), 0, 0
    module._trainer = None  # no trainer: process 0
    return module


def test_a_guided_sample_is_the_only_positive_advantage_of_an_otherwise_all_wrong_group(tiny, cfg_factory):
    module = guided_module(tiny, "failed", cfg_factory)
    texts = ["<answer>anger</answer>", "<answer>fear</answer>", "<answer>anger</answer>",  # gold joy: all wrong
             "<answer>anger</answer>", "<answer>joy</answer>", "anger"]  # gold anger: one right
    ro = Rollout(prompt={}, prompt_index=torch.arange(2).repeat_interleave(3), completion_ids=torch.zeros(6, 2, dtype=torch.long),
                 completion_mask=torch.ones(6, 2), texts=texts)
    batch = {"label": ["joy", "anger"], "options": [LABELS, LABELS]}
    progress = TrainingProgress(global_step=0, max_steps=10)
    total, components = module.score(ro, batch, progress)
    new, total, components, off_policy = module.guide(batch, ro, total, components, progress)
    assert off_policy.tolist() == [False, False, True, False, False, False]
    assert new.texts[2] == "<answer>joy</answer>" and new.texts[3:] == texts[3:]
    ids = new.completion_ids[2][new.completion_mask[2].bool()].tolist()
    assert module.processor.tokenizer.decode(ids, skip_special_tokens=True) == "<answer>joy</answer>"
    adv = algos.group_advantages(total, 3)
    assert adv[2] > 0 and (adv[:2] < 0).all()  # the gold completion alone is pushed up in its group
    assert torch.equal(adv[3:], algos.group_advantages(module.score(ro, batch, progress)[0], 3)[3:])


def test_with_guidance_off_the_step_is_untouched(tiny, cfg_factory):
    module = guided_module(tiny, "off", cfg_factory)
    ro = Rollout(prompt={}, prompt_index=torch.arange(2).repeat_interleave(3), completion_ids=torch.zeros(6, 2, dtype=torch.long),
                 completion_mask=torch.ones(6, 2), texts=["<answer>anger</answer>"] * 6)
    batch = {"label": ["joy", "joy"], "options": [LABELS, LABELS]}
    progress = TrainingProgress(global_step=0, max_steps=10)
    total, components = module.score(ro, batch, progress)
    out = module.guide(batch, ro, total, components, progress)
    assert out[0] is ro and out[1] is total and out[3] is None


def test_guided_reasoning_needs_measured_prosody(cfg_factory):
    from emorl.builders import check_run_settings

    with pytest.raises(ValueError, match="set data.prosody=true"):
        check_run_settings(cfg_factory("reasoning=esr", "algo.grpo.guidance=failed"))
    check_run_settings(cfg_factory("reasoning=esr", "algo.grpo.guidance=failed", "data.prosody=true"))


def test_a_guided_run_trains_and_logs_the_guided_share_and_per_class_accuracy(cfg_factory):
    from emorl.train import train

    # the small on-the-fly base: the shipped one can answer every sample of a group right, leaving the guided
    # completion an advantage of 0
    cfg = cfg_factory("model.pretrained=null", "reward=bcr", "reasoning=ir", "eval.base=false", "trainer.max_steps=1",
                      "algo.grpo.guidance=share", "algo.grpo.guidance_share=1.0", "algo.grpo.dynamic_sampling=false")
    metrics, _ = train(cfg)
    final = metrics["train"]["final"]
    assert final["train/guided_share"] == pytest.approx(1.0)  # share 1: every group holds its gold completion
    assert final["train/guided_advantage"] > 0  # the gold answer is the group's best
    assert any(k.startswith("train/accuracy/") for k in final)


# ------------------------------------------------------------------ SFT-RL mixing (CHORD)
def test_the_sft_term_is_the_gold_answers_cross_entropy(tiny, cfg_factory, small_corpus):
    from emorl.data.batching import Collator, EmotionQuestions

    model, processor = tiny
    module = guided_module(tiny, "off", cfg_factory)
    module.policy, module.suppress_ids = model, []
    questions = EmotionQuestions(small_corpus.items("test")[:3], module.strategy, small_corpus.labels)
    examples = [questions[i] for i in range(3)]
    batch = Collator(processor)(examples)
    with torch.no_grad():
        mine = module.sft_loss(batch)
        for e in examples:
            e.target = f"<answer>{e.label}</answer>"
        supervised = Collator(processor)(examples)
        inputs = {k: supervised[k] for k in ("input_ids", "attention_mask", "input_features", "feature_attention_mask")}
        reference = model(**inputs, labels=supervised["labels"]).loss
    assert float(mine) == pytest.approx(float(reference), rel=1e-4)


def test_a_mixed_run_logs_its_sft_share_and_loss(cfg_factory):
    from emorl.train import train

    cfg = cfg_factory("reward=bcr", "reasoning=ir", "eval.base=false", "trainer.max_steps=2",
                      "algo.grpo.sft_coef=0.5", "algo.grpo.sft_coef_end=0.0", "algo.grpo.dynamic_sampling=false")
    metrics, _ = train(cfg)
    final = metrics["train"]["final"]
    assert final["train/sft_coef"] == pytest.approx((0.5 + 0.25) / 2)  # mu at steps 0 and 1 of 2, averaged
    assert final["train/sft_loss"] > 0


# ------------------------------------------------------------------ the failure buffer (ReLIFT)
def test_prompts_no_sample_answered_enter_the_buffer_oldest_dropped(tiny, cfg_factory):
    module = guided_module(tiny, "off", cfg_factory)
    module.algo = GRPOConfig(num_generations=2, prompts_per_step=2, micro_batch_size=2, buffer_every=1, buffer_size=2, dynamic_sampling=False)
    module.failed_prompts = ["old.wav"]
    ro = Rollout(prompt={}, prompt_index=torch.arange(2).repeat_interleave(2), completion_ids=torch.zeros(4, 1),
                 completion_mask=torch.ones(4, 1),
                 texts=["<answer>anger</answer>", "<answer>fear</answer>", "<answer>joy</answer>", "x"])
    batch = {"label": ["joy", "joy"], "options": [LABELS, LABELS], "clips": ["a.wav", "b.wav"],
             "paths": ["/corpus/a.wav", "/corpus/b.wav"]}
    module.remember_failures(batch, module.answered_correctly(batch, ro))
    assert module.failed_prompts == ["old.wav", "a.wav"]  # b.wav had a right sample
    other = {**batch, "clips": ["c.wav", "d.wav"], "paths": ["/corpus/c.wav", "/corpus/d.wav"]}
    module.remember_failures(other, module.answered_correctly(other, ro))
    assert module.failed_prompts == ["a.wav", "c.wav"]  # two kept, the oldest dropped
    module.best_val_ua, module.best_val_step, module.recent_train_metrics = 0.0, 0, []
    # saved in checkpoints, one list per process (here one): resumed with the run
    assert module.extra_state()["failed_prompts_by_process"] == [["a.wav", "c.wav"]]


@pytest.mark.parametrize(("saved", "rank", "buffer"), [
    ({"failed_prompts_by_process": [["a.wav"], ["b.wav", "c.wav"]]}, 1, ["b.wav", "c.wav"]),  # its own, not process 0's
    ({"failed_prompts_by_process": [["a.wav"], ["b.wav", "c.wav"]]}, 0, ["a.wav"]),
    ({"failed_prompts": ["a.wav"]}, 0, ["a.wav"]),  # a checkpoint from before buffers were kept per process
    ({}, 0, []),  # a checkpoint from before the buffer
])
def test_a_resumed_process_takes_back_its_own_failed_prompts(tiny, cfg_factory, monkeypatch, saved, rank, buffer):
    module = guided_module(tiny, "off", cfg_factory)
    module.recent_train_metrics = deque(maxlen=10)
    module._trainer = SimpleNamespace(world_size=max(len(saved.get("failed_prompts_by_process", [])), 1))
    monkeypatch.setattr(GRPOModule, "global_rank", property(lambda self: rank))
    module.load_extra_state(saved)
    assert module.failed_prompts == buffer


def test_a_checkpoint_of_more_processes_than_the_run_has_is_refused(tiny, cfg_factory):
    module = guided_module(tiny, "off", cfg_factory)
    module.recent_train_metrics = deque(maxlen=10)
    with pytest.raises(ValueError, match="2 processes"):  # this process (0 of 1) would drop process 1's buffer
        module.load_extra_state({"failed_prompts_by_process": [["a.wav"], ["b.wav"]]})


def test_a_buffered_run_trains_on_its_failed_prompts(cfg_factory, monkeypatch):
    from emorl.modules.datamodule import EmotionDataModule
    from emorl.train import train

    asked = []
    batch_of = EmotionDataModule.train_batch_of
    monkeypatch.setattr(EmotionDataModule, "train_batch_of", lambda self, clips: asked.extend(clips) or batch_of(self, clips))

    cfg = cfg_factory("model.pretrained=null",  # the small on-the-fly base: it fails every prompt at first
                      "reward=bcr", "reasoning=ir", "eval.base=false", "trainer.max_steps=1",
                      "algo.grpo.buffer_every=1", "algo.grpo.dynamic_sampling=false")
    metrics, objects = train(cfg)
    final = metrics["train"]["final"]
    assert final["train/buffer_prompts"] >= 1 and final["train/buffer_sft_loss"] > 0  # the untrained base fails
    train_clips = {item.key for item in objects["datamodule"].dataset("train").items}
    # the buffer (kept in checkpoints) names clips by their place in the corpus, so a resume reading it elsewhere finds them
    assert asked and set(asked) <= train_clips
