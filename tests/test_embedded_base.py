"""The shipped embedded base: its files are the ones its card lists, it loads by from_pretrained, its scores hold."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from emorl.pretraining.card import ASSET_DIR, MAX_BYTES, file_hashes, publish, verify
from tests.conftest import compose


def test_the_shipped_base_is_the_one_its_card_describes():
    card = verify(ASSET_DIR)
    assert card["command"].startswith("python -m emorl.pretrain")
    assert {"model.safetensors", "config.json"} <= set(card["files"])
    assert card["bytes"] <= MAX_BYTES
    assert set(card["zero_shot"]) == {"ir", "eur", "esr"}
    for scores in card["zero_shot"].values():
        assert scores["split"] == "test" and scores["clips"] == 700


def test_the_shipped_base_loads_by_from_pretrained_as_model_tiny_configures_it(cache_dir, tmp_path):
    from transformers import AutoProcessor, Qwen2AudioForConditionalGeneration

    cfg = compose([], cache_dir, tmp_path)
    assert Path(cfg.model.pretrained).resolve() == ASSET_DIR.resolve()
    model = Qwen2AudioForConditionalGeneration.from_pretrained(ASSET_DIR)
    processor = AutoProcessor.from_pretrained(ASSET_DIR)
    assert sum(p.numel() for p in model.parameters()) == verify(ASSET_DIR)["summary"]["parameters"]
    assert processor.tokenizer.convert_tokens_to_ids("<|AUDIO|>") == model.config.audio_token_id


def test_the_pretraining_config_builds_the_shipped_bases_shape():
    # the benchmarks (emorl.bench's tiny, emorl.pretraining.sizes's chosen) read the sizes from conf/pretrain.yaml:
    # they measure the shipped base only while that file still states its shape
    from emorl.bench import model_sizes
    from emorl.models.tiny import configured_build

    shipped = json.loads((ASSET_DIR / "config.json").read_text())
    build = configured_build("embedded_base")
    assert model_sizes("tiny") == build
    assert build["vocab_size"] == shipped["text_config"]["vocab_size"]
    for part, section in (("text", "text_config"), ("audio", "audio_config")):
        assert build[part] == {k: shipped[section][k] for k in build[part]}, part


def test_a_changed_file_of_a_published_base_is_refused(tmp_path):
    copy = tmp_path / "base"
    shutil.copytree(ASSET_DIR, copy)
    with open(copy / "config.json", "a") as f:
        f.write("\n")
    with pytest.raises(ValueError, match=r"changed \['config.json'\]"):
        verify(copy)
    (copy / "stray.bin").write_bytes(b"x")
    with pytest.raises(ValueError, match=r"not listed \['stray.bin'\]"):
        verify(copy)


def test_publishing_a_run_writes_a_card_that_verifies(tiny_base, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_base, run / "model")
    (run / "pretrain.json").write_text(json.dumps({"steps": 2, "examples": 8, "processes": 1, "parameters": 5,
                                                   "train_seconds": 1.0, "clips": {}, "lexicon_words": 0}))
    (run / "config_resolved.yaml").write_text("seed: 0\npretrain: {steps: 2}\n")
    evaluation = tmp_path / "ir"
    evaluation.mkdir()
    (evaluation / "metrics.json").write_text(json.dumps({"reasoning": "ir", "dataset": "synthetic", "split": "test",
                                                         "test": {"ua": 0.4, "n": 14, "recall": {"joy": 0.2}}}))
    card = publish(run, tmp_path / "published", [evaluation])
    assert verify(tmp_path / "published") == card
    assert card["files"] == file_hashes(tmp_path / "published")
    assert card["zero_shot"]["ir"] == {"dataset": "synthetic", "split": "test", "clips": 14, "ua": 0.4,
                                       "recall": {"joy": 0.2}}
    assert "| ir | synthetic / test | 40.0 |" in (tmp_path / "published" / "README.md").read_text()


@pytest.mark.slow
def test_the_cards_direct_inference_score_is_measured_again(tmp_path):
    """emorl.evaluate of the shipped base, IR, on the default corpus's 700 test clips: the card's UA within
    1.5 points (greedy decoding; another CPU's floating-point order may flip a few answers)."""
    import subprocess
    import sys

    out = tmp_path / "ir"
    subprocess.run([sys.executable, "-m", "emorl.evaluate", "reasoning=ir", "logger=csv", f"hydra.run.dir={out}"],
                   check=True, cwd=Path(__file__).parents[1], capture_output=True, text=True, timeout=1800)
    measured = json.loads((out / "metrics.json").read_text())["test"]
    card = verify(ASSET_DIR)["zero_shot"]["ir"]
    assert measured["n"] == card["clips"] == 700
    assert measured["ua"] == pytest.approx(card["ua"], abs=0.015)


def test_the_recorded_commit_says_when_the_code_differed_from_it(tmp_path):
    import subprocess

    from emorl.pretraining.card import git_commit

    assert git_commit(tmp_path) is None  # not a checkout
    git = lambda *a: subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *a], cwd=tmp_path, check=True,
                                    capture_output=True, text=True).stdout.strip()
    git("init", "-q")
    (tmp_path / "f.py").write_text("a = 1\n")
    git("add", "f.py")
    git("commit", "-qm", "one")
    head = git("rev-parse", "HEAD")
    (tmp_path / "new.txt").write_text("untracked files are not the code\n")
    assert git_commit(tmp_path) == head
    (tmp_path / "f.py").write_text("a = 2\n")
    assert git_commit(tmp_path) == head + "+dirty"
