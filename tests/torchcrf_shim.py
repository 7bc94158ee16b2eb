"""pytorch-crf's interface (``torchcrf.CRF``, 0.7.2) over our CRF, so that its test cases can run against ours.

pytorch-crf returns the log-likelihood (not its negative), takes [seq, batch, tags] unless ``batch_first``, and
reduces with ``sum`` (default), ``mean``, ``token_mean`` or ``none``; ``decode`` returns lists of tag ids.
"""

from __future__ import annotations

import torch
from torch import nn

from hf_adapter_ext.modeling.crf import CRF


class TorchCRFShim(nn.Module):
    def __init__(self, num_tags: int, batch_first: bool = False):
        super().__init__()
        self.crf = CRF(num_tags)
        self.num_tags, self.batch_first = num_tags, batch_first

    @property
    def start_transitions(self):
        return self.crf.start_transitions

    @property
    def end_transitions(self):
        return self.crf.end_transitions

    @property
    def transitions(self):
        return self.crf.transitions

    def _batch_major(self, *tensors):
        return tuple(t if t is None or self.batch_first else t.transpose(0, 1) for t in tensors)

    def forward(self, emissions, tags, mask=None, reduction: str = "sum"):
        if reduction not in ("none", "sum", "mean", "token_mean"):
            raise ValueError(f"invalid reduction: {reduction}")
        if emissions.dim() != 3:
            raise ValueError(f"emissions must have dimension of 3, got {emissions.dim()}")
        if tags.dim() != 2:
            raise ValueError(f"tags must have dimension of 2, got {tags.dim()}")
        emissions, tags, mask = self._batch_major(emissions, tags, mask)
        llh = -self.crf.sequence_nll(emissions, tags, mask)
        if reduction == "none":
            return llh
        if reduction == "sum":
            return llh.sum()
        if reduction == "mean":
            return llh.mean()
        tokens = mask.sum() if mask is not None else torch.tensor(tags.numel())
        return llh.sum() / tokens.to(llh.dtype)

    def decode(self, emissions, mask=None) -> list[list[int]]:
        if emissions.dim() != 3:
            raise ValueError(f"emissions must have dimension of 3, got {emissions.dim()}")
        emissions, mask = self._batch_major(emissions, mask)
        paths = self.crf.decode(emissions, mask)
        return [[t for t in row.tolist() if t != -100] for row in paths]
