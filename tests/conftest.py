"""Shared fixtures: the real config, composed once and shrunk to seconds on CPU."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from emorl import CONF_DIR as _CONF_DIR

CONF_DIR = str(_CONF_DIR)

# Small enough for seconds, large enough that every split has every class.
SMALL_CORPUS = [
    "dataset.corpus.train_per_class=6",
    "dataset.corpus.val_per_class=2",
    "dataset.corpus.test_per_class=2",
]
SMALL = [
    *SMALL_CORPUS,
    "++model.warm_start.steps=2",
    "++model.warm_start.batch_size=4",
    "++model.warm_start.pretrain.train_per_class=2",
    "algo.grpo.prompts_per_step=2",
    "algo.grpo.num_generations=3",
    "algo.grpo.micro_batch_size=3",
    "algo.grpo.max_new_tokens=12",
    "data.eval_batch_size=8",
    "trainer.max_steps=2",
    "trainer.val_check_interval=2",
    "logger=csv",
]


def pytest_collection_modifyitems(config, items):
    """Tests marked ``gpu`` run where CUDA exists and are skipped elsewhere."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    torch.set_num_threads(1)
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """One cache (corpus + embedded model) for the whole session."""
    return tmp_path_factory.mktemp("cache")


def compose(overrides: list[str], cache: Path, out: Path, config_name: str = "train"):
    """The real config with the SMALL settings (the synthetic corpus's unless another dataset is chosen)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    other_dataset = any(o.startswith("dataset=") and o != "dataset=synthetic" for o in overrides)
    sft = any(o in ("algo=sft", "algo=prosody_sft", "algo=zero_shot", "algo=linear_probe")
              or o.startswith(("experiment=sft", "experiment=zero_shot", "experiment=frozen_encoder"))
              for o in overrides)  # no algo.grpo node
    small = [o for o in SMALL if not (other_dataset and o in SMALL_CORPUS) and not (sft and o.startswith("algo.grpo"))]
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return hydra_compose(
            config_name=config_name,
            overrides=[*small, f"paths.cache_dir={cache}", f"paths.output_dir={out}", *overrides],
        )


@pytest.fixture
def cfg_factory(cache_dir, tmp_path):
    return lambda *overrides: compose(list(overrides), cache_dir, tmp_path / "run")


@pytest.fixture(scope="session")
def small_corpus(cache_dir):
    from emorl.data.synthetic import SyntheticCorpus

    return SyntheticCorpus(cache_dir / "synthetic", train_per_class=6, val_per_class=2, test_per_class=2)


def embedded_base(cache_dir: Path, corpus, **build) -> Path:
    """An embedded base with a 2-step warm start (the tests' size), built once per cache."""
    from emorl.models.embedded import prepare_embedded_base
    from emorl.prompts import get_strategy

    return prepare_embedded_base(
        cache_dir,
        corpus,
        get_strategy("esr"),
        seed=0,
        build={"vocab_size": 512, "chunk_length": 4, **build},
        warm_start_settings={"steps": 2, "batch_size": 4, "lr": 1e-3},
    )


@pytest.fixture(scope="session")
def tiny_base(cache_dir, small_corpus) -> Path:
    """The embedded base (tiny Qwen2-Audio, a 2-step warm start), built once per session."""
    return embedded_base(cache_dir, small_corpus)


@pytest.fixture(scope="session")
def tiny_omni_base(cache_dir, small_corpus) -> Path:
    """The embedded base with a tiny Qwen2.5-Omni (saved as Qwen2.5-Omni-7B is laid out), built once per session."""
    return embedded_base(cache_dir, small_corpus, architecture="qwen2_5_omni")


@pytest.fixture
def tiny(tiny_base):
    """A fresh (model, processor) loaded from the cached base."""
    from emorl.models.loading import load_backbone

    return load_backbone(tiny_base)


@pytest.fixture
def esr_batch(tiny, small_corpus):
    """A collated batch of 3 ESR emotion questions from the test split."""
    from emorl.data.batching import Collator, EmotionQuestions
    from emorl.prompts import get_strategy

    _, processor = tiny
    ds = EmotionQuestions(small_corpus.items("test")[:3], get_strategy("esr"), small_corpus.labels)
    return Collator(processor)([ds[i] for i in range(3)])


ESR_SECTIONS = {"transcript": "I lost it", "keywords": "lost", "prosody": "pitch low, speed slow", "synthesis": "sad words, low voice"}


@pytest.fixture(scope="session")
def esr_ckpt(tiny_base, tmp_path_factory) -> Path:
    """The tiny base taught one ESR answer to predict's question (IEMOCAP's labels), exported as emorl exports."""
    import json

    import numpy as np

    from emorl.data.batching import Collator, Example
    from emorl.emotions import label_set
    from emorl.models.loading import load_backbone
    from emorl.prompts import get_strategy

    torch.manual_seed(0)
    model, processor = load_backbone(tiny_base)
    esr, labels = get_strategy("esr"), label_set("iemocap4")
    target = esr.render(answer="sad", sections=ESR_SECTIONS)
    rng = np.random.default_rng(0)
    t = [np.arange(int(16000 * seconds)) / 16000 for seconds in (0.3, 0.5, 1.0, 2.0)]
    clips = [0.3 * np.sin(2 * np.pi * 220.0 * x) for x in t] + [0.1 * rng.standard_normal(x.size) for x in t]
    batch = Collator(processor)([Example(audio=c.astype(np.float32), text=esr.prompt(labels), target=target) for c in clips])
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "input_features", "feature_attention_mask", "labels")}
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(120):
        loss = model(**inputs).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    assert loss.item() < 0.05, f"the ESR answer was not learnt (loss {loss.item():.3f})"
    out = tmp_path_factory.mktemp("esr") / "model"
    model.save_pretrained(out)
    processor.save_pretrained(out)
    (out / "emorl.json").write_text(json.dumps({"labels": list(labels), "reasoning": "esr"}))
    return out


def pretrain_config(cache: Path, *overrides: str):
    """``conf/pretrain.yaml`` with corpora of a few clips per class, cached in ``cache``."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    small = ("dataset.corpus.train_per_class=2", "dataset.corpus.val_per_class=1", "dataset.corpus.test_per_class=1",
             "pretrain.corpus.train_per_class=2", "pretrain.corpus.val_per_class=1")
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return hydra_compose(config_name="pretrain", overrides=[*small, f"paths.cache_dir={cache}", *overrides])
