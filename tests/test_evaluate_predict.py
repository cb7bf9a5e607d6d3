"""Evaluation on a real corpus layout (cross-corpus mapping), predict, and the exported model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from tests.conftest import ESR_SECTIONS, compose
from tests.corpus_trees import write_mp4, write_wav

RAVDESS_FILES = {  # name -> RAVDESS label
    "Actor_01/03-01-01-01-01-01-01.wav": "neutral",
    "Actor_01/03-01-02-01-01-01-01.wav": "calm",
    "Actor_02/03-01-02-02-02-01-02.wav": "calm",
    "Actor_23/03-01-05-01-01-01-23.wav": "angry",
    "Actor_24/03-01-08-02-02-02-24.wav": "surprised",
}


@pytest.fixture
def tiny_ckpt(tiny_base, tmp_path) -> Path:
    """The tiny base exported as emorl exports a trained model: trained on MELD's labels, IR answers."""
    out = tmp_path / "model"
    shutil.copytree(tiny_base, out)
    (out / "emorl.json").write_text(json.dumps({"labels": ["neutral", "joy", "sadness", "anger", "fear", "disgust", "surprise"],
                                                "reasoning": "ir"}))
    return out


def test_evaluate_on_ravdess_maps_calm_for_a_meld_model(tiny_ckpt, cache_dir, tmp_path):
    from emorl.evaluate import evaluate

    root = tmp_path / "RAVDESS"
    for name in RAVDESS_FILES:
        write_wav(root / name, rate=48000, channels=2)
    out = tmp_path / "eval"
    cfg = compose([f"ckpt={tiny_ckpt}", "dataset=ravdess", f"dataset.root={root}", "data.test_split=all"],
                  cache_dir, out, config_name="evaluate")
    metrics = evaluate(cfg)
    assert metrics["reasoning"] == "ir"  # the checkpoint's strategy, as none was given
    assert metrics["label_mapping"]["calm"] == "neutral"
    assert metrics["labels"] == ["neutral", "happy", "sad", "angry", "fearful", "disgust", "surprised"]
    assert json.loads((out / "label_mapping.json").read_text()) == metrics["label_mapping"]
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    # every clip of the corpus is scored once, calm clips as neutral
    assert sorted(r["label"] for r in rows) == sorted({"calm": "neutral"}.get(v, v) for v in RAVDESS_FILES.values())
    assert metrics["test"]["n"] == len(RAVDESS_FILES)
    assert all("Options: " in r["question"] and "calm" not in r["question"] for r in rows)
    assert json.loads((out / "metrics.json").read_text())["test"]["confusion"] == metrics["test"]["confusion"]


def test_evaluate_of_the_base_needs_a_prompt(cache_dir, tmp_path):
    from emorl.evaluate import evaluate

    cfg = compose([], cache_dir, tmp_path / "eval", config_name="evaluate")
    with pytest.raises(ValueError, match="reasoning=ir .direct inference"):
        evaluate(cfg)




def test_predict_reads_any_format_and_prints_emotion_and_reasoning(esr_ckpt, tmp_path, capsys):
    from emorl.predict import main

    clips = [write_wav(tmp_path / "a.wav", rate=8000), write_wav(tmp_path / "b.flac", rate=44100, channels=2),
             write_wav(tmp_path / "c.mp3", rate=22050), write_mp4(tmp_path / "d.mp4")]
    results = main([*map(str, clips), f"ckpt={esr_ckpt}", "--json"])
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["path"] for r in printed] == [str(c) for c in clips]
    assert printed == results
    for r in results:  # the checkpoint's labels and strategy; every clip's answer parsed, every section read back
        assert r["emotion"] in ("neutral", "happy", "angry", "sad"), r["response"]
        assert set(r["reasoning"]) == set(ESR_SECTIONS) and all(r["reasoning"].values()), r["response"]
    with pytest.raises(SystemExit, match="nope.wav: no such audio file"):
        main([str(tmp_path / "nope.wav"), f"ckpt={esr_ckpt}"])
    with pytest.raises(SystemExit, match="give the model: ckpt="):
        main([str(clips[0])])


def test_reasoning_parts_render_readably(tiny_ckpt):
    from emorl.predict import render

    text = render({"path": "x.wav", "emotion": "anger", "reasoning": {"prosody": "loud and fast"}, "response": "..."})
    assert text == "x.wav: anger\n  prosody: loud and fast"


def plain_base_model(base: str):
    """The base model as a user loads it with transformers alone (Qwen2.5-Omni: its Thinker, no talker)."""
    from transformers import AutoConfig, Qwen2_5OmniForConditionalGeneration, Qwen2AudioForConditionalGeneration

    if AutoConfig.from_pretrained(base).model_type == "qwen2_5_omni":
        return Qwen2_5OmniForConditionalGeneration.from_pretrained(base, enable_audio_output=False).thinker
    return Qwen2AudioForConditionalGeneration.from_pretrained(base)


@pytest.mark.slow
@pytest.mark.parametrize("model", ["tiny", "tiny_omni"])
def test_the_exported_adapter_reproduces_emorls_answers_with_plain_transformers_and_peft(cfg_factory, model):
    import librosa
    from peft import PeftModel
    from transformers import AutoProcessor

    from emorl.train import train
    from tests.rewards import LENGTH_REWARD

    # length reward: varies in every group, so the adapter moves away from zero (no-op) weights
    cfg = cfg_factory(f"model={model}", "model.lora={r: 8, alpha: 16}", "model.lr=3e-2", "eval.base=false",
                      "trainer.max_steps=3", "algo.grpo.max_new_tokens=24", *LENGTH_REWARD)
    metrics, _ = train(cfg)
    run = Path(metrics["run_dir"])
    model_dir = run / "model"
    info = json.loads((model_dir / "emorl.json").read_text())
    base = json.loads((model_dir / "adapter_config.json").read_text())["base_model_name_or_path"]

    assert ("tiny-qwen2_5_omni" in base) == (model == "tiny_omni"), base  # the backbone the config names
    model = PeftModel.from_pretrained(plain_base_model(base), str(model_dir)).eval()
    assert any(("lora_B" in n and p.abs().sum() > 0) for n, p in model.named_parameters()), "the adapter is a no-op"
    processor = AutoProcessor.from_pretrained(str(model_dir))
    rows = [json.loads(line) for line in (run / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == metrics["trained"]["n"]
    for row in rows:
        audio, _ = librosa.load(row["path"], sr=16000)
        conversation = [{"role": "user", "content": [{"type": "audio", "audio_url": row["path"]},
                                                     {"type": "text", "text": row["question"]}]}]
        prompt = processor.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)
        inputs = processor(text=prompt, audio=[audio], sampling_rate=16000, return_tensors="pt")
        with torch.no_grad():
            out = model.generate(**inputs, **info["generation"], pad_token_id=processor.tokenizer.pad_token_id)
        text = processor.tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
        assert text == row["text"], row["path"]


def ravdess_tree(root: Path, actors=(1, 2, 3, 21, 23)) -> Path:
    """Two speech clips per emotion and actor (tones of distinct pitch per emotion)."""
    for actor in actors:
        for emotion in range(1, 9):
            for statement in (1, 2):
                write_wav(root / f"Actor_{actor:02d}/03-01-{emotion:02d}-01-{statement:02d}-01-{actor:02d}.wav",
                          freq=110.0 * emotion)
    return root


@pytest.mark.slow
def test_sft_trains_on_a_corpus_in_its_native_layout_and_counts_skipped_clips(tiny_base, cfg_factory, tmp_path):
    from emorl.train import train

    root = ravdess_tree(tmp_path / "RAVDESS")
    (root / "Actor_03/03-01-01-01-01-01-03.wav").write_bytes(b"")  # an empty file: skipped and counted
    cfg = cfg_factory("algo=sft", "dataset=ravdess", f"dataset.root={root}", "dataset.val_actors=[21]",
                      "dataset.test_actors=[23]", "dataset.on_bad_item=skip", f"model.pretrained={tiny_base}",
                      "algo.lr=2e-3", "trainer.max_epochs=3", "trainer.max_steps=-1", "algo.batch_size=8", "eval.base=false",
                      "trainer.val_check_interval=1.0", "checkpoint.select=last")
    metrics, objects = train(cfg)
    # 3 training actors x 16 clips, one empty: 47 questions, 5 full batches per epoch, 3 epochs
    assert metrics["data"]["questions"]["train"] == 47
    assert metrics["data"]["skipped"] == {"train": 1} and "empty" in metrics["data"]["skipped_examples"][0]
    assert metrics["train"]["steps"] == 15
    losses = [row for row in (Path(metrics["run_dir"]) / "csv").rglob("metrics.csv")]
    assert losses, "the CSV logger writes the training loss"
    import csv

    values = [float(r["train/loss"]) for r in csv.DictReader(open(losses[0])) if r.get("train/loss")]
    assert len(values) == 15 and values[-1] < 0.5 * values[0], "cross-entropy on the gold answers must fall"
    assert metrics["trained"]["n"] == 16 and set(objects["module"].labels) == set(metrics["trained"]["recall"])


def _damaged_model_card(tiny_ckpt, tmp_path):
    (tiny_ckpt / "emorl.json").write_text('{"labels": ["joy",')  # cut short
    return [f"ckpt={tiny_ckpt}"]


def _run_without_model(tiny_ckpt, tmp_path):
    run = tmp_path / "stopped-run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config_resolved.yaml").write_text("seed: 0\n")
    return [f"ckpt={run}"]


def _missing_pretrained_folder(tiny_ckpt, tmp_path):
    return [f"model.pretrained={tmp_path / 'no-such-model'}", "reasoning=ir"]


@pytest.mark.parametrize("setup,message", [
    # a bare JSONDecodeError, no file named
    (_damaged_model_card, r"model/emorl.json is damaged .*rerun the run's command"),
    # asked for reasoning= first, as if the folder were fine
    (_run_without_model, r"stopped-run: holds no model/ folder and no saved model"),
    # reported as an invalid hub repo id
    (_missing_pretrained_folder, r"no-such-model: no such model directory"),
])
def test_evaluate_errors_name_the_file_and_the_fix(tiny_ckpt, cache_dir, tmp_path, setup, message):
    from emorl.evaluate import evaluate

    model = tmp_path / "run" / "model"
    shutil.copytree(tiny_ckpt, model)
    cfg = compose(setup(model, tmp_path), cache_dir, tmp_path / "eval", config_name="evaluate")
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        evaluate(cfg)


def test_a_damaged_last_checkpoint_names_itself_and_the_way_out(cfg_factory):
    """A truncated last.ckpt gave PyTorch's stream error, with no path and no hint."""
    from emorl.train import train

    cfg = cfg_factory()
    last = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    last.parent.mkdir(parents=True)
    torch.save({"state_dict": {"w": torch.zeros(1000)}, "global_step": 3}, last)
    last.write_bytes(last.read_bytes()[:2000])  # cut short
    with pytest.raises(ValueError, match=r"checkpoints/last.ckpt is damaged .*resume=null.*resume=<path"):
        train(cfg)


def test_evaluate_reports_the_faithfulness_of_esr_prosody_claims(esr_ckpt, cache_dir, tmp_path):
    """The ESR model answers every clip with "pitch low, speed slow": its faithfulness is the share
    of those two claims that the test clips' measured, speaker-relative levels bear out."""
    from hydra.utils import instantiate

    from emorl.evaluate import evaluate
    from emorl.modules.datamodule import EmotionDataModule
    from emorl.prompts import get_strategy

    cfg = compose([f"ckpt={esr_ckpt}", "eval.max_new_tokens=80"], cache_dir, tmp_path / "eval", config_name="evaluate")
    metrics = evaluate(cfg)
    rows = [json.loads(line) for line in (tmp_path / "eval" / "predictions.jsonl").read_text().splitlines()]
    assert all("<prosody>pitch low, speed slow</prosody>" in r["text"] for r in rows)  # the taught answer
    corpus = instantiate(cfg.dataset.corpus)
    datamodule = EmotionDataModule(corpus, get_strategy("esr"), cache_dir=str(cache_dir))
    levels = datamodule.prosody_levels(corpus.items("test"))
    pitch = sum(levels[r["path"]]["pitch"] == "low" for r in rows)
    speed = sum(levels[r["path"]]["speed"] == "slow" for r in rows)
    right = pitch + speed
    assert metrics["test"]["prosody_claims"] == 2 * len(rows) and metrics["test"]["claiming"] == 1.0
    assert metrics["test"]["faithfulness"] == pytest.approx(right / (2 * len(rows)))
    # per attribute: which part of the voice the answers misdescribe
    assert metrics["test"]["faithfulness_by_attribute"] == pytest.approx({"pitch": pitch / len(rows),
                                                                          "speed": speed / len(rows)})
    assert 0 < right < 2 * len(rows)  # some claims hold, some do not


def test_sft_with_esr_trains_on_reasoning_built_from_transcript_and_measured_prosody(cfg_factory, tmp_path):
    """algo=sft reasoning=esr (was refused): the targets are ESR reasoning about each clip, so they are
    many times longer than IR's answers, and every one holds the clip's transcript."""
    import csv

    from emorl.train import train

    tokens = {}
    for reasoning in ("ir", "esr"):
        cfg = cfg_factory("algo=sft", f"reasoning={reasoning}", f"paths.output_dir={tmp_path / reasoning}",
                          "trainer.max_steps=2", "eval.base=false",
                          "checkpoint.select=last", "save_model=false", "trainer.val_check_interval=2")
        metrics, objects = train(cfg)
        (log,) = Path(metrics["run_dir"]).rglob("metrics.csv")
        tokens[reasoning] = [float(r["train/target_tokens"]) for r in csv.DictReader(open(log)) if r.get("train/target_tokens")]
        if reasoning == "esr":
            dataset = objects["datamodule"].dataset("train")
            example = dataset[0]
            assert example.item.transcript in example.target and "<prosody>pitch " in example.target
            assert example.target.endswith(f"suggest {example.label}</synthesis></think><answer>{example.label}</answer>")
    assert len(tokens["esr"]) == 2 and min(tokens["esr"]) > 5 * max(tokens["ir"])
