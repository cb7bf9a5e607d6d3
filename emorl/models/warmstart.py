"""An instruction-following base that has heard emotional speech, but not the experiment's corpus.

EMO-RL starts GRPO from Qwen2-Audio-Instruct: a general audio model, pretrained on emotional
speech among much else, that follows answer formats and scores above chance zero-shot (MELD UA
18.96 direct, 26.89 CoT).  The embedded default mirrors that with a short supervised warm start,
in all three answer formats, on questions about the audio of the default corpus's training split
and of a pretraining corpus that are never about the default corpus's emotions, like
EmotionThinker's prosody-enhanced base:

* prosodic attributes: is the pitch high or low, the speech fast or slow, the voice loud or
  quiet, the intonation flat or lively;
* what was said: which of these words did the speaker say;
* which topic the sentence is about, and whether the voice is male or female: questions
  shaped like the emotion question (many options, pick exactly one);
* a generic "pick the listed option" task whose options include label words, so that label
  tokens have been produced as answers at all (no emotion label is ever the target for audio).

and on **emotion questions about another corpus** (``emotion_items``: the synthetic ``pretrain``
style, shifted from the default corpus as real corpora differ: other sentences, key words and
speakers, less exaggerated prosody), with label names drawn from several corpora's vocabularies
(joy / happy / happiness, ...) and option lists of varying length and order.

Structured (ESR) targets describe what was said and how it was said before concluding, which is
the reasoning the emotion question can later build on.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence

import numpy as np
import torch

from emorl.data.audio import load_audio
from emorl.data.batching import Collator, Example
from emorl.data.corpus import Item
from emorl.data.prosody_tasks import ATTRIBUTE_QUESTIONS
from emorl.data.synthetic import LEVELS, STYLES
from emorl.emotions import LABEL_SETS, NEUTRAL, wheel_position
from emorl.prompts import ReasoningStrategy

log = logging.getLogger(__name__)

WORD_QUESTION = "Which of these words did the speaker say? Options: {options}."
TOPIC_QUESTION = "Which topic does the speaker talk about? Options: {options}."
VOICE_QUESTION = "Which voice does the speaker have? Options: {options}."
POSITION_QUESTION = "Which option is listed {position}? Options: {options}."
SYNONYM_QUESTION = "Which option names the same emotion as the word {name}? Options: {options}."
POSITIONS = ("first", "second", "last")
TASKS = ("attribute", "word", "topic", "voice", "position", "synonym")
TASK_WEIGHTS = (0.35, 0.1, 0.1, 0.05, 0.30, 0.10)

#: The recipe of the warm-start examples; part of the embedded base's cache key, so that a base
#: cached by an older recipe is rebuilt.  Bump it whenever what the tasks draw changes.
RECIPE_VERSION = 2


def describe_prosody(meta: dict) -> str:
    return (
        f"pitch {meta['pitch']}, intonation {meta['intonation']}, speed {meta['speed']}, "
        f"volume {meta['volume']}, {meta['voice']} voice"
    )


def _word_pool() -> list[str]:
    words = {w for style in STYLES.values() for ws in style.keywords.values() for w in ws}
    words |= {t for style in STYLES.values() for t in style.topics}
    words |= {label for labels in LABEL_SETS.values() for label in labels}
    return sorted(words)


EMOTION_QUESTIONS = (
    "Which emotion does the speaker express? Options: {options}.",
    "What emotion do you hear in this voice? Options: {options}.",
    "How does the speaker feel? Options: {options}.",
)


def vocabulary_name(label: str, vocabulary: Sequence[str]) -> str | None:
    """The name ``vocabulary`` gives the wheel point of ``label`` (``calm`` never stands for neutral).

    >>> vocabulary_name("joy", LABEL_SETS["iemocap4"]), vocabulary_name("fear", LABEL_SETS["iemocap4"])
    ('happy', None)
    """
    point = wheel_position(label)
    names = [n for n in vocabulary if wheel_position(n) == point and not (point == NEUTRAL and n != NEUTRAL)]
    return names[0] if names else None


def emotion_names(label: str) -> tuple[str, ...]:
    """Every corpus's name for the wheel point of ``label``, as a language model knows them.

    >>> emotion_names("joy")
    ('happiness', 'happy', 'joy')
    """
    names = {vocabulary_name(label, v) for v in LABEL_SETS.values()}
    return tuple(sorted(n for n in names if n))


class WarmStartTasks:
    """Draws supervised (prompt, target) examples about an item's audio, never its emotion."""

    def __init__(self, strategies: Sequence[ReasoningStrategy], seed: int = 0) -> None:
        self.strategies = list(strategies)
        self.rng = np.random.default_rng(seed)
        self.vocabularies = [tuple(n for n in v if n != "calm") for v in LABEL_SETS.values()]
        self.points = sorted({wheel_position(n) for v in self.vocabularies for n in v})
        self.topics = sorted({t for style in STYLES.values() for t in style.topics})
        self.words = _word_pool()
        # Label words of every corpus: the answer tokens the emotion question will need.
        self.option_pool = sorted({label for labels in LABEL_SETS.values() for label in labels})

    def _choice(self, seq):
        return seq[int(self.rng.integers(len(seq)))]

    def draw(self, item: Item, audio: np.ndarray | None) -> Example:
        kind = TASKS[int(self.rng.choice(len(TASKS), p=TASK_WEIGHTS))]
        if kind == "attribute":
            attribute = self._choice(tuple(ATTRIBUTE_QUESTIONS))
            options = LEVELS[attribute][1][::-1]
            answer = item.meta[attribute]
            question = ATTRIBUTE_QUESTIONS[attribute]
            conclusion = f"the {attribute} is {answer}"
        elif kind == "word":
            answer = item.meta["keywords"][0]
            said = set(item.transcript.split())
            distractors = [w for w in self.rng.permutation(self.words) if w not in said][:3]
            options = [str(w) for w in self.rng.permutation([answer, *distractors])]
            question = WORD_QUESTION
            conclusion = f"the speaker said {answer}"
        elif kind == "topic":
            answer = item.meta.get("topic") or next(t for t in self.topics if f" {t} " in f" {item.transcript} ")
            others = [t for t in self.rng.permutation(self.topics) if t != answer][: int(self.rng.integers(3, 9))]
            options = [str(t) for t in self.rng.permutation([answer, *others])]
            question = TOPIC_QUESTION
            conclusion = f"the speaker talks about the {answer}"
        elif kind == "voice":
            answer = item.meta["voice"]
            options = [str(v) for v in self.rng.permutation(["male", "female"])]
            question = VOICE_QUESTION
            conclusion = f"the voice is {answer}"
        elif kind == "synonym":
            # Emotion-name knowledge every language model has (happy = joy), about no clip.
            point = self._choice(self.points)
            name = self._choice(emotion_names(point))
            vocabulary = self._choice([v for v in self.vocabularies if vocabulary_name(point, v)])
            answer = vocabulary_name(point, vocabulary)
            options = self._label_options(answer, vocabulary)
            question = SYNONYM_QUESTION.replace("{name}", name)
            conclusion = f"{name} and {answer} name the same emotion"
        else:
            position = self._choice(POSITIONS)
            options = [str(o) for o in self.rng.choice(self.option_pool, size=int(self.rng.integers(3, 9)), replace=False)]
            answer = {"first": options[0], "second": options[1], "last": options[-1]}[position]
            question = POSITION_QUESTION.replace("{position}", position)
            conclusion = f"the {position} option is {answer}"
        return self._render(item, audio, options, question, answer, conclusion)

    def draw_emotion(self, item: Item, audio: np.ndarray | None) -> Example:
        """An emotion question about ``item`` (a pretraining-corpus clip), in one corpus's label names."""
        # Every name of the emotion is the answer equally often (MELD's "joy" as often as the
        # "happy" two corpora use), then one corpus's label list that uses that name.
        answer = self._choice(emotion_names(item.label))
        vocabulary = self._choice([v for v in self.vocabularies if vocabulary_name(item.label, v) == answer])
        options = self._label_options(answer, vocabulary)
        word_class = item.meta.get("word_class", item.label)
        word_name = vocabulary_name(word_class, vocabulary) or word_class
        words = "the words are neutral" if word_class == NEUTRAL else f"the words sound {word_name}"
        conclusion = f"{words}, the voice sounds {answer}"
        return self._render(item, audio, options, self._choice(EMOTION_QUESTIONS), answer, conclusion)

    def _label_options(self, answer: str, vocabulary: Sequence[str]) -> list[str]:
        """``answer`` and 2 or more other names of ``vocabulary``, in random order."""
        others = [n for n in self.rng.permutation(vocabulary) if n != answer]
        return [str(o) for o in self.rng.permutation([answer, *others[: int(self.rng.integers(2, len(vocabulary)))]])]

    def _render(self, item, audio, options, question, answer, conclusion) -> Example:
        strategy = self._choice(self.strategies)
        # ESR sections are positional: what was said, key words, how it was said, synthesis.
        section_texts = (item.transcript, ", ".join(item.meta["keywords"]), describe_prosody(item.meta), conclusion)
        if strategy.sections and len(strategy.sections) != len(section_texts):
            raise ValueError(
                f"the warm start writes {len(section_texts)} ESR sections (said, key words, how, synthesis); "
                f"strategy {strategy.name!r} has {len(strategy.sections)}"
            )
        think = f"they say {item.transcript}. it sounds like {describe_prosody(item.meta)}. so {conclusion}."
        target = strategy.render(
            answer, think=think, sections={s.tag: text for s, text in zip(strategy.sections, section_texts, strict=False)}
        )
        return Example(audio=audio, text=strategy.prompt(options, question=question), target=target, item=item)


def warm_start(
    model,
    processor,
    items: Sequence[Item],
    strategies: Sequence[ReasoningStrategy],
    *,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    warmup_steps: int = 20,
    emotion_items: Sequence[Item] = (),
    emotion_share: float = 0.0,
) -> dict:
    """Supervised training on the warm-start tasks (full fine-tuning). Returns a summary.

    ``items`` are the clips the other questions are about; a share ``emotion_share`` of each
    batch is emotion questions about ``emotion_items`` (a corpus no experiment uses).
    """
    if emotion_share and not emotion_items:
        raise ValueError("model.warm_start.emotion_share > 0 needs a pretraining corpus (model.warm_start.pretrain)")
    torch.manual_seed(seed)
    tasks = WarmStartTasks(strategies, seed=seed)
    collate = Collator(processor)
    audio = {}
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: min(1.0, (s + 1) / warmup_steps) * 0.5 * (1 + math.cos(math.pi * min(s / steps, 1.0))),
    )
    rng = np.random.default_rng(seed)
    start, losses = time.time(), []
    n_emotion = int(round(emotion_share * batch_size))
    for step in range(steps):
        picks = [(items, int(i), tasks.draw) for i in rng.integers(len(items), size=batch_size - n_emotion)]
        if n_emotion:
            picks += [(emotion_items, int(i), tasks.draw_emotion) for i in rng.integers(len(emotion_items), size=n_emotion)]
        examples = []
        for pool, i, draw in picks:
            item = pool[i]
            if item.path not in audio:
                audio[item.path] = load_audio(item.path)
            examples.append(draw(item, audio[item.path]))
        batch = collate(examples)
        out = model(**{k: batch[k] for k in ("input_ids", "attention_mask", "input_features", "feature_attention_mask", "labels")})
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(out.loss.item())
        if step % 50 == 0 or step == steps - 1:
            log.info("warm start step %d/%d loss %.3f", step, steps, float(np.mean(losses[-50:])))
    model.eval()
    return {"steps": steps, "final_loss": float(np.mean(losses[-20:])), "seconds": round(time.time() - start, 1)}


def tokenizer_corpus(
    items: Sequence[Item], strategies: Sequence[ReasoningStrategy], labels: Sequence[str], seed: int,
    emotion_items: Sequence[Item] = (),
) -> list[str]:
    """Texts that the tiny model's tokenizer is trained on: every prompt and target it will see."""
    tasks = WarmStartTasks(strategies, seed=seed)
    texts = [tasks.draw(item, None) for item in items for _ in range(2)]
    texts += [tasks.draw_emotion(item, None) for item in emotion_items for _ in range(2)]
    out = [e.text for e in texts] + [e.target for e in texts]
    for s in strategies:
        out.append(s.prompt(labels))
        out.extend(s.render(label, think="x", sections={sec.tag: "x" for sec in s.sections}) for label in labels)
    for labels_of_corpus in LABEL_SETS.values():
        out.extend(" ".join(labels_of_corpus) for _ in range(20))
    return out
