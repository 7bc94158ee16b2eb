#!/usr/bin/env python
"""A recorded run of the README's one command (`examples/extend_ner.py`, Recipe 1), as written, on CrossNER politics,
against the benchmark figure it should reach.

The README's files are made from the shared data:
- ``conll-tagger``: the CoNLL-2003 MiniLM tagger that ``domain_extension`` / ``consolidation_domain`` extend (seed 0,
  1 epoch of CoNLL train), saved with its tokenizer;
- ``politics/{train,dev,test}.txt``: CrossNER politics train and test; dev is its first 200 sentences (the
  benchmarks' validation set);
- ``news.txt``: the benchmarks' 1000 CoNLL train sentences, one per line, labels dropped (rehearsal text);
- ``politics_text.txt``: the rest of CrossNER politics dev (341 sentences), labels dropped (domain text).

Only the paths differ from the README's command (and ``--push_to_hub`` is left out: the machine is offline). Its
domain test F1 is compared with ``consolidation_domain``'s extended model (adapter + rehearsal + parents, the library's
extension defaults, the same source, data and seed); its consolidated model with that benchmark's
``steps + domain text`` run.

    nohup python -m benchmarks.readme_command > readme_command.log 2>&1 &
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import CACHE, RESULTS, shared_data_dir, target, write_results
from benchmarks.domain_extension import REHEARSAL, SUBTYPE_INIT_DEFAULT
from benchmarks.fewshot_extension import source_bench

ROOT = Path(__file__).resolve().parents[1]
DEV_SENTENCES = 200
# The README's command (Recipe 1), with {placeholders} for where its files are here.
COMMAND = ("python examples/extend_ner.py --model_name_or_path {tagger} "
           "--train_file {politics}/train.txt --validation_file {politics}/dev.txt --test_file {politics}/test.txt "
           "--label_map person=PER,organisation=ORG,location=LOC,country=LOC,misc=MISC "
           "--label_parents politician=PER,politicalparty=ORG,election=MISC,event=MISC --rehearsal_file {news} "
           "--unlabelled_file {text} --output_dir {output} --consolidate")


def conll_lines(sentences) -> str:
    return "".join("".join(f"{word}\t{tag}\n" for word, tag in zip(row["tokens"], row["tags"])) + "\n"
                   for row in sentences)


def readme_files(folder: Path, options) -> dict:
    """The README command's inputs, made from the shared data (see the module docstring)."""
    bench = source_bench(options)
    tagger = folder / "conll-tagger"
    if not (tagger / "config.json").is_file():
        bench.source(0).save_pretrained(tagger)
        bench.tokenizer.save_pretrained(tagger)
    politics = folder / "politics"
    politics.mkdir(parents=True, exist_ok=True)
    crossner = shared_data_dir() / "crossner" / "politics"
    blocks = (crossner / "dev.txt").read_text(encoding="utf-8").strip("\n").split("\n\n")
    for split in ("train", "test"):
        (politics / f"{split}.txt").write_text((crossner / f"{split}.txt").read_text(encoding="utf-8"), encoding="utf-8")
    (politics / "dev.txt").write_text("\n\n".join(blocks[:DEV_SENTENCES]) + "\n", encoding="utf-8")
    text = [" ".join(line.split("\t")[0] for line in block.split("\n")) for block in blocks[DEV_SENTENCES:]]
    (folder / "politics_text.txt").write_text("\n".join(text) + "\n", encoding="utf-8")
    news = [" ".join(words) for words in bench.rehearsal_pool[:REHEARSAL]]
    (folder / "news.txt").write_text("\n".join(news) + "\n", encoding="utf-8")
    return {"tagger": tagger, "politics": politics, "news": folder / "news.txt", "text": folder / "politics_text.txt",
            "output": folder / "politics-tagger"}


def benchmark_figures(results_dir: Path) -> dict:
    """consolidation_domain's politics seed-0 runs, and the subtype_init they were made with (runs from before the
    setting existed had only the ``sampled`` behaviour)."""
    results = json.loads((results_dir / "consolidation_domain.json").read_text())
    runs = results["runs"]
    return {"extended": runs["politics/seed0/extended"], "consolidated": runs.get("politics/seed0/steps + domain text"),
            "subtype_init": results["settings"].get("subtype_init", "sampled")}


def table_row(model: str, overall: float, new: float, bio_invalid_spans) -> str:
    """One row of the comparison table: F1 in %, and the BIO-invalid span count ('' where none was measured)."""
    return f"| {model} | {overall:.2f} | {new:.2f} | {bio_invalid_spans} |"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--state", default=str(CACHE / "readme_command"))
    parser.add_argument("--source_state", default=str(CACHE / "domain_extension"),
                        help="Where the CoNLL sources of benchmarks/domain_extension.py are kept.")
    parser.add_argument("--results_dir", default=str(RESULTS))
    options = parser.parse_args(argv)
    options.source_epochs, options.limit = 1.0, None  # the source the domain benchmarks extend
    folder = Path(options.state)
    files = readme_files(folder, options)
    command = COMMAND.format(**{k: shlex.quote(os.path.relpath(v, ROOT)) for k, v in files.items()})
    results_file = files["output"] / "all_results.json"
    started = time.perf_counter()
    if not results_file.is_file():
        subprocess.run(shlex.split(command.replace("python ", f"{sys.executable} ", 1)), cwd=ROOT, check=True)
    minutes = (time.perf_counter() - started) / 60
    run = json.loads(results_file.read_text())
    bench = benchmark_figures(Path(options.results_dir))
    consolidated = run.get("consolidated", {})
    ours = {"domain_overall_f1": 100 * run["after"]["overall_f1"], "domain_new_f1": 100 * run["after"]["new_f1"]}
    rows = ["| model | domain overall F1 | domain new-type F1 | BIO-invalid spans |", "|---|---|---|---|",
            table_row("README command: extended", ours["domain_overall_f1"], ours["domain_new_f1"],
                      consolidated.get("extended_bio_invalid_spans", "")),
            table_row("benchmark (consolidation_domain, extended)", bench["extended"]["domain_overall_f1"],
                      bench["extended"]["domain_new_f1"], bench["extended"]["domain_bio_invalid_spans"])]
    for prefix, name in (("consolidated", "token by token"), ("consolidated_constrained", "BIO-constrained")):
        if f"{prefix}_overall_f1" in consolidated:
            rows.append(table_row(f"README command: consolidated, {name}", 100 * consolidated[f"{prefix}_overall_f1"],
                                  100 * consolidated[f"{prefix}_new_f1"], consolidated[f"{prefix}_bio_invalid_spans"]))
    theirs = bench["consolidated"] or {}
    for scores, name in ((theirs, "token by token"), (theirs.get("constrained"), "BIO-constrained")):
        if scores:
            rows.append(table_row(f"benchmark (consolidation_domain, steps + domain text), {name}",
                                  scores["domain_overall_f1"], scores["domain_new_f1"],
                                  scores["domain_bio_invalid_spans"]))
    gap = ours["domain_overall_f1"] - bench["extended"]["domain_overall_f1"]
    payload = {"command": command, "minutes_this_call": minutes, "run": run, "benchmark": bench,
               "targets": [target("README command - benchmark adapter+rehearsal+parents (consolidation_domain, extended), "
                                  "domain overall F1 (politics, seed 0)", gap, -1.0, ">=")]}
    text = (f"The README's command, run as written on CrossNER politics (paths aside; no --push_to_hub):\n\n    "
            f"{command}\n\nIt trained {run['train_seconds']:.0f} s (best step {run['best_step']}; the self-training run on "
            f"the domain text kept: {(run.get('self_training') or {}).get('kept')}). The benchmark's extended model is "
            "adapter + rehearsal + parents without domain text, made with `subtype_init="
            f"{bench['subtype_init']}` (the README command: the library's default, `{SUBTYPE_INIT_DEFAULT}`). Consolidated: the same run's `--consolidate`, tagged "
            "token by token and under BIO (`BIOTokenClassificationPipeline` / `predict_tags(decoding=\"bio\")`). Entity "
            "F1 % on the domain test:\n\n" + "\n".join(rows) + "\n")
    write_results("readme_command", payload, text, results_dir=Path(options.results_dir))
    return payload


if __name__ == "__main__":
    main()
