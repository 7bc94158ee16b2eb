"""One optimiser step of plain SGD through `Trainer`, on 4 examples (or 4 episodes), dropout off, float64.

    python tests/scripts/one_step.py OUT {linear,crf,crf-new_only,sib,consolidation} BATCH ACCUMULATION

Also run under ``torchrun --nproc_per_node 2`` (gloo, CPU). Writes OUT/weights.safetensors (the trainable
weights after the step) and OUT/log.json (what Trainer logged). However the 4 items are split (one batch,
gradient accumulation, processes), the step must be the same.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import BertConfig, BertModel, Trainer, TrainingArguments

from hf_adapter_ext import (
    AdapterDataCollator,
    MetaTrainingArguments,
    NeuralAdapterConfig,
    SemiSupervisedMetaTrainer,
    SIBConfig,
    SIBForFewShotClassification,
    get_adapter_model,
)
from hf_adapter_ext.launch import end_distributed
from tests.conftest import NEW_LABELS, OLD_LABELS, build_tokenizer, tiny_config
from tests.helpers import toy_dataset


def _no_dropout_source(vocab_size: int):
    from transformers import AutoModelForTokenClassification

    config = tiny_config("bert", vocab_size)
    config.hidden_dropout_prob = config.attention_probs_dropout_prob = 0.0
    torch.manual_seed(0)
    return AutoModelForTokenClassification.from_config(config).eval()


def _adapter_run(out: Path, kind: str, batch: int, accumulation: int):
    tokenizer = build_tokenizer()
    head, _, annotation = kind.partition("-")
    config = NeuralAdapterConfig(new_labels=NEW_LABELS, head=head, annotation=annotation or "full")
    model = get_adapter_model(_no_dropout_source(tokenizer.vocab_size), config)
    data = toy_dataset(tokenizer, labels=OLD_LABELS + NEW_LABELS,
                       outside_types=("PER", "ORG", "MISC") if annotation else ()).select(range(4))
    return model, Trainer(model=model, args=_args(TrainingArguments, out, batch, accumulation), train_dataset=data,
                          data_collator=AdapterDataCollator(tokenizer))


def _consolidation_run(out: Path, batch: int, accumulation: int):
    """A distillation step of ``consolidate`` (CRF teacher, path targets cached once, and the transition loss on)."""
    from hf_adapter_ext.adapter.consolidation import (
        _DistillationCollator,
        _DistillationTrainer,
        distillation_data,
        initial_student,
        with_teacher_targets,
    )

    tokenizer = build_tokenizer()
    teacher = get_adapter_model(_no_dropout_source(tokenizer.vocab_size), NeuralAdapterConfig(new_labels=NEW_LABELS))
    with torch.no_grad():  # a teacher with opinions: random emissions and transitions, not zeros
        generator = torch.Generator().manual_seed(1)
        teacher.classifier.weight.normal_(0, 1.0, generator=generator)
        teacher.crf.transitions.normal_(0, 1.0, generator=generator)
    student = initial_student(teacher)
    data = distillation_data(toy_dataset(tokenizer, labels=OLD_LABELS + NEW_LABELS).select(range(2)),
                             ["John flew to Paris .", "Mary met Bob in Rome today ."], tokenizer)
    data = with_teacher_targets(data, teacher.double(), tokenizer, path_weight=0.5)  # as consolidate() does
    trainer = _DistillationTrainer(teacher=teacher, path_weight=0.5, transition_weight=1.0, model=student,
                                   args=_args(TrainingArguments, out, batch, accumulation, remove_unused_columns=False),
                                   train_dataset=data, data_collator=_DistillationCollator(tokenizer))
    return student, trainer


def _sib_run(out: Path, batch: int, accumulation: int):
    from tests.test_meta import intent_data

    tokenizer = build_tokenizer()
    torch.manual_seed(0)
    backbone = BertModel(BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=16, num_hidden_layers=1,
                                    num_attention_heads=2, intermediate_size=32), add_pooling_layer=False)
    model = SIBForFewShotClassification(SIBConfig(n_way=3, inner_steps=2, inner_lr=0.5), backbone=backbone)
    with torch.no_grad():  # a non-trivial synthetic-gradient net (the real one starts at zero)
        model.head.grad_net.output_layer.weight.normal_(0, 0.5, generator=torch.Generator().manual_seed(1))
    args = _args(MetaTrainingArguments, out, batch, accumulation, k_shot=1, n_query=2, train_episodes=4)
    trainer = SemiSupervisedMetaTrainer(model=model, args=args, train_dataset=intent_data(tokenizer, classes=6,
                                        per_class=4), processing_class=tokenizer)
    return model, trainer


def _args(cls, out: Path, batch: int, accumulation: int, **extra):
    return cls(output_dir=str(out), per_device_train_batch_size=batch, gradient_accumulation_steps=accumulation,
               max_steps=1, optim="sgd", learning_rate=0.5, lr_scheduler_type="constant", max_grad_norm=1e9,
               logging_steps=1, report_to="none", save_strategy="no", use_cpu=True, seed=0, disable_tqdm=True,
               ddp_backend="gloo" if int(os.environ.get("WORLD_SIZE", "1")) > 1 else None, **extra)


def _trainable(model) -> dict:
    return {n: p.detach().clone().contiguous() for n, p in model.named_parameters() if p.requires_grad}


def one_step(out: Path, kind: str, batch: int, accumulation: int) -> tuple[dict, list, dict]:
    """(trainable weights after the step, Trainer's log, the weights before it)."""
    runs = {"sib": _sib_run, "consolidation": _consolidation_run}
    model, trainer = (runs[kind](out, batch, accumulation) if kind in runs
                      else _adapter_run(out, kind, batch, accumulation))
    model.double()  # float64: what is left to compare is the normalisation, not float32 summation order
    before = _trainable(model)
    trainer.train()
    return _trainable(model), trainer.state.log_history, before


if __name__ == "__main__":
    out = Path(sys.argv[1])
    weights, log, _ = one_step(out, sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    if int(os.environ.get("RANK", "0")) == 0:
        out.mkdir(parents=True, exist_ok=True)
        save_file(weights, str(out / "weights.safetensors"))
        (out / "log.json").write_text(json.dumps(log))
    end_distributed()
