"""Writing a run's results so that a file on disk is always whole, and knowing what a folder holds.

A result file is written to a temporary file beside it, flushed to disk, then renamed over the
target: a full disk or a kill mid-write leaves the previous file (or none), never half of one.
Runs write their metrics before anything larger (the exported model), so the numbers already
computed survive a failure at the end.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_file(path: str | os.PathLike, mode: str = "w"):
    """An open temporary file beside ``path`` that replaces ``path`` when the block ends without error
    (flushed and synced to disk first); on an error it is removed and ``path`` stays as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        with open(tmp, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file in the same folder and a rename."""
    with atomic_file(path) as f:
        f.write(text)
    return Path(path)


def write_json_atomic(path: str | os.PathLike, data) -> Path:
    return write_text_atomic(path, json.dumps(data, indent=2))


def write_jsonl_atomic(path: str | os.PathLike, rows: Iterable[dict]) -> Path:
    return write_text_atomic(path, "".join(json.dumps(row) + "\n" for row in rows))


def holds_training_run(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` holds a run of ``emorl.train`` or ``emorl.pretrain`` (its settings or checkpoints).

    >>> import tempfile; d = Path(tempfile.mkdtemp()); holds_training_run(d)
    False
    >>> (d / "config_resolved.yaml").write_text("seed: 0\\n") and holds_training_run(d)
    True
    """
    folder = Path(folder)
    return (folder / "config_resolved.yaml").is_file() or (folder / "checkpoints").is_dir()


def evaluation_dir(ckpt, dataset: str, what: str, day: str, time: str) -> str:
    """Where ``emorl.evaluate`` writes by default: beside the run it evaluates (``<run>/evaluations/...``),
    or under ``outputs/evaluate/`` for a model folder or the untuned base.

    >>> evaluation_dir(None, "synthetic", "ir", "2026-12-03", "10-00-00")
    'outputs/evaluate/2026-12-03/10-00-00_synthetic_ir'
    """
    name = f"{dataset}_{what}"
    if ckpt not in (None, "", "None") and holds_training_run(ckpt):
        return str(Path(str(ckpt)) / "evaluations" / f"{day}_{time}_{name}")
    return f"outputs/evaluate/{day}/{time}_{name}"
