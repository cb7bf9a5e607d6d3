"""Tiny but real audio-language models: the embedded default backbone, and its Qwen2.5-Omni twin.

``architecture="qwen2_audio"`` (the default) is a ``Qwen2AudioForConditionalGeneration`` built
from a small config, with a byte-level BPE tokenizer trained locally (``tokenizers``) and a real
``Qwen2AudioProcessor`` (Whisper feature extractor + Qwen2-Audio chat template), saved with
``save_pretrained`` so that the same ``from_pretrained`` code loads it and
``Qwen/Qwen2-Audio-7B-Instruct``.

``architecture="qwen2_5_omni"`` is a ``Qwen2_5OmniForConditionalGeneration`` without a talker,
saved as ``Qwen/Qwen2.5-Omni-7B`` is laid out (``thinker.*`` weights, ``spk_dict.pt``), so that
emorl loads its Thinker (audio in, text out) by the code path the 7B model takes.  Its
processor is a ``Qwen2AudioProcessor`` with Qwen2.5-Omni's chat template: for audio and text it
produces what ``Qwen2_5OmniProcessor`` produces (the same Whisper features, the same placeholder
count per clip, :func:`omni_audio_token_count`), and unlike that processor it needs no video
processor (torchvision), which a CPU-only machine lacks.

Its audio window is short (``chunk_length`` seconds, with the encoder's
``max_source_positions`` changed to match): with the 30 s window the encoder dominates a tiny
forward pass.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|AUDIO|>", "<|audio_bos|>", "<|audio_eos|>")
#: Qwen2.5-Omni's vision placeholders: in its vocabulary, never in a prompt here (and suppressed in completions).
OMNI_VISION_TOKENS = ("<|IMAGE|>", "<|VIDEO|>", "<|vision_bos|>", "<|vision_eos|>")
ARCHITECTURES = ("qwen2_audio", "qwen2_5_omni")

#: Qwen2.5-Omni's conversation format (its default system turn, audio as ``<|audio_bos|><|AUDIO|><|audio_eos|>``),
#: for audio and text content.
OMNI_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'audio' or 'audio' in content or 'audio_url' in content %}<|audio_bos|><|AUDIO|><|audio_eos|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Whisper front end: 100 mel frames per second; the encoder halves them (conv stride 2).
_FRAMES_PER_SECOND = 100


def omni_audio_token_count(mel_frames: int) -> int:
    """Placeholders Qwen2.5-Omni's processor and Thinker give a clip of ``mel_frames`` feature frames
    (stride-2 convolution, then stride-2 pooling).

    >>> omni_audio_token_count(400), omni_audio_token_count(3000)
    (100, 750)
    """
    after_conv = (mel_frames - 1) // 2 + 1
    return (after_conv - 2) // 2 + 1


#: Where the config tree states each tiny backbone's build settings (``vocab_size``, ``chunk_length``, ``text``,
#: ``audio``): the shipped embedded base (``python -m emorl.pretrain``) and the base warm-started on the fly
#: (``model.pretrained=null``).
CONFIGURED_BUILDS = {"embedded_base": ("pretrain.yaml", "model.build"), "warm_start": ("model/tiny.yaml", "build")}


def configured_build(which: str) -> dict:
    """The build settings of the tiny backbone ``which`` (a key of :data:`CONFIGURED_BUILDS`), read from the config
    tree, so that a benchmark measures the sizes the configs build and states them nowhere else.

    >>> configured_build("embedded_base")["text"]["hidden_size"] > configured_build("warm_start")["text"]["hidden_size"]
    True
    """
    from omegaconf import OmegaConf

    from emorl import CONF_DIR

    if which not in CONFIGURED_BUILDS:
        raise KeyError(f"unknown tiny backbone {which!r}; valid names: {sorted(CONFIGURED_BUILDS)}")
    file, key = CONFIGURED_BUILDS[which]
    return OmegaConf.to_container(OmegaConf.select(OmegaConf.load(CONF_DIR / file), key), resolve=True)


def train_tokenizer(texts: Iterable[str], vocab_size: int, special_tokens: tuple[str, ...] = SPECIAL_TOKENS):
    """A byte-level BPE tokenizer with Qwen2-Audio's special tokens (or ``special_tokens``), trained on ``texts``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator(texts, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=list(special_tokens[1:]),
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
    architecture: str = "qwen2_audio",
) -> Path:
    """Build, initialise (by ``seed``) and save a tiny Qwen2-Audio (or Qwen2.5-Omni) with its processor.

    Args:
        out_dir: where ``save_pretrained`` writes the model and processor.
        texts: text the tokenizer is trained on (prompts and answers of the tasks).
        chunk_length: audio window in seconds (feature extractor and encoder together).
        text / audio: overrides of the text model's / audio encoder's config sizes.
        architecture: one of :data:`ARCHITECTURES`.
    """
    if architecture not in ARCHITECTURES:
        raise ValueError(f"model.build.architecture {architecture!r} is not one of {list(ARCHITECTURES)}")
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
    omni = architecture == "qwen2_5_omni"
    tokenizer = train_tokenizer(texts, vocab_size, SPECIAL_TOKENS + OMNI_VISION_TOKENS if omni else SPECIAL_TOKENS)
    feature_extractor = WhisperFeatureExtractor(feature_size=128, chunk_length=chunk_length, sampling_rate=16000)
    processor = Qwen2AudioProcessor(feature_extractor=feature_extractor, tokenizer=tokenizer,
                                    **({"chat_template": OMNI_CHAT_TEMPLATE} if omni else {}))

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
    ids = {tok: tokenizer.convert_tokens_to_ids(tok) for tok in SPECIAL_TOKENS + (OMNI_VISION_TOKENS if omni else ())}
    text_kwargs.update(bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|endoftext|>"], pad_token_id=ids["<|endoftext|>"])
    torch.manual_seed(seed)
    if omni:
        model = _tiny_omni(audio_kwargs, text_kwargs, ids)
    else:
        config = Qwen2AudioConfig(
            audio_config=Qwen2AudioEncoderConfig(**audio_kwargs),
            text_config=Qwen2Config(**text_kwargs),
            audio_token_index=ids["<|AUDIO|>"],
        )
        model = Qwen2AudioForConditionalGeneration(config)
    (model.thinker if omni else model).generation_config = GenerationConfig(
        eos_token_id=[ids["<|endoftext|>"], ids["<|im_end|>"]],
        pad_token_id=ids["<|endoftext|>"],
        bos_token_id=ids["<|endoftext|>"],
    )
    if omni:
        save_omni_checkpoint(model.thinker, out_dir)
    else:
        model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return out_dir


def _tiny_omni(audio: dict, text: dict, ids: dict[str, int]):
    """A ``Qwen2_5OmniForConditionalGeneration`` with no talker: its Thinker holds every weight.

    The audio encoder's window is chunked by ``n_window`` (half a chunk's frames); its output
    size is the text model's hidden size.  The vision encoder is the smallest the config allows
    (it is built, never run: prompts hold no images).
    """
    from transformers import (
        Qwen2_5OmniAudioEncoderConfig,
        Qwen2_5OmniForConditionalGeneration,
        Qwen2_5OmniTextConfig,
        Qwen2_5OmniThinkerConfig,
        Qwen2_5OmniVisionEncoderConfig,
    )

    hidden, heads = text["hidden_size"], text["num_attention_heads"]
    half = hidden // heads // 2  # rotary frequencies per head, split over time / height / width as 7B's 16/24/24 of 64
    mrope = [half - 2 * (half * 3 // 8), half * 3 // 8, half * 3 // 8]
    text = {k: v for k, v in text.items() if k != "tie_word_embeddings"}
    thinker = Qwen2_5OmniThinkerConfig(
        audio_config=Qwen2_5OmniAudioEncoderConfig(**audio, output_dim=hidden, n_window=50),
        vision_config=Qwen2_5OmniVisionEncoderConfig(depth=1, hidden_size=16, intermediate_size=32, num_heads=2,
                                                     out_hidden_size=hidden, fullatt_block_indexes=[0]),
        text_config=Qwen2_5OmniTextConfig(**text, rope_parameters={"rope_type": "default", "rope_theta": 1e6,
                                                                  "mrope_section": mrope}),
        audio_token_index=ids["<|AUDIO|>"],
        image_token_index=ids["<|IMAGE|>"],
        video_token_index=ids["<|VIDEO|>"],
        audio_start_token_id=ids["<|audio_bos|>"],
        audio_end_token_id=ids["<|audio_eos|>"],
        user_token_id=ids["<|im_start|>"],
        vision_start_token_id=ids["<|vision_bos|>"],  # the 7B checkpoint's thinker config has it; generation reads it
        tie_word_embeddings=False,
    )
    return Qwen2_5OmniForConditionalGeneration(_omni_config(thinker.to_dict()))


def _omni_config(thinker: dict):
    """A Qwen2.5-Omni config without a talker (its talker config's vocabulary holds the tiny ids: no range warnings)."""
    from transformers import Qwen2_5OmniConfig

    return Qwen2_5OmniConfig(thinker_config=thinker, talker_config={"vocab_size": 151936}, enable_audio_output=False)


def save_omni_checkpoint(thinker, out_dir: str | Path) -> Path:
    """Save a Qwen2.5-Omni Thinker in the full checkpoint's layout (``thinker.*`` weights, ``spk_dict.pt``),
    as ``Qwen/Qwen2.5-Omni-7B`` is laid out, so that it loads by the 7B model's code path."""
    from transformers import Qwen2_5OmniForConditionalGeneration

    out_dir = Path(out_dir)
    full = Qwen2_5OmniForConditionalGeneration(_omni_config(thinker.config.to_dict()))
    full.thinker.load_state_dict(thinker.state_dict())
    full.generation_config = thinker.generation_config
    full.save_pretrained(out_dir)
    torch.save({}, out_dir / "spk_dict.pt")
    return out_dir
