"""Publish a pretrained embedded base with its model card: ``python -m emorl.pretraining.card <run dir>``.

Copies ``<run dir>/model`` (weights as safetensors, config, processor) into the package's
``emorl/assets/embedded_base/`` and writes beside it

* ``card.json``: the command and resolved config that built it, the git commit, the data (clips
  per source, lexicon words), steps and examples, training wall time, the sha256 of every file,
  and its zero-shot scores (``--evaluation DIR``: folders of ``emorl.evaluate`` runs of it);
* ``README.md``: the same for a reader.

:func:`verify` checks a published folder against its card (every file present, every hash equal):
the test suite runs it on the shipped base, and loading refuses a base that fails it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

#: Where the shipped base lives inside the package.
ASSET_DIR = Path(__file__).resolve().parent.parent / "assets" / "embedded_base"
CARD = "card.json"
#: Files of the card itself (not hashed).
CARD_FILES = (CARD, "README.md")
MAX_BYTES = 50 * 1024 * 1024


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_hashes(folder: Path) -> dict[str, str]:
    """``{relative path: sha256}`` of every file under ``folder`` but the card's own."""
    folder = Path(folder)
    return {str(p.relative_to(folder)): sha256(p) for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name not in CARD_FILES}


def verify(folder: Path = ASSET_DIR) -> dict:
    """The card of ``folder`` after checking that its files are exactly those it lists, with their hashes."""
    folder = Path(folder)
    card_path = folder / CARD
    if not card_path.is_file():
        raise FileNotFoundError(f"{folder}: no {CARD}; publish a base with python -m emorl.pretraining.card <run dir>")
    card = json.loads(card_path.read_text())
    listed, found = card.get("files", {}), file_hashes(folder)
    missing, extra = sorted(set(listed) - set(found)), sorted(set(found) - set(listed))
    changed = sorted(k for k in set(listed) & set(found) if listed[k] != found[k])
    if missing or extra or changed:
        raise ValueError(f"{folder} does not match its {CARD}: missing {missing}, not listed {extra}, changed {changed}. "
                         "Restore the files (git checkout) or publish the base again")
    return card


def git_commit(cwd: Path) -> str | None:
    """The checkout's commit, ``+dirty`` when tracked files differ from it; None outside a git checkout."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True)
        changed = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                                 capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    commit = head.stdout.strip()
    return (commit + ("+dirty" if changed.stdout.strip() else "")) if commit else None


def zero_shot_scores(evaluations: Sequence[Path]) -> dict:
    """``{reasoning: scores}`` from ``emorl.evaluate`` folders (their ``metrics.json``)."""
    keys = ("ua", "wa", "f1", "unparsed_rate", "recall", "faithfulness", "transcript_wer", "keyword_accuracy")
    out = {}
    for folder in evaluations:
        metrics = json.loads((Path(folder) / "metrics.json").read_text())
        if "test" not in metrics:
            raise ValueError(f"--evaluation {folder}: its metrics.json holds no test scores; pass the folders "
                             "python -m emorl.evaluate model.pretrained=<base> hydra.run.dir=... wrote")
        test = metrics["test"]
        out[metrics["reasoning"]] = {"dataset": metrics["dataset"], "split": metrics["split"], "clips": test.get("n"),
                                     **{k: test[k] for k in keys if k in test}}
    return out


def publish(run_dir: Path, out: Path = ASSET_DIR, evaluations: Sequence[Path] = ()) -> dict:
    """Copy ``run_dir/model`` into ``out`` with its card; returns the card."""
    import yaml

    run_dir, out = Path(run_dir), Path(out)
    model = run_dir / "model"
    if not (model / "config.json").is_file():
        raise FileNotFoundError(f"{model}: no exported model; finish python -m emorl.pretrain hydra.run.dir={run_dir}")
    summary = json.loads((run_dir / "pretrain.json").read_text())
    config = yaml.safe_load((run_dir / "config_resolved.yaml").read_text())
    overrides = run_dir / ".hydra" / "overrides.yaml"
    args = yaml.safe_load(overrides.read_text()) if overrides.is_file() else []
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(model, out)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    if size > MAX_BYTES:
        raise ValueError(f"{out}: {size / 2**20:.1f} MB is over the {MAX_BYTES // 2**20} MB a shipped base may take")
    card = {
        "name": "emorl embedded base (tiny Qwen2-Audio)",
        "command": " ".join(["python -m emorl.pretrain", *args]),
        "git_commit": summary.get("git_commit") or git_commit(Path(__file__).parent),
        "summary": summary,
        "config": {k: config[k] for k in ("seed", "model", "pretrain", "dataset") if k in config},
        "zero_shot": zero_shot_scores(evaluations),
        "bytes": size,
        "files": file_hashes(out),
    }
    (out / CARD).write_text(json.dumps(card, indent=2) + "\n")
    (out / "README.md").write_text(render_card(card))
    return card


def render_card(card: dict) -> str:
    """The model card for a reader (Markdown)."""
    s = card["summary"]
    lines = [
        f"# {card['name']}", "",
        "The pretrained checkpoint that `model=tiny` loads (`from_pretrained`), as Qwen2-Audio-7B-Instruct is for "
        "the 7B configuration. Built by emorl's own pretraining mixture; the default corpus's training clips were "
        "heard, never asked their emotion; no validation or test clip entered.", "",
        f"- built by: `{card['command']}` at commit `{card['git_commit']}`",
        f"- parameters: {s['parameters']:,}; {s['steps']} steps, {s['examples']:,} examples on {s['processes']} "
        f"process(es); training wall time {s['train_seconds'] / 3600:.2f} h",
        f"- clips: {s['clips']}; lexicon words: {s['lexicon_words']} (NRC Emotion Lexicon, Mohammad & Turney 2013)",
        f"- size: {card['bytes'] / 2**20:.1f} MB", "",
        "## Zero-shot scores (greedy)", "",
        "| reasoning | dataset / split | UA | WA | F1 | unparsed | lowest recall | faithfulness | transcript WER | key-word acc. |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    fmt = lambda v: "–" if v is None else f"{100 * v:.1f}"
    for name, z in card["zero_shot"].items():
        lowest = min(z["recall"].values()) if z.get("recall") else None
        lines.append(f"| {name} | {z['dataset']} / {z['split']} | {fmt(z.get('ua'))} | {fmt(z.get('wa'))} | "
                     f"{fmt(z.get('f1'))} | {fmt(z.get('unparsed_rate'))} | {fmt(lowest)} | {fmt(z.get('faithfulness'))} | "
                     f"{fmt(z.get('transcript_wer'))} | {fmt(z.get('keyword_accuracy'))} |")
    lines += ["", "## Files (sha256)", ""] + [f"- `{k}` {v}" for k, v in card["files"].items()]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Publish a pretrained embedded base with its model card.")
    parser.add_argument("run_dir", type=Path, help="a finished python -m emorl.pretrain run directory")
    parser.add_argument("--out", type=Path, default=ASSET_DIR, help="where to publish (default: the package's asset)")
    parser.add_argument("--evaluation", type=Path, action="append", default=[],
                        help="an emorl.evaluate folder of this base (repeat: one per reasoning strategy)")
    args = parser.parse_args(argv)
    card = publish(args.run_dir, args.out, args.evaluation)
    print(f"published {args.out} ({card['bytes'] / 2**20:.1f} MB, {len(card['files'])} files)")


if __name__ == "__main__":
    main()
