#!/usr/bin/env python
"""Do `examples/meta.py`, run with nothing but its defaults, and the README's Python snippet, run as written,
reach the benchmark's SIB figure? CLINC150 5-way 1-shot, even query sets, the benchmark's class split. The
benchmark figure is `fewshot_intents.py`'s SIB with the library's defaults (the encoder shaped with the label
names, the equivariant net meta-trained on 5-way episodes reading the names; seed 0; read from its cache when the
run of fewshot_intents_names_aligned.md is kept). The snippet is read from
README.md and executed with only the names it leaves to the reader defined (``enc``, ``train_ds``, ``val_ds``);
its model is then scored on the test classes.

    python -m benchmarks.meta_defaults
"""

from __future__ import annotations

import os
import runpy
import tempfile
from pathlib import Path

from benchmarks import fewshot_intents
from benchmarks.common import shared_data_dir, target, write_results

ROOT = Path(__file__).resolve().parents[1]


def readme_snippet() -> str:
    """The README's SIB snippet, from its first line to ``trainer.train()``."""
    text = (ROOT / "README.md").read_text()
    start = text.index("```python", text.index("## Recipe 3: few-shot classification with SIB")) + len("```python")
    block = text[start : text.index("```", start)]
    return block[: block.index("trainer.train()") + len("trainer.train()")]


def run_readme_snippet(meta: dict) -> dict:
    from transformers import set_seed

    from benchmarks.sib_fewshot import minilm

    data_args = meta["MetaDataArguments"](data_dir=str(shared_data_dir()))
    _, train, validation, test = meta["class_splits"](data_args)
    names = {"enc": minilm(), "train_ds": train, "val_ds": validation}
    with tempfile.TemporaryDirectory() as work:
        cwd = os.getcwd()
        os.chdir(work)
        try:
            set_seed(42)
            exec(compile(readme_snippet(), "README.md", "exec"), names)  # our own README
            return names["trainer"].evaluate(test, metric_key_prefix="test")
        finally:
            os.chdir(cwd)


def main() -> dict:
    meta = runpy.run_path(str(ROOT / "examples" / "meta.py"), run_name="meta_defaults")
    with tempfile.TemporaryDirectory() as out:
        metrics = meta["main"](["--data_dir", str(shared_data_dir()), "--output_dir", out, "--disable_tqdm", "true"])
    snippet = run_readme_snippet(meta)
    # the library's defaults as fewshot_intents_names_aligned ran them, read from that run's cache when kept
    bench_args = fewshot_intents.arguments().parse_args([
        "--datasets", "clinc150", "--shots", "1", "--seeds", "0", "--candidates", "equivariant_names",
        "--setfit_5way", "0", "--setfit_allway", "1", "--setfit_seeds", "0", "--test_episodes", "1000",
        "--val_episodes", "300"])
    results, _, _ = fewshot_intents.run(bench_args)
    even = results["clinc150_1shot"][0]["5way_even"]  # the model on the shaped encoder
    bench = {"sib_k3": even["sib_k3"], "proto": even["proto_shaped"], "soft_kmeans": even["soft_kmeans_shaped"]}
    example = {m: 100 * metrics[f"test_{m}_accuracy"] for m in ("sib", "proto", "soft_kmeans")}
    readme = {m: 100 * snippet[f"test_{m}_accuracy"] for m in ("sib", "proto", "soft_kmeans")}
    reference = 100 * bench["sib_k3"]["mean"]
    payload = {"benchmark": {m: 100 * bench[m]["mean"] for m in ("sib_k3", "proto", "soft_kmeans")},
               "benchmark_ci95": 100 * bench["sib_k3"]["ci95"], "example": example,
               "example_ci95": 100 * metrics["test_sib_accuracy_ci95"], "example_episodes": metrics["test_episodes"],
               "readme_snippet": readme, "readme_snippet_ci95": 100 * snippet["test_sib_accuracy_ci95"],
               "targets": [target("examples/meta.py defaults SIB - benchmark SIB, CLINC150 1-shot (points, |.|)",
                                  abs(example["sib"] - reference), 0.5, "<="),
                           target("README snippet as written SIB - benchmark SIB, CLINC150 1-shot (points, |.|)",
                                  abs(readme["sib"] - reference), 0.5, "<=")]}
    table = ("| run | SIB | prototypes | soft k-means |\n|---|---|---|---|\n"
             f"| benchmarks/fewshot_intents.py, shaped encoder (seed 0, {bench_args.test_episodes} episodes) | "
             f"{payload['benchmark']['sib_k3']:.2f} ± {payload['benchmark_ci95']:.2f} | {payload['benchmark']['proto']:.2f} "
             f"| {payload['benchmark']['soft_kmeans']:.2f} |\n"
             f"| examples/meta.py defaults ({metrics['test_episodes']} episodes) | {example['sib']:.2f} ± "
             f"{payload['example_ci95']:.2f} | {example['proto']:.2f} | {example['soft_kmeans']:.2f} |\n"
             f"| README.md's Python snippet, as written ({snippet['test_episodes']} episodes) | {readme['sib']:.2f} ± "
             f"{payload['readme_snippet_ci95']:.2f} | {readme['proto']:.2f} | {readme['soft_kmeans']:.2f} |\n\n"
             "The runs draw different test episodes from the same test classes (the example's evaluation seed and "
             "count, the benchmark's own), so the gap carries both runs' sampling error.")
    write_results("meta_defaults", payload, table)
    return payload


if __name__ == "__main__":
    main()
