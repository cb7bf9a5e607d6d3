"""Speech synthesis with libespeak-ng, as shipped inside the ``espeakng-loader`` wheel.

Driven through ctypes: no system package, no network.  One synthesiser per process; the
library is not thread-safe, so calls are serialised by a lock.

eSpeak's output depends on what its process synthesized before (the same sentence and voice, spoken
twice in a row, differ in a few samples; ``espeak_Terminate`` does not reset it), though the same
sequence of utterances gives the same audio in every process.  So a corpus is synthesized in a process
of its own (:func:`in_fresh_process`): its audio is a function of its settings, whatever ran before.
"""

from __future__ import annotations

import ctypes
import pickle
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# espeak_AUDIO_OUTPUT.AUDIO_OUTPUT_SYNCHRONOUS and espeak_PARAMETER values (speak_lib.h).
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_RATE, _VOLUME, _PITCH, _RANGE = 1, 2, 3, 4
_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


@dataclass(frozen=True)
class Prosody:
    """eSpeak settings of one utterance: words per minute, pitch and pitch range (0-99), volume (0-200)."""

    rate: int
    pitch: int
    range: int
    volume: int


class Espeak:
    """A ctypes handle on libespeak-ng that returns float32 waveforms."""

    _lock = threading.Lock()

    def __init__(self) -> None:
        try:
            import espeakng_loader
        except ImportError as err:  # pragma: no cover - dependency of the package
            raise ImportError("the synthetic corpus needs the 'espeakng-loader' package: pip install espeakng-loader") from err
        self._lib = ctypes.CDLL(espeakng_loader.get_library_path())
        self._lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        self.sample_rate = self._lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, 0, espeakng_loader.get_data_path().encode(), 0
        )
        if self.sample_rate <= 0:
            raise RuntimeError("libespeak-ng failed to initialise (espeak_Initialize returned an error)")
        self._chunks: list[np.ndarray] = []
        self._callback = _CALLBACK(self._collect)  # keep a reference: ctypes does not
        self._lib.espeak_SetSynthCallback(self._callback)

    def _collect(self, wav, num_samples, events) -> int:
        if num_samples > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(num_samples,)).copy())
        return 0

    def synthesize(self, text: str, voice: str, prosody: Prosody) -> np.ndarray:
        """Speak ``text`` with ``voice`` (e.g. ``en-us+f3``); float32 in [-1, 1] at :attr:`sample_rate`."""
        with self._lock:
            if self._lib.espeak_SetVoiceByName(voice.encode()) != 0:
                raise ValueError(f"eSpeak has no voice {voice!r}")
            for param, value in ((_RATE, prosody.rate), (_PITCH, prosody.pitch), (_RANGE, prosody.range), (_VOLUME, prosody.volume)):
                self._lib.espeak_SetParameter(param, int(value), 0)
            self._chunks = []
            data = text.encode()
            self._lib.espeak_Synth(data, len(data) + 1, 0, 0, 0, 0, None, None)
            self._lib.espeak_Synchronize()
            if not self._chunks:
                raise RuntimeError(f"eSpeak produced no audio for {text!r}")
            wav = np.concatenate(self._chunks).astype(np.float32) / 32768.0
        return wav


def in_fresh_process(fn: Callable, *args):
    """``fn(*args)`` run in a new Python process; its result returned and its exception raised here.

    ``fn`` and ``args`` must be picklable (a module-level function, an object's method).  The new process runs
    ``python -c`` (not multiprocessing's spawn, which imports the caller's ``__main__`` again and so breaks in
    a script without a main guard)."""
    with tempfile.TemporaryDirectory() as tmp:
        call, result = Path(tmp) / "call.pkl", Path(tmp) / "result.pkl"
        call.write_bytes(pickle.dumps((fn, args)))
        run = subprocess.run([sys.executable, "-c", _RUN_PICKLED, str(call), str(result)], capture_output=True, text=True)
        if not result.exists():
            raise RuntimeError(f"a fresh process running {getattr(fn, '__qualname__', fn)} died (exit status "
                               f"{run.returncode}): {run.stderr[-3000:]}")
        ok, value = pickle.loads(result.read_bytes())
    if not ok:
        raise value
    return value


#: What :func:`in_fresh_process`'s process runs: unpickle ``(fn, args)``, pickle ``(True, result)`` or
#: ``(False, exception)``.
_RUN_PICKLED = """
import pickle, sys
fn, args = pickle.load(open(sys.argv[1], "rb"))
try:
    out = pickle.dumps((True, fn(*args)))
except Exception as err:
    try:
        out = pickle.dumps((False, err))
    except Exception:  # an exception that does not pickle: its type and message
        out = pickle.dumps((False, RuntimeError(f"{type(err).__name__}: {err}")))
with open(sys.argv[2], "wb") as f:
    f.write(out)
"""
