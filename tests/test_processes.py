"""The test helpers that run whole commands: a command past its deadline leaves no process behind and says where it waited."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from tests.processes import CommandTimedOut, run_command

# a parent that starts a child (as a rank-0 process starts the other ranks), writes the child's pid, and both wait
HANGING_JOB = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time\\ndef wait_for_the_other_rank():\\n    time.sleep(600)\\nwait_for_the_other_rank()"])
open(sys.argv[1], "w").write(str(child.pid))
time.sleep(600)
"""


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/status").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text()


def test_a_command_past_its_deadline_is_stopped_with_every_process_it_started_and_its_stacks_are_reported(tmp_path):
    pid_file = tmp_path / "child.pid"
    start = time.time()
    with pytest.raises(CommandTimedOut) as failure:
        run_command([sys.executable, "-c", HANGING_JOB, str(pid_file)], cwd=tmp_path, env=dict(os.environ), timeout_s=3)
    assert time.time() - start < 40
    child = int(pid_file.read_text())
    deadline = time.time() + 10
    while alive(child) and time.time() < deadline:
        time.sleep(0.1)
    assert not alive(child)  # the other "rank" is gone too, not left spinning for the rest of the suite
    assert "wait_for_the_other_rank" in str(failure.value)  # the child's stack: where it waited


def test_a_finished_command_returns_its_output_and_status(tmp_path):
    done = run_command([sys.executable, "-c", "import sys; print('out'); print('err', file=sys.stderr); sys.exit(3)"],
                       cwd=tmp_path, env=dict(os.environ), timeout_s=60)
    assert done.returncode == 3 and "out" in done.stdout and "err" in done.stdout
