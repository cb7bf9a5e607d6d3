"""emorl: reinforcement learning for speech emotion recognition with audio-language models."""

from pathlib import Path

from omegaconf import OmegaConf


def _conf_dir() -> Path:
    """The Hydra config tree: ``conf/`` at the top of a checkout; an installed wheel carries it as ``emorl/conf/``
    (``package-dir`` in ``pyproject.toml``).  Entry points find it from any directory."""
    package = Path(__file__).resolve().parent
    for candidate in (package / "conf", package.parent / "conf"):
        if (candidate / "train.yaml").is_file():
            return candidate
    raise FileNotFoundError(f"emorl's config tree (train.yaml) is neither in {package / 'conf'} nor in "
                            f"{package.parent / 'conf'}: reinstall emorl (pip install -e . in a checkout)")


#: The config tree (``conf/`` in a checkout, ``emorl/conf/`` once installed).
CONF_DIR = _conf_dir()

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
