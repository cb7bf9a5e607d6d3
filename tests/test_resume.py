"""A run killed mid-training (SIGTERM or SIGKILL) and resumed ends exactly as an uninterrupted one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from tests.conftest import SMALL
from tests.rewards import LENGTH_REWARD

# The untrained tiny base earns no format or accuracy reward (zero advantages, no update); the
# runs score completions by length instead (tests/rewards.py), which varies inside every group.


def launch(run_dir: Path, cache: Path) -> subprocess.Popen:
    overrides = [
        *SMALL, f"paths.cache_dir={cache}", f"hydra.run.dir={run_dir}", "trainer.max_steps=10",
        "trainer.val_check_interval=3", "checkpoint.every_n_steps=2", "logger=csv", *LENGTH_REWARD,
    ]
    env = {**os.environ, "WANDB_MODE": "offline", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.Popen([sys.executable, "-m", "emorl.train", *overrides], env=env, cwd=Path(__file__).parents[1],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(proc: subprocess.Popen) -> str:
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-3000:]
    return out


def interrupt(run_dir: Path, cache: Path, sig: int) -> str:
    """Start a run, send ``sig`` once its first periodic checkpoint exists, return its output."""
    proc = launch(run_dir, cache)
    last = run_dir / "checkpoints" / "last.ckpt"
    deadline = time.time() + 300
    while not last.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # into the next steps
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode != 0, "the run finished before it was interrupted: " + out[-2000:]
    return out


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


def proc_said_resume_hint(out: str, run_dir: Path) -> bool:
    return "SIGTERM" in out and f"hydra.run.dir={run_dir}" in out


def test_resuming_with_other_settings_is_refused(tmp_path):
    from emorl.checkpointing import settings_changed

    saved = {"seed": 0, "algo": {"grpo": {"beta": 0.04}}, "paths": {"output_dir": "a"}, "resume": "auto"}
    same = {**saved, "paths": {"output_dir": "b"}, "resume": None}
    assert settings_changed(saved, same) == []  # where a run is written may change
    other = {**saved, "algo": {"grpo": {"beta": 0.0}}}
    assert settings_changed(saved, other) == ["algo.grpo.beta: 0.04 -> 0.0"]
