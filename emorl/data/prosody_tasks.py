"""A prosody warm start from measured prosody: EmotionThinker-Base's tasks for any corpus.

EmotionThinker trains its base on prosody before GRPO: attribute classification (is the pitch
low, medium or high?) and comparative prosody (which of two clips is higher, faster, louder?).
Here both come from :mod:`emorl.acoustics` measurements of the corpus's training clips, so a
user of a real corpus and a 7B model can run ``python -m emorl.train algo=prosody_sft`` before
GRPO, and no emotion label is ever a target.

* **attribute**: one clip, one attribute, its speaker-relative level among the three names.
* **comparison**: the clip and a partner whose raw measurement differs clearly (``MARGINS``:
  2 semitones of median pitch or of pitch range, 3 dB, a quarter faster); which one is
  higher / faster / louder / livelier.  A clip with no clear partner for the drawn attribute
  gets an attribute question instead (counted in :meth:`ProsodyQuestions.task_counts`).

Each index's task is fixed by ``seed`` (the same at every epoch, resumable like every batch order).
"""

from __future__ import annotations

import bisect
import math
import random
from collections import Counter
from collections.abc import Mapping, Sequence

import torch

from emorl.acoustics import LEVEL_NAMES, MEASURE_OF
from emorl.data.audio import load_audio
from emorl.data.batching import Example
from emorl.data.corpus import Item
from emorl.prompts import free_answer_prompt, get_strategy

#: One wording of the attribute questions for every user: the embedded base's pretraining mixture, this warm start
#: and ``eval.prosody_tasks`` (asked in other words, the shipped base answered none of them with an option).
ATTRIBUTE_QUESTIONS = {
    "pitch": "How high is the speaker's pitch? Options: {options}.",
    "speed": "How fast does the speaker talk? Options: {options}.",
    "volume": "How loud is the speaker's voice? Options: {options}.",
    "intonation": "How lively is the speaker's intonation? Options: {options}.",
}
COMPARISON_PROMPTS = {
    "pitch": "Two clips. In which one is the voice higher pitched?",
    "speed": "Two clips. In which one does the speaker talk faster?",
    "volume": "Two clips. In which one is the voice louder?",
    "intonation": "Two clips. In which one is the intonation livelier?",
}
ORDER = ("first", "second")
#: A difference a listener hears without doubt, per attribute (in :func:`contrast`'s units).
MARGINS = {"pitch": 2.0, "speed": math.log2(1.25), "volume": 3.0, "intonation": 2.0}


def scale(attribute: str, measurement: Mapping) -> float | None:
    """The clip's ``attribute`` on a scale where differences are heard evenly (None where unmeasured):
    pitch in semitones of median f0, speed in octaves of rate, volume in dB, intonation in
    semitones of pitch range.

    >>> scale("pitch", {"f0_median_hz": 200.0}) - scale("pitch", {"f0_median_hz": 100.0})
    12.0
    >>> scale("speed", {"syllables_per_s": 4.0}), scale("volume", {"energy_db": float("nan")})
    (2.0, None)
    """
    x = float(measurement[MEASURE_OF[attribute]])
    if not math.isfinite(x):
        return None
    if attribute in ("pitch", "speed"):
        if x <= 0:
            return None
        return 12.0 * math.log2(x) if attribute == "pitch" else math.log2(x)
    return x


def contrast(attribute: str, a: Mapping, b: Mapping) -> float | None:
    """How much more of ``attribute`` clip ``a`` has than clip ``b``, on :func:`scale` (None where unmeasured).

    >>> contrast("speed", {"syllables_per_s": 2.0}, {"syllables_per_s": 4.0}), contrast("volume", {"energy_db": -20.0}, {"energy_db": -26.0})
    (-1.0, 6.0)
    """
    x, y = scale(attribute, a), scale(attribute, b)
    return None if x is None or y is None else x - y


class ProsodyQuestions(torch.utils.data.Dataset):
    """Prosody questions (attribute and comparison) about ``items``, with their targets.

    Args:
        items: the training clips.
        levels: ``{path: levels}`` (speaker-relative, :meth:`emorl.acoustics.ProsodyNorms.levels`).
        measurements: ``{path: measure(...)}`` of the same clips.
        answer_tag: the reasoning strategy's answer tag.
        comparison_share: the share of indices drawn as comparisons.
        seed: fixes each index's task, attribute, partner and option order.
    """

    def __init__(self, items: Sequence[Item], levels: Mapping[str, Mapping[str, str]],
                 measurements: Mapping[str, Mapping], answer_tag: str = "answer", comparison_share: float = 0.5,
                 seed: int = 0) -> None:
        if not 0.0 <= comparison_share <= 1.0:
            raise ValueError(f"algo.comparison_share={comparison_share}: set a share in [0, 1]")
        missing = [i.path for i in items if i.path not in levels or i.path not in measurements]
        if missing:
            raise ValueError(f"{len(missing)} training clips have no measured prosody, e.g. {missing[0]}")
        self.items, self.levels, self.measurements = list(items), levels, measurements
        self.answer_tag, self.comparison_share, self.seed = answer_tag, comparison_share, seed
        self.sorted = {}  # attribute -> (values ascending, item indices): partners by binary search
        for attribute in COMPARISON_PROMPTS:
            pairs = sorted((v, i) for i, it in enumerate(self.items)
                           if (v := scale(attribute, measurements[it.path])) is not None)
            self.sorted[attribute] = ([v for v, _ in pairs], [i for _, i in pairs])

    def partner(self, attribute: str, index: int, rng: random.Random) -> int | None:
        """A clip whose ``attribute`` differs clearly from clip ``index``'s (either way), drawn by ``rng``."""
        mine = scale(attribute, self.measurements[self.items[index].path])
        if mine is None:
            return None
        values, order = self.sorted[attribute]
        below = bisect.bisect_right(values, mine - MARGINS[attribute])  # order[:below]: clearly less
        above = bisect.bisect_left(values, mine + MARGINS[attribute])  # order[above:]: clearly more
        n = below + len(values) - above
        if n == 0:
            return None
        k = rng.randrange(n)
        return order[k] if k < below else order[above + k - below]

    def __len__(self) -> int:
        return len(self.items)

    def task(self, index: int) -> dict:
        """What index ``index`` asks: ``{"kind", "attribute", "paths", "answer", "text", "target"}`` (no audio read)."""
        rng = random.Random(f"{self.seed}:{index}")
        item = self.items[index]
        if rng.random() < self.comparison_share:
            attribute = rng.choice(sorted(COMPARISON_PROMPTS))
            j = self.partner(attribute, index, rng)
            if j is not None:
                other = self.items[j]
                pair = [item, other] if rng.random() < 0.5 else [other, item]
                more = contrast(attribute, self.measurements[pair[0].path], self.measurements[pair[1].path]) > 0
                question = f"{COMPARISON_PROMPTS[attribute]} Options: first, second."
                return self._task("comparison", attribute, [p.path for p in pair], free_answer_prompt(question, self.answer_tag),
                                  ORDER[0] if more else ORDER[1])
        levels = self.levels[item.path]
        measured = sorted(a for a in ATTRIBUTE_QUESTIONS if a in levels)
        if not measured:
            raise ValueError(f"{item.path}: no prosodic attribute could be measured (no voiced frames?)")
        attribute = rng.choice(measured)
        options = list(LEVEL_NAMES[attribute])[:: 1 if rng.random() < 0.5 else -1]  # the levels' order, either way
        text = get_strategy("ir", answer_tag=self.answer_tag).prompt(options, question=ATTRIBUTE_QUESTIONS[attribute])
        return self._task("attribute", attribute, [item.path], text, levels[attribute])

    def _task(self, kind: str, attribute: str, paths: list[str], text: str, answer: str) -> dict:
        """``text``: the question with its answer instruction."""
        return {"kind": kind, "attribute": attribute, "paths": paths, "answer": answer, "text": text,
                "target": f"<{self.answer_tag}>{answer}</{self.answer_tag}>"}

    def task_counts(self) -> dict[str, int]:
        """How many indices ask each kind of question (comparisons without a clear partner became attributes)."""
        return dict(Counter(self.task(i)["kind"] for i in range(len(self))))

    def __getitem__(self, index: int) -> Example:
        task = self.task(index)
        audio = [load_audio(p) for p in task["paths"]]
        return Example(audio=audio[0] if len(audio) == 1 else audio, text=task["text"], target=task["target"],
                       item=self.items[index])


def prosody_task_scores(tasks: Sequence[Mapping], answers: Sequence[str | None]) -> dict:
    """Accuracy of answers to prosody questions: overall, per kind and per ``kind/attribute``, with chance.

    ``answers``: the text inside each completion's answer tag (None where there is none).

    >>> tasks = [{"kind": "attribute", "attribute": "pitch", "answer": "high"},
    ...          {"kind": "comparison", "attribute": "speed", "answer": "first"}]
    >>> prosody_task_scores(tasks, ["High", None])["accuracy"]
    {'all': 0.5, 'attribute': 1.0, 'comparison': 0.0, 'attribute/pitch': 1.0, 'comparison/speed': 0.0}
    """
    hits: dict[str, list[bool]] = {}
    offside: dict[str, list[bool]] = {}
    for task, answer in zip(tasks, answers, strict=True):
        said = None if answer is None else answer.strip().strip(".").lower()
        options = ORDER if task["kind"] == "comparison" else LEVEL_NAMES[task["attribute"]]
        for key in ("all", task["kind"], f"{task['kind']}/{task['attribute']}"):
            hits.setdefault(key, []).append(said == task["answer"])
            offside.setdefault(key, []).append(said not in options)
    order = sorted(hits, key=lambda k: (k.count("/"), k != "all", k))
    return {"accuracy": {k: sum(hits[k]) / len(hits[k]) for k in order},
            "not_an_option": {k: sum(offside[k]) / len(offside[k]) for k in order},
            "n": {k: len(hits[k]) for k in order}, "chance": {"attribute": 1 / 3, "comparison": 1 / 2}}
