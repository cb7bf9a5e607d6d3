"""Transcribed speech of many sentences in many voices: speech recognition data for the embedded base.

A real LALM learns to hear words from thousands of hours of transcribed speech, of every kind of
sentence and speaker.  The embedded base's emotion corpora have few sentence frames (four or five
each) and a few voices each, so a small model can learn *which corpus a voice belongs to* and then
transcribe that corpus's frames instead of the words (docs/results.md: a base pretrained with many
more voices on the pretraining corpus's side only transcribed unknown voices as its sentences).
This corpus breaks that link: words of a word list (the pretraining's lexicon) in :data:`FRAMES`,
none a sentence frame of any emotion corpus, spoken by many voices at prosody drawn across eSpeak's
whole range.  It has no emotion labels and is only ever asked what was said.

Each clip is a pure function of the seed and its index; the corpus is cached under
``root/<fingerprint of its config, words and voices>/``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import soundfile as sf

from emorl.data.audio import SAMPLE_RATE, to_mono_16k
from emorl.data.corpus import SPLITS, Item, build_once, fingerprint, read_built_manifest, write_manifest
from emorl.data.tts import Espeak, Prosody, in_fresh_process

log = logging.getLogger(__name__)

#: Sentence frames: ``{a}``, ``{b}``, ``{c}`` take words of the list; none is a frame of an emotion corpus.
FRAMES = (
    "{a}",
    "{a} {b}",
    "{a} {b} {c}",
    "the next word is {a}",
    "she wrote {a} on the board",
    "he said {a} and then {b}",
    "we talked about {a} and {b}",
    "they call it {a}",
    "nobody says {a} anymore",
    "please write down {a}",
    "is {a} the right word",
    "the answer was {a}",
    "{a} is on the list",
    "say {a} again",
    "my favourite word is {a}",
    "try saying {a} slowly",
    "you said {a} not {b}",
    "the sign read {a}",
    "look up {a} in the dictionary",
    "{a} comes before {b}",
    "it rhymes with {a}",
    "the title was {a} and {b}",
    "one more time {a}",
    "a story about {a}",
    "somewhere between {a} and {b}",
    "i never heard of {a}",
    "first {a} then {b} then {c}",
    "the teacher spelled {a}",
    "put {a} next to {b}",
    "can you hear {a}",
)

#: The label of every clip: transcribed speech carries no emotion label and is never asked one.
UNLABELLED = ""

#: eSpeak settings drawn uniformly per clip (rate in words per minute, pitch, range, volume): the whole
#: span the emotion corpora use, so that no prosody marks this corpus.
PROSODY_SPAN = ((100, 230), (10, 95), (5, 95), (50, 190))


class SpeechCorpus:
    """Transcribed sentences (:data:`FRAMES` filled with ``words``) spoken by ``voices``; a training split only.

    Args:
        root: cache folder (the corpus goes to ``root/<fingerprint>/``).
        words: the words sentences are made of (at least 3; sorted and deduplicated here).
        voices: eSpeak voices (``accent+variant``) -> gender; each clip's voice is drawn from them.
        clips: how many clips.
        seed: with the clip's index, fixes its sentence, voice and prosody.
        max_seconds: no clip is longer (a sentence that runs past it is drawn again).
    """

    name = "speech"
    labels = (UNLABELLED,)

    def __init__(self, root: str | os.PathLike, words: Sequence[str], voices: Mapping[str, str], clips: int = 3000,
                 seed: int = 0, max_seconds: float = 4.0) -> None:
        self.words = sorted({str(w) for w in words})
        if len(self.words) < 3:
            raise ValueError(f"pretrain.speech: the speech corpus needs at least 3 words, got {len(self.words)}")
        if not voices:
            raise ValueError("pretrain.speech: the speech corpus needs at least one voice, got none")
        if int(clips) <= 0:
            raise ValueError(f"pretrain.speech.clips must be > 0, got {clips}")
        self.voices = dict(sorted(voices.items()))
        self.clips, self.seed, self.max_seconds = int(clips), int(seed), float(max_seconds)
        self.dir = Path(root) / fingerprint({"frames": FRAMES, "words": self.words, "voices": self.voices,
                                             "clips": self.clips, "seed": self.seed, "max_seconds": self.max_seconds,
                                             "prosody": PROSODY_SPAN})

    def sentence(self, rng: np.random.Generator) -> str:
        """A frame of :data:`FRAMES` filled with distinct words of the list."""
        frame = FRAMES[int(rng.integers(len(FRAMES)))]
        picked = [self.words[int(i)] for i in rng.choice(len(self.words), size=3, replace=False)]
        return frame.format(a=picked[0], b=picked[1], c=picked[2])

    def items(self, split: str = "train") -> list[Item]:
        """The clips of ``split``: all of them for ``train`` (and ``all``), none for ``val`` and ``test``."""
        if split not in (*SPLITS, "all"):
            raise ValueError(f"unknown split {split!r}; valid splits: {[*SPLITS, 'all']}")
        if split in ("val", "test"):
            return []
        self.prepare()
        return read_built_manifest(self.dir, "train", self.labels)

    def prepare(self) -> Path:
        """Generate the corpus once; later calls find it in the cache."""
        return build_once(self.dir, self._build)

    def _build(self, out: Path) -> None:
        (out / "audio").mkdir()
        log.info("generating the speech corpus (%d clips, %d voices, %d words) into %s", self.clips, len(self.voices),
                 len(self.words), self.dir)
        write_manifest(in_fresh_process(self._generate, out), out / "train.jsonl")  # eSpeak's audio follows its history

    def _generate(self, out: Path) -> list[Item]:
        tts, voices = Espeak(), list(self.voices)
        return [self._clip(tts, voices, k, out) for k in range(self.clips)]

    def _clip(self, tts: Espeak, voices: list[str], k: int, out: Path) -> Item:
        """Clip ``k``: a drawn sentence, voice and prosody; drawn again (from the same stream) while the speech runs
        past ``max_seconds``, so that a transcript never names a word the clip cuts off."""
        rng = np.random.default_rng([self.seed, k])
        for _ in range(32):
            voice = voices[int(rng.integers(len(voices)))]
            text = self.sentence(rng)
            rate, pitch, prange, volume = (int(rng.integers(lo, hi + 1)) for lo, hi in PROSODY_SPAN)
            wav = to_mono_16k(tts.synthesize(text, voice, Prosody(rate, pitch, prange, volume)), tts.sample_rate)
            if len(wav) <= int(self.max_seconds * SAMPLE_RATE):
                break
        else:
            raise ValueError(f"speech clip {k}: 32 drawn sentences all ran past {self.max_seconds} s; "
                             "use shorter words or a larger max_seconds")
        name = f"train_{k:05d}.flac"
        sf.write(str(out / "audio" / name), wav, SAMPLE_RATE)
        meta = {"voice": self.voices[voice], "seconds": round(len(wav) / SAMPLE_RATE, 3)}
        return Item(path=str(self.dir / "audio" / name), label=UNLABELLED, speaker=voice, split="train",
                    transcript=text, meta=meta)
