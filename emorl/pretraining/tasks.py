"""The embedded base's pretraining mixture: one small builder per task, drawn by weight.

A real LALM is pretrained on a mixture (speech recognition, audio questions, text); the embedded
base gets one in miniature.  Every builder turns a random draw into one supervised
:class:`~emorl.data.batching.Example`; :data:`TASKS` is the table of them, and
``pretrain.tasks`` in ``conf/pretrain.yaml`` weighs them:

=================  ======================================================================  =========
task               what it asks                                                            clips
=================  ======================================================================  =========
``transcribe``     what the speaker says (speech recognition)                              both
``speech``         what the speaker says, of many sentences and voices                     speech
``keyword``        which of these words the speaker said                                   both
``topic``          which topic the sentence is about                                       both
``voice``          male or female voice                                                    both
``attribute``      the *measured* level of pitch, speed, volume or intonation              both
``describe``       the measured levels of every attribute, in words                        both
``compare``        which of two clips is higher, faster, louder, livelier (measured)       both
``rate``           the measured speaking rate itself, in half syllables per second         both
``word_meaning``   the emotion a word or sentence conveys (a published lexicon; no audio)  none
``heard_meaning``  the emotion the lexicon gives the key word the speaker says             both
``emotion``        the emotion of a clip, several corpora's label names                    pretrain
``position``       which option is listed first / second / last                            both
``synonym``        which option names the same emotion as a given name                     both
=================  ======================================================================  =========

"both" means the experiment corpus's **training** clips and the pretraining corpus's clips; "speech" the clips
of :class:`emorl.data.speech.SpeechCorpus` (no emotion label; asked nothing but what was said);
``emotion`` questions are asked about the pretraining corpus only, so no label of the experiment
corpus is ever a target (:meth:`PretrainTasks.check_clip` refuses otherwise).  Validation and test
clips never enter: the builder refuses clips of any split but ``train``.

``heard_meaning`` composes two skills on one clip: hear the key word, say what the lexicon gives it (never the
clip's emotion label; clips whose key word the lexicon lacks are not asked).  Its ESR synthesis names the word
heard, as the emotion question's does for pretraining-corpus clips.

Questions about a clip whose answer is an emotion name (``emotion``, ``heard_meaning``, ``position``, ``synonym``) are
answered in IR, EUR or ESR (``pretrain.formats``); an ESR answer's sections hold *that clip's own*
transcript, key words and measured prosody before the task's conclusion, so the structured reasoning
the emotion question later needs is conditioned on the audio.  Questions answered with another word
(a key word, a topic, a voice, a level) take ``pretrain.word_formats`` (null: the same formats).  The
shipped base, built with the same formats for all, answered the emotion question (zero-shot, ESR, 700
test clips) 26 times with no option, 16 of them with a topic; a base built with IR only for those
questions lost more than it gained (its ESR transcribed 384 of the 700 clips as pretraining-corpus
sentences: the ESR sections about the experiment corpus's clips came mostly from those questions).
Each example is a pure function of ``(seed, index)``: a resumed run draws what an uninterrupted one
would.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from emorl.acoustics import LEVEL_NAMES, describe
from emorl.data.audio import SPEED_RANGE, change_speed
from emorl.data.batching import DESCRIPTION_TASKS, Example
from emorl.data.corpus import Item
from emorl.data.prosody_tasks import ATTRIBUTE_QUESTIONS, COMPARISON_PROMPTS, MARGINS, ORDER, contrast
from emorl.emotions import LABEL_SETS, NEUTRAL, wheel_position
from emorl.models.warmstart import (
    EMOTION_QUESTIONS,
    POSITION_QUESTION,
    POSITIONS,
    SYNONYM_QUESTION,
    TOPIC_QUESTION,
    VOICE_QUESTION,
    WORD_QUESTION,
    emotion_names,
    vocabulary_name,
)
from emorl.pretraining.lexicon import EMOTIONS, conveyed
from emorl.prompts import ReasoningStrategy, free_answer_prompt, free_answer_target, get_strategy

#: Where a pretraining clip comes from: the experiment corpus (training split: never asked its
#: emotion), the pretraining corpus (asked everything) or the speech corpus (asked only what was said).
EXPERIMENT, PRETRAIN, SPEECH = "experiment", "pretrain", "speech"

WORD_MEANING_QUESTIONS = (
    "Which emotion does the word {word} convey? Options: {options}.",
    "What feeling does the word {word} express? Options: {options}.",
)
#: Sentence frames for a lexicon word (text only; none is a sentence of any corpus).
SENTENCE_FRAMES = ("i feel {word}", "it was all so {word}", "what a {word} thing", "they call it {word}")
SENTENCE_QUESTION = "Which emotion does the sentence '{sentence}' convey? Options: {options}."
HEARD_MEANING_QUESTION = "Which emotion does the key word the speaker says convey? Options: {options}."
TRANSCRIBE_QUESTION = DESCRIPTION_TASKS["transcript"]
DESCRIBE_QUESTION = DESCRIPTION_TASKS["prosody"]
COMPARE_OPTIONS = " Options: first, second."
RATE_QUESTION = "About how many syllables per second does the speaker say?"
#: The rate task's answers are multiples of this many syllables per second.
RATE_STEP = 0.5


@dataclass(frozen=True)
class Clip:
    """A pretraining clip: the corpus item, where it comes from and its measured prosody levels."""

    item: Item
    source: str
    levels: Mapping[str, str]
    measurement: Mapping[str, float]

    @property
    def keyword(self) -> str:
        return (self.item.meta.get("keywords") or [""])[0]


def _distribution(weights: Mapping[str, float], key: str) -> tuple[list[str], np.ndarray]:
    """The names of positive weight and their probabilities; ``key`` names the setting in the error."""
    if any(float(w) < 0 for w in weights.values()) or not sum(float(w) for w in weights.values()) > 0:
        raise ValueError(f"{key}: weights must be >= 0 and sum to more than 0, got {dict(weights)}")
    names = [n for n in weights if float(weights[n]) > 0]
    total = sum(float(weights[n]) for n in names)
    return names, np.asarray([float(weights[n]) / total for n in names])


def _formats(weights: Mapping[str, float], key: str) -> tuple[list[ReasoningStrategy], np.ndarray]:
    """The answer formats of positive weight and their probabilities."""
    names, p = _distribution(weights, key)
    return [get_strategy(name) for name in names], p


#: The tasks whose questions about a clip are answered in a drawn format (IR, EUR or ESR), and whether that answer
#: is an emotion name (its formats: ``pretrain.formats``) or another word (``pretrain.word_formats``);
#: ``pretrain.task_formats`` may set a task's own.  The other tasks' answers are free text (transcribe, speech,
#: describe, compare, rate) or IR / EUR (word_meaning, which has no clip).
FORMATTED_TASKS: dict[str, bool] = {
    "keyword": False,       # a word the speaker said
    "topic": False,         # what the sentence is about
    "voice": False,         # male or female
    "attribute": False,     # a measured level
    "heard_meaning": True,  # what the heard key word conveys
    "emotion": True,        # the clip's emotion
    "position": True,       # an emotion option, by its place
    "synonym": True,        # the option naming the same emotion
}


def _vocabularies() -> list[tuple[str, ...]]:
    return [tuple(n for n in v if n != "calm") for v in LABEL_SETS.values()]


class PretrainTasks:
    """Draws the mixture's examples.

    Args:
        clips: the clips audio questions are about (:class:`Clip`; training splits only).
        audio: path -> waveform (16 kHz mono).
        lexicon: word -> the emotions it conveys (:func:`emorl.pretraining.lexicon.read_lexicon`).
        weights: task name -> weight (names of :data:`TASKS`).
        formats: strategy name -> weight of the formats questions answered with an emotion name take.
        word_formats: the same for questions answered with another word (key word, topic, voice, level);
            None: as ``formats``.
        seed: with the index, fixes every draw.
        task_formats: task name -> the formats that task's questions take instead (over ``formats`` and
            ``word_formats``); None or {}: none.
        attributes: prosody attribute -> weight of the attribute and comparison questions about it; None:
            each equally often (the draws the shipped base was built on).
        speeds: speed factors a clip asked only what was said (:data:`SPEED_PERTURBED_TASKS`) is played at, one
            drawn per example (:func:`emorl.data.audio.change_speed`); empty: as recorded (the shipped base).
    """

    def __init__(self, clips: Sequence[Clip], audio: Callable[[str], np.ndarray], lexicon: Mapping[str, Sequence[str]],
                 weights: Mapping[str, float], formats: Mapping[str, float],
                 word_formats: Mapping[str, float] | None = None, seed: int = 0,
                 attributes: Mapping[str, float] | None = None,
                 task_formats: Mapping[str, Mapping[str, float]] | None = None,
                 speeds: Sequence[float] = ()) -> None:
        for key, given, known, what in (("tasks", weights, TASKS, "tasks"),
                                        ("attributes", attributes or {}, ATTRIBUTE_QUESTIONS, "attributes"),
                                        ("task_formats", task_formats or {}, FORMATTED_TASKS, "tasks")):
            unknown = sorted(set(given) - set(known))
            if unknown:
                raise ValueError(f"pretrain.{key}: unknown {what} {unknown}; the {what} are {sorted(known)}")
        self.names, self.p = _distribution(weights, "pretrain.tasks")
        self.attribute_weights = None if attributes is None else dict(attributes)
        if attributes is not None:
            _distribution(attributes, "pretrain.attributes")
        for clip in clips:
            self.check_clip(clip)
        self.clips = [c for c in clips if c.source != SPEECH]  # what every task but speech asks about
        self.speech_clips = [c for c in clips if c.source == SPEECH]
        self.pretrain_clips = [c for c in self.clips if c.source == PRETRAIN]
        if float(weights.get("speech", 0)) > 0 and not self.speech_clips:
            raise ValueError("pretrain.tasks.speech > 0 needs clips of the speech corpus (pretrain.speech.clips > 0)")
        if not self.clips:
            raise ValueError("the pretraining needs clips of the experiment or the pretraining corpus, got none")
        if float(weights.get("emotion", 0)) > 0 and not self.pretrain_clips:
            raise ValueError("pretrain.tasks.emotion > 0 needs clips of the pretraining corpus (pretrain.corpus)")
        self.audio = audio
        self.strategies, format_p = _formats(formats, "pretrain.formats")
        by_answer = {True: (self.strategies, format_p),
                     False: _formats(formats if word_formats is None else word_formats, "pretrain.word_formats")}
        #: task -> (its formats, their probabilities): task_formats over formats / word_formats
        self.task_formats = {task: by_answer[emotion_answer] for task, emotion_answer in FORMATTED_TASKS.items()}
        self.task_formats |= {task: _formats(f, f"pretrain.task_formats.{task}")
                              for task, f in (task_formats or {}).items()}
        self.seed = int(seed)
        self.speeds = tuple(float(f) for f in speeds)
        for f in self.speeds:
            if not SPEED_RANGE[0] <= f <= SPEED_RANGE[1]:
                raise ValueError(f"pretrain.speeds: {f} is no speed factor of a voice; give factors from "
                                 f"{SPEED_RANGE[0]} to {SPEED_RANGE[1]}, e.g. [0.9, 1.0, 1.1]")
        self.vocabularies = _vocabularies()
        self.points = sorted({wheel_position(n) for v in self.vocabularies for n in v})
        self.option_pool = sorted({label for labels in LABEL_SETS.values() for label in labels})
        self.topics = sorted({str(c.item.meta["topic"]) for c in self.clips if c.item.meta.get("topic")})
        self.words = sorted({c.keyword for c in self.clips if c.keyword} | set(self.topics))
        # The lexicon by what a word conveys: each emotion (and neutral) is asked equally often.
        self.lexicon: dict[str, list[str]] = {e: [] for e in (*EMOTIONS, NEUTRAL)}
        for word, emotions in sorted(lexicon.items()):
            for e in conveyed(tuple(emotions)):
                self.lexicon[e].append(word)
        self.lexicon = {e: ws for e, ws in self.lexicon.items() if ws}
        self.conveys = {w: conveyed(tuple(e)) for w, e in lexicon.items()}
        if float(weights.get("word_meaning", 0)) > 0 and not self.lexicon:
            raise ValueError("pretrain.tasks.word_meaning > 0 needs a non-empty lexicon")
        self.lexicon_clips = [c for c in self.clips if c.keyword in self.conveys]  # key words the lexicon knows
        if float(weights.get("heard_meaning", 0)) > 0 and not self.lexicon_clips:
            raise ValueError("pretrain.tasks.heard_meaning > 0 needs clips whose key word the lexicon holds "
                             f"(none of {len(self.clips)} clips' key words is in it)")

    @staticmethod
    def check_clip(clip: Clip) -> None:
        """Refuse a clip the pretraining data may not hold: any split but train, an unknown source."""
        if clip.item.split != "train":
            raise ValueError(f"{clip.item.path}: a {clip.item.split!r} clip may not enter the pretraining data "
                             "(only training splits do: the base never hears an evaluation clip)")
        if clip.source not in (EXPERIMENT, PRETRAIN, SPEECH):
            raise ValueError(f"{clip.item.path}: clip source {clip.source!r} is none of {EXPERIMENT!r}, {PRETRAIN!r}, "
                             f"{SPEECH!r}")

    # ------------------------------------------------------------------ draws
    def example(self, index: int, stream: int = 0) -> Example:
        """Example ``index`` of the mixture (its task in ``Example.task``); ``stream`` 1 holds the tokenizer's draws."""
        rng = np.random.default_rng([self.seed, int(stream), int(index)])
        task = self.names[int(rng.choice(len(self.names), p=self.p))]
        example = TASKS[task](self, rng)
        example.task = example.task or task
        return example

    def clip(self, rng: np.random.Generator, pool: Sequence[Clip] | None = None) -> Clip:
        pool = self.clips if pool is None else pool
        return pool[int(rng.integers(len(pool)))]

    def prosody_attribute(self, rng: np.random.Generator, names: Sequence[str]) -> str | None:
        """One of ``names`` (prosody attributes) by ``attributes``' weights; None when all of them weigh 0."""
        if self.attribute_weights is None:
            return names[int(rng.integers(len(names)))]
        weights = np.asarray([float(self.attribute_weights.get(n, 0.0)) for n in names])
        if not weights.sum() > 0:
            return None
        return names[int(rng.choice(len(names), p=weights / weights.sum()))]

    def strategy(self, rng: np.random.Generator, task: str) -> ReasoningStrategy:
        """A drawn format of ``task`` (one of :data:`FORMATTED_TASKS`): its own (``task_formats``), else of ``formats``
        when its answer is an emotion name, else of ``word_formats``."""
        strategies, p = self.task_formats[task]
        return strategies[int(rng.choice(len(strategies), p=p))]

    def render(self, rng: np.random.Generator, clip: Clip, question: str, options: Sequence[str], answer: str,
               conclusion: str, task: str) -> Example:
        """``task``'s question about ``clip`` answered in a drawn format (:meth:`strategy`); ESR sections from the clip
        itself."""
        strategy = self.strategy(rng, task)
        how = describe(clip.levels) or "no clear prosody"
        sections = (clip.item.transcript, clip.keyword or "none", how, conclusion)
        think = f"they say {clip.item.transcript}. it sounds like {how}. so {conclusion}."
        target = strategy.render(answer, think=think,
                                 sections={s.tag: t for s, t in zip(strategy.sections, sections, strict=False)})
        return Example(audio=self.audio(clip.item.path), text=strategy.prompt(options, question=question),
                       label=answer, options=tuple(options), target=target, item=clip.item)

    def heard(self, rng: np.random.Generator, clip: Clip) -> np.ndarray:
        """``clip``'s audio at a drawn speed of ``speeds`` (as recorded when there are none: no draw, the shipped
        base's examples); only for questions whose answer a change of speed leaves true (what was said)."""
        wav = self.audio(clip.item.path)
        if not self.speeds:
            return wav
        return change_speed(wav, self.speeds[int(rng.integers(len(self.speeds)))])

    def answered(self, clip: Clip | None, question: str, answer: str, audio: np.ndarray | None = None) -> Example:
        """A question whose answer is free text (a transcript, a description): IR's answer block only; ``audio``:
        the clip as heard (None: as recorded)."""
        target = free_answer_target(answer)
        text = free_answer_prompt(question)
        if audio is None:
            audio = self.audio(clip.item.path) if clip else []
        return Example(audio=audio, text=text, label=answer, target=target, item=clip.item if clip else None)

    def named(self, rng: np.random.Generator, point: str, exclude: Sequence[str] = ()) -> tuple[str, list[str]]:
        """``point``'s name in a drawn vocabulary that has one, and that vocabulary's options (:meth:`label_options`)."""
        vocabularies = [v for v in self.vocabularies if vocabulary_name(point, v)]
        vocabulary = vocabularies[int(rng.integers(len(vocabularies)))]
        answer = vocabulary_name(point, vocabulary)
        return answer, self.label_options(rng, answer, vocabulary, exclude=exclude)

    def label_options(self, rng: np.random.Generator, answer: str, vocabulary: Sequence[str],
                      exclude: Sequence[str] = ()) -> list[str]:
        """``answer`` and 2 or more other names of ``vocabulary`` (none of ``exclude``'s points), shuffled."""
        banned = {wheel_position(e) for e in exclude} - {wheel_position(answer)}
        others = [n for n in rng.permutation(vocabulary) if n != answer and wheel_position(n) not in banned]
        k = int(rng.integers(min(2, len(others)), len(others) + 1)) if others else 0
        return [str(o) for o in rng.permutation([answer, *others[:k]])]


# ---------------------------------------------------------------------- builders
def transcribe(tasks: PretrainTasks, rng) -> Example:
    clip = tasks.clip(rng)
    return tasks.answered(clip, TRANSCRIBE_QUESTION, clip.item.transcript, audio=tasks.heard(rng, clip))


def speech(tasks: PretrainTasks, rng) -> Example:
    """What the speaker of a speech-corpus clip says (sentences of many frames, many voices)."""
    clip = tasks.clip(rng, tasks.speech_clips)
    return tasks.answered(clip, TRANSCRIBE_QUESTION, clip.item.transcript, audio=tasks.heard(rng, clip))


#: The tasks whose clip may be played faster or slower (``pretrain.speeds``): their answer is what was said, which
#: a change of speed leaves true; every other answer about a clip holds its measured prosody (a level, an ESR
#: section) or its voice, which it does not.
SPEED_PERTURBED_TASKS = ("transcribe", "speech")


def describe_prosody(tasks: PretrainTasks, rng) -> Example:
    clip = tasks.clip(rng)
    return tasks.answered(clip, DESCRIBE_QUESTION, describe(clip.levels) or "no clear prosody")


def keyword(tasks: PretrainTasks, rng) -> Example:
    clip = tasks.clip(rng)
    said = set(clip.item.transcript.split())
    distractors = [str(w) for w in rng.permutation(tasks.words) if w not in said][: int(rng.integers(2, 6))]
    options = [str(w) for w in rng.permutation([clip.keyword, *distractors])]
    return tasks.render(rng, clip, WORD_QUESTION, options, clip.keyword, f"the speaker said {clip.keyword}", task="keyword")


def topic(tasks: PretrainTasks, rng) -> Example:
    clip = tasks.clip(rng)
    answer = str(clip.item.meta["topic"])
    others = [str(t) for t in rng.permutation(tasks.topics) if t != answer][: int(rng.integers(2, 8))]
    options = [str(t) for t in rng.permutation([answer, *others])]
    return tasks.render(rng, clip, TOPIC_QUESTION, options, answer, f"the speaker talks about the {answer}", task="topic")


def voice(tasks: PretrainTasks, rng) -> Example:
    clip = tasks.clip(rng)
    answer = str(clip.item.meta["voice"])
    options = [str(v) for v in rng.permutation(["male", "female"])]
    return tasks.render(rng, clip, VOICE_QUESTION, options, answer, f"the voice is {answer}", task="voice")


def attribute(tasks: PretrainTasks, rng) -> Example:
    clip = tasks.clip(rng)
    measured = [a for a in ATTRIBUTE_QUESTIONS if a in clip.levels]
    name = tasks.prosody_attribute(rng, measured) if measured else None
    if name is None:  # nothing measurable (silence), or only attributes of weight 0: ask what was said instead
        return transcribe(tasks, rng)
    answer = clip.levels[name]
    options = list(LEVEL_NAMES[name])[:: 1 if rng.random() < 0.5 else -1]
    return tasks.render(rng, clip, ATTRIBUTE_QUESTIONS[name], options, answer, f"the {name} is {answer}", task="attribute")


def compare(tasks: PretrainTasks, rng) -> Example:
    """Two clips of one corpus whose measurement differs clearly; which one has more of the attribute."""
    first = tasks.clip(rng)
    name = tasks.prosody_attribute(rng, tuple(COMPARISON_PROMPTS))
    pool = [c for c in tasks.clips if c.source == first.source]
    for _ in range(16):
        second = tasks.clip(rng, pool)
        diff = contrast(name, first.measurement, second.measurement)
        if diff is not None and abs(diff) >= MARGINS[name]:
            answer = ORDER[0] if diff > 0 else ORDER[1]
            ex = tasks.answered(first, COMPARISON_PROMPTS[name] + COMPARE_OPTIONS, answer)
            ex.audio = [tasks.audio(first.item.path), tasks.audio(second.item.path)]
            ex.options = ORDER
            return ex
    fallback = attribute(tasks, rng)  # no clear partner among 16 draws
    fallback.task = "attribute"
    return fallback


def rate_answer(syllables_per_s: float) -> str:
    """A measured speaking rate as the rate task says it: the nearest multiple of :data:`RATE_STEP`.

    >>> rate_answer(4.26), rate_answer(4.24), rate_answer(7.0)
    ('4.5', '4.0', '7.0')
    """
    return f"{round(syllables_per_s / RATE_STEP) * RATE_STEP:.1f}"


def rate(tasks: PretrainTasks, rng) -> Example:
    """The clip's measured speaking rate itself (free answer), finer than its level: the speed levels and the ESR
    speed claims place one clip among its voice's, which a base hearing only large differences of rate cannot
    (docs/results.md: speed asked three times as often ranked two clips, not one)."""
    clip = tasks.clip(rng)
    measured = clip.measurement.get("syllables_per_s")
    if measured is None or not np.isfinite(measured):  # nothing measurable (silence): ask what was said instead
        fallback = transcribe(tasks, rng)
        fallback.task = "transcribe"
        return fallback
    return tasks.answered(clip, RATE_QUESTION, rate_answer(float(measured)))


def word_meaning(tasks: PretrainTasks, rng) -> Example:
    """A lexicon word (or a sentence framing it), the emotion it conveys; text only, IR or EUR."""
    points = sorted(tasks.lexicon)
    point = points[int(rng.integers(len(points)))]
    words = tasks.lexicon[point]
    word = words[int(rng.integers(len(words)))]
    answer, options = tasks.named(rng, point, exclude=tasks.conveys[word])
    if rng.random() < 0.5:
        question = WORD_MEANING_QUESTIONS[int(rng.integers(len(WORD_MEANING_QUESTIONS)))].replace("{word}", word)
    else:
        sentence = SENTENCE_FRAMES[int(rng.integers(len(SENTENCE_FRAMES)))].format(word=word)
        question = SENTENCE_QUESTION.replace("{sentence}", sentence)
    strategy = [s for s in tasks.strategies if not s.sections] or [get_strategy("ir")]
    strategy = strategy[int(rng.integers(len(strategy)))]
    meaning = meaning_phrase(word, answer)
    target = strategy.render(answer, think=meaning)
    return Example(audio=[], text=strategy.prompt(options, question=question), label=answer, options=tuple(options),
                   target=target)


def meaning_phrase(word: str, emotion: str) -> str:
    """How a reasoning says what a word conveys (the same words in the lexicon task and in ESR's synthesis).

    >>> meaning_phrase("furious", "anger"), meaning_phrase("calm", "neutral")
    ('furious conveys anger', 'calm conveys no emotion')
    """
    return f"{word} conveys no emotion" if wheel_position(emotion) == NEUTRAL else f"{word} conveys {emotion}"


def heard_meaning(tasks: PretrainTasks, rng) -> Example:
    """What the key word a clip's speaker says conveys, by the lexicon (either corpus; never the clip's label)."""
    clip = tasks.clip(rng, tasks.lexicon_clips)
    conveys = tasks.conveys[clip.keyword]
    answer, options = tasks.named(rng, conveys[int(rng.integers(len(conveys)))], exclude=conveys)
    return tasks.render(rng, clip, HEARD_MEANING_QUESTION, options, answer, meaning_phrase(clip.keyword, answer),
                        task="heard_meaning")


def emotion(tasks: PretrainTasks, rng) -> Example:
    """The emotion of a pretraining-corpus clip, in one corpus's label names."""
    clip = tasks.clip(rng, tasks.pretrain_clips)
    if clip.source != PRETRAIN:  # the experiment corpus's emotions are never a target
        raise AssertionError(f"{clip.item.path}: an emotion question about a clip of the experiment corpus")
    label = clip.item.label
    answer = emotion_names(label)[int(rng.integers(len(emotion_names(label))))]
    vocabulary = [v for v in tasks.vocabularies if vocabulary_name(label, v) == answer]
    vocabulary = vocabulary[int(rng.integers(len(vocabulary)))]
    options = tasks.label_options(rng, answer, vocabulary)
    word_class = clip.item.meta.get("word_class", label)
    word_name = vocabulary_name(word_class, vocabulary) or word_class
    conclusion = f"{meaning_phrase(clip.keyword, word_name)}, the voice sounds {answer}"
    question = EMOTION_QUESTIONS[int(rng.integers(len(EMOTION_QUESTIONS)))]
    return tasks.render(rng, clip, question, options, answer, conclusion, task="emotion")


def position(tasks: PretrainTasks, rng) -> Example:
    clip = tasks.clip(rng)
    where = POSITIONS[int(rng.integers(len(POSITIONS)))]
    options = [str(o) for o in rng.choice(tasks.option_pool, size=int(rng.integers(3, 9)), replace=False)]
    answer = {"first": options[0], "second": options[1], "last": options[-1]}[where]
    return tasks.render(rng, clip, POSITION_QUESTION.replace("{position}", where), options, answer,
                        f"the {where} option is {answer}", task="position")


def synonym(tasks: PretrainTasks, rng) -> Example:
    clip = tasks.clip(rng)
    point = tasks.points[int(rng.integers(len(tasks.points)))]
    names = emotion_names(point)
    name = names[int(rng.integers(len(names)))]
    answer, options = tasks.named(rng, point)
    return tasks.render(rng, clip, SYNONYM_QUESTION.replace("{name}", name), options, answer,
                        f"{name} and {answer} name the same emotion", task="synonym")


#: The mixture's tasks by name (``pretrain.tasks`` weighs them).
TASKS: dict[str, Callable[[PretrainTasks, np.random.Generator], Example]] = {
    "transcribe": transcribe,
    "speech": speech,
    "keyword": keyword,
    "topic": topic,
    "voice": voice,
    "attribute": attribute,
    "describe": describe_prosody,
    "compare": compare,
    "rate": rate,
    "word_meaning": word_meaning,
    "heard_meaning": heard_meaning,
    "emotion": emotion,
    "position": position,
    "synonym": synonym,
}


def tokenizer_texts(tasks: PretrainTasks, n: int, labels: Sequence[str] = ()) -> list[str]:
    """Texts the base's tokenizer is trained on: ``n`` drawn examples (prompts and targets), every lexicon
    word, every label set, and the experiment's question in each format."""
    out = []
    for i in range(n):
        ex = tasks.example(i, stream=1)  # draws the training order never makes
        out += [ex.text, ex.target]
    out += [" ".join(words) for words in tasks.lexicon.values()]
    for labels_of_corpus in LABEL_SETS.values():
        out += [" ".join(labels_of_corpus)] * 20
    for s in tasks.strategies:
        out.append(s.prompt(list(labels) or LABEL_SETS["meld"]))
    return out
