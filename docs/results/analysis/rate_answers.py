"""How well a base says a clip's speaking rate: the rate question of the pretraining mixture, asked of a split's clips.

    python docs/results/analysis/rate_answers.py --model outputs/pretrain/<run>/model --cache .cache --split test

Asks every clip of the default corpus's split ``pretrain.tasks.rate``'s question (greedy, IR's answer block) and
prints the share of answers that are a number, their correlation with the measured log syllable rate (the shipped
base's frozen tower holds it at 0.80 by ``speed_probe.py``), the mean absolute error in syllables per second, and how
often the answered rate, placed among the training split's measured rates or among the clip's speaker's, names the
level faithfulness scores (the speaker level of the measured rate).  A second estimate of each clip's rate, the
transcript's syllables (vowel groups) over the clip's length, tells how far the measure itself is noisy: it prints
the correlation of the measured rate and of the answers with it.  A base never trained on the question answers
no number: the figures are for bases built with ``pretrain.tasks.rate`` > 0.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from emorl.acoustics import LEVEL_NAMES, ProsodyNorms, level_of, measure_items, prosody_cache, tertiles
from emorl.data.synthetic import SyntheticCorpus


def rate_of(answer: str | None) -> float | None:
    """The number an answer block holds, None when it holds anything else.

    >>> rate_of(" 4.5 "), rate_of("fast"), rate_of(None), rate_of("nan")
    (4.5, None, None, None)
    """
    try:
        value = float((answer or "").strip())
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def text_syllables(text: str) -> int:
    """Syllables of a sentence by vowel groups per word (a silent final e dropped; at least one a word): a rough
    count, one too many for a final -ly or -ed ("lonely", "outraged": 8 and 2 by ear).

    >>> text_syllables("the letter was lonely today"), text_syllables("outraged")
    (9, 3)
    """
    count = 0
    for word in text.lower().split():
        groups = len(re.findall(r"[aeiouy]+", word))
        silent = groups > 1 and word.endswith("e") and not word.endswith(("le", "ee"))
        count += max(1, groups - silent)
    return count


def log_correlation(a: Sequence[float], b: Sequence[float]) -> float:
    """Pearson correlation of the logs of two positive series (rates are compared as ratios)."""
    return float(np.corrcoef(np.log(a), np.log(b))[0, 1])


def rate_figures(answered: Sequence[float | None], measured: Sequence[float]) -> dict[str, float]:
    """``numbers`` (share of answers that are a positive number), and over those: ``correlation`` of the logs,
    ``mae`` (syllables per second)."""
    pairs = [(a, m) for a, m in zip(answered, measured, strict=True) if a is not None and a > 0]
    out = {"numbers": len(pairs) / len(answered)}
    if len(pairs) >= 2:
        a, m = np.asarray(pairs).T
        out["correlation"] = log_correlation(a, m)
        out["mae"] = float(np.mean(np.abs(a - m)))
    return out


def ask(model, processor, paths: Sequence[str], batch: int = 32) -> list[str | None]:
    """The answer block of the greedy answer to the rate question for each clip."""
    from emorl import rollout
    from emorl.data.audio import load_audio
    from emorl.data.batching import Collator, Example
    from emorl.models.loading import end_token_ids, suppressed_token_ids
    from emorl.pretraining.tasks import RATE_QUESTION
    from emorl.prompts import free_answer_prompt, get_strategy

    collate, ir, out = Collator(processor), get_strategy("ir"), []
    text = free_answer_prompt(RATE_QUESTION)
    for start in range(0, len(paths), batch):
        examples = [Example(audio=load_audio(p), text=text) for p in paths[start:start + batch]]
        ro = rollout.sample(model, processor, collate(examples), num_generations=1, max_new_tokens=12, do_sample=False,
                            suppress_ids=suppressed_token_ids(processor), end_ids=end_token_ids(model, processor))
        out += [ir.extract_answer(t) for t in ro.texts]
    return out


def main() -> None:
    from emorl.models.loading import load_backbone

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--cache", default=".cache")
    parser.add_argument("--split", default="test")
    args = parser.parse_args()
    torch.set_num_threads(1)
    corpus = SyntheticCorpus(Path(args.cache).resolve() / "synthetic")  # measurements are keyed by absolute paths
    items, train = corpus.items(args.split), corpus.items("train")
    measured = measure_items([*items, *train], prosody_cache(Path(args.cache).resolve(), corpus), workers=2)
    model, processor = load_backbone(args.model)
    answers = [rate_of(a) for a in ask(model, processor, [i.path for i in items])]
    rates = [measured[i.path]["syllables_per_s"] for i in items]
    figures = rate_figures(answers, rates)
    print(f"{args.model}: the rate question on {len(items)} {args.split} clips")
    print(f"  numbers {100 * figures['numbers']:.1f}%; correlation with the measured rate (logs) "
          f"{figures.get('correlation', float('nan')):.3f}; mean absolute error {figures.get('mae', float('nan')):.2f} "
          "syllables/s")
    text_rates = [text_syllables(i.transcript) / i.meta["seconds"] for i in items]
    answered = [k for k, a in enumerate(answers) if a is not None and a > 0]
    print(f"  the transcript's syllables per second of clip: correlation (logs) with the measured rate "
          f"{log_correlation(rates, text_rates):.3f}, with the answers "
          f"{log_correlation([answers[k] for k in answered], [text_rates[k] for k in answered]):.3f}")
    names = LEVEL_NAMES["speed"]
    own = ProsodyNorms.fit([measured[i.path] for i in items], [i.speaker for i in items])
    corpus_cuts = tertiles(measured[i.path]["syllables_per_s"] for i in train)
    hits = {"training split": [], "speaker": []}
    for item, answer in zip(items, answers, strict=True):
        target = own.levels(measured[item.path], item.speaker).get("speed")
        if answer is None or target is None:
            continue
        speaker_cuts = own.speakers.get(item.speaker, {}).get("speed", own.corpus["speed"])
        hits["training split"].append(level_of(answer, corpus_cuts, names) == target)
        hits["speaker"].append(level_of(answer, speaker_cuts, names) == target)
    for frame, h in hits.items():
        if h:
            print(f"  answered rate placed among the {frame}'s clips = speaker level {100 * np.mean(h):.1f}% ({len(h)} clips)")


if __name__ == "__main__":
    main()
