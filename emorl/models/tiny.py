"""A tiny but real Qwen2-Audio: the embedded default backbone.

It is a ``Qwen2AudioForConditionalGeneration`` built from a small config, with a byte-level
BPE tokenizer trained locally (``tokenizers``) and a real ``Qwen2AudioProcessor`` (Whisper
feature extractor + Qwen2-Audio chat template), saved with ``save_pretrained`` so that the
same ``from_pretrained`` code loads it and ``Qwen/Qwen2-Audio-7B-Instruct``.

Its audio window is short (``chunk_length`` seconds, with the encoder's
``max_source_positions`` changed to match): with the 30 s window the encoder dominates a tiny
forward pass.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|AUDIO|>", "<|audio_bos|>", "<|audio_eos|>")

# Whisper front end: 100 mel frames per second; the encoder halves them (conv stride 2).
_FRAMES_PER_SECOND = 100


def train_tokenizer(texts: Iterable[str], vocab_size: int):
    """A byte-level BPE tokenizer with Qwen2-Audio's special tokens, trained on ``texts``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator(texts, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=list(SPECIAL_TOKENS[1:]),
        padding_side="left",
    )
    return tokenizer


def build_tiny_backbone(
    out_dir: str | Path,
    texts: Iterable[str],
    *,
    seed: int = 0,
    vocab_size: int = 1024,
    chunk_length: int = 4,
    text: dict | None = None,
    audio: dict | None = None,
) -> Path:
    """Build, initialise (by ``seed``) and save a tiny Qwen2-Audio with its processor.

    Args:
        out_dir: where ``save_pretrained`` writes the model and processor.
        texts: text the tokenizer is trained on (prompts and answers of the tasks).
        chunk_length: audio window in seconds (feature extractor and encoder together).
        text / audio: overrides of the ``Qwen2Config`` / ``Qwen2AudioEncoderConfig`` sizes.
    """
    from transformers import (
        GenerationConfig,
        Qwen2AudioConfig,
        Qwen2AudioEncoderConfig,
        Qwen2AudioForConditionalGeneration,
        Qwen2AudioProcessor,
        Qwen2Config,
        WhisperFeatureExtractor,
    )

    out_dir = Path(out_dir)
    tokenizer = train_tokenizer(texts, vocab_size)
    feature_extractor = WhisperFeatureExtractor(feature_size=128, chunk_length=chunk_length, sampling_rate=16000)
    processor = Qwen2AudioProcessor(feature_extractor=feature_extractor, tokenizer=tokenizer)

    audio_kwargs = dict(d_model=64, encoder_layers=2, encoder_attention_heads=4, encoder_ffn_dim=128, num_mel_bins=128)
    audio_kwargs.update(audio or {})
    audio_kwargs["max_source_positions"] = chunk_length * _FRAMES_PER_SECOND // 2
    text_kwargs = dict(
        hidden_size=96,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=False,
    )
    text_kwargs.update(text or {})
    text_kwargs["vocab_size"] = len(tokenizer)
    ids = {tok: tokenizer.convert_tokens_to_ids(tok) for tok in SPECIAL_TOKENS}
    text_kwargs.update(bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|endoftext|>"], pad_token_id=ids["<|endoftext|>"])
    config = Qwen2AudioConfig(
        audio_config=Qwen2AudioEncoderConfig(**audio_kwargs),
        text_config=Qwen2Config(**text_kwargs),
        audio_token_index=ids["<|AUDIO|>"],
    )
    torch.manual_seed(seed)
    model = Qwen2AudioForConditionalGeneration(config)
    model.generation_config = GenerationConfig(
        eos_token_id=[ids["<|endoftext|>"], ids["<|im_end|>"]],
        pad_token_id=ids["<|endoftext|>"],
        bos_token_id=ids["<|endoftext|>"],
    )
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return out_dir
