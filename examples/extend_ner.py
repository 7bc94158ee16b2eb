#!/usr/bin/env python
"""Teach your trained token classifier new entity types from new data alone, in the shape of transformers'
`run_ner.py`.

The source model stays frozen; `get_adapter_model` adds a target network that learns old + new labels, fed with
the source's scores through a neural adapter (Chen & Moschitti, AAAI 2019). New labels are the data's labels
the source does not know. Old types that the new ones refine (politician ⊂ PER) are kept with `--label_parents`
and rehearsal on plain text from the source's world (`--rehearsal_file`, one sentence per line). Plain text of the
new domain (`--unlabelled_file`) adds a second, self-training run on the first run's confident tags.

Training is counted in steps (at most 1500, evaluated every 50, stopped after 6 evaluations without gain), so that
10 labelled sentences train as long as they need; `--num_train_epochs` alone trains by epochs instead.

    python examples/extend_ner.py --model_name_or_path my-conll-tagger \\
        --train_file train.txt --validation_file dev.txt --test_file test.txt \\
        --label_map person=PER,organisation=ORG,location=LOC,country=LOC,misc=MISC \\
        --label_parents politician=PER,politicalparty=ORG --rehearsal_file news.txt \\
        --unlabelled_file politics_text.txt --output_dir extended --consolidate
    accelerate launch examples/extend_ner.py ...     # the same, on every device
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from datasets import load_dataset
from transformers import (
    AutoModelForTokenClassification,
    HfArgumentParser,
    Trainer,
    pipeline,
    set_seed,
)

from hf_adapter_ext import (
    AdapterDataCollator,
    ExtensionTrainer,
    NeuralAdapterConfig,
    add_rehearsal,
    add_source_logits,
    entity_types,
    extension_training_defaults,
    get_adapter_model,
    parse_pairs,
    save_consolidated,
    source_labels,
)
from hf_adapter_ext.adapter.budget import EARLY_STOPPING_PATIENCE, SELF_TRAINING_PATIENCE
from hf_adapter_ext.adapter.config import adapter_arguments_dataclass
from hf_adapter_ext.adapter.consolidation import compare_with_teacher
from hf_adapter_ext.adapter.self_training import PSEUDO_LABEL_THRESHOLD
from hf_adapter_ext.adapter.training import REHEARSAL_RATIO
from hf_adapter_ext.cli import (
    RUN_NER_OPTIONS,
    budget_defaults,
    check_stages,
    command_line,
    parse_arguments,
    without_evaluation,
)
from hf_adapter_ext.data import (
    first_rows,
    load_ner_files,
    read_sentences,
    rename_types,
    tokenize_and_align_labels,
    warn_unlabelled_in_evaluation,
    with_label_order,
    word_tokenizer,
)
from hf_adapter_ext.hub import check_model_location
from hf_adapter_ext.launch import check_one_job, end_distributed, peak_memory_gib
from hf_adapter_ext.metrics import (
    MIN_SOURCE_AGREEMENT,
    entity_f1_compute_metrics,
    forgotten_types,
    predicted_label_ids,
    source_agreement,
    write_predictions,
)
from hf_adapter_ext.validation import (
    CLI,
    COUNT,
    POSITIVE_FLOAT,
    SAMPLE_LIMIT,
    SHARE,
    CheckedTrainingArguments,
    check_distinct_columns,
    check_finite_loss,
    check_label_names,
    check_settings,
)

logger = logging.getLogger(__name__)
# Settings that work for extensions (the library's `extension_training_defaults`): the user overrides any.
DEFAULTS = {**extension_training_defaults(), "report_to": "none", "output_dir": "outputs/extend_ner"}


@dataclass
class ModelArguments:
    model_name_or_path: str = field(metadata={"help": "Your trained token classifier (a folder or a Hub id): the "
                                                      "source, kept frozen."})
    tokenizer_name: str | None = field(default=None, metadata={"help": "Its tokenizer, if stored elsewhere."})
    head_learning_rate: float = field(default=1e-3, metadata={
        "help": "Learning rate of the parts that start from scratch (output layer, CRF, adapter)."})
    consolidate: bool = field(default=False, metadata={
        "help": "Also write a plain transformers model (one encoder pass, loads without this library) to "
                "<output_dir>/consolidated."})
    keep_checkpoints: bool = field(default=False, metadata={
        "help": "Keep Trainer's checkpoint-* folders. By default they are removed once the best model is loaded "
                "and saved: the adapter in --output_dir is the result."})
    early_stopping_patience: int | None = field(default=None, metadata={
        "help": "Stop after this many evaluations without a better validation score; 0 trains the whole budget "
                f"(default {EARLY_STOPPING_PATIENCE}; needs a validation split)."})
    self_training_patience: int = field(default=SELF_TRAINING_PATIENCE, metadata={
        "help": "The same for the self-training run of --unlabelled_file, which starts from the first run's weights."})
    rehearsal_ratio: float | None = field(default=None, metadata={
        "help": "Rehearsal sentences drawn per labelled sentence at each step (1: half of every batch), however "
                f"many --rehearsal_file holds (default {REHEARSAL_RATIO:g})."})

    def __post_init__(self):  # None: ExtensionTrainer's defaults, which stay silent where they cannot act
        check_settings(CLI, self, {"head_learning_rate": POSITIVE_FLOAT, "self_training_patience": COUNT,
                                   "early_stopping_patience": dataclasses.replace(COUNT, optional=True),
                                   "rehearsal_ratio": dataclasses.replace(POSITIVE_FLOAT, optional=True)})


@dataclass
class DataArguments:
    train_file: str | None = field(default=None, metadata={"help": "CoNLL columns, JSON lines, or CSV."})
    validation_file: str | None = field(default=None, metadata={"help": "Chooses the best epoch."})
    test_file: str | None = field(default=None, metadata={"help": "Scored before and after the extension."})
    dataset_name: str | None = field(default=None, metadata={"help": "A Hub dataset instead of files."})
    dataset_config_name: str | None = field(default=None, metadata={"help": "Its configuration."})
    tokens_column: str = field(default="tokens", metadata={"help": "Word column of JSON/CSV files or the dataset."})
    tags_column: str = field(default="ner_tags", metadata={"help": "Tag column of JSON/CSV files or the dataset."})
    label_map: str | None = field(default=None, metadata={
        "help": "Rename the data's types to the source's names: person=PER,country=LOC,..."})
    rehearsal_file: str | None = field(default=None, metadata={
        "help": "Plain text from the source's world (one sentence per line, or a .jsonl / .csv with a text "
                "column; no labels) that the source labels, so "
                "the extended model keeps its old outputs."})
    max_rehearsal_sentences: int | None = field(default=None, metadata={"help": "Use at most this many."})
    source_text_file: str | None = field(default=None, metadata={
        "help": "Held-out plain text from the source's world (one sentence per line) on which the extension's old "
                "types are compared with the source's, to warn of forgetting; default: the rehearsal text."})
    unlabelled_file: str | None = field(default=None, metadata={
        "help": "Plain text of the new domain (one sentence per line, or a .jsonl / .csv with a text column; no "
                "labels): after the first run, the model's "
                "confident tags on it train a second run, kept if it scores better on validation."})
    max_unlabelled_sentences: int | None = field(default=None, metadata={"help": "Use at most this many."})
    pseudo_label_threshold: float = field(default=PSEUDO_LABEL_THRESHOLD, metadata={
        "help": "A word of --unlabelled_file keeps the model's tag when its probability reaches this."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Truncate the training set."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Truncate the validation set."})
    max_predict_samples: int | None = field(default=None, metadata={"help": "Truncate the test set."})
    tag_text: str | None = field(default=None, metadata={
        "help": "Tag this text with the extended model's pipeline and print its entities."})

    def __post_init__(self):
        check_distinct_columns((self.tokens_column, self.tags_column), "set --tokens_column / --tags_column apart")
        check_settings(CLI, self, {"pseudo_label_threshold": SHARE, **{
            name: SAMPLE_LIMIT for name in ("max_rehearsal_sentences", "max_unlabelled_sentences", "max_train_samples",
                                            "max_eval_samples", "max_predict_samples")}})
        for limit, file in (("max_rehearsal_sentences", "rehearsal_file"),
                            ("max_unlabelled_sentences", "unlabelled_file")):
            if getattr(self, limit) is not None and not getattr(self, file):
                raise ValueError(f"--{limit} limits --{file}, which is not given; pass both or neither.")
        if self.tag_text is not None and not self.tag_text.strip():
            raise ValueError("--tag_text is empty; pass a sentence to tag, or leave the option out.")
        if self.label_map:
            self.renames()  # refused now, not after the model is loaded

    def renames(self) -> dict[str, str]:
        """--label_map as ``{from: to}``."""
        return parse_pairs(self.label_map, "--label_map", "from=to", "person=PER,country=LOC")


def read_splits(data: DataArguments):
    if data.dataset_name:
        raw = load_dataset(data.dataset_name, data.dataset_config_name)
        raw = raw.rename_columns({c: n for c, n in ((data.tokens_column, "tokens"), (data.tags_column, "ner_tags"))
                                  if c != n})
        tags = next(iter(raw.values())).features.get("ner_tags")
        if not hasattr(getattr(tags, "feature", None), "names"):
            raise ValueError(f"{data.dataset_name}: its tag column is {tags}, not a sequence of ClassLabel names; pass "
                             "the files with --train_file/--validation_file/--test_file to infer the label set.")
    else:
        files = {"train": data.train_file, "validation": data.validation_file, "test": data.test_file}
        raw = load_ner_files(files, data.tokens_column, data.tags_column)
    if "train" not in raw:
        raise ValueError("No training data: pass --train_file or a --dataset_name with a train split.")
    if data.label_map:
        raw = rename_types(raw, data.renames())
    return first_rows(raw, {"train": data.max_train_samples, "validation": data.max_eval_samples,
                            "test": data.max_predict_samples})


def entity_scores(trainer: Trainer, dataset, prefix: str) -> dict:
    """Entity F1 of ``trainer``'s model on ``dataset`` through Trainer's own evaluation loop (sharded over the
    processes under DDP), without the metric prefix."""
    metrics = trainer.predict(dataset, metric_key_prefix=prefix).metrics
    return {k[len(prefix) + 1:]: v for k, v in metrics.items()
            if k.endswith(("_f1", "_f1_with_subtypes", "_support"))}


def no_loss(outputs, labels, num_items_in_batch=None):
    """The source cannot score labels it never had: only its predictions are needed, so it is given no loss."""
    return outputs.logits.new_zeros(())


# The command line's option groups, in parse order.
ARGUMENTS = (ModelArguments, DataArguments, adapter_arguments_dataclass(), CheckedTrainingArguments)


def main(argv: list[str] | None = None) -> dict:
    argv = command_line(argv)
    parser = HfArgumentParser(ARGUMENTS)
    parser.set_defaults(**budget_defaults(DEFAULTS, argv))
    model_args, data_args, adapter_args, training_args = parse_arguments(parser, argv, {
        **RUN_NER_OPTIONS, "--text_column_name": "use --tokens_column", "--label_column_name": "use --tags_column"})
    config = NeuralAdapterConfig(**dataclasses.asdict(adapter_args))
    logging.basicConfig(level=logging.INFO if training_args.should_log else logging.WARNING)
    check_one_job(training_args)
    check_stages(training_args, argv, "To score a saved extension, load it with NeuralAdapterModel.from_pretrained("
                 "source, folder) and tag with pipeline(\"token-classification\", ...).", data_args.test_file)
    set_seed(training_args.seed)  # before any model is built, so --seed sets the new layers' first weights
    if model_args.rehearsal_ratio is not None and not data_args.rehearsal_file:
        raise ValueError(f"--rehearsal_ratio {model_args.rehearsal_ratio:g} sets how many --rehearsal_file sentences "
                         "join each labelled one, and no --rehearsal_file is given: pass it too, or drop "
                         "--rehearsal_ratio.")
    unlabelled = read_sentences(data_args.unlabelled_file, data_args.max_unlabelled_sentences) \
        if data_args.unlabelled_file else None

    check_model_location(model_args.model_name_or_path, "--model_name_or_path ", "Pass the trained tagger to extend; "
                         "an extension's own folder loads with NeuralAdapterModel.from_pretrained(source, adapter_dir).")
    source = AutoModelForTokenClassification.from_pretrained(model_args.model_name_or_path)
    tokenizer = word_tokenizer(model_args.tokenizer_name or model_args.model_name_or_path)  # add_prefix_space if needed
    raw = read_splits(data_args)
    if unlabelled and "test" in raw:  # ExtensionTrainer.self_train checks the validation rows it is given
        warn_unlabelled_in_evaluation(unlabelled, {"test": raw["test"]})
    data_labels = raw["train"].features["ner_tags"].feature.names
    old_labels = source_labels(source.config)
    trained_on = {data_labels[t] for tags in raw["train"]["ner_tags"] for t in tags}
    unseen = sorted(set(entity_types([label for label in data_labels if label not in old_labels]))
                    - set(entity_types(trained_on)))
    if unseen:  # only the validation/test files have them: they would be new labels that never train
        raise ValueError(f"Entity types {unseen} appear in the validation/test files but never in the training file, "
                         "so the extension could not learn them. Add training sentences with them, or drop them "
                         f"with --label_map {','.join(f'{t}=O' for t in unseen)}.")
    if not config.new_labels:
        config.new_labels = [label for label in data_labels if label not in old_labels]
        if not config.new_labels:
            raise ValueError(f"The data's labels {data_labels} are all known to the source; there is nothing new to "
                             "learn. Check --label_map, or pass --new_labels.")
    config.base_model_name_or_path = model_args.model_name_or_path
    model = get_adapter_model(source, config)
    check_label_names(model, training_args)  # before the source is scored, not after
    config = model.peft_config
    id2label, parents = model.config.id2label, config.label_parents
    new_types = config.new_types
    logger.info("Old labels %s; learning %s (parents: %s)", old_labels, config.new_labels, parents)

    raw = with_label_order(raw, list(id2label.values()))
    with training_args.main_process_first(desc="tokenizing"):
        encoded = raw.map(tokenize_and_align_labels, batched=True, remove_columns=raw["train"].column_names,
                          fn_kwargs={"tokenizer": tokenizer}, desc="Tokenizing and aligning labels")
        train, lines = encoded["train"], None
        if data_args.rehearsal_file:
            lines = read_sentences(data_args.rehearsal_file, data_args.max_rehearsal_sentences)
            train = add_rehearsal(train, lines, model, tokenizer)
        elif config.uses_source_at_forward:
            train = add_source_logits(train, model, tokenizer)
    validation, test = encoded.get("validation"), encoded.get("test")
    if validation is None:  # nothing to choose a step on: train for the whole budget
        training_args = without_evaluation(training_args, trains=True)
        if unlabelled:  # refused before any training
            raise ValueError("--unlabelled_file trains a second, self-training run that is kept only if it scores "
                             "better on validation, and the data has no validation split: pass --validation_file as "
                             "well (or a --dataset_name with one).")
    hub = training_args.push_to_hub  # the adapter is pushed with its own card below, not Trainer's
    training_args = dataclasses.replace(training_args, push_to_hub=False)

    scored = test if test is not None else validation
    split = "test" if test is not None else "validation" if validation is not None else None  # None: nothing scored
    metric_kwargs = {"compute_metrics": entity_f1_compute_metrics(id2label, new_types, parents),
                     "preprocess_logits_for_metrics": predicted_label_ids}
    scoring_args = without_evaluation(training_args, trains=False)
    source_scorer = Trainer(model=source, args=scoring_args, data_collator=AdapterDataCollator(tokenizer),
                            compute_loss_func=no_loss, **metric_kwargs)
    before = entity_scores(source_scorer, scored, f"source_{split}") if scored is not None else {}
    trainer = ExtensionTrainer(model=model, args=training_args, train_dataset=train, eval_dataset=validation,
                               data_collator=AdapterDataCollator(tokenizer), **metric_kwargs,
                               head_learning_rate=model_args.head_learning_rate,
                               rehearsal_ratio=model_args.rehearsal_ratio,
                               early_stopping_patience=model_args.early_stopping_patience)
    train_result = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    check_finite_loss(train_result.training_loss, "Lower --learning_rate / --head_learning_rate and train again.")
    train_seconds, best_step = train_result.metrics["train_runtime"], trainer.state.best_global_step
    self_training = None
    if unlabelled:
        self_training = trainer.self_train(unlabelled, tokenizer, data_args.pseudo_label_threshold,
                                           model_args.self_training_patience)
        self_training["unlabelled_sentences"] = len(unlabelled)
        train_seconds += self_training["train"]["train_runtime"]
        if self_training["kept"] == "second":
            best_step = self_training["second_run_best_step"]
    model.eval()
    after = entity_scores(trainer, scored, split) if scored is not None else {}
    forgotten = forgotten_types(before, after, new_types) if scored is not None else {}
    for entity_type, (was, now) in forgotten.items():  # e.g. every person now called "politician"
        logger.warning("Old type %s fell from %.1f to %.1f F1 on the %s set: a new type may have swallowed it. Name "
                       "its parent with --label_parents and pass plain text from the source's world with "
                       "--rehearsal_file.", entity_type, 100 * was, 100 * now, split)
    # The domain test cannot show what was forgotten where the source was poor to begin with: compare the two models
    # on text of the source's own kind as well.
    world = read_sentences(data_args.source_text_file) if data_args.source_text_file else lines
    agreement = source_agreement(source, model, world, tokenizer, parents) if world else {}
    for entity_type, f1 in agreement.items():
        if f1 < MIN_SOURCE_AGREEMENT:
            logger.warning("On text of the source's kind (%s), the extension tags old type %s as the source did only "
                           "%.1f F1: it may be forgetting it. Name its refinements with --label_parents and pass more "
                           "rehearsal text.", data_args.source_text_file or data_args.rehearsal_file, entity_type,
                           100 * f1)
    sources = {s: getattr(data_args, f"{s}_file") or f"{data_args.dataset_name}[{s}]" for s in encoded}
    results = {"new_labels": config.new_labels, "label_parents": parents, "scored_on": split,
               "data": {s: {"source": sources[s], "sentences": len(raw[s])} for s in raw},
               "rehearsal_sentences": int(sum(train["rehearsal"])) if "rehearsal" in train.column_names else 0,
               "best_checkpoint": Path(trainer.state.best_model_checkpoint).name
               if trainer.state.best_model_checkpoint else None,
               "best_step": best_step,
               "steps": trainer.state.global_step, "train": train_result.metrics, "train_seconds": train_seconds,
               "peak_memory_gib": peak_memory_gib(), "self_training": self_training,
               "world_size": training_args.world_size,
               "before": before, "after": after,
               "forgetting": after["old_f1"] - before["old_f1"] if scored is not None else None,
               "forgotten_types": forgotten,
               "source_agreement": agreement}
    if not trainer.is_world_process_zero():
        return results

    output = Path(training_args.output_dir)
    if not model_args.keep_checkpoints:  # the best model is loaded and saved below: the checkpoints are stale
        for folder in [*output.glob("checkpoint-*"), output / "self-training"]:
            shutil.rmtree(folder, ignore_errors=True)
    card_metrics = {f"{split}_{k}": v for k, v in after.items() if not k.endswith("_support")}
    if scored is not None:
        card_metrics.update({f"source_{split}_old_f1": before.get("old_f1"), "evaluated_on": sources[split]})
    card_metrics["trained_on"] = f"{sources['train']} ({len(raw['train'])} sentences)"
    model.save_pretrained(output, metrics=card_metrics)
    tokenizer.save_pretrained(output)
    if split == "test":  # run_ner.py's predictions.txt: the extended model's tags, one test sentence per line
        write_predictions(model, scored, tokenizer, output / "predictions.txt")
    if model_args.consolidate:
        # distilled on the rehearsal text and the domain's own unlabelled text (which raised the plain model's
        # validation F1 on CrossNER politics, benchmarks/results/consolidation_domain.md); its steps are chosen on
        # validation; the report compares both models where they are scored
        text = [*(lines or []), *(unlabelled or [])]
        plain = model.consolidate(encoded["train"], tokenizer, unlabelled=text or None, eval_dataset=validation)
        if scored is not None and scored is not validation:
            plain.consolidation_report["evaluation"] = compare_with_teacher(model, plain, scored, tokenizer)
        save_consolidated(plain, output / "consolidated", tokenizer)
        results["consolidated"] = {**plain.consolidation_report.get("evaluation", {}),
                                   "unlabelled_sentences": plain.consolidation_report["unlabelled_examples"]}
    if data_args.tag_text:  # entity text cut from the input by character offsets, as the user wrote it
        tagger = pipeline("token-classification", model=model, tokenizer=tokenizer, aggregation_strategy="first")
        results["tagged"] = [(data_args.tag_text[e["start"]:e["end"]], e["entity_group"])
                             for e in tagger(data_args.tag_text)]
        print(f"pipeline('token-classification') on {data_args.tag_text!r}:\n  {results['tagged']}")
    if hub:
        repo = training_args.hub_model_id or output.name
        results["hub_url"] = model.push_to_hub(repo, token=training_args.hub_token,
                                               private=training_args.hub_private_repo, metrics=card_metrics)
    trainer.save_metrics("all", results, combined=False)  # all_results.json, hub_url included
    print(json.dumps({"before": before.get("old_f1"), "after": {k: after.get(k) for k in
                                                               ("overall_f1", "old_f1", "new_f1")}}, indent=2))
    return results


if __name__ == "__main__":
    main()
    end_distributed()
