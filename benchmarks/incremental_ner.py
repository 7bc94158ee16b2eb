#!/usr/bin/env python
"""Class-incremental NER on CoNLL-2003, with the protocol of the class-incremental NER literature (ExtendNER,
CFNER, RDP, TBCL): types arrive one group per step, each step brings a disjoint part of CoNLL train labelled
with that step's types only (everything else O), and after each step the model is scored on the full CoNLL test
over every type seen so far.

Settings: FG-1-PG-1 (LOC, MISC, ORG, PER, one per step) and FG-2-PG-1 (LOC+MISC, then ORG, then PER). CoNLL
train is shuffled once (seed 1234, the same for every method and seed) and cut into as many parts as steps.
Step 1 trains one MiniLM tagger per seed, shared by every method. Then, per step, each method extends the plain
model the previous step left:

- ``fine-tune``: expand the head (``adapter="none"``, linear head) and train on the step's data as labelled (old
  types are O there, so they are trained away);
- ``extendner``: expand + distillation from the previous step's model on the tokens the step labels O
  (``adapter="none", head="linear", annotation="new_only"``), ExtendNER's recipe. These two expanded models are
  plain models already: consolidation copies them exactly;
- ``ours``: the neural adapter (BiLSTM, CRF, copy target) with ``annotation="new_only"``: the extended model
  (source + target, two encoders) is scored, then ``ours+consolidate`` is the plain model it is distilled into
  (one encoder), which the next step extends. The library refuses to extend an extended model (inference would
  cost one more encoder per step), so "not consolidated" is measured as the extended model at every step;
- ``joint``: a new tagger trained on every step's data so far, labelled with every type seen so far (the upper
  bound).

One epoch per step by default (``--extension_epochs``): on 2 CPU cores a MiniLM epoch over a quarter of CoNLL
train takes minutes. One epoch leaves every method short of convergence, and the ranking does depend on it: with
4 epochs ExtendNER-style gains about 3 averaged Mi-F1 (see the README). The kept runs
consolidate with marginals only (``--path_weight 0``); ``--consolidation_epochs 3 --path_weight 0.5`` are the
library's consolidation defaults (run them with their own ``--state`` and ``--results_name``).
``--borrow benchmarks/.cache/incremental_ner`` takes in the kept fine-tune, ExtendNER-style
and joint runs, which these options do not touch, so that one table compares them.
``--extension_epochs 4 --methods extendner`` gives the baseline as many passes over each step's data as ours
gets with 1 extension + 3 consolidation epochs (a compute-matched baseline). Every finished
step is kept (``benchmarks/.cache/incremental_ner/runs.json``), so an interrupted run resumes where it stopped.

    nohup python -m benchmarks.incremental_ner --settings fg1pg1 --seeds 0 1 2 > incremental.log 2>&1 &
    python -m benchmarks.incremental_ner --settings fg2pg1 --seeds 0
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from datasets import ClassLabel, Sequence, concatenate_datasets
from transformers import (
    AutoModelForTokenClassification,
    AutoTokenizer,
    DataCollatorForTokenClassification,
    Trainer,
    TrainingArguments,
    set_seed,
)

from benchmarks.common import (
    CACHE,
    RESULTS,
    epoch_consolidation_args,
    shared_data_dir,
    target,
    write_json_atomically,
    write_results,
)
from benchmarks.paper_grid import default_encoder
from hf_adapter_ext import (
    AdapterDataCollator,
    NeuralAdapterConfig,
    adapter_optimizer,
    add_source_logits,
    get_adapter_model,
)
from hf_adapter_ext.data import conll_dataset, tokenize_and_align_labels
from hf_adapter_ext.metrics import evaluate_tagger

SETTINGS = {"fg1pg1": [["LOC"], ["MISC"], ["ORG"], ["PER"]], "fg2pg1": [["LOC", "MISC"], ["ORG"], ["PER"]]}
METHODS = ("fine-tune", "extendner", "ours", "ours+consolidate", "joint")
EXTENSION = {"fine-tune": {"adapter": "none", "head": "linear", "annotation": "full"},
             "extendner": {"adapter": "none", "head": "linear", "annotation": "new_only"},
             "ours": {"annotation": "new_only"}}
CHAINS = ("fine-tune", "extendner", "ours", "joint")  # "ours" also records "ours+consolidate"
# Published figures on CoNLL-2003 with bert-base-cased (not MiniLM), averaged over steps: Mi-F1 / Ma-F1.
PUBLISHED = {"fg1pg1": {"ExtendNER": (76.36, 73.04), "CFNER": (80.91, 79.11), "RDP": (82.55, 80.64),
                        "TBCL": (84.27, 81.92)},
             "fg2pg1": {"ExtendNER": (76.66, 66.36), "CFNER": (80.83, 75.20), "RDP": (85.32, 83.59),
                        "TBCL": (86.71, 84.94)}}


# Methods whose models these options do not touch (their consolidation is an exact copy, or there is none)
CONSOLIDATION_FREE = ("fine-tune", "extendner", "joint")
CONSOLIDATION_OPTIONS = ("consolidation_epochs", "path_weight")

# Options added after runs were kept: a kept state without them ran with these values.
PREVIOUS_DEFAULTS = {"consolidation_epochs": 1.0, "path_weight": 0.0, "extension_epochs": 1.0}


# Options that say what to run or where to write, not how a run trains: they never make kept runs stale
NOT_SETTINGS = ("settings", "seeds", "methods", "state", "results_dir", "results_name", "borrow")


def same_settings(kept: dict | None, settings: dict) -> bool:
    """Whether runs kept under ``kept`` settings belong with ``settings`` (a state kept before an option existed
    ran with its previous default; states kept before NOT_SETTINGS existed hold some of them)."""
    def training(values: dict) -> dict:
        return {**PREVIOUS_DEFAULTS, **{k: v for k, v in values.items() if k not in NOT_SETTINGS}}

    return kept is not None and training(kept) == training(settings)


def bio(types: list[str]) -> list[str]:
    return [f"{p}-{t}" for t in types for p in "BI"]


def only_types(dataset, types: list[str], labels: list[str]):
    """The tags renumbered to ``labels`` with every type outside ``types`` relabelled O."""
    names = dataset.features["ner_tags"].feature.names
    position = {label: i for i, label in enumerate(labels)}
    remap = [position[n] if n != "O" and n[2:] in types else position["O"] for n in names]
    features = dataset.features.copy()
    features["ner_tags"] = Sequence(ClassLabel(names=labels))
    return dataset.map(lambda b: {"ner_tags": [[remap[t] for t in tags] for tags in b["ner_tags"]]}, batched=True,
                       features=features, desc="Relabelling")


def arguments() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--methods", nargs="+", default=list(CHAINS), choices=list(CHAINS))
    parser.add_argument("--learning_rate", type=float, default=1e-4)
    parser.add_argument("--head_learning_rate", type=float, default=1e-3)
    parser.add_argument("--batch_size", type=int, default=16)
    # The kept runs consolidated for 1 epoch with marginals only (path_weight 0, the default before
    # consolidation_path_weight.py); 3 and 0.5 are the library's defaults
    parser.add_argument("--consolidation_epochs", type=float, default=1.0)
    parser.add_argument("--path_weight", type=float, default=0.0)
    parser.add_argument("--extension_epochs", type=float, default=1.0,
                        help="Epochs of each step's extension (4 gives ExtendNER-style as many passes over a step's "
                             "data as ours' 1 extension + 3 consolidation epochs).")
    parser.add_argument("--limit", type=int, default=None, help="Cap every split (smoke runs).")
    parser.add_argument("--state", default=str(CACHE / "incremental_ner"))
    parser.add_argument("--results_dir", default=str(RESULTS))
    parser.add_argument("--results_name", default="incremental_ner")
    parser.add_argument("--borrow", default=None,
                        help="Another --state folder whose fine-tune / ExtendNER-style / joint runs hold here too "
                             "(same settings but the consolidation options, which those methods never use).")
    return parser


class Bench:
    def __init__(self, options: argparse.Namespace):
        self.options = options
        self.encoder = default_encoder()
        self.tokenizer = AutoTokenizer.from_pretrained(self.encoder)
        data = shared_data_dir() / "conll2003"
        self.train = self.limited(conll_dataset(data / "train.txt").shuffle(seed=1234))
        self.test = self.limited(conll_dataset(data / "test.txt"))

    def limited(self, dataset):
        return dataset.select(range(min(len(dataset), self.options.limit))) if self.options.limit else dataset

    def encode(self, dataset):
        return dataset.map(tokenize_and_align_labels, batched=True, remove_columns=dataset.column_names,
                           fn_kwargs={"tokenizer": self.tokenizer}, desc="Tokenizing")

    def part(self, index: int, steps: int):
        size = len(self.train) // steps
        return self.train.select(range(index * size, (index + 1) * size))

    def fit(self, model, train, collator, seed: int, epochs: float = 1.0):
        args = TrainingArguments(output_dir=str(Path(self.options.state) / "runs"), num_train_epochs=epochs, seed=seed,
                                 save_strategy="no", per_device_train_batch_size=self.options.batch_size,
                                 learning_rate=self.options.learning_rate, warmup_steps=20, report_to="none",
                                 disable_tqdm=True, logging_steps=100)
        optimizer = adapter_optimizer(model, args.learning_rate, self.options.head_learning_rate, args.weight_decay)
        Trainer(model=model, args=args, train_dataset=train, data_collator=collator,
                optimizers=(optimizer, None)).train()
        return model.eval()

    def new_tagger(self, types: list[str], train, seed: int):
        set_seed(seed)
        labels = ["O", *bio(types)]
        model = AutoModelForTokenClassification.from_pretrained(
            self.encoder, id2label=dict(enumerate(labels)), label2id={v: k for k, v in enumerate(labels)})
        return self.fit(model, self.encode(only_types(train, types, labels)),
                        DataCollatorForTokenClassification(self.tokenizer), seed)

    def extend(self, method: str, previous, new_types: list[str], train, seed: int):
        """The extended model trained on the step's data, and the plain model it consolidates into."""
        set_seed(seed)
        model = get_adapter_model(previous, NeuralAdapterConfig(new_labels=bio(new_types), **EXTENSION[method]))
        labels = list(model.config.id2label.values())
        encoded = self.encode(only_types(train, new_types, labels))
        data = add_source_logits(encoded, model, self.tokenizer) if model.peft_config.uses_source_at_forward \
            else encoded
        model = self.fit(model, data, AdapterDataCollator(self.tokenizer), seed, self.options.extension_epochs)
        args = epoch_consolidation_args(Path(self.options.state) / "consolidate", seed,
                                        self.options.consolidation_epochs, self.options.batch_size)
        return model, model.consolidate(encoded, self.tokenizer, args=args, path_weight=self.options.path_weight)

    def score(self, model, seen: list[str], old: list[str]) -> dict:
        labels = list(model.config.id2label.values())
        test = self.encode(only_types(self.test, seen, labels))
        new_types = [t for t in seen if t not in old]
        scores = evaluate_tagger(model, test, self.tokenizer, model.config.id2label, new_types)
        per_type = {t: 100 * scores.get(f"{t}_f1", 0.0) for t in seen}
        return {"micro_f1": 100 * scores["overall_f1"], "macro_f1": sum(per_type.values()) / len(per_type),
                "old_f1": 100 * scores["old_f1"] if old else None, "per_type": per_type}


def run_chain(bench: Bench, save, runs: dict, setting: str, method: str, seed: int) -> None:
    """Every step of one method on one seed; finished steps are kept, and a resumed chain reloads the plain model
    the last kept step left."""
    groups = SETTINGS[setting]
    names = [method, "ours+consolidate"] if method == "ours" else [method]
    records = [runs.setdefault(f"{setting}/{name}/seed{seed}", {"steps": []}) for name in names]
    done = len(records[-1]["steps"])
    model = rebuild(bench, setting, method, seed, done) if 0 < done < len(groups) and method != "joint" else None
    for step in range(done, len(groups)):
        seen = [t for group in groups[: step + 1] for t in group]
        old = [t for group in groups[:step] for t in group]
        started = time.perf_counter()
        if method == "joint":
            data = concatenate_datasets([bench.part(i, len(groups)) for i in range(step + 1)])
            models = [bench.new_tagger(seen, data, seed)]
        elif step == 0:
            models = [first_step(bench, setting, seed)] * len(names)
        else:
            extended, model = bench.extend(method, model, groups[step], bench.part(step, len(groups)), seed)
            models = [extended, model] if method == "ours" else [model]
        seconds = time.perf_counter() - started
        for record, scored in zip(records, models):
            record["steps"].append({**bench.score(scored, seen, old), "types": seen, "seconds": seconds})
        if method != "joint":
            model = models[-1]
            if 0 < step < len(groups) - 1:
                model.save_pretrained(model_dir(bench, setting, method, seed, step))
        save()


def model_dir(bench: Bench, setting: str, method: str, seed: int, step: int) -> Path:
    return Path(bench.options.state) / "models" / setting / method / f"seed{seed}" / f"step{step}"


def first_step(bench: Bench, setting: str, seed: int):
    """The step-1 tagger, trained once per (setting, seed) and shared by every method."""
    path = Path(bench.options.state) / "first" / f"{setting}_seed{seed}"
    if (path / "config.json").is_file():
        return AutoModelForTokenClassification.from_pretrained(path).eval()
    groups = SETTINGS[setting]
    model = bench.new_tagger(groups[0], bench.part(0, len(groups)), seed)
    model.save_pretrained(path)
    return model


def rebuild(bench: Bench, setting: str, method: str, seed: int, steps_done: int):
    """The plain model a chain holds after ``steps_done`` steps (kept on disk)."""
    if steps_done == 1:
        return first_step(bench, setting, seed)
    return AutoModelForTokenClassification.from_pretrained(
        model_dir(bench, setting, method, seed, steps_done - 1)).eval()


def mean(values):
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else float("nan")


def summarise(state: dict, options) -> None:
    rows, targets, summary = [], [], {}
    rows += ["| setting | method | seeds | steps | Mi-F1 per step | Ma-F1 per step | avg Mi-F1 | avg Ma-F1 | "
             "largest old-type F1 loss at a step |", "|---|---|---|---|---|---|---|---|---|"]
    for setting, groups in SETTINGS.items():
        for method in METHODS:
            runs = [r["steps"] for k, r in state["runs"].items() if k.startswith(f"{setting}/{method}/")]
            found = [steps for steps in runs if len(steps) == len(groups)]
            unfinished = [steps for steps in runs if 0 < len(steps) < len(groups)]
            if unfinished and not found:  # an interrupted chain: its steps so far, kept out of every average
                micro, macro = (" / ".join(f"{step[key]:.1f}" for step in unfinished[0]) for key in ("micro_f1", "macro_f1"))
                rows.append(f"| {setting} | {method} (unfinished) | 1 | {len(unfinished[0])} of {len(groups)} | "
                            f"{micro} | {macro} | – | – | – |")
            if not found:
                continue
            micro = [mean([s[i]["micro_f1"] for s in found]) for i in range(len(groups))]
            macro = [mean([s[i]["macro_f1"] for s in found]) for i in range(len(groups))]
            # old-type F1 lost at step i: F1 over the previous step's types, before (step i-1) and after (step i)
            losses = [mean([s[i - 1]["micro_f1"] - s[i]["old_f1"] for s in found]) for i in range(1, len(groups))]
            summary[f"{setting}/{method}"] = {"seeds": len(found), "micro": micro, "macro": macro,
                                              "avg_micro": mean(micro), "avg_macro": mean(macro),
                                              "old_f1_loss_per_step": losses}
            rows.append(f"| {setting} | {method} | {len(found)} | {len(groups)} | "
                        f"{' / '.join(f'{v:.1f}' for v in micro)} | {' / '.join(f'{v:.1f}' for v in macro)} | "
                        f"{mean(micro):.2f} | {mean(macro):.2f} | {max(losses):.2f} |")
        ours, baseline = summary.get(f"{setting}/ours+consolidate") or summary.get(f"{setting}/ours"), \
            summary.get(f"{setting}/extendner")
        if ours and baseline:
            targets.append(target(f"{setting}: ours avg Mi-F1 - ExtendNER-style avg Mi-F1", ours["avg_micro"]
                                  - baseline["avg_micro"], 3.0, ">="))
        for method in ("ours", "ours+consolidate"):
            if f"{setting}/{method}" in summary:
                targets.append(target(f"{setting}: {method}, largest old-type F1 lost at one step",
                                      max(summary[f"{setting}/{method}"]["old_f1_loss_per_step"]), 1.0, "<="))
    published = "\n".join(f"| {setting} | {name} | {mi:.2f} | {ma:.2f} |" for setting, methods in PUBLISHED.items()
                          for name, (mi, ma) in methods.items())
    table = ("CoNLL-2003 test, entity F1 % over the types seen so far, after each step (MiniLM; per step "
             f"{options.extension_epochs:g} extension epoch(s), then {options.consolidation_epochs:g} consolidation "
             f"epoch(s) at path_weight {options.path_weight:g} for ours; mean over seeds). Old-type loss at step i = "
             "Mi-F1 over step i-1's types before minus after step i. The "
             "table holds every run kept under these settings (runs.json in the --state folder), whichever command "
             "ran it (the command above wrote this file)."
             + (f" Fine-tune, ExtendNER-style and joint runs are those kept in {options.borrow} (the consolidation "
                "options do not touch them)." if options.borrow else "") + "\n\n"
             + "\n".join(rows) + "\n\nPublished, for context (bert-base-cased, not MiniLM; averaged over steps):\n\n"
             "| setting | method | avg Mi-F1 | avg Ma-F1 |\n|---|---|---|---|\n" + published + "\n")
    write_results(options.results_name, {"summary": summary, "runs": state["runs"], "published": PUBLISHED,
                                      "settings": vars(options), "targets": targets}, table,
                  results_dir=Path(options.results_dir))


def merge_kept_runs(state: dict, state_file: Path) -> None:
    """Take in the runs another process kept meanwhile (seeds run side by side, one process per core), keeping
    the longer record of each run."""
    if not state_file.is_file():
        return
    kept = json.loads(state_file.read_text())
    if same_settings(kept.get("settings"), state["settings"]):
        take_longer_records(state["runs"], kept["runs"])


def take_longer_records(runs: dict, incoming: dict) -> None:
    """Each incoming run's record replaces the one in ``runs`` when it holds more steps."""
    for name, record in incoming.items():
        if len(record["steps"]) > len(runs.get(name, {"steps": []})["steps"]):
            runs[name] = record


def borrow_runs(state: dict, other_state_file: Path) -> None:
    """Take in another state's runs of the methods that the consolidation options do not touch, when every
    other setting agrees (the longer record of each run wins: the other state may still be running)."""
    other = json.loads(other_state_file.read_text())
    if not same_settings({k: v for k, v in (other.get("settings") or {}).items() if k not in CONSOLIDATION_OPTIONS},
                         {k: v for k, v in state["settings"].items() if k not in CONSOLIDATION_OPTIONS}):
        raise ValueError(f"{other_state_file} was run with other settings than these; it cannot lend its runs.")
    take_longer_records(state["runs"], {name: record for name, record in other["runs"].items()
                                        if name.split("/")[1] in CONSOLIDATION_FREE})


def main(argv: list[str] | None = None) -> dict:
    options = arguments().parse_args(argv)
    state_file = Path(options.state) / "runs.json"
    state = json.loads(state_file.read_text()) if state_file.is_file() else {}
    settings = {k: v for k, v in vars(options).items() if k not in NOT_SETTINGS}
    if not same_settings(state.get("settings"), settings):
        state = {"runs": {}, "settings": settings}
    if options.borrow:
        borrow_runs(state, Path(options.borrow) / "runs.json")
    bench = Bench(options)

    def save() -> None:
        merge_kept_runs(state, state_file)
        write_json_atomically(state, state_file)
        summarise(state, options)

    for seed in options.seeds:
        for setting in options.settings:
            for method in options.methods:
                print(f"== {setting}/{method}/seed{seed}", flush=True)
                run_chain(bench, save, state["runs"], setting, method, seed)
    save()
    return state


if __name__ == "__main__":
    main()
