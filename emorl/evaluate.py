"""Evaluate a checkpoint, or the untuned base, on any corpus: ``python -m emorl.evaluate ckpt=<run dir>``.

``ckpt`` is a training run directory (its ``model/`` is loaded), a ``model/`` directory (a peft
adapter, loaded onto its base, or a full model), or null for the configured starting model.
The reasoning strategy is the checkpoint's (``model/emorl.json``) unless ``reasoning=`` is given;
the untuned base needs one (``reasoning=ir``: direct inference, ``reasoning=eur``: CoT).  The
corpus is ``dataset=`` (``data.test_split=all`` scores every item, for cross-corpus tests).  For a
model trained on other labels, target labels without a counterpart are mapped through the
emotion data (:func:`emorl.emotions.cross_corpus_mapping`), printed and saved.

Writes ``metrics.json`` (UA, WA, macro F1, per-class recall, confusion matrix, unparsed rate,
the mapping, skipped items), ``predictions.jsonl`` and a confusion matrix into its output directory.
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig

from emorl import CONF_DIR

log = logging.getLogger(__name__)


def evaluate(cfg: DictConfig) -> dict:
    """Test metrics of ``cfg.ckpt`` (or of the configured starting model) on ``cfg.dataset``."""
    from emorl.evaluation import evaluate_run
    from emorl.results import holds_training_run
    from emorl.runlock import run_directory_lock

    out = Path(cfg.paths.output_dir)
    if holds_training_run(out):
        raise ValueError(
            f"hydra.run.dir={out} holds a training run; an evaluation would overwrite its metrics.json. Leave "
            f"hydra.run.dir out (an evaluation of ckpt=<run> goes to <run>/evaluations/) or choose another folder")
    with run_directory_lock(out, "emorl.evaluate"):
        return evaluate_run(cfg)


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="evaluate")
def main(cfg: DictConfig) -> float:
    return evaluate(cfg)["test"]["ua"]


if __name__ == "__main__":
    main()
