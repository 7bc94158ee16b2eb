#!/usr/bin/env python
"""Extend a CoNLL-2003 tagger to a new domain whose new types refine old ones (CrossNER politics / music), and
check that the old types survive on CoNLL test.

Per seed, one MiniLM source trained on all of CoNLL train (kept in ``benchmarks/.cache``). Each method extends it
on the domain's 200 (politics) / 100 (music) training sentences, with the epoch chosen on the domain's dev set
(overall F1); each run is scored on the domain test (old / new / overall) and on CoNLL test (old types strict,
and with each subtype counted as its parent). The domain's generic types take the source's names (person→PER,
organisation→ORG, location/country→LOC, misc→MISC). Every run is kept as soon as it finishes, so an interrupted
run resumes where it stopped (run it with nohup; it writes results after each run).

    nohup python -m benchmarks.domain_extension --seeds 0 > domain_extension.log 2>&1 &
    python -m benchmarks.domain_extension --curve      # rehearsal sentences 0 / 250 / 1000 / 4000, politics
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

from transformers import (
    AutoModelForTokenClassification,
    AutoTokenizer,
    DataCollatorForTokenClassification,
    Trainer,
    TrainingArguments,
    set_seed,
)

from benchmarks.common import CACHE, RESULTS, save_figure, save_runs, shared_data_dir, target, write_results
from benchmarks.paper_grid import KeepBestCallback, default_encoder
from hf_adapter_ext import (
    AdapterDataCollator,
    NeuralAdapterConfig,
    adapter_optimizer,
    add_rehearsal,
    add_source_logits,
    get_adapter_model,
)
from hf_adapter_ext.data import (
    CONLL2003_LABELS,
    conll_dataset,
    load_conll,
    rename_types,
    tokenize_and_align_labels,
    with_label_order,
)
from hf_adapter_ext.metrics import entity_f1_compute_metrics, evaluate_tagger

GENERIC = {"person": "PER", "organisation": "ORG", "location": "LOC", "country": "LOC", "misc": "MISC"}
# Where CoNLL-2003's guidelines put each new type: people and organisations of the domain, and MISC for events,
# works (albums, songs) and awards. Genres and instruments are not CoNLL entities: no parent.
PARENTS = {"politician": "PER", "politicalparty": "ORG", "election": "MISC", "event": "MISC",
           "musicalartist": "PER", "band": "ORG", "album": "MISC", "song": "MISC", "award": "MISC"}
DOMAINS = ("politics", "music")
# the library's subtype initialisation, kept in the run state's settings: runs made under another default are not
# reused
SUBTYPE_INIT_DEFAULT = NeuralAdapterConfig.__dataclass_fields__["subtype_init"].default
REHEARSAL = 1000  # sentences of CoNLL train text (labels thrown away) for the rehearsal methods
METHODS = {  # name: (adapter options, rehearsal sentences, use parents)
    "expand": ({"adapter": "none"}, 0, False),
    "adapter": ({}, 0, False),
    "adapter+parents": ({}, 0, True),
    "adapter+rehearsal": ({}, REHEARSAL, False),
    "adapter+rehearsal+parents": ({}, REHEARSAL, True),
    "domain-only": (None, 0, False),
}
SEEDED = ("expand", "adapter", "adapter+rehearsal+parents")  # the methods every seed runs; others: first seed
BEST = "adapter+rehearsal+parents"
CURVE = (0, 250, 1000, 4000)


def domain_parents(new_types: list[str]) -> dict[str, str]:
    """The CoNLL parent of each of a domain's new types that has one (`PARENTS`)."""
    return {t: PARENTS[t] for t in new_types if t in PARENTS}


def arguments() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--domains", nargs="+", default=list(DOMAINS))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS),
                        help="Which methods to run, in this order (kept runs are never redone).")
    parser.add_argument("--source_epochs", type=float, default=1.0)
    parser.add_argument("--epochs", type=int, default=6, help="Most epochs per extension; the best on dev is kept.")
    parser.add_argument("--learning_rate", type=float, default=1e-4)
    parser.add_argument("--head_learning_rate", type=float, default=1e-3)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--curve", action="store_true", help="Only the rehearsal-size curve (politics, first seed).")
    parser.add_argument("--curve_sizes", type=int, nargs="+", default=list(CURVE),
                        help="Rehearsal sentences per curve point (runs are kept, so points can be added later).")
    parser.add_argument("--limit", type=int, default=None, help="Cap every split (smoke runs).")
    parser.add_argument("--state", default=str(CACHE / "domain_extension"), help="Where runs and sources are kept.")
    parser.add_argument("--results_dir", default=str(RESULTS))
    return parser


class Bench:
    def __init__(self, options: argparse.Namespace):
        self.options, self.data = options, shared_data_dir()
        self.encoder = default_encoder()
        self.tokenizer = AutoTokenizer.from_pretrained(self.encoder)
        conll = {split: self.limited(conll_dataset(self.data / "conll2003" / f"{split}.txt"))
                 for split in ("train", "validation", "test")}
        self.conll = conll
        self.rehearsal_pool = conll["train"].shuffle(seed=1234)["tokens"]  # its labels are never read

    def limited(self, dataset):
        return dataset.select(range(min(len(dataset), self.options.limit))) if self.options.limit else dataset

    def encode(self, dataset):
        return dataset.map(tokenize_and_align_labels, batched=True, remove_columns=dataset.column_names,
                           fn_kwargs={"tokenizer": self.tokenizer}, desc="Tokenizing")

    def training_args(self, seed: int, epochs: float, output: Path) -> TrainingArguments:
        return TrainingArguments(output_dir=str(output), num_train_epochs=epochs, seed=seed, eval_strategy="epoch",
                                 save_strategy="no", per_device_train_batch_size=self.options.batch_size,
                                 per_device_eval_batch_size=64, learning_rate=self.options.learning_rate,
                                 warmup_steps=20, report_to="none", disable_tqdm=True, logging_steps=50)

    def fit(self, model, train, validation, collator, epochs, seed, new_types=(), parents=None):
        args = self.training_args(seed, epochs, Path(self.options.state) / "runs")
        keep_best = KeepBestCallback(model)
        optimizer = adapter_optimizer(model, args.learning_rate, self.options.head_learning_rate, args.weight_decay)
        trainer = Trainer(model=model, args=args, train_dataset=train, eval_dataset=validation, data_collator=collator,
                          callbacks=[keep_best], optimizers=(optimizer, None),
                          compute_metrics=entity_f1_compute_metrics(model.config.id2label, new_types, parents))
        trainer.train()
        return model.eval(), keep_best.best_epoch

    def source(self, seed: int):
        """A CoNLL-2003 tagger trained on all of CoNLL train, kept on disk per seed and settings."""
        path = Path(self.options.state) / f"source_seed{seed}"
        settings = {"epochs": self.options.source_epochs, "lr": self.options.learning_rate, "limit": self.options.limit}
        stamp = path / "benchmark_settings.json"
        if stamp.is_file() and json.loads(stamp.read_text()) == settings:
            return AutoModelForTokenClassification.from_pretrained(path).eval()
        set_seed(seed)
        labels = list(CONLL2003_LABELS)
        model = AutoModelForTokenClassification.from_pretrained(
            self.encoder, id2label=dict(enumerate(labels)), label2id={v: k for k, v in enumerate(labels)})
        model, _ = self.fit(model, self.encode(self.conll["train"]), self.encode(self.conll["validation"]),
                            DataCollatorForTokenClassification(self.tokenizer), self.options.source_epochs, seed)
        model.save_pretrained(path)
        stamp.write_text(json.dumps(settings))
        return model

    def domain(self, name: str):
        files = {split: self.data / "crossner" / name / f"{split}.txt" for split in ("train", "dev", "test")}
        data = rename_types(load_conll(files), GENERIC)
        data = type(data)({split: self.limited(ds) for split, ds in data.items()})
        types = sorted({tag[2:] for tag in data["train"].features["ner_tags"].feature.names if tag != "O"})
        new_types = [t for t in types if t not in GENERIC.values()]
        return data, new_types

    def run(self, method: str, domain: str, seed: int, rehearsal: int | None = None) -> dict:
        options, default_rehearsal, use_parents = METHODS[method]
        rehearsal = default_rehearsal if rehearsal is None else rehearsal
        data, new_types = self.domain(domain)
        parents = domain_parents(new_types)
        started = time.perf_counter()
        set_seed(seed)
        if options is None:  # a new tagger trained on the domain alone
            labels = list(CONLL2003_LABELS) + [f"{p}-{t}" for t in new_types for p in "BI"]
            model = AutoModelForTokenClassification.from_pretrained(
                self.encoder, id2label=dict(enumerate(labels)), label2id={v: k for k, v in enumerate(labels)})
            data = with_label_order(data, labels)
            model, epoch = self.fit(model, self.encode(data["train"]), self.encode(data["dev"]),
                                    DataCollatorForTokenClassification(self.tokenizer), self.options.epochs, seed,
                                    new_types, parents)
        else:
            config = NeuralAdapterConfig(new_labels=[f"{p}-{t}" for t in new_types for p in "BI"],
                                         label_parents=parents if use_parents else None, **options)
            model = get_adapter_model(self.source(seed), config)
            data = with_label_order(data, model.config.id2label.values())
            train = self.encode(data["train"])
            if rehearsal:
                train = add_rehearsal(train, self.rehearsal_pool[:rehearsal], model, self.tokenizer)
            elif model.peft_config.uses_source_at_forward:
                train = add_source_logits(train, model, self.tokenizer)
            model, epoch = self.fit(model, train, self.encode(data["dev"]), AdapterDataCollator(self.tokenizer),
                                    self.options.epochs, seed, new_types, parents)
        seconds = time.perf_counter() - started
        id2label = model.config.id2label
        conll_test = with_label_order(self.conll["test"], list(id2label.values()))
        domain_scores = evaluate_tagger(model, self.encode(data["test"]), self.tokenizer, id2label, new_types, parents)
        conll_scores = evaluate_tagger(model, self.encode(conll_test), self.tokenizer, id2label, new_types, parents)
        pick = ("overall_f1", "old_f1", "new_f1", "old_f1_with_subtypes")
        return {"domain": {k: 100 * domain_scores[k] for k in pick},
                "conll": {k: 100 * conll_scores[k] for k in ("old_f1", "old_f1_with_subtypes", "PER_f1", "ORG_f1",
                                                             "LOC_f1", "MISC_f1") if k in conll_scores},
                "best_epoch": epoch, "train_seconds": seconds, "rehearsal_sentences": rehearsal,
                "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}

    def source_scores(self, seed: int) -> dict:
        model = self.source(seed)
        id2label = model.config.id2label
        scores = evaluate_tagger(model, self.encode(self.conll["test"]), self.tokenizer, id2label)
        return {"conll": {k: 100 * scores[k] for k in ("overall_f1", "PER_f1", "ORG_f1", "LOC_f1", "MISC_f1")}}


def mean(values):
    return sum(values) / len(values) if values else float("nan")


def summarise(state: dict, options) -> None:
    """Tables (mean over seeds), targets per domain, and the plot, from every run kept so far."""
    runs, rows, targets = state["runs"], [], []
    source_old = mean([s["conll"]["overall_f1"] for s in state["sources"].values()])
    rows += ["| domain | method | seeds | domain overall | domain old | domain new | CoNLL old (strict) | "
             "CoNLL old (subtypes as parent) | CoNLL PER | best epoch |", "|---|---|---|---|---|---|---|---|---|---|"]
    summary: dict = {}
    for domain in DOMAINS:
        for method in METHODS:
            found = [r for key, r in runs.items() if key.startswith(f"{domain}/{method}/seed")]
            if not found:
                continue
            s = {"seeds": len(found),
                 **{f"domain_{k}": mean([r["domain"][k] for r in found]) for k in ("overall_f1", "old_f1", "new_f1")},
                 **{f"conll_{k}": mean([r["conll"][k] for r in found]) for k in ("old_f1", "old_f1_with_subtypes",
                                                                                 "PER_f1")}}
            summary[f"{domain}/{method}"] = s
            rows.append(f"| {domain} | {method} | {s['seeds']} | {s['domain_overall_f1']:.2f} | "
                        f"{s['domain_old_f1']:.2f} | {s['domain_new_f1']:.2f} | {s['conll_old_f1']:.2f} | "
                        f"{s['conll_old_f1_with_subtypes']:.2f} | {s['conll_PER_f1']:.2f} | "
                        f"{mean([r['best_epoch'] or 0 for r in found]):.1f} |")
        best, expand = summary.get(f"{domain}/{BEST}"), summary.get(f"{domain}/expand")
        if best and state["sources"]:
            targets += [
                target(f"{domain}: CoNLL old-type F1 strict - source ({best['seeds']} seeds)",
                       best["conll_old_f1"] - source_old, -3.0, ">="),
                target(f"{domain}: CoNLL old-type F1, subtypes as parent - source", best["conll_old_f1_with_subtypes"]
                       - source_old, -0.5, ">=")]
        if best and expand:
            targets += [target(f"{domain}: domain overall F1 - expand's", best["domain_overall_f1"]
                               - expand["domain_overall_f1"], 0.0, ">="),
                        target(f"{domain}: domain new-type F1 - expand's", best["domain_new_f1"]
                               - expand["domain_new_f1"], -0.5, ">=")]
    curve = {key: r for key, r in runs.items() if key.startswith("curve/")}
    table = (f"CoNLL-2003 source (MiniLM, all of CoNLL train, {options.source_epochs} epoch): CoNLL test F1 "
             f"{source_old:.2f} (mean over {len(state['sources'])} seed(s)). Extensions on CrossNER, best epoch on "
             f"the domain dev set (≤ {options.epochs}); rehearsal = {REHEARSAL} CoNLL train sentences, labels thrown "
             "away. Entity F1 %. The tables hold every run kept under these settings (runs.json in the --state "
             "folder), whichever command ran it (the command above wrote this file).\n\n" + "\n".join(rows))
    if curve:
        table += ("\n\nRehearsal size (politics, adapter+rehearsal+parents, first seed):\n\n| sentences | CoNLL old "
                  "strict | CoNLL old (subtypes as parent) | domain overall | domain new | train s | peak RSS GiB |\n"
                  "|---|---|---|---|---|---|---|\n" + "\n".join(
                      f"| {r['rehearsal_sentences']} | {r['conll']['old_f1']:.2f} | "
                      f"{r['conll']['old_f1_with_subtypes']:.2f} | {r['domain']['overall_f1']:.2f} | "
                      f"{r['domain']['new_f1']:.2f} | {r['train_seconds']:.0f} | {r['peak_rss_gib']:.2f} |"
                      for r in sorted(curve.values(), key=lambda r: r["rehearsal_sentences"])))
    plot(summary, runs, source_old, Path(options.results_dir))
    table += "\n\n![domain F1 vs CoNLL old-type F1](domain_extension.png)\n"
    write_results("domain_extension", {"summary": summary, "runs": runs, "sources": state["sources"],
                                       "parents": PARENTS, "settings": vars(options), "targets": targets}, table,
                  results_dir=Path(options.results_dir))


def plot(summary: dict, runs: dict, source_old: float, results_dir: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(DOMAINS), figsize=(11, 4.5), squeeze=False)
    for ax, domain in zip(axes[0], DOMAINS):
        for key, r in runs.items():
            if key.startswith(f"{domain}/"):
                method = key.split("/")[1]
                ax.scatter(r["conll"]["old_f1"], r["domain"]["overall_f1"], s=18,
                           color=f"C{list(METHODS).index(method)}", label=method)
        handles = dict(zip(*reversed(ax.get_legend_handles_labels())))
        ax.legend(handles.values(), handles.keys(), fontsize=7)
        ax.axvline(source_old, color="grey", ls="--", lw=0.8)
        ax.set_title(f"CrossNER {domain}: one point per run", fontsize=9)
        ax.set_xlabel("CoNLL test old-type F1, strict (dashed: source)")
        ax.set_ylabel("domain test overall F1")
    save_figure(fig, results_dir, "domain_extension")


def main(argv: list[str] | None = None) -> dict:
    options = arguments().parse_args(argv)
    state_file = Path(options.state) / "runs.json"
    state = json.loads(state_file.read_text()) if state_file.is_file() else {"runs": {}, "sources": {}}
    settings = {k: v for k, v in vars(options).items() if k not in ("seeds", "curve", "curve_sizes", "domains",
                                                                     "methods")}
    settings["subtype_init"] = SUBTYPE_INIT_DEFAULT
    if state.get("settings") != settings:
        state = {"runs": {}, "sources": {}, "settings": settings}
    bench = Bench(options)

    def keep(key: str, compute) -> None:
        if key in state["runs"]:
            return
        print(f"== {key}", flush=True)
        state["runs"][key] = compute()
        save_runs(state, state_file, [key])
        summarise(state, options)

    jobs = []
    if options.curve:
        jobs = [(f"curve/{n}", BEST, "politics", options.seeds[0], n) for n in options.curve_sizes]
        same = state["runs"].get(f"politics/{BEST}/seed{options.seeds[0]}")
        if same and f"curve/{REHEARSAL}" not in state["runs"]:  # the best method's own run is this curve point
            state["runs"][f"curve/{REHEARSAL}"] = same
    else:
        for seed in options.seeds:
            for domain in options.domains:
                for method in options.methods:
                    if method in SEEDED or seed == options.seeds[0]:
                        jobs.append((f"{domain}/{method}/seed{seed}", method, domain, seed, None))
    for key, method, domain, seed, rehearsal in jobs:
        if str(seed) not in state["sources"]:
            state["sources"][str(seed)] = bench.source_scores(seed)
        keep(key, lambda: bench.run(method, domain, seed, rehearsal))
    summarise(state, options)
    return state


if __name__ == "__main__":
    main()
