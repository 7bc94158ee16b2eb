"""`accelerate launch examples/meta.py` on 2 CPU processes: one distributed job, results reported once.

That the processes split each step's episodes and end with one model (the same gradient as one process) is
tested on the trainer itself in tests/test_loss_normalisation.py.

On a machine without GPUs `--multi_gpu` starts torchrun processes that talk over gloo on the CPU.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .helpers import free_port
from .test_meta import intent_data, tiny_backbone

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.xdist_group("distributed")  # one launch at a time: each takes both cores


CONFIG_FILE = """compute_environment: LOCAL_MACHINE
distributed_type: MULTI_GPU
num_machines: 1
num_processes: 2
machine_rank: 0
mixed_precision: 'no'
dynamo_config: {}
use_cpu: false
"""


@pytest.mark.parametrize("launcher", ["flags", "config_file"])
def test_two_processes_form_one_job_and_report_once(tmp_path, tokenizer, launcher):
    """The README's command line, and the same settings from an `accelerate config` file."""
    backbone_dir, data_dir, out = tmp_path / "backbone", tmp_path / "data", tmp_path / "out"
    tiny_backbone(tokenizer.vocab_size).save_pretrained(backbone_dir)
    tokenizer.save_pretrained(backbone_dir)
    intent_data(tokenizer, classes=10, per_class=8).save_to_disk(str(data_dir))
    config = tmp_path / "accelerate.yaml"
    port = free_port()
    config.write_text(f"{CONFIG_FILE}main_process_port: {port}\n")
    flags = (["--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
              "--dynamo_backend", "no", "--main_process_port", str(port)] if launcher == "flags"
             else ["--config_file", str(config)])
    command = [
        sys.executable, "-m", "accelerate.commands.launch", *flags, str(ROOT / "examples" / "meta.py"),
        "--dataset", str(data_dir), "--backbone", str(backbone_dir), "--output_dir", str(out),
        "--n_way", "2", "--k_shot", "1", "--n_query", "2", "--max_steps", "5", "--per_device_train_batch_size", "3",
        "--train_episodes", "60", "--num_eval_episodes", "8", "--per_device_eval_batch_size", "2",
        "--disable_tqdm", "true", "--use_cpu", "true",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-4000:]
    results = json.loads((out / "results.json").read_text())
    assert results["world_size"] == 2, "the two processes must form one distributed job"
    assert results["test_episodes"] == 8  # gathered from both ranks, each episode once
    assert result.stdout.count('"test_sib_accuracy"') == 1, "only the main process reports"


def test_a_launch_that_would_duplicate_one_process_runs_fails_loudly(tmp_path, tokenizer):
    """Without GPUs and without --use_cpu, `--multi_gpu` gives each process world size 1: two copies of one run.
    That is refused in every process, naming the fix."""
    backbone_dir, data_dir = tmp_path / "backbone", tmp_path / "data"
    tiny_backbone(tokenizer.vocab_size).save_pretrained(backbone_dir)
    tokenizer.save_pretrained(backbone_dir)
    intent_data(tokenizer, classes=10, per_class=8).save_to_disk(str(data_dir))
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no", str(ROOT / "examples" / "meta.py"),
        "--dataset", str(data_dir), "--backbone", str(backbone_dir), "--output_dir", str(tmp_path / "out"),
        "--n_way", "2", "--max_steps", "2", "--disable_tqdm", "true",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env, cwd=ROOT)
    assert result.returncode != 0
    assert "--use_cpu true" in result.stderr and "world size 1" in result.stderr
    assert not (tmp_path / "out" / "results.json").exists()


def test_check_one_job_compares_the_launchers_world_size(monkeypatch):
    from types import SimpleNamespace

    from hf_adapter_ext.launch import check_one_job

    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match="WORLD_SIZE=2"):
        check_one_job(SimpleNamespace(world_size=1))
    check_one_job(SimpleNamespace(world_size=2))
    monkeypatch.delenv("WORLD_SIZE")
    check_one_job(SimpleNamespace(world_size=1))
