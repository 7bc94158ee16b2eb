"""Model outputs shared by CRF-headed token classifiers."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers.modeling_outputs import TokenClassifierOutput

from .crf import CRF, FORBIDDEN


@dataclass
class CRFTokenClassifierOutput(TokenClassifierOutput):
    """``emissions``: the per-token label scores before the CRF (``logits`` carry the Viterbi path in eval)."""

    emissions: torch.FloatTensor | None = None


def viterbi_logits(crf: CRF, emissions: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Scores whose per-token argmax is the CRF's Viterbi path (0 on the path, FORBIDDEN elsewhere)."""
    path = crf.decode(emissions, attention_mask).clamp(min=0)
    return torch.full_like(emissions, FORBIDDEN).scatter_(-1, path.unsqueeze(-1), 0.0)


def label_scores(output) -> torch.Tensor:
    """A model's per-token label scores: its CRF emissions when it has a CRF, else its logits."""
    emissions = getattr(output, "emissions", None)
    return emissions if emissions is not None else output.logits
