"""Checking a split's items before any training: labels in the set, audio readable, durations recorded."""

from __future__ import annotations

from emorl.data.audio import SAMPLE_RATE, AudioError, load_audio
from emorl.data.corpus import Item, SkipReport


def check_items(
    items: list[Item], labels, split: str, report: SkipReport | None = None, audio: bool = True,
    seconds: dict[str, float] | None = None,
) -> list[Item]:
    """The usable items of a split: a foreign label or unusable audio stops the run, or is skipped and counted.

    Reads every file once (``audio=True``), so that a broken corpus fails before training, and
    records each clip's duration in ``seconds`` (path -> s) when given.  An empty split always
    fails: nothing would be trained or measured.
    """
    report = report or SkipReport("error")
    allowed = set(labels)
    kept = []
    for item in items:
        if item.label not in allowed:
            report.bad(item.path, f"label {item.label!r} is not in the label set {list(labels)}", split)
            continue
        if audio:
            try:
                wav = load_audio(item.path)
            except AudioError as err:
                report.bad(item.path, str(err).removeprefix(f"{item.path}: "), split)
                continue
            if seconds is not None:
                seconds[item.path] = len(wav) / SAMPLE_RATE
        kept.append(item)
    if not kept:
        raise ValueError(f"the {split} split is empty; check dataset settings and the corpus root")
    return kept
