#!/usr/bin/env python
"""Does `examples/meta.py`, run with nothing but its defaults, reach the benchmark's SIB figure? CLINC150 5-way
1-shot, the benchmark's class split; the benchmark run here is `sib_fewshot.py`'s own protocol (seed 0, its
default steps and batch, the inner step size it chose on meta-validation), side by side with the same code.

    python -m benchmarks.meta_defaults
"""

from __future__ import annotations

import runpy
import tempfile
from pathlib import Path

from benchmarks.common import shared_data_dir, target, write_results
from benchmarks.sib_fewshot import arguments, run_sequence

ROOT = Path(__file__).resolve().parents[1]


def main() -> dict:
    bench_args = arguments().parse_args(["--datasets", "clinc150", "--shots", "1", "--seeds", "0", "--inner_lrs",
                                         "0.03"])
    results, _, _ = run_sequence(bench_args)
    bench = results["clinc150_1shot"][0]
    meta = runpy.run_path(str(ROOT / "examples" / "meta.py"), run_name="meta_defaults")["main"]
    with tempfile.TemporaryDirectory() as out:
        metrics = meta(["--data_dir", str(shared_data_dir()), "--output_dir", out, "--disable_tqdm", "true"])
    example = {m: 100 * metrics[f"test_{m}_accuracy"] for m in ("sib", "proto", "soft_kmeans")}
    gap = example["sib"] - 100 * bench["sib_k3"]["mean"]
    payload = {"benchmark": {m: 100 * bench[m]["mean"] for m in ("sib_k3", "proto", "soft_kmeans")},
               "benchmark_ci95": 100 * bench["sib_k3"]["ci95"], "example": example,
               "example_ci95": 100 * metrics["test_sib_accuracy_ci95"], "example_episodes": metrics["test_episodes"],
               "targets": [target("examples/meta.py defaults SIB - benchmark SIB, CLINC150 1-shot (points, |.|)",
                                  abs(gap), 0.5, "<=")]}
    table = ("| run | SIB | prototypes | soft k-means |\n|---|---|---|---|\n"
             f"| benchmarks/sib_fewshot.py (seed 0, {bench_args.test_episodes} episodes) | "
             f"{payload['benchmark']['sib_k3']:.2f} ± {payload['benchmark_ci95']:.2f} | {payload['benchmark']['proto']:.2f} "
             f"| {payload['benchmark']['soft_kmeans']:.2f} |\n"
             f"| examples/meta.py defaults ({metrics['test_episodes']} episodes) | {example['sib']:.2f} ± "
             f"{payload['example_ci95']:.2f} | {example['proto']:.2f} | {example['soft_kmeans']:.2f} |\n\n"
             "The two draw different test episodes from the same test classes (the example's evaluation seed and "
             "count, the benchmark's own), so the gap carries both runs' sampling error.")
    write_results("meta_defaults", payload, table)
    return payload


if __name__ == "__main__":
    main()
