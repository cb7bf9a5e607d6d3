"""One run per directory: a second run refuses a directory in use, takes over a stale lock."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from emorl.runlock import LOCK_NAME, RunDirectoryInUse, run_directory_lock


@pytest.fixture
def live_process():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc
    proc.kill()
    proc.wait()


def hold(run_dir, pid, host=None):
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / LOCK_NAME).write_text(json.dumps({"pid": pid, "host": host or socket.gethostname(),
                                                 "since": "2026-01-01 00:00:00", "what": "emorl.train"}))


def finished_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.mark.parametrize("holder,taken", [
    ("live", False),          # a running process on this host: refused
    ("other host", False),    # a process elsewhere cannot be checked: refused, with how to clear it
    ("gone", True),           # a killed run's lock on this host: stale, taken over (the run resumes)
    (None, True),             # no lock: taken
])
def test_the_lock_refuses_a_directory_in_use_and_takes_over_a_stale_one(tmp_path, live_process, holder, taken):
    run_dir = tmp_path / "run"
    if holder == "live":
        hold(run_dir, live_process.pid)
    elif holder == "other host":
        hold(run_dir, live_process.pid, host="elsewhere.example")
    elif holder == "gone":
        hold(run_dir, finished_pid())
    if taken:
        with run_directory_lock(run_dir):
            assert json.loads((run_dir / LOCK_NAME).read_text())["pid"] == os.getpid()
        assert not (run_dir / LOCK_NAME).exists()  # released at the end
    else:
        with pytest.raises(RunDirectoryInUse) as error:
            with run_directory_lock(run_dir):
                pass
        message = str(error.value)
        assert str(live_process.pid) in message and "another hydra.run.dir" in message and str(run_dir) in message
        assert (run_dir / LOCK_NAME).exists()  # the holder's lock is left alone


def test_the_lock_is_released_when_the_run_fails(tmp_path):
    with pytest.raises(ValueError, match="boom"):
        with run_directory_lock(tmp_path):
            raise ValueError("boom")
    assert not (tmp_path / LOCK_NAME).exists()


def test_a_second_train_in_a_directory_in_use_stops_before_writing(cfg_factory, live_process):
    """Two commands with the same hydra.run.dir both ran and mixed their outputs."""
    from pathlib import Path

    from emorl.train import train

    cfg = cfg_factory()
    run_dir = Path(cfg.paths.output_dir)
    hold(run_dir, live_process.pid)
    with pytest.raises(RunDirectoryInUse, match=f"process {live_process.pid}"):
        train(cfg)
    assert sorted(p.name for p in run_dir.iterdir()) == [LOCK_NAME]  # nothing written beside the holder's lock
