"""A run stops before its first step when its disk cannot hold its checkpoints and model.

A full disk once killed table runs while they wrote a checkpoint, hours in; the check counts what a
run writes from the module it trains and compares it with the disk's free space.
"""

from __future__ import annotations

import shutil
from collections import namedtuple
from pathlib import Path

import pytest

from emorl.checkpointing import (
    FILE_HEADER,
    check_free_space,
    checkpoint_bytes,
    optimizer_bytes,
    run_bytes,
    tensor_bytes,
)

GiB = 2**30


@pytest.mark.parametrize("free,needed,replaced,stops", [
    # room to spare
    (10 * GiB, 1 * GiB, 0, False),
    # exactly enough
    (1 * GiB, 1 * GiB, 0, False),
    # one byte short
    (1 * GiB - 1, 1 * GiB, 0, True),
    # a resumed run overwrites its own checkpoints: their bytes count as room
    (1 * GiB, 3 * GiB, 2 * GiB, False),
    # ... but not beyond what they are
    (1 * GiB, 3 * GiB, 1 * GiB, True),
])
def test_a_run_stops_when_its_disk_has_less_room_than_it_writes(tmp_path, free, needed, replaced, stops):
    if not stops:
        check_free_space(tmp_path, needed, replaced=replaced, free=free)
        return
    with pytest.raises(OSError) as error:
        check_free_space(tmp_path, needed, replaced=replaced, free=free)
    message = str(error.value)
    assert str(tmp_path) in message and f"{free / GiB:.2f} GiB free" in message and f"{needed / GiB:.2f} GiB" in message
    assert "hydra.run.dir" in message  # the way out


def test_the_room_counted_holds_the_checkpoints_and_model_a_run_writes(cfg_factory):
    """The count is made from the module trained; the files the run then writes fit in it, and it is not
    many times what they take (a count ten times too high would stop runs that fit)."""
    from emorl.train import train

    cfg = cfg_factory("checkpoint.every_n_steps=1", "eval.base=false")
    _, objects = train(cfg)
    module = objects["module"]
    counted = checkpoint_bytes(tensor_bytes(module.checkpointed(module.state_dict()).values()),
                               optimizer_bytes(p for p in module.parameters() if p.requires_grad))
    for name in ("last.ckpt", "best.ckpt"):
        size = (Path(cfg.paths.output_dir) / "checkpoints" / name).stat().st_size
        assert size <= counted <= 1.1 * size + FILE_HEADER, (name, size, counted)
    exported = sum(f.stat().st_size for f in (Path(cfg.paths.output_dir) / "model").rglob("*") if f.is_file())
    policy = tensor_bytes(module.policy.state_dict().values())
    assert exported <= run_bytes(0, policy) <= 1.1 * exported + FILE_HEADER


def test_training_on_a_full_disk_stops_before_its_first_step(cfg_factory, monkeypatch):
    """5 MiB free for a run that writes about 80 MiB (the tiny model's checkpoints and export)."""
    from emorl.train import train

    cfg = cfg_factory("eval.base=false")
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(100 * GiB, 100 * GiB - 5 * 2**20, 5 * 2**20))
    with pytest.raises(OSError, match=r"checkpoints: its disk has 0.00 GiB free, and this run writes up to 0.0[6-9] GiB"):
        train(cfg)
    assert not list((Path(cfg.paths.output_dir) / "checkpoints").glob("*.ckpt"))  # no step ran, none was written


def test_pretraining_on_a_full_disk_stops_before_its_first_step(cache_dir, tmp_path, monkeypatch):
    """``python -m emorl.pretrain`` writes last.ckpt (and its successor beside it) and the base: with 5 MiB free
    for the reduced build's ~40 MiB it stops before a step, naming the folder."""
    from hydra import compose, initialize_config_dir

    from emorl import CONF_DIR
    from emorl.pretrain import pretrain
    from tests.test_pretrain import PRETRAIN_SMALL

    pytest.importorskip("nrclex")
    run = tmp_path / "base"
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="pretrain",
                      overrides=[*PRETRAIN_SMALL, f"paths.cache_dir={cache_dir}", f"paths.output_dir={run}"])
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(100 * GiB, 100 * GiB - 5 * 2**20, 5 * 2**20))
    with pytest.raises(OSError, match=rf"{run / 'checkpoints'}: its disk has 0.00 GiB free, and this run writes up to 0.0[2-9] GiB"):
        pretrain(cfg)
    assert not (run / "checkpoints" / "last.ckpt").exists() and not (run / "model").exists()
