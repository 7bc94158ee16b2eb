"""Model outputs shared by CRF-headed token classifiers."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers.modeling_outputs import TokenClassifierOutput

from .crf import CRF, is_tracing

_TINY = torch.finfo(torch.float32).tiny  # a marginal that underflowed to 0 scores log(tiny), not -inf
_PATH_MARGIN = 1e-3  # how far below the path label's log marginal a more probable label off the path is put


@dataclass
class CRFTokenClassifierOutput(TokenClassifierOutput):
    """``emissions``: the per-token label scores before the CRF (in eval, ``logits`` are `viterbi_logits`: their
    argmax is the Viterbi path, their softmax the CRF's marginals)."""

    emissions: torch.FloatTensor | None = None


def viterbi_logits(crf: CRF, emissions: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Scores whose per-token argmax is the CRF's Viterbi path and whose softmax at that label is the CRF's
    posterior marginal of it: what ``pipeline("token-classification")`` reports as a tag's ``score``.

    They are the log marginals, except that a label off the path whose marginal reaches the path label's is put
    just below it (the path and the most probable label of a position differ rarely, where the path as a whole is
    more probable): its argmax must stay the path, and the path label's score there is then a little above its
    marginal. Float32 or wider. Eager decoding refuses non-finite emissions; in an exported graph, which cannot
    raise, a sequence with a non-finite emission gets NaN scores everywhere, never a clean-looking path."""
    path = crf.decode(emissions, attention_mask).clamp(min=0).unsqueeze(-1)
    log_marginals = crf.marginals(emissions, attention_mask).clamp(min=_TINY).log()
    on_path = log_marginals.gather(-1, path)
    below_path = torch.minimum(log_marginals, on_path - _PATH_MARGIN)
    logits = below_path.scatter(-1, path, on_path)
    if not is_tracing():  # eager decoding has refused non-finite emissions already
        return logits
    finite = torch.isfinite(emissions).all(dim=-1).logical_or(~attention_mask.bool()).all(dim=1)
    return torch.where(finite.view(-1, 1, 1), logits, torch.full_like(logits, float("nan")))


def label_scores(output) -> torch.Tensor:
    """A model's per-token label scores: its CRF emissions when it has a CRF, else its logits."""
    emissions = getattr(output, "emissions", None)
    return emissions if emissions is not None else output.logits
