"""Every Hydra command in the README and docs/ composes: its config groups, options and keys exist."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
ENTRY = {"emorl.train": "train", "emorl.evaluate": "evaluate", "emorl.pretrain": "pretrain"}
COMMAND = re.compile(r"python -m (emorl\.(?:train|evaluate|pretrain))\b([^`\n#|]*)")


def documented_commands() -> list[tuple[str, str, list[str]]]:
    found = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        if "results" in doc.parts:  # dated results: commands as they were then
            continue
        for module, rest in COMMAND.findall(doc.read_text()):
            words = [w for w in shlex.split(rest.replace("\\", " "), posix=True) if w]
            args = [w for w in words if "=" in w and not w.startswith("-") and "<" not in w and "..." not in w
                    and "$" not in w]  # shell variables stand for a folder
            found.append((f"{doc.relative_to(ROOT)}: python -m {module}{rest.rstrip()}", ENTRY[module], args))
    return found


COMMANDS = documented_commands()


def test_the_docs_hold_commands():
    assert len(COMMANDS) > 20


@pytest.mark.parametrize("where, config, overrides", COMMANDS, ids=[c[0][:90] for c in COMMANDS])
def test_a_documented_command_composes(where, config, overrides):
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from tests.conftest import CONF_DIR

    sweep = [o for o in overrides if "," in o.split("=", 1)[1] and not o.split("=", 1)[1].startswith(("[", "{"))]
    single = [o for o in overrides if o not in sweep] + [o.split(",")[0] for o in sweep]  # the first job of a sweep
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name=config, overrides=["paths.output_dir=/tmp/x", *single])
    assert OmegaConf.to_container(cfg, resolve=False)  # a whole config, every group found
