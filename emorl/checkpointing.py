"""Checkpoints: the best by validation UA, the latest for resuming, and the exported model.

* ``checkpoints/best.ckpt``: saved whenever validation UA improves (RL runs peak early); with
  ``checkpoint.select=best`` the test metrics and the exported ``model/`` come from it.
* ``checkpoints/last.ckpt``: saved every ``checkpoint.every_n_steps`` steps (after that step's
  validation when one follows it) and at once on SIGTERM (a preempted job); ``resume=auto``
  continues from it when the run directory holds one.
  It carries the weights, the optimizer, the loop counters, the position in the training order
  and the module's counters, so that the resumed run ends as an uninterrupted one would.
* ``model/``: the policy in the Hugging Face format (a standard peft adapter with LoRA), its
  processor, and ``emorl.json`` (labels, reasoning strategy, base model) for evaluate/predict.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from lightning.pytorch.callbacks import Callback, Checkpoint, ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf

from emorl.runs import flatten

log = logging.getLogger(__name__)

#: Settings that may differ between a run and its resumption (where a run lives is not a setting).
RESUME_FREE_KEYS = ("paths", "resume", "logger", "num_threads", "trainer.enable_progress_bar", "trainer.default_root_dir")
#: The key of a checkpoint that holds the settings of the run that wrote it.
SETTINGS_KEY = "emorl_settings"


def run_settings(cfg: DictConfig) -> dict:
    """The settings a resumed run must share with the run that wrote its checkpoint: the config as written,
    interpolations unresolved (a moved run folder or another cache path changes no setting)."""
    return OmegaConf.to_container(cfg, resolve=False)


class SettingsInCheckpoint(Callback):
    """Stores the run's settings (:func:`run_settings`) in every checkpoint it writes, so that a resume from it,
    into any folder, is checked against the settings that produced it."""

    def __init__(self, settings: dict) -> None:
        self.settings = settings

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        checkpoint[SETTINGS_KEY] = self.settings


class CheckpointOnSigterm(Callback):
    """On SIGTERM, stop every process at the same batch, save ``path`` when that was a training step's end, and exit.

    The signal handler only notes the signal.  At the end of each training step and of each validation batch, every
    process reduces the notes (a one-number collective at the same point of every process's sequence of collectives:
    the processes run the same steps and the same number of validation batches) and, when any process was signalled,
    all set Lightning's flag there, on which Lightning raises ``SIGTERMException`` at that batch's end, after its
    other hooks.  :func:`exit_on_sigterm` turns the exception into the exit status.

    Lightning's own handler, replaced here while the fit runs, broadcasts from *inside* the signal handler: on two
    processes that broadcast can meet the other process's gradient all-reduce, and both wait for ever (a two-process
    pretraining build sent SIGTERM before a backward pass hung so).

    A signal that cuts a validation short saves nothing: a checkpoint taken there would resume after a validation that
    never finished (and might have chosen the best checkpoint); the run then resumes from the last periodic checkpoint.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.signalled = False

    def _note(self, signum, frame) -> None:
        self.signalled = True  # no logging, no collective: the handler may run in the middle of either

    def _take_sigterm(self) -> None:
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():  # Python sets handlers from the main thread only
            signal.signal(signal.SIGTERM, self._note)

    def _stop_if_signalled(self, trainer) -> None:
        if trainer.strategy.reduce_boolean_decision(self.signalled, all=False):
            trainer._signal_connector.received_sigterm = True  # what Lightning's loops check at each batch's end

    # Lightning registers its handler once the fit has begun (after ``setup`` and ``on_fit_start``) and restores the
    # handlers from before the fit when it ends.
    def on_fit_start(self, trainer, pl_module) -> None:
        self.signalled = False  # a signal an earlier fit took was that fit's

    def on_sanity_check_start(self, trainer, pl_module) -> None:
        self._take_sigterm()

    def on_train_start(self, trainer, pl_module) -> None:
        self._take_sigterm()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._stop_if_signalled(trainer)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if trainer.state.fn == "fit":
            self._stop_if_signalled(trainer)

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        if not isinstance(exception, SIGTERMException) or trainer.state.fn != "fit":
            return
        if trainer.validating or trainer.sanity_checking:
            log.warning("SIGTERM during validation at step %d: the run resumes from %s", trainer.global_step,
                        self.path if self.path.exists() else "the start")
            return
        trainer.save_checkpoint(self.path)
        log.warning("SIGTERM: saved %s at step %d", self.path, trainer.global_step)


class LogStepsAcrossResumes(Callback):
    """Log every training step under its index in the whole run, resumed or not.

    Lightning logs a step under a counter (``fit_loop.epoch_loop._batches_that_stepped``) that it restores from the
    checkpoint and then corrects by guessing where in a step the checkpoint was taken; a build resumed from a SIGTERM
    checkpoint logged every later step one too high.  The loop's count of the batches it began
    (``batch_progress.total.ready``) is restored exactly, so the counter is set from it when each batch begins.
    One batch is one step (no gradient accumulation, which emorl does not use; with it, nothing is changed).
    """

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        loop = trainer.fit_loop.epoch_loop
        if trainer.accumulate_grad_batches != 1:
            return
        if not hasattr(loop, "_batches_that_stepped"):
            import lightning

            raise RuntimeError(f"lightning {lightning.__version__} no longer has the counter its loggers log steps "
                               "under (fit_loop.epoch_loop._batches_that_stepped) that emorl sets on resuming; install a "
                               "lightning that has it (emorl is tested with 2.6)")
        loop._batches_that_stepped = loop.batch_progress.total.ready - 1


#: The exit status of a command stopped by SIGTERM (128 + 15, what a shell reports for a process the signal ended).
SIGTERM_EXIT = 143


@contextmanager
def exit_on_sigterm(trainer, run_dir: Path) -> Iterator[None]:
    """Turn Lightning's stop on SIGTERM into exit status :data:`SIGTERM_EXIT` and a line saying how to continue.

    Lightning stops ``fit`` on SIGTERM by raising ``SIGTERMException``, a ``SystemExit`` without a code: uncaught, a
    command stopped half-way would exit 0, as if it had finished, and a script running it would go on.
    """
    try:
        yield
    except SIGTERMException:
        log.warning("terminated at step %d; rerun the same command with hydra.run.dir=%s to continue from %s",
                    trainer.global_step, run_dir, Path(run_dir) / "checkpoints" / "last.ckpt")
        raise SystemExit(SIGTERM_EXIT) from None


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes a checkpoint to a temporary file in its own folder, then renames it into place.

    A checkpoint on disk is then always a whole one: the previous ``last.ckpt`` or ``best.ckpt``
    stays until its successor is complete.  (Lightning's own writer stages the file in the system
    temporary folder; where that is another disk, the final move is a copy that truncates the old
    checkpoint first, and a full disk leaves half a file.)
    """

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options, got {storage_options!r}")
        from emorl.results import atomic_file

        with atomic_file(path, "wb") as f:
            torch.save(checkpoint, f)


def use_atomic_checkpoints(trainer) -> None:
    """Give ``trainer`` the :class:`AtomicCheckpointIO` (DeepSpeed writes its own checkpoint folders)."""
    from lightning.pytorch.strategies import DeepSpeedStrategy

    if not isinstance(trainer.strategy, DeepSpeedStrategy) and type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
        trainer.strategy.checkpoint_io = AtomicCheckpointIO()


def validation_follows(trainer) -> bool:
    """Whether Lightning validates right after the training step that just ended.

    Asked in ``on_train_batch_end``; the answer is the one the training loop gets when it
    decides, a moment later, from the same counters.
    """
    # Lightning has no public answer to this question: its own (private) decision is asked, and a Lightning
    # without it is refused loudly (tests/test_resume.py checks the timing end to end)
    loop = trainer.fit_loop
    decide = getattr(loop.epoch_loop, "_should_check_val_fx", None)
    if decide is None or not hasattr(loop, "_data_fetcher"):
        import lightning

        raise RuntimeError(f"lightning {lightning.__version__} no longer has the training loop's validation "
                           "decision (fit_loop.epoch_loop._should_check_val_fx) that emorl's periodic checkpoints "
                           "ask; install a lightning that has it (emorl is tested with 2.6)")
    return bool(decide(loop._data_fetcher))


class PeriodicCheckpoint(Checkpoint):
    """Save ``path`` every ``every`` steps; at a step followed by a validation, after it.

    Lightning resumes a checkpoint taken at the end of a training step *past* the validation
    that follows that step (it fast-forwards the validation's counters).  Taken there, a run
    killed during the validation would resume without ever running it, and select another
    checkpoint than an uninterrupted run.  Taken after the validation (and after the best
    checkpoint was updated), a kill during the validation resumes from the previous
    checkpoint, retrains the same steps and validates.
    """

    def __init__(self, path: Path, every: int) -> None:
        self.path = Path(path)
        self.every = int(every)

    def _due(self, trainer) -> bool:
        return self.every > 0 and trainer.global_step > 0 and trainer.global_step % self.every == 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._due(trainer) and not validation_follows(trainer):
            trainer.save_checkpoint(self.path)

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.state.fn == "fit" and not trainer.sanity_checking and self._due(trainer):
            trainer.save_checkpoint(self.path)


class MovableModelCheckpoint(ModelCheckpoint):
    """A best-checkpoint callback that survives a moved or copied run folder.

    Lightning's own, resumed in another folder than the one its state names, keeps the old
    ``best_model_path`` (the original run's file, or none after a move) and forgets the best score.
    This one re-bases the paths of its state onto its own folder and restores the score.
    """

    PATH_KEYS = ("best_model_path", "kth_best_model_path", "last_model_path")

    def load_state_dict(self, state_dict: dict) -> None:
        old = state_dict.get("dirpath")
        if old and self.dirpath and os.path.normpath(old) != os.path.normpath(self.dirpath):
            state_dict = rebase_checkpoint_state(state_dict, old, self.dirpath)
        super().load_state_dict(state_dict)


def rebase_checkpoint_state(state: dict, old: str, new: str) -> dict:
    """A ModelCheckpoint state with the paths under ``old`` moved under ``new``.

    >>> rebase_checkpoint_state({"dirpath": "/a/ck", "best_model_path": "/a/ck/best.ckpt", "best_k_models": {"/a/ck/best.ckpt": 0.5}},
    ...                         "/a/ck", "/b/ck")
    {'dirpath': '/b/ck', 'best_model_path': '/b/ck/best.ckpt', 'best_k_models': {'/b/ck/best.ckpt': 0.5}}
    """
    def move(path):
        if not path:
            return path
        rel = os.path.relpath(path, old)
        return path if rel.startswith("..") else os.path.join(new, rel)

    out = dict(state, dirpath=new)
    for key in MovableModelCheckpoint.PATH_KEYS:
        if key in out:
            out[key] = move(out[key])
    if "best_k_models" in out:
        out["best_k_models"] = {move(k): v for k, v in out["best_k_models"].items()}
    return out


def checkpoint_callbacks(cfg: DictConfig, ckpt_dir: Path) -> dict[str, Callback]:
    """The best-by-val-UA, periodic-last and on-SIGTERM checkpoint callbacks, the settings each checkpoint holds, and
    the step numbers a resumed run logs under."""
    every = int(cfg.checkpoint.every_n_steps)
    return {
        "settings": SettingsInCheckpoint(run_settings(cfg)),
        "best": MovableModelCheckpoint(
            dirpath=ckpt_dir, filename="best", monitor="val/ua", mode="max", save_top_k=1,
            auto_insert_metric_name=False, enable_version_counter=False,
        ),
        "last": PeriodicCheckpoint(ckpt_dir / "last.ckpt", every),
        "sigterm": CheckpointOnSigterm(ckpt_dir / "last.ckpt"),
        "log_steps": LogStepsAcrossResumes(),
    }


def settings_changed(saved: dict, current: dict) -> list[str]:
    """Keys whose values differ between two resolved configs, ignoring :data:`RESUME_FREE_KEYS`.

    >>> settings_changed({"seed": 0, "paths": {"a": 1}}, {"seed": 1, "paths": {"a": 2}})
    ['seed: 0 -> 1']
    """
    a, b = flatten(saved), flatten(current)
    free = lambda key: any(key == k or key.startswith(k + ".") for k in RESUME_FREE_KEYS)
    return [f"{k}: {a.get(k)} -> {b.get(k)}" for k in sorted(set(a) | set(b)) if not free(k) and a.get(k) != b.get(k)]


def resume_path(cfg: DictConfig, ckpt_dir: Path, saved_config: Path) -> str | None:
    """The checkpoint to resume from (``resume``: ``auto``, null, or a path); checks the settings match."""
    setting = cfg.get("resume")
    if not setting:
        return None
    path = ckpt_dir / "last.ckpt" if setting == "auto" else Path(str(setting))
    if not path.exists():
        if setting == "auto":
            return None
        raise FileNotFoundError(f"resume={setting}: no such checkpoint")
    check_checkpoint_file(path)
    saved = checkpoint_settings(path)
    if saved is not None:
        changed = settings_changed(saved, run_settings(cfg))
    elif saved_config.exists():  # a checkpoint of an earlier emorl: the run folder's resolved config
        changed = settings_changed(read_saved_config(saved_config), OmegaConf.to_container(cfg, resolve=True))
    else:
        raise ValueError(
            f"{path} records no settings and no {saved_config.name} lies beside it, so nothing shows that it was "
            "written with these settings. Start over with resume=null, or restore the run's config_resolved.yaml")
    if changed:
        raise ValueError(
            f"{path} belongs to a run started with other settings ({'; '.join(changed)}). Resume with the "
            "same overrides, set resume=null to start over in this directory, or use another hydra.run.dir"
        )
    return str(path)


def checkpoint_settings(path: Path) -> dict | None:
    """The settings stored in a checkpoint (:class:`SettingsInCheckpoint`); None for one that holds none."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    return checkpoint.get(SETTINGS_KEY) if isinstance(checkpoint, dict) else None


def read_saved_config(path: Path) -> dict:
    """A run folder's ``config_resolved.yaml``; a damaged one stops the resume, naming it."""
    import yaml

    try:
        saved = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is damaged ({type(error).__name__}: {str(error).splitlines()[0]}); restore it, or "
                         "start over with resume=null") from None
    if not isinstance(saved, dict):
        raise ValueError(f"{path}: expected the run's settings (a YAML mapping), got {type(saved).__name__}; restore "
                         "it, or start over with resume=null")
    return saved


def check_checkpoint_file(path: Path) -> None:
    """A checkpoint that cannot be read (cut short by a full disk, a copy) stops the run, naming it and the way out.

    PyTorch checkpoints are zip archives; one cut short lacks its end record.  The check reads
    the archive's directory only, not the weights.
    """
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            archive.infolist()
    except (zipfile.BadZipFile, OSError) as error:
        raise ValueError(
            f"{path} is damaged ({error}), so the run cannot resume from it. Start over in this directory with "
            "resume=null, or resume from another checkpoint with resume=<path of a .ckpt>"
        ) from None


def tensor_bytes(tensors) -> int:
    """Bytes of ``tensors`` (an iterable of tensors) as ``torch.save`` writes them, before any header."""
    return sum(t.numel() * t.element_size() for t in tensors)


#: What a file takes beyond its tensors' bytes, at most: a share of them (alignment of each tensor in the
#: archive) and a fixed part (the pickled state around them, a model's config and processor files).
FILE_SLACK, FILE_HEADER = 1.05, 2**20


def optimizer_bytes(parameters) -> int:
    """The most bytes an Adam-family optimizer keeps for ``parameters`` (the trainable ones): two moments in
    float32 per weight, and a float32 master copy of a weight of another dtype (DeepSpeed's mixed precision).

    >>> import torch
    >>> optimizer_bytes([torch.zeros(10), torch.zeros(10, dtype=torch.bfloat16)])   # 10 * 8 + 10 * 12
    200
    """
    return sum(p.numel() * 4 * (2 if p.dtype == torch.float32 else 3) for p in parameters)


def checkpoint_bytes(state: int, optimizer: int) -> int:
    """The most bytes one checkpoint takes: ``state``, the bytes of what it keeps of the model (trainable weights
    and buffers), and ``optimizer``, those of the optimizer's state (:func:`optimizer_bytes`).

    >>> checkpoint_bytes(state=2**20, optimizer=2**21) // 2**10   # KiB: 3 MiB of tensors, 5% and 1 MiB more
    4249
    """
    return int(FILE_SLACK * (state + optimizer)) + FILE_HEADER


def run_bytes(checkpoint: int, export: int, copies: int = 3) -> int:
    """The most bytes a training run's files take at one time: ``copies`` checkpoints of ``checkpoint`` bytes
    (a training run's three: ``best.ckpt``, ``last.ckpt`` and the successor of one of them being written beside
    it; a pretraining run's two: ``last.ckpt`` and its successor) and the exported model, whose tensors take
    ``export`` bytes (0 without ``save_model``).

    >>> run_bytes(checkpoint=100, export=0) == 300 + FILE_HEADER
    True
    >>> run_bytes(checkpoint=100, export=0, copies=2) == 200 + FILE_HEADER
    True
    """
    return copies * checkpoint + int(FILE_SLACK * export) + FILE_HEADER


def check_free_space(folder: Path, needed: int, replaced: int = 0, free: int | None = None) -> None:
    """Stop before training when ``folder``'s disk cannot hold what the run writes (a full disk kills a run in
    the middle of writing a checkpoint).  ``replaced``: bytes of files already there that the run overwrites
    (a resumed run's checkpoints); ``free``: the disk's free bytes (default: asked of the disk)."""
    import shutil

    free = shutil.disk_usage(folder).free if free is None else free
    if free + replaced < needed:
        gib = lambda n: f"{n / 2**30:.2f} GiB"
        raise OSError(f"{folder}: its disk has {gib(free)} free, and this run writes up to {gib(needed)} of "
                      f"checkpoints and model{f' ({gib(replaced)} of them replacing files there)' if replaced else ''}; "
                      "free some space, or run in a folder on a disk with room (hydra.run.dir=...)")


def check_room_for_run(module, policy, ckpt_dir: Path, export: bool) -> None:
    """:func:`check_free_space` for a training run of ``module`` whose checkpoints go to ``ckpt_dir``."""
    check_room_for_checkpoints(ckpt_dir, kept=module.checkpointed(module.state_dict()).values(),
                               trainable=(p for p in module.parameters() if p.requires_grad),
                               exported=policy.state_dict().values() if export else (), copies=3)


def check_room_for_checkpoints(ckpt_dir: Path, kept, trainable, exported, copies: int) -> None:
    """:func:`check_free_space` for a run whose checkpoints, each holding the tensors ``kept`` and an Adam-family
    optimizer's state for ``trainable``, go to ``ckpt_dir``, ``copies`` of them at one time (:func:`run_bytes`),
    and whose exported model holds the tensors ``exported``.  The run's own checkpoints, when it resumes, count
    as room: it overwrites them."""
    checkpoint = checkpoint_bytes(tensor_bytes(kept), optimizer_bytes(trainable))
    present = sum(f.stat().st_size for name in ("last.ckpt", "best.ckpt")  # a file, or DeepSpeed's folder
                  for f in [ckpt_dir / name, *(ckpt_dir / name).rglob("*")] if f.is_file())
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    check_free_space(ckpt_dir, run_bytes(checkpoint, tensor_bytes(exported), copies), replaced=present)


def export_model(policy, processor, out: Path, cfg: DictConfig, labels, strategy, base_path: str) -> None:
    """Save the policy (a peft adapter with LoRA) and processor, with what evaluate/predict need to know.

    ``emorl.json`` also records the decoding settings of emorl's greedy answers, so that a user
    with plain transformers + peft can reproduce them (``model.generate(**inputs, **generation)``).
    """
    from emorl.models.loading import end_token_ids, suppressed_token_ids

    policy.save_pretrained(out)
    processor.save_pretrained(out)
    info = {
        "labels": list(labels),
        "reasoning": strategy.name,
        "reasoning_config": OmegaConf.to_container(cfg.reasoning, resolve=True),
        "dataset": cfg.dataset.name,
        "algo": cfg.algo.name,
        # the module class that evaluates the model (EmotionModule.restore) and its evaluation's settings
        "module": OmegaConf.select(cfg, "algo.module._target_") or "emorl.modules.base.EmotionModule",
        "evaluation": OmegaConf.to_container(cfg.algo.evaluation, resolve=True) if cfg.algo.get("evaluation") else {},
        "base_model": str(base_path),
        "adapter": hasattr(policy, "peft_config"),
        "generation": {
            "do_sample": False,
            "max_new_tokens": int(cfg.eval.max_new_tokens),
            "suppress_tokens": suppressed_token_ids(processor),
            "eos_token_id": end_token_ids(policy, processor),
            "repetition_penalty": 1.0,
        },
    }
    (out / "emorl.json").write_text(json.dumps(info, indent=2))


def read_model_info(model_dir: Path) -> dict:
    """``emorl.json`` of an exported model, or {} for a model emorl did not train."""
    path = Path(model_dir) / "emorl.json"
    if not path.exists():
        return {}
    try:
        info = json.loads(path.read_text())
    except ValueError as error:
        raise ValueError(
            f"{path} is damaged ({error}). emorl.train writes it when it exports the model: rerun the run's command "
            "(a finished run exports again), or restore the file"
        ) from None
    if not isinstance(info, dict):
        raise ValueError(f"{path}: expected a JSON object of the model's labels and settings, got {type(info).__name__}")
    return info
