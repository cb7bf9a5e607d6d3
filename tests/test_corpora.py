"""The corpus readers on fixture trees in each native layout: exact items, labels and splits."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from emorl.data.audio import load_audio
from emorl.data.checks import check_items
from emorl.data.corpora import IEMOCAP, MELD, RAVDESS, SAVEE, ManifestCorpus
from emorl.data.corpus import CorpusError
from tests.corpus_trees import iemocap_tree, meld_tree, write_mp4, write_wav


def summary(corpus):
    return sorted((Path(i.path).name, i.label, i.split, i.speaker) for i in corpus.items("all"))


# ------------------------------------------------------------------------------------------ MELD
MELD_ROWS = {
    "train": [(0, 0, "neutral", "Chandler", "also I was the point person"),
              (0, 1, "surprise", "The Interviewer", "You must have had your hands full."),
              (125, 3, "joy", "Ross", "the release's corrupt clip"),
              (3, 2, "Anger", "Monica", "capitalised label")],
    "val": [(0, 0, "sadness", "Phoebe", "oh no"), (110, 7, "fear", "Joey", "the release's missing clip")],
    "test": [(5, 1, "disgust", "Rachel", "ew"), (5, 2, "joy", "Ross", "yay")],
}


@pytest.fixture
def meld_root(tmp_path):
    return meld_tree(tmp_path / "MELD.Raw", MELD_ROWS, wav_beside={"test/dia5_utt2"},
                     missing={"val/dia110_utt7"}, corrupt={"train/dia125_utt3"})


def test_meld_reads_the_official_layout(meld_root):
    corpus = MELD(meld_root)
    assert summary(corpus) == sorted([
        ("dia0_utt0.mp4", "neutral", "train", "Chandler"),
        ("dia0_utt1.mp4", "surprise", "train", "The Interviewer"),
        ("dia3_utt2.mp4", "anger", "train", "Monica"),  # labels are case-insensitive
        ("dia0_utt0.mp4", "sadness", "val", "Phoebe"),  # dev_sent_emo.csv is the val split
        ("dia5_utt1.mp4", "disgust", "test", "Rachel"),
        ("dia5_utt2.wav", "joy", "test", "Ross"),  # a pre-extracted .wav beside the clip wins
    ])
    assert corpus.items("val")[0].transcript == "oh no"
    # the two known defects of the official release are skipped and counted even under on_bad_item=error
    report = corpus.report.summary()
    assert report["skipped"] == {"train": 1, "val": 1}
    assert any("dia125_utt3" in e for e in report["skipped_examples"])


def test_meld_clip_audio_is_read_from_the_mp4(meld_root):
    wav = load_audio(meld_root / "train" / "train_splits" / "dia0_utt0.mp4")  # 44.1 kHz stereo AAC
    assert wav.ndim == 1 and abs(len(wav) - 8000) < 1200  # 0.5 s at 16 kHz (+ AAC priming)
    spectrum = np.abs(np.fft.rfft(wav))
    assert abs(np.argmax(spectrum) * 16000 / len(wav) - 330) < 8


def test_meld_missing_clip_stops_the_run_or_is_counted(meld_root):
    (meld_root / "dev_splits_complete" / "dia0_utt0.mp4").unlink()
    with pytest.raises(CorpusError, match=r"dev_sent_emo.csv:2 .*dia0_utt0.mp4.*clip not found.*on_bad_item=skip"):
        MELD(meld_root).items("train")
    corpus = MELD(meld_root, on_bad_item="skip")
    assert [i.split for i in corpus.items("all")].count("val") == 0
    assert corpus.report.summary()["skipped"] == {"train": 1, "val": 2}


def test_meld_unknown_emotion_is_named(meld_root):
    csv = meld_root / "test_sent_emo.csv"
    csv.write_text(csv.read_text().replace(",disgust,", ",boredom,"))
    with pytest.raises(CorpusError, match=r"test_sent_emo.csv:2: emotion 'boredom'"):
        MELD(meld_root).items("test")


def test_meld_wrong_root_says_what_to_point_at(tmp_path):
    with pytest.raises(CorpusError, match="MELD.Raw"):
        MELD(tmp_path).items("train")


# --------------------------------------------------------------------------------------- IEMOCAP
def _dialogs():
    return {
        s: {f"Ses0{s}F_impro01": [(f"Ses0{s}F_impro01_F000", "neu"), (f"Ses0{s}F_impro01_M000", "exc"),
                                  (f"Ses0{s}F_impro01_F001", "fru"), (f"Ses0{s}F_impro01_M001", "ang")],
            f"Ses0{s}M_script01_2": [(f"Ses0{s}M_script01_2_F000", "hap"), (f"Ses0{s}M_script01_2_M000", "sad"),
                                     (f"Ses0{s}M_script01_2_F001", "xxx")]}
        for s in (1, 2, 3, 4, 5)
    }


def test_iemocap_four_classes_sessions_and_speakers(tmp_path):
    root = iemocap_tree(tmp_path / "IEMOCAP", _dialogs())
    corpus = IEMOCAP(root, test_session=5, val_session=4)
    expected = []
    for s, split in ((1, "train"), (2, "train"), (3, "train"), (4, "val"), (5, "test")):
        expected += [(f"Ses0{s}F_impro01_F000.wav", "neutral", split, f"Ses0{s}F"),
                     (f"Ses0{s}F_impro01_M000.wav", "happy", split, f"Ses0{s}M"),  # excited merges into happy
                     (f"Ses0{s}F_impro01_M001.wav", "angry", split, f"Ses0{s}M"),
                     (f"Ses0{s}M_script01_2_F000.wav", "happy", split, f"Ses0{s}F"),
                     (f"Ses0{s}M_script01_2_M000.wav", "sad", split, f"Ses0{s}M")]
    assert summary(corpus) == sorted(expected)
    report = corpus.report.summary()
    assert report["excluded"]["test"] == {"frustration": 1, "no agreement": 1}  # dropped and counted
    assert report["excluded_total"] == 10 and report["skipped_total"] == 0
    assert corpus.items("test")[0].transcript == "words of Ses05F_impro01_F000."


def test_iemocap_leave_one_session_out_folds(tmp_path):
    root = iemocap_tree(tmp_path / "IEMOCAP", _dialogs())
    for fold in (1, 2, 3, 4, 5):
        corpus = IEMOCAP(root, test_session=fold)
        assert {i.meta["session"] for i in corpus.items("test")} == {fold}
        assert fold not in {i.meta["session"] for i in corpus.items("train") + corpus.items("val")}
        # validation is drawn by dialogue from the training sessions
        dialogs = {i.meta["dialog"] for i in corpus.items("val")}
        assert not dialogs & {i.meta["dialog"] for i in corpus.items("train")}


def test_iemocap_unknown_code_and_missing_wav_are_named(tmp_path):
    dialogs = _dialogs()
    dialogs[2]["Ses02F_impro01"][0] = ("Ses02F_impro01_F000", "zzz")
    root = iemocap_tree(tmp_path / "IEMOCAP", dialogs)
    with pytest.raises(CorpusError, match=r"Ses02F_impro01.txt:3: category code 'zzz'"):
        IEMOCAP(root).items("train")
    (root / "Session3/sentences/wav/Ses03F_impro01/Ses03F_impro01_M001.wav").unlink()
    corpus = IEMOCAP(root, on_bad_item="skip")
    assert corpus.report.summary()["skipped_total"] == 0
    assert len(corpus.items("all")) == 25 - 2
    assert corpus.report.summary()["skipped_total"] == 2
    with pytest.raises(ValueError, match="test_session=6"):
        IEMOCAP(root, test_session=6)


# --------------------------------------------------------------------------------------- RAVDESS
def test_ravdess_labels_actors_and_filters(tmp_path):
    root = tmp_path / "RAVDESS"
    names = {
        "Actor_01/03-01-01-01-01-01-01.wav": ("neutral", "train"),
        "Actor_01/03-01-02-02-01-02-01.wav": ("calm", "train"),
        "Actor_02/03-01-05-01-02-01-02.wav": ("angry", "train"),
        "Actor_21/03-01-06-02-01-01-21.wav": ("fearful", "val"),
        "Actor_23/03-01-08-01-02-02-23.wav": ("surprised", "test"),
        "Actor_24/03-01-07-01-01-01-24.wav": ("disgust", "test"),
        "Actor_24/03-01-03-01-01-01-24.wav": ("happy", "test"),
        "Actor_24/03-01-04-01-01-01-24.wav": ("sad", "test"),
    }
    for name in names:
        write_wav(root / name, rate=48000)
    write_wav(root / "Actor_01/03-02-03-01-01-01-01.wav")  # song: excluded by default
    write_mp4(root / "Actor_01/01-01-03-01-01-01-01.mp4")  # audio-video: excluded by default
    corpus = RAVDESS(root)
    assert summary(corpus) == sorted(
        (Path(n).name, label, split, Path(n).parent.name) for n, (label, split) in names.items()
    )
    assert corpus.items("test")[0].transcript in ("Kids are talking by the door", "Dogs are sitting by the door")
    with_song = RAVDESS(root, channels=["speech", "song"], modalities=["audio-only", "audio-video"])
    assert len(with_song.items("all")) == len(names) + 2


def test_ravdess_bad_file_name_is_named(tmp_path):
    write_wav(tmp_path / "Actor_01/03-01-01-01-01-01-01.wav")
    write_wav(tmp_path / "Actor_01/03-01-09-01-01-01-01.wav")
    with pytest.raises(CorpusError, match=r"03-01-09-01-01-01-01.wav: not a RAVDESS file name: emotion code 09"):
        RAVDESS(tmp_path).items("train")
    corpus = RAVDESS(tmp_path, on_bad_item="skip")
    assert len(corpus.items("all")) == 1 and corpus.report.summary()["skipped_total"] == 1


# ----------------------------------------------------------------------------------------- SAVEE
@pytest.mark.parametrize("flat", [False, True])
def test_savee_prefixes_and_speakers(tmp_path, flat):
    files = {  # file -> (label, split); "sa"/"su" must not be read as "a"
        ("DC", "a01"): ("anger", "train"), ("DC", "sa01"): ("sadness", "train"), ("JE", "su15"): ("surprise", "train"),
        ("JE", "d03"): ("disgust", "train"), ("JK", "f02"): ("fear", "val"), ("KL", "h07"): ("happiness", "test"),
        ("KL", "n30"): ("neutral", "test"),
    }
    root = tmp_path / "AudioData"
    for speaker, stem in files:
        write_wav(root / (f"{speaker}_{stem}.wav" if flat else f"{speaker}/{stem}.wav"))
    (root / "Info.txt").write_text("not audio")
    corpus = SAVEE(root)
    expected = [((f"{s}_{st}.wav" if flat else f"{st}.wav"), label, split, s) for (s, st), (label, split) in files.items()]
    assert summary(corpus) == sorted(expected)


def test_savee_unknown_file_is_named(tmp_path):
    write_wav(tmp_path / "DC" / "a01.wav")
    write_wav(tmp_path / "DC" / "x01.wav")
    with pytest.raises(CorpusError, match=r"x01.wav: not a SAVEE file name"):
        SAVEE(tmp_path).items("train")


# -------------------------------------------------------------------------------------- manifest
def test_manifest_jsonl_and_csv(tmp_path):
    for k in range(6):
        write_wav(tmp_path / "clips" / f"c{k}.flac")
    rows = [
        {"path": "clips/c0.flac", "label": "happy", "split": "train", "speaker": "s1", "transcript": "yay"},
        {"path": str(tmp_path / "clips/c1.flac"), "label": "sad", "split": "dev", "speaker": "s2"},  # absolute; dev = val
        {"path": "clips/c2.flac", "label": "angry", "split": "test", "speaker": "s3"},
    ]
    (tmp_path / "m.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    corpus = ManifestCorpus(tmp_path / "m.jsonl", labels="iemocap4")
    assert summary(corpus) == [("c0.flac", "happy", "train", "s1"), ("c1.flac", "sad", "val", "s2"),
                               ("c2.flac", "angry", "test", "s3")]
    assert corpus.items("train")[0].transcript == "yay"
    (tmp_path / "m.csv").write_text("path,label,speaker\n" + "".join(f"clips/c{k}.flac,{'ab'[k % 2]},spk{k // 2}\n" for k in range(6)))
    corpus = ManifestCorpus(tmp_path / "m.csv", labels=["a", "b"], val_fraction=0.3, test_fraction=0.3)
    items = corpus.items("all")
    assert len(items) == 6
    by_speaker = {}
    for item in items:  # rows without a split are assigned by speaker: no speaker in two splits
        by_speaker.setdefault(item.speaker, set()).add(item.split)
    assert all(len(splits) == 1 for splits in by_speaker.values())
    assert summary(corpus) == summary(ManifestCorpus(tmp_path / "m.csv", labels=["a", "b"], val_fraction=0.3, test_fraction=0.3))


def test_a_moved_manifest_corpus_keeps_its_splits_and_clip_keys(tmp_path):
    """Rows without a split or a speaker are split by their path as written, and every clip is keyed by its
    place in the corpus folder: the same corpus in another folder has the same splits and keys."""
    import shutil

    for k in range(12):
        write_wav(tmp_path / "a" / "clips" / f"c{k}.flac")
    (tmp_path / "a" / "m.csv").write_text("path,label\n" + "".join(f"clips/c{k}.flac,{'ab'[k % 2]}\n" for k in range(12)))
    shutil.copytree(tmp_path / "a", tmp_path / "b" / "deeper")
    seen = []
    for folder in (tmp_path / "a", tmp_path / "b" / "deeper"):
        corpus = ManifestCorpus(folder / "m.csv", labels=["a", "b"], val_fraction=0.3, test_fraction=0.3)
        items = corpus.items("all")
        assert all(i.path.startswith(str(folder)) for i in items)
        seen.append(sorted((i.key, i.split) for i in items))
    assert seen[0] == seen[1]
    assert {key for key, _ in seen[0]} == {f"clips/c{k}.flac" for k in range(12)}
    assert len({split for _, split in seen[0]}) > 1  # the rows are spread over splits: the comparison can fail


def test_manifest_bad_rows_stop_or_are_counted(tmp_path):
    write_wav(tmp_path / "ok.wav")
    (tmp_path / "m.csv").write_text("path,label,split\nok.wav,happy,train\ngone.wav,sad,test\nok.wav,boredom,train\n")
    with pytest.raises(CorpusError, match=r"m.csv:3 .*gone.wav.*audio file not found"):
        ManifestCorpus(tmp_path / "m.csv", labels="iemocap4").items("train")
    corpus = ManifestCorpus(tmp_path / "m.csv", labels="iemocap4", on_bad_item="skip")
    assert [i.label for i in corpus.items("all")] == ["happy"]
    report = corpus.report.summary()
    assert report["skipped"] == {"test": 1, "train": 1} and report["skipped_total"] == 2


# ------------------------------------------------------------------------ audio checked before use
def test_unreadable_or_empty_audio_stops_or_is_counted(tmp_path):
    for name in ("Actor_01/03-01-01-01-01-01-01.wav", "Actor_01/03-01-03-01-01-01-01.wav"):
        write_wav(tmp_path / name)
    (tmp_path / "Actor_01/03-01-04-01-01-01-01.wav").write_bytes(b"RIFF....WAVEjunk")
    (tmp_path / "Actor_01/03-01-05-01-01-01-01.wav").write_bytes(b"")
    strict = RAVDESS(tmp_path)
    with pytest.raises(CorpusError, match=r"03-01-04-01-01-01-01.wav: cannot decode audio"):
        check_items(strict.items("train"), strict.labels, "train", strict.report)
    lenient = RAVDESS(tmp_path, on_bad_item="skip")
    kept = check_items(lenient.items("train"), lenient.labels, "train", lenient.report)
    assert sorted(i.label for i in kept) == ["happy", "neutral"]
    report = lenient.report.summary()
    assert report["skipped"] == {"train": 2}
    assert any("empty" in e for e in report["skipped_examples"])


@pytest.mark.parametrize("lines,error,kept,skipped", [
    # a row listed twice was trained (or scored) twice
    (["a.wav,happy,train", "a.wav,happy,train"], r"a.wav: listed twice in the train split", ["a.wav"], {"train": 1}),
    # a clip in train and in test leaked silently; the first listing keeps it
    (["a.wav,happy,train", "a.wav,happy,test"], r"a.wav: in both the train and the test split", ["a.wav"], {"test": 1}),
    # the same file by another name is the same clip
    (["a.wav,happy,train", "sub/../a.wav,happy,test"], r"in both the train and the test split", ["a.wav"], {"test": 1}),
    # a relative path that leaves the corpus folder was followed
    (["a.wav,happy,train", "../outside.wav,sad,train"], r"m.csv:3: relative path '../outside.wav' leaves the corpus folder",
     ["a.wav"], {"train": 1}),
])
def test_manifest_repeats_leaks_and_escapes_stop_or_are_counted(tmp_path, lines, error, kept, skipped):
    root = tmp_path / "corpus"
    write_wav(root / "a.wav")
    (root / "sub").mkdir()
    write_wav(tmp_path / "outside.wav")
    (root / "m.csv").write_text("path,label,split\n" + "\n".join(lines) + "\n")
    with pytest.raises(CorpusError, match=error):
        ManifestCorpus(root / "m.csv", labels="iemocap4").items("all")
    corpus = ManifestCorpus(root / "m.csv", labels="iemocap4", on_bad_item="skip")
    assert [Path(i.path).name for i in corpus.items("all")] == kept
    assert corpus.report.summary()["skipped"] == skipped


def test_a_manifest_with_a_byte_order_mark_reads_its_header(tmp_path):
    """Spreadsheet exports start with a UTF-8 byte-order mark: the header read '\\ufeffpath'."""
    write_wav(tmp_path / "a.wav")
    (tmp_path / "m.csv").write_text("\ufeffpath,label,split\na.wav,happy,train\n", encoding="utf-8")
    (tmp_path / "m.jsonl").write_text('\ufeff{"path": "a.wav", "label": "sad", "split": "test"}\n', encoding="utf-8")
    assert [(Path(i.path).name, i.label, i.split) for i in ManifestCorpus(tmp_path / "m.csv", labels="iemocap4").items("all")] \
        == [("a.wav", "happy", "train")]
    assert [i.label for i in ManifestCorpus(tmp_path / "m.jsonl", labels="iemocap4").items("all")] == ["sad"]


@pytest.mark.parametrize(
    "fold, test_speakers",
    [(1, {"DC"}), (2, {"JE"}), (3, {"JK"}), (4, {"KL"})],  # EmoBox's leave-one-speaker-out folds, in speaker order
)
def test_savee_folds_leave_one_speaker_out_and_validate_on_the_others(tmp_path, fold, test_speakers):
    root = tmp_path / "AudioData"
    for speaker in ("DC", "JE", "JK", "KL"):
        for n in range(1, 16):
            write_wav(root / speaker / f"a{n:02d}.wav")
    corpus = SAVEE(root, fold=fold, val_fraction=0.3)
    assert {i.speaker for i in corpus.items("test")} == test_speakers and len(corpus.items("test")) == 15
    val, train = corpus.items("val"), corpus.items("train")
    # every other speaker trains; a share of their clips (drawn by file, the same in every run) validates
    assert {i.speaker for i in train} == {"DC", "JE", "JK", "KL"} - test_speakers
    assert 0 < len(val) < len(train) and len(val) + len(train) == 45
    assert [i.path for i in val] == [i.path for i in SAVEE(root, fold=fold, val_fraction=0.3).items("val")]


@pytest.mark.parametrize(
    "fold, test_actors",
    [(1, {1, 2, 3, 4}), (3, {9, 10, 11, 12}), (6, {21, 22, 23, 24})],  # 6 folds of 4 actors
)
def test_ravdess_folds_hold_four_actors_and_all_eight_classes(tmp_path, fold, test_actors):
    root = tmp_path / "RAVDESS"
    for actor in range(1, 25):
        for emotion in range(1, 9):
            write_wav(root / f"Actor_{actor:02d}" / f"03-01-{emotion:02d}-01-01-01-{actor:02d}.wav", rate=8000)
    corpus = RAVDESS(root, fold=fold)
    test = corpus.items("test")
    assert {int(i.speaker[-2:]) for i in test} == test_actors
    assert {i.label for i in test} == set(RAVDESS.labels) and len(test) == 32
    assert not test_actors & {int(i.speaker[-2:]) for i in corpus.items("train") + corpus.items("val")}


def test_fold_numbers_outside_a_corpus_are_refused_by_name(tmp_path):
    with pytest.raises(ValueError, match="dataset.fold=5: SAVEE has folds 1-4"):
        SAVEE(tmp_path, fold=5)
    with pytest.raises(ValueError, match="dataset.fold=7: RAVDESS has folds 1-6"):
        RAVDESS(tmp_path, fold=7)
    with pytest.raises(ValueError, match="dataset.fold=0: IEMOCAP has folds"):
        IEMOCAP(tmp_path, fold=0)


def test_iemocap_fold_is_the_test_session(tmp_path):
    root = iemocap_tree(tmp_path / "IEMOCAP", _dialogs())
    assert {i.meta["session"] for i in IEMOCAP(root, fold=2).items("test")} == {2}


def test_emobox_fold_files_give_exactly_their_clips(tmp_path):
    """EmoBox's metadata: its test list is the test split, its train list train + a validation share; its emotion
    names map onto the corpus's labels (Fear -> fearful), and a name with no counterpart is named."""
    from emorl.data.corpora import EmoBoxFolds

    audio = tmp_path / "EmoBox"
    meta = audio / "data" / "ravdess"
    (meta / "fold_2").mkdir(parents=True)
    (meta / "label_map.json").write_text(json.dumps({"Fearful": "Fear", "Surprised": "Surprise", "Calm": "Calm"}))
    entries = {"train": [("Actor_01/a.wav", "Fearful"), ("Actor_01/b.wav", "Calm"), ("Actor_02/c.wav", "Surprised")] * 1,
               "test": [("Actor_11/d.wav", "Fearful"), ("Actor_11/e.wav", "Calm")]}
    for split, rows in entries.items():
        lines = []
        for name, emo in rows:
            write_wav(audio / "downloads" / name, rate=8000)
            lines.append(json.dumps({"key": f"ravdess-{name}", "wav": f"downloads/{name}", "emo": emo}))
        (meta / "fold_2" / f"ravdess_{split}_fold_2.jsonl").write_text("\n".join(lines) + "\n")
    corpus = EmoBoxFolds(meta, audio_root=audio, fold=2, val_fraction=0.0)
    assert [(Path(i.path).name, i.label) for i in corpus.items("test")] == [("d.wav", "fearful"), ("e.wav", "calm")]
    assert [(Path(i.path).name, i.label) for i in corpus.items("train")] == [
        ("a.wav", "fearful"), ("b.wav", "calm"), ("c.wav", "surprised")]
    with pytest.raises(CorpusError, match="fold_9"):
        EmoBoxFolds(meta, audio_root=audio, fold=9).items("test")
    (meta / "fold_2" / "ravdess_test_fold_2.jsonl").write_text(json.dumps({"key": "x", "wav": "downloads/Actor_11/d.wav",
                                                                         "emo": "Frustrated"}) + "\n")
    with pytest.raises(CorpusError, match="label 'Frustrated' is not in dataset.labels"):
        EmoBoxFolds(meta, audio_root=audio, fold=2).items("test")
