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
def test_config_file_composes_and_instantiates(group, name, cfg_factory, tmp_path, request, monkeypatch):
    required = {"meld": "root", "iemocap": "root", "ravdess": "root", "savee": "root", "manifest": "path", "emobox": "root"}
    extra = [f"dataset.{required[name]}={tmp_path}"] if group == "dataset" and name in required else []
    if group == "dataset" and name == "manifest":
        extra.append("dataset.labels=meld")
    if group == "dataset" and name == "emobox":
        extra += [f"dataset.audio_root={tmp_path}", "dataset.labels=ravdess"]
    cfg = cfg_factory(f"{group}={name}", *extra)
    OmegaConf.resolve(cfg)  # every interpolation resolves
    if group == "reasoning":
        strategy = instantiate(cfg.reasoning)
        assert strategy.name == name
    elif group == "reward":
        from emorl.builders import build_rewards
        from emorl.prompts import get_strategy

        if name == "ptr":
            # EmotionThinker's weights; the combiner weighs the reasoning term by tau and the schedule
            rewards = build_rewards(cfg.reward, get_strategy("esr"), ["joy", "anger"])
            assert dict(rewards.weights) == {"format": 0.3, "accuracy": 1.0, "reasoning": 0.5}
            assert type(rewards).__name__ == "PTRRewardSet" and cfg.data.prosody is True
            return
        rewards = build_rewards(cfg.reward, get_strategy("ir"), ["joy", "anger"])
        assert dict(rewards.weights) == {"format": 1.0, "accuracy": 1.0}
        total, parts = rewards(["<answer>joy</answer>", "<answer>anger</answer>"], label=["joy", "joy"], alpha=1.0)
        assert total.tolist() == [2.0, 0.0]  # IR: format (the paper's rule) and accuracy both need the right answer
    elif group == "dataset":
        corpus = instantiate(cfg.dataset.corpus)
        assert len(corpus.labels) == {"iemocap": 4, "ravdess": 8, "emobox": 8}.get(name, 7)
    elif group == "algo":
        from hydra.utils import get_class

        from emorl.builders import grpo_settings

        module = get_class(cfg.algo.module._target_)
        assert module.__name__ == {"grpo": "GRPOModule", "sft": "SFTModule", "prosody_sft": "SFTModule",
                                   "zero_shot": "EmotionModule", "linear_probe": "LinearProbeModule"}[name]
        assert (grpo_settings(cfg) is None) == (name != "grpo")
        if name == "linear_probe":  # EmoBox's downstream head: a 256-unit hidden layer, no gold responses needed
            assert (cfg.algo.module.hidden, cfg.data.targets, cfg.checkpoint.select) == (256, False, "best")
            return
        if name == "zero_shot":  # evaluation only: no training step, the starting model is the model
            assert cfg.algo.train is False and cfg.checkpoint.select == "last" and "training_step" not in vars(module)
            return
        # the prosody warm start: prosody questions, IR answers, the last model exported (no emotion-label selection)
        assert (cfg.data.training_task, cfg.checkpoint.select) == (
            ("prosody", "last") if name == "prosody_sft" else ("emotion", "best"))
        if name == "prosody_sft":
            assert (cfg.reasoning.name, cfg.data.targets, cfg.data.task_alternation) == ("ir", True, False)
        elif name == "sft":
            # the paper's SFT + IR: IR answers, AdamW at 1e-5, five epochs, gold responses in the batches
            assert (cfg.reasoning.name, cfg.optimizer.lr, cfg.trainer.max_epochs, cfg.data.targets) == ("ir", 1e-5, 5, True)
            # validation by a share of an epoch is a valid Trainer setting (SMALL overrides it with steps)
            trainer = instantiate(cfg.trainer, logger=False, val_check_interval=cfg.algo.val_check_interval)
            assert trainer.max_epochs == 5 and trainer.val_check_interval == 0.25
        else:
            assert grpo_settings(cfg).num_generations == 3  # the tests' G (SMALL), read through the checked settings
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
        from emorl.tables import row_id

        # the report places every experiment in the row it declares, which is the row it is named after and
        # the row its settings (algo, reward components, prompt) amount to
        resolved = OmegaConf.to_container(cfg, resolve=True)
        assert resolved["row"] == name and row_id(resolved) == name
        assert row_id({**resolved, "row": None}) == name
    elif group == "model":
        # every model file builds its policy on the tiny base: dtype, LoRA or full, gradient checkpointing
        import torch

        from emorl.builders import build_policy

        tiny_base = request.getfixturevalue("tiny_base")
        cfg = cfg_factory(f"model={name}", f"model.pretrained={tiny_base}")
        policy, _, reference = build_policy(cfg, str(tiny_base))
        trainable = [n for n, p in policy.named_parameters() if p.requires_grad]
        if cfg.model.lora:
            assert trainable and all("lora_" in n and "language_model" in n for n in trainable)
            assert reference is None  # the policy with adapters disabled is the reference
        else:
            assert len(trainable) == len(list(policy.parameters())) - 1 and reference is not None  # all but the fixed positions
        assert bool(policy.is_gradient_checkpointing) == bool(cfg.model.gradient_checkpointing)
        # the backbone's weights in the configured dtype (peft keeps LoRA adapters in float32)
        assert {p.dtype for n, p in policy.named_parameters() if "lora_" not in n} == {getattr(torch, cfg.model.dtype)}
    elif group == "data":
        assert cfg.data.batch_size == cfg.algo.grpo.prompts_per_step
    elif group == "debug":  # a wiring check: two steps of a small corpus, no logger (the file, not the tests' SMALL)
        debug = OmegaConf.load(Path(CONF_DIR) / "debug" / f"{name}.yaml")
        corpus = debug.dataset.corpus
        assert (debug.trainer.max_steps, corpus.train_per_class, corpus.test_per_class) == (2, 8, 2)
        assert cfg.logger is None and cfg.trainer.max_steps == 2
    elif group == "table":
        # a table sweeps experiment files that exist, three seeds, each run named by its experiment and seed,
        # and every row it sweeps is a row of the paper's numbers (emorl.report --paper places it there)
        import yaml

        from emorl.tables import paper_results

        table = yaml.safe_load((Path(CONF_DIR) / "table" / f"{name}.yaml").read_text())["hydra"]
        params = table["sweeper"]["params"]
        experiments = params["experiment"].split(",")
        assert params["seed"] == "0,1,2" and table["sweep"]["subdir"] == "${hydra.runtime.choices.experiment}_s${seed}"
        assert all((Path(CONF_DIR) / "experiment" / f"{e}.yaml").is_file() for e in experiments)
        rows = {yaml.safe_load((Path(CONF_DIR) / "experiment" / f"{e}.yaml").read_text())["row"] for e in experiments}
        assert rows == set(experiments) and rows <= {row["id"] for row in paper_results()[name]["rows"]}
    elif group == "paths":
        # the cache lies under EMORL_ROOT (default: the working directory) unless EMORL_CACHE names it
        from hydra import compose, initialize_config_dir

        monkeypatch.setenv("EMORL_ROOT", str(tmp_path))
        monkeypatch.delenv("EMORL_CACHE", raising=False)
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            assert Path(compose("train").paths.cache_dir) == tmp_path / ".cache"
        monkeypatch.setenv("EMORL_CACHE", str(tmp_path / "elsewhere"))
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            assert Path(compose("train").paths.cache_dir) == tmp_path / "elsewhere"


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


def test_model_tiny_loads_the_shipped_base_for_every_seed_and_corpus(cfg_factory, monkeypatch, tmp_path):
    import emorl.models.embedded as embedded
    from emorl import builders
    from emorl.data.synthetic import SyntheticCorpus
    from emorl.pretraining.card import ASSET_DIR

    monkeypatch.setattr(embedded, "prepare_embedded_base", lambda *a, **k: pytest.fail("a base was built"))
    heldout = SyntheticCorpus(tmp_path / "c", style="heldout", train_per_class=0, val_per_class=0, test_per_class=2,
                              val_speakers=0, test_speakers=18)
    paths = {builders.resolve_model_path(cfg_factory(f"seed={s}"), corpus, None) for s in (0, 1) for corpus in (object(), heldout)}
    assert {Path(p).resolve() for p in paths} == {ASSET_DIR.resolve()}


def test_every_run_seed_starts_from_the_same_embedded_base(cfg_factory, monkeypatch):
    """A seed sweep varies the run, not the pretrained model: the base is built with model.seed."""
    import emorl.models.embedded as embedded
    from emorl import builders

    built = []
    monkeypatch.setattr(embedded, "prepare_embedded_base", lambda *a, seed, **k: built.append(seed) or f"base{seed}")
    on_the_fly = "model.pretrained=null"  # the base warm-started on the fly (the shipped one is one file for all)
    paths = [builders.resolve_model_path(cfg_factory(f"seed={s}", on_the_fly), object(), None) for s in (0, 1, 2)]
    paths.append(builders.resolve_model_path(cfg_factory("seed=1", "model.seed=3", on_the_fly), object(), None))
    assert built == [0, 0, 0, 3] and paths == ["base0", "base0", "base0", "base3"]


@pytest.mark.parametrize(
    "corpus_settings, same_as_default",
    [
        ({}, True),  # the default corpus: its own training clips
        ({"style": "heldout", "train_per_class": 0, "val_per_class": 0, "test_per_class": 2, "val_speakers": 0,
          "test_speakers": 18}, True),  # the held-out corpus has no training clips: the experiments' base
        ({"style": "pretrain", "train_per_class": 2, "val_per_class": 0, "test_per_class": 0, "val_speakers": 0,
          "test_speakers": 0}, True),  # the pretraining corpus: still the experiments' base
        ({"train_per_class": 6}, False),  # a resized default corpus: the experiment trains on its clips
    ],
)
def test_the_embedded_base_is_warm_started_on_the_experiments_corpus_style(cfg_factory, monkeypatch, tmp_path,
                                                                          corpus_settings, same_as_default):
    """Evaluating the untuned base on another corpus style scores the base the experiments start from, not a base
    warm-started on the evaluated corpus (whose held-out clips would then be warm-start clips)."""
    import emorl.models.embedded as embedded
    from emorl import builders
    from emorl.data.synthetic import SyntheticCorpus

    used = []
    monkeypatch.setattr(embedded, "prepare_embedded_base", lambda cache, corpus, *a, **k: used.append(corpus.dir) or "b")
    cfg = cfg_factory("model.pretrained=null")  # the base warm-started on the fly
    builders.resolve_model_path(cfg, SyntheticCorpus(tmp_path / "c", **corpus_settings), None)
    default = SyntheticCorpus(tmp_path / "c")
    assert (used[0].name == default.dir.name) == same_as_default  # the corpus's fingerprint: its settings


@pytest.mark.parametrize("strategy, stage", [
    ("auto", None),                     # Lightning's choice: no DeepSpeed
    ("ddp", None),                      # DDPStrategy: no DeepSpeed
    ("deepspeed_zero2", 2),             # read from conf/deepspeed/zero2.json
    ("deepspeed_zero3", 3),             # read from conf/deepspeed/zero3.json
    ("deepspeed_zero3_offload", 3),     # the offload variant is stage 3 too
])
def test_the_zero_stage_is_read_from_the_strategy_config_not_its_name(cfg_factory, strategy, stage):
    from emorl.builders import check_strategy, deepspeed_stage, grpo_settings

    cfg = cfg_factory(f"strategy={strategy}", "algo.grpo.prompts_per_step=2", "algo.grpo.num_generations=3",
                      "algo.grpo.micro_batch_size=6")  # one backward pass per step, as DeepSpeed needs
    assert deepspeed_stage(cfg) == stage
    if stage == 3:  # the weights are sharded: exporting them is refused before any model is built
        with pytest.raises(ValueError, match="shards the weights over the processes"):
            check_strategy(cfg, grpo_settings(cfg))
    else:
        check_strategy(cfg, grpo_settings(cfg))


def test_grpo_settings_default_to_what_the_grpo_config_file_states():
    # GRPOConfig built in code (TRL users, tests) trains as python -m emorl.train does: one set of defaults
    import dataclasses

    from emorl.modules.grpo import GRPOConfig

    stated = OmegaConf.to_container(OmegaConf.load(Path(CONF_DIR) / "algo" / "grpo.yaml").grpo)
    assert stated == dataclasses.asdict(GRPOConfig())


@pytest.mark.parametrize("name", ["ir", "eur", "esr"])
def test_a_reasoning_config_builds_the_strategy_get_strategy_builds(name):
    # conf/reasoning/<name>.yaml states the strategy's fields for the reader; emorl.prompts.DEFAULT_STRATEGIES is
    # what code without a config (TRL users, the pretraining mixture, the benchmark) gets: the two must not drift
    from emorl.prompts import get_strategy

    assert instantiate(OmegaConf.load(Path(CONF_DIR) / "reasoning" / f"{name}.yaml")) == get_strategy(name)
