"""The embedded default model: tiny Qwen2-Audio (or Qwen2.5-Omni), warm-started, cached by its settings.

``prepare_embedded_base`` returns a directory that ``load_backbone`` (``from_pretrained``)
loads, exactly as it loads ``Qwen/Qwen2-Audio-7B-Instruct``.  It is built once per setting and
seed and found in the cache afterwards.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

from emorl.data.corpus import fingerprint
from emorl.models.loading import load_backbone
from emorl.models.tiny import build_tiny_backbone
from emorl.models.warmstart import RECIPE_VERSION, tokenizer_corpus, warm_start
from emorl.prompts import DEFAULT_STRATEGIES, ReasoningStrategy, get_strategy

log = logging.getLogger(__name__)


def warm_start_strategies(configured: ReasoningStrategy) -> list[ReasoningStrategy]:
    """IR, EUR and ESR with default tags, the configured strategy replacing its namesake."""
    return [configured if name == configured.name else get_strategy(name) for name in DEFAULT_STRATEGIES]


def prepare_embedded_base(
    cache_dir: str | os.PathLike,
    corpus,
    strategy: ReasoningStrategy,
    *,
    seed: int,
    build: dict,
    warm_start_settings: dict,
) -> Path:
    """Build (or find) the warm-started tiny model for ``corpus`` and ``seed``; return its directory.

    ``warm_start_settings`` may name a pretraining corpus (``pretrain``: settings of a
    :class:`~emorl.data.synthetic.SyntheticCorpus`, generated next to ``corpus``) whose clips the
    warm start asks emotion questions about (``emotion_share`` of each batch).
    """
    strategies = warm_start_strategies(strategy)
    settings = dict(warm_start_settings)
    pretrain = settings.pop("pretrain", None)
    emotion_corpus = None
    if pretrain:
        from emorl.data.synthetic import SyntheticCorpus

        emotion_corpus = SyntheticCorpus(Path(cache_dir) / "synthetic", **pretrain)
    key = fingerprint(
        {
            # the corpora by their content's fingerprint (their folder's name), never by where the cache lies
            "corpus": Path(str(getattr(corpus, "dir", corpus.name))).name,
            "pretrain": Path(str(emotion_corpus.dir)).name if emotion_corpus else None,
            "build": build,
            "warm_start": warm_start_settings,
            "strategies": [repr(s) for s in strategies],
            "seed": seed,
            "recipe": RECIPE_VERSION,
        }
    )
    architecture = build.get("architecture", "qwen2_audio")
    out = Path(cache_dir) / ("tiny-qwen2-audio" if architecture == "qwen2_audio" else f"tiny-{architecture}") / key
    if (out / "done").exists():
        log.info("embedded base model found in the cache: %s", out)
        return out
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    items = corpus.items("train")
    emotion_items = emotion_corpus.items("train") if emotion_corpus else []
    log.info("building the tiny %s into %s", architecture, out)
    texts = tokenizer_corpus(items, strategies, corpus.labels, seed, emotion_items=emotion_items)
    build_tiny_backbone(tmp / "init", texts, seed=seed, **build)
    model, processor = load_backbone(tmp / "init")
    # the other questions are about both corpora, so that no kind of question is tied to one corpus's sentences
    summary = warm_start(model, processor, [*items, *emotion_items], strategies, seed=seed, emotion_items=emotion_items,
                         **settings)
    if architecture == "qwen2_5_omni":  # laid out as Qwen2.5-Omni-7B: loaded as the 7B model is
        from emorl.models.tiny import save_omni_checkpoint

        save_omni_checkpoint(model, tmp)
    else:
        model.save_pretrained(tmp)
    processor.save_pretrained(tmp)
    shutil.rmtree(tmp / "init")
    (tmp / "warm_start.json").write_text(json.dumps(summary, indent=2))
    (tmp / "done").write_text("ok\n")
    try:
        tmp.rename(out)
    except OSError:  # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("embedded base ready: %s (%s)", out, summary)
    return out
