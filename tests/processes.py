"""Test helpers for whole commands run as subprocesses: run one with a deadline that leaves no process
behind and says where each one waited; interrupt one at a point it has reached."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path


class CommandTimedOut(AssertionError):
    """A command ran past its deadline; the message holds its output, each process's Python stack last."""


def run_command(args: list[str], cwd: Path, env: dict, timeout_s: float) -> subprocess.CompletedProcess:
    """Run ``args`` in a process group of its own, output and errors together in ``stdout``.

    Past ``timeout_s`` every process of the group (a multi-process job's other ranks too, which
    ``subprocess.run(timeout=...)`` would leave running) gets SIGABRT, on which Python's faulthandler
    writes its stack, then SIGKILL; :class:`CommandTimedOut` carries the output, so a hang says where
    each process waited.
    """
    proc = subprocess.Popen(args, cwd=cwd, env={**env, "PYTHONFAULTHANDLER": "1"}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        _signal_group(proc.pid, signal.SIGABRT)
        try:
            out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            out = ""
        _signal_group(proc.pid, signal.SIGKILL)  # what the abort left, the group's other processes included
        out += proc.communicate(timeout=30)[0] or ""
        raise CommandTimedOut(f"{' '.join(args[:4])} ... ran past {timeout_s} s; its output, stacks last:\n"
                              + out[-12000:]) from None
    _signal_group(proc.pid, signal.SIGKILL)  # a process the command started and left behind
    return subprocess.CompletedProcess(args, proc.returncode, out, "")


def failure_report(output: str, tail: int = 4000) -> str:
    """What a failed command said: every distinct line naming an exception (each process's own error, which in a
    multi-process job the last process's traceback would push out of a plain tail), then the output's tail.

    >>> print(failure_report("[rank1]: RuntimeError: shard 3 missing\\n...\\n[rank0]: RuntimeError: connection reset", tail=12))
    errors: [rank1]: RuntimeError: shard 3 missing | [rank0]: RuntimeError: connection reset
    ection reset
    """
    import re

    errors = list(dict.fromkeys(line.strip() for line in output.splitlines()
                                if re.search(r"\b\w*(Error|Exception|Interrupt|Timeout)\b:", line)))
    return "errors: " + " | ".join(errors[-20:]) + "\n" + output[-tail:]


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


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
