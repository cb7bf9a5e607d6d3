"""How the embedded base's size was chosen: ``python -m emorl.pretraining.sizes [NAME ...]``.

Builds untrained tiny Qwen2-Audio models of the candidate sizes and prints, side by side in one
run, their parameters and the two costs that bound the choice on 2 CPU cores: a pretraining step
(forward + backward, a batch of 24 four-second clips with ESR-long targets) and a GRPO rollout
(8 prompts x 6 samples x 80 tokens, sampled).  1 torch thread.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import torch

from emorl.models.tiny import configured_build


def _shape(which: str) -> dict:
    """The (text model, audio encoder) settings of a configured tiny backbone (its config file read once)."""
    build = configured_build(which)
    return {"text": build["text"], "audio": build["audio"]}


#: Candidate sizes: (text model, audio encoder) settings of :func:`emorl.models.tiny.build_tiny_backbone`; the
#: previous (warm-started) base and the chosen one as the config tree builds them.
SIZES = {
    "previous": _shape("warm_start"),
    "chosen": _shape("embedded_base"),
    "larger": dict(text=dict(hidden_size=192, intermediate_size=512, num_hidden_layers=4, num_attention_heads=4,
                             num_key_value_heads=2),
                   audio=dict(d_model=128, encoder_layers=4, encoder_attention_heads=4, encoder_ffn_dim=512)),
    # the chosen language model with a wider, deeper audio tower (the audio side's capacity, docs/results.md)
    "audio_larger": dict(text=_shape("embedded_base")["text"],
                         audio=dict(d_model=192, encoder_layers=6, encoder_attention_heads=4, encoder_ffn_dim=576)),
}


def measure(name: str, repeats: int = 3) -> dict:
    from emorl.data.batching import Collator, Example
    from emorl.models.loading import load_backbone
    from emorl.models.tiny import build_tiny_backbone

    texts = ["the meeting was furious today <answer>anger</answer> pitch high speed slow"] * 50
    texts += [" ".join(f"w{i}" for i in range(k, k + 50)) for k in range(0, 3000, 50)]
    with tempfile.TemporaryDirectory() as tmp:
        model, processor = load_backbone(build_tiny_backbone(tmp, texts, vocab_size=2048, **SIZES[name]))
    rng = np.random.default_rng(0)
    target = ("<think><transcript>" + " ".join(["the meeting was furious today"] * 2) + "</transcript><prosody>pitch "
              "high, speed fast</prosody><synthesis>furious conveys anger</synthesis></think><answer>anger</answer>")
    question = "Which emotion does the speaker express? Options: joy, anger, sadness."
    examples = [Example(audio=rng.normal(0, 0.1, 64000).astype(np.float32), text=question, target=target) for _ in range(24)]
    collate = Collator(processor)
    batch = collate(examples)
    keys = ("input_ids", "attention_mask", "input_features", "feature_attention_mask", "labels")
    optimizer = torch.optim.AdamW(model.parameters(), 1e-3)
    model.train()
    step = []
    for i in range(repeats + 1):
        start = time.perf_counter()
        model(**{k: batch[k] for k in keys}).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if i:  # the first is a warm-up
            step.append(time.perf_counter() - start)
    model.eval()
    prompts = collate([Example(audio=e.audio, text=e.text) for e in examples[:8]])
    start = time.perf_counter()
    with torch.no_grad():
        model.generate(**{k: prompts[k] for k in keys[:4]}, max_new_tokens=80, min_new_tokens=80, do_sample=True,
                       num_return_sequences=6)
    return {"parameters": sum(p.numel() for p in model.parameters()), "train_step_s": float(np.median(step)),
            "rollout_s": time.perf_counter() - start}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", default=list(SIZES), help=f"sizes to measure (of {', '.join(SIZES)})")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    rows = {name: measure(name) for name in args.names}
    base = rows.get("previous")
    print("| size | parameters | pretraining step (24 clips) | rollout (48 x 80 tokens) |")
    print("|---|---|---|---|")
    for name, r in rows.items():
        ratio = f" ({r['train_step_s'] / base['train_step_s']:.1f}x, {r['rollout_s'] / base['rollout_s']:.1f}x)" if base else ""
        print(f"| {name} | {r['parameters'] / 1e6:.2f} M | {r['train_step_s']:.2f} s | {r['rollout_s']:.2f} s{ratio} |")


if __name__ == "__main__":
    main()
