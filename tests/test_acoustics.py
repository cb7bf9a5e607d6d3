"""Measured prosody: known signals give known measurements; levels are tertiles of a corpus or a speaker."""

from __future__ import annotations

import math

import numpy as np
import pytest

from emorl.acoustics import ProsodyNorms, describe, measure, speaker_blind_agreement

SR = 16000


def glide(f_start: float, f_end: float, seconds: float = 1.5, amplitude: float = 0.3) -> np.ndarray:
    """A harmonic tone whose pitch moves geometrically from ``f_start`` to ``f_end`` Hz."""
    t = np.arange(int(seconds * SR)) / SR
    f = f_start * (f_end / f_start) ** (t / seconds)
    phase = 2 * np.pi * np.cumsum(f) / SR
    return (amplitude * (np.sin(phase) + 0.5 * np.sin(2 * phase) + 0.25 * np.sin(3 * phase)) / 1.75).astype(np.float32)


@pytest.mark.parametrize("signal,expected", [
    # a steady 220 Hz voice: median f0 220, no range, flat
    (glide(220, 220), {"f0_median_hz": (215, 225), "f0_range_st": (0, 0.5), "contour": "flat"}),
    # an octave lower
    (glide(110, 110), {"f0_median_hz": (107, 113), "contour": "flat"}),
    # up an octave in 1.5 s: 12 semitones, rising (8 st/s); the 10-90 percentile range is ~80% of it
    (glide(150, 300), {"f0_range_st": (8, 11), "contour": "rising", "contour_st_per_s": (6, 10)}),
    (glide(300, 150), {"contour": "falling", "contour_st_per_s": (-10, -6)}),
])
def test_measure_reads_pitch_range_and_contour_of_known_tones(signal, expected):
    m = measure(signal, SR)
    for key, want in expected.items():
        if isinstance(want, tuple):
            assert want[0] <= m[key] <= want[1], (key, m[key])
        else:
            assert m[key] == want, (key, m[key])


def test_measure_reads_loudness_and_pauses():
    tone = glide(200, 200, seconds=1.0)
    loud, quiet = measure(tone, SR), measure(0.1 * tone, SR)
    assert loud["energy_db"] - quiet["energy_db"] == pytest.approx(20.0, abs=0.5)  # 10x amplitude = 20 dB
    gapped = np.concatenate([tone[:8000], np.zeros(8000, np.float32), tone[:8000], np.zeros(8000, np.float32)])
    assert measure(gapped, SR)["pause_share"] == pytest.approx(0.5, abs=0.08)
    assert measure(tone, SR)["pause_share"] < 0.05


def syllables(per_second: float, seconds: float = 2.0, depth: float = 0.7) -> np.ndarray:
    """A 180 Hz voice whose loudness rises and falls ``per_second`` times a second (a syllable each), never silent."""
    t = np.arange(int(seconds * SR)) / SR
    envelope = 1.0 - depth * (0.5 + 0.5 * np.cos(2 * np.pi * per_second * t))
    return (envelope * glide(180, 180, seconds=seconds)).astype(np.float32)


@pytest.mark.parametrize("per_second", [
    3.0,  # slow speech
    5.0,  # conversational speech
    7.0,  # fast speech
])
def test_measure_counts_syllables_per_second_of_speech(per_second):
    assert measure(syllables(per_second), SR)["syllables_per_s"] == pytest.approx(per_second, rel=0.15)


def test_pauses_do_not_slow_the_measured_speaking_rate():
    # the same 5 syllables a second with a second of silence after them: rate per second *of speech*
    speech = syllables(5.0)
    paused = np.concatenate([speech, np.zeros(SR, np.float32)])
    assert measure(paused, SR)["syllables_per_s"] == pytest.approx(measure(speech, SR)["syllables_per_s"], rel=0.1)


def test_silence_has_no_pitch():
    m = measure(np.zeros(SR, np.float32) + 1e-4 * np.random.default_rng(0).standard_normal(SR).astype(np.float32), SR)
    assert math.isnan(m["f0_median_hz"]) and m["contour"] == "flat"


def _m(f0, rate, db, st):
    return {"f0_median_hz": f0, "syllables_per_s": rate, "energy_db": db, "f0_range_st": st, "contour": "flat"}


def test_levels_are_tertiles_of_the_corpus_or_of_the_speaker():
    # speaker a speaks low (100-120 Hz), speaker b high (200-240 Hz); 12 clips each
    a = [_m(100 + i * 20 / 11, 3 + i, -30 + i, 2 + i) for i in range(12)]
    b = [_m(200 + i * 40 / 11, 3 + i, -30 + i, 2 + i) for i in range(12)]
    norms = ProsodyNorms.fit(a + b, ["a"] * 12 + ["b"] * 12)
    # corpus-relative: the thirds of all 24 clips (8 of a's low, 8 of b's high)
    assert [norms.levels(m)["pitch"] for m in a + b] == ["low"] * 8 + ["medium"] * 8 + ["high"] * 8
    # speaker-relative: each speaker's own thirds
    assert [norms.levels(m, "a")["pitch"] for m in a] == ["low"] * 4 + ["medium"] * 4 + ["high"] * 4
    assert norms.levels(b[0], "b") == {"pitch": "low", "speed": "slow", "volume": "quiet", "intonation": "flat",
                                       "contour": "flat"}
    # a speaker with too few clips falls back to the corpus's cuts
    assert norms.levels(b[-1], "unknown")["pitch"] == "high" and norms.levels(a[0], "unknown")["pitch"] == "low"
    assert ProsodyNorms.from_json(norms.to_json()) == norms


@pytest.mark.parametrize("speaker, among_corpus, expected", [
    # both among speaker b's own clips: its fourth-lowest pitch and rate are low and slow for b
    ("b", (), {"pitch": "low", "speed": "slow"}),
    # pitch among every clip: b's voice is higher than a's, so the same clip is medium
    ("b", ("pitch",), {"pitch": "medium", "speed": "slow"}),
    # speed among every clip: b talks faster than a, so 12 syllables/s is medium; pitch stays b's low
    ("b", ("speed",), {"pitch": "low", "speed": "medium"}),
    # both among every clip
    ("b", ("pitch", "speed"), {"pitch": "medium", "speed": "medium"}),
    # a speaker with no cuts of its own: every attribute among the corpus, whatever among_corpus names
    ("unknown", (), {"pitch": "medium", "speed": "medium"}),
])
def test_chosen_attributes_are_placed_among_the_corpus_others_among_the_speakers_clips(speaker, among_corpus,
                                                                                     expected):
    a = [_m(100 + i * 20 / 11, 3 + i, -30 + i, 2 + i) for i in range(12)]  # a low voice, 3-14 syllables/s
    b = [_m(200 + i * 40 / 11, 9 + i, -30 + i, 2 + i) for i in range(12)]  # a high voice, 9-20 syllables/s
    norms = ProsodyNorms.fit(a + b, ["a"] * 12 + ["b"] * 12)
    levels = norms.levels(b[3], speaker, among_corpus)
    assert {k: levels[k] for k in expected} == expected


def test_describe_uses_the_reasoning_wording():
    assert describe({"pitch": "low", "speed": "fast", "volume": "loud", "intonation": "flat", "contour": "falling"}) == \
        "pitch low, intonation flat, speed fast, volume loud, falling contour"


def test_a_cache_written_by_an_older_measure_is_measured_again(tmp_path):
    import json
    from types import SimpleNamespace

    import soundfile as sf

    from emorl.acoustics import measure_items

    clip = tmp_path / "clip.wav"
    sf.write(clip, syllables(5.0), SR)
    cache = tmp_path / "prosody.json"
    # what an earlier emorl wrote: the onset rate, no syllable rate
    cache.write_text(json.dumps({str(clip): {"f0_median_hz": 1.0, "rate_per_s": 9.0, "energy_db": -1.0, "f0_range_st": 1.0}}))
    measured = measure_items([SimpleNamespace(path=str(clip))], cache)[str(clip)]
    assert measured["syllables_per_s"] == pytest.approx(5.0, rel=0.15) and measured["f0_median_hz"] > 100
    assert "syllables_per_s" in json.loads(cache.read_text())[str(clip)]  # the cache holds the new measurement


def _written_clips(tmp_path, rates):
    """One wav per syllable rate in ``rates``, as corpus items (``path``)."""
    from types import SimpleNamespace

    import soundfile as sf

    items = []
    for k, rate in enumerate(rates):
        path = tmp_path / f"clip{k}.wav"
        sf.write(path, syllables(rate), SR)
        items.append(SimpleNamespace(path=str(path)))
    return items


def test_measuring_in_two_processes_gives_each_clip_the_measurement_of_one_process(tmp_path):
    from emorl.acoustics import measure_items

    items = _written_clips(tmp_path, [3.0, 5.0, 7.0])
    one = measure_items(items, workers=1)
    two = measure_items(items, tmp_path / "prosody.json", workers=2)
    assert list(two) == [i.path for i in items]
    for item in items:  # the same function on the same samples: the same numbers, clip by clip (not shuffled)
        numbers = {k: v for k, v in one[item.path].items() if not isinstance(v, str)}
        assert {k: two[item.path][k] for k in numbers} == pytest.approx(numbers, rel=1e-9, nan_ok=True)
        assert two[item.path]["contour"] == one[item.path]["contour"]
    assert [round(two[i.path]["syllables_per_s"]) for i in items] == [3, 5, 7]


def test_an_interrupted_measurement_keeps_what_it_measured(tmp_path, monkeypatch):
    import json

    import emorl.acoustics as acoustics

    items = _written_clips(tmp_path, [3.0, 5.0, 7.0])
    real, calls = acoustics.measure, []

    def fails_on_the_third(wav, sr=SR):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(wav, sr)

    monkeypatch.setattr(acoustics, "measure", fails_on_the_third)
    cache = tmp_path / "prosody.json"
    with pytest.raises(KeyboardInterrupt):
        acoustics.measure_items(items, cache, save_every=2)
    assert sorted(json.loads(cache.read_text())) == [items[0].path, items[1].path]  # written before the failure
    monkeypatch.setattr(acoustics, "measure", real)
    calls.clear()
    acoustics.measure_items(items, cache)  # the rerun measures only the clip that was left
    assert sorted(json.loads(cache.read_text())) == sorted(i.path for i in items)


def test_two_commands_measuring_one_corpus_at_once_keep_both_their_measurements(tmp_path, monkeypatch):
    """Two commands measure different clips into one corpus's file at once (two evaluations side by side): the file
    ends with every clip either measured, not only the last writer's."""
    import json

    import emorl.acoustics as acoustics

    items = _written_clips(tmp_path, [3.0, 5.0, 7.0, 4.0])
    cache = tmp_path / "prosody.json"
    real, other_ran = acoustics.measure, []

    def the_other_command_writes_meanwhile(wav, sr=SR):
        if not other_ran:  # while this command measures its first clip, the other measures and writes its two
            other_ran.append(1)
            acoustics.measure_items(items[2:], cache)
            assert sorted(json.loads(cache.read_text())) == sorted(i.path for i in items[2:])
        return real(wav, sr)

    monkeypatch.setattr(acoustics, "measure", the_other_command_writes_meanwhile)
    mine = acoustics.measure_items(items[:2], cache)
    assert sorted(mine) == sorted(i.path for i in items[:2])
    assert sorted(json.loads(cache.read_text())) == sorted(i.path for i in items)


def _clips(pitches):
    """Measurements whose pitch is ``pitches`` and whose other attributes are 1..12 over and over."""
    return [{"f0_median_hz": float(p), "syllables_per_s": float(k % 12 + 1), "energy_db": float(k % 12 + 1),
             "f0_range_st": float(k % 12 + 1)} for k, p in enumerate(pitches)]


@pytest.mark.parametrize("pitch_a,pitch_b,pitch_agreement", [
    # two voices of one pitch range: a listener who ignores the speaker judges every clip as its speaker does
    (range(1, 13), range(1, 13), 1.0),
    # a low and a high voice: corpus cuts 8.67 and 104.33, each voice's own cuts a third of its range; the low
    # voice's medium and high clips sound low and medium to the blind listener, the high voice's low and medium
    # ones medium and high: only its lowest and highest four clips agree, 8 of 24
    (range(1, 13), range(101, 113), 1 / 3),
])
def test_a_listener_who_does_not_know_the_speaker_misjudges_a_voice_of_another_range(pitch_a, pitch_b,
                                                                                      pitch_agreement):
    measurements = _clips([*pitch_a, *pitch_b])
    speakers = ["a"] * 12 + ["b"] * 12
    scores = speaker_blind_agreement(measurements, speakers, ProsodyNorms.fit(measurements, speakers))
    assert scores["pitch"] == pytest.approx(pitch_agreement)
    assert scores["speed"] == scores["volume"] == scores["intonation"] == pytest.approx(1.0)  # the same for both


def test_a_listener_may_place_clips_among_the_cuts_of_other_clips():
    measurements = _clips([*range(1, 13), *range(1, 13)])  # two voices of one pitch range
    speakers = ["a"] * 12 + ["b"] * 12
    norms = ProsodyNorms.fit(measurements, speakers)
    # a listener who learned the pitch of voices a whole range higher calls every clip low: a third agrees
    heard = ProsodyNorms.fit(_clips([*range(101, 113), *range(101, 113)]))
    assert speaker_blind_agreement(measurements, speakers, norms, heard)["pitch"] == pytest.approx(1 / 3)
    assert speaker_blind_agreement(measurements, speakers, norms)["pitch"] == pytest.approx(1.0)  # its own cuts
