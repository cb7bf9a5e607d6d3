"""GRPO math as small pure functions over tensors.

Notation: N completions in a rollout batch (prompts x G), T completion tokens (padded),
``mask`` (N, T) is 1 on real completion tokens.  References: GRPO (Shao et al., 2024,
DeepSeekMath), EMO-RL eq. 5 for the group-normalised advantage, Schulman's k1/k2/k3 KL
estimators, PPO's clipped surrogate, and the loss aggregations named after the papers that
introduced them (``bnpo``, ``dr_grpo``: Liu et al. 2025, ``dapo``: Yu et al. 2025).

Each variant that is only a name (advantage scaling, KL estimator, loss aggregation) comes from
a small registry whose error lists the valid names.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

Tensor = torch.Tensor


def _lookup(registry: dict, name: str, what: str):
    if name not in registry:
        raise ValueError(f"Unsupported {what}: {name!r}. Supported {what}s are: {sorted(registry)}")
    return registry[name]


# --------------------------------------------------------------------------- advantages
def group_advantages(rewards: Tensor, group_size: int, scale: str = "group", eps: float = 1e-4) -> Tensor:
    """Group-relative advantages, EMO-RL eq. 5: ``(r - mean_group) / (std_group + eps)``.

    Args:
        rewards: (N,) total reward per completion, groups contiguous (N = prompts x G).
        group_size: G, completions per prompt (>= 2).
        scale: ``group`` divides by the group's (unbiased) std, ``none`` only centres
            (Dr. GRPO).
        eps: added to the std; a group whose rewards are all equal gets advantage 0.

    Returns:
        (N,) advantages.
    """
    if group_size < 2:
        raise ValueError(f"group_size (num_generations) must be >= 2 to normalise within a group, got {group_size}")
    if rewards.ndim != 1 or rewards.numel() % group_size:
        raise ValueError(f"rewards must be 1-D with a multiple of group_size={group_size} items, got {tuple(rewards.shape)}")
    grouped = rewards.view(-1, group_size)
    centred = grouped - grouped.mean(dim=1, keepdim=True)
    if scale == "group":
        centred = centred / (grouped.std(dim=1, keepdim=True) + eps)
    elif scale != "none":
        raise ValueError(f"Unsupported advantage scale: {scale!r}. Supported advantage scales are: ['group', 'none']")
    return centred.reshape(-1)


# --------------------------------------------------------------------------- KL
def kl_k1(logp: Tensor, ref_logp: Tensor) -> Tensor:
    """k1 = log pi - log pi_ref, per token: (N, T) -> (N, T)."""
    return logp - ref_logp


def kl_k2(logp: Tensor, ref_logp: Tensor) -> Tensor:
    """k2 = (log pi - log pi_ref)^2 / 2, per token: (N, T) -> (N, T)."""
    return 0.5 * (logp - ref_logp) ** 2


def kl_k3(logp: Tensor, ref_logp: Tensor) -> Tensor:
    """k3 = exp(ref - logp) - (ref - logp) - 1 >= 0, unbiased for KL(pi || pi_ref): (N, T) -> (N, T)."""
    d = ref_logp - logp
    return torch.exp(d) - d - 1.0


KL_ESTIMATORS: dict[str, Callable[[Tensor, Tensor], Tensor]] = {"k1": kl_k1, "k2": kl_k2, "k3": kl_k3}


def get_kl_estimator(name: str) -> Callable[[Tensor, Tensor], Tensor]:
    return _lookup(KL_ESTIMATORS, name, "KL estimator")


# --------------------------------------------------------------------------- surrogate
def clipped_surrogate(
    logp: Tensor, old_logp: Tensor, advantages: Tensor, eps_low: float = 0.2, eps_high: float = 0.2
) -> tuple[Tensor, Tensor, Tensor]:
    """PPO's clipped objective, negated as a per-token loss.

    Args:
        logp: (N, T) log-probs of the sampled tokens under the current policy.
        old_logp: (N, T) the same under the policy that sampled them (no gradient).
        advantages: (N,) one advantage per completion.

    Returns:
        ``(per_token_loss, ratio, clipped)``: (N, T) each; ``clipped`` is True where the
        clipped branch is the active one (the ratio left the trust region in the direction
        the advantage pushes).
    """
    adv = advantages.unsqueeze(1)
    ratio = torch.exp(logp - old_logp)
    clipped_ratio = torch.clamp(ratio, 1.0 - eps_low, 1.0 + eps_high)
    per_token_loss = -torch.min(ratio * adv, clipped_ratio * adv)
    clipped = ((ratio < 1.0 - eps_low) & (adv < 0)) | ((ratio > 1.0 + eps_high) & (adv > 0))
    return per_token_loss, ratio, clipped


def shaped_off_policy_surrogate(logp: Tensor, advantages: Tensor, gamma: float = 0.1) -> Tensor:
    """LUFFY's policy shaping for off-policy (guided) tokens, negated as a per-token loss (Yan et al. 2025,
    arXiv 2504.14945, eq. 6): ``-A * f(p)`` with ``f(p) = p / (p + gamma)``, ``p = exp(logp)``, no clipping.

    The gradient, ``-A * gamma / (p + gamma)^2 * p * grad(logp)``, weighs the low-probability tokens of an
    expert's completion more than the plain importance ratio ``p`` would (which vanishes with ``p``).

    Args:
        logp: (N, T) log-probs of the guided tokens under the current policy (with gradient).
        advantages: (N,).
        gamma: the shaping constant (LUFFY: 0.1).

    Returns:
        (N, T) per-token loss.

    >>> logp = torch.log(torch.tensor([[0.1, 0.9]]))
    >>> [round(x, 4) for x in shaped_off_policy_surrogate(logp, torch.tensor([1.0])).tolist()[0]]
    [-0.5, -0.9]
    """
    if gamma <= 0:
        raise ValueError(f"the shaping constant gamma must be > 0, got {gamma}")
    p = torch.exp(logp)
    return -advantages.unsqueeze(1) * (p / (p + gamma))


# --------------------------------------------------------------------------- guided groups
def guide_none(correct: Tensor, share: float, generator: torch.Generator | None = None) -> Tensor:
    """No group is guided: (P, G) -> (P,) all False."""
    return torch.zeros(correct.shape[0], dtype=torch.bool)


def guide_failed(correct: Tensor, share: float, generator: torch.Generator | None = None) -> Tensor:
    """The groups none of whose G samples is correct (no signal on their own): (P, G) bool -> (P,) bool.

    >>> guide_failed(torch.tensor([[False, False], [True, False]]), 0.0).tolist()
    [True, False]
    """
    return ~correct.any(dim=1)


def guide_share(correct: Tensor, share: float, generator: torch.Generator | None = None) -> Tensor:
    """Each group with probability ``share`` (drawn from ``generator``): (P, G) -> (P,) bool."""
    return torch.rand(correct.shape[0], generator=generator) < share


def guide_failed_or_share(correct: Tensor, share: float, generator: torch.Generator | None = None) -> Tensor:
    """The failed groups, and every other group with probability ``share``."""
    return guide_failed(correct, share) | guide_share(correct, share, generator)


GUIDANCE: dict[str, Callable[..., Tensor]] = {
    "off": guide_none,
    "failed": guide_failed,
    "share": guide_share,
    "failed_or_share": guide_failed_or_share,
}


def get_guidance(name: str) -> Callable[..., Tensor]:
    return _lookup(GUIDANCE, name, "guidance")


# --------------------------------------------------------------------------- aggregation
def agg_grpo(per_token_loss: Tensor, mask: Tensor, *, total_sequences: int, **_) -> Tensor:
    """Mean over each sequence's tokens, then over sequences (GRPO).

    ``total_sequences`` is N of the whole rollout batch, so that micro-batch losses add up to
    the full-batch loss under gradient accumulation.
    """
    per_seq = (per_token_loss * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)
    return per_seq.sum() / total_sequences


def agg_bnpo(per_token_loss: Tensor, mask: Tensor, *, num_micro_batches: int, **_) -> Tensor:
    """Token mean over the (micro-)batch, averaged over micro-batches (BNPO)."""
    return (per_token_loss * mask).sum() / mask.sum().clamp(min=1.0) / num_micro_batches


def agg_dr_grpo(per_token_loss: Tensor, mask: Tensor, *, total_sequences: int, max_completion_length: int, **_) -> Tensor:
    """Token sum over a constant ``N x max_completion_length`` (Dr. GRPO: no length bias)."""
    return (per_token_loss * mask).sum() / (total_sequences * max_completion_length)


def agg_dapo(per_token_loss: Tensor, mask: Tensor, *, total_tokens: int, **_) -> Tensor:
    """Token sum over the whole rollout batch's token count (DAPO's token-level loss)."""
    return (per_token_loss * mask).sum() / max(float(total_tokens), 1.0)


LOSS_AGGREGATIONS: dict[str, Callable[..., Tensor]] = {
    "grpo": agg_grpo,
    "bnpo": agg_bnpo,
    "dr_grpo": agg_dr_grpo,
    "dapo": agg_dapo,
}


def get_loss_aggregation(name: str) -> Callable[..., Tensor]:
    return _lookup(LOSS_AGGREGATIONS, name, "loss type")


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``x`` over ``mask`` (same shape); 0 for an empty mask."""
    return (x * mask).sum() / mask.sum().clamp(min=1.0)


# --------------------------------------------------------------------------- the loss
def grpo_loss(
    logp: Tensor,
    old_logp: Tensor | None,
    ref_logp: Tensor | None,
    advantages: Tensor,
    mask: Tensor,
    *,
    beta: float = 0.04,
    eps_low: float = 0.2,
    eps_high: float = 0.2,
    loss_type: str = "grpo",
    kl_estimator: str = "k3",
    max_completion_length: int | None = None,
    total_sequences: int | None = None,
    total_tokens: int | None = None,
    num_micro_batches: int = 1,
    entropy: Tensor | None = None,
    entropy_coef: float = 0.0,
    off_policy: Tensor | None = None,
    shaping_gamma: float = 0.1,
) -> tuple[Tensor, dict[str, Tensor]]:
    """The GRPO objective on one (micro-)batch of completions.

    Args:
        logp: (N, T) current policy log-probs of the sampled tokens (with gradient).
        old_logp: (N, T) sampling-policy log-probs, or None when the batch is used once
            (then the ratio is 1 in value and the gradient is the policy gradient).
        ref_logp: (N, T) reference log-probs, or None when ``beta == 0``.
        advantages: (N,).
        mask: (N, T) float, 1 on completion tokens.
        total_sequences / total_tokens / num_micro_batches: size of the whole rollout batch
            this micro-batch belongs to (default: this batch alone).
        entropy: (N, T) the policy's per-token entropy (with gradient when ``entropy_coef`` > 0).
        entropy_coef: weight of the entropy bonus: ``- entropy_coef * H`` joins each token's loss
            and is aggregated like it (0: none).
        off_policy: (N,) bool, True for completions the policy did not sample (guided groups' gold
            completions): their tokens take :func:`shaped_off_policy_surrogate` (``shaping_gamma``) in
            place of the clipped ratio.  None: every completion is on-policy (the plain GRPO loss).

    Returns:
        ``(loss, metrics)``: scalar loss; metrics are detached scalars (``kl``,
        ``clip_fraction``, ``ratio_mean``, and ``entropy`` when given).
    """
    mask = mask.to(logp.dtype)
    if old_logp is None:
        old_logp = logp.detach()
    per_token_loss, ratio, clipped = clipped_surrogate(logp, old_logp, advantages, eps_low, eps_high)
    metrics: dict[str, Tensor] = {}
    if off_policy is not None and bool(off_policy.any()):
        rows = off_policy.to(torch.bool).unsqueeze(1)
        shaped = shaped_off_policy_surrogate(logp, advantages, shaping_gamma)
        per_token_loss = torch.where(rows, shaped, per_token_loss)
        clipped = clipped & ~rows
        metrics["off_policy_share"] = off_policy.float().mean()
    if beta != 0.0:
        if ref_logp is None:
            raise ValueError("beta != 0 needs reference log-probs (ref_logp)")
        kl = get_kl_estimator(kl_estimator)(logp, ref_logp)
        per_token_loss = per_token_loss + beta * kl
        metrics["kl"] = masked_mean(kl.detach(), mask)
    if entropy is not None:
        metrics["entropy"] = masked_mean(entropy.detach(), mask)
        if entropy_coef:
            per_token_loss = per_token_loss - entropy_coef * entropy
    elif entropy_coef:
        raise ValueError("entropy_coef != 0 needs the policy's per-token entropy (entropy=)")
    aggregate = get_loss_aggregation(loss_type)
    loss = aggregate(
        per_token_loss,
        mask,
        total_sequences=total_sequences or logp.shape[0],
        total_tokens=total_tokens if total_tokens is not None else int(mask.sum().item()),
        num_micro_batches=num_micro_batches,
        max_completion_length=max_completion_length or logp.shape[1],
    )
    metrics["clip_fraction"] = masked_mean(clipped.to(mask.dtype), mask)
    metrics["ratio_mean"] = masked_mean(ratio.detach(), mask)
    return loss, metrics


def _sampling_logits(logits: Tensor, temperature: float, suppress_ids) -> Tensor:
    """Logits of the sampling distribution: divided by the temperature, suppressed tokens at -inf."""
    logits = logits.float() / temperature
    if suppress_ids is not None and len(suppress_ids):
        index = torch.as_tensor(list(suppress_ids), device=logits.device, dtype=torch.long)
        logits = logits.index_fill(-1, index, float("-inf"))
    return logits


def gradient_norm(parameters) -> Tensor:
    """The L2 norm of every gradient together (what norm clipping compares with its threshold); 0 with none.

    >>> p = torch.nn.Parameter(torch.zeros(2)); p.grad = torch.tensor([3.0, 4.0])
    >>> round(float(gradient_norm([p])), 6)
    5.0
    """
    norms = [p.grad.detach().float().norm() for p in parameters if p.grad is not None]
    return torch.linalg.vector_norm(torch.stack(norms)) if norms else torch.tensor(0.0)


def token_entropy(logits: Tensor, temperature: float = 1.0, suppress_ids=None) -> Tensor:
    """Entropy in nats of the sampling distribution at each position: (N, T, V) -> (N, T).

    >>> token_entropy(torch.zeros(1, 1, 4)).item() == torch.log(torch.tensor(4.0)).item()
    True
    >>> round(token_entropy(torch.zeros(1, 1, 4), suppress_ids=[2, 3]).item(), 4)  # uniform over 2
    0.6931
    """
    return _entropy(_sampling_logits(logits, temperature, suppress_ids))


def _entropy(sampling_logits: Tensor) -> Tensor:
    logp = torch.log_softmax(sampling_logits, dim=-1)
    return -(logp.exp() * logp.nan_to_num(neginf=0.0)).sum(-1)


def _picked_log_probs(sampling_logits: Tensor, tokens: Tensor) -> Tensor:
    picked = sampling_logits.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    return picked - torch.logsumexp(sampling_logits, dim=-1)


def token_log_probs(logits: Tensor, tokens: Tensor, temperature: float = 1.0, suppress_ids=None) -> Tensor:
    """Log-probs of ``tokens`` under ``logits``: (N, T, V), (N, T) -> (N, T).

    Logits are divided by the sampling temperature first and ``suppress_ids`` (tokens the
    sampler never draws) are removed from the distribution, so that log-probs are those of the
    distribution the tokens were drawn from.

    >>> logits = torch.zeros(1, 1, 4)
    >>> round(token_log_probs(logits, torch.tensor([[0]])).exp().item(), 6)  # uniform over 4 tokens
    0.25
    >>> round(token_log_probs(logits, torch.tensor([[0]]), suppress_ids=[3]).exp().item(), 4)  # over 3
    0.3333
    """
    return _picked_log_probs(_sampling_logits(logits, temperature, suppress_ids), tokens)


def token_log_probs_and_entropy(logits: Tensor, tokens: Tensor, temperature: float = 1.0,
                                suppress_ids=None) -> tuple[Tensor, Tensor]:
    """:func:`token_log_probs` and :func:`token_entropy` from one pass over the (N, T, V) logits.

    >>> logp, entropy = token_log_probs_and_entropy(torch.zeros(1, 1, 4), torch.tensor([[0]]), suppress_ids=[3])
    >>> round(logp.exp().item(), 4), round(entropy.item(), 4)  # uniform over 3 tokens
    (0.3333, 1.0986)
    """
    sampling = _sampling_logits(logits, temperature, suppress_ids)
    return _picked_log_probs(sampling, tokens), _entropy(sampling)
