"""The analysis scripts that docs/results.md runs print what the answers say."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]


def test_answers_by_key_word_breaks_a_class_down_by_the_word_its_clips_carry(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    rows = [  # three joy clips saying "delighted", one saying "glad", one surprise clip saying "delighted"
        ("a.flac", "joy", "delighted", "joy"), ("b.flac", "joy", "delighted", "joy"), ("c.flac", "joy", "delighted", "joy"),
        ("d.flac", "joy", "glad", "joy"), ("e.flac", "surprise", "delighted", "joy"),
    ]
    (corpus / "test.jsonl").write_text("\n".join(json.dumps(
        {"path": f"audio/{clip}", "label": label, "meta": {"keywords": [word], "word_class": word_class}})
        for clip, label, word, word_class in rows))
    answers = tmp_path / "answers.jsonl"
    said = {"a.flac": "surprise", "b.flac": "surprise", "c.flac": "joy", "d.flac": "joy", "e.flac": "joy"}
    answers.write_text("\n".join(json.dumps({"clip": c, "label": label, "prediction": said[c]}) for c, label, _, _ in rows))
    out = subprocess.run([sys.executable, "docs/results/analysis/answers_by_key_word.py", str(answers),
                          "--corpus", str(corpus), "--labels", "joy"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    lines = out.splitlines()
    assert "joy clips (4): joy 0.50, surprise 0.50" in lines[1]  # the surprise clip is not a joy clip
    delighted = next(line for line in lines if line.strip().startswith("delighted"))
    assert "n=  3" in delighted and "surprise 0.67, joy 0.33" in delighted
    glad = next(line for line in lines if line.strip().startswith("glad"))
    assert "n=  1" in glad and "joy 1.00" in glad
