"""Evaluate a trained model on the test split: ``python -m emorl.evaluate ckpt=<run dir>``.

``ckpt`` is a training run directory (its ``model/`` is loaded) or a ``model/`` directory
itself: a peft adapter (loaded onto its base model) or a full model.  With ``ckpt=null`` the
starting model of the configuration is evaluated.  The dataset, reasoning strategy and
evaluation settings come from the configuration and its command-line overrides, as for
training.  Writes ``metrics.json`` and a confusion matrix into the output directory.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig

log = logging.getLogger(__name__)

#: The config tree, found from this file so that ``main`` works however it is called.
CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")


def load_checkpoint(ckpt: str | Path, dtype: str):
    """``(model, processor)`` from a run directory or a saved ``model/`` directory."""
    from emorl.models.loading import load_backbone

    path = Path(ckpt)
    if (path / "model").is_dir():
        path = path / "model"
    if not path.is_dir():
        raise FileNotFoundError(f"ckpt={ckpt}: no such run or model directory")
    adapter_config = path / "adapter_config.json"
    if adapter_config.exists():
        from peft import PeftModel

        base = json.loads(adapter_config.read_text())["base_model_name_or_path"]
        model, processor = load_backbone(base, dtype)
        return PeftModel.from_pretrained(model, str(path)), processor
    return load_backbone(path, dtype)


def warn_if_reasoning_differs(ckpt: Path, name: str) -> None:
    """A run trained with one strategy and scored with another is almost always a mistake."""
    saved = ckpt / "config_resolved.yaml"
    if saved.exists():
        import yaml

        trained = (yaml.safe_load(saved.read_text()).get("reasoning") or {}).get("name")
        if trained and trained != name:
            log.warning("ckpt %s was trained with reasoning=%s but is evaluated with reasoning=%s", ckpt, trained, name)


def evaluate(cfg: DictConfig) -> dict:
    """Test metrics of ``cfg.ckpt`` (or of the configured starting model)."""
    from hydra.utils import instantiate

    from emorl.metrics import plot_confusion
    from emorl.models.loading import load_backbone
    from emorl.train import build_module, resolve_model_path

    if cfg.num_threads:
        torch.set_num_threads(int(cfg.num_threads))
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    corpus = instantiate(cfg.dataset.corpus)
    strategy = instantiate(cfg.reasoning)
    if cfg.get("ckpt"):
        warn_if_reasoning_differs(Path(cfg.ckpt), strategy.name)
        model, processor = load_checkpoint(cfg.ckpt, cfg.model.dtype)
    else:
        model, processor = load_backbone(resolve_model_path(cfg, corpus, strategy), cfg.model.dtype)
    model.eval()
    module = build_module(cfg, model, processor, strategy, corpus.labels, out, train=False)
    datamodule = instantiate(cfg.data, _partial_=True)(corpus=corpus, strategy=strategy, processor=processor)
    trainer = instantiate(cfg.trainer, logger=False)
    trainer.test(module, datamodule=datamodule, verbose=False)
    result = module.eval_results["test"]
    metrics = {"ckpt": str(cfg.get("ckpt")), "test": result}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    plot_confusion(result["confusion"], corpus.labels, out / "confusion_test.png", title="test")
    log.info("test UA %.4f WA %.4f F1 %.4f -> %s", result["ua"], result["wa"], result["f1"], out / "metrics.json")
    return metrics


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="evaluate")
def main(cfg: DictConfig) -> float:
    return evaluate(cfg)["test"]["ua"]


if __name__ == "__main__":
    main()
