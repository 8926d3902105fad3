"""What a multi-GPU preset asks SLURM for: the 7B preset's fine-tunes request N GPUs and N tasks
(one per process), its evaluations one GPU; checked on the sbatch line the SLURM plugin builds."""

import re
from types import SimpleNamespace

from conftest import REPO, snakemake
from snakemake_executor_plugin_slurm.submit_string import get_submit_command
from snakemake_executor_plugin_slurm.utils import set_gres_string


class Resources(dict):
    __getattr__ = dict.get


def planned_resources(stdout: str, rule: str) -> list[dict]:
    out = []
    for block in stdout.split("\nrule ")[1:]:
        if block.startswith(f"{rule}:"):
            line = re.search(r"resources: (.*)", block)[1]
            pairs = (kv.split("=", 1) for kv in line.split(", "))
            out.append({k: int(v) if v.isdigit() else v for k, v in pairs})
    return out


def sbatch_line(resources: dict, threads: int) -> str:
    job = SimpleNamespace(resources=Resources(resources), threads=threads, name="job", wildcards={})
    params = {"run_uuid": "x", "slurm_logfile": "log", "comment_str": "c", "account": "", "partition": "", "workdir": "."}
    return get_submit_command(job, params) + set_gres_string(job)


def test_the_7b_preset_requests_n_gpus_and_n_tasks_per_fine_tune(tmp_path):
    r = snakemake(tmp_path, REPO / "configs" / "amber-7b.yaml", "-n")
    assert r.returncode == 0, r.stderr[-2000:]
    finetunes = planned_resources(r.stdout, "finetune")
    assert len(finetunes) == 6 * 2 * 3  # checkpoints × tasks × learning rates
    res = finetunes[0]
    assert (res["gpu"], res["tasks"], res["tasks_per_gpu"], res["cpus_per_gpu"]) == (4, 4, 1, 8)
    line = sbatch_line(res, threads=32)
    assert "--gpus=4" in line and "--ntasks-per-gpu=1" in line and "--cpus-per-gpu=8" in line
    evaluations = planned_resources(r.stdout, "evaluate_finetuned")
    assert evaluations and all(e["gpu"] == 1 and "tasks" not in e for e in evaluations)
    assert "--gpus=1" in sbatch_line(evaluations[0], threads=8)
