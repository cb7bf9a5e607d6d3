"""Emotion and reasoning for audio files: ``python -m emorl.predict clip.wav ckpt=<run dir> [--json]``.

Arguments with ``=`` are config overrides (as for ``emorl.train``) unless they name an existing
file; everything after ``--`` is an audio file; ``--json`` prints one JSON object per clip; every
other argument is an audio file (WAV, FLAC, MP3, MP4/M4A, ... at any rate and channel count).  The
options offered are the checkpoint's labels (``labels=`` to change), listed in their canonical
order; answers are greedy.

A clip longer than the model's audio window (4 s for the embedded default, 30 s for Qwen2-Audio)
is heard in part: ``long_clips=first`` (the default) answers from its first window and says so
in every output form; ``long_clips=windows`` answers every window and reports the most frequent
answer with the answer of each window.
"""

from __future__ import annotations

import json
import logging
import sys
from collections import Counter
from pathlib import Path

from emorl import CONF_DIR

log = logging.getLogger(__name__)

USAGE = ("usage: python -m emorl.predict CLIP [CLIP ...] ckpt=<run dir or model dir> [labels=...] [reasoning=...] "
         "[long_clips=first|windows] [--json] [-- CLIP ...]")
LONG_CLIPS = ("first", "windows")


def split_argv(argv: list[str]) -> tuple[list[str], list[str], bool]:
    """``(clips, overrides, as_json)`` from the command line: an existing file is a clip even with ``=`` in its
    name, and so is every argument after ``--``.

    >>> split_argv(["a.wav", "ckpt=run", "--json", "b.mp3", "--", "c=1.wav"])
    (['a.wav', 'b.mp3', 'c=1.wav'], ['ckpt=run'], True)
    """
    after = argv.index("--") if "--" in argv else len(argv)
    head, tail = argv[:after], argv[after + 1 :]
    flags = [a for a in head if a.startswith("--")]
    unknown = [f for f in flags if f != "--json"]
    if unknown:
        raise SystemExit(f"unknown option {unknown[0]}\n{USAGE}")
    is_clip = lambda a: not a.startswith("--") and ("=" not in a or Path(a).is_file())
    overrides = [a for a in head if not a.startswith("--") and not is_clip(a)]
    clips = [a for a in head if is_clip(a)] + tail
    return clips, overrides, "--json" in flags


def windows(wav, window: int, least: int) -> list[tuple[int, int]]:
    """``(start, end)`` sample ranges of consecutive windows of ``window`` samples; a last piece shorter than
    ``least`` joins no window of its own.

    >>> windows(list(range(10)), 4, 2), windows(list(range(9)), 4, 2)
    ([(0, 4), (4, 8), (8, 10)], [(0, 4), (4, 8)])
    """
    out = [(s, min(s + window, len(wav))) for s in range(0, len(wav), window)]
    return [w for w in out if w[1] - w[0] >= least or w[0] == 0]


def vote(answers: list[str | None]) -> tuple[str | None, float]:
    """The most frequent parsed answer (the earliest on a tie) and its share of the windows.

    >>> vote(["joy", None, "anger", "joy"]), vote([None, None])
    (('joy', 0.5), (None, 0.0))
    """
    counts = Counter(a for a in answers if a is not None)
    if not counts:
        return None, 0.0
    top = max(counts.values())
    best = next(a for a in answers if a is not None and counts[a] == top)
    return best, top / len(answers)


def predict(cfg, clips: list[str]) -> list[dict]:
    """``{path, emotion, reasoning, response, seconds, heard_seconds[, note, windows]}`` per clip
    (``emotion`` None when the answer is unparsable)."""
    from emorl.builders import (
        build_module,
        check_run_settings,
        checkpoint_strategy,
        load_checkpoint,
        model_dir,
        use_threads,
    )
    from emorl.checkpointing import read_model_info
    from emorl.data.audio import SAMPLE_RATE, load_audio
    from emorl.data.batching import Collator, Example
    from emorl.emotions import label_set

    check_run_settings(cfg, training=False)
    mode = cfg.get("long_clips", "first")
    if mode not in LONG_CLIPS:
        raise ValueError(f"long_clips={mode!r} is not one of {', '.join(LONG_CLIPS)}")
    use_threads(cfg)
    info = read_model_info(model_dir(cfg.ckpt))
    strategy = checkpoint_strategy(cfg, info)
    labels = cfg.get("labels") or info.get("labels")
    if not labels:
        raise ValueError(f"ckpt={cfg.ckpt} does not record its labels; give them: labels=meld or labels=[a,b,c]")
    labels = label_set(labels) if isinstance(labels, str) else tuple(str(x) for x in labels)
    audio = [load_audio(p) for p in clips]  # every file is read before the model loads: a bad one fails now
    model, processor = load_checkpoint(cfg.ckpt, cfg.model.dtype)
    model.eval()
    window = int(processor.feature_extractor.n_samples)  # the audio window the model hears
    module = build_module(cfg, model, processor, strategy, labels, run_dir=None, train=False)
    collate = Collator(processor)
    pieces = []  # (clip index, start, end): the audio each prompt hears
    for i, wav in enumerate(audio):
        spans = windows(wav, window, SAMPLE_RATE) if mode == "windows" else [(0, min(len(wav), window))]
        pieces += [(i, a, b) for a, b in spans]
    answers = []
    for start in range(0, len(pieces), int(cfg.batch_size)):
        chunk = pieces[start : start + int(cfg.batch_size)]
        batch = collate([Example(audio=audio[i][a:b], text=strategy.prompt(labels), options=labels) for i, a, b in chunk])
        preds, texts = module.predict_labels(batch)
        answers += list(zip(preds, texts, strict=True))
    out = []
    for i, path in enumerate(clips):
        mine = [(p, ans) for p, ans in zip(pieces, answers, strict=True) if p[0] == i]
        seconds = round(len(audio[i]) / SAMPLE_RATE, 3)
        (_, a, b), (pred, text) = mine[0]
        result = {"path": path, "emotion": pred, "reasoning": strategy.reasoning_parts(text), "response": text,
                  "seconds": seconds, "heard_seconds": round((b - a) / SAMPLE_RATE, 3)}
        if mode == "windows" and len(mine) > 1:
            emotion, share = vote([p for _, (p, _) in mine])
            result.update(emotion=emotion, heard_seconds=seconds, windows=[
                {"start": round(a / SAMPLE_RATE, 3), "end": round(b / SAMPLE_RATE, 3), "emotion": p,
                 "reasoning": strategy.reasoning_parts(t)} for (_, a, b), (p, t) in mine],
                note=f"{len(mine)} windows of {window / SAMPLE_RATE:g} s; the most frequent answer ({100 * share:.0f}% "
                     "of the windows)")
        elif len(audio[i]) > window:
            result["note"] = (f"heard the first {window / SAMPLE_RATE:g} s of {seconds:g} s (the model's audio window); "
                              "long_clips=windows answers every window")
        out.append(result)
    return out


def render(result: dict) -> str:
    lines = [f"{result['path']}: {result['emotion'] or '(no valid answer)'}"]
    if result.get("note"):
        lines.append(f"  note: {result['note']}")
    for w in result.get("windows", []):
        lines.append(f"  {w['start']:g}-{w['end']:g} s: {w['emotion'] or '(no valid answer)'}")
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
