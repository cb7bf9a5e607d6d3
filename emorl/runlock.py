"""One run per directory: a lock file that names its holder, and finds stale ones.

Two commands given the same ``hydra.run.dir`` would otherwise both run and mix their outputs
(one's ``config_resolved.yaml``, the other's ``metrics.json`` and ``model/``, interleaved logs).
The lock is taken before anything is written and removed when the run ends, however it ends.
A lock left by a killed run on this host is stale and taken over (the run then resumes); one
held by a live process, or by a process on another host, stops the new run.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)

LOCK_NAME = ".emorl.lock"


class RunDirectoryInUse(RuntimeError):
    pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def _leader() -> bool:
    """Whether this process is the one that starts the run (not a worker a launcher started for it)."""
    return all(int(os.environ.get(key, "0") or 0) == 0 for key in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID"))


@contextmanager
def run_directory_lock(run_dir: Path, what: str = "run") -> Iterator[None]:
    """Hold ``run_dir``'s lock for the duration; raise :class:`RunDirectoryInUse` if another process holds it.

    Only the leading process of a multi-process run takes it (its workers write into the same folder).
    """
    if not _leader():
        yield
        return
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_NAME
    me = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S"), "what": what}
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            holder = _read(path)
            if holder.get("host") == me["host"] and isinstance(holder.get("pid"), int) and not _alive(holder["pid"]):
                log.warning("%s: taking over the stale lock of process %s (gone; started %s)", run_dir,
                            holder["pid"], holder.get("since", "?"))
                path.unlink(missing_ok=True)
                continue
            raise RunDirectoryInUse(
                f"{run_dir} is in use by {holder.get('what', 'a run')} of process {holder.get('pid', '?')} on "
                f"{holder.get('host', '?')} since {holder.get('since', '?')}. Wait for it to end (the same command then "
                "resumes it), or give this run another hydra.run.dir. If that process is gone (another host, a "
                f"crashed machine), delete {path} and run again."
            ) from None
        with os.fdopen(fd, "w") as f:
            json.dump(me, f)
        break
    else:
        raise RunDirectoryInUse(f"{path}: could not take the lock (another process took it first); run again")
    try:
        yield
    finally:
        if _read(path).get("pid") == me["pid"]:
            path.unlink(missing_ok=True)


def _read(path: Path) -> dict:
    try:
        holder = json.loads(path.read_text())
        return holder if isinstance(holder, dict) else {}
    except (OSError, ValueError):
        return {}
