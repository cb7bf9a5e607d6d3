"""The composition root: configuration in, the objects of a run out.

Every entry point (``train``, ``evaluate``, ``predict``, ``bench``) builds its rewards, model and
LightningModule here, so that they never import each other and build the same things the same
way.  Variants are chosen by ``_target_`` in the config groups: the LightningModule by
``algo.module`` (GRPO, SFT), each reward component by its node in ``reward``.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import json
import logging
from pathlib import Path

from omegaconf import DictConfig, OmegaConf, open_dict

from emorl.data.sampling import ADAPTIVE_BALANCES, BALANCE

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- rewards
def reward_components(reward_cfg: DictConfig) -> dict[str, DictConfig]:
    """The component nodes of a ``reward`` config: every child with a ``_target_`` (null ones switched off),
    except ``combine`` (how the components make the total)."""
    return {
        str(name): node
        for name, node in reward_cfg.items()
        if isinstance(node, DictConfig) and "_target_" in node and name != "combine"
    }


def build_rewards(reward_cfg: DictConfig, strategy, labels):
    """The weighted reward components of ``reward_cfg`` (EMO-RL eq. 4: format + accuracy).

    Each component node names a factory by ``_target_``; the factory is called with the node's
    other fields and ``labels=``, ``strategy=`` and returns a reward function in TRL's
    convention.  ``weight`` (default 1) scales the component in the total.  Building checks the
    settings (gamma, schedule names, rules), so this runs before any model is loaded.
    """
    from hydra.utils import instantiate

    from emorl.rewards.combine import RewardSet

    components = reward_components(reward_cfg)
    if not components:
        raise ValueError(
            f"reward={reward_cfg.get('name')} has no component (a node with _target_): GRPO needs at least one"
        )
    functions, weights = {}, {}
    for name, node in components.items():
        settings = OmegaConf.to_container(node, resolve=True)
        weights[name] = float(settings.pop("weight", 1.0))
        factory = instantiate(settings, _partial_=True)
        accepted = inspect.signature(factory.func).parameters
        unknown = [k for k in factory.keywords if k not in accepted]
        if unknown and not any(p.kind == p.VAR_KEYWORD for p in accepted.values()):
            raise ValueError(
                f"reward.{name} has no setting {', '.join(unknown)} (added with '+'?); {settings['_target_']} takes: "
                f"{', '.join(k for k in accepted if k not in ('labels', 'strategy'))}"
            )
        try:
            functions[name] = factory(labels=list(labels), strategy=strategy)
        except ValueError as error:
            raise ValueError(f"reward.{name}: {error}") from None
    combine = reward_cfg.get("combine")
    if combine is not None:  # e.g. GRPO-PTR: the reasoning term weighed by each group's trust
        return instantiate(combine)(functions, weights)
    return RewardSet(functions, weights)


# --------------------------------------------------------------------------- checks
def grpo_settings(cfg: DictConfig):
    """The checked :class:`~emorl.modules.grpo.GRPOConfig` of ``algo.grpo``, or None for an algo without one."""
    from emorl.modules.grpo import GRPOConfig

    node = cfg.algo.get("grpo")
    if node is None:
        return None
    settings = OmegaConf.to_container(node, resolve=True)
    known = {f.name for f in dataclasses.fields(GRPOConfig)}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise ValueError(
            f"algo.grpo has no setting {', '.join(unknown)} (added with '+'?); drop it, or pick one of: {', '.join(sorted(known))}"
        )
    for field in dataclasses.fields(GRPOConfig):
        if field.name in settings:
            check_type(f"algo.grpo.{field.name}", settings[field.name], field.type)
    return GRPOConfig(**settings)


def check_type(key: str, value, kind) -> None:
    """Refuse a setting of the wrong type, naming it: ``int`` takes whole numbers only (not ``6.0``, not ``six``),
    ``float`` takes any number, ``bool`` true or false.

    >>> check_type("algo.grpo.num_generations", 6.0, "int")
    Traceback (most recent call last):
    ...
    ValueError: algo.grpo.num_generations=6.0: set a whole number
    """
    name = kind if isinstance(kind, str) else getattr(kind, "__name__", str(kind))
    is_bool = isinstance(value, bool)
    ok = {"int": isinstance(value, int) and not is_bool, "float": isinstance(value, (int, float)) and not is_bool,
          "bool": is_bool, "str": isinstance(value, str)}.get(name, True)
    if not ok:
        what = {"int": "a whole number", "float": "a number", "bool": "true or false", "str": "a name"}[name]
        raise ValueError(f"{key}={value!r}: set {what}")


#: Settings with a fixed set of values: key -> the values it takes.
CHOICES = {
    "checkpoint.select": ("best", "last"),
    "data.test_split": ("train", "val", "test", "all"),
    "model.dtype": ("float32", "bfloat16", "float16"),
    "data.balance": tuple(BALANCE),
}
#: Settings that are true or false.
SWITCHES = ("eval.base", "save_model", "data.shuffle_options", "data.check_audio")
#: Whole-number settings and the least value each takes.
WHOLE_NUMBERS = {"seed": 0, "num_threads": 0, "data.eval_batch_size": 1, "data.batch_size": 1, "data.num_workers": 0,
                 "model.seed": 0, "batch_size": 1}


def use_threads(cfg: DictConfig) -> None:
    """``num_threads``: torch's intra-op threads for this process (0: torch's default)."""
    import torch

    if cfg.get("num_threads"):
        torch.set_num_threads(int(cfg.num_threads))


def check_run_settings(cfg: DictConfig, training: bool = True) -> None:
    """Settings a run would misread or fail on late, refused in seconds, each by its full key.

    Runs before any corpus or model is touched (``emorl.train`` checks the corpus next, then builds
    the model).  Raises ``ValueError`` naming the key, the value and what to set.
    """
    scorers = OmegaConf.select(cfg, "reward.scorers")  # reward=ptr: the reasoning scorer is picked by name
    if scorers is not None and cfg.reward.get("scorer") not in scorers:
        raise ValueError(f"reward.scorer {cfg.reward.get('scorer')!r} is not one of {sorted(scorers)}")
    for key, allowed in CHOICES.items():
        value = OmegaConf.select(cfg, key)
        if value is not None and value not in allowed:
            raise ValueError(f"{key}={value!r} is not one of {', '.join(allowed)}")
    for key in SWITCHES:
        value = OmegaConf.select(cfg, key)
        if value is not None and not isinstance(value, bool):
            raise ValueError(f"{key}={value!r}: set true or false")
    for key, least in WHOLE_NUMBERS.items():
        value = OmegaConf.select(cfg, key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < least):
            raise ValueError(f"{key}={value!r}: set a whole number >= {least}")
    if OmegaConf.select(cfg, "data.balance") in ADAPTIVE_BALANCES and OmegaConf.select(cfg, "algo.supervised"):
        raise ValueError(f"data.balance={cfg.data.balance} weights the classes by the training answers GRPO samples; "
                         f"algo={OmegaConf.select(cfg, 'algo.name')} samples none: use data.balance=class or none")
    grpo = grpo_settings(cfg)  # types and ranges of algo.grpo, before any corpus or model
    if grpo is not None:
        from emorl import algos

        think = OmegaConf.select(cfg, "reasoning.think_tag")
        gold = {"algo.grpo.guidance": grpo.guidance} if algos.get_guidance(grpo.guidance) is not algos.guide_none else {}
        if grpo.sft_coef or grpo.sft_coef_end:
            gold["algo.grpo.sft_coef"] = grpo.sft_coef
        if grpo.buffer_every:
            gold["algo.grpo.buffer_every"] = grpo.buffer_every
        if gold and think and not OmegaConf.select(cfg, "data.prosody"):
            key, value = next(iter(gold.items()))
            raise ValueError(
                f"{key}={value} with reasoning={OmegaConf.select(cfg, 'reasoning.name')} writes gold reasoning from each "
                "clip's measured prosody: set data.prosody=true (or reasoning=ir)")
    if training:
        steps, epochs = OmegaConf.select(cfg, "trainer.max_steps"), OmegaConf.select(cfg, "trainer.max_epochs")
        whole = lambda v: isinstance(v, int) and not isinstance(v, bool)
        if not (whole(steps) and (steps >= 1 or (steps == -1 and whole(epochs) and epochs >= 1))):
            raise ValueError(
                f"trainer.max_steps={steps!r} with trainer.max_epochs={epochs!r} trains nothing or without end: set "
                "trainer.max_steps >= 1, or trainer.max_steps=-1 and trainer.max_epochs >= 1"
            )
        every = OmegaConf.select(cfg, "checkpoint.every_n_steps")
        if not isinstance(every, int) or isinstance(every, bool) or every < 0:
            raise ValueError(f"checkpoint.every_n_steps={every!r}: set a whole number of steps >= 0 (0: never)")
        interval = OmegaConf.select(cfg, "trainer.val_check_interval")
        if interval is not None and not (
            (isinstance(interval, int) and interval >= 1) or (isinstance(interval, float) and 0 < interval <= 1)
        ):
            raise ValueError(
                f"trainer.val_check_interval={interval!r} (algo.val_check_interval): set a number of steps >= 1, "
                "or a share of an epoch in (0, 1]"
            )
        check_optimizer(cfg)
    tokens = OmegaConf.select(cfg, "eval.max_new_tokens")
    if tokens is not None and (not isinstance(tokens, int) or tokens < 1):
        raise ValueError(f"eval.max_new_tokens={tokens!r}: set a whole number >= 1")


def check_optimizer(cfg: DictConfig) -> None:
    """Build ``optimizer`` on a stand-in parameter: a bad learning rate fails now, with its key."""
    import torch
    from hydra.utils import instantiate

    try:
        instantiate(cfg.optimizer)([torch.nn.Parameter(torch.zeros(1))])
    except (ValueError, TypeError) as error:
        raise ValueError(
            f"optimizer ({cfg.optimizer._target_}) refuses its settings: {error}. optimizer.lr={cfg.optimizer.get('lr')} "
            "comes from algo.lr (model.lr for GRPO): set a positive model.lr, or optimizer.<key> for the others"
        ) from error


def deepspeed_stage(cfg: DictConfig) -> int | None:
    """The ZeRO stage of the configured strategy (None: not DeepSpeed): read from its DeepSpeed config (a JSON
    file or a mapping with ``zero_optimization``) or its ``stage`` argument."""
    from hydra.utils import get_class
    from lightning.pytorch.strategies import DeepSpeedStrategy

    node = OmegaConf.select(cfg, "strategy.strategy")
    if not isinstance(node, DictConfig) or not issubclass(get_class(node._target_), DeepSpeedStrategy):
        return None
    config = node.get("config")
    if isinstance(config, str):
        config = json.loads(Path(config).read_text())
    elif config is not None:
        config = OmegaConf.to_container(config, resolve=True)
    if config and "zero_optimization" in config:
        return int(config["zero_optimization"].get("stage", 0))
    return int(node.get("stage", 2))  # DeepSpeedStrategy's own default


def check_strategy(cfg: DictConfig, algo) -> None:
    """Settings DeepSpeed cannot run (yet), refused before any model is loaded."""
    name = str(cfg.get("strategy", {}).get("name", "auto"))
    stage = deepspeed_stage(cfg)
    if stage is None:
        return
    if algo is not None and algo.micro_batch_size != algo.prompts_per_step * algo.num_generations:
        raise ValueError(
            f"strategy={name} runs one backward pass per step: set algo.grpo.micro_batch_size="
            f"{algo.prompts_per_step * algo.num_generations} (prompts_per_step x num_generations per process), and lower "
            "algo.grpo.prompts_per_step to fit memory; gradient accumulation over micro-batches under ZeRO is not verified"
        )
    if stage == 3 and cfg.save_model:
        raise ValueError(
            f"strategy={name} shards the weights over the processes and emorl cannot export them yet: "
            "set save_model=false (the checkpoints hold the run), or train with strategy=deepspeed_zero2"
        )


# --------------------------------------------------------------------------- models
def resolve_model_path(cfg: DictConfig, corpus, strategy) -> str:
    """The pretrained id/path, or the embedded tiny base (built and cached when missing).

    The embedded base is warm-started on the synthetic corpus, whose items carry the prosody and
    key-word annotations its warm-start questions need; with a real corpus or another synthetic
    style configured (``dataset=synthetic_heldout``), the default synthetic corpus is used for that,
    so that ``emorl.evaluate`` of the untuned base on another corpus scores the experiments' base.  Its seed is ``model.seed``, not the run's: one
    base serves every run seed, as one pretrained checkpoint does.
    """
    if cfg.model.pretrained:
        from emorl.pretraining.card import ASSET_DIR, verify

        if Path(str(cfg.model.pretrained)).resolve() == ASSET_DIR.resolve():
            verify(ASSET_DIR)  # the shipped base is the one its card describes, byte for byte
        return str(cfg.model.pretrained)
    from emorl.data.synthetic import SyntheticCorpus
    from emorl.models.embedded import prepare_embedded_base

    if not isinstance(corpus, SyntheticCorpus) or corpus.config.style != "default":
        # A real corpus, or another synthetic style (the held-out corpus, the pretraining corpus): the base
        # is the one the experiments start from, never one warm-started on the clips it is tested on.
        log.info("model=tiny with dataset=%s: the embedded base is the default synthetic corpus's",
                 getattr(corpus, "name", None) or getattr(getattr(corpus, "config", None), "style", "?"))
        corpus = SyntheticCorpus(Path(cfg.paths.cache_dir) / "synthetic")
    return str(
        prepare_embedded_base(
            cfg.paths.cache_dir,
            corpus,
            strategy,
            seed=int(cfg.model.seed),
            build=OmegaConf.to_container(cfg.model.build, resolve=True),
            warm_start_settings=OmegaConf.to_container(cfg.model.warm_start, resolve=True),
        )
    )


def trains(cfg: DictConfig) -> bool:
    """Whether the run trains (every algo but ``algo=zero_shot``, which sets ``algo.train: false``)."""
    return bool(cfg.algo.get("train", True))


def module_takes(cfg: DictConfig, argument: str) -> bool:
    """Whether the LightningModule of ``algo.module`` takes ``argument`` in its constructor."""
    from hydra.utils import get_class

    return argument in inspect.signature(get_class(cfg.algo.module._target_)).parameters


def needs_frozen_reference(cfg: DictConfig) -> bool:
    """Full fine-tuning with a KL penalty keeps a frozen copy of the starting model.

    With LoRA the reference is the policy with its adapters disabled: no second model.
    """
    beta = float(OmegaConf.select(cfg, "algo.grpo.beta", default=0.0) or 0.0)
    return module_takes(cfg, "reference") and not cfg.model.lora and beta > 0


def build_policy(cfg: DictConfig, base_path: str):
    """``(policy, processor, reference)`` as ``cfg.model`` asks: dtype, LoRA or full, gradient checkpointing.

    ``reference`` is a frozen copy of the starting model where :func:`needs_frozen_reference`,
    else None.
    """
    from emorl.models.loading import enable_gradient_checkpointing, load_backbone, wrap_for_training

    model, processor = load_backbone(base_path, cfg.model.dtype)
    lora = OmegaConf.to_container(cfg.model.lora, resolve=True) if cfg.model.lora else None
    reference = copy.deepcopy(model).eval().requires_grad_(False) if needs_frozen_reference(cfg) else None
    policy = wrap_for_training(model, lora, cfg.model.adapter)
    if cfg.model.get("gradient_checkpointing"):
        enable_gradient_checkpointing(policy)
    return policy, processor, reference


def module_arguments(cfg: DictConfig, policy, processor, strategy, labels, run_dir, train: bool = True) -> dict:
    """The constructor arguments every :class:`~emorl.modules.base.EmotionModule` takes (no optimizer without ``train``)."""
    from hydra.utils import instantiate

    from emorl.models.loading import end_token_ids, suppressed_token_ids

    return dict(
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


def build_module(cfg: DictConfig, policy, processor, strategy, labels, run_dir, *, reference=None, rewards=None,
                 train: bool = True):
    """The LightningModule of ``algo.module`` for ``policy`` (``train=False``: an evaluation-only module).

    The module's constructor names the run objects it needs beyond the common ones: ``rewards``
    (built from ``cfg.reward`` unless given) and ``reference``.
    """
    from hydra.utils import instantiate

    from emorl.modules.base import EmotionModule

    common = module_arguments(cfg, policy, processor, strategy, labels, run_dir, train=train)
    if not train:
        return EmotionModule(**common)
    factory = instantiate(cfg.algo.module)
    extra = {}
    if module_takes(cfg, "rewards"):
        extra["rewards"] = rewards if rewards is not None else build_rewards(cfg.reward, strategy, labels)
    if module_takes(cfg, "reference"):
        extra["reference"] = reference
    return factory(**common, **extra)


# --------------------------------------------------------------------------- saved models
def model_dir(ckpt: str | Path) -> Path:
    """The saved model directory of a run directory or of a model directory itself."""
    path = Path(ckpt)
    if (path / "model").is_dir():
        path = path / "model"
    if not path.is_dir():
        raise FileNotFoundError(f"ckpt={ckpt}: no such run or model directory")
    if not any((path / name).exists() for name in ("config.json", "adapter_config.json")):
        raise FileNotFoundError(
            f"ckpt={ckpt}: holds no model/ folder and no saved model. A run exports model/ when it ends: one that "
            "was stopped resumes with its own command; one run with save_model=false saved none"
        )
    return path


def load_checkpoint(ckpt: str | Path, dtype: str):
    """``(model, processor)`` from a run directory or a saved ``model/`` directory."""
    from emorl.models.loading import load_backbone

    path = model_dir(ckpt)
    adapter_config = path / "adapter_config.json"
    if adapter_config.exists():
        from peft import PeftModel

        base = json.loads(adapter_config.read_text())["base_model_name_or_path"]
        model, processor = load_backbone(base, dtype)
        return PeftModel.from_pretrained(model, str(path)), processor
    return load_backbone(path, dtype)


def checkpoint_strategy(cfg: DictConfig, info: dict):
    """The configured reasoning strategy, else the checkpoint's; an error when neither exists."""
    from hydra.utils import instantiate

    from emorl.prompts import get_strategy

    if cfg.get("reasoning") is not None:
        strategy = instantiate(cfg.reasoning)
        if info.get("reasoning") and info["reasoning"] != strategy.name:
            log.warning("the checkpoint was trained with reasoning=%s but is scored with reasoning=%s",
                        info["reasoning"], strategy.name)
        return strategy
    if info.get("reasoning_config"):
        return instantiate(info["reasoning_config"])
    if info.get("reasoning"):
        return get_strategy(info["reasoning"])
    raise ValueError(
        "choose the prompt: reasoning=ir (direct inference), reasoning=eur (CoT) or reasoning=esr; "
        "only checkpoints trained by emorl carry their own"
    )


# --------------------------------------------------------------------------- cross-corpus evaluation
def cross_corpus_configs(cfg: DictConfig, run_dir: Path) -> dict[str, DictConfig]:
    """``emorl.evaluate`` configs for each corpus of ``eval.cross_corpus``, checked before any work.

    Entries are dataset config names (``synthetic_heldout``) or mappings of a name and the
    dataset settings to change (``{name: iemocap, root: <folder>}`` for a corpus that needs its folder).  Each evaluates the run's exported model (the starting
    model for ``algo=zero_shot``) on every clip of that corpus (``data.test_split=all``), labels
    mapped as :func:`emorl.emotions.cross_corpus_mapping` maps them, into ``<run dir>/cross_corpus/<name>``.
    """
    from emorl import CONF_DIR

    entries = cfg.eval.get("cross_corpus") or []
    available = sorted(p.stem for p in (CONF_DIR / "dataset").glob("*.yaml"))
    out: dict[str, DictConfig] = {}
    for entry in entries:
        changes = {} if isinstance(entry, str) else OmegaConf.to_container(entry, resolve=True)
        name = entry if isinstance(entry, str) else changes.pop("name", None)
        if name not in available:
            raise ValueError(f"eval.cross_corpus: no dataset config {name!r}; choose from {', '.join(available)}")
        node = OmegaConf.merge(OmegaConf.load(CONF_DIR / "dataset" / f"{name}.yaml"), changes)
        evaluation = copy.deepcopy(cfg)
        with open_dict(evaluation):
            evaluation.dataset = node
            evaluation.ckpt = str(run_dir) if trains(cfg) else None
            evaluation.paths.output_dir = str(run_dir / "cross_corpus" / name)
            evaluation.data.test_split = "all"
            evaluation.eval.trained_labels = None  # the exported model's own labels (emorl.json)
            evaluation.eval.setdefault("faithfulness", "auto")
            evaluation.eval.prosody_tasks = False
            evaluation.eval.cross_corpus = []
            evaluation.logger = None
        try:
            OmegaConf.to_container(evaluation.dataset, resolve=True, throw_on_missing=True)
        except Exception as error:  # a real corpus without its folder
            raise ValueError(
                f"eval.cross_corpus: dataset {name!r} cannot be read as configured ({error}); give its folder as "
                f"{{name: {name}, root: <folder>}}"
            ) from None
        out[name] = evaluation
    if out and trains(cfg) and not cfg.save_model:
        raise ValueError("eval.cross_corpus evaluates the exported model: set save_model=true, or eval.cross_corpus=[]")
    return out


# --------------------------------------------------------------------------- loggers
def sweep_name() -> str | None:
    """The folder name of the Hydra sweep this job belongs to (None outside a ``--multirun``)."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        hydra_cfg = HydraConfig.get()
    except (ImportError, ValueError):
        return None
    return Path(hydra_cfg.sweep.dir).name if hydra_cfg.mode == RunMode.MULTIRUN else None


def run_tags(cfg: DictConfig) -> list[str]:
    """``axis:value`` tags of a run, one per axis a sweep varies (algo, reward, reasoning, dataset, seed)."""
    algo = cfg.algo.name
    tags = [f"algo:{algo}"]
    if OmegaConf.select(cfg, "reward.name") and algo == "grpo":
        tags.append(f"reward:{cfg.reward.name}")
    if OmegaConf.select(cfg, "reasoning.name"):
        tags.append(f"reasoning:{cfg.reasoning.name}")
    return [*tags, f"dataset:{cfg.dataset.name}", f"seed:{cfg.seed}"]


def build_loggers(cfg: DictConfig, job_type: str) -> list:
    """The loggers of ``cfg.logger``; W&B runs get the sweep as ``group``, axis tags and ``job_type``
    unless the config sets them."""
    from hydra.utils import get_class, instantiate
    from lightning.pytorch.loggers import WandbLogger

    loggers = []
    for node in (cfg.logger or {}).values():
        extra = {}
        if issubclass(get_class(node._target_), WandbLogger):
            extra = {"group": node.get("group") or sweep_name(), "tags": list(node.get("tags") or run_tags(cfg)),
                     "job_type": node.get("job_type") or job_type}
        loggers.append(instantiate(node, **extra))
    return loggers


def finish_loggers(loggers: list) -> None:
    """Close the W&B run (the next job of a sweep starts its own)."""
    from lightning.pytorch.loggers import WandbLogger

    if any(isinstance(lg, WandbLogger) for lg in loggers):
        import wandb

        wandb.finish()
