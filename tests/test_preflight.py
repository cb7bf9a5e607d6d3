"""Bad settings and bad corpora stop ``emorl.train`` before any model is built, naming the key.

Each case runs the real ``train(cfg)`` with model building replaced by a failure: a case passes
only if its own error comes first.
"""

from __future__ import annotations

import pytest

from tests.conftest import compose


class ModelBuilt(Exception):
    pass


@pytest.fixture
def train_without_model(monkeypatch, cache_dir, tmp_path):
    from emorl import builders
    from emorl.train import train

    def refuse(*args, **kwargs):
        raise ModelBuilt("the model was built before the bad input was found")

    monkeypatch.setattr(builders, "resolve_model_path", refuse)
    return lambda *overrides: train(compose(list(overrides), cache_dir, tmp_path / "run"))


@pytest.mark.parametrize("overrides,message", [
    # a misspelt choice used the final policy silently
    (["checkpoint.select=bestt"], r"checkpoint.select='bestt' is not one of best, last"),
    # -1 with GRPO's max_epochs=-1 trained without end (and ESWR's alpha was 0 from the start)
    (["trainer.max_steps=-1"], r"trainer.max_steps=-1 with trainer.max_epochs=-1 trains nothing or without end"),
    # 0 exported the untrained base as if trained
    (["trainer.max_steps=0"], r"trainer.max_steps=0"),
    # SFT runs by epochs: no epoch limit either would never end
    (["algo=sft", "trainer.max_steps=-1", "trainer.max_epochs=-1"], r"trainer.max_epochs=-1 trains nothing or without end"),
    # a negative learning rate was found after the base's test evaluation
    (["model.lr=-1e-3"], r"Invalid learning rate.*set a positive model.lr"),
    # following Hydra's '+key' hint for a typo ended in a bare TypeError
    (["+algo.grpo.betta=0.1"], r"algo.grpo has no setting betta"),
    # reported once as a ZeroDivisionError, and under algo.num_generations
    (["algo.grpo.micro_batch_size=0"], r"algo.grpo.micro_batch_size must be >= 1, got 0"),
    (["algo.grpo.num_generations=1"], r"algo.grpo.num_generations=1: GRPO needs at least 2"),
    (["reward=eswr", "+reward.accuracy.gammma=0.5"], r"reward.accuracy has no setting gammma .*takes: .*gamma"),
    (["checkpoint.every_n_steps=-5"], r"checkpoint.every_n_steps=-5"),
    # found only when the base model was loaded, after its warm start
    (["model.dtype=bf16"], r"model.dtype='bf16' is not one of float32, bfloat16, float16"),
    # a string is truthy: the base was evaluated
    (["eval.base=maybe"], r"eval.base='maybe': set true or false"),
    # used silently as if 'group'
    (["algo.grpo.advantage_scale=nne"], r"algo.grpo.advantage_scale='nne' is not one of group, none"),
    # errors name the full key
    (["algo.grpo.loss_type=dappo"], r"algo.grpo.loss_type='dappo': Unsupported loss type"),
    (["reward=eswr", "reward.accuracy.alpha_schedule=cosin"], r"reward.accuracy: Unsupported alpha schedule: 'cosin'"),
    (["data.test_split=tset"], r"data.test_split='tset' is not one of"),
    (["trainer.val_check_interval=0"], r"trainer.val_check_interval=0"),
    # a corpus that cannot be read was found after ~7 minutes of building the base
    (["dataset=manifest", "dataset.path=/no/such/corpus.csv", "dataset.labels=meld"], r"/no/such/corpus.csv"),
])
def test_bad_input_stops_the_run_before_the_model_is_built(train_without_model, overrides, message):
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        train_without_model(*overrides)


def test_a_wrong_dataset_path_fails_before_a_base_is_built_in_an_empty_cache(tmp_path):
    """The command line, a fresh cache: the error names the path, and no base was built first."""
    import subprocess
    import sys
    from pathlib import Path

    out = subprocess.run(
        [sys.executable, "-m", "emorl.train", "dataset=manifest", "dataset.path=/no/such/corpus.csv", "dataset.labels=meld",
         f"paths.cache_dir={tmp_path / 'empty-cache'}", f"hydra.run.dir={tmp_path / 'run'}", "logger=csv"],
        cwd=Path(__file__).parents[1], capture_output=True, text=True, timeout=120,
    )
    assert out.returncode != 0
    assert "/no/such/corpus.csv" in out.stderr + out.stdout
    assert not (tmp_path / "empty-cache" / "tiny-qwen2-audio").exists()  # no base was built
