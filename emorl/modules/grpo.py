"""GRPO as a LightningModule: wiring only (sample, score, advantage, loss, log).

The math lives in :mod:`emorl.algos`, sampling and log-probs in :mod:`emorl.rollout`, rewards
in :mod:`emorl.rewards`.  Optimisation is manual because one batch of rollouts may serve
several updates (``num_iterations``) and is split into micro-batches for the backward pass.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch

from emorl import algos, rollout
from emorl.data.corpus import fingerprint
from emorl.distributed import every_process, global_mean, global_sum, on_any_process, on_every_process
from emorl.modules.base import EmotionModule
from emorl.prompts import ReasoningStrategy, gold_response, parse_label
from emorl.rewards.combine import RewardSet
from emorl.rewards.grounding import faithfulness

log = logging.getLogger(__name__)


@dataclass
class GRPOConfig:
    """Settings of the GRPO update (EMO-RL section 3.2, 4.2).  Checked when built.  The defaults are
    ``conf/algo/grpo.yaml``'s (tested)."""

    num_generations: int = 6
    prompts_per_step: int = 8
    micro_batch_size: int = 48
    num_iterations: int = 1
    beta: float = 0.04
    epsilon_low: float = 0.2
    epsilon_high: float = 0.2
    loss_type: str = "grpo"
    kl_estimator: str = "k3"
    advantage_scale: str = "group"
    advantage_eps: float = 1e-4
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 80
    max_grad_norm: float = 1.0
    log_samples_every: int = 25
    share_prompt: bool = True  # encode each clip and prefill each prompt once per pass, not once per completion
    seed_per_prompt: bool = False  # sample each prompt's group from its own seed: runs independent of the process count
    entropy_coef: float = 0.0  # entropy bonus: - entropy_coef x the policy's per-token entropy joins the loss
    dynamic_sampling: bool = True  # DAPO: replace groups whose rewards are all equal by groups of fresh prompts
    max_resample_rounds: int = 3  # dynamic sampling: at most this many extra draws of prompts_per_step prompts
    guidance: str = "off"  # guided groups (LUFFY): off | failed | share | failed_or_share (emorl.algos.GUIDANCE)
    guidance_share: float = 0.0  # share of groups guided under share / failed_or_share
    guidance_gamma: float = 0.1  # LUFFY's shaping constant for the gold completion's tokens
    sft_coef: float = 0.0  # CHORD's mu at the start: loss = (1 - mu) * GRPO + mu * SFT on the step's gold responses
    sft_coef_end: float | None = None  # mu at the end (linear over training; None: constant sft_coef)
    buffer_every: int = 0  # ReLIFT: every this many steps, SFT on prompts no sample answered (0: off)
    buffer_size: int = 256  # failed prompts kept (the oldest dropped first)
    buffer_batch: int = 8  # failed prompts trained on at a time

    def __post_init__(self) -> None:
        if self.num_generations < 2:
            raise ValueError(
                f"algo.grpo.num_generations={self.num_generations}: GRPO needs at least 2 completions per prompt "
                "to compare them within a group; set algo.grpo.num_generations>=2"
            )
        for key in ("prompts_per_step", "micro_batch_size", "max_new_tokens"):
            if getattr(self, key) < 1:
                raise ValueError(f"algo.grpo.{key} must be >= 1, got {getattr(self, key)}")
        n = self.prompts_per_step * self.num_generations
        if n % self.micro_batch_size:
            raise ValueError(
                f"algo.grpo.prompts_per_step x algo.grpo.num_generations = {n} completions per step is not divisible by "
                f"algo.grpo.micro_batch_size={self.micro_batch_size}; choose a micro batch size that divides {n}"
            )
        if self.num_iterations < 1:
            raise ValueError(f"algo.grpo.num_iterations must be >= 1, got {self.num_iterations}")
        if self.beta < 0:
            raise ValueError(f"algo.grpo.beta must be >= 0, got {self.beta}")
        if self.temperature <= 0:
            raise ValueError(f"algo.grpo.temperature must be > 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"algo.grpo.top_p must lie in (0, 1] (0 keeps no token: every group would lose its "
                             f"variance), got {self.top_p}")
        if self.entropy_coef < 0:
            raise ValueError(f"algo.grpo.entropy_coef must be >= 0 (a bonus), got {self.entropy_coef}")
        if self.max_resample_rounds < 0:
            raise ValueError(f"algo.grpo.max_resample_rounds must be >= 0, got {self.max_resample_rounds}")
        for key, lookup in (("loss_type", algos.get_loss_aggregation), ("kl_estimator", algos.get_kl_estimator)):
            try:
                lookup(getattr(self, key))
            except ValueError as error:
                raise ValueError(f"algo.grpo.{key}={getattr(self, key)!r}: {error}") from None
        try:
            algos.get_guidance(self.guidance)
        except ValueError as error:
            raise ValueError(f"algo.grpo.guidance={self.guidance!r}: {error}") from None
        if not 0.0 <= self.guidance_share <= 1.0:
            raise ValueError(f"algo.grpo.guidance_share must lie in [0, 1], got {self.guidance_share}")
        if self.guidance_gamma <= 0:
            raise ValueError(f"algo.grpo.guidance_gamma must be > 0 (LUFFY: 0.1), got {self.guidance_gamma}")
        for key, least in (("buffer_every", 0), ("buffer_size", 1), ("buffer_batch", 1)):
            if getattr(self, key) < least:
                raise ValueError(f"algo.grpo.{key} must be >= {least}, got {getattr(self, key)}")
        for key in ("sft_coef", "sft_coef_end"):
            value = getattr(self, key)
            if value is not None and not 0.0 <= value <= 1.0:
                raise ValueError(f"algo.grpo.{key} must lie in [0, 1] (CHORD's mu), got {value}")
        if self.advantage_scale not in ("group", "none"):
            raise ValueError(f"algo.grpo.advantage_scale={self.advantage_scale!r} is not one of group, none (Dr. GRPO)")


@dataclass
class TrainingProgress:
    """What reward functions see as ``trainer_state`` (the fields of ``transformers.TrainerState`` they use).

    ``global_step`` counts optimizer updates done; ``max_steps`` is the number the run will make.
    """

    global_step: int
    max_steps: int


def planned_updates(max_steps: int | None, max_epochs: int | None, batches_per_epoch: float, updates_per_batch: int = 1) -> int:
    """Optimizer updates a run will make, whichever of its step and epoch limits comes first.

    ``max_steps`` counts updates (Lightning stops when ``global_step`` reaches it); an epoch is
    ``batches_per_epoch`` rollout batches of ``updates_per_batch`` updates each (GRPO's
    ``num_iterations``).  -1 or None means no limit.

    >>> planned_updates(150, -1, 262)          # step-bounded
    150
    >>> planned_updates(-1, 2, 100)            # epoch-bounded
    200
    >>> planned_updates(-1, 2, 100, 2)         # two updates per rollout batch
    400
    >>> planned_updates(50, 2, 100)            # the step limit comes first
    50
    """
    bounds = []
    if max_steps is not None and max_steps >= 0:
        bounds.append(int(max_steps))
    if max_epochs is not None and max_epochs >= 0 and batches_per_epoch != float("inf"):
        bounds.append(int(max_epochs) * int(batches_per_epoch) * int(updates_per_batch))
    if not bounds:
        raise ValueError(
            "the run has no end (trainer.max_steps=-1 and trainer.max_epochs=-1): schedules over training "
            "(ESWR's alpha) need one; set trainer.max_steps or trainer.max_epochs"
        )
    return max(min(bounds), 1)


def sft_mix(start: float, end: float | None, progress: TrainingProgress) -> float:
    """CHORD's mu at this step: ``start`` decayed linearly to ``end`` over the run (constant when ``end`` is None).

    >>> sft_mix(0.5, 0.0, TrainingProgress(global_step=50, max_steps=100)), sft_mix(0.2, None, TrainingProgress(9, 10))
    (0.25, 0.2)
    """
    if end is None:
        return float(start)
    share = min(1.0, progress.global_step / max(1, progress.max_steps))
    return float(start + (end - start) * share)


class GoldSource:
    """What the gold response of a guided group is built from: the prompt's transcript and key words."""

    def __init__(self, batch: dict, index: int) -> None:
        self.transcript = (batch.get("transcript") or [""] * len(batch["label"]))[index]
        self.meta = {"keywords": (batch.get("keywords") or [[]] * len(batch["label"]))[index]}


class GRPOModule(EmotionModule):
    """Group Relative Policy Optimisation of an audio-language model (EMO-RL section 3).

    Args (beyond :class:`~emorl.modules.base.EmotionModule`'s):
        rewards: named reward components and weights.
        algo: :class:`GRPOConfig` or its fields.
        reference: a frozen reference model for full fine-tuning (None with LoRA: the
            policy with adapters disabled is the reference).

    Step k samples from ``seed`` and k alone, so that a resumed run draws the same completions
    as an uninterrupted one.
    """

    def __init__(
        self,
        policy,
        processor,
        strategy: ReasoningStrategy,
        rewards: RewardSet,
        labels,
        algo: GRPOConfig | dict,
        optimizer,
        suppress_ids: list[int],
        end_ids: list[int],
        reference=None,
        eval_max_new_tokens: int | None = None,
        run_dir: str | Path | None = None,
        seed: int = 0,
    ) -> None:
        algo = algo if isinstance(algo, GRPOConfig) else GRPOConfig(**algo)
        super().__init__(
            policy, processor, strategy, labels, optimizer, suppress_ids, end_ids,
            eval_max_new_tokens=eval_max_new_tokens or algo.max_new_tokens, run_dir=run_dir, seed=seed,
        )
        self.automatic_optimization = False
        self.reference = reference
        self.rewards = rewards
        self.algo = algo
        self.rollout_batches = 0
        self.failed_prompts: list[str] = []  # ReLIFT's buffer: clips no sample of their group answered

    # ------------------------------------------------------------ optimiser
    def configure_optimizers(self):
        if self.reference is None and self.algo.beta > 0 and not hasattr(self.policy, "peft_config"):
            raise ValueError("full fine-tuning with algo.beta > 0 needs a frozen reference model (reference=)")
        return super().configure_optimizers()

    def extra_state(self) -> dict:
        # each process holds the failed prompts of its own samples; a checkpoint is written by process 0
        return {**super().extra_state(), "rollout_batches": self.rollout_batches,
                "failed_prompts_by_process": every_process(list(self.failed_prompts))}

    def load_extra_state(self, state: dict) -> None:
        super().load_extra_state(state)
        self.rollout_batches = state.get("rollout_batches", 0)
        if "failed_prompts_by_process" not in state:  # a checkpoint from before buffers were kept per process
            self.failed_prompts = list(state.get("failed_prompts", []))
            return
        buffers, world = state["failed_prompts_by_process"], self._trainer.world_size if self._trainer is not None else 1
        if len(buffers) != world:
            raise ValueError(f"the checkpoint holds the failure buffers of {len(buffers)} processes and this run has "
                             f"{world}: resume it with trainer.devices={len(buffers)}")
        self.failed_prompts = list(buffers[self.global_rank])

    def answered_correctly(self, batch: dict, ro: rollout.Rollout) -> torch.Tensor:
        """Whether each sample answers its prompt's gold label: (P, G) bool."""
        g = self.algo.num_generations
        options = [opts for opts in batch["options"] for _ in range(g)]
        labels = [label for label in batch["label"] for _ in range(g)]
        preds = [parse_label(self.strategy.extract_answer(t), o) for t, o in zip(ro.texts, options, strict=True)]
        return torch.tensor([p is not None and p == y for p, y in zip(preds, labels, strict=True)]).view(-1, g)

    def remember_failures(self, batch: dict, correct: torch.Tensor) -> None:
        """Add the prompts none of whose samples answered correctly (``correct``: (P, G)) to the buffer (ReLIFT),
        oldest dropped."""
        for i in torch.nonzero(~correct.any(dim=1)).flatten().tolist():
            clip = batch["clips"][i]  # the clip's place in its corpus: a resumed run may read the corpus elsewhere
            if clip not in self.failed_prompts:
                self.failed_prompts.append(clip)
        del self.failed_prompts[: max(0, len(self.failed_prompts) - self.algo.buffer_size)]

    def report_class_accuracy(self, batch: dict, correct: torch.Tensor) -> None:
        """``data.balance=accuracy``: this step's correct and sampled answers per gold class (``correct``: (P, G),
        before guidance), summed over processes, to the datamodule's balance that draws the next prompts."""
        datamodule = getattr(self.trainer, "datamodule", None)
        balance = getattr(datamodule, "accuracy_balance", None)
        if balance is None:
            return
        index = {c: i for i, c in enumerate(balance.classes)}
        tally = torch.zeros(2, len(balance.classes), dtype=torch.float64)
        for label, row in zip(batch["label"], correct, strict=True):
            tally[0, index[label]] += float(row.sum())
            tally[1, index[label]] += row.numel()
        tally = global_sum(tally.to(self.device)).cpu()
        balance.observe(self.rollout_batches, tally[0], tally[1])

    def buffer_due(self) -> bool:
        """Whether this update replays failed prompts: every ``buffer_every`` steps, when every process has some.

        Each process replays its own, all in the same update: a backward pass (and under ZeRO-3 a forward
        pass) that one process ran alone would wait for, or be reduced with, another pass of the others.
        """
        every = self.algo.buffer_every
        if not every or (self.rollout_batches + 1) % every:
            return False
        return on_every_process(bool(self.failed_prompts), self.device)

    # ------------------------------------------------------------- training
    def _progress(self) -> TrainingProgress:
        """Updates done and the updates the run will make (from Lightning's step and epoch limits)."""
        trainer = self.trainer
        total = planned_updates(trainer.max_steps, trainer.max_epochs, trainer.num_training_batches, self.algo.num_iterations)
        return TrainingProgress(global_step=int(self.global_step), max_steps=total)

    def measured_log_probs(self, model, ro: rollout.Rollout) -> torch.Tensor:
        """Per-token log-probs of the completions under ``model`` in evaluation mode, no gradient: (N, T).

        Evaluation mode is the mode the completions were sampled in (no dropout): the reference
        policy and the sampling ("old") policy are measured as they are, not as a dropout draw.
        """
        with torch.no_grad(), rollout.evaluation_mode(model):
            return rollout.completion_log_probs(model, ro, self.algo.temperature, self.algo.share_prompt, self.suppress_ids)

    def reference_log_probs(self, ro: rollout.Rollout) -> torch.Tensor:
        """Per-token log-probs of the completions under the reference policy: (N, T)."""
        if self.reference is not None:
            return self.measured_log_probs(self.reference, ro)
        with rollout.reference_policy(self.policy) as ref:
            return self.measured_log_probs(ref, ro)

    def score(self, ro: rollout.Rollout, batch: dict, progress: TrainingProgress) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Rewards of every completion against its own prompt's label: (N,), components."""
        g = self.algo.num_generations
        columns = {
            "label": [label for label in batch["label"] for _ in range(g)],
            "options": [opts for opts in batch["options"] for _ in range(g)],
            "trainer_state": progress,
            "group_size": g,
        }
        for column in ("prosody", "transcript"):  # what the clip's reasoning can be checked against
            if any(batch.get(column) or ()):
                columns[column] = [value for value in batch[column] for _ in range(g)]
        return self.rewards(ro.texts, **columns)

    def rollout(self, batch: dict, draw: int = 0) -> rollout.Rollout:
        """G completions per prompt, from seeds that make resumed (and, per prompt, re-split) runs draw the same.

        Step k samples from (seed, process, k); with ``seed_per_prompt`` each prompt's group is
        sampled on its own from (seed, k, the clip's name in its corpus), so that one process or several draw the
        same, wherever the corpus lives.
        ``draw`` > 0 numbers the extra draws of dynamic sampling within a step.
        """
        cfg = self.algo
        sample = lambda b: rollout.sample(  # noqa: E731
            self.policy, self.processor, b, num_generations=cfg.num_generations, max_new_tokens=cfg.max_new_tokens,
            temperature=cfg.temperature, top_p=cfg.top_p, suppress_ids=self.suppress_ids, end_ids=self.end_ids,
            share_prompt=cfg.share_prompt, synced_gpus=self.parameters_sharded(),
        )
        if not cfg.seed_per_prompt:
            seed = (self.seed + 7919 * self.global_rank) * 1_000_003 + self.rollout_batches
            if draw:
                seed = int(fingerprint({"seed": seed, "draw": draw}), 16)
            torch.manual_seed(seed)
            return sample(batch)
        inputs = rollout.model_inputs(batch)
        parts = []
        for i, clip in enumerate(batch["clips"]):  # the clip's name in its corpus: the same wherever the corpus lives
            key = {"seed": self.seed, "step": self.rollout_batches, "clip": clip, **({"draw": draw} if draw else {})}
            torch.manual_seed(int(fingerprint(key), 16))
            part = sample({**{k: v[i : i + 1] for k, v in inputs.items()}})
            parts.append(rollout.Rollout(prompt=inputs, prompt_index=part.prompt_index + i, completion_ids=part.completion_ids,
                                         completion_mask=part.completion_mask, texts=part.texts))
        return rollout.concat(parts, inputs, self.processor.tokenizer.pad_token_id)

    def extra_prompts(self, draw: int) -> dict:
        """``prompts_per_step`` training questions drawn at random for dynamic sampling, on this device.

        Seeded by (seed, process, step, draw): a resumed run draws the same.
        """
        key = {"seed": self.seed, "rank": self.global_rank, "step": self.rollout_batches, "draw": draw}
        batch = self.trainer.datamodule.random_train_batch(self.algo.prompts_per_step, int(fingerprint(key), 16) % 2**63)
        return {k: v.to(self.device) if torch.is_tensor(v) else v for k, v in batch.items()}

    def sample_groups(self, batch: dict, progress: TrainingProgress):
        """The step's groups and their rewards: ``(batch, rollout, total, components, stats)``.

        With dynamic sampling (DAPO, Yu et al. 2025), a group whose rewards are all equal (no
        advantage, no signal) is replaced by a group of a fresh prompt: up to
        ``max_resample_rounds`` extra draws of ``prompts_per_step`` prompts; if the groups with
        reward variance are still too few, equal-reward groups of the step's own prompts fill in.

        Under ZeRO-3 a draw is a forward pass that gathers parameters from every process, so every process
        draws while any needs to; a process with enough groups keeps the same groups as alone.
        """
        cfg, g = self.algo, self.algo.num_generations
        ro = self.rollout(batch)
        total, components = self.score(ro, batch, progress)
        varied = lambda t: (t.view(-1, g).std(dim=1) > 0).tolist()  # noqa: E731
        flags = varied(total)  # per group, in draw order: do its rewards vary?
        stats = {"groups_with_variance": float(sum(flags)) / cfg.prompts_per_step}
        together = partial(on_any_process, device=self.device) if self.parameters_sharded() else bool
        if not cfg.dynamic_sampling or not together(not all(flags)):
            return batch, ro, total, components, {**stats, "resample_rounds": 0.0}
        draws = [(batch, ro, total, components)]
        draw = 0
        while draw < cfg.max_resample_rounds and together(sum(flags) < cfg.prompts_per_step):
            draw += 1
            extra = self.extra_prompts(draw)
            extra_ro = self.rollout(extra, draw=draw)
            draws.append((extra, extra_ro, *self.score(extra_ro, extra, progress)))
            flags += varied(draws[-1][2])
        pad_id = self.processor.tokenizer.pad_token_id
        merged = rollout.merge_batches([d[0] for d in draws], pad_id)
        offsets = [0]
        for d in draws[:-1]:
            offsets.append(offsets[-1] + len(d[0]["label"]))
        parts = [rollout.Rollout(prompt={}, prompt_index=d[1].prompt_index + o, completion_ids=d[1].completion_ids,
                                 completion_mask=d[1].completion_mask, texts=d[1].texts) for d, o in zip(draws, offsets, strict=True)]
        merged_ro = rollout.concat(parts, rollout.model_inputs(merged), pad_id)
        all_total = torch.cat([d[2] for d in draws])
        all_components = {k: torch.cat([d[3][k] for d in draws]) for k in components}
        keep = [i for i, ok in enumerate(flags) if ok][: cfg.prompts_per_step]
        keep += [i for i, ok in enumerate(flags[: cfg.prompts_per_step]) if not ok][: cfg.prompts_per_step - len(keep)]
        rows = torch.tensor([i * g + j for i in keep for j in range(g)])
        batch, ro = rollout.take_groups(merged, merged_ro, keep, g)
        components = {k: v[rows] for k, v in all_components.items()}
        stats.update(resample_rounds=float(draw), kept_groups_with_variance=float(sum(flags[i] for i in keep)) / len(keep))
        return batch, ro, all_total[rows], components, stats

    def training_step(self, batch: dict, batch_idx: int) -> None:
        cfg = self.algo
        if len(batch["label"]) != cfg.prompts_per_step:
            raise ValueError(f"got a batch of {len(batch['label'])} prompts, expected algo.prompts_per_step={cfg.prompts_per_step}")
        progress = self._progress()  # before this step's updates: what the rewards see
        batch, ro, total, components, sampling = self.sample_groups(batch, progress)
        correct = self.answered_correctly(batch, ro)
        if cfg.buffer_every:
            self.remember_failures(batch, correct)
        self.report_class_accuracy(batch, correct)
        ro, total, components, off_policy = self.guide(batch, ro, total, components, progress, correct)
        device = ro.completion_ids.device
        advantages = algos.group_advantages(total, cfg.num_generations, cfg.advantage_scale, cfg.advantage_eps).to(device)
        if off_policy is not None:
            sampling = {**sampling, "guided_share": float(off_policy.float().sum()) * cfg.num_generations / len(off_policy),
                        "guided_advantage": float(advantages[off_policy.to(device)].mean())}
            off_policy = off_policy.to(device)
        mask = ro.completion_mask.float()
        ref_logp = self.reference_log_probs(ro) if cfg.beta > 0 else None
        # the sampling policy's log-probs, for the clipped ratio of the second and later updates
        old_logp = self.measured_log_probs(self.policy, ro) if cfg.num_iterations > 1 else None

        n = mask.shape[0]
        # bnpo/dapo divide by the batch's tokens: by the mean over processes, as DDP averages gradients
        tokens = global_mean(mask.sum().item(), device)
        chunks = [slice(i, i + cfg.micro_batch_size) for i in range(0, n, cfg.micro_batch_size)]
        optimizer = self.optimizers()
        step_metrics: dict[str, list[torch.Tensor]] = {}
        mu = sft_mix(cfg.sft_coef, cfg.sft_coef_end, progress)  # CHORD's SFT share (0: plain GRPO)
        for _ in range(cfg.num_iterations):
            update_loss = torch.zeros((), device=device)
            for chunk in chunks:
                logp, entropy = rollout.completion_log_probs(
                    self.policy, ro.rows(chunk), cfg.temperature, cfg.share_prompt, self.suppress_ids, with_entropy=True
                )
                loss, metrics = algos.grpo_loss(
                    logp,
                    None if old_logp is None else old_logp[chunk],
                    None if ref_logp is None else ref_logp[chunk],
                    advantages[chunk],
                    mask[chunk],
                    beta=cfg.beta,
                    eps_low=cfg.epsilon_low,
                    eps_high=cfg.epsilon_high,
                    loss_type=cfg.loss_type,
                    kl_estimator=cfg.kl_estimator,
                    max_completion_length=cfg.max_new_tokens,
                    total_sequences=n,
                    total_tokens=tokens,
                    num_micro_batches=len(chunks),
                    entropy=entropy if cfg.entropy_coef else entropy.detach(),
                    entropy_coef=cfg.entropy_coef,
                    off_policy=None if off_policy is None else off_policy[chunk],
                    shaping_gamma=cfg.guidance_gamma,
                )
                self.manual_backward(loss if mu == 0 else (1.0 - mu) * loss)
                update_loss += loss.detach()  # micro-batch losses add up to the update's loss
                for key, value in metrics.items():
                    step_metrics.setdefault(key, []).append(value)
            if mu > 0:  # CHORD: (1 - mu) * GRPO (scaled at its backward passes) + mu * SFT
                sft = self.sft_loss(batch)
                self.manual_backward(mu * sft)
                update_loss = (1.0 - mu) * update_loss + mu * sft.detach()
                step_metrics.setdefault("sft_loss", []).append(sft.detach())
                step_metrics.setdefault("sft_coef", []).append(torch.tensor(mu))
            if self.buffer_due():  # ReLIFT: the failed prompts' gold responses join this update
                taken = self.failed_prompts[: cfg.buffer_batch]
                failed = self.trainer.datamodule.train_batch_of(taken)
                failed = {k: v.to(device) if torch.is_tensor(v) else v for k, v in failed.items()}
                buffered = self.sft_loss(failed)
                self.manual_backward(buffered)
                del self.failed_prompts[: len(taken)]
                step_metrics.setdefault("buffer_sft_loss", []).append(buffered.detach())
                step_metrics.setdefault("buffer_prompts", []).append(torch.tensor(float(len(taken))))
            step_metrics.setdefault("loss", []).append(update_loss)
            if not self.deepspeed():  # DeepSpeed clips by its own config ("gradient_clipping")
                # before clipping: a norm far above max_grad_norm means every update is scaled down
                step_metrics.setdefault("grad_norm", []).append(algos.gradient_norm(self.policy.parameters()))
                self.clip_gradients(optimizer, gradient_clip_val=cfg.max_grad_norm, gradient_clip_algorithm="norm")
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        self._log_train(total, components, advantages, mask, step_metrics, batch, ro, progress, sampling, off_policy)

    def gold_completions(self, batch: dict, prompts: list[int]) -> tuple[list[list[int]], list[str]]:
        """The gold response of each of ``prompts`` (the strategy's: the answer for IR, reasoning from the clip's
        transcript and measured prosody for EUR / ESR), as token ids ending with the end-of-turn token, and as text."""
        tok = self.processor.tokenizer
        end = tok.convert_tokens_to_ids("<|im_end|>")
        end = end if end in self.end_ids else self.end_ids[0]
        ids, texts = [], []
        for i in prompts:
            text = gold_response(self.strategy, batch["label"][i], item=GoldSource(batch, i),
                                 levels=(batch.get("prosody") or [None] * len(batch["label"]))[i])
            ids.append(tok(text, add_special_tokens=False)["input_ids"] + [end])
            texts.append(text)
        return ids, texts

    def sft_loss(self, batch: dict) -> torch.Tensor:
        """Cross-entropy of the step's prompts' gold responses under the policy (token mean): the SFT term
        that ``algo.grpo.sft_coef`` mixes in (CHORD)."""
        prompts = list(range(len(batch["label"])))
        ids, texts = self.gold_completions(batch, prompts)
        inputs = rollout.model_inputs(batch)
        width = max(len(x) for x in ids)
        pad_id = self.processor.tokenizer.pad_token_id
        completion_ids = torch.full((len(ids), width), pad_id, dtype=torch.long, device=inputs["input_ids"].device)
        mask = torch.zeros((len(ids), width), device=inputs["input_ids"].device)
        for row, tokens in enumerate(ids):
            completion_ids[row, : len(tokens)] = torch.tensor(tokens, device=completion_ids.device)
            mask[row, : len(tokens)] = 1
        gold = rollout.Rollout(prompt=inputs, prompt_index=torch.tensor(prompts, device=completion_ids.device),
                               completion_ids=completion_ids, completion_mask=mask, texts=texts)
        logp = rollout.completion_log_probs(self.policy, gold, 1.0, self.algo.share_prompt, self.suppress_ids)
        return -(logp * mask).sum() / mask.sum().clamp(min=1.0)

    def guide(self, batch: dict, ro: rollout.Rollout, total, components, progress, correct: torch.Tensor | None = None):
        """Guided groups (LUFFY, Yan et al. 2025): in each group the guidance rule picks (``algo.grpo.guidance``),
        the last sample is replaced by the gold completion (the strategy's gold response: the answer for IR,
        reasoning from the clip's transcript and measured prosody for EUR / ESR), scored by the same rewards.

        Returns ``(rollout, total, components, off_policy)``; ``off_policy`` (N,) marks the gold rows, None when
        no group was guided (the step is then exactly an unguided one).
        """
        cfg, g = self.algo, self.algo.num_generations
        correct = self.answered_correctly(batch, ro) if correct is None else correct
        key = {"seed": self.seed, "rank": self.global_rank, "step": self.rollout_batches, "what": "guidance"}
        generator = torch.Generator().manual_seed(int(fingerprint(key), 16) % 2**63)
        guided = algos.get_guidance(cfg.guidance)(correct, cfg.guidance_share, generator)
        if not bool(guided.any()):
            return ro, total, components, None
        groups = torch.nonzero(guided).flatten().tolist()
        ids, texts = self.gold_completions(batch, groups)
        rows = [group * g + g - 1 for group in groups]
        ro = rollout.replace_completions(ro, rows, ids, texts, self.processor.tokenizer.pad_token_id)
        total, components = self.score(ro, batch, progress)
        off_policy = torch.zeros(len(ro.texts), dtype=torch.bool)
        off_policy[rows] = True
        return ro, total, components, off_policy

    def _log_train(self, total, components, advantages, mask, step_metrics, batch, ro, progress, sampling,
                   off_policy=None) -> None:
        g = self.algo.num_generations
        options = [opts for opts in batch["options"] for _ in range(g)]
        preds = [parse_label(self.strategy.extract_answer(t), o) for t, o in zip(ro.texts, options, strict=True)]
        golds = [label for label in batch["label"] for _ in range(g)]
        sampled = [off_policy is None or not bool(off_policy[i]) for i in range(len(preds))]
        # per gold class present in the step: the share of its sampled (not guided) completions that answer it
        accuracy = {}
        for label in self.labels:
            mine = [p == y for p, y, s in zip(preds, golds, sampled, strict=True) if s and y == label]
            if mine:
                accuracy[f"train/accuracy/{label}"] = torch.tensor(sum(mine) / len(mine))
        values = {
            "train/reward_mean": total.mean(),
            "train/reward_std": total.std(),
            "train/completion_length": mask.sum(dim=1).mean(),
            "train/valid_answer_rate": torch.tensor(sum(p is not None for p in preds) / len(preds)),
            "train/advantage_abs": advantages.abs().mean(),
            **{f"train/{k}": torch.tensor(v) for k, v in sampling.items()},
            **accuracy,
        }
        # the label distribution of the samples: a class whose share reaches 0 gets no signal again
        for label in self.labels:
            values[f"train/sampled/{label}"] = torch.tensor(sum(p == label for p in preds) / len(preds))
        values["train/sampled/unparsed"] = torch.tensor(sum(p is None for p in preds) / len(preds))
        for name, v in components.items():  # rewards, and what a reward set reports beside them (PTR's tau, switch)
            kind = "reward" if name in self.rewards.functions else "reward_info"
            values[f"train/{kind}/{name}"] = torch.nanmean(v)
        if any(batch.get("prosody") or ()) and any(sec.tag == "prosody" for sec in self.strategy.sections):
            # how true the samples' claims about the voice are (the share that match the measured levels)
            told = faithfulness(ro.texts, [levels for levels in batch["prosody"] for _ in range(g)])
            values["train/prosody_claiming"] = torch.tensor(told["claiming"])
            if told["faithfulness"] is not None:
                values["train/faithfulness"] = torch.tensor(told["faithfulness"])
        for function in self.rewards.functions.values():  # a reward's own state at this step (ESWR's alpha)
            logged = getattr(function, "logged", None)  # optional: plain TRL-style reward functions have none
            for key, value in (logged(progress) if logged is not None else {}).items():
                values[f"train/{key}"] = torch.tensor(value)
        for key, vs in step_metrics.items():
            values[f"train/{key}"] = torch.stack([v.float() for v in vs]).mean()
        values = {k: float(v) for k, v in values.items()}
        self.log_dict(values, on_step=True, prog_bar=False, batch_size=len(batch["label"]))
        self.recent_train_metrics.append(values)
        every = self.algo.log_samples_every
        if every and self.rollout_batches % every == 0:
            self._log_samples(batch, ro, total, components)
        self.rollout_batches += 1

    def _log_samples(self, batch, ro, total, components) -> None:
        g = self.algo.num_generations
        rows = []
        for i in range(g):
            row = {"step": int(self.global_step), "label": batch["label"][0], "completion": ro.texts[i], "reward": float(total[i])}
            row.update({name: float(v[i]) for name, v in components.items()})
            rows.append(row)
        if self.run_dir is not None and self.trainer.is_global_zero:
            with open(self.run_dir / "samples.jsonl", "a") as f:
                for row in rows:
                    f.write(json.dumps(row) + "\n")
        for logger in self.loggers:
            if hasattr(logger, "log_table"):
                columns = list(rows[0])
                logger.log_table(key="train/samples", columns=columns, data=[[r[c] for c in columns] for r in rows])
