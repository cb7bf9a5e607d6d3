"""Test helpers for whole commands run as subprocesses: interrupt one once it has checkpointed."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path


def signal_after_first_checkpoint(proc: subprocess.Popen, run_dir: Path, sig: int, grace_s: float = 0.0,
                                  timeout_s: float = 300) -> str:
    """Wait until ``run_dir/checkpoints/last.ckpt`` exists, let ``proc`` run ``grace_s`` more seconds, send it
    ``sig`` and return its output; fail when it finished before the signal (nothing was interrupted)."""
    last = run_dir / "checkpoints" / "last.ckpt"
    deadline = time.time() + timeout_s
    while not last.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(grace_s)
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=timeout_s)
    assert proc.returncode != 0, "the command finished before it was interrupted: " + out[-2000:]
    return out
