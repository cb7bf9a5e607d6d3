"""Reasoning strategies of EMO-RL (section 3.1): IR, EUR and ESR.

A strategy owns three things that must agree with each other: the instruction text that asks
for a format, the checker that decides whether a response follows it (eq. 6), and the parser
that reads the answer out of a response.  Tag names are configuration.

* IR  (implicit reasoning):            ``<answer>label</answer>``
* EUR (explicit unstructured):         ``<think>free text</think><answer>label</answer>``
* ESR (explicit structured reasoning): ``<think>`` holding named sections in a fixed order
  (what was said, key words, how it was said, the synthesis), then ``<answer>``.

The checker scans with ``str.find`` only: its cost is linear in the response length, with no
regular-expression backtracking however adversarial the text.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass


def free_answer_prompt(question: str, answer_tag: str = "answer") -> str:
    """A question whose answer is free text or one word without options (a transcript, a description, a level,
    a rate), with the instruction to answer inside ``answer_tag``: the one wording that pretraining, task
    alternation, the prosody questions and the analysis scripts all ask.

    >>> free_answer_prompt("What does the speaker say?")
    'What does the speaker say? Give the answer inside <answer></answer>.'
    """
    return f"{question} Give the answer inside <{answer_tag}></{answer_tag}>."


def free_answer_target(answer: str, answer_tag: str = "answer") -> str:
    """What a :func:`free_answer_prompt` question is answered with: ``answer`` inside ``answer_tag``, nothing else.

    >>> free_answer_target("pitch high, speed fast", "final")
    '<final>pitch high, speed fast</final>'
    """
    return f"<{answer_tag}>{answer}</{answer_tag}>"


@dataclass(frozen=True)
class Section:
    """One named sub-section of a structured ``<think>``: its tag and what it describes."""

    tag: str
    describes: str


@dataclass(frozen=True)
class ReasoningStrategy:
    """A response format: instruction text, format checker and answer parser.

    Args:
        name: short name (``ir``, ``eur``, ``esr``).
        answer_tag: tag that wraps the final answer.
        think_tag: tag that wraps the reasoning; ``None`` for answer-only.
        sections: sub-sections required inside the think block, in order (ESR).
        question: the question, with ``{options}`` where the comma-separated labels go.
        reasoning_instruction: sentence that asks for the reasoning; ``{think}`` and
            ``{sections}`` are filled in from the tags.
        answer_instruction: sentence that asks for the answer; ``{answer}`` is filled in.
    """

    name: str
    answer_tag: str = "answer"
    think_tag: str | None = None
    sections: tuple[Section, ...] = ()
    question: str = "Which emotion does the speaker express? Options: {options}."
    reasoning_instruction: str = ""
    answer_instruction: str = "Give only the chosen option inside <{answer}></{answer}>."

    def __post_init__(self) -> None:
        sections = tuple(s if isinstance(s, Section) else Section(**s) for s in self.sections)
        object.__setattr__(self, "sections", sections)
        if sections and not self.think_tag:
            raise ValueError(f"strategy {self.name!r}: sections need a think_tag to live in")
        tags = [self.answer_tag, *([self.think_tag] if self.think_tag else []), *(s.tag for s in sections)]
        for tag in tags:
            if not tag or not tag.replace("_", "").isalnum():
                raise ValueError(f"strategy {self.name!r}: tag {tag!r} must be a non-empty alphanumeric name")
        if len(set(tags)) != len(tags):
            raise ValueError(f"strategy {self.name!r}: tag names must be distinct, got {tags}")
        if "{options}" not in self.question:
            raise ValueError(f"strategy {self.name!r}: question must contain '{{options}}', got {self.question!r}")

    # ------------------------------------------------------------------ text
    @property
    def tags(self) -> tuple[str, ...]:
        """Every tag this strategy knows, outermost first."""
        inner = tuple(s.tag for s in self.sections)
        return ((self.think_tag,) if self.think_tag else ()) + inner + (self.answer_tag,)

    def instruction(self) -> str:
        """The format instruction appended to every question."""
        parts = []
        if self.think_tag:
            listed = ", ".join(f"{s.describes} in <{s.tag}></{s.tag}>" for s in self.sections)
            parts.append(self.reasoning_instruction.format(think=self.think_tag, sections=listed))
        parts.append(self.answer_instruction.format(answer=self.answer_tag))
        return " ".join(p for p in parts if p)

    def prompt(self, options: Sequence[str], question: str | None = None) -> str:
        """Question + options + format instruction, as the user turn's text.

        >>> ReasoningStrategy("ir").prompt(["joy", "anger"])
        'Which emotion does the speaker express? Options: joy, anger. Give only the chosen option inside <answer></answer>.'
        """
        q = (question or self.question).format(options=", ".join(options))
        return f"{q} {self.instruction()}"

    def render(self, answer: str, think: str | None = None, sections: Mapping[str, str] | None = None) -> str:
        """Write a response in this format (used for warm-start targets and tests).

        ``sections`` maps section tags to their text (ESR); ``think`` is free text (EUR).
        """
        out = ""
        if self.think_tag:
            if self.sections:
                missing = [s.tag for s in self.sections if not (sections or {}).get(s.tag)]
                if missing:
                    raise ValueError(f"strategy {self.name!r}: render needs text for sections {missing}")
                body = "".join(f"<{s.tag}>{sections[s.tag]}</{s.tag}>" for s in self.sections)
            else:
                if not think:
                    raise ValueError(f"strategy {self.name!r}: render needs think text")
                body = think
            out += f"<{self.think_tag}>{body}</{self.think_tag}>"
        return out + f"<{self.answer_tag}>{answer}</{self.answer_tag}>"

    # ---------------------------------------------------------------- checks
    def follows_format(self, text: str) -> bool:
        """Eq. 6: True iff ``text`` is exactly this strategy's structure.

        Every required tag appears once, in order, with non-empty content; only whitespace
        lies between and around the tags; nothing follows the answer.

        >>> ReasoningStrategy("eur", think_tag="think").follows_format("<think>x</think><answer>joy</answer>")
        True
        """
        nodes: list[tuple[str, tuple[str, ...]]] = []
        if self.think_tag:
            nodes.append((self.think_tag, tuple(s.tag for s in self.sections)))
        nodes.append((self.answer_tag, ()))
        return _match_sequence(text, nodes, self.tags)

    def extract_answer(self, text: str) -> str | None:
        """The content of the single answer block, or None when there is not exactly one.

        >>> ReasoningStrategy("ir").extract_answer("I think <answer> Joy. </answer>")
        ' Joy. '
        """
        open_tag, close_tag = f"<{self.answer_tag}>", f"</{self.answer_tag}>"
        if text.count(open_tag) != 1 or text.count(close_tag) != 1:
            return None
        start = text.find(open_tag) + len(open_tag)
        end = text.find(close_tag, start)
        return None if end < 0 else text[start:end]

    def reasoning_parts(self, text: str) -> dict[str, str]:
        """The reasoning a response gives: each ESR section's text, or EUR's free think text.

        Sections that are missing or unclosed are left out; a response without reasoning gives {}.

        >>> s = ReasoningStrategy("esr", think_tag="think", sections=({"tag": "prosody", "describes": "how"},))
        >>> s.reasoning_parts("<think><prosody> loud, fast </prosody></think><answer>anger</answer>")
        {'prosody': 'loud, fast'}
        """
        def block(tag: str, within: str) -> str | None:
            part = section(within, tag)
            return None if part is None else part.strip()

        if not self.think_tag:
            return {}
        think = block(self.think_tag, text)
        if think is None:
            return {}
        if not self.sections:
            return {self.think_tag: think}
        return {s.tag: part for s in self.sections if (part := block(s.tag, think)) is not None}


def section(text: str, tag: str) -> str | None:
    """The content of the first ``<tag>…</tag>`` in ``text`` (None when absent or unclosed).

    >>> section("<prosody>pitch high</prosody>", "prosody"), section("<prosody>open", "prosody")
    ('pitch high', None)
    """
    start = text.find(f"<{tag}>")
    if start < 0:
        return None
    start += len(tag) + 2
    end = text.find(f"</{tag}>", start)
    return None if end < 0 else text[start:end]


def gold_response(strategy: ReasoningStrategy, label: str, item=None, levels: Mapping[str, str] | None = None) -> str:
    """The response supervised fine-tuning trains on: the gold label in the strategy's format.

    IR: the answer alone (the paper's SFT + IR).  EUR and ESR: reasoning-augmented supervision
    ("Beyond Classification"): what was said (the corpus transcript), its key words (where the
    corpus marks them), how it was said (the clip's measured prosody levels, ``levels``), and a
    synthesis that names the gold label.

    >>> from emorl.prompts import get_strategy
    >>> gold_response(get_strategy("ir"), "joy")
    '<answer>joy</answer>'
    """
    if not strategy.think_tag:
        return strategy.render(answer=label)
    if item is None or not levels or not getattr(item, "transcript", ""):
        raise ValueError(
            f"algo=sft with reasoning={strategy.name} trains on reasoning built from each clip's transcript and "
            "measured prosody: the corpus needs transcripts (MELD, IEMOCAP, the synthetic corpus, a manifest's "
            "transcript column); or use reasoning=ir (the paper's SFT + IR)"
        )
    how = describe(levels)
    keywords = ", ".join((getattr(item, "meta", None) or {}).get("keywords") or []) or "none marked"
    synthesis = f"what was said and a voice with {how} suggest {label}"
    if not strategy.sections:
        return strategy.render(answer=label, think=f"they say {item.transcript}. it sounds like {how}. so {label}.")
    texts = (item.transcript, keywords, how, synthesis)
    if len(strategy.sections) != len(texts):
        raise ValueError(f"reasoning-augmented targets fill {len(texts)} ESR sections (said, key words, how, synthesis); "
                         f"strategy {strategy.name!r} has {len(strategy.sections)}")
    return strategy.render(answer=label, sections={sec.tag: text for sec, text in zip(strategy.sections, texts, strict=True)})


def describe(levels: Mapping[str, str]) -> str:
    """The ``<prosody>`` wording of measured levels (attributes that were measured, in a fixed order).

    >>> describe({"pitch": "high", "speed": "slow", "volume": "medium", "intonation": "lively", "contour": "rising"})
    'pitch high, intonation lively, speed slow, volume medium, rising contour'
    """
    parts = [f"{a} {levels[a]}" for a in ("pitch", "intonation", "speed", "volume") if a in levels]
    if levels.get("contour") in ("rising", "falling"):
        parts.append(f"{levels['contour']} contour")
    return ", ".join(parts)


def parse_label(answer: str | None, options: Sequence[str]) -> str | None:
    """Map an answer string to exactly one option, or None.

    Case, surrounding whitespace and one trailing period are ignored; anything else
    (a hedge naming two labels, extra words, an unknown label) gives None.

    >>> parse_label(" Sadness. ", ["joy", "sadness"])
    'sadness'
    >>> parse_label("joy or sadness", ["joy", "sadness"]) is None
    True
    """
    if answer is None:
        return None
    key = answer.strip()
    if key.endswith("."):
        key = key[:-1].rstrip()
    key = key.lower()
    for option in options:
        if option.lower() == key:
            return option
    return None


def _match_sequence(text: str, nodes: Sequence[tuple[str, tuple[str, ...]]], all_tags: Sequence[str]) -> bool:
    """Whether ``text`` is exactly ``<t1>..</t1> <t2>..</t2> ...`` (whitespace between).

    Each node is ``(tag, children)``: a node with children must hold exactly its children's
    sequence; a leaf holds non-empty text with no tag of ``all_tags`` in it.
    """
    pos = _skip_ws(text, 0)
    for tag, children in nodes:
        open_tag, close_tag = f"<{tag}>", f"</{tag}>"
        if not text.startswith(open_tag, pos):
            return False
        start = pos + len(open_tag)
        end = text.find(close_tag, start)
        if end < 0:
            return False
        body = text[start:end]
        if children:
            if not _match_sequence(body, [(c, ()) for c in children], all_tags):
                return False
        elif not body.strip() or _holds_tag(body, all_tags):
            return False
        pos = _skip_ws(text, end + len(close_tag))
    return pos == len(text)


def _holds_tag(body: str, tags: Sequence[str]) -> bool:
    return any(f"<{t}>" in body or f"</{t}>" in body for t in tags)


def _skip_ws(text: str, pos: int) -> int:
    while pos < len(text) and text[pos].isspace():
        pos += 1
    return pos


_REASONING = "Think it through inside <{think}></{think}>."
_STRUCTURED = "Inside <{think}></{think}> write {sections}."

#: The paper's three strategies with emorl's default tags; ``conf/reasoning/*.yaml`` may
#: override any field.
DEFAULT_STRATEGIES: dict[str, dict] = {
    "ir": {},
    "eur": {"think_tag": "think", "reasoning_instruction": _REASONING},
    "esr": {
        "think_tag": "think",
        "reasoning_instruction": _STRUCTURED,
        "sections": (
            Section("transcript", "what was said"),
            Section("keywords", "the key words"),
            Section("prosody", "how it was said (intonation, speed, volume, voice quality)"),
            Section("synthesis", "your conclusion from both"),
        ),
    },
}


def get_strategy(name: str, **overrides) -> ReasoningStrategy:
    """A default strategy by name, with fields overridden (Hydra's ``_target_``).

    >>> get_strategy("esr").tags
    ('think', 'transcript', 'keywords', 'prosody', 'synthesis', 'answer')
    """
    if isinstance(name, ReasoningStrategy):
        return name
    if name not in DEFAULT_STRATEGIES:
        raise KeyError(f"unknown reasoning strategy {name!r}; valid names: {sorted(DEFAULT_STRATEGIES)}")
    fields = {**DEFAULT_STRATEGIES[name], **{k: v for k, v in overrides.items() if v is not None}}
    if "sections" in overrides and overrides["sections"] is not None:
        fields["sections"] = tuple(
            s if isinstance(s, Section) else Section(**dict(s)) for s in overrides["sections"]
        )
    return ReasoningStrategy(name=name, **fields)
