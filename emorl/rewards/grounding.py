"""A reasoning reward that checks what an ESR completion says against the clip itself.

EMO-RL rewards the form of the reasoning; nothing checks whether what ``<prosody>`` says about
the voice is true.  This reward reads the claims of an ESR completion and scores them against
measurements (:mod:`emorl.acoustics`) and the corpus transcript:

* **prosody**: each attribute named in the ``<prosody>`` section with one level (``pitch high``,
  ``a slow pace``, ``loud``) scores 1 when the measured level agrees and 0 when it does not; an
  attribute given two levels (a hedge: ``high or low``) scores 0; attributes not mentioned add
  nothing.  The prosody score is the mean over the attributes claimed.
* **transcript**: ``1 - WER`` of ``<transcript>`` against the corpus transcript (clipped at 0),
  where the corpus has one.
* **keywords**: the share of the ``<keywords>`` that occur in the transcript.

The reward is the mean of the components that apply; a completion that makes no claim at all
gets ``no_claim`` (a penalty).  Parsing is a single pass of ``str.find`` and word splits: linear
in the completion's length, however long or adversarial.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from emorl.prompts import section

#: Words that name an attribute, and the words for its levels (low, medium, high), synonyms included.
DEFAULT_VOCABULARY: dict[str, dict[str, tuple[str, ...]]] = {
    "pitch": {
        "names": ("pitch", "pitched", "tone", "f0", "register"),
        "low": ("low", "deep", "lower"),
        "medium": ("medium", "moderate", "average", "normal", "mid"),
        "high": ("high", "higher", "shrill"),
    },
    "speed": {
        "names": ("speed", "rate", "pace", "tempo", "speaking"),
        "slow": ("slow", "slowly", "slower", "unhurried"),
        "medium": ("medium", "moderate", "average", "normal", "steady"),
        "fast": ("fast", "quick", "quickly", "rapid", "rapidly", "faster", "hurried"),
    },
    "volume": {
        "names": ("volume", "loudness", "energy"),
        "quiet": ("quiet", "soft", "softly", "quietly", "low-volume", "faint"),
        "medium": ("medium", "moderate", "average", "normal"),
        "loud": ("loud", "loudly", "louder", "strong", "shouting"),
    },
    "intonation": {
        "names": ("intonation", "melody", "variation", "expressiveness", "range"),
        "flat": ("flat", "monotone", "monotonous", "level"),
        "varied": ("varied", "some", "moderate"),
        "lively": ("lively", "animated", "expressive", "dynamic", "wide"),
    },
}
#: Level words that name their attribute by themselves (no attribute word needed).
SELF_NAMING = {"speed": ("slow", "fast"), "volume": ("quiet", "loud"), "intonation": ("flat", "lively")}

_CLAUSE_BREAK = re.compile(r"[,;.!?\n]|\bbut\b|\bwhile\b|\bwith\b")
_WORD = re.compile(r"[a-z0-9][a-z0-9\-]*")


def _level_index(vocabulary: Mapping[str, Mapping[str, Sequence[str]]]) -> dict[str, dict[str, str]]:
    """word -> {attribute: level} for every level word."""
    index: dict[str, dict[str, str]] = {}
    for attribute, words in vocabulary.items():
        for level, synonyms in words.items():
            if level == "names":
                continue
            for word in synonyms:
                index.setdefault(word, {})[attribute] = level
    return index


def prosody_claims(text: str, vocabulary: Mapping = DEFAULT_VOCABULARY) -> dict[str, str | None]:
    """The level each attribute is claimed to have in ``text``; ``None`` for a hedge (two levels).

    A clause (split at punctuation, "but", "while", "with") that names an attribute claims the
    level words of that attribute in it; a level word that names its own attribute (``fast``,
    ``quiet``, ``flat``) claims it without the attribute's name.

    >>> prosody_claims("pitch high, a slow pace and quiet")
    {'pitch': 'high', 'speed': 'slow', 'volume': 'quiet'}
    >>> prosody_claims("the pitch is high or low")
    {'pitch': None}
    """
    index = _level_index(vocabulary)
    names = {w: a for a, words in vocabulary.items() for w in words.get("names", ())}
    self_naming = {(a, lvl) for a, lvls in SELF_NAMING.items() for lvl in lvls}
    found: dict[str, set[str]] = {}
    for clause in _CLAUSE_BREAK.split(text.lower()):
        words = _WORD.findall(clause)
        named = {names[w] for w in words if w in names}
        for w in words:
            for attribute, level in index.get(w, {}).items():
                if attribute in named or (attribute, level) in self_naming:
                    found.setdefault(attribute, set()).add(level)
    return {a: (levels.pop() if len(levels) == 1 else None) for a, levels in found.items()}


def scored_claims(claims: Mapping[str, str | None], measured: Mapping[str, str]) -> dict[str, bool]:
    """Whether each claimed attribute that was measured matches its measured level (a hedge never does).

    >>> scored_claims({"pitch": "high", "speed": None, "volume": "loud", "tempo": "fast"},
    ...               {"pitch": "high", "speed": "slow", "volume": "quiet"})
    {'pitch': True, 'speed': False, 'volume': False}
    """
    return {a: level is not None and level == measured[a] for a, level in claims.items() if a in measured}


def prosody_score(claims: Mapping[str, str | None], measured: Mapping[str, str]) -> tuple[float | None, int, int]:
    """(mean score over claimed attributes that were measured, matches, claims scored).

    >>> prosody_score({"pitch": "high", "speed": None, "volume": "loud"}, {"pitch": "high", "speed": "slow", "volume": "quiet"})
    (0.3333333333333333, 1, 3)
    """
    scored = list(scored_claims(claims, measured).values())
    if not scored:
        return None, 0, 0
    return sum(scored) / len(scored), sum(scored), len(scored)


def word_error_rate(hypothesis: str, reference: str) -> float:
    """WER of ``hypothesis`` against ``reference`` (jiwer), lower-cased, punctuation removed.

    >>> word_error_rate("the trip was fine", "the trip was fine today")
    0.2
    """
    import jiwer

    clean = lambda s: " ".join(_WORD.findall(s.lower()))
    ref, hyp = clean(reference), clean(hypothesis)
    if not ref:
        raise ValueError("word_error_rate needs a non-empty reference transcript")
    return float(jiwer.wer(ref, hyp)) if hyp else 1.0


def keyword_score(keywords: str, transcript: str) -> float | None:
    """Share of the listed key words (comma separated) that occur in ``transcript``; None for none listed.

    >>> keyword_score("lonely, happy", "I feel so lonely today")
    0.5
    """
    said = set(_WORD.findall(transcript.lower()))
    listed = [k.strip().lower() for k in keywords.split(",") if k.strip()]
    if not listed:
        return None
    return sum(all(w in said for w in _WORD.findall(k)) and bool(_WORD.findall(k)) for k in listed) / len(listed)


def heard(completions: Sequence[str], transcripts: Sequence[str], keywords: Sequence[Sequence[str]],
          transcript_tag: str = "transcript", keywords_tag: str = "keywords") -> dict[str, float | None]:
    """How well reasoning heard the words: the transcript section's word error rate against the corpus
    transcripts (pooled over words; a missing section counts every word as deleted), and the share
    of clips whose key-words section names the clip's marked key word (clips without one left out).

    >>> heard(["<transcript>the trip was fine</transcript><keywords>fine</keywords>", "<keywords>sad</keywords>"],
    ...       ["the trip was fine today", "so sad"], [["fine"], ["happy"]])
    {'transcript_wer': 0.42857142857142855, 'keyword_accuracy': 0.5, 'clips': 2}
    """
    errors = words = 0.0
    hits, marked = 0, 0
    for completion, reference, marks in zip(completions, transcripts, keywords, strict=True):
        ref_words = len(_WORD.findall((reference or "").lower()))
        if ref_words:
            said = section(completion, transcript_tag) or ""
            errors += word_error_rate(said, reference) * ref_words
            words += ref_words
        if marks:
            listed = {k.strip().lower() for k in (section(completion, keywords_tag) or "").split(",")}
            hits += any(m.lower() in listed for m in marks)
            marked += 1
    return {"transcript_wer": errors / words if words else None,
            "keyword_accuracy": hits / marked if marked else None, "clips": len(completions)}


def grounding_parts(completion: str, measured: Mapping[str, str] | None, transcript: str | None,
                    vocabulary: Mapping = DEFAULT_VOCABULARY, tags: Mapping[str, str] | None = None) -> dict[str, float | None]:
    """Each component's score for one completion (None where it does not apply), and the claim counts."""
    tags = {"prosody": "prosody", "transcript": "transcript", "keywords": "keywords", **(tags or {})}
    parts: dict[str, float | None] = {"prosody": None, "transcript": None, "keywords": None,
                                      "matches": 0.0, "claims": 0.0}
    described = section(completion, tags["prosody"])
    if described and measured:
        score, matches, claims = prosody_score(prosody_claims(described, vocabulary), measured)
        parts.update(prosody=score, matches=float(matches), claims=float(claims))
    if transcript and transcript.strip():
        heard = section(completion, tags["transcript"])
        if heard and heard.strip():
            parts["transcript"] = max(0.0, 1.0 - word_error_rate(heard, transcript))
        listed = section(completion, tags["keywords"])
        if listed:
            parts["keywords"] = keyword_score(listed, transcript)
    return parts


def faithfulness(completions: Sequence[str], levels: Sequence[Mapping[str, str] | None], tag: str = "prosody",
                 vocabulary: Mapping = DEFAULT_VOCABULARY) -> dict:
    """How true what the completions say about the voice is: the pooled share of their prosodic claims
    (attributes with one level, hedges count as wrong) that match the measured levels.

    Returns ``faithfulness`` (None without any claim), ``prosody_claims`` (their number), ``claiming``
    (the share of completions that make at least one) and ``faithfulness_by_attribute`` (the same share
    per claimed attribute: which part of the voice a model misdescribes).

    >>> faithfulness(["<prosody>pitch high, speed slow</prosody>", "<prosody>loud, pitch low</prosody>", "none"],
    ...              [{"pitch": "high", "speed": "fast"}, {"volume": "loud", "pitch": "high"}, {"pitch": "low"}])
    {'faithfulness': 0.5, 'prosody_claims': 4, 'claiming': 0.6666666666666666, 'faithfulness_by_attribute': {'pitch': 0.5, 'speed': 0.0, 'volume': 1.0}}
    """
    matches: dict[str, int] = {}
    claims: dict[str, int] = {}
    claiming = 0
    for completion, measured in zip(completions, levels, strict=True):
        described = section(completion, tag)
        if not described or not measured:
            continue
        scored = scored_claims(prosody_claims(described, vocabulary), measured)
        for attribute, right in scored.items():
            matches[attribute] = matches.get(attribute, 0) + right
            claims[attribute] = claims.get(attribute, 0) + 1
        claiming += bool(scored)
    total = sum(claims.values())
    return {"faithfulness": sum(matches.values()) / total if total else None, "prosody_claims": total,
            "claiming": claiming / len(completions) if completions else 0.0,
            "faithfulness_by_attribute": {a: matches[a] / claims[a] for a in sorted(claims)}}


def make_grounding_reward(labels=None, strategy=None, vocabulary: Mapping | None = None, no_claim: float = -0.5):
    """The grounding reward in TRL's convention: ``fn(completions, prosody=..., transcript=...) -> list[float]``.

    ``prosody``: the measured levels per completion (dicts from :class:`~emorl.acoustics.ProsodyNorms`);
    ``transcript``: the corpus transcript per completion ("" where there is none).  The tag names
    come from ``strategy``'s ESR sections when they are named ``prosody``/``transcript``/``keywords``.

    >>> reward = make_grounding_reward()
    >>> reward(["<prosody>pitch high, speed slow</prosody>", "<prosody>no idea</prosody>"],
    ...        prosody=[{"pitch": "high", "speed": "fast"}] * 2, transcript=["", ""])
    [0.5, -0.5]
    """
    vocabulary = vocabulary or DEFAULT_VOCABULARY

    def grounding(completions, prosody=None, transcript=None, **kwargs) -> list[float]:
        n = len(completions)
        if prosody is None:
            claiming = next((c for c in completions if prosody_claims(section(c, "prosody") or "", vocabulary)), None)
            if claiming is not None:
                raise ValueError(
                    "the grounding reward got no 'prosody' column, yet completions make prosody claims (e.g. "
                    f"{section(claiming, 'prosody')!r}): without measurements it would score them as true. Pass "
                    "prosody=[measured levels per completion] (emorl.acoustics; data.prosody=true in emorl), or None "
                    "per completion whose clip has no measurement")
        measured = prosody if prosody is not None else [None] * n
        said = transcript if transcript is not None else [None] * n
        out = []
        for completion, m, t in zip(completions, measured, said, strict=True):
            parts = grounding_parts(completion, m, t, vocabulary)
            scores = [v for k, v in parts.items() if k in ("prosody", "transcript", "keywords") and v is not None]
            out.append(sum(scores) / len(scores) if scores else no_claim)
        return out

    return grounding
