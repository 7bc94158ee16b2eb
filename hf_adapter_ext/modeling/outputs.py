"""Model outputs shared by CRF-headed token classifiers."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers.modeling_outputs import TokenClassifierOutput

from .crf import CRF, FORBIDDEN, is_tracing


@dataclass
class CRFTokenClassifierOutput(TokenClassifierOutput):
    """``emissions``: the per-token label scores before the CRF (``logits`` carry the Viterbi path in eval)."""

    emissions: torch.FloatTensor | None = None


def viterbi_logits(crf: CRF, emissions: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Scores whose per-token argmax is the CRF's Viterbi path (0 on the path, FORBIDDEN elsewhere).

    Eager decoding refuses non-finite emissions; in an exported graph, which cannot raise, a sequence with a
    non-finite emission gets NaN scores everywhere, never a clean-looking path."""
    path = crf.decode(emissions, attention_mask).clamp(min=0)
    logits = torch.full_like(emissions, FORBIDDEN).scatter_(-1, path.unsqueeze(-1), 0.0)
    if not is_tracing():  # eager decoding has refused non-finite emissions already
        return logits
    finite = torch.isfinite(emissions).all(dim=-1).logical_or(~attention_mask.bool()).all(dim=1)
    return torch.where(finite.view(-1, 1, 1), logits, torch.full_like(logits, float("nan")))


def label_scores(output) -> torch.Tensor:
    """A model's per-token label scores: its CRF emissions when it has a CRF, else its logits."""
    emissions = getattr(output, "emissions", None)
    return emissions if emissions is not None else output.logits
