"""The optimiser extensions train best with: a higher learning rate for the parts that start from scratch."""

from __future__ import annotations

import dataclasses

import torch
from torch import nn
from transformers import Trainer, TrainingArguments

from ..validation import POSITIVE_FLOAT, Number, check_model, check_number

# The output layer, the CRF and the adapter start from scratch (or from a few source rows); the encoder
# starts trained. One rate for both either under-trains the new parts or shakes the encoder.
FRESH_PREFIXES = ("classifier.", "crf.", "adapter.")


def adapter_optimizer(model: nn.Module, learning_rate: float, head_learning_rate: float | None = None,
                      weight_decay: float = 0.0, args: TrainingArguments | None = None) -> torch.optim.Optimizer:
    """The optimiser over the trainable parameters, with ``head_learning_rate`` (default: ``learning_rate``) for
    the output layer, CRF and adapter. Pass it to ``Trainer(optimizers=(adapter_optimizer(...), None))``.

    Args:
        args: the run's `TrainingArguments`: its optimiser and that optimiser's settings (``optim``,
            ``adam_beta1`` / ``adam_beta2`` / ``adam_epsilon``, ``optim_args``) are used, as Trainer uses them.
            Without it, fused AdamW with PyTorch's defaults (what ``TrainingArguments``' defaults give).
    """
    check_model(model, "adapter_optimizer")
    check_number("adapter_optimizer", "learning_rate", learning_rate, POSITIVE_FLOAT)
    check_number("adapter_optimizer", "head_learning_rate", head_learning_rate,
                 dataclasses.replace(POSITIVE_FLOAT, optional=True))
    check_number("adapter_optimizer", "weight_decay", weight_decay, Number(float, 0, example="0.01"))
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not params:
        raise ValueError(f"adapter_optimizer: {type(model).__name__} has no trainable parameters (requires_grad is off "
                         "everywhere). Pass the extended model (get_adapter_model(...)), whose new parts train, not "
                         "its frozen source.")
    groups = [{"params": [p for n, p in params if not n.startswith(FRESH_PREFIXES)], "lr": learning_rate},
              {"params": [p for n, p in params if n.startswith(FRESH_PREFIXES)],
               "lr": head_learning_rate or learning_rate}]
    groups = [group for group in groups if group["params"]]
    if args is None:
        # Fused AdamW: one kernel for every tensor (the 75k×50 word-vector matrix of the BiLSTM-CRF made the
        # per-tensor loop a quarter of a training step on CPU).
        fused = all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for _, p in params)
        return torch.optim.AdamW(groups, weight_decay=weight_decay, fused=fused)
    optimizer_cls, kwargs = Trainer.get_optimizer_cls_and_kwargs(args, model)
    own_groups = sorted(set(kwargs) & {"params", "model", "optimizer_dict"})
    if own_groups:  # GaLore, APOLLO, LOMO, 8-bit embeddings: transformers builds their parameter groups itself
        name = getattr(args.optim, "value", args.optim)
        raise ValueError(f"optim={name!r} builds its own parameter groups ({own_groups}), which cannot take the "
                         "extension's two learning rates (encoder, and head_learning_rate for the new head, CRF and "
                         "adapter); choose an optimiser that takes plain parameter groups (adamw_torch_fused, the "
                         "default, adamw_torch, adafactor, sgd, ...).")
    return optimizer_cls(groups, **{**kwargs, "weight_decay": weight_decay})
