"""A small adapter or meta-training run for the resume tests: it can die right after a checkpoint.

    python tests/scripts/resumable_training.py {adapter,meta} OUTPUT_DIR [--seed S] [--die_after_step N] [--resume]

Writes OUTPUT_DIR/final.safetensors (every weight and buffer) when it finishes.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import Trainer, TrainerCallback, TrainingArguments

from hf_adapter_ext import (
    AdapterDataCollator,
    MetaTrainingArguments,
    NeuralAdapterConfig,
    SemiSupervisedMetaTrainer,
    SIBConfig,
    SIBForFewShotClassification,
    get_adapter_model,
)
from tests.conftest import NEW_LABELS, build_tokenizer, tiny_source
from tests.helpers import toy_dataset
from tests.test_meta import intent_data, tiny_backbone


class DieAfterCheckpoint(TrainerCallback):
    """Simulates a killed job: the process exits abruptly once the checkpoint of ``step`` is on disk."""

    def __init__(self, step: int):
        self.step = step

    def on_save(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            os._exit(17)


def common(output_dir: str, seed: int) -> dict:
    return dict(output_dir=output_dir, max_steps=8, save_strategy="steps", save_steps=2, seed=seed,
                per_device_train_batch_size=2, learning_rate=1e-2, report_to="none", use_cpu=True,
                disable_tqdm=True, logging_strategy="no", lr_scheduler_type="linear", warmup_steps=2)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=("adapter", "meta"))
    parser.add_argument("output_dir")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--die_after_step", type=int, default=None)
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    tokenizer = build_tokenizer()
    callbacks = [DieAfterCheckpoint(args.die_after_step)] if args.die_after_step else []
    if args.kind == "adapter":
        model = get_adapter_model(tiny_source(seed=1), NeuralAdapterConfig(new_labels=NEW_LABELS))
        trainer = Trainer(model=model, args=TrainingArguments(**common(args.output_dir, args.seed)),
                          train_dataset=toy_dataset(tokenizer, repeat=3), data_collator=AdapterDataCollator(tokenizer),
                          callbacks=callbacks)
    else:
        model = SIBForFewShotClassification(SIBConfig(n_way=3, inner_steps=2),
                                            backbone=tiny_backbone(tokenizer.vocab_size))
        meta_args = MetaTrainingArguments(**common(args.output_dir, args.seed), k_shot=1, n_query=2,
                                          train_episodes=64, num_eval_episodes=4)
        trainer = SemiSupervisedMetaTrainer(model=model, args=meta_args, train_dataset=intent_data(tokenizer),
                                            processing_class=tokenizer, callbacks=callbacks)
    trainer.train(resume_from_checkpoint=True if args.resume else None)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(Path(args.output_dir) / "final.safetensors"))


if __name__ == "__main__":
    main()
