"""The bars a built base is checked against (emorl.pretraining.bars): each bar's verdict, and the CLI
over evaluation and run folders laid out as emorl.evaluate and emorl.train write them."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from emorl.pretraining.bars import Bar, collect, gain_bars, main, room_bars, zero_shot_bars

LABELS = ("neutral", "joy", "sadness")


@pytest.mark.parametrize("bar, met", [
    (Bar("at the limit", 0.98, 0.98), True),                          # the limit itself meets an at-least bar
    (Bar("a difference at the limit", 0.71 - 0.61, 0.10), True),      # 0.0999...: rounding does not miss it
    (Bar("a clip below", 0.9799, 0.98), False),                       # below by less than a point still misses
    (Bar("WER at the limit", 0.25, 0.25, at_least=False), True),      # an at-most bar is met at its limit
    (Bar("WER above", 0.2501, 0.25, at_least=False), False),          # ... and missed above it
    (Bar("a negative gain", -0.02, 0.08), False),                     # the trained model got worse
    (Bar("not measured", None, 0.70), None),                          # no folder measured it: no verdict
])
def test_a_bar_is_met_at_its_limit_and_missed_past_it(bar, met):
    assert bar.met is met


def by_label(values):
    return dict(zip(LABELS, values, strict=True))


def scores(ua, unparsed=0.0, recall=(0.5, 0.4, 0.3), **hearing):
    return {"ua": ua, "unparsed_rate": unparsed, "recall": by_label(recall), **hearing}


def test_zero_shot_bars_hold_hearing_only_where_the_answers_hold_it():
    bars = zero_shot_bars({
        "ir": scores(0.6, unparsed=0.03, recall=(0.5, 0.09, 0.7)),   # 97% parsable, one class at 0.09
        "esr": scores(0.55, keyword_accuracy=0.81, transcript_wer=0.30, faithfulness=None),  # no prosody claims
    })
    assert {b.name: (round(b.measured, 4), b.met) for b in bars} == {
        "ir: parsable": (0.97, False),
        "ir: lowest recall": (0.09, False),
        "esr: parsable": (1.0, True),
        "esr: lowest recall": (0.3, True),
        "esr: key words heard": (0.81, True),
        "esr: transcript WER": (0.3, False),
    }


def test_room_is_the_sft_mean_over_each_formats_zero_shot_ua():
    bars = room_bars({"ir": 0.60, "esr": 0.66}, [0.70, 0.72, 0.74])   # mean 0.72
    assert [(b.name, round(b.measured, 4), b.met) for b in bars] == [
        ("ir: SFT + IR mean UA over zero-shot (3 runs)", 0.12, True),
        ("esr: SFT + IR mean UA over zero-shot (3 runs)", 0.06, False),
    ]
    assert room_bars({"ir": 0.6}, []) == []   # no SFT run: the bar is not drawn


def test_every_grpo_run_is_held_to_the_gain_and_the_recall_floor():
    runs = [{"name": "s0", "reasoning": "esr", "base_ua": 0.60, "ua": 0.69, "recall": by_label((0.5, 0.2, 0.9))},
            {"name": "s1", "reasoning": "esr", "base_ua": 0.60, "ua": 0.67, "recall": by_label((0.5, 0.05, 0.9))}]
    assert [(b.name, round(b.measured, 4), b.met) for b in gain_bars(runs)] == [
        ("GRPO s0: UA over the base (esr)", 0.09, True),
        ("GRPO s0: lowest recall", 0.2, True),
        ("GRPO s1: UA over the base (esr)", 0.07, False),   # one seed short of +8 misses the bar
        ("GRPO s1: lowest recall", 0.05, False),
    ]


def write_evaluation(folder, reasoning, test, dataset="synthetic", split="test"):
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps(
        {"dataset": dataset, "split": split, "reasoning": reasoning, "test": {"n": 700, **test}}))
    return folder


def write_run(folder, algo, reasoning, seed, ua, recall, base_ua=None, dataset="synthetic"):
    folder.mkdir(parents=True)
    metrics = {"seed": seed, "trained": {"ua": ua, "recall": by_label(recall)}}
    if base_ua is not None:
        metrics["base"] = {"ua": base_ua}
    (folder / "metrics.json").write_text(json.dumps(metrics))
    (folder / "config_resolved.yaml").write_text(yaml.safe_dump(
        {"algo": {"name": algo}, "reward": {"name": "eswr"}, "reasoning": {"name": reasoning},
         "dataset": {"name": dataset}, "data": {"test_split": "test"}, "seed": seed}))
    # a cross-corpus evaluation inside the run is not a training run
    write_evaluation(folder / "cross_corpus" / "heldout", reasoning, scores(0.3), dataset="heldout", split="all")
    return folder


@pytest.fixture
def folders(tmp_path):
    ev = [write_evaluation(tmp_path / "base" / "ir", "ir", scores(0.58)),
          write_evaluation(tmp_path / "base" / "esr", "esr",
                           scores(0.676, keyword_accuracy=0.871, transcript_wer=0.051, faithfulness=0.708))]
    for s, ua in enumerate((0.736, 0.72, 0.74)):
        write_run(tmp_path / "sft" / f"sft_ir_s{s}", "sft", "ir", s, ua, (0.6, 0.6, 0.8))
    write_run(tmp_path / "grpo" / "eswr_esr_s0", "grpo", "esr", 0, 0.747, (0.43, 0.53, 0.92))
    write_run(tmp_path / "grpo" / "eswr_esr_s1", "grpo", "esr", 1, 0.70, (0.5, 0.5, 0.5), base_ua=0.61)
    return tmp_path, ev


def test_the_cli_prints_every_bar_with_its_verdict(folders, capsys):
    root, ev = folders
    grpo = [str(p) for p in sorted((root / "grpo").iterdir())]   # run folders, several after one option
    main(["--evaluation", *map(str, ev), "--sft", str(root / "sft"), "--grpo", *grpo])
    out = capsys.readouterr().out
    rows = {cells[1].strip(): (cells[2].strip(), cells[4].strip())
            for cells in (line.split("|") for line in out.splitlines() if line.startswith("| ") and "---" not in line)}
    assert rows["esr: key words heard"] == ("87.1", "met")
    assert rows["ir: SFT + ir mean UA over zero-shot (3 runs)"] == ("15.2", "met")        # 73.2 - 58.0
    assert rows["esr: SFT + ir mean UA over zero-shot (3 runs)"] == ("5.6", "**missed**")  # 73.2 - 67.6
    assert rows["GRPO eswr_esr_s0 (seed 0): UA over the base (esr)"] == ("7.1", "**missed**")  # the ESR evaluation
    assert rows["GRPO eswr_esr_s1 (seed 1): UA over the base (esr)"] == ("9.0", "met")   # the run's own base score
    assert out.rstrip().endswith("missed: esr: SFT + ir mean UA over zero-shot (3 runs), "
                                 "GRPO eswr_esr_s0 (seed 0): UA over the base (esr)")


@pytest.mark.parametrize("change, message", [
    # a second evaluation in one format: which one counts is not guessed
    (lambda root: [write_evaluation(root / "again" / "ir", "ir", scores(0.5))], "a second evaluation in ir"),
    # the base scored on validation clips, the runs on test clips
    (lambda root: [write_evaluation(root / "val" / "eur", "eur", scores(0.5), split="val")], "different data"),
    # a GRPO run in a format the base was not evaluated in, with no base score of its own
    (lambda root: write_run(root / "grpo" / "eswr_eur_s0", "grpo", "eur", 0, 0.7, (0.5, 0.5, 0.5)) and [],
     "trained in eur, but neither the run scored its base nor is an --evaluation of the base in eur"),
    # a training run passed where a zero-shot evaluation of the base belongs
    (lambda root: [root / "sft" / "sft_ir_s0"], "sft_ir_s0: its metrics.json holds no test scores"),
    # runs tested on another corpus than the base
    (lambda root: write_run(root / "sft" / "sft_ir_other", "sft", "ir", 0, 0.7, (0.5, 0.5, 0.5), dataset="meld") and [],
     "tested on ('meld', 'test')"),
])
def test_folders_that_cannot_be_compared_are_refused_by_name(folders, change, message):
    root, ev = folders
    ev = [*ev, *change(root)]
    with pytest.raises(ValueError, match=re.escape(message)):
        collect(ev, [root / "sft"], [root / "grpo"])


def test_a_folder_with_no_finished_run_is_refused(folders):
    root, ev = folders
    (root / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="--grpo .*empty: no finished training run"):
        collect(ev, [], [root / "empty"])
