"""emorl: reinforcement learning for speech emotion recognition with audio-language models."""

from pathlib import Path

from omegaconf import OmegaConf

#: The config tree, shipped inside the package (``emorl/conf/``): entry points find it from any directory.
CONF_DIR = Path(__file__).resolve().parent / "conf"

# ${emorl.conf_dir:} in configs: files next to the configs (DeepSpeed JSON) wherever emorl runs from.
OmegaConf.register_new_resolver("emorl.conf_dir", lambda: str(CONF_DIR), replace=True)
