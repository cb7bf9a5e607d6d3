"""Lightning's DeepSpeedStrategy on CPU processes, for tests only.

As shipped, the strategy refuses any accelerator but CUDA and initialises NCCL on a device
index.  This subclass skips the CUDA check, gives DeepSpeed a CPU device with an index and the
gloo backend; DeepSpeed itself runs on its CPU accelerator (``DS_ACCELERATOR=cpu``).  Used as
``strategy=deepspeed_zero2 strategy.strategy._target_=tests.cpu_deepspeed.CPUDeepSpeedStrategy``.
"""

from __future__ import annotations

import torch
from lightning.pytorch.strategies import DDPStrategy, DeepSpeedStrategy


class CPUDeepSpeedStrategy(DeepSpeedStrategy):
    def setup_environment(self) -> None:
        DDPStrategy.setup_environment(self)  # DeepSpeedStrategy's own raises on a non-CUDA accelerator

    @property
    def root_device(self) -> torch.device:
        return torch.device("cpu", 0)  # DeepSpeed reads a device index

    def setup_distributed(self) -> None:
        self.set_world_ranks()
        self._init_deepspeed_distributed()

    def _get_process_group_backend(self) -> str:
        return "gloo"
