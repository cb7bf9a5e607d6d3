"""Train entry point: ``python -m emorl.train reward=eswr reasoning=esr``.

``train(cfg)`` evaluates the starting model on the test split, runs GRPO, evaluates the trained
model, and writes ``metrics.json`` (and confusion matrices) into the run directory.  With
``algo=zero_shot`` it trains nothing and scores the starting model as the run's model (the
paper's zero-shot rows).  ``eval.cross_corpus=[synthetic_heldout]`` then evaluates the run's
model zero-shot on each named dataset config (the paper's Table 2), as ``emorl.evaluate`` does,
into ``<run dir>/cross_corpus/<name>/`` and ``metrics.json``'s ``cross_corpus``.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from emorl import CONF_DIR

log = logging.getLogger(__name__)


def train(cfg: DictConfig) -> tuple[dict, dict]:
    """Run one experiment; returns ``(metrics, objects)``. One run at a time per run directory."""
    from emorl.runlock import run_directory_lock

    with run_directory_lock(Path(cfg.paths.output_dir), "emorl.train"):
        return _train(cfg)


@dataclass
class Prepared:
    """What a run's preflight built and checked, before any model: its folder, resume point and data."""

    run_dir: Path
    resume: str | None
    trains: bool
    cross_corpus: dict
    strategy: object
    labels: list[str]
    rewards: object
    datamodule: object
    base_path: str


def _train(cfg: DictConfig) -> tuple[dict, dict]:
    from emorl import builders
    from emorl.checkpointing import exit_on_sigterm

    run = _preflight(cfg)
    if not run.trains:
        return _zero_shot(cfg, run.base_path, run.datamodule, run.strategy, run.labels, run.run_dir, run.cross_corpus)
    module, trainer, loggers, callbacks = _build(cfg, run)
    metrics: dict = {"run_dir": str(run.run_dir), "seed": int(cfg.seed), "algo": cfg.algo.name}
    try:
        with exit_on_sigterm(trainer, run.run_dir):
            if cfg.eval.base:
                metrics["base"] = _base_metrics(run, module, trainer)
            start = time.time()
            if run.resume is not None:
                log.info("resuming from %s", run.resume)
            trainer.fit(module, datamodule=run.datamodule, ckpt_path=run.resume)
            wall = time.time() - start
            final = module.final_train_metrics  # before testing a checkpoint, whose loading restores its own window
            selected = _selected_checkpoint(cfg, callbacks["best"].best_model_path)
            trainer.test(module, datamodule=run.datamodule, verbose=False, ckpt_path=selected)
            metrics["trained"] = module.eval_results["test"]
            metrics["train"] = _train_summary(module, trainer, wall, final, selected)
            metrics["data"] = run.datamodule.summary()
            if trainer.is_global_zero:
                _save_results(run.run_dir, metrics, run.labels, module.eval_records)  # the metrics first: a failed export keeps them
                if cfg.save_model:
                    _export(cfg, run, module)
                _cross_corpus(metrics, run.cross_corpus, trainer.world_size, None, run.run_dir)
    finally:
        builders.finish_loggers(loggers)
    return metrics, {"module": module, "trainer": trainer, "datamodule": run.datamodule}


def _preflight(cfg: DictConfig) -> Prepared:
    """Every check that needs no model, in seconds, before hours of work: settings, resume point, corpus and
    audio of every split, rewards, the cross-corpus configs, the base model's path."""
    import lightning as L
    from hydra.utils import instantiate

    from emorl import builders
    from emorl.checkpointing import resume_path

    builders.use_threads(cfg)
    L.seed_everything(int(cfg.seed), workers=True)
    run_dir = Path(cfg.paths.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    resume = resume_path(cfg, run_dir / "checkpoints", run_dir / "config_resolved.yaml")  # checks settings first
    trains = builders.trains(cfg)
    builders.check_run_settings(cfg, training=trains)
    cross_corpus = builders.cross_corpus_configs(cfg, run_dir)  # each named dataset config loads and names its files
    builders.check_strategy(cfg, builders.grpo_settings(cfg))  # algo.grpo's invariants, then the strategy's
    corpus = instantiate(cfg.dataset.corpus)
    strategy = instantiate(cfg.reasoning)
    rewards = None
    if builders.module_takes(cfg, "rewards"):  # checks gamma, schedule, rules before any model
        rewards = builders.build_rewards(cfg.reward, strategy, corpus.labels)
    datamodule = instantiate(cfg.data, _partial_=True)(corpus=corpus, strategy=strategy)
    for stage in ("fit", "test"):  # every split's labels and audio are checked before any model is built
        datamodule.setup(stage)
    return Prepared(run_dir, resume, trains, cross_corpus, strategy, corpus.labels, rewards, datamodule,
                    builders.resolve_model_path(cfg, corpus, strategy))


def _build(cfg: DictConfig, run: Prepared):
    """The policy, its LightningModule, loggers, checkpoint callbacks and trainer; the resolved config written."""
    from hydra.utils import instantiate

    from emorl import builders
    from emorl.checkpointing import check_room_for_run, checkpoint_callbacks, use_atomic_checkpoints

    policy, processor, reference = builders.build_policy(cfg, run.base_path)
    run.datamodule.use_processor(processor)
    module = builders.build_module(cfg, policy, processor, run.strategy, run.labels, run.run_dir, reference=reference,
                                   rewards=run.rewards)
    check_room_for_run(module, policy, run.run_dir / "checkpoints", export=bool(cfg.save_model))  # before any step
    loggers = builders.build_loggers(cfg, job_type="train")
    callbacks = checkpoint_callbacks(cfg, run.run_dir / "checkpoints")
    trainer = instantiate(cfg.trainer, logger=loggers or False, callbacks=list(callbacks.values()))
    use_atomic_checkpoints(trainer)
    if trainer.is_global_zero and run.resume is None:
        log.info("config:\n%s", OmegaConf.to_yaml(cfg, resolve=True))
        (run.run_dir / "config_resolved.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    return module, trainer, loggers, callbacks


def _base_metrics(run: Prepared, module, trainer) -> dict:
    """The starting model's test metrics: measured now, or read back when a resumed run measured them before."""
    from emorl.results import write_json_atomic

    base_file = run.run_dir / "metrics_base.json"
    if run.resume is not None and base_file.exists():
        return json.loads(base_file.read_text())  # measured before the interruption
    trainer.test(module, datamodule=run.datamodule, verbose=False)
    if trainer.is_global_zero:
        write_json_atomic(base_file, module.eval_results["test"])
    return module.eval_results["test"]


def _selected_checkpoint(cfg: DictConfig, best: str) -> str | None:
    """The checkpoint to test and export: the best by validation UA (``checkpoint.select=best``), else the final policy."""
    if cfg.checkpoint.select == "best" and not best:
        log.warning("no validation ran, so no best checkpoint exists: the final policy is tested and saved")
    return best if cfg.checkpoint.select == "best" and best else None


def _train_summary(module, trainer, wall: float, final: dict, selected: str | None) -> dict:
    return {
        "steps": int(trainer.global_step),
        "wall_time_s": round(wall, 1),
        "final": final,  # mean of the last 10 steps
        "val_ua_best": module.best_val_ua if module.best_val_ua > float("-inf") else None,
        "selected_checkpoint": Path(selected).name if selected else "final",
        "selected_step": module.best_val_step if selected else int(trainer.global_step),
    }


def _export(cfg: DictConfig, run: Prepared, module) -> None:
    """The selected policy (a peft adapter with LoRA, the full model otherwise), its processor and ``emorl.json``
    into ``<run>/model``, and what the module's own evaluation needs (the probe's head)."""
    from emorl.checkpointing import export_model

    out = run.run_dir / "model"
    export_model(module.policy, module.processor, out, cfg, run.labels, run.strategy, run.base_path)
    module.export(out)


def _save_results(run_dir: Path, metrics: dict, labels, records: list[dict], trained_title: str = "trained") -> None:
    """A run's confusion matrices, ``metrics.json`` and the test answers of its model (``predictions.jsonl``)."""
    from emorl.metrics import plot_confusion
    from emorl.results import write_json_atomic, write_jsonl_atomic

    write_json_atomic(run_dir / "metrics.json", metrics)  # each file whole or not at all, the metrics first
    write_jsonl_atomic(run_dir / "predictions.jsonl", records)
    for name in ("base", "trained"):
        if name in metrics:
            plot_confusion(metrics[name]["confusion"], labels, run_dir / f"confusion_{name}.png",
                           title=trained_title if name == "trained" else name)
    log.info("metrics written to %s", run_dir / "metrics.json")


def _cross_corpus(metrics: dict, configs: dict, world_size: int, base_path: str | None, run_dir: Path) -> None:
    """Add ``eval.cross_corpus``'s evaluations to ``metrics.json``; raise, once all were tried, if any failed."""

    if not configs:
        return
    from emorl.evaluation import evaluate_cross_corpus
    from emorl.results import write_json_atomic

    metrics["cross_corpus"] = evaluate_cross_corpus(configs, world_size, base_path)
    write_json_atomic(run_dir / "metrics.json", metrics)
    failed = {name: r["error"] for name, r in metrics["cross_corpus"].items() if "error" in r}
    if failed:
        raise RuntimeError(f"cross-corpus evaluation failed (the run's own results are saved): {failed}")


def _zero_shot(cfg: DictConfig, base_path: str, datamodule, strategy, labels, run_dir: Path, cross_corpus: dict):
    """``algo=zero_shot``: the starting model answers the test split, as the run's model; nothing trains."""
    from hydra.utils import instantiate

    from emorl import builders
    from emorl.models.loading import load_backbone

    model, processor = load_backbone(base_path, cfg.model.dtype)
    model.eval()
    datamodule.use_processor(processor)
    module = builders.build_module(cfg, model, processor, strategy, labels, run_dir, train=False)
    loggers = builders.build_loggers(cfg, job_type="evaluate")
    trainer = instantiate(cfg.trainer, logger=loggers or False, callbacks=[], enable_checkpointing=False)
    if trainer.is_global_zero:
        (run_dir / "config_resolved.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    try:
        trainer.test(module, datamodule=datamodule, verbose=False)
        metrics: dict = {"run_dir": str(run_dir), "seed": int(cfg.seed), "algo": cfg.algo.name, "model": base_path,
                         "trained": module.eval_results["test"],
                         "train": {"steps": 0, "wall_time_s": 0.0, "selected_checkpoint": "none (zero-shot)"},
                         "data": datamodule.summary()}
        if trainer.is_global_zero:
            _save_results(run_dir, metrics, labels, module.eval_records, trained_title="zero-shot")
            _cross_corpus(metrics, cross_corpus, trainer.world_size, base_path, run_dir)
    finally:
        builders.finish_loggers(loggers)
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
