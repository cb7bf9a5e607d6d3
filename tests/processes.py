"""Test helpers for whole commands run as subprocesses: interrupt one at a point it has reached."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path


def signal_once_written(proc: subprocess.Popen, path: Path, sig: int, grace_s: float = 0.0,
                        timeout_s: float = 300) -> str:
    """Wait until ``proc`` has written ``path`` (a checkpoint, a marker), let it run ``grace_s`` more seconds,
    send it ``sig`` and return its output; fail when ``path`` never appeared or the command finished before the
    signal (nothing was interrupted)."""
    deadline = time.time() + timeout_s
    while not path.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert path.exists(), f"the command never wrote {path}"
    time.sleep(grace_s)
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=timeout_s)
    assert proc.returncode != 0, "the command finished before it was interrupted: " + out[-2000:]
    return out
