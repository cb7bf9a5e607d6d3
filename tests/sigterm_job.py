"""``python -m tests.sigterm_job <overrides>``: ``python -m emorl.pretrain`` whose process 0 sends itself SIGTERM in the
middle of training step :data:`STOP_AT_STEP`, just before that step's backward pass, while the other process goes on
into the step's gradient all-reduce: the moment a collective inside the signal handler meets the other process's
all-reduce, and both wait for ever.

Run as a module so that Lightning starts the second process with the same command.  Importing this module changes
nothing; running it does.
"""

import os
import signal

from emorl import pretrain
from emorl.modules.pretrain import PretrainModule

#: The training step (``global_step``, counted from 0) during which process 0 is sent SIGTERM.
STOP_AT_STEP = 3


def signal_mid_step() -> None:
    def on_before_backward(self, loss) -> None:
        if self.global_rank == 0 and self.global_step == STOP_AT_STEP:
            os.kill(os.getpid(), signal.SIGTERM)

    PretrainModule.on_before_backward = on_before_backward


if __name__ == "__main__":
    signal_mid_step()
    pretrain.main()
