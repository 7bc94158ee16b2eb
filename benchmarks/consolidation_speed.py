#!/usr/bin/env python
"""Consolidation's cost per step with the extended model's distillation targets precomputed once (the default
whenever the budget visits a row more than once) against the teacher run at every step, side by side: the same
extension (CrossNER politics, adapter + rehearsal, kept by benchmarks/consolidation_domain.py), the same rows
(training sentences + rehearsal text + domain text, as that benchmark distils on), the same number of steps,
alternating, in one process.

    python -m benchmarks.consolidation_speed --steps 60 --rounds 2
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path

from transformers import TrainingArguments

from benchmarks.common import write_results
from benchmarks.consolidation_domain import arguments, consolidated_unlabelled, extension
from benchmarks.fewshot_extension import source_bench
from hf_adapter_ext.adapter import consolidation


def timed_consolidation(model, bench, data, unlabelled, steps: int, precomputed: bool) -> dict:
    """Seconds of one ``consolidate`` call of ``steps`` steps (no evaluation), its target precomputation
    included, and the Trainer's own train seconds."""
    keep = consolidation.visits_rows_more_than_once
    consolidation.visits_rows_more_than_once = (lambda *_: precomputed)  # both arms, whatever the budget
    try:
        args = TrainingArguments(output_dir=tempfile.mkdtemp(prefix="consolidation_speed_"), max_steps=steps,
                                 per_device_train_batch_size=16, learning_rate=5e-5, report_to="none",
                                 save_strategy="no", disable_tqdm=True, logging_strategy="no")
        start = time.perf_counter()
        plain = model.consolidate(bench.encode(data["train"]), bench.tokenizer, unlabelled=unlabelled, args=args)
        seconds = time.perf_counter() - start
    finally:
        consolidation.visits_rows_more_than_once = keep
    report = plain.consolidation_report
    assert report["teacher_targets_precomputed"] == precomputed and report["steps"] == steps
    return {"call_seconds": seconds, "train_seconds": report["train_seconds"]}


def main(argv: list[str] | None = None) -> dict:
    parser = arguments(__doc__)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=2)
    options = parser.parse_args(argv)
    state = json.loads((Path(options.state) / "runs.json").read_text())
    bench = source_bench(options)
    domain, seed = options.domains[0], options.seeds[0]
    model, data, _, _ = extension(bench, options, domain, seed, state)
    unlabelled = consolidated_unlabelled(bench, options, "steps + domain text", data)
    runs = {"precomputed": [], "per_step": []}
    for _ in range(options.rounds):
        for arm in runs:
            runs[arm].append(timed_consolidation(model, bench, data, unlabelled, options.steps, arm == "precomputed"))
    median = {arm: {k: statistics.median(r[k] for r in rows) for k in rows[0]} for arm, rows in runs.items()}
    per_step = {arm: m["train_seconds"] / options.steps for arm, m in median.items()}
    overhead = {arm: m["call_seconds"] - m["train_seconds"] for arm, m in median.items()}  # precomputation, setup
    break_even = (overhead["precomputed"] - overhead["per_step"]) / max(per_step["per_step"] - per_step["precomputed"],
                                                                        1e-9)
    rows = "\n".join(f"| {arm} | {per_step[arm]:.2f} | {overhead[arm]:.0f} | {median[arm]['call_seconds']:.0f} |"
                     for arm in median)
    table = (f"`consolidate` on the {domain} seed-{seed} extension (adapter + rehearsal), {options.steps} steps of 16 "
             f"rows from {len(data['train'])} training sentences + {len(unlabelled)} unlabelled sentences, no "
             f"evaluation; median of {options.rounds} alternating rounds.\n\n"
             "| teacher targets | Trainer seconds per step | seconds outside the Trainer (precomputation, setup) | "
             "seconds per call |\n|---|---|---|---|\n"
             f"{rows}\n\nA step with precomputed targets costs {per_step['precomputed'] / per_step['per_step']:.2f}x "
             f"one that runs the teacher; the precomputation pays for itself after {break_even:.0f} steps (the "
             "default budget runs up to 1500, stopped early on validation).\n")
    write_results("consolidation_speed", {"settings": vars(options), "runs": runs, "median": median,
                                          "seconds_per_step": per_step, "break_even_steps": break_even,
                                          "targets": []}, table)  # no issue names a target for this
    return median


if __name__ == "__main__":
    main()
