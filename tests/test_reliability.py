"""Killed runs resume bit-exactly; same seed, same weights; different seeds differ; batches are not pinned (and do not
warn) without an accelerator."""

import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch.utils.data import DataLoader

from hf_adapter_ext import MetaTrainingArguments
from hf_adapter_ext.validation import CheckedTrainingArguments

ROOT = Path(__file__).resolve().parents[1]


def run(kind: str, out: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.run([sys.executable, "-m", "tests.scripts.resumable_training", kind, str(out), *extra],
                          capture_output=True, text=True, timeout=600, env=env, cwd=ROOT)


def weights(out: Path) -> dict:
    return load_file(str(out / "final.safetensors"))


@pytest.mark.parametrize("kind", ["adapter", "meta"])
def test_a_run_killed_after_a_checkpoint_resumes_to_the_same_weights(tmp_path, kind):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    assert run(kind, straight).returncode == 0
    died = run(kind, killed, "--die_after_step", "4")
    assert died.returncode == 17, died.stderr[-2000:]
    assert (killed / "checkpoint-4").is_dir() and not (killed / "final.safetensors").exists()
    resumed = run(kind, killed, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    expected, got = weights(straight), weights(killed)
    assert expected.keys() == got.keys()
    for name in expected:
        assert torch.equal(expected[name], got[name]), f"{name} differs after resume"


@pytest.mark.parametrize("kind", ["adapter", "meta"])
def test_same_seed_same_weights_and_different_seeds_differ(tmp_path, kind):
    for name, seed in (("a", "0"), ("b", "0"), ("c", "1")):
        assert run(kind, tmp_path / name, "--seed", seed).returncode == 0
    a, b, c = (weights(tmp_path / name) for name in "abc")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a if k.startswith(("head.", "classifier", "adapter", "crf")))


@pytest.mark.skipif(torch.accelerator.is_available(), reason="pinning is what an accelerator wants")
def test_batches_are_not_pinned_without_an_accelerator(tmp_path):
    for arguments in (CheckedTrainingArguments, MetaTrainingArguments):
        args = arguments(output_dir=str(tmp_path), report_to="none")
        assert args.dataloader_pin_memory is False
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # pin_memory=True would warn here: "no accelerator is found"
            next(iter(DataLoader([torch.zeros(2)], pin_memory=args.dataloader_pin_memory)))
