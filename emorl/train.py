"""Train entry point: ``python -m emorl.train reward=eswr reasoning=esr``.

``train(cfg)`` evaluates the starting model on the test split, runs GRPO, evaluates the trained
model, and writes ``metrics.json`` (and confusion matrices) into the run directory.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import time
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

from emorl import CONF_DIR

log = logging.getLogger(__name__)


def build_rewards(cfg: DictConfig, strategy, labels):
    """Format reward of the strategy + the configured accuracy reward (eq. 4)."""
    from hydra.utils import instantiate

    from emorl.rewards import make_format_reward
    from emorl.rewards.combine import RewardSet

    # Built as a partial so that the strategy object reaches the factory as it is.
    accuracy = instantiate(cfg.reward.accuracy, _partial_=True)(labels=list(labels), strategy=strategy)
    functions = {"format": make_format_reward(strategy), "accuracy": accuracy}
    weights = {"format": float(cfg.reward.format_weight), "accuracy": float(cfg.reward.accuracy_weight)}
    return RewardSet(functions, weights)


def build_module(
    cfg: DictConfig, policy, processor, strategy, labels, run_dir: Path, reference=None, rewards=None, algo=None,
    train: bool = True,
):
    """The LightningModule of ``cfg.algo`` for ``policy`` (``train=False``: evaluation only).

    ``rewards`` and ``algo`` (a :class:`GRPOConfig`) already built from ``cfg`` are used as they are.
    """
    from hydra.utils import instantiate

    from emorl.models.loading import end_token_ids, suppressed_token_ids
    from emorl.modules.base import EmotionModule
    from emorl.modules.grpo import GRPOConfig, GRPOModule
    from emorl.modules.sft import SFTModule

    common = dict(
        policy=policy,
        processor=processor,
        strategy=strategy,
        labels=labels,
        optimizer=instantiate(cfg.optimizer) if train else None,
        suppress_ids=suppressed_token_ids(processor),
        end_ids=end_token_ids(policy, processor),
        eval_max_new_tokens=cfg.eval.max_new_tokens,
        run_dir=run_dir,
        seed=int(cfg.seed),
    )
    if not train:
        return EmotionModule(**common)
    if cfg.algo.name == "sft":
        return SFTModule(**common)
    if cfg.algo.name != "grpo":
        raise ValueError(f"algo={cfg.algo.name}: choose grpo or sft")
    return GRPOModule(
        **common,
        rewards=rewards if rewards is not None else build_rewards(cfg, strategy, labels),
        algo=algo or GRPOConfig(**OmegaConf.to_container(cfg.algo.grpo, resolve=True)),
        reference=reference,
    )


def resolve_model_path(cfg: DictConfig, corpus, strategy) -> str:
    """The pretrained id/path, or the embedded tiny base (built and cached when missing).

    The embedded base is warm-started on the synthetic corpus, whose items carry the prosody and
    key-word annotations its warm-start questions need; with a real corpus configured, the
    default synthetic corpus is used for that.
    """
    if cfg.model.pretrained:
        return str(cfg.model.pretrained)
    from emorl.data.synthetic import SyntheticCorpus
    from emorl.models.embedded import prepare_embedded_base

    if not isinstance(corpus, SyntheticCorpus):
        log.info("model=tiny with dataset=%s: the embedded base is warm-started on the default synthetic corpus",
                 getattr(corpus, "name", "?"))
        corpus = SyntheticCorpus(Path(cfg.paths.cache_dir) / "synthetic")
    return str(
        prepare_embedded_base(
            cfg.paths.cache_dir,
            corpus,
            strategy,
            seed=int(cfg.seed),
            build=OmegaConf.to_container(cfg.model.build, resolve=True),
            warm_start_settings=OmegaConf.to_container(cfg.model.warm_start, resolve=True),
        )
    )


def check_strategy(cfg: DictConfig, algo) -> None:
    """Settings DeepSpeed cannot run (yet), refused before any model is loaded."""
    name = str(cfg.get("strategy", {}).get("name", "auto"))
    if not name.startswith("deepspeed"):
        return
    if algo is not None and algo.micro_batch_size != algo.prompts_per_step * algo.num_generations:
        raise ValueError(
            f"strategy={name} runs one backward pass per step: set algo.grpo.micro_batch_size="
            f"{algo.prompts_per_step * algo.num_generations} (prompts_per_step x num_generations per process), and lower "
            "algo.grpo.prompts_per_step to fit memory; gradient accumulation over micro-batches under ZeRO is not verified"
        )
    if "zero3" in name and cfg.save_model:
        raise ValueError(
            f"strategy={name} shards the weights over the processes and emorl cannot export them yet: "
            "set save_model=false (the checkpoints hold the run), or train with strategy=deepspeed_zero2"
        )


def train(cfg: DictConfig) -> tuple[dict, dict]:
    """Run one experiment; returns ``(metrics, objects)``."""
    import lightning as L
    from hydra.utils import instantiate
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    from emorl.checkpointing import checkpoint_callbacks, export_model, resume_path
    from emorl.metrics import plot_confusion
    from emorl.models.loading import enable_gradient_checkpointing, load_backbone, wrap_for_training
    from emorl.modules.grpo import GRPOConfig

    if cfg.num_threads:
        torch.set_num_threads(int(cfg.num_threads))
    L.seed_everything(int(cfg.seed), workers=True)
    run_dir = Path(cfg.paths.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt_dir = run_dir / "checkpoints"
    resume = resume_path(cfg, ckpt_dir, run_dir / "config_resolved.yaml")  # checks settings before any work

    grpo = cfg.algo.name == "grpo"
    algo = GRPOConfig(**OmegaConf.to_container(cfg.algo.grpo, resolve=True)) if grpo else None  # checks invariants
    check_strategy(cfg, algo)
    corpus = instantiate(cfg.dataset.corpus)
    strategy = instantiate(cfg.reasoning)
    labels = corpus.labels
    rewards = build_rewards(cfg, strategy, labels) if grpo else None  # checks gamma, schedule before any model
    if cfg.algo.name == "sft":
        from emorl.prompts import gold_response

        gold_response(strategy, labels[0])  # reasoning must be IR: fail now, not at the first batch

    base_path = resolve_model_path(cfg, corpus, strategy)
    model, processor = load_backbone(base_path, cfg.model.dtype)
    lora = OmegaConf.to_container(cfg.model.lora, resolve=True) if cfg.model.lora else None
    reference = None
    if grpo and lora is None and algo.beta > 0:
        reference = copy.deepcopy(model).eval().requires_grad_(False)
    policy = wrap_for_training(model, lora, cfg.model.adapter)
    if cfg.model.get("gradient_checkpointing"):
        enable_gradient_checkpointing(policy)
    datamodule = instantiate(cfg.data, _partial_=True)(corpus=corpus, strategy=strategy, processor=processor)
    for stage in ("fit", "test"):  # every split's labels and audio are checked before any evaluation or training
        datamodule.setup(stage)
    module = build_module(cfg, policy, processor, strategy, labels, run_dir, reference=reference, rewards=rewards, algo=algo)
    loggers = [instantiate(lg) for lg in (cfg.logger or {}).values()]
    callbacks = checkpoint_callbacks(cfg, ckpt_dir)
    trainer = instantiate(cfg.trainer, logger=loggers or False, callbacks=list(callbacks.values()))
    if trainer.is_global_zero and resume is None:
        log.info("config:\n%s", OmegaConf.to_yaml(cfg, resolve=True))
        (run_dir / "config_resolved.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))

    metrics: dict = {"run_dir": str(run_dir), "seed": int(cfg.seed), "algo": cfg.algo.name}
    base_file = run_dir / "metrics_base.json"
    try:
        if cfg.eval.base and resume is not None and base_file.exists():
            metrics["base"] = json.loads(base_file.read_text())  # measured before the interruption
        elif cfg.eval.base:
            trainer.test(module, datamodule=datamodule, verbose=False)
            metrics["base"] = module.eval_results["test"]
            if trainer.is_global_zero:
                base_file.write_text(json.dumps(metrics["base"], indent=2))
        start = time.time()
        if resume is not None:
            log.info("resuming from %s", resume)
        trainer.fit(module, datamodule=datamodule, ckpt_path=resume)
        wall = time.time() - start
        best = callbacks["best"].best_model_path
        selected = best if cfg.checkpoint.select == "best" and best else None
        if cfg.checkpoint.select == "best" and not best:
            log.warning("no validation ran, so no best checkpoint exists: the final policy is tested and saved")
        trainer.test(module, datamodule=datamodule, verbose=False, ckpt_path=selected)
        metrics["trained"] = module.eval_results["test"]
        metrics["train"] = {
            "steps": int(trainer.global_step),
            "wall_time_s": round(wall, 1),
            "final": module.final_train_metrics,  # mean of the last 10 steps
            "val_ua_best": module.best_val_ua if module.best_val_ua > float("-inf") else None,
            "selected_checkpoint": Path(selected).name if selected else "final",
            "selected_step": module.best_val_step if selected else int(trainer.global_step),
        }
        metrics["data"] = datamodule.summary()
        if trainer.is_global_zero:
            if cfg.save_model:  # a peft adapter with LoRA, the full model otherwise
                export_model(module.policy, processor, run_dir / "model", cfg, labels, strategy, base_path)
            for name in ("base", "trained"):
                if name in metrics:
                    plot_confusion(metrics[name]["confusion"], labels, run_dir / f"confusion_{name}.png", title=name)
            (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
            with open(run_dir / "predictions.jsonl", "w") as f:  # the trained model's test answers
                f.writelines(json.dumps(row) + "\n" for row in module.eval_records)
            log.info("metrics written to %s", run_dir / "metrics.json")
    except SIGTERMException:
        log.warning(
            "terminated at step %d; rerun the same command with hydra.run.dir=%s to continue from %s",
            trainer.global_step, run_dir, ckpt_dir / "last.ckpt",
        )
        raise SystemExit(143) from None
    finally:
        for lg in loggers:
            if lg.__class__.__name__ == "WandbLogger":
                import wandb

                wandb.finish()
    return metrics, {"module": module, "trainer": trainer, "datamodule": datamodule}


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="train")
def main(cfg: DictConfig) -> float | None:
    from emorl.distributed import sweep_job

    with sweep_job():  # DDP/DeepSpeed processes run this job alone, in its folder
        metrics, _ = train(cfg)
    trained = metrics.get("trained")
    return trained["ua"] if trained else None


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
