"""The optimiser extensions train best with: a higher learning rate for the parts that start from scratch."""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from ..validation import POSITIVE_FLOAT, Number, check_model, check_number

# The output layer, the CRF and the adapter start from scratch (or from a few source rows); the encoder
# starts trained. One rate for both either under-trains the new parts or shakes the encoder.
FRESH_PREFIXES = ("classifier.", "crf.", "adapter.")


def adapter_optimizer(model: nn.Module, learning_rate: float, head_learning_rate: float | None = None,
                      weight_decay: float = 0.0) -> torch.optim.AdamW:
    """AdamW over the trainable parameters, with ``head_learning_rate`` (default: ``learning_rate``) for the
    output layer, CRF and adapter. Pass it to ``Trainer(optimizers=(adapter_optimizer(...), None))``."""
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
    # Fused AdamW: one kernel for every tensor (the 75k×50 word-vector matrix of the BiLSTM-CRF made the per-tensor
    # loop a quarter of a training step on CPU).
    fused = all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for _, p in params)
    return torch.optim.AdamW([g for g in groups if g["params"]], weight_decay=weight_decay, fused=fused)
