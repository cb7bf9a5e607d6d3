"""emorl: reinforcement learning for speech emotion recognition with audio-language models."""

from pathlib import Path

from omegaconf import OmegaConf

#: The config tree, shipped inside the package (``emorl/conf/``): entry points find it from any directory.
CONF_DIR = Path(__file__).resolve().parent / "conf"

#: Files shipped inside the package: the pretrained embedded base (``assets/embedded_base``, built by ``emorl.pretrain``).
ASSETS_DIR = Path(__file__).resolve().parent / "assets"

# ${emorl.asset:embedded_base} in configs: the shipped base, wherever emorl is installed.
OmegaConf.register_new_resolver("emorl.asset", lambda name: str(ASSETS_DIR / str(name)), replace=True)

# ${emorl.conf_dir:} in configs: files next to the configs (DeepSpeed JSON) wherever emorl runs from.
OmegaConf.register_new_resolver("emorl.conf_dir", lambda: str(CONF_DIR), replace=True)


def _evaluation_dir(ckpt, dataset, what, day, time):
    from emorl.results import evaluation_dir

    return evaluation_dir(ckpt, dataset, what, day, time)


# ${emorl.evaluation_dir:...} in evaluate.yaml: an evaluation of a run goes beside it, never over it.
OmegaConf.register_new_resolver("emorl.evaluation_dir", _evaluation_dir, replace=True)
