"""Audio input: read a file, check it, return 16 kHz mono float32.

Every failure names the file and what to do about it, so that a broken corpus stops a run
before training starts instead of after hours of it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

SAMPLE_RATE = 16_000


class AudioError(ValueError):
    """An audio file that cannot be used, with the reason in the message."""


def to_mono_16k(wav: np.ndarray, sample_rate: int, source: str = "<array>") -> np.ndarray:
    """Convert a waveform (T,) or (T, channels) at any rate to 16 kHz mono float32.

    >>> to_mono_16k(np.zeros((32000, 2), dtype=np.float32), 32000).shape
    (16000,)
    """
    wav = np.asarray(wav, dtype=np.float32)
    if wav.ndim == 2:
        wav = wav.mean(axis=1)
    elif wav.ndim != 1:
        raise AudioError(f"{source}: expected (samples,) or (samples, channels) audio, got shape {wav.shape}")
    if wav.size == 0:
        raise AudioError(f"{source}: audio has zero samples; remove the item or replace the file")
    if not np.isfinite(wav).all():
        raise AudioError(f"{source}: audio holds NaN or infinite samples; re-export the file")
    if sample_rate != SAMPLE_RATE:
        import librosa

        wav = librosa.resample(wav, orig_sr=sample_rate, target_sr=SAMPLE_RATE)
    return np.ascontiguousarray(wav, dtype=np.float32)


def load_audio(path: str | Path) -> np.ndarray:
    """Read ``path`` as 16 kHz mono float32, or raise :class:`AudioError` naming the file."""
    path = Path(path)
    if not path.exists():
        raise AudioError(f"{path}: audio file not found; check the corpus root and the manifest")
    if path.stat().st_size == 0:
        raise AudioError(f"{path}: audio file is empty (0 bytes); re-extract or remove it")
    try:
        wav, sample_rate = sf.read(str(path), dtype="float32", always_2d=False)
    except Exception as err:  # soundfile raises its own LibsndfileError and RuntimeError
        raise AudioError(f"{path}: cannot decode audio ({err}); the file is corrupt or not a supported format") from err
    return to_mono_16k(wav, sample_rate, source=str(path))
