"""How well a model reads each prosodic attribute when asked it directly, in the embedded base's pretraining wording.

    python docs/results/analysis/attribute_answers.py emorl/assets/embedded_base [--cache-dir .cache] \
        --split test [--every 3]

For each clip of the split (every ``--every``-th), greedy answers to the pretraining's attribute questions
(pitch, speed, volume, intonation; IR format, options low to high) and to its description question
("how was it said"), scored against the clip's measured, speaker-relative levels (``emorl.acoustics``,
norms fitted on the clips asked, measurements cached in ``<cache>/prosody/analysis-<split>.json``), on the
default synthetic corpus of ``--cache-dir`` (generated there by any emorl command, or now).
Prints the share right per attribute for both questions, and the speed answers against the measured speed.
"""

from __future__ import annotations

import argparse
from collections import Counter, defaultdict
from pathlib import Path

import torch

from emorl import rollout
from emorl.acoustics import LEVEL_NAMES, ProsodyNorms, measure_items
from emorl.data.audio import load_audio
from emorl.data.batching import Collator, Example
from emorl.data.prosody_tasks import ATTRIBUTE_QUESTIONS
from emorl.data.synthetic import SyntheticCorpus
from emorl.models.loading import end_token_ids, load_backbone, suppressed_token_ids
from emorl.pretraining.tasks import DESCRIBE_QUESTION
from emorl.prompts import free_answer_prompt, get_strategy
from emorl.rewards.grounding import prosody_claims


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="a model folder (from_pretrained)")
    parser.add_argument("--cache-dir", default=".cache", help="emorl's cache folder (the synthetic corpus lives there)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--every", type=int, default=1, help="ask every n-th clip")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    torch.set_num_threads(1)
    corpus = SyntheticCorpus(Path(args.cache_dir) / "synthetic")
    items = corpus.items(args.split)[:: args.every]
    measured = measure_items(items, Path(args.cache_dir) / "prosody" / f"analysis-{corpus.dir.name}-{args.split}.json")
    norms = ProsodyNorms.fit([measured[i.path] for i in items], [i.speaker for i in items])
    levels = {i.path: norms.levels(measured[i.path], i.speaker) for i in items}
    model, processor = load_backbone(args.model)
    model.eval()
    ir, collate = get_strategy("ir"), Collator(processor)
    asked = []
    for item in items:
        wav = load_audio(item.path)
        for attribute, question in ATTRIBUTE_QUESTIONS.items():
            asked.append((item, attribute, Example(audio=wav, text=ir.prompt(list(LEVEL_NAMES[attribute]), question=question))))
        asked.append((item, "describe", Example(audio=wav, text=free_answer_prompt(DESCRIBE_QUESTION))))
    right: dict[str, list[bool]] = defaultdict(list)
    speed = Counter()
    for start in range(0, len(asked), args.batch_size):
        chunk = asked[start : start + args.batch_size]
        out = rollout.sample(model, processor, collate([e for _, _, e in chunk]), num_generations=1, max_new_tokens=40,
                             do_sample=False, suppress_ids=suppressed_token_ids(processor),
                             end_ids=end_token_ids(model, processor))
        for (item, attribute, _), text in zip(chunk, out.texts, strict=True):
            truth = levels[item.path]
            answer = ir.extract_answer(text)
            if attribute == "describe":
                for name, level in prosody_claims(answer or text).items():
                    if name in truth:
                        right[f"describe/{name}"].append(level == truth[name])
            elif attribute in truth:
                right[f"attribute/{attribute}"].append(answer == truth[attribute])
                if attribute == "speed":
                    speed[(truth["speed"], str(answer))] += 1
    print(f"{args.model} on {len(items)} {args.split} clips: share right against the measured levels")
    for key in sorted(right):
        print(f"  {key:22s} {sum(right[key]) / len(right[key]):.3f}  ({len(right[key])} answers)")
    print("  speed, measured -> answered: " + ", ".join(f"{m} -> {a}: {n}" for (m, a), n in sorted(speed.items())))


if __name__ == "__main__":
    main()
