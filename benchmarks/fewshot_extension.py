#!/usr/bin/env python
"""Label efficiency of extending a CoNLL-2003 tagger to a new domain: CrossNER politics / music with k labelled
training sentences, the rest of the domain's training sentences as unlabelled text (labels dropped).

Per seed, the MiniLM source of ``benchmarks/domain_extension.py`` (all of CoNLL train, kept in its cache). Each
method trains with the library's defaults (``extension_training_defaults``: at most 1500 steps, evaluated every 50
on the domain dev set, stopped after 6 evaluations without gain, a self-training run after 2; rehearsal drawn per
step, one rehearsal sentence per labelled one). The labelled samples are nested: per seed, the domain's training
sentences are shuffled once and k takes the first k. Scored on the domain test (overall / new types) and on CoNLL
test (old types, strict and with each subtype counted as its parent). Every run is kept as soon as it finishes, so
an interrupted run resumes.

    nohup python -m benchmarks.fewshot_extension --seeds 0 > fewshot_extension.log 2>&1 &
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable
from pathlib import Path

from transformers import TrainingArguments, set_seed

from benchmarks.common import CACHE, RESULTS, save_figure, save_runs, target, write_results
from benchmarks.domain_extension import DOMAINS, REHEARSAL, SUBTYPE_INIT_DEFAULT, Bench, domain_parents
from hf_adapter_ext import (
    AdapterDataCollator,
    ExtensionTrainer,
    NeuralAdapterConfig,
    NeuralAdapterModel,
    add_rehearsal,
    add_source_logits,
    extension_training_defaults,
    get_adapter_model,
)
from hf_adapter_ext.adapter.budget import EARLY_STOPPING_PATIENCE, MAX_STEPS, SELF_TRAINING_PATIENCE
from hf_adapter_ext.adapter.training import REHEARSAL_RATIO
from hf_adapter_ext.data import with_label_order
from hf_adapter_ext.launch import peak_memory_gib
from hf_adapter_ext.metrics import entity_f1_compute_metrics, evaluate_tagger, predicted_label_ids

KS = (10, 25, 50, 100, 0)  # 0: all of the domain's training sentences
METHODS = {  # name: (adapter options, rehearsal and parents, self-training on the unlabelled rest)
    "expand": ({"adapter": "none"}, False, False),
    "expand+rehearsal": ({"adapter": "none"}, True, False),
    "adapter+rehearsal": ({}, True, False),
    "adapter+rehearsal+self-training": ({}, True, True),
    "expand+rehearsal+self-training": ({"adapter": "none"}, True, True),
}
BEST = "adapter+rehearsal+self-training"
SELF_TRAINING = "+self-training"  # a self-training method's first run is the method named without it
SUBTYPE_INIT = {"parent": "as its parent's", "sampled": "drawn from the old rows' statistics"}  # for the table's text
CROSSNER_BERT_BASE = {"politics": 68.71, "music": 68.30}  # the CrossNER paper, BERT-base from CoNLL, no domain
# pre-training: the all-sentences target


def arguments() -> argparse.ArgumentParser:
    parser = domain_arguments(__doc__, "fewshot_extension")
    parser.add_argument("--ks", type=int, nargs="+", default=list(KS),
                        help="Labelled sentences per run (0: all); a k above the domain's count is refused.")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--results_name", default="fewshot_extension")
    parser.add_argument("--unlabelled_dev_rest", action="store_true",
                        help="Also give self-training the domain dev sentences after the first --dev_sentences (labels "
                             "dropped; any that also occur in the test set or among the first --dev_sentences left "
                             "out): raw domain text for k = all, where no training sentence is left unlabelled. Give "
                             "such a run its own --state.")
    return parser


def domain_arguments(description: str, state: str) -> argparse.ArgumentParser:
    """The options of the benchmarks that extend a CoNLL source to the CrossNER domains; runs kept in
    ``CACHE/<state>``."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--domains", nargs="+", default=list(DOMAINS), choices=list(DOMAINS))
    parser.add_argument("--dev_sentences", type=int, default=200,
                        help="Domain dev sentences that choose the step (the first ones of the dev file).")
    parser.add_argument("--source_epochs", type=float, default=1.0)
    parser.add_argument("--limit", type=int, default=None, help="Cap every split (smoke runs).")
    parser.add_argument("--state", default=str(CACHE / state), help="Where runs are kept.")
    parser.add_argument("--source_state", default=str(CACHE / "domain_extension"),
                        help="Where the CoNLL sources of benchmarks/domain_extension.py are kept.")
    parser.add_argument("--results_dir", default=str(RESULTS))
    parser.add_argument("--subtype_init", choices=list(SUBTYPE_INIT),
                        default=SUBTYPE_INIT_DEFAULT,
                        help="How subtype output rows start (NeuralAdapterConfig.subtype_init; the library's default "
                             "unless given); kept in the run state's settings, so runs of the two never mix.")
    parser.add_argument("--max_steps", type=int, default=None,
                        help="An extension's step budget (and learning-rate schedule length) instead of the library's "
                             "default; give such a run its own --state (and results name).")
    parser.add_argument("--rehearsal_ratio", type=float, default=None,
                        help="Rehearsal rows per labelled row in each batch instead of the library's default; give such "
                             "a run its own --state (and results name).")
    parser.add_argument("--patience", type=int, default=None,
                        help="Evaluations without gain before an extension's first run stops, instead of the "
                             "library's default; give such a run its own --state (and results name).")
    parser.add_argument("--distill_weight", type=float, default=None,
                        help="Weight of the rehearsal rows' distillation loss (NeuralAdapterConfig.distill_weight) "
                             "instead of the library's default; give such a run its own --state (and results name).")
    parser.add_argument("--conll_validation", action="store_true",
                        help="Also score CoNLL's validation split (old types, strict), so that a setting that trades "
                             "domain F1 for old types can be chosen on validation data (domain dev + CoNLL "
                             "validation) rather than on CoNLL test.")
    parser.add_argument("--rescore_conll_validation", action="store_true",
                        help="Train nothing: add CoNLL validation scores (as --conll_validation) to the runs already "
                             "kept in --state, from the checkpoints they kept (each run's recorded CoNLL test score "
                             "must come out again, else it stops), then write the results.")
    return parser


def source_bench(options) -> Bench:
    """domain_extension's data and sources (its settings: 1 epoch of CoNLL train at lr 1e-4, head lr 1e-3, batch 16)."""
    return Bench(argparse.Namespace(limit=options.limit, state=options.source_state, source_epochs=options.source_epochs,
                                    learning_rate=1e-4, head_learning_rate=1e-3, batch_size=16))


def train_extension(bench: Bench, options, method: str, domain: str, k: int, seed: int,
                    first_run_scored: Callable[..., None] | None = None):
    """One extension trained with the library's defaults: (model, record so far, the domain's data in the
    model's label order, new types, parents). With self-training, ``first_run_scored`` is called with the first
    run's (model, record, data, new types, parents) before the second run starts."""
    adapter_options, rehearse, self_train = METHODS[method]
    data, new_types = bench.domain(domain)
    if k > len(data["train"]):
        raise ValueError(f"k={k} is more than {domain}'s {len(data['train'])} training sentences; use --ks 0 for all "
                         "of them.")
    k = k or len(data["train"])
    parents = domain_parents(new_types)
    source = bench.source(seed)  # trained once per seed and kept: not part of an extension's time
    set_seed(seed)
    started = time.perf_counter()
    config = NeuralAdapterConfig(new_labels=[f"{p}-{t}" for t in new_types for p in "BI"],
                                 label_parents=parents if rehearse else None, subtype_init=options.subtype_init,
                                 **adapter_options, **({"distill_weight": options.distill_weight}
                                                       if options.distill_weight is not None else {}))
    model = get_adapter_model(source, config)
    id2label = model.config.id2label
    data = with_label_order(data, list(id2label.values()))
    pool = data["train"].shuffle(seed=seed)  # nested samples: k takes the first k of one order per seed
    labelled = bench.encode(pool.select(range(k)))
    unlabelled = pool["tokens"][k:] + (unlabelled_dev_rest(data, options.dev_sentences)
                                       if options.unlabelled_dev_rest else [])
    if rehearse:
        train = add_rehearsal(labelled, bench.rehearsal_pool[:REHEARSAL], model, bench.tokenizer)
    elif model.peft_config.uses_source_at_forward:
        train = add_source_logits(labelled, model, bench.tokenizer)
    else:
        train = labelled
    dev = bench.encode(data["dev"].select(range(min(options.dev_sentences, len(data["dev"])))))
    budget = extension_training_defaults()
    if options.max_steps:
        budget["max_steps"] = options.max_steps
    # one folder per run: save_total_limit deletes whatever else is in it (runs side by side)
    checkpoints = Path(options.state) / "checkpoints" / run_key(domain, method, k, seed)
    args = TrainingArguments(**budget, output_dir=str(checkpoints), seed=seed, report_to="none", disable_tqdm=True,
                             logging_steps=50, per_device_eval_batch_size=64)
    trainer = ExtensionTrainer(model=model, args=args, train_dataset=train, eval_dataset=dev,
                               early_stopping_patience=options.patience,  # None: the library's defaults
                               rehearsal_ratio=options.rehearsal_ratio,
                               data_collator=AdapterDataCollator(bench.tokenizer),
                               compute_metrics=entity_f1_compute_metrics(id2label, new_types, parents),
                               preprocess_logits_for_metrics=predicted_label_ids)
    result = trainer.train()
    record = {"k": k, "best_step": trainer.state.best_global_step, "steps": trainer.state.global_step,
              "dev_overall_f1": 100 * trainer.state.best_metric, "validation_curve": trainer.validation_curve(),
              "train_seconds_first_run": result.metrics["train_runtime"]}
    if self_train and unlabelled:
        if first_run_scored:
            first_run_scored(model.eval(), {**record, "train_seconds": time.perf_counter() - started}, data,
                             new_types, parents)
            model.train()
        report = trainer.self_train(unlabelled, bench.tokenizer, patience=SELF_TRAINING_PATIENCE)
        record["self_training"] = {**{key: v for key, v in report.items() if key != "train"},
                                   "patience": SELF_TRAINING_PATIENCE}
    record["train_seconds"] = time.perf_counter() - started
    return model.eval(), record, data, new_types, parents


def unlabelled_dev_rest(data, dev_sentences: int) -> list[list[str]]:
    """The dev sentences that do not choose the step (those after the first ``dev_sentences``) as raw domain text,
    without the few that also occur in the test set or among the step-choosing dev sentences, so that no sentence
    that scores or chooses the model is seen, even unlabelled."""
    dev = data["dev"]["tokens"]
    held_out = {tuple(tokens) for tokens in data["test"]["tokens"] + dev[:dev_sentences]}
    return [tokens for tokens in dev[dev_sentences:] if tuple(tokens) not in held_out]


def scored(bench: Bench, options, model, record: dict, data, new_types, parents) -> dict:
    """``record`` with the model's test scores: domain test (overall / old / new) and CoNLL test (old types); with
    ``--conll_validation`` also CoNLL validation (old types, strict)."""
    id2label = model.config.id2label

    def conll_old_f1(split: str) -> dict:
        conll = with_label_order(bench.conll[split], list(id2label.values()))
        scores = evaluate_tagger(model, bench.encode(conll), bench.tokenizer, id2label, new_types, parents)
        return {key: 100 * scores[key] for key in ("old_f1", "old_f1_with_subtypes")}

    domain_scores = evaluate_tagger(model, bench.encode(data["test"]), bench.tokenizer, id2label, new_types, parents)
    return {**record,
            "domain": {key: 100 * domain_scores[key] for key in ("overall_f1", "old_f1", "new_f1")},
            "conll": conll_old_f1("test"),
            **({"conll_validation": conll_old_f1("validation")} if options.conll_validation else {}),
            "peak_memory_gib": peak_memory_gib()}


def run(bench: Bench, options, method: str, domain: str, k: int, seed: int) -> dict:
    """The runs one training yields, by key: with self-training, its first run is also the run of the method without
    it (e.g. adapter+rehearsal; the same seed, data and settings), scored before the second run starts; with no
    unlabelled rest (k = all) there is no second run and the two are one run."""
    runs = {}
    self_trains = METHODS[method][2]
    first_run_key = run_key(domain, method.removesuffix(SELF_TRAINING), k, seed)

    def first_run_scored(*trained):
        runs[first_run_key] = scored(bench, options, *trained)

    model, record, data, new_types, parents = train_extension(bench, options, method, domain, k, seed,
                                                              first_run_scored if self_trains else None)
    runs[run_key(domain, method, k, seed)] = scored(bench, options, model, record, data, new_types, parents)
    if self_trains:
        runs.setdefault(first_run_key, runs[run_key(domain, method, k, seed)])
    return runs


def run_key(domain: str, method: str, k: int, seed: int) -> str:
    return f"{domain}/{method}/k{k or 'all'}/seed{seed}"


def kept_checkpoint(options, key: str, record: dict) -> Path:
    """The checkpoint a kept run's model came from: its first run's best step or, where the self-training run was
    kept, that run's. A method's first run may have been trained as its self-training twin's first run."""
    domain, method, _, seed = key.split("/")
    for trained in (method, method + SELF_TRAINING):
        folder = Path(options.state) / "checkpoints" / run_key(domain, trained, record["k"], int(seed[4:]))
        if method.endswith(SELF_TRAINING) and record["self_training"]["kept"] == "second":
            folder = folder / "self-training" / f"checkpoint-{record['self_training']['second_run_best_step']}"
        else:
            folder = folder / f"checkpoint-{record['best_step']}"
        if folder.is_dir():
            return folder
    raise FileNotFoundError(f"No checkpoint kept for {key} under {options.state}/checkpoints.")


def rescore_conll_validation(bench: Bench, options, state: dict) -> list[str]:
    """CoNLL validation scores for kept runs, from their checkpoints, after checking that each reproduces its
    recorded CoNLL test score; returns the keys of the runs scored."""
    rescored = []
    for key, record in state["runs"].items():
        domain, method, _, seed = key.split("/")
        if "conll_validation" in record or domain not in options.domains or int(seed[4:]) not in options.seeds \
                or not {method, method + SELF_TRAINING} & set(options.methods):
            continue
        model = NeuralAdapterModel.from_pretrained(bench.source(int(seed[4:])), kept_checkpoint(options, key, record))
        data, new_types = bench.domain(domain)
        data = with_label_order(data, list(model.config.id2label.values()))
        again = scored(bench, argparse.Namespace(conll_validation=True), model.eval(), {}, data, new_types,
                       domain_parents(new_types))
        if abs(again["conll"]["old_f1"] - record["conll"]["old_f1"]) > 0.05:
            raise ValueError(f"{key}: its checkpoint scores CoNLL test {again['conll']['old_f1']:.2f}, the record "
                             f"{record['conll']['old_f1']:.2f}; not the model that was scored.")
        record["conll_validation"] = again["conll_validation"]
        rescored.append(key)
        print(f"{key}: CoNLL validation old types {record['conll_validation']['old_f1']:.2f}", flush=True)
    return rescored


def domain_targets(domain: str, summary: dict, runs: dict, source_old: float) -> list[dict]:
    """The issue's targets on one domain, from the means over seeds: the best method with all labelled sentences
    against the CrossNER paper's BERT-base and the source's CoNLL score; with k = 25 against expand with k = 100
    (new types); its train time against expand's at each k."""
    def found(method, k):
        return summary.get(f"{domain}/{method}/k{k}")

    targets = []
    all_k = max((r["k"] for key, r in runs.items() if key.startswith(f"{domain}/") and "/kall/" in key), default=None)
    if all_k and found(BEST, all_k):
        best, seeds = found(BEST, all_k), found(BEST, all_k)["seeds"]
        targets += [target(f"{domain}, all {all_k} labelled sentences, {BEST} ({seeds} seeds): domain overall F1",
                           best["domain_overall_f1"], CROSSNER_BERT_BASE[domain], ">="),
                    target(f"{domain}, all labelled, {BEST}: CoNLL old-type F1 strict - source",
                           best["conll_old_f1"] - source_old, -1.0, ">=")]
    if found(BEST, 25) and found("expand", 100):
        targets.append(target(f"{domain}: {BEST} with k=25 + the unlabelled rest, new-type F1 - expand's with k=100 "
                              f"({found(BEST, 25)['seeds']} / {found('expand', 100)['seeds']} seeds)",
                              found(BEST, 25)["domain_new_f1"] - found("expand", 100)["domain_new_f1"], 0.0, ">="))
    for key in sorted(summary):
        name, method, k = key.split("/")
        if name == domain and method == BEST and found("expand", k[1:]):
            targets.append(target(f"{domain} {k}: {BEST} train seconds / expand's",
                                  summary[key]["train_seconds"] / found("expand", k[1:])["train_seconds"], 2.0, "<="))
    return targets


def mean(values):
    return sum(values) / len(values) if values else float("nan")


def paired_difference(runs: dict, domain: str, k: int, method: str, baseline: str) -> str:
    """``method``'s domain overall F1 minus ``baseline``'s with ``k`` labelled sentences, averaged over the seeds both
    have run (a mean over different seeds would mix seed luck into the difference), with that seed count."""
    def by_seed(name):
        return {key.rsplit("/", 1)[1]: r["domain"]["overall_f1"] for key, r in runs.items()
                if key.startswith(f"{domain}/{name}/") and r["k"] == k}

    ours, theirs = by_seed(method), by_seed(baseline)
    differences = [ours[seed] - theirs[seed] for seed in ours if seed in theirs]
    return f"{mean(differences):+.1f} ({len(differences)})" if differences else "—"


def summarise(state: dict, options) -> None:
    runs, sources = state["runs"], state["sources"]
    source_old = mean([s["conll"]["overall_f1"] for s in sources.values()])
    summary, targets, tables = {}, [], []
    for domain in DOMAINS:
        ks = sorted({r["k"] for key, r in runs.items() if key.startswith(f"{domain}/")})
        if not ks:
            continue
        rows = [f"**{domain}** — domain test overall F1 / new-type F1 / CoNLL test old-type F1 (strict); train seconds, "
                "best step, validation overall F1 that chose it (mean over seeds; seeds in brackets)", "",
                "| k | " + " | ".join(METHODS) + " | adapter − expand, both with rehearsal (overall; seeds both ran) "
                "| the same, both also self-training |",
                "|---|" + "---|" * (len(METHODS) + 2)]
        for k in ks:
            cells, means = [], {}
            for method in METHODS:
                found = [r for key, r in runs.items() if key.startswith(f"{domain}/{method}/") and r["k"] == k]
                if not found:
                    cells.append("—")
                    continue
                s = {"seeds": len(found), "train_seconds": mean([r["train_seconds"] for r in found]),
                     "best_step": mean([r["best_step"] or 0 for r in found]),
                     "dev_overall_f1": mean([r.get("dev_overall_f1", float("nan")) for r in found]),
                     **{f"domain_{m}": mean([r["domain"][m] for r in found]) for m in ("overall_f1", "new_f1")},
                     **{f"conll_{m}": mean([r["conll"][m] for r in found]) for m in ("old_f1", "old_f1_with_subtypes")}}
                validated = {key.rsplit("seed", 1)[1]: r["conll_validation"]["old_f1"] for key, r in runs.items()
                             if key.startswith(f"{domain}/{method}/") and r["k"] == k and "conll_validation" in r}
                if len(validated) == len(found):  # each against its own seed's source
                    s["conll_validation_old_f1_vs_source"] = mean([
                        f1 - sources[seed]["conll_validation"]["overall_f1"] for seed, f1 in validated.items()])
                if METHODS[method][2]:
                    s["second_run_kept"] = sum(r.get("self_training", {}).get("kept") == "second" for r in found)
                summary[f"{domain}/{method}/k{k}"] = means[method] = s
                cells.append(f"{s['domain_overall_f1']:.1f} / {s['domain_new_f1']:.1f} / {s['conll_old_f1']:.1f}; "
                             f"{s['train_seconds']:.0f} s, best step {s['best_step']:.0f}, dev "
                             f"{'—' if math.isnan(s['dev_overall_f1']) else round(s['dev_overall_f1'], 1)}"
                             + (f", CoNLL validation old types vs source {s['conll_validation_old_f1_vs_source']:+.2f}"
                                if "conll_validation_old_f1_vs_source" in s else "") + f" ({s['seeds']})")
            attribution = [paired_difference(runs, domain, k, f"adapter+rehearsal{extra}", f"expand+rehearsal{extra}")
                           for extra in ("", SELF_TRAINING)]
            rows.append(f"| {k} | " + " | ".join(cells + attribution) + " |")
        tables.append("\n".join(rows))
        targets += domain_targets(domain, summary, runs, source_old)
    selftrain = [r["self_training"] for r in runs.values() if "self_training" in r]
    # runs recorded before the self-training run had its own patience stopped on the first run's
    patiences = " or ".join(str(p) for p in sorted({s.get("patience", EARLY_STOPPING_PATIENCE) for s in selftrain}))
    patiences = f", the self-training run's {patiences}" if selftrain else ""  # no unlabelled rest at k = all
    text = (f"CoNLL-2003 source (MiniLM, all of CoNLL train, {options.source_epochs} epoch): CoNLL test F1 "
            f"{source_old:.2f} (mean over {len(sources)} seed(s)). Training: the library's defaults (at most "
            f"{options.max_steps or MAX_STEPS} steps, "
            f"evaluated every 50 on the first {options.dev_sentences} domain dev sentences, patience "
            f"{options.patience or EARLY_STOPPING_PATIENCE}{patiences}; rehearsal = "
            f"{REHEARSAL} CoNLL train sentences with labels thrown away, {options.rehearsal_ratio or REHEARSAL_RATIO:g} "
            "drawn per labelled sentence per step, with "
            f"label_parents; a subtype's output rows start {SUBTYPE_INIT[options.subtype_init]}). Self-training: the "
            "rest of the domain's training sentences" + (f" and the dev sentences after the first {options.dev_sentences}"
                                                         " (less any also in the test set)"
                                                         if options.unlabelled_dev_rest else "")
            + ", labels dropped, tagged by the first run (words at probability "
            ">= 0.9 labelled); the second run is kept only if its dev score is higher "
            f"(kept in {sum(s['kept'] == 'second' for s in selftrain)} of {len(selftrain)} runs). Entity F1 %."
            + (" CoNLL validation scores of runs kept before were added from their kept checkpoints "
               "(--rescore_conll_validation, which checks that each checkpoint gives the recorded CoNLL test score "
               "again); train seconds are the original runs'." if options.rescore_conll_validation else "")
            + "\n\n"
            + "\n\n".join(tables) + f"\n\n![domain F1 against k]({options.results_name}.png)\n")
    plot(summary, Path(options.results_dir), options.results_name)
    write_results(options.results_name, {"summary": summary, "runs": runs, "sources": sources,
                                        "settings": vars(options), "targets": targets}, text,
                  results_dir=Path(options.results_dir))


def plot(summary: dict, results_dir: Path, name: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(DOMAINS), figsize=(11, 7), squeeze=False)
    for column, domain in enumerate(DOMAINS):
        for index, method in enumerate(METHODS):
            points = sorted((int(key.rsplit("/k", 1)[1]), s) for key, s in summary.items()
                            if key.startswith(f"{domain}/{method}/k"))
            if not points:
                continue
            for row, (metric, label) in enumerate((("domain_overall_f1", "domain test overall F1"),
                                                    ("conll_old_f1", "CoNLL test old-type F1 (strict)"))):
                ax = axes[row][column]
                ax.plot([k for k, _ in points], [s[metric] for _, s in points], marker="o", color=f"C{index}",
                        label=method)
                ax.set_xscale("log")
                ax.set_xlabel("labelled domain sentences k")
                ax.set_ylabel(label)
                ax.set_title(f"CrossNER {domain}", fontsize=9)
        axes[0][column].legend(fontsize=7)
    save_figure(fig, results_dir, name)


def main(argv: list[str] | None = None) -> dict:
    options = arguments().parse_args(argv)
    state_file = Path(options.state) / "runs.json"
    state = json.loads(state_file.read_text()) if state_file.is_file() else {"runs": {}, "sources": {}}
    # options added later are kept only when set, so that runs kept before they existed still match
    later = ("patience", "rehearsal_ratio", "unlabelled_dev_rest", "distill_weight")
    settings = {k: options.__dict__[k] for k in ("dev_sentences", "source_epochs", "limit", "max_steps",
                                              "subtype_init", *later)
                if k not in later or options.__dict__[k] is not None and options.__dict__[k] is not False}
    if state.get("settings") != settings:
        state = {"runs": {}, "sources": {}, "settings": settings}
    bench = source_bench(options)
    if options.rescore_conll_validation:
        options.conll_validation = True
    for seed in options.seeds:
        if str(seed) not in state["sources"]:
            state["sources"][str(seed)] = bench.source_scores(seed)
        if options.conll_validation and "conll_validation" not in state["sources"][str(seed)]:
            source = bench.source(seed)
            scores = evaluate_tagger(source, bench.encode(bench.conll["validation"]), bench.tokenizer,
                                     source.config.id2label)
            state["sources"][str(seed)]["conll_validation"] = {"overall_f1": 100 * scores["overall_f1"]}
    if options.rescore_conll_validation:
        save_runs(state, state_file, rescore_conll_validation(bench, options, state))  # the sources' scores too
    for seed in options.seeds:
        for domain in options.domains:
            for k in options.ks:
                # self-training methods first: a first run is also the run of the method without self-training,
                # which then need not train again
                for method in sorted(options.methods, key=lambda m: not METHODS[m][2]):
                    key = run_key(domain, method, k, seed)
                    if key in state["runs"]:
                        continue
                    print(f"== {key}", flush=True)
                    trained = run(bench, options, method, domain, k, seed)
                    state["runs"].update(trained)
                    save_runs(state, state_file, trained)
                    summarise(state, options)
    summarise(state, options)
    return state


if __name__ == "__main__":
    main()
