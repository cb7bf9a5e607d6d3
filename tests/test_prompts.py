"""Format checkers (eq. 6) and the strict answer parser, on adversarial responses."""

import pytest

from emorl.prompts import ReasoningStrategy, Section, free_answer_prompt, free_answer_target, get_strategy, parse_label

IR, EUR, ESR = get_strategy("ir"), get_strategy("eur"), get_strategy("esr")
GOOD_ESR = (
    "<think><transcript>I am so sad</transcript><keywords>sad</keywords>"
    "<prosody>pitch low, speed slow</prosody><synthesis>sad words, low voice</synthesis></think>"
    "<answer>sadness</answer>"
)

FORMAT_CASES = [
    # (strategy, response, expected, why)
    (IR, "<answer>joy</answer>", True, "the bare answer"),
    (IR, "  <answer> joy </answer>\n", True, "whitespace around tags is fine"),
    (IR, "joy", False, "no tags"),
    (IR, "<answer></answer>", False, "empty answer"),
    (IR, "<answer>   </answer>", False, "whitespace-only answer"),
    (IR, "<answer>joy</answer> because", False, "text after the answer"),
    (IR, "I think <answer>joy</answer>", False, "text before the answer"),
    (IR, "<answer>joy</answer><answer>anger</answer>", False, "two answers"),
    (IR, "<answer>joy<answer>anger</answer>", False, "nested answer tag"),
    (IR, "<answer>joy", False, "unclosed answer"),
    (IR, "<think>x</think><answer>joy</answer>", False, "IR has no think block"),
    (EUR, "<think>bright voice</think><answer>joy</answer>", True, "think then answer"),
    (EUR, "<think>bright voice</think>\n<answer>joy</answer>", True, "newline between blocks"),
    (EUR, "<answer>joy</answer>", False, "missing think"),
    (EUR, "<answer>joy</answer><think>x</think>", False, "blocks out of order"),
    (EUR, "<think></think><answer>joy</answer>", False, "empty think"),
    (EUR, "<think>a</think><think>b</think><answer>joy</answer>", False, "two think blocks"),
    (EUR, "<think>x <answer>joy</answer></think><answer>joy</answer>", False, "answer hidden in think"),
    (EUR, "<think>x</think>so<answer>joy</answer>", False, "text between blocks"),
    (ESR, GOOD_ESR, True, "all four sections in order"),
    (ESR, GOOD_ESR.replace("<keywords>sad</keywords>", ""), False, "a section missing"),
    (ESR, GOOD_ESR.replace("<keywords>sad</keywords>", "<keywords> </keywords>"), False, "an empty section"),
    (
        ESR,
        GOOD_ESR.replace("<transcript>I am so sad</transcript><keywords>sad</keywords>", "<keywords>sad</keywords><transcript>I am so sad</transcript>"),
        False,
        "sections out of order",
    ),
    (ESR, GOOD_ESR.replace("<think>", "<think>note ", 1), False, "free text between sections"),
    (ESR, GOOD_ESR.replace("</synthesis>", "</synthesis><synthesis>again</synthesis>"), False, "a section twice"),
    (ESR, "<think>free text</think><answer>sadness</answer>", False, "unstructured think"),
    (ESR, GOOD_ESR.replace("</think>", ""), False, "think never closed"),
]


@pytest.mark.parametrize("strategy,response,expected,why", FORMAT_CASES)
def test_follows_format(strategy, response, expected, why):
    assert strategy.follows_format(response) is expected, why


def test_format_check_is_linear_on_adversarial_input():
    # Many opening tags and no closing one: a backtracking regex would explode here.
    text = "<think>" + "<transcript>a" * 50_000 + "</think>" * 3
    assert ESR.follows_format(text) is False
    assert EUR.follows_format("<think>" + "x" * 1_000_000 + "</think><answer>joy</answer>") is True


PARSE_CASES = [
    # (answer text, expected label, why)
    ("joy", "joy", "exact"),
    (" Joy. ", "joy", "case, whitespace and one trailing period ignored"),
    ("SADNESS", "sadness", "upper case"),
    ("joy or sadness", None, "a hedge naming two labels"),
    ("joy, sadness", None, "two labels listed"),
    ("I think joy", None, "extra words"),
    ("happiness", None, "a label not among the options"),
    ("joy..", None, "only one trailing period is ignored"),
    ("", None, "empty"),
    (None, None, "no answer block at all"),
]


@pytest.mark.parametrize("answer,expected,why", PARSE_CASES)
def test_parse_label(answer, expected, why):
    assert parse_label(answer, ["neutral", "joy", "sadness"]) == expected, why


def test_extract_answer_needs_exactly_one_block():
    assert IR.extract_answer("<answer>joy</answer>") == "joy"
    assert IR.extract_answer("<answer>joy</answer><answer>anger</answer>") is None
    assert IR.extract_answer("<answer>joy") is None


def test_tags_come_from_config_and_instruction_names_them():
    custom = ReasoningStrategy(
        "esr", answer_tag="final", think_tag="reason",
        sections=(Section("said", "what was said"), Section("how", "how it was said")),
        reasoning_instruction="In <{think}></{think}> write {sections}.",
    )
    assert custom.follows_format("<reason><said>hi</said><how>loud</how></reason><final>anger</final>")
    assert not custom.follows_format(GOOD_ESR)
    prompt = custom.prompt(["anger", "joy"])
    assert "Options: anger, joy." in prompt and "<said></said>" in prompt and "<final></final>" in prompt


@pytest.mark.parametrize("bad,match", [
    (dict(name="x", think_tag=None, sections=(Section("a", "b"),)), "think_tag"),
    (dict(name="x", answer_tag="answer", think_tag="answer"), "distinct"),
    (dict(name="x", question="What emotion?"), "options"),
    (dict(name="x", answer_tag="an swer"), "alphanumeric"),
])
def test_invalid_strategies_are_refused(bad, match):
    with pytest.raises(ValueError, match=match):
        ReasoningStrategy(**bad)


def test_unknown_strategy_lists_valid_names():
    with pytest.raises(KeyError, match=r"\['esr', 'eur', 'ir'\]"):
        get_strategy("cot")


def test_reasoning_augmented_targets_describe_the_clip_and_name_the_gold_label():
    from types import SimpleNamespace

    from emorl.prompts import gold_response

    item = SimpleNamespace(transcript="I am so happy about the trip", meta={"keywords": ["happy"]})
    levels = {"pitch": "high", "speed": "fast", "volume": "loud", "intonation": "lively", "contour": "flat"}
    target = gold_response(ESR, "joy", item=item, levels=levels)
    assert ESR.follows_format(target) and ESR.extract_answer(target) == "joy"
    parts = ESR.reasoning_parts(target)
    assert parts["transcript"] == "I am so happy about the trip" and parts["keywords"] == "happy"
    assert parts["prosody"] == "pitch high, intonation lively, speed fast, volume loud"
    assert parts["synthesis"].endswith("suggest joy")
    assert EUR.follows_format(gold_response(EUR, "joy", item=item, levels=levels))
    # without a transcript there is nothing true to say about what was said
    with pytest.raises(ValueError, match="needs transcripts"):
        gold_response(ESR, "joy", item=SimpleNamespace(transcript="", meta={}), levels=levels)


@pytest.mark.parametrize("question, tag, expected", [
    # the default tag: the pretraining tasks' free answers (transcript, description, level, rate)
    ("What does the speaker say?", "answer", "What does the speaker say? Give the answer inside <answer></answer>."),
    # a strategy's configured answer tag: task alternation and the prosody questions answer inside it
    ("Describe the voice.", "final", "Describe the voice. Give the answer inside <final></final>."),
])
def test_free_answer_prompt_names_the_answer_tag(question, tag, expected):
    assert free_answer_prompt(question, tag) == expected


@pytest.mark.parametrize("answer, tag, expected", [
    # the default tag: the pretraining tasks' targets
    ("the trip was calm", "answer", "<answer>the trip was calm</answer>"),
    # a strategy's configured answer tag: task alternation's targets
    ("pitch high, speed fast", "final", "<final>pitch high, speed fast</final>"),
])
def test_free_answer_target_holds_only_the_answer_in_the_tag_the_prompt_names(answer, tag, expected):
    assert free_answer_target(answer, tag) == expected
    assert f"<{tag}></{tag}>" in free_answer_prompt("Q?", tag)  # the prompt asks for the tag the target uses


def test_task_alternation_asks_a_transcript_as_a_free_answer_in_the_strategys_answer_tag():
    """Task alternation asks what pretraining asks, in the configured tag: a base asked otherwise than it was
    trained would be measured on the wording, not on what it hears."""
    from emorl.data.batching import DESCRIPTION_TASKS, description_task
    from emorl.data.corpus import Item

    item = Item(path="a.wav", label="joy", speaker="s", split="train", transcript="hello there")
    strategy = ReasoningStrategy("ir", answer_tag="final")
    text, target = description_task(strategy, item, None)
    assert text == free_answer_prompt(DESCRIPTION_TASKS["transcript"], "final")
    assert target == "<final>hello there</final>"
