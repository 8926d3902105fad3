"""Trackers, offline: TensorBoard event files and W&B offline runs of a study's training curves
and evaluations, read back with TensorBoard's and wandb's own readers."""

import json
from pathlib import Path

import pandas as pd
import pytest

from overtrain.analysis import trackers, train_logs
from overtrain.analysis.tables import METRIC_COLUMNS

pytest.importorskip("tensorboard")
pytest.importorskip("wandb")


def tensorboard_scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """tag → [(step, value)] as TensorBoard reads the event files."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.util import tensor_util

    acc = EventAccumulator(str(run_dir), size_guidance={"tensors": 0})
    acc.Reload()
    return {tag: [(e.step, float(tensor_util.make_ndarray(e.tensor_proto))) for e in acc.Tensors(tag)]
            for tag in acc.Tags()["tensors"]}


def wandb_runs(out_dir: Path) -> dict[str, dict]:
    """run name → its group, job type, config and logged rows, as wandb reads its offline files."""
    from wandb.proto import wandb_internal_pb2 as pb
    from wandb.sdk.internal import datastore

    runs = {}
    for path in sorted(out_dir.glob("wandb/offline-run-*/run-*.wandb")):
        store = datastore.DataStore()
        store.open_for_scan(str(path))
        run, rows = None, []
        while (data := store.scan_data()) is not None:
            record = pb.Record()
            record.ParseFromString(data)
            kind = record.WhichOneof("record_type")
            if kind == "run":
                run = record.run
            elif kind == "history":
                rows.append({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in record.history.item})
        config = {u.key: json.loads(u.value_json) for u in run.config.update}
        runs[run.display_name] = {"group": run.run_group, "job_type": run.job_type, "project": run.project,
                                  "config": config, "rows": rows}
    return runs


@pytest.fixture()
def study():
    curves = []
    for step in range(4):  # a decay branch from step 2, a stable run, a fine-tune of 2 epochs of 2 steps
        if step >= 2:
            curves.append({"model": "tiny", "ckpt": "tok500-s0", "tokens": 500, "pretrain_seed": 0, "phase": "decay",
                           "step": step, "tokens_seen": (step + 1) * 125, "step_lr": 0.003, "loss": 5 - step,
                           "grad_norm": 1.0})
        curves.append({"model": "tiny", "ckpt": "tok500", "pretrain_seed": 0, "phase": "stable", "step": step,
                       "tokens_seen": (step + 1) * 125, "step_lr": 0.003, "loss": 5 - step / 2, "grad_norm": 2.0})
        curves.append({"model": "tiny", "ckpt": "tok500-s0", "tokens": 500, "pretrain_seed": 0, "phase": "finetune",
                       "ft_task": "synth_ft", "ft_method": "full", "l2": 0.0, "lr": 1e-3, "seed": 0, "step": step,
                       "epoch": step / 2, "step_lr": 1e-3, "loss": 3 - step / 10, "grad_norm": 0.5})
    curves = pd.DataFrame(curves).reindex(columns=train_logs.COLUMNS)
    base = {c: None for c in METRIC_COLUMNS}
    metrics = pd.DataFrame([
        {**base, "model": "tiny", "ckpt": f"tok{t}-s0", "tokens": t, "pretrain_seed": 0, "variant": "base",
         "eval_task": "synth_pretrain_ppl", "split": "pretrain", "metric": "loss", "value": v}
        for t, v in ((500, 4.0), (1000, 3.5))] + [
        {**base, "model": "tiny", "ckpt": "tok500-s0", "tokens": 500, "pretrain_seed": 0, "variant": "perturbed",
         "perturbation": "gaussian", "gamma": 0.1, "seed": 0, "eval_task": "synth_pretrain_ppl", "split": "pretrain",
         "metric": "loss", "value": 4.2},
        {**base, "model": "tiny", "ckpt": "tok500-s0", "tokens": 500, "pretrain_seed": 0, "variant": "finetuned",
         "ft_task": "synth_ft", "ft_method": "full", "lr": 1e-3, "l2": 0.0, "seed": 0, "eval_task": "synth_ft_ppl",
         "split": "id", "metric": "loss", "value": 2.5}], columns=METRIC_COLUMNS)
    seconds = {"tiny/tok500-s0": 2.0, "tiny/stable-s0": 4.0, "tiny/tok500-s0/synth_ft/full-lr0.001-s0": 1.0}
    runs = trackers.training_runs(curves, seconds) + trackers.evaluation_runs(metrics)
    return runs


def test_a_job_s_wall_time_is_credited_to_the_run_its_directory_names(tmp_path):
    """Benchmarks pair with the jobs' output directories; a stable run's segments add up."""
    root = tmp_path / "results" / "x"
    jobs = []
    for i, job in enumerate(["stable/tiny/s0/tok500", "stable/tiny/s0/tok1000", "checkpoints/tiny/tok500-s0",
                             "finetuned/tiny/tok500-s0/synth_ft/full-lr0.001-s0"]):
        bench = tmp_path / f"b{i}.tsv"
        bench.write_text(f"s\th:m:s\tmax_rss\n{i + 1.5}\t0:00:01\t100\n")
        jobs.append((root / job, bench))
    assert trackers.job_seconds(root, jobs) == {"tiny/stable-s0": 1.5 + 2.5, "tiny/tok500-s0": 3.5,
                                                "tiny/tok500-s0/synth_ft/full-lr0.001-s0": 4.5}


def test_tensorboard_holds_every_run_scalar_and_step(study, tmp_path):
    trackers.write_tensorboard(study, tmp_path)
    decay = tensorboard_scalars(tmp_path / "tiny/tok500-s0")
    assert decay["train/loss"] == [(2, 3.0), (3, 2.0)] and [s for s, _ in decay["train/grad_norm"]] == [2, 3]
    assert decay["throughput/tokens_per_s"] == [(3, pytest.approx(2 * 125 / 2.0))]
    assert len(tensorboard_scalars(tmp_path / "tiny/stable-s0")["train/lr"]) == 4
    ft = tensorboard_scalars(tmp_path / "tiny/tok500-s0/synth_ft/full-lr0.001-s0")
    assert set(ft) == {"train/loss", "train/lr", "train/grad_norm", "throughput/steps_per_s"}
    evaluation = tensorboard_scalars(tmp_path / "tiny/evaluation-s0")
    assert evaluation["base/pretrain/synth_pretrain_ppl/loss"] == [(500, 4.0), (1000, 3.5)]  # stepped by tokens
    assert evaluation["gauss-g0.1-s0/pretrain/synth_pretrain_ppl/loss"] == [(500, pytest.approx(4.2))]
    assert evaluation["ft-synth_ft-full-lr0.001-s0/id/synth_ft_ppl/loss"] == [(500, 2.5)]


def test_wandb_offline_runs_are_grouped_named_and_carry_the_config(study, tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)  # no credential: offline needs none
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "config"))
    trackers.write_wandb(study, tmp_path, project="micro", group="micro", config={"experiment": "micro"})
    runs = wandb_runs(tmp_path)
    assert set(runs) == {"tiny/tok500-s0", "tiny/stable-s0", "tiny/tok500-s0/synth_ft/full-lr0.001-s0",
                         "tiny/evaluation-s0"}
    decay = runs["tiny/tok500-s0"]
    assert decay["group"] == "micro" and decay["project"] == "micro" and decay["job_type"] == "pretrain"
    assert decay["config"]["tokens"] == 500 and decay["config"]["study"] == {"experiment": "micro"}
    assert [r["_step"] for r in decay["rows"]] == [2, 3] and decay["rows"][0]["train/loss"] == 3.0
    ft = runs["tiny/tok500-s0/synth_ft/full-lr0.001-s0"]
    assert ft["job_type"] == "finetune" and len(ft["rows"]) == 4 and "throughput/steps_per_s" in ft["rows"][-1]
    assert [r["_step"] for r in runs["tiny/evaluation-s0"]["rows"]] == [500, 1000]


@pytest.mark.e2e
def test_the_micro_study_in_tensorboard_and_wandb_reruns_nothing_else(micro_run, tmp_path):
    """Turning tracking on after a study has run adds the tracking job only; its files hold every
    training job and the evaluations, as the trackers' own readers see them."""
    import shutil

    from conftest import MICRO, merge, snakemake, write_config

    work = tmp_path / "micro"
    shutil.copytree(micro_run[0], work, symlinks=True)
    cfg = write_config(work / "tracked.yaml", merge(MICRO, {"tracking": {"tensorboard": True, "wandb": True}}))
    plan = snakemake(work, cfg, "-n", "--quiet", "rules")
    assert plan.returncode == 0, plan.stderr[-2000:]
    assert "tracking" in plan.stdout and not any(r in plan.stdout for r in ("pretrain", "finetune", "evaluate"))
    r = snakemake(work, cfg, "--cores", "1")
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    root = work / "results" / "micro" / "tracking"
    curves = pd.read_csv(work / "results" / "micro" / "tables" / "training_curves.csv")
    pretraining = curves[curves["phase"] == "pretrain"]
    ckpt = pretraining["ckpt"].iloc[0]
    board = tensorboard_scalars(root / "tensorboard" / "tiny" / ckpt)
    assert len(board["train/loss"]) == (pretraining["ckpt"] == ckpt).sum()
    assert board["throughput/tokens_per_s"][0][1] > 0  # from the job's Snakemake benchmark
    runs = wandb_runs(root / "wandb")
    finetunes = curves[curves["phase"] == "finetune"].groupby(["ckpt", "ft_task", "lr", "seed"]).ngroups
    assert sum(r["job_type"] == "finetune" for r in runs.values()) == finetunes
    assert {r["group"] for r in runs.values()} == {"micro"}
    evaluation = [r for name, r in runs.items() if name.startswith("tiny/evaluation")]
    assert evaluation and all(len(r["rows"]) == len({row["_step"] for row in r["rows"]}) for r in evaluation)
