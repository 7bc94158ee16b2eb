"""Trainer callbacks."""

from __future__ import annotations

from transformers import TrainerCallback


class KeepBestCallback(TrainerCallback):
    """Keep, in memory, the weights of the evaluation with the best ``metric`` and restore them at the end.

    Chooses the epoch/checkpoint on validation like ``load_best_model_at_end`` without writing checkpoints.
    """

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
