"""Trainer callbacks shared by the extension, consolidation and meta-learning trainers."""

from __future__ import annotations

import logging

from transformers import EarlyStoppingCallback, Trainer, TrainerCallback

logger = logging.getLogger(__name__)


class BestIsLastCallback(TrainerCallback):
    """Warns when the best evaluation was the last one: the model was still improving when the budget ran out, so
    the run stopped too soon to find its best step."""

    def on_train_end(self, args, state, control, **kwargs):
        best = getattr(state, "best_global_step", None)
        metric = args.metric_for_best_model or "loss"
        key = metric if metric.startswith("eval_") else f"eval_{metric}"  # Trainer accepts either spelling
        evaluated = [entry["step"] for entry in state.log_history if key in entry]
        if best and evaluated and best == max(evaluated) and len(evaluated) > 1:
            logger.warning("The best validation score came at the last evaluation (step %d of %d): the model was "
                           "still improving. Raise --max_steps (or --num_train_epochs) and train again.", best,
                           state.global_step)


def add_stopping_callbacks(trainer: Trainer, patience: int) -> None:
    """Early stopping after ``patience`` evaluations without gain (0: never) and the best-is-last warning, for a
    trainer that keeps its best step (``load_best_model_at_end``) on a validation set."""
    if trainer.args.load_best_model_at_end and trainer.eval_dataset is not None:
        if patience:
            trainer.add_callback(EarlyStoppingCallback(patience))
        trainer.add_callback(BestIsLastCallback())
