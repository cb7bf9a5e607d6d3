"""GRPO math: advantages, KL, clipped surrogate, aggregation; loop-vs-vectorised; TRL parity."""

from __future__ import annotations

import math
from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch

from emorl import algos


def test_group_advantages_match_a_loop_over_groups():
    torch.manual_seed(0)
    rewards = torch.rand(4 * 6)
    got = algos.group_advantages(rewards, 6, eps=1e-4)
    for g in range(4):
        r = rewards[g * 6 : (g + 1) * 6].tolist()
        mean = sum(r) / 6
        std = math.sqrt(sum((x - mean) ** 2 for x in r) / 5)  # unbiased, as eq. 5's std
        for i, x in enumerate(r):
            assert got[g * 6 + i].item() == pytest.approx((x - mean) / (std + 1e-4), rel=1e-5)


def test_group_with_equal_rewards_gets_zero_advantage_not_nan():
    rewards = torch.tensor([1.0, 1.0, 1.0, 0.0, 2.0, 1.0])
    adv = algos.group_advantages(rewards, 3)
    assert torch.equal(adv[:3], torch.zeros(3))
    assert torch.isfinite(adv).all()
    assert adv[3] < 0 < adv[4]


def test_advantages_reject_groups_of_one_and_ragged_batches():
    with pytest.raises(ValueError, match="num_generations"):
        algos.group_advantages(torch.zeros(4), 1)
    with pytest.raises(ValueError, match="multiple of group_size"):
        algos.group_advantages(torch.zeros(7), 2)


def test_advantage_scale_none_only_centres():
    adv = algos.group_advantages(torch.tensor([0.0, 2.0]), 2, scale="none")
    assert adv.tolist() == [-1.0, 1.0]
    with pytest.raises(ValueError, match="Supported advantage scales"):
        algos.group_advantages(torch.tensor([0.0, 2.0]), 2, scale="batch")


@pytest.mark.parametrize("name", ["k1", "k2", "k3"])
def test_kl_estimators_are_zero_when_policies_agree(name):
    logp = torch.log(torch.tensor([[0.2, 0.5, 0.9]]))
    assert torch.allclose(algos.get_kl_estimator(name)(logp, logp), torch.zeros(1, 3))


@pytest.mark.parametrize("name, expected", [
    ("k1", [-0.5, 1.9, 0.0]),                   # log pi - log pi_ref
    ("k2", [0.125, 1.805, 0.0]),                # (log pi - log pi_ref)^2 / 2
])
def test_k1_and_k2_match_their_formulas_where_the_policies_differ(name, expected):
    logp = torch.tensor([[-1.0, -0.1, -3.0]])
    ref = torch.tensor([[-0.5, -2.0, -3.0]])
    assert algos.get_kl_estimator(name)(logp, ref)[0].tolist() == pytest.approx(expected)


def test_k1_and_k3_estimate_the_kl_divergence_from_the_policys_own_samples():
    # tokens drawn from pi: the mean of k1 and of k3 is KL(pi || pi_ref) (Schulman 2020), k2 is close to it
    pi, ref = torch.tensor([0.6, 0.3, 0.1]), torch.tensor([0.2, 0.5, 0.3])
    kl = float((pi * (pi / ref).log()).sum())
    tokens = torch.multinomial(pi, 200_000, replacement=True, generator=torch.Generator().manual_seed(0))
    logp, ref_logp = pi.log()[tokens][None], ref.log()[tokens][None]
    assert float(algos.kl_k1(logp, ref_logp).mean()) == pytest.approx(kl, rel=0.02)
    assert float(algos.kl_k3(logp, ref_logp).mean()) == pytest.approx(kl, rel=0.02)
    assert float(algos.kl_k2(logp, ref_logp).mean()) == pytest.approx(kl, rel=0.25)


def test_k3_is_nonnegative_and_matches_its_formula():
    logp = torch.tensor([[-1.0, -0.1, -3.0]])
    ref = torch.tensor([[-0.5, -2.0, -3.0]])
    k3 = algos.kl_k3(logp, ref)
    expected = [math.exp(r - p) - (r - p) - 1 for p, r in zip(logp[0].tolist(), ref[0].tolist(), strict=True)]
    assert k3[0].tolist() == pytest.approx(expected)
    assert (k3 >= 0).all()


def test_registries_list_valid_names_in_their_errors():
    with pytest.raises(ValueError, match=r"Supported loss types are: \['bnpo', 'dapo', 'dr_grpo', 'grpo'\]"):
        algos.get_loss_aggregation("ppo")
    with pytest.raises(ValueError, match="Supported KL estimators are"):
        algos.get_kl_estimator("k4")


def test_clipped_surrogate_clips_only_in_the_pushed_direction():
    old = torch.zeros(2, 1)
    logp = torch.log(torch.tensor([[1.5], [1.5]]))  # ratio 1.5 for both
    adv = torch.tensor([1.0, -1.0])
    loss, ratio, clipped = algos.clipped_surrogate(logp, old, adv, 0.2, 0.2)
    # positive advantage: min(1.5, 1.2) * 1 -> clipped at 1.2
    assert loss[0, 0].item() == pytest.approx(-1.2)
    assert clipped[0, 0]
    # negative advantage: min(-1.5, -1.2) -> the unclipped -1.5 is active
    assert loss[1, 0].item() == pytest.approx(1.5)
    assert not clipped[1, 0]


def _random_rollout(n=6, t=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    logp = -torch.rand(n, t, generator=g) * 2
    old = logp + 0.3 * torch.randn(n, t, generator=g)
    ref = logp + 0.3 * torch.randn(n, t, generator=g)
    adv = torch.randn(n, generator=g)
    lengths = torch.randint(1, t + 1, (n,), generator=g)
    mask = (torch.arange(t)[None, :] < lengths[:, None]).float()
    return logp, old, ref, adv, mask


@pytest.mark.parametrize("loss_type", sorted(algos.LOSS_AGGREGATIONS))
def _micro_batch_sum(logp, old, ref, adv, mask, **kwargs):
    """The loss of two micro-batches of 4 sequences each, added, as the training step accumulates them."""
    parts = 0.0
    for chunk in (slice(0, 4), slice(4, 8)):
        part, _ = algos.grpo_loss(
            logp[chunk], old[chunk], ref[chunk], adv[chunk], mask[chunk],
            total_sequences=8, total_tokens=int(mask.sum()), num_micro_batches=2, **kwargs,
        )
        parts = parts + part
    return parts


@pytest.mark.parametrize("loss_type", sorted(algos.LOSS_AGGREGATIONS))
def test_micro_batches_add_up_to_the_full_batch_loss(loss_type):
    logp, old, ref, adv, mask = _random_rollout(n=8, t=6)
    if loss_type == "bnpo":  # a token mean per micro-batch adds up only over micro-batches of equal token counts
        mask = torch.cat([mask[:4], mask[:4]])
    kwargs = dict(beta=0.04, loss_type=loss_type, max_completion_length=6)
    full, _ = algos.grpo_loss(logp, old, ref, adv, mask, **kwargs)
    assert torch.isclose(_micro_batch_sum(logp, old, ref, adv, mask, **kwargs), full, atol=1e-6)


def test_bnpo_micro_batches_of_unequal_token_counts_do_not_add_up_to_the_full_batch_loss():
    logp, old, ref, adv, mask = _random_rollout(n=8, t=6)
    mask[:4] = 1.0
    mask[4:, 1:] = 0.0  # 24 tokens in the first micro-batch, 4 in the second
    kwargs = dict(beta=0.04, loss_type="bnpo", max_completion_length=6)
    full, _ = algos.grpo_loss(logp, old, ref, adv, mask, **kwargs)
    assert not torch.isclose(_micro_batch_sum(logp, old, ref, adv, mask, **kwargs), full, atol=1e-4)


def test_ratio_is_one_and_gradient_is_the_policy_gradient_when_old_is_none():
    logp, _, _, adv, mask = _random_rollout()
    logp = logp.clone().requires_grad_(True)
    loss, metrics = algos.grpo_loss(logp, None, None, adv, mask, beta=0.0)
    assert metrics["ratio_mean"].item() == pytest.approx(1.0)
    loss.backward()
    # d/dlogp of -(A * exp(logp - sg(logp))) averaged per sequence = -A / len
    expected = -adv[:, None] * mask / mask.sum(-1, keepdim=True) / mask.shape[0]
    assert torch.allclose(logp.grad, expected, atol=1e-6)


def test_token_log_probs_match_log_softmax():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 11)
    tokens = torch.randint(0, 11, (2, 3))
    expected = torch.log_softmax(logits / 0.7, -1).gather(-1, tokens[..., None])[..., 0]
    assert torch.allclose(algos.token_log_probs(logits, tokens, temperature=0.7), expected, atol=1e-6)


# ----------------------------------------------------------------------------- TRL parity
def _trl_loss(loss_type, logp, old, ref, adv, mask, beta, eps_low, eps_high, max_len):
    """Run trl's own GRPOTrainer._compute_loss on given log-probs (its model call stubbed out)."""
    trl_grpo = pytest.importorskip("trl.trainer.grpo_trainer")

    class _Accelerator:
        num_processes = 1

        def gather(self, x):
            return x

        gather_for_metrics = gather

        def reduce(self, x, reduction="sum"):
            return x

    fake = SimpleNamespace(
        loss_type=loss_type,
        beta=beta,
        epsilon_low=eps_low,
        epsilon_high=eps_high,
        top_entropy_quantile=1.0,
        off_policy_mask_threshold=None,
        importance_sampling_level="token",
        use_vllm=False,
        vllm_importance_sampling_correction=False,
        aux_loss_enabled=False,
        _entropy_bonus_enabled=False,
        current_gradient_accumulation_steps=1,
        max_completion_length=max_len,
        model=SimpleNamespace(training=True),
        accelerator=_Accelerator(),
        args=SimpleNamespace(use_bias_correction_kl=False, delta=None, steps_per_generation=1),
        _metrics={"train": defaultdict(list), "eval": defaultdict(list)},
        _get_per_token_logps_and_entropies=lambda *a, **k: (logp, torch.zeros_like(logp), None),
    )
    n, t = logp.shape
    inputs = {
        "prompt_ids": torch.zeros(n, 1, dtype=torch.long),
        "prompt_mask": torch.ones(n, 1, dtype=torch.long),
        "completion_ids": torch.zeros(n, t, dtype=torch.long),
        "completion_mask": mask.long(),
        "advantages": adv,
        "old_per_token_logps": old,
        "ref_per_token_logps": ref,
        "num_items_in_batch": mask.sum(),
    }
    return trl_grpo.GRPOTrainer._compute_loss(fake, None, inputs)


@pytest.mark.parametrize("loss_type", sorted(algos.LOSS_AGGREGATIONS))
@pytest.mark.parametrize("beta", [0.0, 0.04])
@pytest.mark.parametrize("with_old", [True, False])
def test_loss_equals_trl_grpo_trainer_loss(loss_type, beta, with_old):
    logp, old, ref, adv, mask = _random_rollout(n=6, t=7, seed=3)
    old = old if with_old else None
    ours, _ = algos.grpo_loss(
        logp, old, ref, adv, mask, beta=beta, eps_low=0.2, eps_high=0.28, loss_type=loss_type, max_completion_length=7
    )
    theirs = _trl_loss(loss_type, logp, old, ref, adv, mask, beta, 0.2, 0.28, 7)
    assert abs(ours.item() - theirs.item()) < 1e-6


def test_entropy_bonus_raises_the_policys_entropy():
    torch.manual_seed(0)
    logits = (3 * torch.randn(4, 5, 11)).requires_grad_(True)
    tokens = torch.randint(0, 11, (4, 5))
    mask = torch.ones(4, 5)

    def loss_of(coef):
        logp = algos.token_log_probs(logits, tokens)
        entropy = algos.token_entropy(logits)
        return algos.grpo_loss(logp, None, None, torch.zeros(4), mask, beta=0.0, entropy=entropy, entropy_coef=coef)

    loss, metrics = loss_of(0.0)  # zero advantages and no bonus: nothing to learn
    loss.backward()
    assert logits.grad.abs().max() == 0
    assert metrics["entropy"] == pytest.approx(algos.token_entropy(logits).mean().item())
    logits.grad = None
    loss, _ = loss_of(0.1)
    loss.backward()
    stepped = logits.detach() - 1.0 * logits.grad
    assert algos.token_entropy(stepped).mean() > algos.token_entropy(logits.detach()).mean()
    with pytest.raises(ValueError, match="entropy"):
        algos.grpo_loss(algos.token_log_probs(logits, tokens), None, None, torch.zeros(4), mask, beta=0.0, entropy_coef=0.1)


def test_entropy_is_that_of_the_sampling_distribution():
    logits = torch.tensor([[[0.0, 0.0, 0.0, 0.0]]])
    assert algos.token_entropy(logits, suppress_ids=[0, 1, 2]).item() == 0.0  # one token left: certain
    assert algos.token_entropy(logits * 5, temperature=0.5).item() == pytest.approx(math.log(4))  # uniform stays uniform


def test_one_pass_gives_the_same_log_probs_and_entropy_as_two():
    torch.manual_seed(0)
    logits, tokens = torch.randn(3, 5, 11) * 3, torch.randint(0, 8, (3, 5))
    logp, entropy = algos.token_log_probs_and_entropy(logits, tokens, temperature=0.7, suppress_ids=[8, 9])
    assert torch.equal(logp, algos.token_log_probs(logits, tokens, temperature=0.7, suppress_ids=[8, 9]))
    assert torch.equal(entropy, algos.token_entropy(logits, temperature=0.7, suppress_ids=[8, 9]))


def test_gradient_norm_is_the_norm_clipping_measures():
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(3, 4)), torch.nn.Parameter(torch.randn(5)), torch.nn.Parameter(torch.randn(2))]
    for p in params[:2]:  # the last one has no gradient
        p.grad = torch.randn_like(p) * 10
    measured = algos.gradient_norm(params)
    clipped_from = torch.nn.utils.clip_grad_norm_(params, max_norm=1.0)
    assert float(measured) == pytest.approx(float(clipped_from), rel=1e-6)
    assert float(algos.gradient_norm(params)) == pytest.approx(1.0, rel=1e-5)  # after clipping to 1
