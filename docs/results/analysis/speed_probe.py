"""Does a base's frozen audio tower hold a clip's speaking rate?  A ridge probe, as a diagnosis of speed hearing.

    python docs/results/analysis/speed_probe.py --model emorl/assets/embedded_base --cache .cache

Encodes the default corpus's training and test clips with the model's audio tower (last layer, mean and standard
deviation over time), fits a ridge regression from those features to the measured log syllable rate on the
training clips, and on the test clips prints the probe's correlation with the measured rate and how often the
level its prediction falls in (tertiles of the training split's predictions) equals the clip's level among its
speaker's test clips (what faithfulness scores) and among the training split's measured rates.  The measured
rate placed among the training split's clips is the ceiling of that second figure (an exact listener).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from emorl.acoustics import LEVEL_NAMES, ProsodyNorms, level_of, measure_items, prosody_cache, tertiles
from emorl.data.audio import load_audio
from emorl.data.synthetic import SyntheticCorpus
from emorl.models.loading import load_backbone
from emorl.modules.probe import audio_tower_of, encoder_frames


def tower_features(model, processor, paths, batch: int = 32) -> np.ndarray:
    """(clips, 2 * d_model): the tower's last layer, mean and std over each clip's frames."""
    tower, out = audio_tower_of(model).eval(), []
    for start in range(0, len(paths), batch):
        waves = [load_audio(p) for p in paths[start:start + batch]]
        feats = processor.feature_extractor(waves, sampling_rate=16000, return_attention_mask=True, padding="max_length",
                                            return_tensors="pt")
        with torch.no_grad():
            hidden = tower(feats["input_features"]).last_hidden_state.float()
        lengths = encoder_frames(feats["attention_mask"].sum(-1))
        for h, n in zip(hidden, lengths, strict=True):
            frames = h[: int(n)]
            out.append(torch.cat([frames.mean(0), frames.std(0)]).numpy())
    return np.stack(out)


def probe_figures(x_train: np.ndarray, rate_train: np.ndarray, x_test: np.ndarray, rate_test: np.ndarray,
                  speaker_levels: list[str | None]) -> dict[str, float]:
    """Fit the ridge probe from features (clips, features) to log rates on the training clips; on the test clips:
    ``train_correlation``, ``test_correlation`` (prediction against measured log rate), ``probe_speaker`` and
    ``probe_corpus`` (% of test clips whose predicted level, among tertiles of the training predictions, equals the
    clip's level among its speaker's clips, ``speaker_levels``, and among the training split's measured rates) and
    ``listener_speaker`` (% where the measured rate's training-split level equals the speaker level: the ceiling)."""
    from sklearn.linear_model import RidgeCV

    probe = RidgeCV(alphas=np.logspace(-2, 3, 12)).fit(x_train, rate_train)
    predicted_train, predicted = probe.predict(x_train), probe.predict(x_test)
    names = LEVEL_NAMES["speed"]
    by_corpus = [level_of(r, tertiles(rate_train), names) for r in rate_test]
    probe_levels = [level_of(r, tertiles(predicted_train), names) for r in predicted]
    share = lambda a, b: 100 * float(np.mean([x == y for x, y in zip(a, b, strict=True)]))
    return {"train_correlation": float(np.corrcoef(predicted_train, rate_train)[0, 1]),
            "test_correlation": float(np.corrcoef(predicted, rate_test)[0, 1]),
            "probe_speaker": share(probe_levels, speaker_levels), "probe_corpus": share(probe_levels, by_corpus),
            "listener_speaker": share(by_corpus, speaker_levels)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="emorl/assets/embedded_base")
    parser.add_argument("--cache", default=".cache")
    args = parser.parse_args()
    torch.set_num_threads(1)
    corpus = SyntheticCorpus(Path(args.cache).resolve() / "synthetic")  # measurements are keyed by absolute paths
    train, test = corpus.items("train"), corpus.items("test")
    measured = measure_items([*train, *test], prosody_cache(Path(args.cache).resolve(), corpus), workers=2)
    model, processor = load_backbone(args.model)
    rate_train, rate_test = (np.log([measured[i.path]["syllables_per_s"] for i in items]) for items in (train, test))
    x_train, x_test = tower_features(model, processor, [i.path for i in train]), tower_features(model, processor, [i.path for i in test])
    own = ProsodyNorms.fit([measured[i.path] for i in test], [i.speaker for i in test])
    by_speaker = [own.levels(measured[i.path], i.speaker).get("speed") for i in test]
    f = probe_figures(x_train, rate_train, x_test, rate_test, by_speaker)
    print(f"{args.model}: probe of log syllable rate from the frozen tower, {len(train)} training clips, {len(test)} test clips")
    print(f"  correlation with the measured rate: train {f['train_correlation']:.3f}, test {f['test_correlation']:.3f}")
    print(f"  probe level = speaker level {f['probe_speaker']:.1f}%, = training-split level {f['probe_corpus']:.1f}%; "
          f"exact listener (training-split level) = speaker level {f['listener_speaker']:.1f}%")


if __name__ == "__main__":
    main()
