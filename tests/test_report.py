"""emorl.report: per-class recall over seeds and the learning dynamics read from the CSV logs."""

from __future__ import annotations

import csv
import json
import shutil

import yaml

from emorl import report


def _run(root, name, recall, log_rows, reward="eswr", **settings):
    run = root / name
    (run / "csv" / "version_0").mkdir(parents=True)
    (run / "config_resolved.yaml").write_text(yaml.safe_dump(
        {"algo": {"name": "grpo"}, "reward": {"name": reward}, "reasoning": {"name": "esr"}, "dataset": {"name": "synthetic"},
         "paths": {"output_dir": str(run)}, **settings}))
    scores = {"ua": sum(recall.values()) / len(recall), "wa": 0.5, "f1": 0.4, "unparsed_rate": 0.0, "recall": recall}
    (run / "metrics.json").write_text(json.dumps({"base": scores, "trained": scores, "train": {"wall_time_s": 10.0}}))
    keys = sorted({k for r in log_rows for k in r})
    lines = [",".join(keys)] + [",".join(str(r.get(k, "")) for k in keys) for r in log_rows]
    (run / "csv" / "version_0" / "metrics.csv").write_text("\n".join(lines) + "\n")


def test_recall_and_dynamics_average_a_groups_seeds(tmp_path, capsys):
    sweep = tmp_path / "lever"
    # two seeds of one setting: joy alive in one, dead in the other
    _run(sweep, "s0", {"joy": 0.4, "anger": 0.8}, [
        {"step": 0, "train/entropy": 1.0, "train/groups_with_variance": 1.0, "train/sampled/joy": 0.5},
        {"step": 1, "train/entropy": 0.5, "train/groups_with_variance": 0.5, "train/sampled/joy": 0.3},
        {"step": 1, "val/ua": 0.30}, {"step": 3, "val/ua": 0.50},
    ])
    _run(sweep, "s1", {"joy": 0.0, "anger": 1.0}, [
        {"step": 0, "train/entropy": 0.0, "train/groups_with_variance": 0.0, "train/sampled/joy": 0.1},
        {"step": 1, "val/ua": 0.10}, {"step": 3, "val/ua": 0.30},
    ])
    report.main([str(sweep), "--dynamics", "--window", "2"])
    out = capsys.readouterr().out.splitlines()
    recall_row = next(line for line in out if line.startswith("| lever | grpo | eswr | esr | - | 20.0"))
    # joy 20.0 ± 28.3 (0.4 and 0.0), anger 90.0 ± 14.1, lowest per run (0.4, 0.0) -> 20.0 ± 28.3
    assert recall_row.split(" | ")[5:] == ["20.0 ± 28.3", "90.0 ± 14.1", "20.0 ± 28.3 |"]
    assert "val UA: step 2: 20.0 ± 14.1, step 4: 40.0 ± 14.1" in out
    # steps 1-2: no accuracy reward or gradient norm logged; entropy (mean of s0's 1.0 and 0.5 = 0.75, and s1's 0.0) -> 0.375;
    # variance the same; joy (0.4, 0.1)
    assert "| 1-2 | - | - | 0.38 | 0.38 | 0.25 |" in out


def test_evaluations_average_over_the_seeds_of_what_they_evaluated(tmp_path, capsys):
    sweep = tmp_path / "table1"
    recall = {"joy": 0.2, "anger": 0.6}
    for seed, ua in ((0, 0.5), (1, 0.7)):
        _run(sweep, f"s{seed}", recall, [], reward="bcr")
        e = sweep / f"s{seed}" / "heldout"
        e.mkdir()
        test = {"ua": ua, "wa": ua, "f1": ua, "unparsed_rate": 0.0, "recall": {"joy": ua - 0.1, "anger": ua}, "n": 10,
                "faithfulness": ua - 0.2}  # ESR evaluations report it; IR ones do not
        (e / "metrics.json").write_text(json.dumps({"ckpt": str(sweep / f"s{seed}"), "dataset": "synthetic_heldout",
                                                    "split": "test", "reasoning": "esr", "test": test}))
    base = tmp_path / "zero_shot" / "ir"  # the untuned base, no checkpoint
    base.mkdir(parents=True)
    (base / "metrics.json").write_text(json.dumps({"ckpt": "None", "dataset": "synthetic", "split": "test", "reasoning": "ir",
                                                   "test": {"ua": 0.3, "wa": 0.3, "f1": 0.2, "unparsed_rate": 0.1,
                                                            "recall": {"joy": 0.0, "anger": 0.6}, "n": 10}}))
    report.main([str(sweep), str(tmp_path / "zero_shot")])
    out = capsys.readouterr().out.splitlines()
    # the two seeds' held-out evaluations of the BCR + ESR runs: UA 60.0 ± 14.1, lowest recall (0.4, 0.6)
    assert "| table1 | grpo | bcr | esr | synthetic_heldout | test | 2 | 60.0 ± 14.1 | 60.0 ± 14.1 | 60.0 ± 14.1 | 0.0 ± 0.0 | 50.0 ± 14.1 | 40.0 ± 14.1 |" in out
    assert "| zero_shot | base | - | ir | synthetic | test | 1 | 30.0 ± 0.0 | 30.0 ± 0.0 | 20.0 ± 0.0 | 10.0 ± 0.0 | 0.0 ± 0.0 | - |" in out


def test_runs_that_differ_in_any_setting_are_separate_rows(tmp_path, capsys):
    """`report outputs/` averaged runs with different settings into one row; the seed and the
    folders do not split a row, any other setting does, and each row lists its runs."""
    sweep = tmp_path / "outputs"
    recall = {"joy": 0.5, "anger": 0.5}
    _run(sweep, "a0", recall, [], seed=0, data={"seed": 0}, model={"lr": 1e-4})
    _run(sweep, "a1", recall, [], seed=1, data={"seed": 1}, model={"lr": 1e-4})
    _run(sweep, "b0", {"joy": 0.1, "anger": 0.9}, [], seed=0, data={"seed": 0}, model={"lr": 3e-4})
    report.main([str(sweep)])
    out = capsys.readouterr().out.splitlines()
    rows = [line for line in out if line.startswith("| outputs | grpo | eswr | esr | synthetic |")]
    assert [r.split(" | ")[5:7] for r in rows] == [["model.lr=0.0001", "2"], ["model.lr=0.0003", "1"]]
    listing = [line for line in out if line.startswith("- outputs / grpo")]
    assert listing == [f"- outputs / grpo / eswr / esr / synthetic / model.lr=0.0001: {sweep / 'a0'}, {sweep / 'a1'}",
                       f"- outputs / grpo / eswr / esr / synthetic / model.lr=0.0003: {sweep / 'b0'}"]


def test_a_setting_only_some_runs_record_does_not_split_a_row_but_is_listed(tmp_path, capsys):
    """A key a later version added (recorded by the newer runs only) is not a difference between the runs
    (a missing key read as None split seeds of one sweep); the listing names it and how many record it."""
    sweep = tmp_path / "sweep"
    recall = {"joy": 0.5, "anger": 0.5}
    _run(sweep, "s0", recall, [], seed=0, model={"lr": 1e-4})
    _run(sweep, "s1", recall, [], seed=1, model={"lr": 1e-4}, data={"task_alternation": False})
    _run(sweep, "s2", recall, [], seed=2, model={"lr": 1e-4}, data={"task_alternation": False})
    report.main([str(sweep)])
    out = capsys.readouterr().out.splitlines()
    rows = [line for line in out if line.startswith("| sweep | grpo | eswr | esr | synthetic |")]
    assert [r.split(" | ")[5:7] for r in rows] == [["-", "3"]]
    assert "  settings only some of these runs record (not compared): data.task_alternation (2 of 3)" in out


def _job(sweep, name, reward, seed, ua=None, heldout_wa=None, log_rows=()):
    """A job folder of a Hydra sweep: its overrides, and (unless it failed) its config and metrics."""
    job = sweep / name
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"experiment={reward}_ir", f"seed={seed}"]))
    if ua is None:  # failed: the log ends in the error
        (job / "train.log").write_text("step 3\nRuntimeError: CUDA out of memory\n")
        return
    (job / "config_resolved.yaml").write_text(yaml.safe_dump(
        {"algo": {"name": "grpo"}, "reward": {"name": reward, "format": {"weight": 1.0}, "accuracy": {"weight": 1.0}},
         "reasoning": {"name": "ir"}, "dataset": {"name": "synthetic"}, "seed": seed, "paths": {"output_dir": str(job)}}))
    scores = {"ua": ua, "wa": ua + 0.1, "f1": ua - 0.1, "unparsed_rate": 0.0, "recall": {"joy": ua - 0.2, "anger": ua + 0.2}}
    cross = {"synthetic_heldout": {"ua": heldout_wa, "wa": heldout_wa, "f1": heldout_wa, "n": 7}}
    (job / "metrics.json").write_text(json.dumps({"trained": scores, "train": {"wall_time_s": 1.0}, "cross_corpus": cross}))
    if log_rows:
        keys = sorted({k for r in log_rows for k in r})
        (job / "csv" / "version_0").mkdir(parents=True)
        (job / "csv" / "version_0" / "metrics.csv").write_text(
            "\n".join([",".join(keys)] + [",".join(str(r.get(k, "")) for k in keys) for r in log_rows]) + "\n")


def test_the_paper_report_lays_out_rows_beside_the_papers_numbers_checks_claims_and_lists_failed_jobs(tmp_path):
    from emorl import tables

    sweep = tmp_path / "table1"
    log = [{"step": 0, "train/reward/accuracy": 0.2, "train/sampled/joy": 0.5, "train/sampled/anger": 0.5},
           {"step": 9, "val/ua": 0.4}]
    _job(sweep, "bcr_ir_s0", "bcr", 0, ua=0.50, heldout_wa=0.30, log_rows=log)
    _job(sweep, "bcr_ir_s1", "bcr", 1)  # failed
    _job(sweep, "eswr_ir_s0", "eswr", 0, ua=0.60, heldout_wa=0.40, log_rows=log)
    _job(sweep, "eswr_ir_s1", "eswr", 1, ua=0.70, heldout_wa=0.50)
    (sweep / "multirun.yaml").write_text(yaml.safe_dump({"hydra": {
        "sweeper": {"params": {"experiment": "bcr_ir,eswr_ir", "seed": "0,1,2"}},
        "overrides": {"task": ["table=table1", "seed=0,1", "eval.cross_corpus=[synthetic_heldout]"]}}}))
    report.main([str(sweep), "--paper", "--out", str(tmp_path / "out"), "--wandb"])
    text = (tmp_path / "out" / "report.md").read_text()
    lines = text.splitlines()
    # one seed of BCR (the other failed), two of ESWR: mean ± std in %, the better row's numbers in bold,
    # the paper's MELD numbers beside ours
    assert "| LALM-FT | BCR + IR | 1 | 50.0 ± 0.0 | 60.0 ± 0.0 | 40.0 ± 0.0 | 30.0 ± 0.0 | 31.60 | 55.41 | 33.22 |" in lines
    assert "| LALM-FT | ESWR + IR | 2 | **65.0 ± 7.1** | **75.0 ± 7.1** | **55.0 ± 7.1** | 45.0 ± 7.1 | 36.23 | 63.85 | 38.57 |" in lines
    # rows in the paper's order: the zero-shot rows (not run here) before the fine-tuned ones, with the paper's numbers
    assert text.index("zero-shot, CoT inference | 0 | – |") < text.index("BCR + IR |") < text.index("ESWR + IR |")
    # Table 2: WA on the held-out corpus beside the paper's cross-corpus WA
    assert "| LALM-FT | ESWR + IR | 2 | **45.0 ± 7.1** | **45.0 ± 7.1** | **45.0 ± 7.1** | 66.21 | 74.69 | 83.05 |" in lines
    # claims: ESWR > BCR by more than a std in-corpus; across corpora the RL rows are not compared with an SFT that did not run
    assert "- ESWR > BCR with IR (UA): **holds** (eswr_ir 65.0 ± 7.1, bcr_ir 50.0 ± 0.0)" in lines
    assert "- ESR > EUR > IR with ESWR (UA): **not measured** (eswr_esr –, eswr_eur –, eswr_ir 65.0 ± 7.1)" in lines
    # the failed job with its error, and the sweep's third seed that the command line left out is not "missing"
    assert "- failed: bcr_ir_s1 (experiment=bcr_ir seed=1): RuntimeError: CUDA out of memory" in lines
    assert not any(line.startswith("- missing") for line in lines)
    rows = list(csv.reader(open(tmp_path / "out" / "table1.csv")))
    assert rows[0][:4] == ["group", "row", "runs", "UA"] and ["LALM-FT", "ESWR + IR", "2", "65.0 ± 7.1"] in [r[:4] for r in rows]
    assert "\\textbf{65.0 $\\pm$ 7.1}" in (tmp_path / "out" / "table1.tex").read_text()
    written = {p.name for p in (tmp_path / "out").glob("*.png")}
    assert written == {"table1_bars.png", "table2_synthetic_heldout_bars.png", "val_ua.png", "rewards.png", "sampled_labels.png"}

    # a job of the sweep that never started is listed as missing
    shutil.rmtree(sweep / "eswr_ir_s1")
    assert tables.unfinished_jobs(sweep)[-1] == "- missing: experiment=eswr_ir seed=1 (no job folder)"

    # the tables and plots as a W&B artifact of the sweep, read back from the offline run file
    from tests.wandb_records import history_keys, read_records

    records = read_records(next((tmp_path / "out" / "wandb").glob("offline-run-*/run-*.wandb")))
    run = next(r.run for r in records if r.WhichOneof("record_type") == "run")
    assert (run.run_group, run.job_type) == ("table1", "report")
    artifact = next(r.artifact for r in records if r.WhichOneof("record_type") == "artifact" and r.artifact.type == "report")
    assert artifact.name == "table1-report"
    assert {"table1.csv", "table1.tex", "report.md", "val_ua.png"} <= {e.path for e in artifact.manifest.contents}
    assert {"report/table1/_type", "report/table2/_type", "report/val_ua/_type"} <= history_keys(records)


def test_a_fold_sweep_is_one_row_averaging_its_folds(tmp_path, capsys):
    sweep = tmp_path / "savee_folds"
    for fold, ua in ((1, 0.4), (2, 0.6), (3, 0.5), (4, 0.7)):
        _run(sweep, f"f{fold}", {"joy": ua, "anger": ua}, [], dataset={"name": "savee", "fold": fold})
    report.main([str(sweep)])
    out = capsys.readouterr().out
    # one row of four runs: UA 55.0 ± 12.9 over the folds, which the settings column names
    assert "| savee_folds | grpo | eswr | esr | savee | folds 1, 2, 3, 4 averaged | 4 | 55.0 ± 12.9 |" in out


def test_load_runs_names_what_groups_a_run(tmp_path):
    """A run's group is read by name (folder, algo, reward, reasoning, dataset, settings): the report and the
    base's bars read the reasoning and the dataset from it, which a position shifted by one would swap."""
    from emorl.runs import load_runs

    sweep = tmp_path / "sweep"
    _run(sweep, "s0", {"joy": 0.5}, [], seed=0, model={"lr": 1e-4})
    _run(sweep, "s1", {"joy": 0.5}, [], seed=1, model={"lr": 3e-4})
    groups = sorted(run["group"] for run in load_runs([str(sweep)]))
    assert [(g.folder, g.algo, g.reward, g.reasoning, g.dataset) for g in groups] == [("sweep", "grpo", "eswr", "esr", "synthetic")] * 2
    assert [g.settings for g in groups] == ["model.lr=0.0001", "model.lr=0.0003"]


def _attempt(run, folder, rows):
    (run / folder).parent.mkdir(parents=True, exist_ok=True)
    keys = sorted({k for r in rows for k in r})
    (run / folder).write_text("\n".join([",".join(keys)] + [",".join(str(r.get(k, "")) for k in keys) for r in rows]) + "\n")


def test_a_resumed_runs_log_joins_its_attempts_in_order_and_the_steps_run_again_replace_the_first(tmp_path):
    """A resumed run logs into a new ``csv/version_<n>``; reading only the last one lost the run's first part, and
    ``version_10`` sorted before ``version_2``.  A build of an older emorl logged into ``csv/metrics.csv`` itself."""
    from emorl.runs import read_log

    run = tmp_path / "run"
    _attempt(run, "csv/metrics.csv", [{"step": 0, "train/loss": 9.0}])  # the oldest layout, first
    _attempt(run, "csv/version_0/metrics.csv", [{"step": s, "train/loss": 5.0 - s} for s in range(1, 5)] + [{"step": 3, "val/ua": 0.2}])
    # killed after its checkpoint at step 3: steps 3 and 4 run again
    _attempt(run, "csv/version_1/metrics.csv", [{"step": 3, "train/loss": 1.5}, {"step": 4, "train/loss": 1.25}, {"step": 5, "train/loss": 1.0}])
    for n in range(2, 10):  # attempts killed before they logged a row
        (run / f"csv/version_{n}").mkdir()
    _attempt(run, "csv/version_10/metrics.csv", [{"step": 5, "train/loss": 0.5}, {"step": 6, "train/loss": 0.25}])
    rows = read_log(run)
    assert [(r["step"], r.get("train/loss"), r.get("val/ua")) for r in rows] == [
        (0.0, 9.0, None), (1.0, 4.0, None), (2.0, 3.0, None),  # before the first resume
        (3.0, 1.5, None), (4.0, 1.25, None),  # version_1's steps replace version_0's (its validation at 3 too)
        (5.0, 0.5, None), (6.0, 0.25, None)]  # version_10 last, not between 1 and 2
