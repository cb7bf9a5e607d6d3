"""Every file of every config group composes, and its objects instantiate."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

import emorl  # noqa: F401  (registers the config resolvers)
from tests.conftest import CONF_DIR

GROUPS = sorted(p.name for p in Path(CONF_DIR).iterdir() if p.is_dir() and p.name not in ("hydra", "local"))
CASES = [(g, f.stem) for g in GROUPS for f in sorted((Path(CONF_DIR) / g).glob("*.yaml"))]


def test_every_group_has_files():
    for required in ("dataset", "model", "reasoning", "reward", "algo", "trainer", "logger", "experiment"):
        assert required in GROUPS


@pytest.mark.parametrize("group,name", CASES)
def test_config_file_composes_and_instantiates(group, name, cfg_factory, tmp_path):
    required = {"meld": "root", "iemocap": "root", "ravdess": "root", "savee": "root", "manifest": "path"}
    extra = [f"dataset.{required[name]}={tmp_path}"] if group == "dataset" and name in required else []
    if group == "dataset" and name == "manifest":
        extra.append("dataset.labels=meld")
    cfg = cfg_factory(f"{group}={name}", *extra)
    OmegaConf.resolve(cfg)  # every interpolation resolves
    if group == "reasoning":
        strategy = instantiate(cfg.reasoning)
        assert strategy.name == name
    elif group == "reward":
        from emorl.prompts import get_strategy

        fn = instantiate(cfg.reward.accuracy, _partial_=True)(labels=["joy", "anger"], strategy=get_strategy("ir"))
        assert fn(["<answer>joy</answer>"], label=["joy"], alpha=1.0) == [1.0]
    elif group == "dataset":
        corpus = instantiate(cfg.dataset.corpus)
        assert len(corpus.labels) == {"iemocap": 4, "ravdess": 8}.get(name, 7)
    elif group == "algo" and name == "sft":
        # the paper's SFT + IR: IR answers, AdamW at 1e-5, five epochs, gold responses in the batches
        assert (cfg.reasoning.name, cfg.optimizer.lr, cfg.trainer.max_epochs, cfg.data.targets) == ("ir", 1e-5, 5, True)
        # validation by a share of an epoch is a valid Trainer setting (SMALL overrides it with steps)
        trainer = instantiate(cfg.trainer, logger=False, val_check_interval=cfg.algo.val_check_interval)
        assert trainer.max_epochs == 5 and trainer.val_check_interval == 0.25
    elif group == "algo":
        from emorl.modules.grpo import GRPOConfig

        GRPOConfig(**OmegaConf.to_container(cfg.algo.grpo))
        assert cfg.optimizer.lr == cfg.model.lr and cfg.data.targets is False
    elif group == "optimizer":
        import torch

        opt = instantiate(cfg.optimizer)([torch.nn.Parameter(torch.zeros(1))])
        assert isinstance(opt, torch.optim.Optimizer)
    elif group == "strategy":
        from lightning.pytorch.strategies import DDPStrategy, DeepSpeedStrategy

        if name.startswith("deepspeed"):
            import json

            config = json.loads(Path(cfg.strategy.strategy.config).read_text())  # the JSON in conf/deepspeed
            stage = {"deepspeed_zero2": 2, "deepspeed_zero3": 3, "deepspeed_zero3_offload": 3}[name]
            assert config["zero_optimization"]["stage"] == stage
            assert ("offload_param" in config["zero_optimization"]) == name.endswith("offload")
            from hydra.utils import get_class

            assert get_class(cfg.strategy.strategy._target_) is DeepSpeedStrategy
        elif name == "ddp":
            assert isinstance(instantiate(cfg.strategy.strategy), DDPStrategy)
        else:
            assert cfg.trainer.strategy == "auto"
    elif group == "trainer":
        if cfg.trainer.accelerator == "gpu":
            pytest.skip("a GPU trainer cannot be built on this machine")
        trainer = instantiate(cfg.trainer, logger=False)
        assert trainer.max_steps == cfg.trainer.max_steps
    elif group == "logger":
        for lg in (cfg.logger or {}).values():
            logger = instantiate(lg)
            assert logger.save_dir
            if type(logger).__name__ == "WandbLogger":
                assert lg.offline is True  # offline unless the user switches
    elif group == "experiment":
        reward, reasoning = name.split("_")
        assert (cfg.reward.name, cfg.reasoning.name) == (reward, reasoning)
    elif group == "model":
        assert ("pretrained" in cfg.model) and ("lora" in cfg.model)
    elif group == "data":
        assert cfg.data.batch_size == cfg.algo.grpo.prompts_per_step
    elif group == "paths":
        assert str(cfg.paths.cache_dir)


def test_the_slurm_launcher_composes_a_sweep_for_cluster_jobs(cfg_factory):
    """The README's SLURM command: Hydra's submitit launcher with the GPUs of one node per job."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("train", overrides=["hydra/launcher=submitit_slurm", "hydra.launcher.gpus_per_node=8",
                                          "trainer.devices=8", "strategy=ddp"], return_hydra_config=True)
    assert cfg.hydra.launcher._target_.endswith("SlurmLauncher")
    assert cfg.hydra.launcher.gpus_per_node == cfg.trainer.devices == 8
    assert cfg.hydra.sweep.dir.startswith("multirun_sweeps/")  # the jobs land in the project's sweep folder
