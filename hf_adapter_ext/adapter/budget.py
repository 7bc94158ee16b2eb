"""The training budget of extensions and consolidations: a number of optimisation steps, evaluated on validation
every few steps, stopped once the score has not risen for a while, with a warning when the best step is the last.

A domain brings 10–200 labelled sentences: counted in epochs that is a few dozen steps, too few to learn from.
"""

from __future__ import annotations

# The step budget and the stopping rule of `examples/extend_ner.py` and `extension_training_defaults`.
MAX_STEPS = 1500
EVAL_STEPS = 50
EARLY_STOPPING_PATIENCE = 6  # evaluations without a better validation score (300 steps)
# A self-training run starts from the first run's trained weights and refines them, so it is stopped sooner. In the
# two second runs of benchmarks/fewshot_extension.py at patience 6 (k = 25, seed 0), every new best validation score
# came within 2 evaluations of the previous one but one: politics rose 0.4 F1 at step 500, 5 evaluations after
# its best at step 250, for 450 more steps (docs/extending.md, "Unlabelled domain text").
SELF_TRAINING_PATIENCE = 2


def step_budget(learning_rate: float, validated: bool = True) -> dict:
    """`TrainingArguments` settings for a budget of ``MAX_STEPS`` steps at ``learning_rate``, batch 16; with
    ``validated``, the score (``overall_f1``) is measured and the model saved every ``EVAL_STEPS`` steps and the
    best step kept at the end, for `add_stopping_callbacks` to stop on; without, nothing is saved on the way."""
    settings = {"max_steps": MAX_STEPS, "learning_rate": learning_rate, "per_device_train_batch_size": 16,
                "warmup_steps": 20, "save_strategy": "no"}
    if validated:
        settings.update(eval_strategy="steps", eval_steps=EVAL_STEPS, save_strategy="steps", save_steps=EVAL_STEPS,
                        save_total_limit=1, load_best_model_at_end=True, metric_for_best_model="overall_f1")
    return settings
