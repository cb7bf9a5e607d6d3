"""The synthetic corpus and the data module: deterministic, split by speaker, checked early."""

from __future__ import annotations

import itertools
import json
from collections import Counter
from dataclasses import replace

import numpy as np
import pytest
import soundfile as sf

from emorl.data.checks import check_items
from emorl.data.corpus import Item, read_built_manifest, read_manifest, write_manifest
from emorl.data.synthetic import KEYWORDS, SyntheticCorpus, level


def test_corpus_is_split_by_speaker_and_balanced(small_corpus):
    splits = {s: small_corpus.items(s) for s in ("train", "val", "test")}
    speakers = {s: {i.speaker for i in items} for s, items in splits.items()}
    assert not speakers["train"] & speakers["test"]
    assert not speakers["train"] & speakers["val"]
    assert not speakers["val"] & speakers["test"]
    assert Counter(i.label for i in splits["train"]) == {label: 6 for label in small_corpus.labels}
    assert Counter(i.label for i in splits["test"]) == {label: 2 for label in small_corpus.labels}


def test_corpus_is_deterministic_by_seed(tmp_path):
    a = SyntheticCorpus(tmp_path / "a", train_per_class=2, val_per_class=1, test_per_class=1, seed=3)
    b = SyntheticCorpus(tmp_path / "b", train_per_class=2, val_per_class=1, test_per_class=1, seed=3)
    c = SyntheticCorpus(tmp_path / "c", train_per_class=2, val_per_class=1, test_per_class=1, seed=4)
    key = lambda corpus: [(i.transcript, i.speaker, i.meta["pitch"]) for i in corpus.items("train")]
    assert key(a) == key(b)
    assert key(a) != key(c)


def test_a_corpus_built_after_other_speech_in_the_same_process_has_the_same_audio(tmp_path):
    """eSpeak's output depends on what its process synthesized before; a corpus must not: the same settings give
    the same audio whatever the process built first."""
    settings = dict(train_per_class=1, val_per_class=1, test_per_class=1, seed=3)
    first = SyntheticCorpus(tmp_path / "a", **settings).items("all")
    SyntheticCorpus(tmp_path / "other", **{**settings, "seed": 4}).prepare()  # other speech in between
    again = SyntheticCorpus(tmp_path / "b", **settings).items("all")
    assert [i.transcript for i in first] == [i.transcript for i in again]
    for x, y in zip(first, again, strict=True):
        assert sf.read(x.path)[0].tobytes() == sf.read(y.path)[0].tobytes(), x.transcript


def test_a_fresh_process_returns_the_result_and_raises_the_error_of_the_call(tmp_path):
    import subprocess
    import sys

    from emorl.data.tts import in_fresh_process

    assert in_fresh_process(divmod, 7, 2) == (3, 1)
    with pytest.raises(ValueError, match="invalid literal"):  # the call's own exception, raised here
        in_fresh_process(int, "seven")
    script = tmp_path / "unguarded.py"  # a script with no main guard (multiprocessing's spawn would run it again)
    script.write_text("from emorl.data.tts import in_fresh_process\nprint(in_fresh_process(divmod, 9, 4))\n")
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert run.stdout.strip() == "(2, 1)", run.stderr[-2000:]


def test_a_folder_is_built_once_and_a_failed_move_into_place_is_not_silent(tmp_path):
    from emorl.data.corpus import build_once

    calls = []

    def build(out):
        calls.append(out)
        (out / "data.txt").write_text("x")

    assert (build_once(tmp_path / "c", build) / "data.txt").read_text() == "x"
    build_once(tmp_path / "c", build)
    assert len(calls) == 1  # the second call finds it done
    stale = tmp_path / "stale"  # a half-built folder left by a killed run: the new one cannot take its place
    stale.mkdir()
    (stale / "partial.flac").write_text("")
    with pytest.raises(OSError):
        build_once(stale, build)


def test_words_and_prosody_carry_emotion_with_a_set_share_of_neutral_or_contradicting_words(tmp_path):
    corpus = SyntheticCorpus(
        tmp_path, train_per_class=40, val_per_class=1, test_per_class=1, p_neutral_words=0.3, p_contradicting_words=0.2
    )
    items = corpus.items("train")
    words = Counter(i.meta["words"] for i in items)
    assert 0.2 < words["neutral"] / len(items) < 0.4
    assert 0.1 < words["contradicting"] / len(items) < 0.3
    for item in items:
        keyword = item.meta["keywords"][0]
        assert keyword in item.transcript.split()
        if item.meta["words"] == "matching":
            assert keyword in KEYWORDS[item.label]
        elif item.meta["words"] == "contradicting":
            assert keyword not in KEYWORDS[item.label] and keyword not in KEYWORDS["neutral"]
    # prosody follows the class: sad speech is slow and low, fear is high and fast
    sad = [i for i in items if i.label == "sadness"]
    fear = [i for i in items if i.label == "fear"]
    assert Counter(i.meta["speed"] for i in sad).most_common(1)[0][0] == "slow"
    assert Counter(i.meta["pitch"] for i in fear).most_common(1)[0][0] == "high"


@pytest.mark.parametrize("attribute,value,expected", [
    ("speed", 100, "slow"), ("speed", 160, "medium"), ("speed", 220, "fast"),
    ("pitch", 20, "low"), ("pitch", 90, "high"), ("volume", 60, "quiet"), ("volume", 190, "loud"),
])
def test_prosody_levels(attribute, value, expected):
    assert level(attribute, value) == expected


def test_manifest_label_outside_the_set_names_file_and_line(tmp_path, small_corpus):
    item = small_corpus.items("test")[0]
    line = json.dumps({**item.__dict__, "label": "boredom"})
    (tmp_path / "m.jsonl").write_text(json.dumps(item.__dict__) + "\n" + line + "\n")
    with pytest.raises(ValueError, match=r"m.jsonl:2: label 'boredom'"):
        read_manifest(tmp_path / "m.jsonl", small_corpus.labels)


def test_bad_audio_in_a_split_stops_before_training(tmp_path, small_corpus):
    items = small_corpus.items("val")
    broken = tmp_path / "broken.flac"
    broken.write_bytes(b"not audio at all")
    with pytest.raises(ValueError, match="broken.flac"):
        check_items([*items, replace(items[0], path=str(broken))], small_corpus.labels, "val")
    with pytest.raises(ValueError, match="the val split is empty"):
        check_items([], small_corpus.labels, "val")
    with pytest.raises(ValueError, match="'boredom' is not in the label set"):
        check_items([replace(items[0], label="boredom")], small_corpus.labels, "val")


def test_shuffled_options_are_fixed_per_item_and_vary_between_items(small_corpus):
    from emorl.data.batching import EmotionQuestions
    from emorl.prompts import get_strategy

    items = small_corpus.items("train")
    ds = EmotionQuestions(items, get_strategy("ir"), small_corpus.labels, shuffle_options=True, seed=0)
    again = EmotionQuestions(items, get_strategy("ir"), small_corpus.labels, shuffle_options=True, seed=0)
    orders = [ds.options(i) for i in items]
    assert orders == [again.options(i) for i in items]
    assert len(set(orders)) > len(items) // 2
    assert all(sorted(o) == sorted(small_corpus.labels) for o in orders)
    example = ds[0]
    assert f"Options: {', '.join(example.options)}." in example.text
    fixed = EmotionQuestions(items, get_strategy("ir"), small_corpus.labels, shuffle_options=False)
    assert {fixed.options(i) for i in items} == {tuple(small_corpus.labels)}


def test_every_style_voice_exists_in_espeak():
    """eSpeak silently falls back to its base voice for an unknown variant: every name must be a real file."""
    from pathlib import Path

    import espeakng_loader

    from emorl.data.synthetic import STYLES

    variants = Path(espeakng_loader.get_data_path()) / "voices" / "!v"
    for style in STYLES.values():
        for voice in style.voices:
            assert (variants / voice.split("+")[1]).is_file(), voice


def test_pretraining_and_heldout_corpora_share_no_sentence_word_or_voice_with_the_default():
    from emorl.data.synthetic import STYLES

    default = STYLES["default"]
    words = lambda style: {w for ws in style.keywords.values() for w in ws}  # noqa: E731
    for name in ("pretrain", "heldout"):
        other = STYLES[name]
        assert not set(other.templates) & set(default.templates), name
        assert not set(other.topics) & set(default.topics), name
        assert not words(other) & words(default), name
        assert not set(other.voices) & set(default.voices), name
    assert not words(STYLES["pretrain"]) & words(STYLES["heldout"])
    assert not set(STYLES["pretrain"].voices) & set(STYLES["heldout"].voices)


def test_the_many_voices_pretraining_style_shares_no_voice_variant_or_accent_with_the_evaluated_corpora():
    """Its voices are new to the base *and* to the corpora it is tested on: no variant of the default corpus
    (whose test speakers are drawn from all of its voices) or the held-out one in any accent, no held-out accent."""
    from emorl.data.synthetic import STYLES

    wide, pretrain = STYLES["pretrain_voices"], STYLES["pretrain"]
    variant, accent = (lambda v: v.split("+")[1]), (lambda v: v.split("+")[0])  # noqa: E731
    assert {variant(v) for v in wide.voices}.isdisjoint(variant(v) for name in ("default", "heldout") for v in STYLES[name].voices)
    assert {accent(v) for v in wide.voices}.isdisjoint(accent(v) for v in STYLES["heldout"].voices)
    assert set(pretrain.voices) < set(wide.voices) and len(wide.voices) >= 3 * len(pretrain.voices)
    # the same sentences, key words and prosody as the pretraining style: only the speakers change
    assert replace(wide, voices=pretrain.voices) == pretrain
    assert set(wide.voices.values()) == {"male", "female"}


@pytest.mark.parametrize("style,pull,offset", [
    ("default", 0.0, (0, 0, 0, 0)),      # the class profiles as given
    ("pretrain", 0.3, (-6, 4, -4, 6)),   # less exaggerated (30% toward neutral) and shifted
])
def test_style_prosody_profiles(style, pull, offset):
    import numpy as np

    from emorl.data.synthetic import PROSODY_PROFILES, STYLES

    for label, own in PROSODY_PROFILES.items():
        expected = np.add(own, np.multiply(pull, np.subtract(PROSODY_PROFILES["neutral"], own))) + offset
        assert np.allclose(STYLES[style].profile(label), expected)


def test_a_test_only_corpus_has_every_clip_in_its_test_split(tmp_path):
    corpus = SyntheticCorpus(tmp_path, style="heldout", train_per_class=0, val_per_class=0, test_per_class=1,
                             val_speakers=0, test_speakers=18)
    assert corpus.items("train") == [] and corpus.items("val") == []
    assert Counter(i.label for i in corpus.items("all")) == dict.fromkeys(corpus.labels, 1)
    with pytest.raises(ValueError, match="val_speakers"):
        SyntheticCorpus(tmp_path, style="heldout", train_per_class=0, val_per_class=1, test_per_class=1, val_speakers=0)


VOICE_HASHES = """
import hashlib
from emorl.data.synthetic import STYLES
from emorl.data.tts import Espeak, Prosody
tts = Espeak()
for style in STYLES.values():
    for voice in style.voices:
        h = hashlib.md5()
        for k in range(3):
            h.update(tts.synthesize(f"we were excited when the concert number {k} started", voice, Prosody(150 + 10 * k, 60, 60, 110)).tobytes())
        print(voice, h.hexdigest())
"""


def test_every_style_voice_speaks_the_same_audio_in_every_process():
    """Some eSpeak variants (f2, f3, f5, Alicia, victor, ...) add noise that differs from process to process:
    a corpus spoken by them could not be rebuilt from its settings on another machine."""
    import subprocess
    import sys

    runs = [subprocess.run([sys.executable, "-c", VOICE_HASHES], capture_output=True, text=True, timeout=300) for _ in range(2)]
    assert all(r.returncode == 0 for r in runs), runs[0].stderr[-2000:]
    first, second = (dict(line.split() for line in r.stdout.splitlines()) for r in runs)
    from emorl.data.synthetic import STYLES

    assert set(first) == {v for style in STYLES.values() for v in style.voices}  # every voice of every style spoke
    assert [v for v in first if first[v] != second[v]] == []


def test_the_cache_key_follows_the_style_content(tmp_path, monkeypatch):
    from emorl.data import synthetic

    before = SyntheticCorpus(tmp_path, style="pretrain").dir
    edited = replace(synthetic.STYLES["pretrain"], templates=("a {kw} {topic}",))
    monkeypatch.setitem(synthetic.STYLES, "pretrain", edited)
    assert SyntheticCorpus(tmp_path, style="pretrain").dir != before  # no stale corpus after editing a style


def test_clips_longer_than_the_model_window_are_counted_per_split(tmp_path, tiny):
    """A 10-minute clip was cut to the model's window (4 s for the tiny model) with nothing said."""
    from emorl.data.corpora import ManifestCorpus
    from emorl.modules.datamodule import EmotionDataModule
    from emorl.prompts import get_strategy

    _, processor = tiny
    for name, seconds in (("short.wav", 1.0), ("long.wav", 6.5), ("t1.wav", 2.0), ("t2.wav", 9.0), ("t3.wav", 4.0)):
        sf.write(str(tmp_path / name), np.zeros(int(seconds * 16000), dtype=np.float32) + 0.01, 16000)
    (tmp_path / "m.csv").write_text("path,label,split\nshort.wav,happy,train\nlong.wav,sad,train\nt1.wav,sad,val\n"
                                    "t2.wav,happy,test\nt3.wav,sad,test\n")
    datamodule = EmotionDataModule(ManifestCorpus(tmp_path / "m.csv", labels="iemocap4"), get_strategy("ir"), batch_size=1)
    for stage in ("fit", "test"):
        datamodule.setup(stage)
    datamodule.use_processor(processor)
    assert datamodule.summary()["truncated"] == {
        "train": {"clips": 1, "of": 2, "window_s": 4.0, "longest_s": 6.5},
        "test": {"clips": 1, "of": 2, "window_s": 4.0, "longest_s": 9.0},  # exactly 4 s is not cut
    }


def test_task_alternation_alternates_emotion_and_description_batches(small_corpus, tiny, cache_dir):
    """algo.task_alternation ("Beyond Classification"): odd batches ask the same kind of clips to be
    described (measured prosody, or the transcript) instead of their emotion."""
    from emorl.acoustics import describe, prosody_cache
    from emorl.modules.datamodule import EmotionDataModule
    from emorl.prompts import get_strategy

    _, processor = tiny
    datamodule = EmotionDataModule(small_corpus, get_strategy("ir"), processor, batch_size=4, targets=True,
                                   task_alternation=True, cache_dir=str(cache_dir))
    datamodule.setup("fit")
    levels = datamodule.prosody_levels(small_corpus.items("train"))
    # kept in the corpus's measurement file, which python -m emorl.acoustics --cuts-from reads too
    kept = json.loads(prosody_cache(cache_dir, small_corpus).read_text())
    assert {i.path for i in small_corpus.items("train")} <= kept.keys()
    batches = list(itertools.islice(datamodule.train_dataloader(), 4))
    for k, batch in enumerate(batches):
        described = [q.startswith(("Describe how", "What does the speaker say")) for q in batch["questions"]]
        assert described == [k % 2 == 1] * 4, k
    answers = {"prosody": 0, "transcript": 0}
    for batch in batches[1::2]:
        texts = processor.tokenizer.batch_decode(
            [row[row != -100] for row in batch["labels"]], skip_special_tokens=True)
        for path, question, text in zip(batch["paths"], batch["questions"], texts, strict=True):
            item = next(i for i in small_corpus.items("train") if i.path == path)
            kind = "prosody" if question.startswith("Describe") else "transcript"
            expected = describe(levels[path]) if kind == "prosody" else item.transcript
            assert text.replace(" ", "").startswith(f"<answer>{expected}</answer>".replace(" ", "")), (text, expected)
            answers[kind] += 1
    assert sum(answers.values()) == 8
    with pytest.raises(ValueError, match="needs algo=sft"):
        EmotionDataModule(small_corpus, get_strategy("ir"), task_alternation=True)


def test_a_built_manifest_is_read_from_the_folder_it_is_found_in(tmp_path):
    """A manifest written where the corpus was built names files there; read from its copy, every clip is the
    copy's own file, keyed by its place in the copy, and nothing else of the item changes."""
    built = Item(path="/where/it/was/built/audio/clip_7.wav", label="joy", key="elsewhere/clip_7.wav",
                 speaker="s1", split="test", transcript="I am glad", meta={"keyword": "glad"})
    folder = tmp_path / "copy"
    (folder / "audio").mkdir(parents=True)
    write_manifest([built], folder / "test.jsonl")
    (item,) = read_built_manifest(folder, "test", ("joy", "anger"))
    assert item.path == str(folder / "audio" / "clip_7.wav")
    assert item.key == "audio/clip_7.wav"
    assert replace(item, path=built.path, key=built.key) == built
    with pytest.raises(ValueError, match="label 'joy' is not in the label set"):
        read_built_manifest(folder, "test", ("anger",))


def test_a_moved_corpus_asks_the_same_questions(tmp_path, small_corpus):
    """A clip's option order and its description task follow its place in the corpus, not the path the corpus
    was reached by: the same cache copied elsewhere (another EMORL_CACHE, a bind mount, another temporary folder)
    trains on the same prompts."""
    import shutil

    from emorl.data.batching import EmotionQuestions, description_task
    from emorl.prompts import get_strategy

    here = small_corpus.items("train")
    moved_root = tmp_path / "elsewhere" / "synthetic"
    shutil.copytree(small_corpus.dir, moved_root / small_corpus.dir.name)
    moved = SyntheticCorpus(moved_root, train_per_class=6, val_per_class=2, test_per_class=2)
    assert moved.dir != small_corpus.dir
    there = moved.items("train")
    assert [i.path for i in there] != [i.path for i in here]
    assert all(i.path.startswith(str(moved.dir)) for i in there)  # the moved copy's own files, not the old place's
    labels = small_corpus.labels
    ask = lambda items: [EmotionQuestions(items, get_strategy("ir"), labels, shuffle_options=True, seed=3).options(i)
                         for i in items]
    assert ask(there) == ask(here)
    levels = {"pitch": "high", "speed": "fast", "volume": "loud", "intonation": "lively"}
    kinds = lambda items: [description_task(get_strategy("ir"), i, levels)[0] for i in items]
    assert kinds(there) == kinds(here)
    assert len(set(kinds(here))) == 2  # both kinds of description occur: the comparison can fail
