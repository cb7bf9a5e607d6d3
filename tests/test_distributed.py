"""Several processes: the loss across processes equals the single-process loss; DDP inside a sweep."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import torch

from emorl import algos
from emorl.distributed import every_process, global_mean, on_any_process, on_every_process
from tests.conftest import SMALL
from tests.processes import failure_report, run_command
from tests.rewards import LENGTH_REWARD

N, T, G = 12, 7, 3  # 4 prompts x G completions, split 2 + 2 over two processes


def batch():
    """Fixed log-probs, reference, rewards and masks of different lengths."""
    gen = torch.Generator().manual_seed(0)
    logp = -torch.rand(N, T, generator=gen) * 3
    ref = logp + 0.1 * torch.randn(N, T, generator=gen)
    rewards = torch.randint(0, 3, (N,), generator=gen).float()
    lengths = torch.randint(1, T + 1, (N,), generator=gen)
    mask = (torch.arange(T)[None, :] < lengths[:, None]).float()
    return logp, ref, rewards, mask


def loss_and_grad(rows: slice, loss_type: str):
    """One process's loss on its completions, normalised as emorl's GRPO step does; the gradient of the log-probs."""
    logp, ref, rewards, mask = batch()
    logp = logp[rows].clone().requires_grad_(True)
    advantages = algos.group_advantages(rewards[rows], G)  # whole groups on every process
    loss, _ = algos.grpo_loss(logp, None, ref[rows], advantages, mask[rows], beta=0.04, loss_type=loss_type,
                              max_completion_length=T, total_sequences=logp.shape[0],
                              total_tokens=global_mean(mask[rows].sum().item()))
    loss.backward()
    return loss.detach(), logp.grad, advantages


def worker(rank: int, init_file: str, out: str, loss_type: str) -> None:
    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    half = N // 2
    loss, grad, advantages = loss_and_grad(slice(rank * half, (rank + 1) * half), loss_type)
    # DDP averages gradients and reports each process's loss; the run's loss is their mean
    full = torch.zeros(N, T)
    full[rank * half : (rank + 1) * half] = grad / 2
    torch.distributed.all_reduce(full)
    torch.distributed.all_reduce(loss)
    adv = torch.zeros(N)
    adv[rank * half : (rank + 1) * half] = advantages
    torch.distributed.all_reduce(adv)
    if rank == 0:
        torch.save({"grad": full, "loss": loss / 2, "advantages": adv}, out)
    torch.distributed.destroy_process_group()


# bnpo is left out: it normalises by each (micro-)batch's own tokens, as TRL does, by definition
@pytest.mark.parametrize("loss_type", ["grpo", "dr_grpo", "dapo"])
def test_two_processes_give_the_single_process_advantages_loss_and_gradient(tmp_path, loss_type):
    out = tmp_path / "two.pt"
    torch.multiprocessing.spawn(worker, args=(str(tmp_path / "init"), str(out), loss_type), nprocs=2)
    two = torch.load(out)
    loss, grad, advantages = loss_and_grad(slice(0, N), loss_type)
    assert torch.allclose(two["advantages"], advantages)
    assert torch.allclose(two["grad"], grad, atol=1e-7), loss_type
    if loss_type in ("grpo", "dr_grpo"):  # per-sequence terms: the mean of the processes' losses is the loss
        assert torch.allclose(two["loss"], loss, atol=1e-6)


def vote(rank: int, init_file: str, out: str, flags: list[bool]) -> None:
    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    answers = (on_any_process(flags[rank]), on_every_process(flags[rank]), every_process([f"clip{rank}.wav"] * (rank + 1)))
    if rank == 1:
        torch.save(answers, out)
    torch.distributed.destroy_process_group()


@pytest.mark.parametrize(("flags", "any_", "every"), [
    ([True, True], True, True),
    ([True, False], True, False),  # process 0's flag reaches process 1
    ([False, True], True, False),
    ([False, False], False, False),
])
def test_processes_agree_whether_a_flag_holds_on_any_or_every_one_and_share_their_values(tmp_path, flags, any_, every):
    out = tmp_path / "answers.pt"
    torch.multiprocessing.spawn(vote, args=(str(tmp_path / "init"), str(out), flags), nprocs=2)
    assert torch.load(out) == (any_, every, [["clip0.wav"], ["clip1.wav", "clip1.wav"]])  # every process's, in rank order
    assert (on_any_process(False), on_every_process(True), every_process(["a"])) == (False, True, [["a"]])  # alone


@pytest.mark.slow
def test_a_multirun_sweep_with_ddp_writes_one_folder_with_one_folder_per_job(tmp_path, cache_dir):
    """Lightning starts DDP's second process by re-running the command: it must run its job, not the sweep."""
    sweep = tmp_path / "sweep"
    env = {**os.environ, "EMORL_CACHE": str(cache_dir), "WANDB_MODE": "offline", "HYDRA_FULL_ERROR": "1"}
    proc = run_command(
        [sys.executable, "-m", "emorl.train", "--multirun", "reward=bcr,eswr", "strategy=ddp", "trainer.devices=2",
         *SMALL, f"paths.cache_dir={cache_dir}", f"hydra.sweep.dir={sweep}"],
        cwd=tmp_path, env=env, timeout_s=900,
    )
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sweep"], "nothing written outside the sweep folder"
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir())
    assert [j.name for j in jobs] == ["0_bcr_esr_s0", "1_eswr_esr_s0"]
    log = proc.stdout
    assert log.count("Launching 2 jobs") == 1, "a DDP process re-ran the sweep"
    for job in jobs:
        assert (job / "metrics.json").exists() and (job / "model").is_dir()
        child_log = (job / "train_ddp_process_1.log").read_text()  # the second process wrote into its own job
        assert "Launching" not in child_log
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in log


# Two processes train the weights one process trains: with algo.grpo.seed_per_prompt each group is
# sampled from its own seed, so 1 process with 4 prompts and 2 processes with 2 each draw the same
# completions, advantages and (averaged) gradients.  Runs score completions by length (tests/rewards.py).
# Adam's first update is +-lr for any gradient well above its eps: a gradient entry that cancels to
# rounding noise (one process sums 4 prompts, two processes 2 + 2) would move by +-lr either way, so
# these runs use eps=1e-3, which keeps such entries still and real gradients moving.
ONE_PROCESS = ["algo.grpo.prompts_per_step=4", "algo.grpo.micro_batch_size=12"]
TWO_PROCESSES = {
    "ddp": ["algo.grpo.prompts_per_step=2", "algo.grpo.micro_batch_size=6", "strategy=ddp", "trainer.devices=2"],
    # DeepSpeed on CPU processes through a test-only subclass of Lightning's strategy (tests/cpu_deepspeed.py)
    **{stage: ["algo.grpo.prompts_per_step=2", "algo.grpo.micro_batch_size=6", f"strategy=deepspeed_{stage}",
               "strategy.strategy._target_=tests.cpu_deepspeed.CPUDeepSpeedStrategy", "trainer.devices=2"]
       for stage in ("zero2", "zero3")},
}
ENV = {**os.environ, "WANDB_MODE": "offline", "HYDRA_FULL_ERROR": "1", "DS_ACCELERATOR": "cpu"}


def run_job(run: Path, cache_dir: Path, extra: list[str], module: str = "emorl.train") -> str:
    # the mechanics on the small on-the-fly base, whose samples vary in length (the pretrained one's may not)
    overrides = [*SMALL, "model.pretrained=null", f"paths.cache_dir={cache_dir}", f"hydra.run.dir={run}", "trainer.max_steps=2",
                 "algo.grpo.seed_per_prompt=true", "trainer.val_check_interval=100", "checkpoint.select=last",
                 "checkpoint.every_n_steps=2", "eval.base=false", "optimizer.eps=1e-3", *LENGTH_REWARD, *extra]
    proc = run_command([sys.executable, "-m", module, *overrides], cwd=Path(__file__).parents[1], env=ENV, timeout_s=600)
    log = proc.stdout
    assert proc.returncode == 0, failure_report(log)
    return log


def weights(model_dir: Path) -> dict[str, torch.Tensor]:
    """A saved model's parameters by their names in the module (as checkpoints name them)."""
    from transformers import Qwen2AudioForConditionalGeneration

    return Qwen2AudioForConditionalGeneration.from_pretrained(model_dir).state_dict()


def trained_weights(run: Path) -> dict[str, torch.Tensor]:
    """The policy's weights after training: the exported model, or (ZeRO-3, no export) the consolidated checkpoint."""
    if (run / "model").is_dir():
        return weights(run / "model")
    from lightning.pytorch.utilities.deepspeed import convert_zero_checkpoint_to_fp32_state_dict

    state = convert_zero_checkpoint_to_fp32_state_dict(run / "checkpoints" / "last.ckpt", run / "consolidated.pt")
    return {k.removeprefix("policy."): v for k, v in state["state_dict"].items() if k.startswith("policy.")}


@pytest.fixture(scope="module")
def one_process(tmp_path_factory, cache_dir) -> dict[str, torch.Tensor]:
    """Weights after 2 steps of 4 prompts on one process, and the base's."""
    run = tmp_path_factory.mktemp("one") / "run"
    run_job(run, cache_dir, ONE_PROCESS)
    base = Path(json.loads((run / "model" / "emorl.json").read_text())["base_model"])
    return {"trained": trained_weights(run), "base": weights(base)}


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["ddp", "zero2", "zero3"])
def test_two_processes_train_the_same_weights_as_one(tmp_path, cache_dir, one_process, strategy):
    extra = TWO_PROCESSES[strategy] + (["save_model=false"] if strategy == "zero3" else [])
    run_job(tmp_path / "run", cache_dir, extra)
    assert (tmp_path / "run" / "train_ddp_process_1.log").exists(), "the second process ran"
    one, two, base = one_process["trained"], trained_weights(tmp_path / "run"), one_process["base"]
    moved = {k for k, w in one.items() if not torch.equal(base[k], w)}
    assert moved, "training moved no weight"
    assert moved <= set(two) <= set(one)  # ZeRO-3's consolidated checkpoint holds the trainable weights only
    apart = {key: float((one[key] - weight).abs().max()) for key, weight in two.items()
             if not torch.allclose(one[key], weight, atol=1e-5)}
    # on failure, how far and how widely: every tensor about one learning rate apart points at a step's samples
    assert not apart, f"{strategy}: {len(apart)} of {len(two)} tensors apart, the most: " + ", ".join(
        f"{k} {d:.1e}" for k, d in sorted(apart.items(), key=lambda kv: -kv[1])[:5])


# Under ZeRO-3 every forward pass gathers parameters from every process, so the processes must run the
# same passes whatever their own samples hold (tests/deepspeed_job.py): process 0 stops generating after
# 3 tokens and process 1 after 12 (synced_gpus); process 1's groups never vary, so it draws every extra
# round of dynamic sampling, and process 0, which has enough groups, must draw beside it; in the first
# step only process 0 has failed prompts, so the buffer waits for a step in which both have some.
@pytest.mark.slow
def test_zero3_keeps_processes_whose_samples_differ_stepping_together(tmp_path, cache_dir):
    run = tmp_path / "run"
    run_job(run, cache_dir, [*TWO_PROCESSES["zero3"], "save_model=false", "checkpoint.every_n_steps=0",
                             "algo.grpo.buffer_every=1", "data.prosody=true", "algo.grpo.max_resample_rounds=2"], module="tests.deepspeed_job")
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["train"]["steps"] == 2
    final = metrics["train"]["final"]  # process 0's, averaged over the steps that logged each value
    assert final["train/advantage_abs"] > 0 and torch.isfinite(torch.tensor(final["train/loss"]))
    assert final["train/completion_length"] <= 3  # process 0 logs its own (short) completions; it kept stepping
    assert final["train/groups_with_variance"] == 1.0  # process 0 needed no extra draw ...
    assert final["train/resample_rounds"] == 2.0  # ... and drew both rounds beside process 1
    # only the second step replayed failed prompts: process 0's from both steps (2 + 2)
    assert final["train/buffer_prompts"] == 4.0


def test_deepspeed_settings_it_cannot_run_are_refused_before_loading(cfg_factory, tmp_path):
    from emorl.train import train

    cfg = cfg_factory("strategy=deepspeed_zero2", "algo.grpo.micro_batch_size=3", f"paths.cache_dir={tmp_path / 'c'}")
    with pytest.raises(ValueError, match="micro_batch_size=6"):  # 2 prompts x 3 completions: one backward
        train(cfg)
    cfg = cfg_factory("strategy=deepspeed_zero3", "algo.grpo.micro_batch_size=6", f"paths.cache_dir={tmp_path / 'c'}")
    with pytest.raises(ValueError, match="save_model=false"):
        train(cfg)
    assert not (tmp_path / "c").exists()


def test_each_process_evaluates_its_own_shard_of_the_split(small_corpus, tiny):
    from types import SimpleNamespace

    from emorl.data.sampling import ShardSampler
    from emorl.modules.datamodule import EmotionDataModule
    from emorl.prompts import get_strategy

    dm = EmotionDataModule(corpus=small_corpus, strategy=get_strategy("ir"), batch_size=2, eval_batch_size=4,
                           check_audio=False)
    dm.setup("test")
    dm.use_processor(tiny[1])
    n = len(dm.dataset("test"))
    shards = []
    for rank in (0, 1):
        dm.trainer = SimpleNamespace(world_size=2, global_rank=rank)
        sampler = dm.test_dataloader().sampler
        assert isinstance(sampler, ShardSampler) and len(sampler) == -(-n // 2)  # equal lengths on both processes
        shards.append(sampler.indices[: sampler.real])
    assert sorted(shards[0] + shards[1]) == list(range(n))  # each clip scored once, by one process


@pytest.mark.slow
def test_two_processes_evaluate_the_split_as_one_does(tmp_path, cache_dir):
    # 21 test clips: 11 + 10 (the shorter shard padded), in batches of 4 on two processes, of 8 on one
    common = ["dataset.corpus.train_per_class=6", "dataset.corpus.val_per_class=2", "dataset.corpus.test_per_class=3",
              f"paths.cache_dir={cache_dir}", "reasoning=esr"]
    runs = {"one": ["data.eval_batch_size=8"], "two": ["data.eval_batch_size=4", "strategy=ddp", "trainer.devices=2"]}
    for name, extra in runs.items():
        proc = run_command([sys.executable, "-m", "emorl.evaluate", *common, *extra, f"hydra.run.dir={tmp_path / name}"],
                           cwd=Path(__file__).parents[1], env=ENV, timeout_s=600)
        assert proc.returncode == 0, proc.stdout[-4000:]
    answers = {name: [json.loads(line) for line in (tmp_path / name / "predictions.jsonl").read_text().splitlines()]
               for name in runs}
    metrics = {name: json.loads((tmp_path / name / "metrics.json").read_text())["test"] for name in runs}
    assert len(answers["two"]) == 21  # each clip once: the padding repeat is dropped
    assert [(a["path"], a["text"]) for a in answers["two"]] == [(a["path"], a["text"]) for a in answers["one"]]
    assert metrics["two"]["confusion"] == metrics["one"]["confusion"] and metrics["two"]["ua"] == metrics["one"]["ua"]
