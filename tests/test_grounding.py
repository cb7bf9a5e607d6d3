"""The grounding reward: prosody claims checked against measured levels, transcripts against the corpus."""

from __future__ import annotations

import pytest

from emorl.rewards.grounding import make_grounding_reward, prosody_claims

MEASURED = {"pitch": "high", "speed": "fast", "volume": "loud", "intonation": "lively"}
NO_CLAIM = -0.5


def esr(prosody: str | None = None, transcript: str | None = None, keywords: str | None = None) -> str:
    parts = []
    if transcript is not None:
        parts.append(f"<transcript>{transcript}</transcript>")
    if keywords is not None:
        parts.append(f"<keywords>{keywords}</keywords>")
    if prosody is not None:
        parts.append(f"<prosody>{prosody}</prosody>")
    return "<think>" + "".join(parts) + "<synthesis>so</synthesis></think><answer>joy</answer>"


PROSODY_CASES = [
    # (prosody section, expected reward with MEASURED and no transcript, why)
    ("pitch high, intonation lively, speed fast, volume loud", 1.0, "every claim right"),
    ("pitch low, intonation flat, speed slow, volume quiet", 0.0, "every claim wrong"),
    ("pitch high, speed slow", 0.5, "one of two right"),
    ("pitch medium", 0.0, "medium is not high"),
    ("a shrill tone, rapid pace, shouting, animated", 1.0, "synonyms of every level"),
    ("a deep register, unhurried, soft, monotone", 0.0, "synonyms, all wrong"),
    ("fast and loud", 1.0, "level words that name their attribute"),
    ("high", NO_CLAIM, "high alone names no attribute"),
    ("pitch high or low", 0.0, "a hedge scores nothing"),
    ("pitch high, speed fast, and then the pitch is low", 0.5, "a contradiction is a hedge: pitch 0, speed 1"),
    ("PITCH HIGH; Speed: FAST", 1.0, "case and punctuation"),
    ("", NO_CLAIM, "empty section: no claim"),
    ("the speaker sounds emotional", NO_CLAIM, "no attribute claimed"),
    (None, NO_CLAIM, "no prosody section"),
]


@pytest.mark.parametrize("prosody,expected,why", PROSODY_CASES)
def test_prosody_claims_are_scored_against_the_measurement(prosody, expected, why):
    reward = make_grounding_reward(no_claim=NO_CLAIM)
    assert reward([esr(prosody)], prosody=[MEASURED], transcript=[""]) == [pytest.approx(expected)], why


def test_an_attribute_that_was_not_measured_adds_nothing():
    reward = make_grounding_reward()
    # silence has no pitch level: the pitch claim is neither right nor wrong
    assert reward([esr("pitch high, speed slow")], prosody=[{"speed": "slow"}], transcript=[""]) == [1.0]


TRANSCRIPT_CASES = [
    # (transcript section, keywords section, corpus transcript, expected, why)
    ("the trip was fine today", None, "the trip was fine today", 1.0, "exact transcript"),
    ("The trip was fine, today.", None, "the trip was fine today", 1.0, "case and punctuation ignored"),
    ("the trip was bad today", None, "the trip was fine today", 0.8, "one word of five substituted"),
    ("completely different words here now and more", None, "the trip was fine today", 0.0, "WER above 1 clips at 0"),
    (None, "fine", "the trip was fine today", 1.0, "key word said"),
    (None, "fine, lovely", "the trip was fine today", 0.5, "one of two key words said"),
    ("the trip was fine today", "awful", "the trip was fine today", 0.5, "transcript 1, key word 0: the mean"),
    ("anything", "anything", "", NO_CLAIM, "no corpus transcript: nothing to check"),
    ("", "", "the trip was fine today", NO_CLAIM, "empty sections: no claim"),
]


@pytest.mark.parametrize("transcript,keywords,said,expected,why", TRANSCRIPT_CASES)
def test_transcripts_and_key_words_are_checked_against_the_corpus(transcript, keywords, said, expected, why):
    reward = make_grounding_reward(no_claim=NO_CLAIM)
    completion = esr(transcript=transcript, keywords=keywords)
    assert reward([completion], prosody=[MEASURED], transcript=[said]) == [pytest.approx(expected)], why


def test_all_components_average():
    reward = make_grounding_reward()
    completion = esr("pitch high, speed slow", "the trip was fine today", "fine")
    # prosody 0.5, transcript 1.0, key words 1.0
    assert reward([completion], prosody=[MEASURED], transcript=["the trip was fine today"]) == [pytest.approx(2.5 / 3)]


def test_adversarial_100_kb_completions_are_scored_in_linear_time():
    reward = make_grounding_reward(no_claim=NO_CLAIM)
    many_claims = esr("pitch high, " * 9_000)                     # ~100 KB of one right claim repeated
    many_hedges = esr("pitch high or low " * 6_000)               # ~100 KB of hedges
    unclosed = "<prosody>" * 12_000 + "pitch high"                # ~100 KB of opening tags, never closed
    huge_transcript = esr(transcript="word " * 20_000)            # ~100 KB against a 5-word reference
    scores = reward([many_claims, many_hedges, unclosed, huge_transcript], prosody=[MEASURED] * 4,
                    transcript=["", "", "", "the trip was fine today"])
    assert scores == [1.0, 0.0, NO_CLAIM, 0.0]


def test_claims_are_read_per_clause():
    assert prosody_claims("pitch high but speed slow while quiet") == {"pitch": "high", "speed": "slow", "volume": "quiet"}
    assert prosody_claims("high speed") == {}  # "high" is no level of speed
