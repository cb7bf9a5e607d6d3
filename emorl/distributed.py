"""What multi-process runs need beyond Lightning's strategies: the Hydra sweep trap, global counts.

Lightning's DDP/DeepSpeed strategies start the other processes by re-running the command line.
Under ``--multirun`` that command is the whole sweep: each extra process would launch every job
of the sweep again, and write to another folder.  :func:`pin_child_processes_to_this_job`
rewrites the command line (and Hydra's run directory, which Lightning hands to the children) to
this one job and its folder before Lightning launches anything.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import torch

log = logging.getLogger(__name__)


@contextmanager
def sweep_job() -> Iterator[None]:
    """One run, or one job of a sweep: its extra processes run it alone; the next job starts clean.

    After the job the process group is closed, and under ``--multirun`` the environment variables
    and command line Lightning's launcher set for this job (``LOCAL_RANK``, ``MASTER_PORT``, ...)
    are restored, so that the next job launches its own processes.
    """
    environment, argv = dict(os.environ), list(sys.argv)
    pinned = pin_child_processes_to_this_job()
    try:
        yield
    finally:
        end_process_group()
        if pinned:
            os.environ.clear()
            os.environ.update(environment)
            sys.argv = argv


def pin_child_processes_to_this_job() -> bool:
    """Under a Hydra multirun, make processes Lightning launches run this job only, in its folder."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import open_dict, read_write

    if not HydraConfig.initialized():
        return False
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode != RunMode.MULTIRUN:
        return False
    job_dir = hydra_cfg.runtime.output_dir
    sys.argv = [sys.argv[0], *hydra_cfg.overrides.task]
    run = HydraConfig.instance().cfg.hydra.run
    with read_write(run), open_dict(run):
        run.dir = job_dir
    log.debug("child processes of this job run: %s in %s", sys.argv[1:], job_dir)
    return True


def alone() -> bool:
    """Whether this process runs without others (no process group, or a group of one)."""
    dist = torch.distributed
    return not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1


def global_mean(value: float | int, device: torch.device | str = "cpu") -> float:
    """The mean of ``value`` over the processes of the run (the value itself when alone).

    DDP averages gradients over processes, so a loss normalised by a count (the tokens of a
    batch, for ``bnpo``/``dapo``) equals the single-process loss when every process divides by
    the mean count instead of its own.
    """
    dist = torch.distributed
    if alone():
        return float(value)
    total = torch.tensor(float(value), dtype=torch.float64, device=device)
    dist.all_reduce(total)
    return float(total) / dist.get_world_size()


def global_sum(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` summed over the processes of the run (itself when alone), same shape."""
    dist = torch.distributed
    if alone():
        return tensor
    total = tensor.clone()
    dist.all_reduce(total)
    return total


def on_any_process(flag: bool, device: torch.device | str = "cpu") -> bool:
    """Whether ``flag`` holds on at least one process of the run (``flag`` itself when alone).

    A collective call: every process must make it, as often as the others.
    """
    dist = torch.distributed
    if alone():
        return bool(flag)
    value = torch.tensor(float(flag), device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value)


def on_every_process(flag: bool, device: torch.device | str = "cpu") -> bool:
    """Whether ``flag`` holds on every process of the run (``flag`` itself when alone); collective."""
    return not on_any_process(not flag, device)


def every_process(value: object) -> list:
    """``value`` of every process of the run, in rank order (``[value]`` when alone); collective."""
    dist = torch.distributed
    if alone():
        return [value]
    values: list = [None] * dist.get_world_size()
    dist.all_gather_object(values, value)
    return values


def end_process_group() -> None:
    """Close the process group of a finished run, so that the next job of a sweep starts its own."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
