"""Nothing heard in part, or not as given, without a word: long clips, float scale, class counts, typed settings,
manifests and files that are not what they seem, labels off the wheel, and rewards missing a column."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.conftest import compose


def tone(seconds: float, peak: float = 0.5, rate: int = 16000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (peak * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


# ------------------------------------------------------------------ float audio outside [-1, 1]
@pytest.mark.parametrize("peak, refused", [
    (0.9, False),  # ordinary float audio
    (1.3, False),  # a decoder's overshoot on clipped speech: still float audio
    (4000.0, True),  # 16-bit values stored as floats: read as is, a quiet voice becomes a shout
])
def test_float_audio_outside_its_range_is_refused_naming_the_file(tmp_path, peak, refused):
    from emorl.data.audio import AudioError, load_audio

    path = tmp_path / "clip.wav"
    sf.write(path, tone(1.0, peak), 16000, subtype="FLOAT")
    if refused:
        with pytest.raises(AudioError, match=f"{path}: float samples peak at 4000"):
            load_audio(path)
    else:
        assert np.abs(load_audio(path)).max() == pytest.approx(peak, rel=1e-3)


# ------------------------------------------------------------------ files that are not what their names say
def test_an_mp4_named_wav_is_decoded_through_ffmpeg(tmp_path):
    import av

    from emorl.data.audio import load_audio

    path = tmp_path / "clip.wav"  # an MP4 container under a WAV name
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("aac", rate=16000)
        stream.layout = "mono"
        wav = tone(1.0)
        frame = av.AudioFrame.from_ndarray(wav[None, :], format="fltp", layout="mono")
        frame.sample_rate = 16000
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    heard = load_audio(path)
    assert 0.9 < len(heard) / 16000 < 1.2 and np.abs(heard).max() > 0.2


def test_a_symlink_loop_is_skipped_and_counted_under_the_skip_policy(tmp_path):
    from emorl.data.corpora import ManifestCorpus

    for name in ("a", "b"):
        sf.write(tmp_path / f"{name}.wav", tone(0.5), 16000)
    (tmp_path / "loop1.wav").symlink_to(tmp_path / "loop2.wav")
    (tmp_path / "loop2.wav").symlink_to(tmp_path / "loop1.wav")
    rows = [{"path": "a.wav", "label": "joy", "split": "train"}, {"path": "b.wav", "label": "anger", "split": "train"},
            {"path": "loop1.wav", "label": "joy", "split": "train"}]
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    corpus = ManifestCorpus(tmp_path / "m.jsonl", labels=["joy", "anger"], on_bad_item="skip")
    assert [Path(i.path).name for i in corpus.items("train")] == ["a.wav", "b.wav"]
    assert corpus.report.summary()["skipped_total"] == 1


def test_a_utf16_manifest_is_read_and_another_encoding_is_named(tmp_path):
    from emorl.data.corpora import ManifestCorpus
    from emorl.data.corpus import CorpusError

    sf.write(tmp_path / "a.wav", tone(0.5), 16000)
    sf.write(tmp_path / "b.wav", tone(0.5), 16000)
    (tmp_path / "m.csv").write_bytes("path,label,split\na.wav,joy,train\nb.wav,anger,train\n".encode("utf-16"))
    assert len(ManifestCorpus(tmp_path / "m.csv", labels=["joy", "anger"]).items("train")) == 2
    (tmp_path / "n.csv").write_bytes("path,label\nä.wav,joy\n".encode("latin-1"))
    with pytest.raises(CorpusError, match="n.csv: not UTF-8 text"):
        ManifestCorpus(tmp_path / "n.csv", labels=["joy", "anger"]).items("train")


def test_many_skipped_rows_of_one_kind_log_a_bounded_number_of_lines(caplog):
    from emorl.data.corpus import SkipReport

    report = SkipReport("skip", "demo")
    with caplog.at_level(logging.WARNING):
        for n in range(5000):
            report.bad(f"row {n}", "audio file not found", split="train")
    assert len(caplog.records) <= SkipReport.MAX_LOGGED + 1
    assert report.summary()["skipped_total"] == 5000 and report.summary()["skip_reasons"] == {"audio file not found": 5000}


# ------------------------------------------------------------------ labels off Plutchik's wheel
def test_labels_off_the_wheel_train_with_bcr_and_need_a_place_only_for_eswr():
    from emorl.emotions import label_set
    from emorl.rewards import make_bcr_reward, make_eswr_reward

    labels = label_set(["neutral", "frustrated", "angry"])  # IEMOCAP's frustrated has no wheel point of its own
    assert make_bcr_reward(labels)(["<answer>frustrated</answer>"], label=["frustrated"]) == [1.0]
    with pytest.raises(ValueError, match=r"dataset.wheel=\{frustrated: "):
        make_eswr_reward(labels)
    eswr = make_eswr_reward(labels, wheel={"frustrated": "anger"})  # placed by configuration, no code edited
    assert eswr(["<answer>frustrated</answer>"], label=["angry"], alpha=1.0) == [pytest.approx(1.0)]
    with pytest.raises(ValueError, match="no point of Plutchik's wheel"):
        make_eswr_reward(labels, wheel={"frustrated": "annoyance"})


def test_the_eswr_config_takes_the_datasets_wheel(cache_dir, tmp_path):
    from emorl.builders import build_rewards
    from emorl.prompts import get_strategy

    cfg = compose(["reward=eswr", "+dataset.wheel={frustrated: anger}"], cache_dir, tmp_path)
    rewards = build_rewards(cfg.reward, get_strategy("esr"), ["neutral", "frustrated", "anger"])
    assert rewards is not None


# ------------------------------------------------------------------ the grounding reward without measurements
def test_the_grounding_reward_refuses_prosody_claims_without_the_prosody_column():
    from emorl.rewards.grounding import make_grounding_reward

    reward = make_grounding_reward()
    claims = ["<transcript>so sad</transcript><prosody>pitch high, loud</prosody>"]
    with pytest.raises(ValueError, match="no 'prosody' column"):
        reward(claims, transcript=["so sad"])
    # without claims there is nothing to check: transcripts alone are scored
    assert reward(["<transcript>so sad</transcript>"], transcript=["so sad"]) == [1.0]
    # a clip without measurement (None in the column) is not a missing column
    assert reward(claims, prosody=[None], transcript=["so sad"]) == [1.0]


# ------------------------------------------------------------------ typed settings, refused by key before any work
@pytest.mark.parametrize("override, message", [
    ("algo.grpo.top_p=0", "algo.grpo.top_p must lie in \\(0, 1\\]"),  # keeps no token: nothing would train
    ("algo.grpo.num_generations=six", "algo.grpo.num_generations='six': set a whole number"),
    ("algo.grpo.num_generations=6.0", "algo.grpo.num_generations=6.0: set a whole number"),
    ("seed=-1", "seed=-1: set a whole number >= 0"),
    ("num_threads=-1", "num_threads=-1: set a whole number >= 0"),
    ("data.eval_batch_size=0", "data.eval_batch_size=0: set a whole number >= 1"),
])
def test_mistyped_settings_are_refused_by_key_in_the_preflight(cache_dir, tmp_path, override, message):
    from emorl.builders import check_run_settings

    with pytest.raises(ValueError, match=message):
        check_run_settings(compose([override], cache_dir, tmp_path))


def test_bench_refuses_zero_steps(capsys):
    from emorl.bench import main

    with pytest.raises(SystemExit) as exit_:
        main(["--steps", "0"])
    assert exit_.value.code != 0 and "--steps 0: give a whole number >= 1" in capsys.readouterr().err


# ------------------------------------------------------------------ predict: long clips and file names
def test_a_clip_named_with_an_equals_sign_is_a_clip(tmp_path, monkeypatch):
    from emorl.predict import split_argv

    monkeypatch.chdir(tmp_path)
    Path("take=2.wav").write_bytes(b"x")
    assert split_argv(["take=2.wav", "ckpt=run"]) == (["take=2.wav"], ["ckpt=run"], False)
    assert split_argv(["ckpt=run", "--", "x=1.wav"]) == (["x=1.wav"], ["ckpt=run"], False)


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("long") / "long.wav"
    sf.write(path, np.concatenate([tone(4.0, 0.2), tone(4.0, 0.6), tone(2.5, 0.4)]), 16000)
    return path


def test_predict_says_it_heard_only_the_first_window_of_a_long_clip(esr_ckpt, long_clip, capsys):
    from emorl.predict import main

    [result] = main([str(long_clip), f"ckpt={esr_ckpt}", "--json"])
    assert result["seconds"] == pytest.approx(10.5) and result["heard_seconds"] == pytest.approx(4.0)
    assert "heard the first 4 s of 10.5 s" in result["note"]
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["note"] == result["note"]
    main([str(long_clip), f"ckpt={esr_ckpt}"])
    assert "note: heard the first 4 s" in capsys.readouterr().out


def test_predict_answers_every_window_of_a_long_clip_on_request(esr_ckpt, long_clip):
    from emorl.predict import main, vote

    [result] = main([str(long_clip), f"ckpt={esr_ckpt}", "long_clips=windows", "--json"])
    assert [(w["start"], w["end"]) for w in result["windows"]] == [(0.0, 4.0), (4.0, 8.0), (8.0, 10.5)]
    assert result["emotion"] == vote([w["emotion"] for w in result["windows"]])[0]
    assert result["heard_seconds"] == pytest.approx(10.5)


def test_predict_refuses_a_batch_size_of_zero(esr_ckpt, long_clip):
    from emorl.predict import main

    with pytest.raises(ValueError, match="batch_size=0: set a whole number >= 1"):
        main([str(long_clip), f"ckpt={esr_ckpt}", "batch_size=0"])


# ------------------------------------------------------------------ class counts per split
def test_class_counts_are_recorded_per_split_and_a_missing_training_class_is_warned(small_corpus, caplog):
    from emorl.data.corpus import RelabeledCorpus
    from emorl.modules.datamodule import EmotionDataModule
    from emorl.prompts import get_strategy

    # every training clip relabelled to one label: the other labels have no training clip
    one = RelabeledCorpus(small_corpus, {label: "anger" for label in small_corpus.labels})
    one.labels = small_corpus.labels
    dm = EmotionDataModule(corpus=one, strategy=get_strategy("ir"), batch_size=2, check_audio=False)
    with caplog.at_level(logging.WARNING):
        dm.setup("fit")
    counts = dm.summary()["classes"]["train"]
    assert counts["anger"] == len(small_corpus.items("train")) and counts["joy"] == 0
    assert dm.summary()["labels_without_training_clips"] == [label for label in small_corpus.labels if label != "anger"]
