"""Audio input: read a file, check it, return 16 kHz mono float32.

WAV, FLAC, OGG and MP3 are read with soundfile (libsndfile); MP4/M4A/AAC and anything else
that libsndfile cannot open (MELD's clips are MP4 videos) are decoded with PyAV, FFmpeg's
Python binding, which ships its own FFmpeg.  Every failure names the file and what to do about
it, so that a broken corpus stops a run before training starts instead of after hours of it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

SAMPLE_RATE = 16_000

#: Extensions read through FFmpeg first (containers libsndfile does not know).
FFMPEG_EXTENSIONS = {".mp4", ".m4a", ".aac", ".mkv", ".webm", ".mov", ".avi", ".opus", ".wma"}


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
    check_float_range(wav, source)
    if sample_rate != SAMPLE_RATE:
        import librosa

        wav = librosa.resample(wav, orig_sr=sample_rate, target_sr=SAMPLE_RATE)
    return np.ascontiguousarray(wav, dtype=np.float32)


#: The speed factors :func:`change_speed` accepts: a voice played this much slower or faster is still a voice.
SPEED_RANGE = (0.5, 2.0)


def change_speed(wav: np.ndarray, factor: float) -> np.ndarray:
    """``wav`` (16 kHz) played ``factor`` times as fast, as a tape run faster: resampled, so its duration divides by
    ``factor`` and its pitch, formants and speaking rate all multiply by it (the speed perturbation of Ko et al.,
    2015, "Audio augmentation for speech recognition": new voices from the ones recorded).

    Shapes: ``wav`` (samples,) -> (about samples / factor,), float32.

    >>> change_speed(np.zeros(16000, np.float32), 1.25).shape, change_speed(np.zeros(16000, np.float32), 0.8).shape
    ((12800,), (20000,))
    """
    from fractions import Fraction

    from scipy.signal import resample_poly

    if not SPEED_RANGE[0] <= factor <= SPEED_RANGE[1]:
        raise ValueError(f"speed factor {factor}: expected {SPEED_RANGE[0]} to {SPEED_RANGE[1]} (a voice, not another "
                         "signal)")
    if factor == 1.0:
        return np.asarray(wav, dtype=np.float32)
    ratio = Fraction(1 / factor).limit_denominator(100)  # new rate / old rate: fewer samples for the same content
    return resample_poly(np.asarray(wav, dtype=np.float32), ratio.numerator, ratio.denominator).astype(np.float32)


#: The largest sample magnitude accepted: float audio lives in [-1, 1]; decoders overshoot a little on clipped
#: speech, but a peak beyond this is another scale (integer sample values stored as floats).
MAX_PEAK = 2.0


def check_float_range(wav: np.ndarray, source: str = "<array>") -> None:
    """Refuse audio outside float audio's range: read as is, its loudness (and so its prosody and emotion) is false.

    >>> check_float_range(np.array([0.5, -1.2], np.float32))  # a decoder's overshoot: fine
    >>> check_float_range(np.array([4000.0], np.float32), "a.wav")
    Traceback (most recent call last):
    ...
    emorl.data.audio.AudioError: a.wav: float samples peak at 4000 (float audio lies within [-1, 1]): the file holds another scale, e.g. 16-bit values stored as floats; rescale it (divide by 32768) or export it as integer PCM
    """
    peak = float(np.abs(wav).max()) if wav.size else 0.0
    if peak > MAX_PEAK:
        raise AudioError(f"{source}: float samples peak at {peak:g} (float audio lies within [-1, 1]): the file holds "
                         "another scale, e.g. 16-bit values stored as floats; rescale it (divide by 32768) or export "
                         "it as integer PCM")


def decode_ffmpeg(path: Path) -> tuple[np.ndarray, int]:
    """The first audio stream of any FFmpeg-readable file: ``(samples, channels)`` float32 and its rate."""
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise AudioError(f"{path}: the file has no audio stream; use a clip with sound or remove the item")
            stream = container.streams.audio[0]
            chunks = []
            for frame in container.decode(stream):
                # to_ndarray gives (channels, samples) for planar formats and (1, samples*channels) for packed
                array = frame.to_ndarray()
                channels = len(frame.layout.channels)
                if frame.format.is_planar:
                    array = array.T
                else:
                    array = array.reshape(-1, channels)
                chunks.append(_to_float(array))
            rate = stream.rate or stream.codec_context.sample_rate
            declared = float(stream.duration * stream.time_base) if stream.duration and stream.time_base else None
    except AudioError:
        raise
    except Exception as err:  # av raises its own error classes per FFmpeg error code
        raise AudioError(f"{path}: cannot decode audio ({err}); the file is corrupt or not a supported format") from err
    if not chunks:
        return np.zeros((0, 1), dtype=np.float32), rate
    wav = np.concatenate(chunks, axis=0)
    check_complete(path, len(wav) / rate, declared)
    return wav, rate


def check_complete(path: Path, decoded_s: float, declared_s: float | None) -> None:
    """A file that decodes to much less audio than its header declares was cut short (an interrupted
    copy or download): a model would hear a fragment, so it is refused like a corrupt file.

    >>> check_complete(Path("a.mp3"), 5.9, 6.0)  # within the decoder's rounding: fine
    """
    if declared_s and decoded_s < 0.9 * declared_s - 0.25:
        raise AudioError(
            f"{path}: decodes to {decoded_s:.1f} s of the {declared_s:.1f} s its header declares: the file is cut short; "
            "copy or extract it again"
        )


def _to_float(array: np.ndarray) -> np.ndarray:
    if np.issubdtype(array.dtype, np.integer):
        return array.astype(np.float32) / float(np.iinfo(array.dtype).max)
    return array.astype(np.float32)


def load_audio(path: str | Path) -> np.ndarray:
    """Read ``path`` as 16 kHz mono float32, or raise :class:`AudioError` naming the file."""
    path = Path(path)
    if not path.exists():
        if path.is_symlink():
            raise AudioError(f"{path}: a symbolic link that leads to no file (a loop, or a missing target); "
                             "point it at the audio file or remove the item")
        raise AudioError(f"{path}: audio file not found; check the corpus root and the manifest")
    if path.stat().st_size == 0:
        raise AudioError(f"{path}: audio file is empty (0 bytes); re-extract or remove it")
    if path.suffix.lower() in FFMPEG_EXTENSIONS:
        wav, sample_rate = decode_ffmpeg(path)
    else:
        try:
            wav, sample_rate = sf.read(str(path), dtype="float32", always_2d=False)
            declared = sf.info(str(path)).frames
        except Exception as err:  # soundfile raises its own LibsndfileError and RuntimeError
            # another container under a sound file's name (an MP4 saved as .wav): FFmpeg reads what libsndfile cannot
            try:
                wav, sample_rate = decode_ffmpeg(path)
            except AudioError as ffmpeg_error:
                raise AudioError(f"{path}: cannot decode audio (libsndfile: {err}; FFmpeg: {ffmpeg_error}); the file "
                                 "is corrupt or not a supported format") from err
        else:
            known = 0 < declared < 2**62  # libsndfile gives SF_COUNT_MAX for a length it does not know
            check_complete(path, len(wav) / sample_rate, declared / sample_rate if known else None)
    return to_mono_16k(wav, sample_rate, source=str(path))
