"""Emotion and reasoning for audio files: ``python -m emorl.predict clip.wav ckpt=<run dir> [--json]``.

Arguments with ``=`` are config overrides (as for ``emorl.train``); ``--json`` prints one JSON
object per clip; every other argument is an audio file (WAV, FLAC, MP3, MP4/M4A, ... at any
rate and channel count).  The options offered are the checkpoint's labels (``labels=`` to change),
listed in their canonical order; answers are greedy.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

from emorl import CONF_DIR

log = logging.getLogger(__name__)

USAGE = "usage: python -m emorl.predict CLIP [CLIP ...] ckpt=<run dir or model dir> [labels=...] [reasoning=...] [--json]"


def split_argv(argv: list[str]) -> tuple[list[str], list[str], bool]:
    """``(clips, overrides, as_json)`` from the command line.

    >>> split_argv(["a.wav", "ckpt=run", "--json", "b.mp3"])
    (['a.wav', 'b.mp3'], ['ckpt=run'], True)
    """
    flags = [a for a in argv if a.startswith("--")]
    unknown = [f for f in flags if f != "--json"]
    if unknown:
        raise SystemExit(f"unknown option {unknown[0]}\n{USAGE}")
    overrides = [a for a in argv if "=" in a and not a.startswith("--")]
    clips = [a for a in argv if "=" not in a and not a.startswith("--")]
    return clips, overrides, "--json" in flags


def predict(cfg, clips: list[str]) -> list[dict]:
    """``{path, emotion, reasoning, response}`` per clip (``emotion`` None when the answer is unparsable)."""
    import torch

    from emorl.builders import build_module, checkpoint_strategy, load_checkpoint, model_dir
    from emorl.checkpointing import read_model_info
    from emorl.data.audio import load_audio
    from emorl.data.batching import Collator, Example
    from emorl.emotions import label_set

    if cfg.num_threads:
        torch.set_num_threads(int(cfg.num_threads))
    info = read_model_info(model_dir(cfg.ckpt))
    strategy = checkpoint_strategy(cfg, info)
    labels = cfg.get("labels") or info.get("labels")
    if not labels:
        raise ValueError(f"ckpt={cfg.ckpt} does not record its labels; give them: labels=meld or labels=[a,b,c]")
    labels = label_set(labels) if isinstance(labels, str) else tuple(str(x) for x in labels)
    examples = [Example(audio=load_audio(p), text=strategy.prompt(labels), options=labels) for p in clips]  # fail early
    model, processor = load_checkpoint(cfg.ckpt, cfg.model.dtype)
    model.eval()
    module = build_module(cfg, model, processor, strategy, labels, run_dir=None, train=False)
    collate = Collator(processor)
    out = []
    for start in range(0, len(examples), int(cfg.batch_size)):
        chunk = examples[start : start + int(cfg.batch_size)]
        batch = collate(chunk)
        preds, texts = module.predict_labels(batch)
        for path, pred, text in zip(clips[start : start + len(chunk)], preds, texts, strict=True):
            out.append({"path": path, "emotion": pred, "reasoning": strategy.reasoning_parts(text), "response": text})
    return out


def render(result: dict) -> str:
    lines = [f"{result['path']}: {result['emotion'] or '(no valid answer)'}"]
    lines += [f"  {part}: {text}" for part, text in result["reasoning"].items()]
    if result["emotion"] is None:
        lines.append(f"  response: {result['response']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    from hydra import compose, initialize_config_dir

    clips, overrides, as_json = split_argv(sys.argv[1:] if argv is None else argv)
    if not clips:
        raise SystemExit(f"no audio file given\n{USAGE}")
    missing = [c for c in clips if not Path(c).is_file()]
    if missing:
        raise SystemExit(f"{missing[0]}: no such audio file\n{USAGE}")
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="predict", overrides=["paths.output_dir=.", *overrides])
    from omegaconf import OmegaConf

    if OmegaConf.is_missing(cfg, "ckpt") or cfg.ckpt is None:
        raise SystemExit(f"give the model: ckpt=<run dir or model dir>\n{USAGE}")
    results = predict(cfg, clips)
    for result in results:
        print(json.dumps(result) if as_json else render(result))
    return results


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    main()
