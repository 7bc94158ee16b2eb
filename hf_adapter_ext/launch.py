"""Multi-process launches (`accelerate launch`, `torchrun`) must make one distributed job, never copies of a
one-process run that each train alone and write the same outputs."""

from __future__ import annotations

import os
import resource

import torch


def check_one_job(args) -> None:
    """Refuse training arguments whose world size is not the launcher's: on a machine without GPUs,
    ``accelerate launch --multi_gpu`` starts processes that each see world size 1 unless told to use the CPU."""
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched > 1 and args.world_size != launched:
        raise ValueError(
            f"This process is one of {launched} started by a launcher (WORLD_SIZE={launched}), but training would run "
            f"with world size {args.world_size}: each process would train alone on the same data and write the same "
            "files. Without GPUs, add --use_cpu true (TrainingArguments(use_cpu=True)) or launch with "
            "`accelerate launch --cpu`, so the processes join one gloo job; with GPUs, check that each process sees "
            "its device (CUDA_VISIBLE_DEVICES)."
        )


def end_distributed() -> None:
    """Destroy the process group before the interpreter exits: gloo's threads torn down at exit can abort a rank
    ("terminate called without an active exception") after its work is done."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def peak_memory_gib() -> dict[str, float]:
    """This process's peak memory so far: resident host memory, and accelerator memory where there is one."""
    peak = {"host_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}  # ru_maxrss is in KiB on Linux
    if torch.cuda.is_available():
        peak["cuda_allocated"] = torch.cuda.max_memory_allocated() / 2**30
    return peak
