"""Small corpora in their native layouts, with generated audio, for the reader tests.

Each builder writes the files a release holds (annotation files, folder names, file-name
conventions) and a short tone per clip; the tests state the items they expect by hand.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf


def tone(seconds: float = 0.25, rate: int = 16000, freq: float = 220.0, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    wav = (0.2 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return np.stack([wav] * channels, axis=1) if channels > 1 else wav


def write_wav(path: Path, rate: int = 16000, channels: int = 1, freq: float = 220.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), tone(rate=rate, channels=channels, freq=freq), rate)
    return path


def write_mp4(path: Path, rate: int = 44100, channels: int = 2, freq: float = 330.0) -> Path:
    """An MP4 with one AAC audio stream (as MELD's clips carry their sound)."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    wav = tone(seconds=0.5, rate=rate, freq=freq, channels=channels).reshape(-1, channels).T.copy()
    layout = "stereo" if channels == 2 else "mono"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=rate, layout=layout)
        frame = av.AudioFrame.from_ndarray(wav, format="fltp", layout=layout)
        frame.rate = rate
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


MELD_HEADER = "Sr No.,Utterance,Speaker,Emotion,Sentiment,Dialogue_ID,Utterance_ID,Season,Episode,StartTime,EndTime\n"


def meld_tree(root: Path, rows: dict[str, list[tuple[int, int, str, str, str]]], wav_beside: set[str] = frozenset(),
              missing: set[str] = frozenset(), corrupt: set[str] = frozenset()) -> Path:
    """MELD.Raw: ``rows[split] = [(dialogue, utterance, emotion, speaker, utterance text)]``.

    ``wav_beside``/``missing``/``corrupt`` name clips (``split/diaD_uttU``) given a .wav beside the
    .mp4, no file, or a corrupt .mp4.
    """
    csv_names = {"train": "train_sent_emo.csv", "val": "dev_sent_emo.csv", "test": "test_sent_emo.csv"}
    folders = {"train": "train/train_splits", "val": "dev_splits_complete", "test": "output_repeated_splits_test"}
    for split, split_rows in rows.items():
        lines = [MELD_HEADER]
        for n, (dia, utt, emotion, speaker, text) in enumerate(split_rows, 1):
            lines.append(f'{n},"{text}",{speaker},{emotion},neutral,{dia},{utt},1,1,"00:00:01,000","00:00:02,000"\n')
            key = f"{split}/dia{dia}_utt{utt}"
            clip = root / folders[split] / f"dia{dia}_utt{utt}.mp4"
            if key in missing:
                continue
            if key in corrupt:
                clip.parent.mkdir(parents=True, exist_ok=True)
                clip.write_bytes(b"\x00\x00\x00\x18ftypmp42 truncated")
                continue
            write_mp4(clip)
            if key in wav_beside:
                write_wav(clip.with_suffix(".wav"))
        csv_dir = root / ("train" if split == "train" else "")
        csv_dir.mkdir(parents=True, exist_ok=True)
        (csv_dir / csv_names[split]).write_text("".join(lines), encoding="utf-8")
    return root


def iemocap_tree(root: Path, dialogs: dict[int, dict[str, list[tuple[str, str]]]]) -> Path:
    """``dialogs[session][dialog] = [(utterance id, code)]``; writes labels, transcripts and wavs."""
    for session, by_dialog in dialogs.items():
        base = root / f"Session{session}"
        for dialog, utterances in by_dialog.items():
            lines = ["% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]", ""]
            transcript = []
            for k, (utt, code) in enumerate(utterances):
                lines += [f"[{k}.5000 - {k + 1}.2500]\t{utt}\t{code}\t[2.5000, 3.0000, 3.0000]",
                          "C-E1:\tNeutral;\t()", "A-E1:\tval 3; act 3; dom  3;\t()", ""]
                transcript.append(f"{utt} [{k:03d}.5000-{k + 1:03d}.2500]: words of {utt}.")
                write_wav(base / "sentences" / "wav" / dialog / f"{utt}.wav", rate=16000)
            (base / "dialog" / "EmoEvaluation").mkdir(parents=True, exist_ok=True)
            (base / "dialog" / "EmoEvaluation" / f"{dialog}.txt").write_text("\n".join(lines) + "\n")
            (base / "dialog" / "transcriptions").mkdir(parents=True, exist_ok=True)
            (base / "dialog" / "transcriptions" / f"{dialog}.txt").write_text("\n".join(transcript) + "\n")
    return root
