"""Class-balanced training prompts: each gold class equally likely, deterministic, resumed exactly."""

from __future__ import annotations

import pytest

from emorl.data.sampling import EpochBatchSampler, class_balance_weights

LABELS = ["a"] * 90 + ["b"] * 10  # a rare class: a tenth of the clips


def drawn(sampler: EpochBatchSampler, epochs: int) -> list[int]:
    out = []
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        out += [i for batch in sampler for i in batch]
    return out


def test_class_balance_draws_each_class_equally_often():
    sampler = EpochBatchSampler(100, 10, seed=0, weights=class_balance_weights(LABELS, "class"))
    picks = drawn(sampler, 20)
    share_b = sum(LABELS[i] == "b" for i in picks) / len(picks)
    assert share_b == pytest.approx(0.5, abs=0.03)  # 2000 draws: the binomial std is 0.011
    plain = drawn(EpochBatchSampler(100, 10, seed=0), 20)
    assert sum(LABELS[i] == "b" for i in plain) / len(plain) == pytest.approx(0.1)  # a permutation: exactly a tenth


def test_a_balanced_order_is_fixed_by_seed_and_epoch_and_resumes_exactly():
    weights = class_balance_weights(LABELS, "class")
    first = EpochBatchSampler(100, 10, seed=3, weights=weights)
    first.set_epoch(2)
    order = list(first)
    resumed = EpochBatchSampler(100, 10, seed=3, weights=weights)
    resumed.resume(epoch=2, batches=4)
    assert list(resumed) == order[4:]
    other = EpochBatchSampler(100, 10, seed=4, weights=weights)
    other.set_epoch(2)
    assert list(other) != order


def test_an_unknown_balance_is_refused(cfg_factory):
    from emorl.builders import check_run_settings

    with pytest.raises(ValueError, match="data.balance='classes' is not one of none, class"):
        check_run_settings(cfg_factory("data.balance=classes"))


def test_the_datamodule_draws_its_training_prompts_by_data_balance(small_corpus, tiny):
    from emorl.modules.datamodule import EmotionDataModule
    from emorl.prompts import get_strategy

    dm = EmotionDataModule(corpus=small_corpus, strategy=get_strategy("ir"), batch_size=2, check_audio=False,
                           balance="class")
    dm.setup("fit")
    dm.use_processor(tiny[1])
    sampler = dm.train_dataloader().batch_sampler
    labels = [item.label for item in dm.dataset("train").items]
    assert sampler.weights.tolist() == pytest.approx(class_balance_weights(labels, "class"))
