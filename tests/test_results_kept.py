"""Nothing overwritten, nothing resumed wrongly: results, checkpoints and caches survive misuse and faults."""

from __future__ import annotations

import builtins
import errno
import json
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from tests.conftest import compose


def fake_training_run(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "config_resolved.yaml").write_text("seed: 0\n")
    (folder / "checkpoints").mkdir()
    (folder / "metrics.json").write_text(json.dumps({"trained": {"ua": 0.5}, "train": {"steps": 3}}))
    return folder


# ------------------------------------------------------------------ evaluations beside runs, never over them
def test_an_evaluation_into_a_training_runs_folder_is_refused_and_the_run_is_untouched(tmp_path, cache_dir):
    from emorl.evaluate import evaluate

    run = fake_training_run(tmp_path / "run")
    before = (run / "metrics.json").read_text()
    cfg = compose(["reasoning=ir"], cache_dir, run, config_name="evaluate")
    with pytest.raises(ValueError, match="holds a training run"):
        evaluate(cfg)
    assert (run / "metrics.json").read_text() == before


def test_an_evaluation_of_a_run_goes_beside_it_with_its_own_hydra_files(tmp_path, cache_dir):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from tests.conftest import CONF_DIR

    run = fake_training_run(tmp_path / "run")
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = hydra_compose("evaluate", overrides=[f"ckpt={run}", "reasoning=ir"], return_hydra_config=True)
    where = Path(OmegaConf.to_container(cfg.hydra.run, resolve=True)["dir"])
    assert where.parent == run / "evaluations" and where.name.endswith("_synthetic_ir")
    assert cfg.hydra.output_subdir == ".hydra-evaluate"  # the run's own .hydra/overrides.yaml is never rewritten
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = hydra_compose("evaluate", overrides=["reasoning=eur"], return_hydra_config=True)
    assert OmegaConf.to_container(cfg.hydra.run, resolve=True)["dir"].startswith("outputs/evaluate/")


# ------------------------------------------------------------------ resuming: the checkpoint's own settings
def checkpoint_with(path: Path, settings: dict | None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": {}, **({"emorl_settings": settings} if settings is not None else {})}, path)
    return path


def settings_of(*overrides, cache, out):
    from emorl.checkpointing import run_settings

    return run_settings(compose(list(overrides), cache, out))


def test_resuming_another_runs_checkpoint_into_a_new_folder_is_refused(tmp_path, cache_dir):
    """The foreign run trained another reward; the new folder has no config file to compare with."""
    from emorl.checkpointing import resume_path

    foreign = checkpoint_with(tmp_path / "a" / "checkpoints" / "last.ckpt",
                              settings_of("reward=bcr", cache=cache_dir, out=tmp_path / "a"))
    cfg = compose([f"resume={foreign}"], cache_dir, tmp_path / "b")
    with pytest.raises(ValueError, match=r"other settings \(.*reward"):
        resume_path(cfg, tmp_path / "b" / "checkpoints", tmp_path / "b" / "config_resolved.yaml")


def test_a_deleted_config_file_does_not_turn_the_settings_check_off(tmp_path, cache_dir):
    from emorl.checkpointing import resume_path

    run = tmp_path / "run"
    checkpoint_with(run / "checkpoints" / "last.ckpt", settings_of(cache=cache_dir, out=run))
    assert not (run / "config_resolved.yaml").exists()
    cfg = compose(["reward=bcr", "model.lr=0.01"], cache_dir, run)
    with pytest.raises(ValueError, match="model.lr: 0.0003 -> 0.01"):
        resume_path(cfg, run / "checkpoints", run / "config_resolved.yaml")


def test_a_moved_run_folder_resumes_paths_are_not_settings(tmp_path, cache_dir):
    from emorl.checkpointing import resume_path

    old, new = tmp_path / "old", tmp_path / "new"
    checkpoint_with(new / "checkpoints" / "last.ckpt", settings_of(cache=cache_dir, out=old))
    cfg = compose([], tmp_path / "another_cache", new)  # moved, and its cache reached through another path
    assert resume_path(cfg, new / "checkpoints", new / "config_resolved.yaml") == str(new / "checkpoints" / "last.ckpt")


@pytest.mark.parametrize("content, message", [
    ("seed: [unclosed\n", "is damaged"),  # not YAML at all
    ("- a list\n", "expected the run's settings"),  # YAML, but not a mapping of settings
])
def test_a_damaged_config_file_of_an_old_checkpoint_is_named(tmp_path, cache_dir, content, message):
    from emorl.checkpointing import resume_path

    run = tmp_path / "run"
    checkpoint_with(run / "checkpoints" / "last.ckpt", None)  # an earlier emorl's checkpoint: no settings inside
    (run / "config_resolved.yaml").write_text(content)
    with pytest.raises(ValueError, match=message) as error:
        resume_path(compose([], cache_dir, run), run / "checkpoints", run / "config_resolved.yaml")
    assert "config_resolved.yaml" in str(error.value)


def test_an_old_checkpoint_without_settings_or_config_is_refused(tmp_path, cache_dir):
    from emorl.checkpointing import resume_path

    run = tmp_path / "run"
    checkpoint_with(run / "checkpoints" / "last.ckpt", None)
    with pytest.raises(ValueError, match="records no settings"):
        resume_path(compose([], cache_dir, run), run / "checkpoints", run / "config_resolved.yaml")


def test_the_best_checkpoint_of_a_moved_run_is_its_own_copy_with_its_score(tmp_path):
    from emorl.checkpointing import MovableModelCheckpoint

    old, new = tmp_path / "old" / "checkpoints", tmp_path / "new" / "checkpoints"
    saved = MovableModelCheckpoint(dirpath=old, filename="best", monitor="val/ua", mode="max")
    saved.best_model_path, saved.best_model_score = str(old / "best.ckpt"), torch.tensor(0.61)
    saved.best_k_models = {str(old / "best.ckpt"): torch.tensor(0.61)}
    state = saved.state_dict()
    resumed = MovableModelCheckpoint(dirpath=new, filename="best", monitor="val/ua", mode="max")
    resumed.load_state_dict(state)
    assert resumed.best_model_path == str(new / "best.ckpt")  # not the original run's file
    assert float(resumed.best_model_score) == pytest.approx(0.61)  # a worse validation does not replace it


# ------------------------------------------------------------------ results written whole, or not at all
def disk_fills_while_writing(monkeypatch, name: str, after: int = 10):
    """Writes to files whose name contains ``name`` fail with ENOSPC after ``after`` characters."""
    real_open = builtins.open

    class Full:
        def __init__(self, f):
            self.f, self.written = f, 0

        def write(self, text):
            if self.written + len(text) > after:
                self.f.write(text[: after - self.written])
                raise OSError(errno.ENOSPC, "No space left on device")
            self.written += len(text)
            return self.f.write(text)

        def __getattr__(self, key):
            return getattr(self.f, key)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return self.f.__exit__(*exc)

    def fake_open(file, mode="r", *args, **kwargs):
        f = real_open(file, mode, *args, **kwargs)
        return Full(f) if name in str(file) and "w" in mode else f

    monkeypatch.setattr(builtins, "open", fake_open)
    monkeypatch.setattr(Path, "write_text", lambda self, text, *a, **k: fake_open(self, "w").write(text))


def test_a_full_disk_while_writing_results_leaves_the_previous_metrics_whole(tmp_path, monkeypatch):
    from emorl.train import _save_results

    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.json").write_text('{"trained": {"ua": 0.4}}')
    disk_fills_while_writing(monkeypatch, "metrics.json")
    confusion = [[1, 0, 0], [0, 1, 0]]
    with pytest.raises(OSError, match="No space"):
        _save_results(run, {"trained": {"ua": 0.6, "confusion": confusion}}, ["a", "b"], [])
    assert json.loads((run / "metrics.json").read_text()) == {"trained": {"ua": 0.4}}
    assert not [p for p in run.iterdir() if p.name.endswith(".partial")]


def test_the_report_lists_a_damaged_metrics_file_and_reports_the_rest(tmp_path, capsys):
    from emorl.report import main

    good, bad = tmp_path / "sweep" / "0", tmp_path / "sweep" / "1"
    good.mkdir(parents=True)
    bad.mkdir()
    (good / "metrics.json").write_text(json.dumps({"test": {"ua": 0.5, "wa": 0.5, "f1": 0.5, "unparsed_rate": 0.0,
                                                            "recall": {"joy": 0.5}, "n": 4}, "ckpt": "x", "dataset": "d",
                                                   "reasoning": "ir"}))
    (bad / "metrics.json").write_text("")  # a disk that filled at the end
    main([str(tmp_path / "sweep")])
    out, err = capsys.readouterr()
    assert f"damaged, left out: {bad / 'metrics.json'}" in err
    assert "50.0" in out


def test_the_paper_report_of_a_misspelt_folder_stops_and_creates_nothing(tmp_path):
    from emorl.report import main

    with pytest.raises(SystemExit, match="no such folder"):
        main(["--paper", str(tmp_path / "multirun_sweeps" / "tabel1")])
    assert not (tmp_path / "multirun_sweeps").exists()


# ------------------------------------------------------------------ caches keyed by content, not by path
def test_the_same_cache_through_another_path_finds_the_embedded_base(tmp_path, monkeypatch):
    from emorl.data.synthetic import SyntheticCorpus
    from emorl.models import embedded
    from tests.conftest import embedded_base

    cache = tmp_path / "cache"
    built = embedded_base(cache, SyntheticCorpus(cache / "synthetic", train_per_class=2, val_per_class=1,
                                                  test_per_class=1))
    link = tmp_path / "mounted"
    link.symlink_to(cache)  # a bind mount, or the cache named by an absolute EMORL_CACHE
    monkeypatch.setattr(embedded, "warm_start", lambda *a, **k: pytest.fail("the base was built again"))
    found = embedded_base(link, SyntheticCorpus(link / "synthetic", train_per_class=2, val_per_class=1, test_per_class=1))
    assert found.name == built.name and found.resolve() == built.resolve()


def test_a_failed_export_keeps_the_test_metrics_already_computed(cfg_factory, monkeypatch):
    import emorl.checkpointing as checkpointing
    from emorl.train import train

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpointing, "export_model", full_disk)
    cfg = cfg_factory("trainer.max_steps=1", "eval.base=false")
    with pytest.raises(OSError, match="No space"):
        train(cfg)
    metrics = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())
    assert metrics["trained"]["n"] == 14 and "train" in metrics  # written before the model
