"""``python -m tests.slow_validation <overrides>``: ``emorl.train`` whose validations announce themselves.

At the start of every validation during training, the run touches ``$VALIDATION_MARKER.<step>``
and pauses ``$VALIDATION_PAUSE`` seconds (default 2), so that a test can send a signal while a
validation is in progress.  Nothing else changes.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from lightning.pytorch.callbacks import Callback

import emorl.checkpointing as checkpointing


class AnnounceValidation(Callback):
    def on_validation_start(self, trainer, pl_module) -> None:
        if trainer.state.fn == "fit" and not trainer.sanity_checking:
            Path(f"{os.environ['VALIDATION_MARKER']}.{trainer.global_step}").touch()
            time.sleep(float(os.environ.get("VALIDATION_PAUSE", "2")))


def _with_announcement(original):
    def checkpoint_callbacks(cfg, ckpt_dir):
        return {**original(cfg, ckpt_dir), "announce": AnnounceValidation()}

    return checkpoint_callbacks


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    checkpointing.checkpoint_callbacks = _with_announcement(checkpointing.checkpoint_callbacks)
    from emorl.train import main

    main()
