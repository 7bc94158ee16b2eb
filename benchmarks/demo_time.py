#!/usr/bin/env python
"""Wall time of `make demo` (train a small CoNLL tagger without LOC, extend it to LOC with examples/extend_ner.py,
tag a sentence), and what it printed. Run it on an otherwise idle machine:

    python -m benchmarks.demo_time
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from benchmarks.common import shared_data_dir, target, write_results

ROOT = Path(__file__).resolve().parents[1]


def main() -> dict:
    env = {**os.environ, "HF_ADAPTER_EXT_DATA": str(shared_data_dir())}
    started = time.perf_counter()
    run = subprocess.run(["make", "demo"], cwd=ROOT, env=env, capture_output=True, text=True)
    minutes = (time.perf_counter() - started) / 60
    if run.returncode:
        raise RuntimeError(f"make demo failed (exit {run.returncode}):\n{run.stderr[-3000:]}")
    tagged = next((line.strip() for line in run.stdout.splitlines() if line.strip().startswith("[(")), "")
    payload = {"minutes": minutes, "tagged": tagged, "targets": [target("make demo wall minutes", minutes, 10, "<=")]}
    table = (f"`make demo`: {minutes:.1f} min wall. It tagged:\n\n    {tagged}\n\n(entity text is cut from the input "
             "by character offsets, so capitals survive the uncased tokenizer)")
    write_results("demo_time", payload, table)
    return payload


if __name__ == "__main__":
    main()
