"""Audio input: bad files fail with their name; any rate and channel count becomes 16 kHz mono."""

import numpy as np
import pytest
import soundfile as sf

from emorl.data.audio import AudioError, load_audio


def test_missing_file_is_named(tmp_path):
    with pytest.raises(AudioError, match="nope.wav.*not found"):
        load_audio(tmp_path / "nope.wav")


def test_empty_file_is_named(tmp_path):
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(AudioError, match="empty.wav.*empty"):
        load_audio(tmp_path / "empty.wav")


def test_corrupt_file_is_named(tmp_path):
    (tmp_path / "bad.wav").write_bytes(b"RIFF1234WAVEjunkjunkjunk")
    with pytest.raises(AudioError, match="bad.wav.*corrupt"):
        load_audio(tmp_path / "bad.wav")


def test_zero_length_audio_is_named(tmp_path):
    sf.write(tmp_path / "zero.wav", np.zeros(0, dtype=np.float32), 16000)
    with pytest.raises(AudioError, match="zero.wav.*zero samples"):
        load_audio(tmp_path / "zero.wav")


def test_stereo_44k_becomes_16k_mono(tmp_path):
    t = np.arange(44100) / 44100
    left = 0.5 * np.sin(2 * np.pi * 440 * t)
    sf.write(tmp_path / "s.wav", np.stack([left, left], axis=1).astype(np.float32), 44100)
    wav = load_audio(tmp_path / "s.wav")
    assert wav.dtype == np.float32 and wav.ndim == 1
    assert abs(len(wav) - 16000) <= 1
    spectrum = np.abs(np.fft.rfft(wav))
    assert abs(np.argmax(spectrum) * 16000 / len(wav) - 440) < 5  # the tone survives resampling
