"""The token-classification loss, normalised so that it does not depend on how a batch is split.

`Trainer` sums the losses of the micro-batches of one optimiser step (gradient accumulation) and DDP averages
the processes' gradients. Both add up to one big batch's loss only if every micro-batch divides its *sum* by
the item count of the whole step, which `Trainer` passes as ``num_items_in_batch`` (labelled tokens, across
accumulation steps and processes), as transformers' own models do.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..constants import IGNORE_INDEX
from .crf import CRF, check_label_ids


def loss_denominator(labels: torch.Tensor, num_items_in_batch: int | torch.Tensor | None) -> torch.Tensor:
    """The step's labelled-token count if ``Trainer`` gave it, else this batch's (never below 1)."""
    count = (labels != IGNORE_INDEX).sum() if num_items_in_batch is None else num_items_in_batch
    return torch.as_tensor(count, device=labels.device).clamp(min=1)


def token_classification_loss_sum(emissions: torch.Tensor, labels: torch.Tensor, attention_mask: torch.Tensor,
                                  crf: CRF | None) -> torch.Tensor:
    """Summed loss: the CRF's per-sequence negative log-likelihoods, or per-token cross-entropies."""
    if crf is not None:
        return crf.sequence_nll(emissions, labels, attention_mask).sum()
    return F.cross_entropy(emissions.flatten(0, 1).float(), labels.flatten(), ignore_index=IGNORE_INDEX,
                           reduction="sum")


def check_labels(labels, emissions: torch.Tensor, num_labels: int, id2label: dict,
                 attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """A model's ``labels`` checked at its boundary (:func:`check_label_ids`), as int64 for the losses. A label on a
    padded position (attention 0) is refused: a CRF leaves it out and a cross-entropy counts it, so the two heads
    would learn from different data, and either way the labels are not aligned with the tokens."""
    check_label_ids(labels, tuple(emissions.shape[:2]), num_labels, id2label.values())
    if attention_mask is not None:
        padded = (labels != IGNORE_INDEX) & (attention_mask.to(labels.device) == 0)
        if bool(padded.any()):
            row, position = padded.nonzero()[0].tolist()
            raise ValueError(f"labels give row {row} a label at position {position}, which its attention_mask marks as "
                             "padding: labels are not aligned with the tokens. Pad labels with -100 (as "
                             "DataCollatorForTokenClassification does), on the tokenizer's padding side.")
    return labels.long()
