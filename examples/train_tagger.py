#!/usr/bin/env python
"""Train a plain token classifier on NER files: the tagger that `extend_ner.py` later extends (a short
`run_ner.py`). Its labels are the ones the training data uses.

    python examples/train_tagger.py --model_name_or_path bert-base-cased --train_file train.txt \\
        --validation_file dev.txt --test_file test.txt --output_dir my-tagger
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from transformers import (
    AutoModelForTokenClassification,
    DataCollatorForTokenClassification,
    HfArgumentParser,
    Trainer,
    set_seed,
)

from hf_adapter_ext import adapter_optimizer
from hf_adapter_ext.cli import (
    RUN_NER_OPTIONS,
    check_stages,
    command_line,
    parse_arguments,
    without_evaluation,
)
from hf_adapter_ext.data import (
    first_rows,
    load_ner_files,
    relabel_to_outside,
    tokenize_and_align_labels,
    with_label_order,
    word_tokenizer,
)
from hf_adapter_ext.hub import check_model_location
from hf_adapter_ext.launch import check_one_job, end_distributed
from hf_adapter_ext.metrics import entity_f1_compute_metrics, type_f1, write_predictions
from hf_adapter_ext.validation import (
    CLI,
    POSITIVE_FLOAT,
    SAMPLE_LIMIT,
    CheckedTrainingArguments,
    check_finite_loss,
    check_settings,
)

logger = logging.getLogger(__name__)
DEFAULTS = {"learning_rate": 1e-4, "num_train_epochs": 1, "per_device_train_batch_size": 32, "warmup_steps": 50,
            "eval_strategy": "epoch", "save_strategy": "no", "report_to": "none", "output_dir": "outputs/tagger"}


@dataclass
class TaggerArguments:
    model_name_or_path: str = field(metadata={"help": "A pretrained encoder (folder or Hub id)."})
    train_file: str = field(metadata={"help": "CoNLL columns, JSON lines, or CSV (see load_ner_files)."})
    validation_file: str | None = field(default=None, metadata={"help": "Scored after each epoch."})
    test_file: str | None = field(default=None, metadata={
        "help": "Scored once after training, overall and per type: the source an extension starts from."})
    head_learning_rate: float = field(default=1e-3, metadata={"help": "Learning rate of the new output layer."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Truncate the training set."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Truncate the validation set."})

    def __post_init__(self):
        check_settings(CLI, self, {"head_learning_rate": POSITIVE_FLOAT, "max_train_samples": SAMPLE_LIMIT,
                                   "max_eval_samples": SAMPLE_LIMIT})


# The command line's option groups, in parse order.
ARGUMENTS = (TaggerArguments, CheckedTrainingArguments)


def main(argv: list[str] | None = None) -> dict:
    argv = command_line(argv)
    parser = HfArgumentParser(ARGUMENTS)
    parser.set_defaults(**DEFAULTS)
    options, args = parse_arguments(parser, argv, {
        **RUN_NER_OPTIONS, **dict.fromkeys(("--text_column_name", "--label_column_name", "--dataset_name"),
                                           "not offered: pass CoNLL files, or JSON / CSV files with 'tokens' and "
                                           "'ner_tags' columns, as --train_file / --validation_file / --test_file")})
    check_one_job(args)
    check_stages(args, argv, "To score a saved tagger, load it with AutoModelForTokenClassification.from_pretrained("
                 "folder) and tag with pipeline(\"token-classification\", ...).", options.test_file)
    set_seed(args.seed)  # before the model is built, so --seed sets the new head's first weights
    data = load_ner_files({"train": options.train_file, "validation": options.validation_file,
                           "test": options.test_file})
    data = first_rows(data, {"train": options.max_train_samples, "validation": options.max_eval_samples})
    names = data["train"].features["ner_tags"].feature.names
    used = {names[t][2:] for tags in data["train"]["ner_tags"] for t in tags if names[t] != "O"}
    labels = [name for name in names if name == "O" or name[2:] in used]  # only the types it learns
    for entity_type in sorted({name[2:] for name in names if name != "O"} - used):
        logger.warning("Type %s is in the validation/test files but never in the training file: this tagger cannot "
                       "learn it, so it is scored as O.", entity_type)
        data = relabel_to_outside(data, entity_type)  # types only validation/test name are O for this tagger
    data = with_label_order(data, labels)
    check_model_location(options.model_name_or_path, "--model_name_or_path ", "Pass a pretrained encoder (or a "
                         "tagger to train further), e.g. 'bert-base-cased'.")
    tokenizer = word_tokenizer(options.model_name_or_path)  # add_prefix_space where the words need it
    model = AutoModelForTokenClassification.from_pretrained(
        options.model_name_or_path, id2label=dict(enumerate(labels)), label2id={v: i for i, v in enumerate(labels)})
    encoded = data.map(tokenize_and_align_labels, batched=True, remove_columns=data["train"].column_names,
                       fn_kwargs={"tokenizer": tokenizer}, desc="Tokenizing and aligning labels")
    if "validation" not in encoded:
        args = without_evaluation(args, trains=True)
    trainer = Trainer(model=model, args=args, train_dataset=encoded["train"], eval_dataset=encoded.get("validation"),
                      data_collator=DataCollatorForTokenClassification(tokenizer),
                      compute_metrics=entity_f1_compute_metrics(model.config.id2label),
                      optimizers=(adapter_optimizer(model, args.learning_rate, options.head_learning_rate,
                                                    args.weight_decay, args=args), None))
    result = trainer.train(resume_from_checkpoint=args.resume_from_checkpoint)
    check_finite_loss(result.training_loss, "Lower --learning_rate / --head_learning_rate and train again.")
    metrics = result.metrics
    if "test" in encoded:  # what the tagger an extension starts from scores, per type
        test = trainer.predict(encoded["test"], metric_key_prefix="test").metrics
        metrics.update(test)
        logger.warning("Test F1 %.4f; per type: %s", test["test_overall_f1"],
                       ", ".join(f"{t} {f:.4f}" for t, f in sorted(type_f1(test, "test_").items())))
    if trainer.is_world_process_zero():
        trainer.save_model()
        tokenizer.save_pretrained(args.output_dir)
        trainer.save_metrics("all", metrics, combined=False)
        if "test" in encoded:  # run_ner.py's predictions.txt: one test sentence's tags per line
            write_predictions(model, encoded["test"], tokenizer, Path(args.output_dir) / "predictions.txt")
    return metrics


if __name__ == "__main__":
    main()
    end_distributed()
