"""GRPO step benchmark: ``python -m emorl.bench``.

Times one GRPO step, split into rollout / reference log-probs / policy forward+backward (and
optimizer step) / rewards, for emorl's shared-prompt path (each clip encoded and each prompt
prefilled once per pass) against the plain path (``generate(num_return_sequences=G)`` and
log-probs with the prompt copied per completion), and prints them side by side with their
ratios.  Each (model, path) runs in its own process, so that its peak memory (RSS on CPU, CUDA
allocator peak on a GPU) is its own.

Models are built locally with random weights, so that no completion ends early and every
completion has exactly ``--new-tokens`` tokens: ``tiny`` (the shipped embedded base's size,
``conf/pretrain.yaml``), ``warm_start`` (the smaller base built on the fly with
``model.pretrained=null``, ``conf/model/tiny.yaml``) and ``small`` (a larger Qwen2-Audio).
``--pretrained PATH`` adds a real checkpoint (the shipped base, ``emorl/assets/embedded_base``, or
a local copy of Qwen2-Audio-7B-Instruct, in bf16 on a GPU).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

#: A larger random-weight Qwen2-Audio than the embedded ones (the others' sizes come from the config tree).
SMALL = {
    "vocab_size": 1024, "chunk_length": 4,
    "text": {"hidden_size": 256, "intermediate_size": 704, "num_hidden_layers": 4, "num_attention_heads": 8,
             "num_key_value_heads": 4},
    "audio": {"d_model": 192, "encoder_layers": 4, "encoder_attention_heads": 4, "encoder_ffn_dim": 768},
}
#: Benchmark models: name -> where its build settings come from (a tiny backbone of the config tree, or ``SMALL``).
MODELS = {"tiny": "embedded_base", "warm_start": "warm_start", "small": None}
PHASES = ("rollout", "reference", "policy", "rewards")


def model_sizes(name: str) -> dict:
    """Build settings of the benchmark model ``name`` (a key of :data:`MODELS`)."""
    from emorl.models.tiny import configured_build

    return configured_build(MODELS[name]) if MODELS[name] else SMALL


def build_model(name: str, out: Path) -> Path:
    """A random-weight Qwen2-Audio of :func:`model_sizes` saved under ``out`` (tokenizer trained on the prompts)."""
    from emorl.emotions import LABEL_SETS
    from emorl.models.tiny import build_tiny_backbone
    from emorl.prompts import DEFAULT_STRATEGIES, get_strategy

    texts = [get_strategy(s).prompt(labels) for s in DEFAULT_STRATEGIES for labels in LABEL_SETS.values()] * 20
    return build_tiny_backbone(out / name, texts, seed=0, **model_sizes(name))


def make_batch(processor, prompts: int, seconds: float, seed: int = 0) -> dict:
    """``prompts`` ESR questions on noise-and-tone clips of ``seconds`` seconds."""
    from emorl.data.audio import SAMPLE_RATE
    from emorl.data.batching import Collator, Example
    from emorl.emotions import LABEL_SETS
    from emorl.prompts import get_strategy

    rng = np.random.default_rng(seed)
    labels = LABEL_SETS["meld"]
    examples = []
    for k in range(prompts):
        t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
        wav = 0.1 * np.sin(2 * np.pi * (150 + 20 * k) * t) + 0.01 * rng.standard_normal(t.size)
        examples.append(Example(audio=wav.astype(np.float32), text=get_strategy("esr").prompt(labels), label=labels[k % 7],
                                options=labels))
    return Collator(processor)(examples)


def run_path(args: dict) -> dict:
    """One (model, path): mean seconds per phase over the measured steps, tokens/s, peak memory."""
    import copy

    import torch

    from emorl import algos, rollout
    from emorl.models.loading import load_backbone, suppressed_token_ids
    from emorl.prompts import get_strategy
    from emorl.rewards import make_format_reward
    from emorl.rewards.accuracy import make_eswr_reward
    from emorl.rewards.combine import RewardSet

    torch.set_num_threads(args["threads"])
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = "bfloat16" if device.type == "cuda" and args["pretrained"] else "float32"
    policy, processor = load_backbone(args["model_path"], dtype)
    policy.to(device).train()
    reference = copy.deepcopy(policy).eval().requires_grad_(False)
    optimizer = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=1e-6)
    batch = make_batch(processor, args["prompts"], args["seconds"])
    batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
    strategy = get_strategy("esr")
    rewards = RewardSet({"format": make_format_reward(strategy),
                         "accuracy": make_eswr_reward(labels=list(batch["options"][0]), strategy=strategy)}, {})
    g, share = args["generations"], args["path"] == "shared"
    end_ids = [] if not args["pretrained"] else [processor.tokenizer.convert_tokens_to_ids("<|im_end|>")]
    suppress_ids = suppressed_token_ids(processor)
    times = {phase: [] for phase in PHASES}
    tokens = []
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for step in range(args["warmup"] + args["steps"]):
        torch.manual_seed(step)
        clock = {}
        t0 = time.perf_counter()
        ro = rollout.sample(policy, processor, batch, num_generations=g, max_new_tokens=args["new_tokens"],
                            suppress_ids=suppress_ids, end_ids=end_ids, share_prompt=share)
        sync(device)
        clock["rollout"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        labels = [label for label in batch["label"] for _ in range(g)]
        total, _ = rewards(ro.texts, label=labels, options=[o for o in batch["options"] for _ in range(g)], alpha=1.0)
        advantages = algos.group_advantages(total, g).to(device)
        clock["rewards"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        with torch.no_grad():
            ref_logp = rollout.completion_log_probs(reference, ro, share_prompt=share, suppress_ids=suppress_ids)
        sync(device)
        clock["reference"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        logp = rollout.completion_log_probs(policy, ro, share_prompt=share, suppress_ids=suppress_ids)
        loss, _ = algos.grpo_loss(logp, None, ref_logp, advantages, ro.completion_mask.float())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        sync(device)
        clock["policy"] = time.perf_counter() - t0
        if step >= args["warmup"]:
            for phase in PHASES:
                times[phase].append(clock[phase])
            tokens.append(int(ro.completion_mask.sum()))
    mean = {phase: float(np.mean(v)) for phase, v in times.items()}
    step_s = sum(mean.values())
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {**mean, "step": step_s, "tokens_per_s": float(np.mean(tokens)) / step_s,
            "rollout_tokens_per_s": float(np.mean(tokens)) / mean["rollout"], "peak_mib": peak,
            "params_m": sum(p.numel() for p in policy.parameters()) / 1e6, "device": device.type}


def sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def table(results: dict[str, dict[str, dict]]) -> str:
    """Markdown: per model, the two paths and their ratio (shared / plain; below 1 is faster or smaller)."""
    keys = [*PHASES, "step", "tokens_per_s", "peak_mib"]
    header = "| model | path | " + " | ".join(f"{k} s" if k in (*PHASES, "step") else k for k in keys) + " |"
    lines = [header, "|---" * (len(keys) + 2) + "|"]
    for model, paths in results.items():
        for path in ("plain", "shared"):
            r = paths[path]
            lines.append(f"| {model} | {path} | " + " | ".join(f"{r[k]:.3f}" if k in (*PHASES, "step") else f"{r[k]:.0f}" for k in keys) + " |")
        ratio = {k: paths["shared"][k] / paths["plain"][k] if paths["plain"][k] else float("nan") for k in keys}
        lines.append(f"| {model} | **shared / plain** | " + " | ".join(f"**{ratio[k]:.2f}**" for k in keys) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["tiny", "small"], choices=list(MODELS))
    parser.add_argument("--pretrained", default=None, help="also benchmark this checkpoint (path or hub id)")
    parser.add_argument("--prompts", type=int, default=8, help="prompts per step")
    parser.add_argument("--generations", type=int, default=6, help="G completions per prompt")
    parser.add_argument("--new-tokens", type=int, default=64, help="tokens per completion")
    parser.add_argument("--seconds", type=float, default=4.0, help="clip length")
    parser.add_argument("--steps", type=int, default=3, help="measured steps per path")
    parser.add_argument("--warmup", type=int, default=1, help="unmeasured steps first")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (CPU)")
    parser.add_argument("--json", default=None, help="also write the results to this file")
    args = parser.parse_args(argv)
    for key, least in (("steps", 1), ("warmup", 0), ("prompts", 1), ("generations", 1), ("new_tokens", 1), ("threads", 0)):
        if getattr(args, key) < least:
            parser.error(f"--{key.replace('_', '-')} {getattr(args, key)}: give a whole number >= {least}")
    if args.seconds <= 0:
        parser.error(f"--seconds {args.seconds}: give a clip length > 0")

    settings = {k: getattr(args, k) for k in ("prompts", "generations", "new_tokens", "seconds", "steps", "warmup", "threads")}
    results: dict[str, dict[str, dict]] = {}
    ctx = mp.get_context("spawn")
    with tempfile.TemporaryDirectory() as tmp:
        models = {name: str(build_model(name, Path(tmp))) for name in args.models}
        if args.pretrained:
            models[Path(args.pretrained).name] = args.pretrained
        for name, path in models.items():
            results[name] = {}
            for which in ("plain", "shared"):
                job = {**settings, "model_path": path, "path": which, "pretrained": path == args.pretrained}
                with ctx.Pool(1) as pool:
                    results[name][which] = pool.apply(run_path, (job,))
    device = next(iter(next(iter(results.values())).values()))["device"]
    print(f"GRPO step, {args.prompts} prompts x G={args.generations}, {args.new_tokens} new tokens, "
          f"{args.seconds:g} s clips, mean of {args.steps} steps after {args.warmup} warm-up, {device}, "
          f"{args.threads} thread(s)")
    print(table(results))
    if args.json:
        Path(args.json).write_text(json.dumps({"settings": settings, "results": results}, indent=2))
    return results


if __name__ == "__main__":
    main()
