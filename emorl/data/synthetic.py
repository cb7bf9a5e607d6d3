"""A synthetic emotional speech corpus, generated locally and deterministically by seed.

Real synthesized speech (libespeak-ng) in which emotion is carried twice:

* by the **words**: each sentence holds an emotion-bearing key word of its class;
* by the **prosody**: speaking rate, pitch, pitch range and volume follow a per-class profile,
  jittered per speaker and per utterance.

A configurable share of utterances has neutral words, and another share has words of a
different emotion than the prosody: a model must listen, not only read.  Several eSpeak voices
are the speakers; train, val and test hold disjoint speakers.  Labels are MELD's seven.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import soundfile as sf

from emorl.data.audio import SAMPLE_RATE, to_mono_16k
from emorl.data.corpus import SPLITS, Item, build_once, fingerprint, read_built_manifest, write_manifest
from emorl.data.tts import Espeak, Prosody, in_fresh_process
from emorl.emotions import label_set

log = logging.getLogger(__name__)

#: Mean eSpeak settings per emotion: (words per minute, pitch 0-99, pitch range 0-99, volume 0-200).
PROSODY_PROFILES: dict[str, tuple[float, float, float, float]] = {
    "neutral": (160, 50, 50, 100),
    "joy": (185, 70, 88, 135),
    "sadness": (112, 28, 18, 70),
    "anger": (205, 45, 70, 185),
    "fear": (215, 82, 30, 85),
    "disgust": (128, 30, 62, 120),
    "surprise": (165, 88, 96, 150),
}

#: Emotion-bearing key words per class (neutral words for ``neutral``).
KEYWORDS: dict[str, tuple[str, ...]] = {
    "neutral": ("fine", "okay", "normal", "ready", "usual", "scheduled"),
    "joy": ("happy", "delighted", "wonderful", "thrilled", "glad", "cheerful"),
    "sadness": ("sad", "miserable", "lonely", "heartbroken", "gloomy", "hopeless"),
    "anger": ("furious", "angry", "outraged", "annoyed", "livid", "unfair"),
    "fear": ("scared", "afraid", "terrified", "nervous", "worried", "frightened"),
    "disgust": ("disgusting", "gross", "revolting", "nasty", "filthy", "vile"),
    "surprise": ("amazed", "astonished", "shocked", "unexpected", "stunned", "unbelievable"),
}

TEMPLATES = (
    "I am so {kw} about the {topic}",
    "the {topic} was {kw} today",
    "this {topic} is really {kw}",
    "honestly the {topic} seems {kw}",
    "my {topic} looks {kw} now",
)
TOPICS = ("meeting", "dinner", "trip", "letter", "movie", "weather", "news", "party", "house", "test", "game", "car")
# eSpeak variants whose audio is the same in every process: f2, f3, f5, Alicia, victor, sandro and the
# whisper voices add noise that differs from run to run, so a corpus built from them cannot be rebuilt.
VOICE_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f4", "Annie", "Andrea", "belinda")
FEMALE_VARIANTS = ("f1", "f4", "Annie", "Andrea", "belinda", "anika", "aunty", "linda", "steph", "steph2", "steph3", "grandma",
                   "shelby")
ACCENTS = ("en-us", "en")
#: The pretraining corpus's voices.
PRETRAIN_VARIANTS = ("Andy", "michel", "travis", "Denis", "Hugo", "Marco", "antonio", "anika", "aunty", "linda", "steph")
#: More eSpeak variants for a pretraining corpus of many voices: none is a variant of the default or the held-out
#: corpus, each gives the same audio in every process, each is male by its measured median pitch (86-132 Hz)
#: but ``shelby`` (193 Hz).  Variants of other pitch or of a near copy of another's sound were left out.
MORE_VARIANTS = ("Alex", "Gene", "Gene2", "Jacky", "Mario", "Michael", "Mike", "Reed", "RicishayMax", "Tweaky", "adam",
                 "boris", "david", "ed", "edward", "gustave", "ian", "iven", "iven3", "john", "kaukovalta", "marcelo",
                 "max", "mike2", "norbert", "pablo", "paul", "pedro", "quincy", "rob", "robert", "shelby")
#: English accents neither the default nor the held-out corpus speaks in.
MORE_ACCENTS = ("en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-us-nyc")


@dataclass(frozen=True)
class CorpusStyle:
    """What one synthetic corpus sounds like: its sentences, key words, voices and prosody.

    Corpora of different styles differ as real corpora do: other sentences and key words, other
    speakers, other (here: less exaggerated, shifted) ways of expressing each emotion.

    Attributes:
        templates: sentences with ``{kw}`` (the key word) and ``{topic}``.
        topics: the topics filled in.
        keywords: key words per class.
        voices: eSpeak voices (``accent+variant``) and their gender (``male`` / ``female``).
        pull: share by which each class's prosody profile moves toward the neutral one (0: as given).
        offset: added to every profile (rate, pitch, range, volume).
    """

    templates: tuple[str, ...]
    topics: tuple[str, ...]
    keywords: dict[str, tuple[str, ...]]
    voices: dict[str, str]
    pull: float = 0.0
    offset: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)

    def profile(self, label: str) -> np.ndarray:
        """Mean eSpeak settings of ``label`` in this style: (rate, pitch, range, volume)."""
        own, neutral = np.asarray(PROSODY_PROFILES[label], float), np.asarray(PROSODY_PROFILES["neutral"], float)
        return own + self.pull * (neutral - own) + np.asarray(self.offset, float)


def _voices(accents, variants) -> dict[str, str]:
    """``accent+variant`` -> the voice's gender."""
    return {f"{a}+{v}": "female" if v in FEMALE_VARIANTS else "male" for a in accents for v in variants}


#: The corpus styles, by name.  ``default`` is the embedded default corpus; ``pretrain`` is the
#: corpus the embedded base hears emotional speech on before any experiment (no sentence, key
#: word or voice of ``default``); ``heldout`` is a corpus that nothing trains on (cross-corpus tests).
STYLES: dict[str, CorpusStyle] = {
    "default": CorpusStyle(TEMPLATES, TOPICS, KEYWORDS, _voices(ACCENTS, VOICE_VARIANTS)),
    "pretrain": CorpusStyle(
        templates=(
            "we were {kw} when the {topic} started",
            "everyone felt {kw} after the {topic}",
            "that {topic} made me {kw}",
            "you know the {topic} left us {kw}",
        ),
        topics=("concert", "holiday", "phone call", "exam", "wedding", "flight", "lesson", "market", "garden", "bus"),
        keywords={
            "neutral": ("calm", "steady", "settled", "regular", "plain"),
            "joy": ("joyful", "overjoyed", "pleased", "excited", "elated"),
            "sadness": ("unhappy", "depressed", "downcast", "sorrowful", "crushed"),
            "anger": ("mad", "irritated", "enraged", "fuming", "bitter"),
            "fear": ("anxious", "panicked", "alarmed", "uneasy", "petrified"),
            "disgust": ("sickened", "repulsed", "appalled", "nauseated", "grossed out"),
            "surprise": ("startled", "speechless", "baffled", "taken aback", "staggered"),
        },
        voices=_voices(ACCENTS, PRETRAIN_VARIANTS),
        pull=0.3,
        offset=(-6.0, 4.0, -4.0, 6.0),
    ),
    "heldout": CorpusStyle(
        templates=(
            "the {topic} turned out {kw}",
            "after the {topic} I felt {kw}",
            "so the {topic} is {kw} then",
        ),
        topics=("interview", "football match", "dentist", "birthday", "storm", "neighbour", "report", "train"),
        keywords={
            "neutral": ("average", "standard", "routine", "ordinary"),
            "joy": ("blissful", "ecstatic", "content", "jolly"),
            "sadness": ("devastated", "blue", "tearful", "grieving"),
            "anger": ("raging", "resentful", "cross", "incensed"),
            "fear": ("horrified", "jittery", "tense", "spooked"),
            "disgust": ("revolted", "disgusted", "queasy", "icky"),
            "surprise": ("flabbergasted", "dumbfounded", "floored", "astounded"),
        },
        voices=_voices(("en-gb-scotland", "en-029", "en-gb-x-rp"), ("m8", "Lee", "miguel", "grandma", "steph2", "steph3")),
        pull=0.2,
        offset=(8.0, -5.0, 5.0, -8.0),
    ),
}


#: ``pretrain_voices``: the pretraining corpus spoken by many more voices (its own and :data:`MORE_VARIANTS`
#: in the default's two accents, its female voices in three more accents).  Measured, not shipped: a base
#: pretrained on it heard the default corpus's test voices worse (ESR key words 65.6% against 78.9%): with the
#: new voices on one corpus's side only, an unknown voice came to mean that corpus's sentences (docs/results.md).
STYLES["pretrain_voices"] = replace(
    STYLES["pretrain"],
    voices={**_voices(ACCENTS, PRETRAIN_VARIANTS + MORE_VARIANTS),
            **_voices(MORE_ACCENTS, tuple(v for v in PRETRAIN_VARIANTS + MORE_VARIANTS if v in FEMALE_VARIANTS))},
)


def get_style(name: str) -> CorpusStyle:
    if name not in STYLES:
        raise ValueError(f"Unsupported corpus style: {name!r}. Supported corpus styles are: {sorted(STYLES)}")
    return STYLES[name]


#: Level names of each prosodic attribute and the eSpeak setting thresholds between them.
LEVELS: dict[str, tuple[str, tuple[str, ...], tuple[float, ...]]] = {
    # attribute: (eSpeak setting, level names low -> high, thresholds)
    "pitch": ("pitch", ("low", "medium", "high"), (40.0, 64.0)),
    "speed": ("rate", ("slow", "medium", "fast"), (140.0, 182.0)),
    "volume": ("volume", ("quiet", "medium", "loud"), (92.0, 140.0)),
    "intonation": ("range", ("flat", "varied", "lively"), (40.0, 76.0)),
}


def level(attribute: str, value: float) -> str:
    """Name the level of an eSpeak setting, e.g. ``level("speed", 210) == "fast"``."""
    _, names, thresholds = LEVELS[attribute]
    return names[int(np.searchsorted(thresholds, value, side="right"))]


@dataclass(frozen=True)
class SyntheticConfig:
    labels: str = "meld"
    style: str = "default"
    seed: int = 0
    train_per_class: int = 300
    val_per_class: int = 50
    test_per_class: int = 100
    val_speakers: int = 4
    test_speakers: int = 6
    p_neutral_words: float = 0.3
    p_contradicting_words: float = 0.2
    prosody_jitter: float = 1.0
    prosody_pull: float | None = None  # None: the style's (share by which profiles move toward neutral)
    prosody_offset: tuple[float, float, float, float] | None = None  # None: the style's
    max_seconds: float = 4.0

    def __post_init__(self) -> None:
        voices = len(get_style(self.style).voices)
        if not 0 <= self.p_neutral_words + self.p_contradicting_words <= 1:
            raise ValueError(
                "dataset.p_neutral_words + dataset.p_contradicting_words must lie in [0, 1], got "
                f"{self.p_neutral_words} + {self.p_contradicting_words}"
            )
        needed = {"train": self.train_per_class > 0, "val": self.val_per_class > 0, "test": self.test_per_class > 0}
        if needed["val"] != (self.val_speakers > 0) or needed["test"] != (self.test_speakers > 0):
            raise ValueError(
                "dataset.val_speakers / dataset.test_speakers must be > 0 exactly when the split has items "
                f"(val_per_class={self.val_per_class}, test_per_class={self.test_per_class})"
            )
        if self.val_speakers + self.test_speakers + needed["train"] > voices:
            raise ValueError(
                f"dataset.val_speakers + dataset.test_speakers must leave training speakers out of the {voices} voices "
                f"of style {self.style!r}"
            )


class SyntheticCorpus:
    """The generated corpus, cached under ``root/<fingerprint of the config>/``."""

    name = "synthetic"

    def __init__(self, root: str | os.PathLike, **config) -> None:
        if config.get("prosody_offset") is not None:
            config["prosody_offset"] = tuple(float(x) for x in config["prosody_offset"])
        self.config = SyntheticConfig(**config)
        style = get_style(self.config.style)
        if self.config.prosody_pull is not None:
            style = replace(style, pull=float(self.config.prosody_pull))
        if self.config.prosody_offset is not None:
            style = replace(style, offset=self.config.prosody_offset)
        self.style = style
        self.labels = label_set(self.config.labels)
        missing = [lab for lab in self.labels if lab not in PROSODY_PROFILES]
        if missing:
            raise ValueError(f"the synthetic corpus has no prosody profile for labels {missing}")
        # the style's content is part of the key: editing a style's voices or words builds a new corpus
        self.dir = Path(root) / fingerprint({**vars(self.config), "style": asdict(self.style)})

    # ----------------------------------------------------------------- public
    def items(self, split: str) -> list[Item]:
        """Items of ``split`` (``train``, ``val``, ``test`` or ``all``), generating the corpus if needed."""
        if split == "all":
            return [item for s in SPLITS for item in self.items(s)]
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; valid splits: {[*SPLITS, 'all']}")
        self.prepare()
        return read_built_manifest(self.dir, split, self.labels)

    def prepare(self) -> Path:
        """Generate the corpus once; later calls find it in the cache."""
        return build_once(self.dir, self._build)

    def _build(self, out: Path) -> None:
        (out / "audio").mkdir()
        log.info("generating the synthetic corpus into %s", self.dir)
        for split, items in in_fresh_process(self._generate, out).items():  # eSpeak's audio follows its history
            write_manifest(items, out / f"{split}.jsonl")

    # ---------------------------------------------------------------- private
    def _speakers(self, rng: np.random.Generator) -> dict[str, list[str]]:
        voices = list(self.style.voices)
        order = rng.permutation(len(voices))
        voices = [voices[i] for i in order]
        c = self.config
        return {
            "test": voices[: c.test_speakers],
            "val": voices[c.test_speakers : c.test_speakers + c.val_speakers],
            "train": voices[c.test_speakers + c.val_speakers :],
        }

    def _generate(self, out: Path) -> dict[str, list[Item]]:
        c = self.config
        rng = np.random.default_rng(c.seed)
        tts = Espeak()
        speakers = self._speakers(rng)
        # A speaker's habitual offsets from the class profile (rate, pitch, range, volume).
        speaker_offset = {
            v: rng.normal(0.0, (8.0, 5.0, 6.0, 8.0)) * c.prosody_jitter for vs in speakers.values() for v in vs
        }
        per_class = {"train": c.train_per_class, "val": c.val_per_class, "test": c.test_per_class}
        result: dict[str, list[Item]] = {}
        for split in SPLITS:
            items = []
            for label in self.labels if per_class[split] else ():
                for k in range(per_class[split]):
                    voice = speakers[split][int(rng.integers(len(speakers[split])))]
                    items.append(self._utterance(tts, rng, out, split, label, voice, speaker_offset[voice], k))
            order = rng.permutation(len(items))
            result[split] = [items[i] for i in order]
        return result

    def _utterance(self, tts, rng, out, split, label, voice, offset, k) -> Item:
        c, style = self.config, self.style
        mean = style.profile(label)
        jitter = rng.normal(0.0, (12.0, 7.0, 10.0, 14.0)) * c.prosody_jitter
        rate, pitch, prange, volume = mean + offset + jitter
        prosody = Prosody(
            rate=int(np.clip(rate, 90, 260)),
            pitch=int(np.clip(pitch, 5, 99)),
            range=int(np.clip(prange, 0, 99)),
            volume=int(np.clip(volume, 30, 200)),
        )
        draw = rng.random()
        if draw < c.p_neutral_words:
            word_class, words = "neutral", "neutral"
        elif draw < c.p_neutral_words + c.p_contradicting_words:
            others = [lab for lab in self.labels if lab not in (label, "neutral")]
            word_class, words = others[int(rng.integers(len(others)))], "contradicting"
        else:
            word_class, words = label, "matching"
        keyword = style.keywords[word_class][int(rng.integers(len(style.keywords[word_class])))]
        template = style.templates[int(rng.integers(len(style.templates)))]
        topic = style.topics[int(rng.integers(len(style.topics)))]
        text = template.format(kw=keyword, topic=topic)
        wav = to_mono_16k(tts.synthesize(text, voice, prosody), tts.sample_rate)
        wav = wav[: int(c.max_seconds * SAMPLE_RATE)]
        path = out / "audio" / f"{split}_{label}_{k:05d}.flac"
        sf.write(str(path), wav, SAMPLE_RATE)
        final = self.dir / "audio" / path.name
        meta = {
            "keywords": [keyword],
            "words": words,
            "word_class": word_class,
            "topic": topic,
            "voice": style.voices[voice],
            "pitch": level("pitch", prosody.pitch),
            "speed": level("speed", prosody.rate),
            "volume": level("volume", prosody.volume),
            "intonation": level("intonation", prosody.range),
            "seconds": round(len(wav) / SAMPLE_RATE, 3),
        }
        return Item(path=str(final), label=label, speaker=voice, split=split, transcript=text, meta=meta)
