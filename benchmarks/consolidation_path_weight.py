#!/usr/bin/env python
"""Which distillation target should ``consolidate`` use? CoNLL LOC, MiniLM, the adapter/all/crf extension of the
consolidation check (``paper_grid --consolidate``), consolidated with each ``path_weight`` (the share of the
target that is the CRF's Viterbi path; the rest is its posterior marginals) and scored beside the extension on
CoNLL validation and test, paired per seed. The weight is chosen on validation (smallest mean |old gap| + |new
gap|); test is reported for every weight, and the targets are the chosen weight's test gaps. 0.5 was chosen
over 3 seeds and is ``consolidate``'s default.

The source and the extension are trained once per seed and kept (``--output_dir``, shared with the
paper_grid consolidation sweep's sources); each (seed, weight) score is kept as soon as it exists, so a run
resumes where it stopped and seeds can run as separate processes.

    OMP_NUM_THREADS=1 python -m benchmarks.consolidation_path_weight --seeds 0 --path_weights 0 0.5
    python -m benchmarks.consolidation_path_weight --seeds 0 1 2 --path_weights 0 0.5 --assemble  # kept runs only
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from transformers import TrainingArguments, set_seed

from benchmarks.common import CACHE, RESULTS, epoch_consolidation_args, target, write_results
from benchmarks.paper_grid import DEFAULTS, AdapterArguments, Experiment, ExperimentArguments, sweep_settings
from hf_adapter_ext import NeuralAdapterModel
from hf_adapter_ext.metrics import evaluate_tagger

EXTENSION = AdapterArguments(target="copy", adapter="bilstm", head="crf", trainable="all", annotation="full")


def arguments() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--path_weights", type=float, nargs="+", default=[0.0, 0.5])
    parser.add_argument("--output_dir", default=str(CACHE / "consolidation"))
    parser.add_argument("--limit", type=int, default=None, help="Cap every split (smoke runs).")
    parser.add_argument("--unlabelled_source", type=int, default=0,
                        help="Also distil on this many source-train sentences, labels dropped (the source's kind of "
                             "text); kept and reported apart, with the suffix _sourceN.")
    parser.add_argument("--results_dir", default=str(RESULTS))
    parser.add_argument("--assemble", action="store_true", help="Only build the table from the kept runs.")
    return parser


def experiment_for(options) -> Experiment:
    """The consolidation sweep's settings: MiniLM, LOC, 1 source epoch, 2 extension epochs at 1e-4 / 1e-3."""
    limit = options.limit
    exp = ExperimentArguments(new_type="LOC", backbone="minilm", source_epochs=1, head_learning_rate=1e-3,
                              max_source_train=limit, max_target_train=limit, max_validation=limit, max_eval=limit)
    args = TrainingArguments(**{**DEFAULTS, "output_dir": options.output_dir, "num_train_epochs": 2,
                                "learning_rate": 1e-4, "warmup_steps": 50, "disable_tqdm": True})
    return Experiment(exp, args)


def scores(experiment: Experiment, model) -> dict:
    """Old / new / all entity F1 (%) and BIO-invalid spans on CoNLL validation and test."""
    result = {}
    for part, data in (("validation", experiment.validation["all"]), ("test", experiment.test["all"])):
        s = evaluate_tagger(model, data, experiment.tokenizer, model.config.id2label, [experiment.task.new_type])
        result[part] = {"old_f1": 100 * s["old_f1"], "new_f1": 100 * s["new_f1"], "overall_f1": 100 * s["overall_f1"],
                        "bio_invalid_spans": s["bio_invalid_spans"]}
    return result


def suffix(options) -> str:
    """Runs that also distil on source-side text are kept and reported apart from target-data-only ones."""
    return f"_source{options.unlabelled_source}" if options.unlabelled_source else ""


def kept_extension(experiment: Experiment, root: Path, seed: int):
    """The seed's extension and its scores, trained and scored once and kept beside its source, whatever
    consolidations are run from it; ``retrained`` says the kept consolidations no longer match it."""
    settings = sweep_settings(experiment.exp, experiment.args)
    source = experiment.kept_source("linear", seed, root / "sources" / f"seed{seed}", settings)
    folder = root / "extended" / f"seed{seed}"
    scores_file = folder / "scores.json"
    retrained = not (folder / "adapter_config.json").is_file()
    if retrained:
        extended, _ = experiment.extend(source, EXTENSION, seed)
        extended.save_pretrained(folder)
    else:
        extended = NeuralAdapterModel.from_pretrained(source, folder).eval()
    if retrained or not scores_file.is_file():
        scores_file.write_text(json.dumps(scores(experiment, extended), indent=2))
    return extended, json.loads(scores_file.read_text()), retrained


def run_seed(experiment: Experiment, options, seed: int) -> dict:
    root = Path(options.output_dir)
    record_file = root / f"path_weight_seed{seed}{suffix(options)}.json"
    extended, extended_scores, retrained = kept_extension(experiment, root, seed)
    kept = json.loads(record_file.read_text()) if record_file.is_file() and not retrained else {}
    record = {"consolidated": kept.get("consolidated", {}), "extended": extended_scores}
    unlabelled = None
    if options.unlabelled_source:
        unlabelled = experiment.encoded("source_train").select(range(options.unlabelled_source))
    for weight in options.path_weights:
        if str(weight) in record["consolidated"]:
            continue
        set_seed(seed)
        student = extended.consolidate(experiment.encoded("target_train"), experiment.tokenizer, unlabelled=unlabelled,
                                       path_weight=weight,
                                       args=epoch_consolidation_args(Path(options.output_dir) / "consolidate", seed))
        record["consolidated"][str(weight)] = scores(experiment, student)
        record_file.parent.mkdir(parents=True, exist_ok=True)
        record_file.write_text(json.dumps(record, indent=2))
    return record


def gaps(record: dict, weight: float, part: str) -> dict:
    """Consolidated minus extended, old and new F1, and both BIO-invalid counts."""
    student, teacher = record["consolidated"][str(weight)][part], record["extended"][part]
    return {"old": student["old_f1"] - teacher["old_f1"], "new": student["new_f1"] - teacher["new_f1"],
            "bio_extended": teacher["bio_invalid_spans"], "bio_consolidated": student["bio_invalid_spans"]}


def mean_gaps(records: dict[int, dict], weight: float, seeds: list[int]) -> dict:
    return {part: {key: statistics.mean(gaps(records[s], weight, part)[key] for s in seeds)
                   for key in ("old", "new", "bio_extended", "bio_consolidated")} for part in ("validation", "test")}


def unlabelled_text(options) -> str:
    count = options.unlabelled_source
    return f" + {count} CoNLL source-train sentences as unlabelled text" if count else " only"


def summarise(records: dict[int, dict], options) -> dict:
    """Each weight over the seeds that hold it; the choice on validation over the seeds that hold every weight."""
    holding = {w: [s for s, r in sorted(records.items()) if str(w) in r["consolidated"]] for w in options.path_weights}
    weights = [w for w in options.path_weights if holding[w]]
    common = [s for s in sorted(records) if all(s in holding[w] for w in weights)]
    if not common:
        raise ValueError(f"No seed holds every path weight {weights}: run one (or name fewer --path_weights).")
    on_common = {w: mean_gaps(records, w, common)["validation"] for w in weights}
    chosen = min(weights, key=lambda w: abs(on_common[w]["old"]) + abs(on_common[w]["new"]))
    summary = {str(w): {"seeds": holding[w], **mean_gaps(records, w, holding[w])} for w in weights}
    rows = [f"| path_weight | val old gap (seeds {common}) | val new gap | seeds | test old gap | test new gap | "
            "test old gap per seed | BIO-invalid spans (test): extended → consolidated |",
            "|---|---|---|---|---|---|---|---|"]
    for w in weights:
        v, t = on_common[w], summary[str(w)]["test"]
        per_seed = ", ".join(f"{gaps(records[s], w, 'test')['old']:+.2f}" for s in holding[w])
        rows.append(f"| {w}{' (chosen)' if w == chosen else ''} | {v['old']:+.2f} | {v['new']:+.2f} | "
                    f"{', '.join(map(str, holding[w]))} | {t['old']:+.2f} | {t['new']:+.2f} | {per_seed} | "
                    f"{t['bio_extended']:.0f} → {t['bio_consolidated']:.0f} |")
    best, count = summary[str(chosen)]["test"], len(holding[chosen])
    targets = [target(f"LOC: |consolidated - extended {kind}-type F1|, test, path_weight={chosen} (chosen on "
                      f"validation), mean of {count} seeds", abs(best[kind]), 0.5, "<=") for kind in ("old", "new")]
    table = ("Consolidated minus extended entity F1 (points), CoNLL-2003, LOC added to a MiniLM PER/ORG/MISC tagger "
             "(adapter/all/crf, copy target), paired per seed, mean over seeds. path_weight = share of the "
             "distillation target that is the CRF's Viterbi path (the rest: its posterior marginals); consolidation "
             f"with library defaults otherwise (3 epochs, target data{unlabelled_text(options)}). Chosen on validation, over the seeds "
             "that hold every weight: smallest |old gap| + |new gap|.\n\n" + "\n".join(rows) + "\n")
    payload = {"settings": vars(options), "seeds": sorted(records), "chosen_path_weight": chosen,
               "summary": summary, "records": {str(s): r for s, r in records.items()}, "targets": targets}
    write_results(f"consolidation_path_weight{suffix(options)}", payload, table, results_dir=Path(options.results_dir))
    return payload


def kept_records(options) -> dict[int, dict]:
    files = {seed: Path(options.output_dir) / f"path_weight_seed{seed}{suffix(options)}.json" for seed in options.seeds}
    return {seed: json.loads(f.read_text()) for seed, f in files.items() if f.is_file()}


def main(argv: list[str] | None = None) -> dict:
    options = arguments().parse_args(argv)
    if options.assemble:
        return summarise(kept_records(options), options)
    experiment = experiment_for(options)
    records = {seed: run_seed(experiment, options, seed) for seed in options.seeds}
    return summarise(records, options)


if __name__ == "__main__":
    main()
