"""Pretrain the embedded base from scratch: ``python -m emorl.pretrain``.

Builds the tiny Qwen2-Audio that ``model=tiny`` loads (``emorl/assets/embedded_base``), as
Qwen2-Audio-7B-Instruct is the pretrained checkpoint the 7B path loads: its tokenizer trained on
the mixture's texts, its weights on the mixture (:mod:`emorl.pretraining.tasks`).  Writes into the
run directory ``init/`` (the untrained model and processor, fixed by the seed), ``checkpoints/
last.ckpt`` (every ``pretrain.every_n_steps`` steps and on SIGTERM; rerunning the command with
``hydra.run.dir=<run dir>`` resumes), ``csv/`` (losses per task, validation WER and emotion
accuracy on the pretraining corpus), and at the end ``model/`` (``save_pretrained``) and
``pretrain.json`` (data, steps, wall time).  ``python -m emorl.pretraining.card <run dir>`` then
scores it zero-shot and publishes it with its model card.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import hydra
import numpy as np
from omegaconf import DictConfig, OmegaConf

from emorl import CONF_DIR

log = logging.getLogger(__name__)


def pretraining_clips(cfg: DictConfig, cache_dir: Path, lexicon=None):
    """The clips the base hears: the experiment corpus's training split and the pretraining corpus's, with
    their measured prosody levels (relative to the speaker's clips; to all the clips of the corpus for the
    attributes ``pretrain.corpus_levels`` names), the speech corpus's (when ``pretrain.speech.clips`` > 0; its
    words from ``lexicon``); and the pretraining corpus's validation clips."""
    from hydra.utils import instantiate

    from emorl.acoustics import ProsodyNorms, measure_items, prosody_cache
    from emorl.data.synthetic import SyntheticCorpus
    from emorl.pretraining.tasks import EXPERIMENT, PRETRAIN, SPEECH, Clip

    among_corpus = corpus_levels(cfg.pretrain.get("corpus_levels"))
    experiment = instantiate(cfg.dataset.corpus)
    pretrain_corpus = SyntheticCorpus(cache_dir / "synthetic", **OmegaConf.to_container(cfg.pretrain.corpus))
    sources = [(EXPERIMENT, experiment, "train"), (PRETRAIN, pretrain_corpus, "train"), (PRETRAIN, pretrain_corpus, "val")]
    clips, val = [], []
    for source, corpus, split in sources:
        items = corpus.items(split)
        if not items:
            continue
        # the file training runs keep too: a clip is measured once, whichever command hears it first
        measured = measure_items(items, prosody_cache(cache_dir, corpus),
                                 workers=int(cfg.pretrain.get("measure_workers", 1)))
        norms = ProsodyNorms.fit([measured[i.path] for i in items], [i.speaker for i in items])
        made = [Clip(i, source, norms.levels(measured[i.path], i.speaker, among_corpus), measured[i.path])
                for i in items]
        (clips if split == "train" else val).extend(made)
    speech = speech_corpus(cfg.pretrain.speech, cache_dir, experiment, pretrain_corpus, lexicon or {})
    if speech is not None:  # asked only what was said: no prosody measured
        clips.extend(Clip(i, SPEECH, {}, {}) for i in speech.items("train"))
    log.info("pretraining clips: %d experiment-corpus training clips, %d pretraining-corpus clips, %d speech-corpus "
             "clips, %d validation clips", sum(c.source == EXPERIMENT for c in clips),
             sum(c.source == PRETRAIN for c in clips), sum(c.source == SPEECH for c in clips), len(val))
    return clips, val


def corpus_levels(names) -> frozenset[str]:
    """``pretrain.corpus_levels`` checked: the prosody attributes whose pretraining levels place a clip among all
    its corpus's clips, not its speaker's (a listener who never heard the voice can only do that; on the default
    corpus's test clips such speed levels agree with the speaker-relative ones the evaluation scores 84% of the
    time, pitch levels 51%: docs/results.md)."""
    from emorl.acoustics import LEVEL_NAMES

    chosen = frozenset(names or ())
    unknown = sorted(chosen - set(LEVEL_NAMES))
    if unknown:
        raise ValueError(f"pretrain.corpus_levels: unknown attributes {unknown}; choose among {sorted(LEVEL_NAMES)}")
    return chosen


def speech_corpus(cfg: DictConfig, cache_dir: Path, experiment, pretrain_corpus, lexicon):
    """The speech corpus ``pretrain.speech`` asks for (None when ``clips`` is 0): the lexicon's words less every
    word of the ``exclude_words`` styles, spoken by the ``voices`` styles' voices and (``experiment_voices``) the
    experiment corpus's training speakers, less every speaker of a validation or test split of either corpus and
    every voice of the ``exclude_voices`` styles."""
    from emorl.data.speech import SpeechCorpus
    from emorl.data.synthetic import get_style

    if int(cfg.clips) <= 0:
        return None
    banned_words = {w for name in cfg.exclude_words for w in style_words(get_style(name))}
    voices = {v: g for name in cfg.voices for v, g in get_style(name).voices.items()}
    if cfg.experiment_voices and hasattr(experiment, "style"):  # an eSpeak corpus: its training voices too
        voices.update({i.speaker: experiment.style.voices[i.speaker] for i in experiment.items("train")})
    unheard = {i.speaker for corpus in (experiment, pretrain_corpus) for split in ("val", "test")
               for i in corpus.items(split)}
    unheard |= {v for name in cfg.exclude_voices for v in get_style(name).voices}
    voices = {v: g for v, g in voices.items() if v not in unheard}
    words = [w for w in lexicon if w not in banned_words]
    return SpeechCorpus(cache_dir / "speech", words, voices, clips=int(cfg.clips), seed=int(cfg.seed))


def style_words(style) -> set[str]:
    """Every word a corpus style's sentences can hold (its frames, topics and key words), lower case."""
    texts = [*style.templates, *style.topics, *(w for words in style.keywords.values() for w in words)]
    return {w.lower() for text in texts for w in text.replace("{kw}", " ").replace("{topic}", " ").split()}


def validation_examples(val_clips, n: int, audio, seed: int, formats=("ir",)):
    """``n`` validation clips of the pretraining corpus, each asked what was said and its emotion in each of
    ``formats`` (reasoning strategy names; the emotion examples' task is ``emotion/<format>``)."""
    from emorl.data.batching import Example
    from emorl.emotions import label_set
    from emorl.pretraining.tasks import TRANSCRIBE_QUESTION
    from emorl.prompts import free_answer_prompt, get_strategy

    rng = np.random.default_rng(seed)
    picked = [val_clips[int(i)] for i in rng.permutation(len(val_clips))[:n]]
    labels, strategies = label_set("meld"), {name: get_strategy(name) for name in formats}
    out = []
    for clip in picked:
        wav = audio(clip.item.path)
        out.append(Example(audio=wav, text=free_answer_prompt(TRANSCRIBE_QUESTION),
                           label=clip.item.transcript, item=clip.item, task="transcribe"))
        out += [Example(audio=wav, text=strategy.prompt(labels), label=clip.item.label, options=labels, item=clip.item,
                        task=f"emotion/{name}") for name, strategy in strategies.items()]
    return out


def pretrain(cfg: DictConfig) -> dict:
    """Build the embedded base; returns its summary (``pretrain.json``)."""
    from emorl.runlock import run_directory_lock

    with run_directory_lock(Path(cfg.paths.output_dir), "emorl.pretrain"):
        return _pretrain(cfg)


def _pretrain(cfg: DictConfig) -> dict:
    import lightning as L

    from emorl.builders import use_threads
    from emorl.checkpointing import check_room_for_checkpoints, exit_on_sigterm, resume_path
    from emorl.pretraining.lexicon import read_lexicon

    use_threads(cfg)
    start, commit = time.time(), git_commit()  # the code that runs: commits made during a long build are not it
    run_dir = Path(cfg.paths.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    resume = resume_path(cfg, run_dir / "checkpoints", run_dir / "config_resolved.yaml")
    lexicon = read_lexicon(cfg.pretrain.lexicon.path)  # a missing lexicon stops the build before any work
    (run_dir / "config_resolved.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    clips, val_clips = pretraining_clips(cfg, Path(cfg.paths.cache_dir), lexicon)
    audio = _audio_cache()
    tasks, model, processor = _untrained_base(cfg, run_dir, clips, audio, lexicon)
    L.seed_everything(int(cfg.seed), workers=True)
    module, data, trainer = _pretraining_run(cfg, run_dir, tasks, model, processor, val_clips, audio)
    # before the first step: last.ckpt and the one written beside it, and the model
    check_room_for_checkpoints(run_dir / "checkpoints", kept=module.state_dict().values(),
                               trainable=model.parameters(), exported=model.state_dict().values(), copies=2)
    with exit_on_sigterm(trainer, run_dir):
        trainer.fit(module, datamodule=data, ckpt_path=resume)
    if not trainer.is_global_zero:
        return {}
    out = run_dir / "model"
    model.save_pretrained(out)
    processor.save_pretrained(out)
    summary = {
        "steps": int(trainer.global_step),
        "examples": int(trainer.global_step) * int(cfg.pretrain.batch_size) * trainer.world_size,
        "processes": trainer.world_size,
        "parameters": sum(p.numel() for p in model.parameters()),
        "train_seconds": round(module.train_seconds, 1),  # every resumption's training steps
        "seconds_this_command": round(time.time() - start, 1),
        "clips": {"experiment_train": sum(c.source == "experiment" for c in clips),
                  "pretrain_train": sum(c.source == "pretrain" for c in clips), "pretrain_val": len(val_clips),
                  "speech_train": sum(c.source == "speech" for c in clips)},
        "lexicon_words": len(lexicon),
        "git_commit": commit,
        "validation": module.last_val,
    }
    (run_dir / "pretrain.json").write_text(json.dumps(summary, indent=2))
    log.info("the embedded base is in %s: %s", out, summary)
    return summary


def _audio_cache():
    """``path -> waveform``, each clip read once."""
    from emorl.data.audio import load_audio

    waveforms: dict[str, np.ndarray] = {}

    def audio(path: str) -> np.ndarray:
        if path not in waveforms:
            waveforms[path] = load_audio(path)
        return waveforms[path]

    return audio


def mixture(cfg: DictConfig, clips, audio, lexicon):
    """The task mixture ``cfg.pretrain`` sets (:class:`emorl.pretraining.tasks.PretrainTasks`) over ``clips``."""
    from emorl.pretraining.tasks import PretrainTasks

    p = OmegaConf.to_container(cfg.pretrain, resolve=True)
    return PretrainTasks(clips, audio, lexicon, p["tasks"], p["formats"], p.get("word_formats"), seed=int(cfg.seed),
                         attributes=p.get("attributes"), task_formats=p.get("task_formats"),
                         speeds=p.get("speeds") or ())


def _untrained_base(cfg: DictConfig, run_dir: Path, clips, audio, lexicon):
    """The task mixture and the untrained model (its tokenizer fitted to the mixture's texts), built once into
    ``<run>/init``: a resumed run loads the same one.  Returns ``(tasks, model, processor)``."""
    from emorl.models.loading import load_backbone
    from emorl.models.tiny import build_tiny_backbone
    from emorl.pretraining.tasks import tokenizer_texts

    tasks = mixture(cfg, clips, audio, lexicon)
    init = run_dir / "init"
    if not (init / "done").exists():
        texts = tokenizer_texts(tasks, int(cfg.pretrain.tokenizer_examples))
        build_tiny_backbone(init, texts, seed=int(cfg.seed), **OmegaConf.to_container(cfg.model.build))
        (init / "done").write_text("ok\n")
    model, processor = load_backbone(init)
    log.info("the base: %.2f M parameters", sum(p.numel() for p in model.parameters()) / 1e6)
    return tasks, model, processor


def _pretraining_run(cfg: DictConfig, run_dir: Path, tasks, model, processor, val_clips, audio):
    """The pretraining module, its data and its trainer (periodic and SIGTERM checkpoints, settings inside them)."""
    from lightning.pytorch.loggers import CSVLogger

    from emorl.checkpointing import (
        CheckpointOnSigterm,
        LogStepsAcrossResumes,
        PeriodicCheckpoint,
        SettingsInCheckpoint,
        run_settings,
        use_atomic_checkpoints,
    )
    from emorl.data.batching import Collator
    from emorl.models.loading import end_token_ids, suppressed_token_ids
    from emorl.modules.pretrain import PretrainModule
    from emorl.modules.pretrain_data import MixtureData

    p = cfg.pretrain
    module = PretrainModule(model, processor, lr=p.lr, weight_decay=p.weight_decay, warmup_steps=p.warmup_steps,
                            min_lr_ratio=p.min_lr_ratio, max_new_tokens=p.max_new_tokens,
                            suppress_ids=suppressed_token_ids(processor), end_ids=end_token_ids(model, processor))
    data = MixtureData(tasks, Collator(processor), batch_size=int(p.batch_size), steps=int(p.steps),
                       val_examples=validation_examples(val_clips, int(p.val_clips), audio, int(cfg.seed),
                                                     formats=tuple(p.val_formats)))
    last = run_dir / "checkpoints" / "last.ckpt"
    trainer = hydra.utils.instantiate(
        # each attempt its own csv/version_<n> (Lightning's CSV logger empties a folder it finds a log in);
        # emorl.runs.read_log joins them
        cfg.trainer, logger=CSVLogger(run_dir, name="csv"),
        callbacks=[SettingsInCheckpoint(run_settings(cfg)), PeriodicCheckpoint(last, int(p.every_n_steps)),
                   CheckpointOnSigterm(last), LogStepsAcrossResumes()])
    use_atomic_checkpoints(trainer)
    return module, data, trainer


def git_commit() -> str | None:
    """The commit of the code that ran (None outside a git checkout)."""
    from emorl.pretraining.card import git_commit as commit_of

    return commit_of(Path(__file__).parent)


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="pretrain")
def main(cfg: DictConfig) -> None:
    pretrain(cfg)


if __name__ == "__main__":
    main()
