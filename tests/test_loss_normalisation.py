"""The loss must not depend on how a step's examples are split: one batch of 4, gradient accumulation
(2 x 2, 4 x 1) and DDP (2 gloo processes x 2) give the same logged loss and the same SGD step: for extensions,
SIB episodes and consolidation's distillation (with its transition loss)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from .scripts.one_step import one_step

ROOT = Path(__file__).resolve().parents[1]
KINDS = ["linear", "crf", "crf-new_only", "sib", "consolidation"]


def _loss(log: list) -> float:
    return next(entry["loss"] for entry in log if "loss" in entry)


def _assert_same_step(reference, other):
    (weights_a, log_a, before), (weights_b, log_b) = reference, other[:2]
    assert any(not torch.allclose(weights_a[k], before[k]) for k in weights_a), "the step must move the weights"
    assert weights_a.keys() == weights_b.keys()
    for name in weights_a:
        torch.testing.assert_close(weights_b[name], weights_a[name], atol=1e-5, rtol=1e-5, msg=name)
    assert _loss(log_b) == pytest.approx(_loss(log_a), rel=1e-5, abs=1e-6)


@pytest.fixture(scope="module")
def one_batch(tmp_path_factory):
    return {kind: one_step(tmp_path_factory.mktemp(kind), kind, 4, 1) for kind in KINDS}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("batch,accumulation", [(2, 2), (1, 4)])
def test_gradient_accumulation_equals_one_big_batch(tmp_path, one_batch, kind, batch, accumulation):
    _assert_same_step(one_batch[kind], one_step(tmp_path, kind, batch, accumulation))


@pytest.mark.xdist_group("distributed")
@pytest.mark.parametrize("kind", KINDS)
def test_two_ddp_processes_equal_one_process_at_the_same_global_batch(tmp_path, one_batch, kind):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "tests.scripts.one_step", str(tmp_path), kind, "2", "1"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-4000:]
    log = json.loads((tmp_path / "log.json").read_text())
    _assert_same_step(one_batch[kind], (load_file(str(tmp_path / "weights.safetensors")), log))
