"""The GRPO LightningModule on the tiny model: a real step, alignment of rewards, early errors."""

from __future__ import annotations

import math

import pytest
import torch

from emorl.modules.grpo import GRPOConfig
from emorl.rollout import Rollout
from emorl.train import train
from tests.rewards import LENGTH_REWARD

LORA = "model.lora={r: 8, alpha: 16}"


@pytest.mark.parametrize("variant", [
    [LORA, "model.lr=1e-3"],                       # LoRA, one update per rollout batch
    [LORA, "model.lr=1e-3", "algo.grpo.num_iterations=2"],  # two clipped updates on the same rollouts
    ["model.lora=null", "model.lr=1e-4"],          # full fine-tuning with a frozen reference copy
    ["algo.grpo.loss_type=dr_grpo", "algo.grpo.micro_batch_size=2", "algo.grpo.num_generations=2"],
])
def test_a_training_step_changes_parameters_and_loss_is_finite(cfg_factory, monkeypatch, variant):
    # An untrained base earns 0 everywhere (zero advantages, no gradient): score by length instead,
    # which always varies within a group of sampled completions.
    cfg = cfg_factory("trainer.max_steps=1", "eval.base=false", *LENGTH_REWARD, *variant)
    captured = {}

    from emorl.modules import grpo

    original = grpo.GRPOModule.on_fit_start if hasattr(grpo.GRPOModule, "on_fit_start") else None

    def snapshot(self):
        captured["before"] = {n: p.detach().clone() for n, p in self.policy.named_parameters() if p.requires_grad}
        if original:
            original(self)

    monkeypatch.setattr(grpo.GRPOModule, "on_fit_start", snapshot, raising=False)
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
    iterations = 2 if "algo.grpo.num_iterations=2" in variant else 1
    if iterations == 1:  # the one update is measured where the policy still is its reference
        assert final["train/kl"] == pytest.approx(0.0, abs=1e-5)
    else:  # the second update is measured after the first moved the policy away from its reference
        assert final["train/kl"] > 1e-7
    assert metrics["train"]["steps"] == iterations  # Lightning counts optimizer steps
    assert sum(metrics["trained"]["predicted"].values()) == metrics["trained"]["n"] == 14  # every test clip answered


def test_each_completion_is_scored_against_its_own_prompt(cfg_factory):
    from hydra.utils import instantiate

    from emorl.builders import build_rewards

    cfg = cfg_factory("reward=bcr", "reasoning=ir")
    strategy = instantiate(cfg.reasoning)
    labels = ("neutral", "joy", "sadness", "anger", "fear", "disgust", "surprise")
    from emorl.modules.grpo import GRPOModule, TrainingProgress

    module = GRPOModule.__new__(GRPOModule)
    torch.nn.Module.__init__(module)
    module.algo = GRPOConfig(num_generations=3, prompts_per_step=2, micro_batch_size=3, dynamic_sampling=False)
    module.rewards = build_rewards(cfg.reward, strategy, labels)
    texts = ["<answer>joy</answer>", "<answer>anger</answer>", "<answer>joy</answer>",
             "<answer>joy</answer>", "<answer>anger</answer>", "anger"]
    ro = Rollout(prompt={}, prompt_index=torch.arange(2).repeat_interleave(3), completion_ids=torch.zeros(6, 1),
                 completion_mask=torch.ones(6, 1), texts=texts)
    batch = {"label": ["joy", "anger"], "options": [labels, labels]}
    total, parts = module.score(ro, batch, TrainingProgress(0, 10))
    assert parts["accuracy"].tolist() == [1.0, 0.0, 1.0, 0.0, 1.0, 0.0]
    # IR's format reward (the paper's rule): only a correct, tagged answer earns it
    assert parts["format"].tolist() == [1.0, 0.0, 1.0, 0.0, 1.0, 0.0]
    assert total.tolist() == [2.0, 0.0, 2.0, 0.0, 2.0, 0.0]


@pytest.mark.parametrize("fields,match", [
    (dict(num_generations=1), "algo.grpo.num_generations"),
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
    from emorl.modules import grpo

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
    # no dynamic sampling: a pretrained base may give a group equal lengths, and its refill would encode more clips
    cfg = cfg_factory("trainer.max_steps=1", "eval.base=false", "model.lora=null", "model.lr=1e-4", *LENGTH_REWARD,
                      f"algo.grpo.num_iterations={iterations}", f"trainer.max_steps={iterations}",
                      "algo.grpo.dynamic_sampling=false")
    train(cfg)
    assert sum(rows) == 2 * passes, rows  # 2 clips per pass, never one per completion (6)


def test_bench_table_reports_shared_over_plain_ratios():
    from emorl.bench import PHASES, table

    plain = {**dict.fromkeys(PHASES, 1.0), "step": 4.0, "tokens_per_s": 100.0, "peak_mib": 800.0}
    shared = {**dict.fromkeys(PHASES, 0.5), "step": 2.0, "tokens_per_s": 200.0, "peak_mib": 600.0}
    lines = table({"tiny": {"plain": plain, "shared": shared}}).splitlines()
    ratio = [cell.strip() for cell in lines[-1].split("|")[3:-1]]
    assert ratio == ["**0.50**"] * 5 + ["**2.00**", "**0.75**"]  # phases and step halve, tokens/s doubles


def csv_rows(run_dir) -> list[dict]:
    """The per-step rows of the CSV logger (training metrics only)."""
    import csv
    from pathlib import Path

    (path,) = Path(run_dir).rglob("metrics.csv")
    return [r for r in csv.DictReader(open(path)) if r.get("train/reward_mean")]


def test_eswr_alpha_decays_over_an_epoch_bounded_run(cfg_factory):
    # 2 epochs of 2 batches (no step limit): 4 updates, and alpha 1, 0.75, 0.5, 0.25 at their start
    cfg = cfg_factory("reward=eswr", "trainer.max_steps=-1", "trainer.max_epochs=2", "+trainer.limit_train_batches=2",
                      "eval.base=false", "checkpoint.select=last", "save_model=false")
    metrics, _ = train(cfg)
    assert metrics["train"]["steps"] == 4
    assert [float(r["train/alpha"]) for r in csv_rows(cfg.paths.output_dir)] == [1.0, 0.75, 0.5, 0.25]


def test_alpha_counts_every_update_of_a_rollout_batch(cfg_factory):
    # num_iterations=2: 2 updates per batch; 3 batches (max_steps=6 updates): alpha at their start 1, 2/3, 1/3
    cfg = cfg_factory("reward=eswr", "trainer.max_steps=6", "algo.grpo.num_iterations=2", "eval.base=false",
                      "trainer.val_check_interval=100", "checkpoint.select=last", "save_model=false")
    train(cfg)
    assert [float(r["train/alpha"]) for r in csv_rows(cfg.paths.output_dir)] == pytest.approx([1.0, 2 / 3, 1 / 3])


def test_final_training_metrics_are_the_last_steps_even_when_an_earlier_checkpoint_is_tested(cfg_factory, monkeypatch):
    from emorl.modules import base

    # validation UA falls from the first validation (step 2) to the second (step 4): best.ckpt is step 2's
    scores = iter([0.9, 0.1])
    original = base.classification_metrics

    def falling(preds, targets, labels):
        result = original(preds, targets, labels)
        return {**result, "ua": next(scores, result["ua"])}

    monkeypatch.setattr(base, "classification_metrics", falling)
    cfg = cfg_factory("trainer.max_steps=4", "trainer.val_check_interval=2", "eval.base=false", "save_model=false",
                      *LENGTH_REWARD)
    metrics, _ = train(cfg)
    assert metrics["train"]["selected_step"] == 2 and metrics["train"]["selected_checkpoint"] == "best.ckpt"
    rewards = [float(r["train/reward_mean"]) for r in csv_rows(cfg.paths.output_dir)]
    assert len(rewards) == 4
    assert metrics["train"]["final"]["train/reward_mean"] == pytest.approx(sum(rewards) / 4)  # all 4 steps, not 2


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_grpo_raises_the_probability_of_the_rewarded_completion_and_lowers_the_penalised_one(cfg_factory, esr_batch, sign):
    """A reward for one completion (all "e") raises its log-probability; the opposite reward lowers it.

    Catches a flipped loss sign, advantages sent to the wrong completions, and a KL term that
    outweighs the policy gradient.
    """
    from hydra.utils import instantiate

    from emorl import rollout
    from emorl.builders import resolve_model_path
    from emorl.models.loading import load_backbone, suppressed_token_ids

    cfg = cfg_factory("model.pretrained=null",  # the mechanics on the small, barely trained base whose samples vary
                      "trainer.max_steps=4", "eval.base=false", "trainer.val_check_interval=100", "checkpoint.select=last",
                      "save_model=false", "reward.format=null", "reward.accuracy=null", "model.lr=1e-3",
                      f"+reward.char={{_target_: tests.rewards.make_char_reward, char: e, sign: {sign}}}")
    base, processor = load_backbone(resolve_model_path(cfg, instantiate(cfg.dataset.corpus), instantiate(cfg.reasoning)))
    e = processor.tokenizer.convert_tokens_to_ids("e")
    inputs = rollout.model_inputs(esr_batch)
    favoured = rollout.Rollout(prompt=inputs, prompt_index=torch.arange(3), completion_ids=torch.full((3, 8), e),
                               completion_mask=torch.ones(3, 8, dtype=torch.long), texts=["e" * 8] * 3)

    def log_prob(policy) -> float:
        with torch.no_grad(), rollout.evaluation_mode(policy):
            return float(rollout.completion_log_probs(policy, favoured, suppress_ids=suppressed_token_ids(processor)).sum())

    before = log_prob(base)
    _, objects = train(cfg)
    after = log_prob(objects["module"].policy)
    assert sign * (after - before) > 1.0, (before, after)


def test_dynamic_sampling_trains_on_groups_with_reward_variance(cfg_factory, monkeypatch):
    # only questions about joy and anger earn a (length) reward: every other group has equal rewards
    cfg = cfg_factory("model.pretrained=null",  # the mechanics on the small, barely trained base whose samples vary
                      "trainer.max_steps=3", "eval.base=false", "trainer.val_check_interval=100", "checkpoint.select=last",
                      "save_model=false", "reward.format=null", "reward.accuracy=null", "algo.grpo.dynamic_sampling=true",
                      "algo.grpo.max_resample_rounds=20",
                      "+reward.length={_target_: tests.rewards.make_length_reward, only: [joy, anger]}")
    seen = []
    from emorl.modules import grpo

    original = grpo.GRPOModule.sample_groups

    def record(self, batch, progress):
        out = original(self, batch, progress)
        seen.append((out[0]["label"], out[2].view(-1, self.algo.num_generations)))
        return out

    monkeypatch.setattr(grpo.GRPOModule, "sample_groups", record)
    train(cfg)
    rows = csv_rows(cfg.paths.output_dir)
    assert len(seen) == 3
    for labels, rewards in seen:  # every trained group is a joy or anger question with rewards that differ
        assert set(labels) <= {"joy", "anger"} and (rewards.std(dim=1) > 0).all()
    assert all(float(r["train/kept_groups_with_variance"]) == 1.0 for r in rows)
    assert any(float(r["train/groups_with_variance"]) < 1.0 for r in rows)  # the loader's own prompts had some without
    assert all(float(r["train/resample_rounds"]) >= 1 for r in rows if float(r["train/groups_with_variance"]) < 1)


def test_the_sampled_label_distribution_and_entropy_are_logged(cfg_factory):
    cfg = cfg_factory("trainer.max_steps=2", "eval.base=false", "save_model=false", "reward=bcr")
    train(cfg)
    for row in csv_rows(cfg.paths.output_dir):
        shares = [float(v) for k, v in row.items() if k.startswith("train/sampled/") and v]
        assert len(shares) == 8 and sum(shares) == pytest.approx(1.0)  # 7 labels + unparsed
        assert 0 < float(row["train/entropy"]) < math.log(1024)  # nats, below uniform over the vocabulary


def test_training_steps_run_in_training_mode_after_the_base_evaluation(cfg_factory, monkeypatch):
    """from_pretrained returns a model in evaluation mode and Lightning keeps modes as it finds them:
    the module switches its policy to training mode itself; the frozen reference stays in evaluation mode."""
    from emorl.modules import grpo

    seen = []
    original = grpo.GRPOModule.training_step

    def observed(self, batch, batch_idx):
        seen.append((all(m.training for m in self.policy.modules()), any(m.training for m in self.reference.modules())))
        return original(self, batch, batch_idx)

    monkeypatch.setattr(grpo.GRPOModule, "training_step", observed)
    train(cfg_factory("trainer.max_steps=3", "save_model=false", *LENGTH_REWARD))  # evaluates the base first
    assert seen == [(True, False)] * 3  # step 3 comes after the validation at step 2


def test_ptr_runs_with_measured_prosody_reaching_the_rewards(cfg_factory):
    """reward=ptr: the data module measures the training clips' prosody, the levels and transcripts
    reach every reward function as columns, and tau and the switch are logged per step."""
    cfg = cfg_factory("reward=ptr", "reasoning=esr", "trainer.max_steps=2", "reward.combine.start_step=0",
                      "reward.combine.accuracy_threshold=0", "eval.base=false", "checkpoint.select=last",
                      "save_model=false", "+reward.probe={_target_: tests.rewards.make_grounding_probe_reward, weight: 0.0}")
    train(cfg)
    rows = csv_rows(cfg.paths.output_dir)
    assert len(rows) == 2
    assert [float(r["train/reward/probe"]) for r in rows] == [1.0, 1.0]  # every clip had levels and a transcript
    assert all(0.0 < float(r["train/reward_info/tau"]) <= 1.0 for r in rows)
    assert [float(r["train/reward_info/reasoning_on"]) for r in rows] == [1.0, 1.0]
    assert not any(k in rows[0] for k in ("train/reward/reasoning_on", "train/reward/tau"))  # no reward of their own
    # the untrained base claims nothing checkable: the grounding reward is the no-claim penalty,
    # no sample claims a prosody level, and faithfulness (a share of claims) is not logged
    assert all(float(r["train/reward/reasoning"]) == pytest.approx(-0.5) for r in rows)
    assert [float(r["train/prosody_claiming"]) for r in rows] == [0.0, 0.0] and not any(r.get("train/faithfulness") for r in rows)
    from pathlib import Path

    assert list((Path(cfg.paths.cache_dir) / "prosody").glob("synthetic-*.json"))  # measured once, cached


def test_a_clips_group_is_drawn_from_the_same_seed_wherever_its_corpus_lives(monkeypatch):
    """``seed_per_prompt``: each group's seed is keyed by the clip's name in its corpus, not by its path (a
    corpus reached through another cache folder draws the same completions)."""
    from types import SimpleNamespace

    from emorl import rollout
    from emorl.modules.grpo import GRPOModule

    seeds = []

    def sample(policy, processor, batch, **_):
        seeds.append(torch.initial_seed())
        return Rollout(prompt=batch, prompt_index=torch.zeros(1, dtype=torch.long),
                       completion_ids=torch.zeros(1, 1, dtype=torch.long),
                       completion_mask=torch.ones(1, 1, dtype=torch.long), texts=[""])

    monkeypatch.setattr(rollout, "sample", sample)
    monkeypatch.setattr(rollout, "model_inputs", lambda batch: {"input_ids": torch.zeros(len(batch["clips"]), 2)})
    monkeypatch.setattr(rollout, "concat", lambda parts, inputs, pad: parts)
    module = SimpleNamespace(algo=GRPOConfig(seed_per_prompt=True), seed=0, rollout_batches=3, policy=None,
                             processor=SimpleNamespace(tokenizer=SimpleNamespace(pad_token_id=0)), suppress_ids=(),
                             end_ids=(), parameters_sharded=lambda: False)

    def drawn(paths, clips):
        seeds.clear()
        GRPOModule.rollout(module, {"paths": paths, "clips": clips})
        return list(seeds)

    here = drawn(["/data/a/train/x.flac", "/data/a/train/y.flac"], ["train/x.flac", "train/y.flac"])
    moved = drawn(["/cache/b/train/x.flac", "/cache/b/train/y.flac"], ["train/x.flac", "train/y.flac"])
    assert here == moved  # the same clips in another folder: the same seeds
    assert here[0] != here[1]  # two clips: two seeds
