"""The evaluation layer: a model answers a corpus's questions, scored as every entry point scores them.

:func:`evaluate_run` is what ``emorl.evaluate`` runs (a checkpoint, or the untuned base, on any corpus, with
the label mapping of a cross-corpus test); :func:`evaluate_cross_corpus` runs it for each corpus of
``eval.cross_corpus`` after a training run (the paper's Table 2).  The metrics beyond UA / WA / F1 that
reasoning allows: prosody faithfulness, the words heard (transcript WER, key-word accuracy), and accuracy
on prosody questions.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from omegaconf import DictConfig, open_dict

log = logging.getLogger(__name__)


def evaluate_run(cfg: DictConfig) -> dict:
    """Test metrics of ``cfg.ckpt`` (or of the configured starting model) on ``cfg.dataset``, written into
    ``cfg.paths.output_dir`` (``metrics.json``, ``predictions.jsonl``, a confusion matrix); returns the metrics."""
    from hydra.utils import instantiate

    from emorl.builders import check_run_settings, checkpoint_strategy, use_threads
    from emorl.checkpointing import read_model_info

    check_run_settings(cfg, training=False)
    use_threads(cfg)
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    info = read_model_info(_model_dir(cfg)) if cfg.get("ckpt") else {}
    strategy = checkpoint_strategy(cfg, info)
    corpus, mapping = _test_corpus(cfg, info)
    datamodule = instantiate(cfg.data, _partial_=True)(corpus=corpus, strategy=strategy)
    datamodule.setup("test")  # the split's labels and audio are checked before any model is loaded
    model, processor, module = _evaluation_module(cfg, info, corpus, strategy, out)
    datamodule.use_processor(processor)
    trainer = instantiate(cfg.trainer, logger=False, enable_checkpointing=False)
    trainer.test(module, datamodule=datamodule, verbose=False)
    result = {**module.eval_results["test"], **_reasoning_scores(cfg, info, strategy, datamodule, module, model, processor)}
    metrics = {
        "ckpt": str(cfg.get("ckpt")),
        "dataset": cfg.dataset.name,
        "split": datamodule.test_split,
        "reasoning": strategy.name,
        "labels": list(corpus.labels),
        "label_mapping": mapping,
        "test": result,
        "data": datamodule.summary(),
    }
    if trainer.is_global_zero:  # every process holds the whole split's answers; one writes them
        _write_evaluation(out, metrics, module.eval_records, corpus.labels, f"{cfg.dataset.name} test")
    return metrics


def _model_dir(cfg: DictConfig) -> Path:
    from emorl.builders import model_dir

    return model_dir(cfg.ckpt)


def _test_corpus(cfg: DictConfig, info: dict):
    """The corpus to score and, for a model trained on other labels, its labels mapped onto the model's
    (``(corpus, mapping or None)``)."""
    from hydra.utils import instantiate

    from emorl.data.corpus import RelabeledCorpus
    from emorl.emotions import cross_corpus_mapping, label_set

    corpus = instantiate(cfg.dataset.corpus)
    trained = cfg.eval.get("trained_labels") or info.get("labels")
    if not trained:
        return corpus, None
    trained = label_set(trained if isinstance(trained, str) else list(trained))
    mapping = cross_corpus_mapping(corpus.labels, trained)
    merged = {k: v for k, v in mapping.items() if k != v}
    log.info("labels of %s for a model trained on %s: %s", corpus.name, list(trained),
             ", ".join(f"{k} -> {v}" for k, v in merged.items()) or "no label mapped")
    return (RelabeledCorpus(corpus, mapping) if merged else corpus), mapping


def _evaluation_module(cfg: DictConfig, info: dict, corpus, strategy, out: Path):
    """The model to score and its evaluation module: a run's export, restored by the module class that exported
    it (the probe: the frozen encoder and its head), or the configured starting model's greedy answers."""
    from emorl.builders import build_module, load_checkpoint, module_arguments, resolve_model_path
    from emorl.models.loading import load_backbone

    if cfg.get("ckpt"):
        model, processor = load_checkpoint(cfg.ckpt, cfg.model.dtype)
        model.eval()
        arguments = module_arguments(cfg, model, processor, strategy, corpus.labels, out, train=False)
        return model, processor, exported_module_class(info).restore(_model_dir(cfg), **arguments)
    model, processor = load_backbone(resolve_model_path(cfg, corpus, strategy), cfg.model.dtype)
    model.eval()
    return model, processor, build_module(cfg, model, processor, strategy, corpus.labels, out, train=False)


def _reasoning_scores(cfg: DictConfig, info: dict, strategy, datamodule, module, model, processor) -> dict:
    """What the answers' reasoning gets right beside the label: prosody faithfulness (a prosody section), the
    words heard (transcript and key-word sections), and the prosody questions' accuracy (``eval.prosody_tasks``)."""
    tags = {sec.tag for sec in strategy.sections}
    scores = {}
    if switched_on(cfg.eval.get("faithfulness", "auto"), auto="prosody" in tags):
        scores.update(prosody_faithfulness(datamodule, module.eval_records))
    if {"transcript", "keywords"} <= tags:
        scores.update(words_heard(datamodule, module.eval_records))
    if switched_on(cfg.eval.get("prosody_tasks", "auto"), auto=bool(info.get("evaluation", {}).get("prosody_tasks"))):
        scores["prosody_tasks"] = prosody_task_accuracy(model, processor, datamodule, strategy, int(cfg.data.eval_batch_size))
    return scores


def _write_evaluation(out: Path, metrics: dict, records: list[dict], labels, title: str) -> None:
    from emorl.metrics import plot_confusion
    from emorl.results import write_json_atomic, write_jsonl_atomic

    write_json_atomic(out / "metrics.json", metrics)
    if metrics["label_mapping"]:
        write_json_atomic(out / "label_mapping.json", metrics["label_mapping"])
    write_jsonl_atomic(out / "predictions.jsonl", records)
    result = metrics["test"]
    plot_confusion(result["confusion"], labels, out / "confusion_test.png", title=title)
    log.info("test UA %.4f WA %.4f F1 %.4f unparsed %.4f -> %s",
             result["ua"], result["wa"], result["f1"], result["unparsed_rate"], out / "metrics.json")


def exported_module_class(info: dict) -> type:
    """The :class:`~emorl.modules.base.EmotionModule` class named by an exported model's ``emorl.json``
    (``module``; a model exported without one: the generative default)."""
    from hydra.utils import get_class

    from emorl.modules.base import EmotionModule

    name = info.get("module", "emorl.modules.base.EmotionModule")
    cls = get_class(name)
    if not (isinstance(cls, type) and issubclass(cls, EmotionModule)):
        raise ValueError(f"emorl.json names module {name!r}, which is not an emorl EmotionModule: re-export the model")
    return cls


def switched_on(setting, auto: bool) -> bool:
    """An ``eval`` switch: true, false, or ``auto`` (on where ``auto`` holds).

    >>> switched_on("auto", True), switched_on("auto", False), switched_on(True, False), switched_on(False, True)
    (True, False, True, False)
    """
    return setting is True or (setting == "auto" and auto)


def prosody_faithfulness(datamodule, records: list[dict]) -> dict:
    """The faithfulness of the evaluated answers' ``<prosody>`` claims to the clips' measured prosody."""
    from emorl.rewards.grounding import faithfulness

    items = datamodule.dataset(datamodule.test_split).items
    levels = datamodule.prosody_levels(items)
    out = faithfulness([r["text"] for r in records], [levels.get(r["path"]) for r in records])
    log.info("faithfulness of the prosody claims: %s (%d claims; %.0f%% of answers claim); by attribute %s",
             "n/a" if out["faithfulness"] is None else f"{out['faithfulness']:.3f}", out["prosody_claims"],
             100 * out["claiming"], {a: round(v, 3) for a, v in out["faithfulness_by_attribute"].items()})
    return out


def words_heard(datamodule, records: list[dict]) -> dict:
    """The evaluated ESR answers' transcript WER and key-word accuracy against the corpus's transcripts and key words."""
    from emorl.rewards.grounding import heard

    items = {i.path: i for i in datamodule.dataset(datamodule.test_split).items}
    out = heard([r["text"] for r in records], [items[r["path"]].transcript for r in records],
                [(items[r["path"]].meta or {}).get("keywords") or [] for r in records])
    log.info("words heard: transcript WER %s, key-word accuracy %s (%d answers)",
             "n/a" if out["transcript_wer"] is None else f"{out['transcript_wer']:.3f}",
             "n/a" if out["keyword_accuracy"] is None else f"{out['keyword_accuracy']:.3f}", out["clips"])
    return out


@torch.no_grad()
def prosody_task_accuracy(model, processor, datamodule, strategy, batch_size: int, max_new_tokens: int = 16) -> dict:
    """Greedy accuracy of ``model`` on prosody questions (attribute levels, two-clip comparisons) about the
    test split's clips, built from their measured prosody as ``algo=prosody_sft`` builds its training questions."""
    from dataclasses import replace

    from emorl import rollout
    from emorl.data.prosody_tasks import ProsodyQuestions, prosody_task_scores
    from emorl.models.loading import end_token_ids, suppressed_token_ids

    items = datamodule.dataset(datamodule.test_split).items
    levels = datamodule.prosody_levels(items)
    questions = ProsodyQuestions(items, levels, datamodule.measurements, answer_tag=strategy.answer_tag,
                                 comparison_share=datamodule.comparison_share, seed=datamodule.options_seed)
    tasks, answers = [questions.task(i) for i in range(len(questions))], []
    device = next(model.parameters()).device
    for start in range(0, len(questions), batch_size):
        asked = [replace(questions[i], target=None) for i in range(start, min(start + batch_size, len(questions)))]
        batch = datamodule.collate(asked)  # the questions alone: a target would be appended to the prompt
        batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
        ro = rollout.sample(model, processor, batch, num_generations=1, max_new_tokens=max_new_tokens, do_sample=False,
                            share_prompt=False,  # comparisons carry two clips per prompt: plain generate
                            suppress_ids=suppressed_token_ids(processor), end_ids=end_token_ids(model, processor))
        answers += [strategy.extract_answer(text) for text in ro.texts]
    scores = prosody_task_scores(tasks, answers)
    log.info("prosody questions: accuracy %s; answers that are no option %s",
             {k: round(v, 3) for k, v in scores["accuracy"].items()},
             {k: round(v, 3) for k, v in scores["not_an_option"].items() if "/" not in k})
    return scores


def evaluate_cross_corpus(configs: dict[str, DictConfig], world_size: int = 1, base_path: str | None = None
                          ) -> dict[str, dict]:
    """Run each evaluation of :func:`cross_corpus_configs`; a summary per corpus (``error`` where one failed).

    ``base_path``: the model a zero-shot run scored (evaluations without ``ckpt`` load it).  Under several processes
    (DDP, DeepSpeed) nothing runs here: each entry says which ``emorl.evaluate`` command to run.
    """
    results: dict[str, dict] = {}
    for name, evaluation in configs.items():
        if evaluation.ckpt is None and base_path:  # zero-shot: the run's own starting model, wherever the corpus
            with open_dict(evaluation):
                evaluation.model.pretrained = str(base_path)
        command = (f"python -m emorl.evaluate ckpt={evaluation.ckpt} dataset={name} data.test_split=all "
                   f"hydra.run.dir={evaluation.paths.output_dir}")
        if world_size > 1:
            log.warning("cross-corpus evaluation on %s is left to a single process: %s", name, command)
            results[name] = {"not_run": f"{world_size} processes; run: {command}"}
            continue
        try:
            test = evaluate_run(evaluation)["test"]
        except Exception as error:
            log.error("cross-corpus evaluation on %s failed: %s", name, error)
            results[name] = {"error": f"{type(error).__name__}: {error}", "command": command}
            continue
        results[name] = {k: test[k] for k in ("ua", "wa", "f1", "unparsed_rate", "recall", "n") if k in test}
        if test.get("faithfulness") is not None:
            results[name]["faithfulness"] = test["faithfulness"]
        results[name]["dir"] = str(evaluation.paths.output_dir)
    return results
