"""Data-parallel fine-tuning over several processes: process group, DDP or FSDP2 wrapping, full
state dicts for saving and resuming, and the torchrun launch; a single process is a group of one.
Used by overtrain.training.loop and overtrain.training.finetune.

Every process sees the same global batch order and takes a contiguous slice of each step's
batch, and the loop normalises the loss over the labelled tokens of the whole global step, so N
processes make the same updates as one (tested with 2 CPU processes on gloo). On GPUs a process
owns one device (`cuda:<local rank>`, NCCL); FSDP2 (`fully_shard`) shards parameters, gradients
and optimizer state for models that do not fit one GPU.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from dataclasses import dataclass


@dataclass
class Group:
    """The processes a run trains on. This base class is one process (world 1): the loop and the
    fine-tune call the same methods whether or not the run is data-parallel (ProcessGroup)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: str = "cpu"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls, device: str) -> Group:
        """This process's group: a torchrun launch's (WORLD_SIZE > 1), else a single process."""
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            return ProcessGroup.join(device)
        return cls(device=device)

    def all_sum(self, tensor):
        """The sum of `tensor` over the processes (its value, on the CPU)."""
        return tensor

    def barrier(self) -> None:
        """Wait for every process."""

    def wrap(self, model, parallel: str, compute_dtype: str, no_sync: bool = False):
        """The model as the processes train it (itself, for one process)."""
        return model

    def sync(self, model, last: bool):
        """A context for one micro-batch's backward: gradients are synchronised over the
        processes on the last micro-batch of a step only (where the wrapper allows it)."""
        return contextlib.nullcontext()

    def full_model_state(self, model) -> dict:
        """The whole model's state dict on the main process (CPU tensors where gathered)."""
        return unwrap(model).state_dict()

    def train_state(self, model, optimizer) -> dict:
        """Model and optimizer state, whole, for resuming."""
        return {"model": model.state_dict(), "optimizer": optimizer.state_dict()}

    def load_train_state(self, model, optimizer, state: dict) -> None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])

    def close(self) -> None:
        """Leave the process group."""


@dataclass
class ProcessGroup(Group):
    """This process's place in a torchrun launch (gloo on CPUs, NCCL on GPUs)."""

    parallel: str = "ddp"
    no_sync: bool = False  # FSDP2: skip the reduce-scatter on non-final micro-batches

    @classmethod
    def join(cls, device: str) -> ProcessGroup:
        """Join the process group torchrun set up (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_*)."""
        import torch
        import torch.distributed as dist

        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        local = int(os.environ.get("LOCAL_RANK", rank))
        if device.startswith("cuda"):
            torch.cuda.set_device(local)
            device = f"cuda:{local}"
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
        return cls(rank, world, local, device)

    def all_sum(self, tensor):
        import torch.distributed as dist

        out = tensor.detach().clone().to(self.device)
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out.cpu()

    def barrier(self) -> None:
        import torch.distributed as dist

        dist.barrier()

    def wrap(self, model, parallel: str, compute_dtype: str, no_sync: bool = False):
        """DDP (a full replica per process) or FSDP2 (each decoder layer sharded, then the root).

        FSDP2 with bf16 gathers parameters in bf16 and reduces gradients in float32; the sharded
        master weights and optimizer state stay float32. `no_sync` (FSDP2) skips the gradient
        reduce-scatter on non-final micro-batches, as DDP always does: fewer collectives, but
        each process holds unsharded gradients until the step's last micro-batch.
        """
        import torch

        self.parallel, self.no_sync = parallel, no_sync
        if parallel == "ddp":
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.local_rank] if self.device.startswith("cuda") else None
            return DistributedDataParallel(model, device_ids=ids)
        if parallel != "fsdp":
            raise ValueError(f"unknown finetune.parallel {parallel!r}; allowed: ddp, fsdp")
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        mesh = init_device_mesh(self.device.split(":")[0], (self.world,))
        policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if compute_dtype == "bfloat16" else MixedPrecisionPolicy()
        blocks = set(getattr(unwrap(model), "_no_split_modules", None) or [])
        layers = [m for m in model.modules() if type(m).__name__ in blocks]
        if not layers:
            raise ValueError(f"{type(model).__name__}: no transformer blocks to shard (_no_split_modules); use finetune.parallel: ddp")
        for layer in layers:
            fully_shard(layer, mesh=mesh, mp_policy=policy)
        fully_shard(model, mesh=mesh, mp_policy=policy)
        if self.is_main:
            local = sum(p.to_local().numel() for p in model.parameters())
            total = sum(p.numel() for p in model.parameters())
            print(f"FSDP2: {len(layers)} blocks + root sharded over {self.world} processes; "
                  f"this process holds {local:,} of {total:,} parameters", flush=True)
        return model

    def sync(self, model, last: bool):
        """DDP: `no_sync()` on every micro-batch but the last (gradients accumulate locally, one
        all-reduce per step). FSDP2 with `no_sync`: the same through set_requires_gradient_sync."""
        if self.parallel == "ddp" and not last:
            return model.no_sync()
        if self.parallel == "fsdp" and self.no_sync:
            model.set_requires_gradient_sync(last)
        return contextlib.nullcontext()

    def full_model_state(self, model) -> dict:
        """The whole model's state dict on rank 0 (CPU), {} elsewhere."""
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        sd = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        return sd if self.is_main else {}

    def train_state(self, model, optimizer) -> dict:
        """Model and optimizer state, gathered to full tensors on rank 0, for resuming."""
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

        msd, osd = get_state_dict(model, optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        return {"model": msd, "optimizer": osd}

    def load_train_state(self, model, optimizer, state: dict) -> None:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_state_dict

        set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optimizer"],
                       options=StateDictOptions(full_state_dict=True))

    def close(self) -> None:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def unwrap(model):
    """The module inside a DDP wrapper (FSDP2 shards in place and keeps the module)."""
    return getattr(model, "module", model)


def launch(module: str, args: list[str], processes: int) -> None:
    """Run `python -m <module> <args>` as `processes` data-parallel processes on this node.

    torchrun's --standalone rendezvous picks a free local port; each process learns its rank
    from the environment. Output goes to this process's stdout/stderr (the job's log).
    """
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
           "-m", module, *args]
    print("launching:", " ".join(cmd), flush=True)
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_parent, os.environ.get("PYTHONPATH")]))}
    sys.stdout.flush()
    result = subprocess.run(cmd, env=env)  # inherits the job log's file descriptors
    if result.returncode != 0:
        raise RuntimeError(f"{processes}-process fine-tune failed (exit {result.returncode}); see the log above")
