"""A run killed mid-training (SIGTERM or SIGKILL) and resumed ends exactly as an uninterrupted one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from emorl.runs import read_log, validation_curve
from tests.conftest import SMALL
from tests.processes import signal_once_written
from tests.rewards import LENGTH_REWARD

# The untrained tiny base earns no format or accuracy reward (zero advantages, no update); the
# runs score completions by length instead (tests/rewards.py), which varies inside every group.


def launch(run_dir: Path, cache: Path, schedule=("trainer.max_steps=10", "trainer.val_check_interval=3",
           "checkpoint.every_n_steps=2"), entry: str = "emorl.train", env: dict | None = None) -> subprocess.Popen:
    overrides = [*SMALL, f"paths.cache_dir={cache}", f"hydra.run.dir={run_dir}", *schedule, "logger=csv", *LENGTH_REWARD]
    env = {**os.environ, "WANDB_MODE": "offline", "TOKENIZERS_PARALLELISM": "false", **(env or {})}
    return subprocess.Popen([sys.executable, "-m", entry, *overrides], env=env, cwd=Path(__file__).parents[1],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(proc: subprocess.Popen) -> str:
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-3000:]
    return out


def interrupt(run_dir: Path, cache: Path, sig: int) -> str:
    """Start a run, send ``sig`` a moment after its first periodic checkpoint exists, return its output."""
    last = run_dir / "checkpoints" / "last.ckpt"
    return signal_once_written(launch(run_dir, cache), last, sig, grace_s=0.3)  # into the next steps


@pytest.mark.slow
def test_killed_runs_resume_to_the_same_final_metrics_and_weights(tmp_path, cache_dir):
    runs = {name: tmp_path / name for name in ("straight", "sigterm", "sigkill")}
    finish(launch(runs["straight"], cache_dir))

    out = interrupt(runs["sigterm"], cache_dir, signal.SIGTERM)
    assert proc_said_resume_hint(out, runs["sigterm"])
    out = interrupt(runs["sigkill"], cache_dir, signal.SIGKILL)
    assert not (runs["sigkill"] / "metrics.json").exists()
    for name in ("sigterm", "sigkill"):
        out = finish(launch(runs[name], cache_dir))  # the same command: resume=auto finds last.ckpt
        assert "resuming from" in out

    metrics = {name: json.loads((d / "metrics.json").read_text()) for name, d in runs.items()}
    weights = {name: load_file(d / "model" / "model.safetensors") for name, d in runs.items()}
    reference = metrics["straight"]
    assert reference["train"]["steps"] == 10
    base = load_file(Path(json.loads((runs["straight"] / "model" / "emorl.json").read_text())["base_model"]) / "model.safetensors")
    assert any(not (base[k] == w).all() for k, w in weights["straight"].items()), "training moved no weight"
    for name in ("sigterm", "sigkill"):
        assert metrics[name]["trained"] == reference["trained"], name
        assert metrics[name]["train"]["selected_step"] == reference["train"]["selected_step"]
        assert metrics[name]["train"]["final"] == pytest.approx(reference["train"]["final"])
        assert weights[name].keys() == weights["straight"].keys()
        for key, tensor in weights["straight"].items():
            assert (weights[name][key] == tensor).all(), f"{name}: {key} differs after resuming"
    # the log too: every step once, under its own number, the steps before the interruption kept (a resumed run's
    # log, read from its last csv/version_<n> only, once began at the resume)
    logs = {name: read_log(d) for name, d in runs.items()}
    rewards = {name: {int(r["step"]): r["train/reward_mean"] for r in rows if "train/reward_mean" in r}
               for name, rows in logs.items()}
    assert sorted(rewards["straight"]) == list(range(10)), rewards["straight"]
    for name in ("sigterm", "sigkill"):
        assert rewards[name] == pytest.approx(rewards["straight"]), name
        assert validation_curve(logs[name]) == pytest.approx(validation_curve(logs["straight"])), name
        assert len(logs[name]) == len(logs["straight"]), name


# Validation at steps 4 and 8, the periodic checkpoint every 2 steps: step 4 has both.  The untrained
# base scores the same val UA at every validation, so an uninterrupted run selects step 4 (the
# first best); a resumed run that skipped step 4's validation would select step 8.
VALIDATION_SCHEDULE = ("trainer.max_steps=8", "trainer.val_check_interval=4", "checkpoint.every_n_steps=2")


@pytest.mark.slow
def test_a_run_killed_during_validation_resumes_to_the_same_selection_metrics_and_weights(tmp_path, cache_dir):
    """The periodic checkpoint of a step followed by a validation is written after that validation:
    a kill inside it resumes from the previous checkpoint and validates again (Lightning resumes a
    checkpoint taken at the end of the step past the validation, which then never ran)."""
    runs = {name: tmp_path / name for name in ("straight", "sigterm", "sigkill")}
    marker = {name: tmp_path / f"validating-{name}" for name in runs}

    def start(name):
        return launch(runs[name], cache_dir, VALIDATION_SCHEDULE, entry="tests.slow_validation",
                      env={"VALIDATION_MARKER": str(marker[name]), "VALIDATION_PAUSE": "3"})

    finish(start("straight"))
    validated = {"straight": sorted(p.name for p in tmp_path.glob("validating-straight.*"))}
    assert validated["straight"] == ["validating-straight.4", "validating-straight.8"]
    for name, sig in (("sigterm", signal.SIGTERM), ("sigkill", signal.SIGKILL)):
        at_4 = Path(f"{marker[name]}.4")
        out = signal_once_written(start(name), at_4, sig)  # during step 4's validation (it pauses 3 s at its start)
        assert "val step 4" not in out  # killed before that validation finished
        at_4.unlink()
        out = finish(start(name))
        assert "resuming from" in out
        assert "val step 4" in out and at_4.exists(), f"{name}: step 4 was not validated after resuming"

    metrics = {name: json.loads((d / "metrics.json").read_text()) for name, d in runs.items()}
    weights = {name: load_file(d / "model" / "model.safetensors") for name, d in runs.items()}
    assert metrics["straight"]["train"]["selected_step"] == 4
    for name in ("sigterm", "sigkill"):
        assert metrics[name]["train"]["selected_step"] == 4, name
        assert metrics[name]["trained"] == metrics["straight"]["trained"], name
        assert metrics[name]["train"]["val_ua_best"] == metrics["straight"]["train"]["val_ua_best"]
        for key, tensor in weights["straight"].items():
            assert (weights[name][key] == tensor).all(), f"{name}: {key} differs after resuming"


def proc_said_resume_hint(out: str, run_dir: Path) -> bool:
    return "SIGTERM" in out and f"hydra.run.dir={run_dir}" in out


def test_resuming_with_other_settings_is_refused(tmp_path):
    from emorl.checkpointing import settings_changed

    saved = {"seed": 0, "algo": {"grpo": {"beta": 0.04}}, "paths": {"output_dir": "a"}, "resume": "auto"}
    same = {**saved, "paths": {"output_dir": "b"}, "resume": None}
    assert settings_changed(saved, same) == []  # where a run is written may change
    other = {**saved, "algo": {"grpo": {"beta": 0.0}}}
    assert settings_changed(saved, other) == ["algo.grpo.beta: 0.04 -> 0.0"]


def _disk_fills_in_sendfile(monkeypatch, other_device: Path):
    """The system temporary folder lies on another device (renames out of it fail with EXDEV, so
    a move copies) and the checkpoint's disk fills during the copy."""
    import errno
    import shutil  # noqa: F401  (shutil.move copies through os.sendfile on Linux)

    rename, replace = os.rename, os.replace

    def cross_device(function):
        def guarded(src, dst, *args, **kwargs):
            if str(src).startswith(str(other_device)):
                raise OSError(errno.EXDEV, "Invalid cross-device link")
            return function(src, dst, *args, **kwargs)
        return guarded

    def full(out_fd, in_fd, offset, count):
        os.write(out_fd, b"\0" * 16)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "rename", cross_device(rename))
    monkeypatch.setattr(os, "replace", cross_device(replace))
    monkeypatch.setattr(os, "sendfile", full, raising=False)
    monkeypatch.setattr("tempfile.tempdir", str(other_device))


def _torch_save_fails_midway(monkeypatch, other_device: Path):
    """The checkpoint's disk fills while the checkpoint itself is written."""
    import errno

    import torch

    save = torch.save

    def half(obj, f, *args, **kwargs):
        if hasattr(f, "write"):
            f.write(b"\0" * 16)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", half)
    return save


@pytest.mark.parametrize("fault,kept_step", [
    # temp folder on another disk, whose move is a copy over the old file, then the disk fills:
    # a writer that stages next to the checkpoint never copies, and saves
    (_disk_fills_in_sendfile, 2),
    # the disk fills while the checkpoint is serialised: the save fails, the old one stays whole
    (_torch_save_fails_midway, 1),
])
def test_a_failed_checkpoint_write_leaves_the_previous_checkpoint_whole(tmp_path, monkeypatch, fault, kept_step):
    import torch

    from emorl.checkpointing import AtomicCheckpointIO

    io, path = AtomicCheckpointIO(), tmp_path / "ckpt" / "best.ckpt"
    io.save_checkpoint({"step": 1, "w": torch.arange(1000)}, path)
    other_device = tmp_path / "other-device"
    other_device.mkdir()
    fault(monkeypatch, other_device)
    try:
        io.save_checkpoint({"step": 2, "w": torch.arange(5000)}, path)
    except OSError as error:
        assert "No space left" in str(error) and kept_step == 1, error
    monkeypatch.undo()
    kept = torch.load(path, weights_only=True)
    assert kept["step"] == kept_step and (kept["w"] == torch.arange(1000 if kept_step == 1 else 5000)).all()
    assert sorted(p.name for p in path.parent.iterdir()) == ["best.ckpt"]  # no partial file left behind


def test_the_trainer_writes_checkpoints_atomically(cfg_factory):
    """The trainer ``emorl.train`` builds uses the atomic writer (and Lightning's default does not)."""
    from hydra.utils import instantiate
    from lightning.pytorch.plugins.io import TorchCheckpointIO

    from emorl.checkpointing import AtomicCheckpointIO, use_atomic_checkpoints

    trainer = instantiate(cfg_factory().trainer, logger=False)
    assert type(trainer.strategy.checkpoint_io) is TorchCheckpointIO
    use_atomic_checkpoints(trainer)
    assert isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO)


def test_a_sigterm_callback_signalled_in_one_fit_does_not_stop_the_next(tmp_path):
    """A signal noted in one fit belongs to that fit: the same callback used for a second fit lets it run to its end
    (before, its note stayed set and stopped the second fit at its first step)."""
    import lightning
    import torch
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    from emorl.checkpointing import CheckpointOnSigterm

    callback = CheckpointOnSigterm(tmp_path / "last.ckpt")

    class Steps(lightning.LightningModule):
        def __init__(self, signal_at: int | None) -> None:
            super().__init__()
            self.layer, self.signal_at = torch.nn.Linear(2, 1), signal_at

        def training_step(self, batch, batch_idx):
            if batch_idx == self.signal_at:
                callback._note(signal.SIGTERM, None)  # what the handler does when the signal comes
            return self.layer(batch).pow(2).mean()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

        def train_dataloader(self):
            return torch.utils.data.DataLoader(torch.ones(8, 2), batch_size=1)

    def fit(signal_at):
        trainer = lightning.Trainer(accelerator="cpu", max_steps=5, logger=False, enable_checkpointing=False,
                                    enable_progress_bar=False, enable_model_summary=False, callbacks=[callback],
                                    default_root_dir=tmp_path)
        try:
            trainer.fit(Steps(signal_at))
        except SIGTERMException:
            pass
        return trainer.global_step

    assert fit(signal_at=1) == 2  # signalled in step 2: stops at its end and saves there
    assert (tmp_path / "last.ckpt").exists()
    assert fit(signal_at=None) == 5
