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


def _write_mp3(path, seconds=6.0, rate=16000):
    import av

    t = np.arange(int(rate * seconds)) / rate
    x = (0.2 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libmp3lame", rate=rate)
        stream.layout = "mono"
        for i in range(0, len(x), 1152):
            frame = av.AudioFrame.from_ndarray(x[None, i:i + 1152], format="flt", layout="mono")
            frame.rate = rate
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def test_an_mp3_cut_short_is_refused_not_heard_as_a_fragment(tmp_path):
    """An MP3 cut to a third decoded to 2 s of its 6 s, and predict answered from the fragment."""
    _write_mp3(tmp_path / "whole.mp3")
    assert abs(len(load_audio(tmp_path / "whole.mp3")) / 16000 - 6.0) < 0.1
    data = (tmp_path / "whole.mp3").read_bytes()
    (tmp_path / "cut.mp3").write_bytes(data[: len(data) // 3])
    with pytest.raises(AudioError, match=r"cut.mp3: decodes to 1.\d s of the 6.0 s its header declares: the file is cut short"):
        load_audio(tmp_path / "cut.mp3")
