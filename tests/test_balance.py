"""Class-balanced training prompts: each gold class equally likely, deterministic, resumed exactly."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from emorl.data.sampling import AccuracyBalance, EpochBatchSampler, ResumableLoader, class_balance_weights

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

    with pytest.raises(ValueError, match="data.balance='classes' is not one of none, class, accuracy"):
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


# --- data.balance=accuracy: the classes the policy gets wrong are drawn most often -----------------------

THREE = ["a", "b", "c"] * 30  # 90 items, 30 per class, interleaved


def test_accuracy_balance_draws_the_weakest_class_most_often():
    balance = AccuracyBalance(THREE)
    sampler = EpochBatchSampler(90, 10, seed=0, adaptive=balance)
    balance.observe(0, correct=[6, 3, 0], counts=[6, 6, 6])  # a always right, b half, c never
    picks = [i for epoch in range(1, 21) for i in (sampler.set_epoch(epoch) or [j for b in sampler for j in b])]
    share = {c: sum(THREE[i] == c for i in picks) / len(picks) for c in "abc"}
    # weights (1 - a + 0.05) / sum: a 0.05 / 1.65, b 0.55 / 1.65, c 1.05 / 1.65; 1800 draws, std <= 0.012
    assert share["c"] == pytest.approx(1.05 / 1.65, abs=0.04)
    assert share["b"] == pytest.approx(0.55 / 1.65, abs=0.04)
    assert share["a"] == pytest.approx(0.05 / 1.65, abs=0.02)


def test_a_batch_is_drawn_by_the_accuracies_two_steps_before_it():
    balance = AccuracyBalance(THREE)
    uniform = balance.class_weights(1).tolist()
    assert uniform == pytest.approx([1 / 3] * 3)  # nothing observed by step -1
    balance.observe(0, [0, 6, 6], [6, 6, 6])
    after_0 = balance.class_weights_now()
    balance.observe(1, [6, 6, 0], [6, 6, 6])
    assert balance.class_weights(1).tolist() == pytest.approx(uniform)  # batch 1: step -1's, not step 0's
    assert balance.class_weights(2).tolist() == pytest.approx(after_0.tolist())  # batch 2: step 0's, not step 1's
    assert after_0.argmax().item() == 0  # class a, the one wrong at step 0, weighs most


def test_processes_draw_disjoint_parts_of_the_same_accuracy_weighted_batch():
    one, two = AccuracyBalance(THREE), [AccuracyBalance(THREE), AccuracyBalance(THREE)]
    for balance in (one, *two):
        balance.observe(0, [1, 5, 2], [6, 6, 6])
    whole = list(EpochBatchSampler(90, 8, seed=1, adaptive=one))
    parts = [list(EpochBatchSampler(90, 4, seed=1, num_replicas=2, rank=r, adaptive=two[r])) for r in (0, 1)]
    assert [a + b for a, b in zip(*parts, strict=True)] == whole


def _lightning_run(tmp_path: Path, max_steps: int, resume: Path | None = None, save_every: int = 0):
    """A Lightning fit over an accuracy-balanced loader (a ResumableLoader, as in training); each step
    reports a made-up accuracy of its batch (class a always right, b on its even items, c never).  Returns
    the batches."""
    import lightning as L

    balance = AccuracyBalance(THREE)
    seen: list[list[int]] = []

    class Module(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))
            self.steps = 0

        def training_step(self, batch, batch_idx):
            items = batch.tolist()
            seen.append(items)
            right = {"a": lambda i: True, "b": lambda i: i % 2 == 0, "c": lambda i: False}
            correct = [sum(right[c](i) for i in items if THREE[i] == c) for c in "abc"]
            counts = [sum(THREE[i] == c for i in items) for c in "abc"]
            balance.observe(self.steps, correct, counts)
            self.steps += 1
            return (self.w ** 2).sum() + 0 * batch.float().sum()

        def on_save_checkpoint(self, checkpoint):
            checkpoint["steps"] = self.steps

        def on_load_checkpoint(self, checkpoint):
            self.steps = checkpoint["steps"]

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    loader = ResumableLoader(list(range(90)), batch_sampler=EpochBatchSampler(90, 6, seed=2, adaptive=balance),
                             collate_fn=torch.tensor)
    callbacks = [L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=save_every, save_last=True)] \
        if save_every else []
    trainer = L.Trainer(max_steps=max_steps, max_epochs=-1, logger=False, enable_progress_bar=False, callbacks=callbacks,
                        enable_checkpointing=bool(save_every), enable_model_summary=False, num_sanity_val_steps=0,
                        default_root_dir=tmp_path)
    trainer.fit(Module(), train_dataloaders=loader, ckpt_path=resume)
    return seen


@pytest.mark.parametrize("stop", [
    20,  # inside the second epoch
    15,  # at the end of the first epoch: the resumed run starts the second
])
def test_an_accuracy_balanced_run_resumed_from_a_checkpoint_draws_the_same_batches(tmp_path, stop):
    # 15 batches an epoch: 40 steps cross two epoch ends
    straight = _lightning_run(tmp_path / "straight", 40)
    _lightning_run(tmp_path / "first", stop, save_every=stop)
    resumed = _lightning_run(tmp_path / "again", 40, resume=tmp_path / "first" / "last.ckpt")
    assert len(resumed) == 40 - stop
    assert resumed == straight[stop:]
    classes = [THREE[i] for b in straight[stop:] for i in b]
    assert classes.count("c") > classes.count("b") > classes.count("a")  # the weights moved: the weakest most often


def test_accuracy_balance_needs_sampled_answers(cfg_factory):
    from emorl.builders import check_run_settings

    with pytest.raises(ValueError, match="data.balance=accuracy weights the classes by the training answers GRPO samples"):
        check_run_settings(cfg_factory("algo=sft", "data.balance=accuracy"))
    check_run_settings(cfg_factory("data.balance=accuracy"))  # GRPO: accepted


def test_each_epoch_of_a_lightning_fit_draws_its_own_order(tmp_path):
    # Lightning sets the epoch of a loader's sampler, not of a batch sampler: the loader counts its passes
    import lightning as L

    seen: list[list[int]] = []

    class Module(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def training_step(self, batch, batch_idx):
            seen.append(batch.tolist())
            return (self.w ** 2).sum()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    loader = ResumableLoader(list(range(12)), batch_sampler=EpochBatchSampler(12, 4, seed=0), collate_fn=torch.tensor)
    L.Trainer(max_epochs=3, logger=False, enable_progress_bar=False, enable_checkpointing=False,
              enable_model_summary=False, default_root_dir=tmp_path).fit(Module(), train_dataloaders=loader)
    epochs = [seen[i : i + 3] for i in (0, 3, 6)]
    assert epochs[1] != epochs[0] and epochs[2] != epochs[1]  # a new permutation each epoch
    expected = []
    for epoch in range(3):
        sampler = EpochBatchSampler(12, 4, seed=0)
        sampler.set_epoch(epoch)
        expected.append(list(sampler))
    assert epochs == expected


def test_a_grpo_step_reports_its_sampled_answers_per_gold_class():
    from types import SimpleNamespace

    from emorl.modules.grpo import GRPOModule

    balance = AccuracyBalance(["joy", "anger", "fear"] * 4, classes=["joy", "anger", "fear"])
    step = SimpleNamespace(trainer=SimpleNamespace(datamodule=SimpleNamespace(accuracy_balance=balance)),
                           rollout_batches=7, device=torch.device("cpu"))
    batch = {"label": ["anger", "joy", "anger"]}
    correct = torch.tensor([[True, False, False], [True, True, True], [False, False, True]])  # (P=3, G=3)
    GRPOModule.report_class_accuracy(step, batch, correct)
    # joy 3 of 3, anger 2 of 6, fear not drawn (kept unseen)
    assert balance.accuracy.tolist() == pytest.approx([1.0, 2 / 6, 0.0])
    assert balance.seen.tolist() == [True, True, False]
    assert list(balance.history) == [7]  # recorded as step 7 (the module's rollout count)
