"""The paper's tables as runs: zero-shot rows, cross-corpus evaluation inside a run, table sweeps."""

from __future__ import annotations

import json

import pytest
from omegaconf import OmegaConf

HELDOUT = "eval.cross_corpus=[{name:synthetic_heldout,corpus:{test_per_class:1,test_speakers:2}}]"


def test_a_zero_shot_run_scores_the_starting_model_as_emorl_evaluate_does(cfg_factory, tmp_path):
    """algo=zero_shot trains nothing: its run's test scores and answers are the base's, on its own test split and on
    the held-out corpus, equal to what emorl.evaluate answers for the same base."""
    from emorl.evaluate import evaluate
    from emorl.train import train
    from tests.conftest import compose

    cfg = cfg_factory("algo=zero_shot", "reasoning=eur", HELDOUT)
    metrics, _ = train(cfg)
    run_dir = tmp_path / "run"
    assert metrics["train"]["steps"] == 0 and not (run_dir / "model").exists() and not (run_dir / "checkpoints").exists()
    assert json.loads((run_dir / "metrics.json").read_text())["cross_corpus"] == metrics["cross_corpus"]

    evaluated = evaluate(compose(["reasoning=eur", f"model.pretrained={metrics['model']}",
                                  f"eval.max_new_tokens={cfg.eval.max_new_tokens}"], cfg.paths.cache_dir,
                                 tmp_path / "eval", config_name="evaluate"))
    assert metrics["trained"]["n"] == evaluated["test"]["n"] == 14  # 7 classes x 2 test clips
    assert metrics["trained"]["confusion"] == evaluated["test"]["confusion"]
    held = metrics["cross_corpus"]["synthetic_heldout"]
    assert held["n"] == 7 and json.loads((run_dir / "cross_corpus/synthetic_heldout/metrics.json").read_text())["ckpt"] == "None"
    texts = [json.loads(line)["text"] for line in (run_dir / "predictions.jsonl").read_text().splitlines()]
    assert texts == [json.loads(line)["text"] for line in (tmp_path / "eval/predictions.jsonl").read_text().splitlines()]


def test_a_trained_run_evaluates_its_exported_model_on_the_held_out_corpus(cfg_factory, tmp_path):
    from emorl.train import train

    metrics, _ = train(cfg_factory("reasoning=ir", "eval.base=false", HELDOUT))
    held = json.loads((tmp_path / "run/cross_corpus/synthetic_heldout/metrics.json").read_text())
    assert held["ckpt"] == str(tmp_path / "run") and held["reasoning"] == "ir" and held["test"]["n"] == 7
    assert metrics["cross_corpus"]["synthetic_heldout"]["ua"] == held["test"]["ua"]


@pytest.mark.parametrize(
    "entry, message",
    [
        ("[synthetic_heldot]", "no dataset config 'synthetic_heldot'"),  # a typo, refused by name
        ("[iemocap]", "give its folder as \\{name: iemocap, root: <folder>\\}"),  # a real corpus without its folder
    ],
)
def test_cross_corpus_entries_are_checked_before_any_work(cfg_factory, monkeypatch, entry, message):
    from emorl import builders
    from emorl.train import train

    monkeypatch.setattr(builders, "resolve_model_path", lambda *a: pytest.fail("the base was built before the check"))
    with pytest.raises(ValueError, match=message):
        train(cfg_factory(f"eval.cross_corpus={entry}"))


def test_cross_corpus_needs_the_exported_model(cfg_factory):
    from emorl.train import train

    with pytest.raises(ValueError, match="set save_model=true"):
        train(cfg_factory("save_model=false", "eval.cross_corpus=[synthetic_heldout]"))


def test_an_offline_wandb_run_holds_its_sweep_axes_samples_and_evaluation_charts(cfg_factory, tmp_path):
    """Read back from the offline run file: the run's group, job type and axis tags, the rollout samples table, and
    per evaluation the confusion matrix, per-class recall and predicted-label charts."""
    from emorl.train import train
    from tests.wandb_records import history_keys, read_records

    train(cfg_factory("logger=wandb", "logger.wandb.group=table1", "algo.grpo.log_samples_every=1", "eval.base=false"))
    files = sorted((tmp_path / "run" / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(files) == 1
    records = read_records(files[0])
    run = next(r.run for r in records if r.WhichOneof("record_type") == "run")
    assert run.run_group == "table1" and run.job_type == "train"
    assert set(run.tags) == {"algo:grpo", "reward:eswr", "reasoning:esr", "dataset:synthetic", "seed:0"}
    keys = history_keys(records)
    for stage in ("val", "test"):
        # a W&B table is logged as its reference: <key>/_type, <key>/path, ...
        assert {f"{stage}/confusion_matrix_table/_type", f"{stage}/recall_chart_table/_type", f"{stage}/predicted_chart_table/_type",
                f"{stage}/recall/joy", f"{stage}/predicted/unparsed"} <= keys, [k for k in sorted(keys) if "/recall/" not in k and "/predicted/" not in k]
    assert "train/samples/_type" in keys


def test_the_frozen_encoder_row_trains_only_its_head_and_evaluates_from_its_export(cfg_factory, tmp_path):
    """algo=linear_probe: the audio tower stays the base's bit for bit, only the head moves; emorl.evaluate of the
    exported run reproduces the run's test answers (the head is loaded), and cross-corpus evaluation uses it."""
    import torch
    from safetensors.torch import load_file

    from emorl.evaluate import evaluate
    from emorl.tables import row_id
    from emorl.train import train
    from tests.conftest import compose

    cfg = cfg_factory("experiment=frozen_encoder", "trainer.max_steps=3", "trainer.val_check_interval=1", HELDOUT)
    metrics, objects = train(cfg)
    module = objects["module"]
    assert row_id(OmegaConf.to_container(cfg, resolve=True)) == "frozen_encoder"
    assert [n for n, p in module.named_parameters() if p.requires_grad] == ["head.0.weight", "head.0.bias", "head.2.weight",
                                                                           "head.2.bias"]
    base = load_file(f"{metrics['run_dir']}/model/model.safetensors")
    tower = {k: v for k, v in base.items() if "audio_tower" in k}
    start = load_file(f"{module.policy.name_or_path}/model.safetensors")
    assert tower and all(torch.equal(v, start[k]) for k, v in tower.items())  # the encoder did not move
    head = torch.load(tmp_path / "run/model/probe_head.pt")
    assert head["labels"] == list(module.labels) and head["state_dict"]["2.weight"].shape == (7, 256)
    assert metrics["trained"]["unparsed_rate"] == 0.0  # the head always answers a label

    evaluated = evaluate(compose([f"ckpt={tmp_path / 'run'}"], cfg.paths.cache_dir, tmp_path / "eval", config_name="evaluate"))
    assert evaluated["test"]["confusion"] == metrics["trained"]["confusion"]
    assert metrics["cross_corpus"]["synthetic_heldout"]["n"] == 7 and metrics["cross_corpus"]["synthetic_heldout"]["unparsed_rate"] == 0.0


def test_the_probe_refuses_a_backbone_without_a_qwen2_audio_encoder():
    """Qwen2.5-Omni's audio tower takes another input layout: refused by name, not run on the wrong shapes."""
    from torch import nn

    from emorl.modules.probe import audio_tower_of

    class OmniLike(nn.Module):
        def __init__(self):
            super().__init__()
            self.audio_tower = nn.Linear(2, 2)

    with pytest.raises(ValueError, match="needs a Qwen2-Audio backbone.*OmniLike has none"):
        audio_tower_of(OmniLike())


def test_the_probe_counts_the_encoders_output_frames_as_transformers_does(tiny):
    """The probe pools each clip's own frames: its frame count (emorl's formula) is the encoder's."""
    import torch

    from emorl.modules.probe import audio_tower_of, encoder_frames

    tower = audio_tower_of(tiny[0])
    mel = torch.tensor([1, 2, 3, 4, 99, 100, 101, 1499, 1500, 3000])
    assert encoder_frames(mel).tolist() == tower._get_feat_extract_output_lengths(mel)[1].tolist()
    full = 2 * tower.config.max_source_positions  # the encoder's fixed input window
    features = torch.zeros(1, tower.config.num_mel_bins, full)
    with torch.no_grad():
        frames = tower(features).last_hidden_state.shape[1]
    assert frames == encoder_frames(torch.tensor([full])).item()
