"""The real command line: a single run and a --multirun sweep (slow: they start fresh processes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import SMALL

ROOT = Path(__file__).resolve().parents[1]


def _run(args, cache, cwd):
    env = {**os.environ, "EMORL_CACHE": str(cache), "WANDB_MODE": "offline", "HYDRA_FULL_ERROR": "1"}
    return subprocess.run(
        [sys.executable, "-m", "emorl.train", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=900
    )


@pytest.mark.slow
def test_single_run_writes_metrics_json(tmp_path, cache_dir):
    out = tmp_path / "run"
    proc = _run([*SMALL, "logger=wandb", "model.lora={r: 8, alpha: 16}", f"hydra.run.dir={out}"], cache_dir, ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    for stage in ("base", "trained"):
        assert metrics[stage]["n"] == 14  # 2 test clips x 7 classes
        assert sum(metrics[stage]["predicted"].values()) == 14
    # UA recomputed from the per-clip answers: the mean over classes of the share answered correctly
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 14 and len({r["path"] for r in rows}) == 14
    classes = sorted({r["label"] for r in rows})
    recall = {c: sum(r["prediction"] == c for r in rows if r["label"] == c) / sum(r["label"] == c for r in rows) for c in classes}
    assert metrics["trained"]["ua"] == pytest.approx(sum(recall.values()) / len(classes))
    assert metrics["trained"]["recall"] == pytest.approx(recall)
    assert metrics["train"]["steps"] == 2
    assert {"train/reward/format", "train/reward/accuracy", "train/kl", "train/alpha"} <= set(metrics["train"]["final"])
    assert (out / "confusion_trained.png").exists() and (out / "config_resolved.yaml").exists()
    assert (out / "model" / "adapter_config.json").exists()  # the trained LoRA adapter, peft format
    assert list((out / "wandb").glob("offline-run-*")), "W&B should write an offline run"


@pytest.mark.slow
def test_multirun_sweep_writes_one_folder_per_job(tmp_path, cache_dir):
    sweep = tmp_path / "sweep"
    proc = _run(["--multirun", "reward=bcr,eswr", *SMALL, f"hydra.sweep.dir={sweep}"], cache_dir, ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = sorted(p.name for p in sweep.iterdir() if p.is_dir() and (p / "metrics.json").exists())
    assert jobs == ["0_bcr_esr_s0", "1_eswr_esr_s0"]
    assert (sweep / jobs[0] / "model" / "config.json").exists()  # full fine-tuning saves the whole model
    # the report groups the sweep's runs by (reward, reasoning)
    report = subprocess.run([sys.executable, "-m", "emorl.report", str(sweep)], capture_output=True, text=True)
    assert report.returncode == 0, report.stderr
    first_table = report.stdout.split("\n\n")[0].splitlines()  # the UA/WA/F1 table; then per-class recall
    rows = [line for line in first_table if line.startswith("| sweep | grpo")]
    assert [r.split("|")[2:8] for r in rows] == [[" grpo ", " bcr ", " esr ", " synthetic ", " - ", " 1 "],
                                                  [" grpo ", " eswr ", " esr ", " synthetic ", " - ", " 1 "]]


@pytest.mark.slow
def test_evaluate_reloads_a_trained_run_and_reproduces_its_test_metrics(tmp_path, cache_dir):
    run = tmp_path / "run"
    proc = _run([*SMALL, "model.lora={r: 8, alpha: 16}", f"hydra.run.dir={run}"], cache_dir, ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    trained = json.loads((run / "metrics.json").read_text())["trained"]
    env = {**os.environ, "EMORL_CACHE": str(cache_dir), "WANDB_MODE": "offline", "HYDRA_FULL_ERROR": "1"}
    for attempt in range(2):  # greedy decoding: the same numbers every time
        out = tmp_path / f"eval{attempt}"
        proc = subprocess.run(
            [sys.executable, "-m", "emorl.evaluate", *SMALL, f"ckpt={run}", f"hydra.run.dir={out}"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        test = json.loads((out / "metrics.json").read_text())["test"]
        assert test["confusion"] == trained["confusion"]
        assert test["ua"] == trained["ua"]


def test_an_installed_wheel_finds_its_configuration_from_any_directory(tmp_path):
    """``pip install .`` (not editable) ships conf/ as emorl/conf: the entry points compose a run outside the checkout."""
    import importlib.util
    import shutil

    src, wheels, site = tmp_path / "src", tmp_path / "wheels", tmp_path / "site"
    # build from a copy of the sources: building writes build/ beside them
    for folder in ("emorl", "conf"):
        shutil.copytree(ROOT / folder, src / folder, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "setup.cfg", "README.md"):
        shutil.copy(ROOT / name, src / name)
    isolation = ["--no-build-isolation"] if importlib.util.find_spec("setuptools") else []
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", *isolation, "-w", str(wheels), str(src)],
                           capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-3000:]
    (wheel,) = wheels.glob("emorl-*.whl")
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(site), str(wheel)],
                             capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stderr[-3000:]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site), "EMORL_CACHE": str(tmp_path / "cache")}
    # Hydra prints the composed job config and exits (--cfg job): nothing is built or trained
    proc = subprocess.run([sys.executable, "-m", "emorl.train", "--cfg", "job", "experiment=bcr_ir", "strategy=deepspeed_zero2"],
                          cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    import yaml

    cfg = yaml.safe_load(proc.stdout)
    assert (cfg["reward"]["name"], cfg["reasoning"]["name"], cfg["model"]["name"]) == ("bcr", "ir", "tiny")
    check = subprocess.run([sys.executable, "-c", "import emorl, json; from emorl import CONF_DIR; "
                            "print(json.dumps([emorl.__file__, str(CONF_DIR / 'deepspeed' / 'zero2.json')]))"],
                           cwd=elsewhere, env=env, capture_output=True, text=True, timeout=120)
    module_file, zero2 = json.loads(check.stdout)
    assert module_file.startswith(str(site)), "the installed copy was imported, not the checkout"
    assert Path(zero2).is_relative_to(site / "emorl" / "conf"), zero2  # the wheel's own copy of conf/
    assert json.loads(Path(zero2).read_text())["zero_optimization"]["stage"] == 2  # JSON files ship too
    assert not list(elsewhere.iterdir()), "composing wrote nothing into the working directory"


def test_the_wheel_lists_every_package_of_the_checkout():
    """pyproject.toml names the packages (conf/ is mapped into emorl.conf): a new package folder must be added."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    on_disk = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "emorl").rglob("__init__.py")}
    assert listed == on_disk | {"emorl.conf"}
