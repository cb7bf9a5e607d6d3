"""From corpus items to model batches: prompt text, audio, processor call.

A prompt is Qwen2-Audio's chat format: one user turn holding the audio and the question.
The processor keyword is ``audio=`` (transformers 5 silently drops ``audios=``).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from emorl.data.audio import SAMPLE_RATE, load_audio
from emorl.data.corpus import Item
from emorl.prompts import ReasoningStrategy, free_answer_prompt, free_answer_target


@dataclass
class Example:
    """One prompt: audio, the user text, and (for supervised tasks) the target response."""

    audio: np.ndarray | list[np.ndarray]  # several clips: a question comparing them; [] for a text-only question
    text: str
    label: str = ""
    options: tuple[str, ...] = ()
    target: str | None = None
    item: Item | None = None
    prosody: dict | None = None  # measured prosody levels of the clip (grounding rewards)
    task: str = ""  # the pretraining mixture's task that drew it (emorl.pretraining.tasks)


class EmotionQuestions(torch.utils.data.Dataset):
    """Corpus items as emotion multiple-choice questions in one reasoning strategy.

    ``target`` (a function of the strategy and the gold label) adds the response a supervised
    model learns.  With ``shuffle_options`` each item lists the labels in its own order, fixed by ``seed`` and
    the clip's place in its corpus (:attr:`~emorl.data.corpus.Item.clip_id`; the same at every epoch, every
    evaluation and wherever the corpus lives): a model cannot score by answering a position, and a positional
    habit of the base spreads over all labels.
    """

    def __init__(
        self,
        items: Sequence[Item],
        strategy: ReasoningStrategy,
        labels: Sequence[str],
        shuffle_options: bool = False,
        seed: int = 0,
        target=None,
        prosody: dict[str, dict] | None = None,
    ) -> None:
        self.items = list(items)
        self.target = target
        self.prosody = prosody or {}
        self.strategy = strategy
        self.labels = tuple(labels)
        self.shuffle_options = shuffle_options
        self.seed = seed

    def __len__(self) -> int:
        return len(self.items)

    def description(self, item: Item) -> Example:
        text, target = description_task(self.strategy, item, self.prosody.get(item.path))
        return Example(audio=load_audio(item.path), text=text, label=item.label, options=self.options(item),
                       target=target, item=item, prosody=self.prosody.get(item.path))

    def options(self, item: Item) -> tuple[str, ...]:
        if not self.shuffle_options:
            return self.labels
        order = list(self.labels)
        random.Random(f"{self.seed}:{item.clip_id}").shuffle(order)
        return tuple(order)

    def __getitem__(self, index: int) -> Example:
        if index >= len(self.items):  # task alternation: the description task of item index - n
            return self.description(self.items[index - len(self.items)])
        item = self.items[index]
        options = self.options(item)
        return Example(
            audio=load_audio(item.path),
            text=self.strategy.prompt(options),
            label=item.label,
            options=options,
            target=self.target(self.strategy, item.label, item=item, levels=self.prosody.get(item.path))
            if self.target else None,
            item=item,
            prosody=self.prosody.get(item.path),
        )


DESCRIPTION_TASKS = {
    "prosody": "Describe how the speaker talks: pitch, intonation, speed and volume.",
    "transcript": "What does the speaker say? Write the words.",
}


def description_task(strategy: ReasoningStrategy, item: Item, levels: dict | None) -> tuple[str, str]:
    """A description-only question about the clip and its target (task alternation, "Beyond Classification"):
    the measured prosody when the clip has levels and its place in the corpus hashes even, else the transcript."""
    import zlib

    from emorl.prompts import describe

    use_prosody = bool(levels) and (zlib.crc32(item.clip_id.encode()) % 2 == 0 or not item.transcript)
    kind = "prosody" if use_prosody else "transcript"
    answer = describe(levels) if use_prosody else item.transcript
    if not answer:
        raise ValueError(f"{item.path}: no measured prosody and no transcript to describe (algo.task_alternation)")
    return free_answer_prompt(DESCRIPTION_TASKS[kind], strategy.answer_tag), free_answer_target(answer, strategy.answer_tag)


def chat_prompt(processor, text: str, clips: int = 1) -> str:
    """The chat-formatted prompt (the audio clips first, then the question), ready for generation."""
    audio = [{"type": "audio", "audio_url": f"audio{i}"} for i in range(clips)]
    conversation = [{"role": "user", "content": [*audio, {"type": "text", "text": text}]}]
    return processor.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)


def clips_of(example: Example) -> list:
    """The example's waveforms: one, or several (a question comparing clips)."""
    return list(example.audio) if isinstance(example.audio, (list, tuple)) else [example.audio]


@dataclass
class Collator:
    """Turns a list of :class:`Example` into processor tensors plus the label columns.

    With targets (supervised), appends each target and ``<|im_end|>`` and returns ``labels``
    with the prompt and padding masked to -100.
    """

    processor: object
    end_of_turn: str = "<|im_end|>"
    _prompt_cache: dict = field(default_factory=dict)

    def _prompt(self, text: str, clips: int = 1) -> str:
        if (text, clips) not in self._prompt_cache:
            self._prompt_cache[text, clips] = chat_prompt(self.processor, text, clips)
        return self._prompt_cache[text, clips]

    def __call__(self, examples: Sequence[Example]) -> dict:
        prompts = [self._prompt(e.text, len(clips_of(e))) for e in examples]
        supervised = examples[0].target is not None
        texts = [p + e.target + self.end_of_turn for p, e in zip(prompts, examples, strict=True)] if supervised else prompts
        clips = [clip for e in examples for clip in clips_of(e)]  # in prompt order
        batch = dict(
            self.processor(
                text=texts,
                audio=clips or None,  # a batch of text-only questions has no audio
                sampling_rate=SAMPLE_RATE,
                return_tensors="pt",
                padding=True,
            )
        )
        if supervised:
            batch["labels"] = self._supervised_labels(batch, examples, prompts)
        batch["label"] = [e.label for e in examples]
        batch["options"] = [e.options for e in examples]
        batch["paths"] = [e.item.path if e.item else "" for e in examples]
        batch["clips"] = [e.item.clip_id if e.item else "" for e in examples]  # names that survive a moved corpus
        batch["questions"] = [e.text for e in examples]
        batch["transcript"] = [e.item.transcript if e.item else "" for e in examples]
        batch["prosody"] = [e.prosody for e in examples]
        batch["task"] = [e.task for e in examples]
        batch["keywords"] = [list((e.item.meta or {}).get("keywords") or []) if e.item else [] for e in examples]
        return batch

    def _supervised_labels(self, batch, examples, prompts) -> torch.Tensor:
        tok = self.processor.tokenizer
        labels = batch["input_ids"].clone()
        labels[batch["attention_mask"] == 0] = -100
        for row, example in enumerate(examples):
            answer_len = len(tok(example.target + self.end_of_turn, add_special_tokens=False)["input_ids"])
            labels[row, : labels.shape[1] - answer_len] = -100
        return labels
