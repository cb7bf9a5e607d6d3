"""A reasoning reward scored by a local language model: EmotionThinker's rubric judge.

EmotionThinker (ICLR 2026) rates each rollout's reasoning on four dimensions, 1 to 5: factual
alignment, interpretation, caption completeness and fluency.  Here the judge is any local causal
language model (``from_pretrained`` on a folder or a cached hub id; nothing is downloaded).  It
reads the clip's reference facts (the corpus transcript, the measured prosody levels, the gold
emotion) beside the completion's reasoning, once per dimension, and its score is the expected
digit under its next-token distribution restricted to ``1``..``5`` — deterministic, no sampling,
no answer parsing.  The reward is the mean over the dimensions of ``(score - 1) / 4``, in [0, 1];
a completion with no reasoning section scores 0 without asking the judge.

The judge is loaded on the first call, so that building the reward (the preflight) stays fast.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from emorl.prompts import section

log = logging.getLogger(__name__)

#: EmotionThinker's four rubric dimensions, each a question the judge answers with 1..5.
RUBRIC: dict[str, str] = {
    "factual_alignment": "Do its statements about the voice (pitch, speed, volume, intonation) and the words agree "
                         "with the reference facts?",
    "interpretation": "Does it connect the vocal and verbal cues to the emotion it concludes, plausibly?",
    "caption_completeness": "Does it cover the relevant cues (the words, the key words and the voice), not only some?",
    "fluency": "Is it clear, well-formed language?",
}
DIGITS = ("1", "2", "3", "4", "5")


def reference_facts(label: str | None, levels: Mapping[str, str] | None, transcript: str | None) -> str:
    """The facts the judge checks the reasoning against, one per line (those that are known).

    >>> print(reference_facts("anger", {"pitch": "high", "speed": "fast"}, "stop it"))
    transcript: "stop it"
    measured prosody: pitch high, speed fast
    emotion: anger
    """
    lines = []
    if transcript and transcript.strip():
        lines.append(f'transcript: "{transcript.strip()}"')
    if levels:
        lines.append("measured prosody: " + ", ".join(f"{k} {v}" for k, v in levels.items()))
    if label:
        lines.append(f"emotion: {label}")
    return "\n".join(lines)


def judge_prompt(dimension: str, facts: str, reasoning: str) -> str:
    """The judge's question about one rubric dimension; its next token should be a digit."""
    if dimension not in RUBRIC:
        raise ValueError(f"rubric dimension {dimension!r} is not one of {sorted(RUBRIC)}")
    return (
        "You rate an explanation of the emotion in a speech clip.\n"
        f"Reference facts:\n{facts or '(none)'}\n"
        f"Explanation:\n{reasoning.strip()}\n"
        f"Criterion: {RUBRIC[dimension]}\n"
        "Answer with one digit from 1 (poor) to 5 (excellent).\n"
        "Score: "
    )


def expected_score(digit_logits: torch.Tensor) -> torch.Tensor:
    """The expected rating under the distribution restricted to the digits 1..5: (N, 5) -> (N,) in [1, 5].

    >>> [round(x, 4) for x in expected_score(torch.tensor([[0.0, 0, 0, 0, 0], [0, 0, 0, -1e9, 9e9]])).tolist()]
    [3.0, 5.0]
    """
    probs = digit_logits.float().softmax(dim=-1)
    return probs @ torch.arange(1, 6, dtype=probs.dtype, device=probs.device)


def rubric_reward(scores: torch.Tensor) -> torch.Tensor:
    """Mean over the dimensions of ``(score - 1) / 4``: (N, D) ratings in [1, 5] -> (N,) in [0, 1].

    >>> [round(x, 6) for x in rubric_reward(torch.tensor([[5.0, 5, 1, 1], [3.0, 3, 3, 3]])).tolist()]
    [0.5, 0.5]
    """
    return ((scores - 1.0) / 4.0).mean(dim=-1)


class LocalJudge:
    """A causal LM that rates reasoning: ``judge.scores(prompts) -> (N,)`` expected digits."""

    def __init__(self, model: str, dtype: str = "float32", device: str = "auto", batch_size: int = 16,
                 chat_template: bool = True):
        self.path, self.dtype, self.batch_size, self.chat_template = str(model), dtype, batch_size, chat_template
        self.device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
        self._model = self._tokenizer = self._digits = None

    def _load(self) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        dtypes = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
        log.info("loading the reasoning judge %s", self.path)
        tokenizer = AutoTokenizer.from_pretrained(self.path)
        tokenizer.padding_side = "left"  # the last position of every row is the prompt's last token
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        digits = [tokenizer(d, add_special_tokens=False)["input_ids"] for d in DIGITS]
        if any(len(ids) != 1 for ids in digits):
            raise ValueError(f"{self.path}: the judge's tokenizer does not spell each digit 1..5 as one token "
                             "(reward.scorers.judge.model needs one that does)")
        model = AutoModelForCausalLM.from_pretrained(self.path, dtype=dtypes[self.dtype]).to(self.device).eval()
        model.requires_grad_(False)
        self._model, self._tokenizer, self._digits = model, tokenizer, [ids[0] for ids in digits]

    def _format(self, prompt: str) -> str:
        if self.chat_template and getattr(self._tokenizer, "chat_template", None):
            return self._tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                                       add_generation_prompt=True) + "Score: "
        return prompt

    @torch.no_grad()
    def scores(self, prompts: Sequence[str]) -> torch.Tensor:
        """Expected ratings 1..5 of ``prompts`` (N,), in batches of ``batch_size``."""
        if self._model is None:
            self._load()
        out = []
        for start in range(0, len(prompts), self.batch_size):
            chunk = [self._format(p) for p in prompts[start : start + self.batch_size]]
            enc = self._tokenizer(chunk, return_tensors="pt", padding=True).to(self.device)
            positions = (enc["attention_mask"].cumsum(-1) - 1).clamp(min=0)
            logits = self._model(**enc, position_ids=positions).logits[:, -1]
            out.append(expected_score(logits[:, self._digits]).cpu())
        return torch.cat(out) if out else torch.zeros(0)


def make_judge_reward(labels=None, strategy=None, model: str | None = None, dimensions: Sequence[str] = tuple(RUBRIC),
                      dtype: str = "float32", device: str = "auto", batch_size: int = 16, chat_template: bool = True):
    """The rubric judge reward in TRL's convention: ``fn(completions, label=..., prosody=..., transcript=...)``.

    ``model``: a folder (or cached hub id) of a causal LM; checked here, loaded at the first call.
    The reasoning judged is the strategy's think section (the whole completion for a strategy without one).
    """
    if not model:
        raise ValueError("model is not set: give a local causal LM to judge with (reward.scorers.judge.model=<folder>)")
    from emorl.models.loading import looks_like_a_folder

    if looks_like_a_folder(model) and not Path(model).expanduser().is_dir():
        raise FileNotFoundError(f"{model}: no such judge model folder (reward.scorers.judge.model)")
    unknown = [d for d in dimensions if d not in RUBRIC]
    if unknown or not dimensions:
        raise ValueError(f"dimensions {list(dimensions)}: each must be one of {sorted(RUBRIC)}")
    judge = LocalJudge(model, dtype=dtype, device=device, batch_size=batch_size, chat_template=chat_template)
    think = getattr(strategy, "think_tag", None)

    def rubric_judge(completions, label=None, prosody=None, transcript=None, **kwargs) -> list[float]:
        n = len(completions)
        labels_, levels, said = (c if c is not None else [None] * n for c in (label, prosody, transcript))
        prompts, owners = [], []
        for i, completion in enumerate(completions):
            reasoning = section(completion, think) if think else completion
            if not reasoning or not reasoning.strip():
                continue
            facts = reference_facts(labels_[i], levels[i], said[i])
            prompts += [judge_prompt(d, facts, reasoning) for d in dimensions]
            owners.append(i)
        rewards = [0.0] * n
        if prompts:
            per = rubric_reward(judge.scores(prompts).view(len(owners), len(dimensions)))
            for i, value in zip(owners, per.tolist(), strict=True):
                rewards[i] = value
        return rewards

    rubric_judge.judge = judge
    return rubric_judge
