"""A tiny local judge for the rubric reward's tests, built by hand instead of trained.

A one-layer Qwen2 causal LM whose attention is uniform (query and key weights zero: every
position averages the values of all before it) and whose only signal is one embedding feature:
+1 on the tokens of " tense", -1 on those of " calm", 0 elsewhere.  The last position's logits
put a large weight on "5" when the prompt's average of that feature is positive and on "1" when
negative, so the judge rates 5 a reasoning that calls the voice tense and 1 one that calls it
calm, whatever else (and however much left padding) the prompt holds; read at a padding position
it says 1.  Deterministic and instant.
"""

from __future__ import annotations

from pathlib import Path

import torch

WORDS = {" tense": 1.0, " calm": -1.0}  # each word one added token: no BPE piece shared with other words


def explanation(word: str, padding: int = 0) -> str:
    """An ESR-like reasoning whose synthesis calls the voice ``word`` (``padding`` extra words: other lengths)."""
    return f"<prosody>pitch high</prosody><synthesis>the voice sounds{' very' * padding}{word}</synthesis>"


def build_tiny_judge(out_dir: str | Path, seed: int = 0) -> Path:
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from emorl.models.tiny import train_tokenizer
    from emorl.rewards.judge import RUBRIC, judge_prompt, reference_facts

    texts = [judge_prompt(d, reference_facts("anger", {"pitch": "high"}, "stop it"), explanation(w, p))
             for d in RUBRIC for w in WORDS for p in (0, 3)]
    tokenizer = train_tokenizer(texts * 4 + list("12345"), vocab_size=400)
    tokenizer.add_tokens([w.strip() for w in WORDS])
    config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                         pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False)
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        layer = model.model.layers[0]
        for norm in (layer.input_layernorm, layer.post_attention_layernorm, model.model.norm):
            norm.weight.fill_(1.0)
        embed = model.model.embed_tokens.weight
        embed[:, 1:].normal_(0, 0.02)  # feature 0 is the signal, the rest small noise
        for word, sign in WORDS.items():
            embed[tokenizer.convert_tokens_to_ids(word.strip()), 0] = sign
        embed[tokenizer.pad_token_id, 0] = -50.0  # read at a padding position (right padding), the judge says 1
        layer.self_attn.v_proj.weight[0, 0] = 1.0  # head 0 carries feature 0 ...
        layer.self_attn.o_proj.weight[0, 0] = 1.0  # ... back to feature 0, averaged over the positions
        for digit, sign in (("5", 1.0), ("1", -1.0)):
            model.lm_head.weight[tokenizer.convert_tokens_to_ids(digit), 0] = 1e4 * sign
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return Path(out_dir)
