"""A slow, obviously correct CRF in float64 log space (autograd through logsumexp), one sequence at a time."""

from __future__ import annotations

import torch


def reference_nll(emissions, labels, mask, trans, start, end, partition_only=False):
    """Per-sequence ``-log p(labels)`` (or log Z with ``partition_only``); ``-100`` positions marginalised;
    padding anywhere in the row."""
    out = []
    for e, y, m in zip(emissions.double(), labels, mask.bool()):
        e, y = e[m], y[m]
        if len(e) == 0:
            out.append(e.sum() * 0)
            continue
        clamp = torch.zeros_like(e)
        observed = y != -100
        clamp[observed] = float("-inf")
        clamp[observed, y[observed]] = 0.0
        log_z = _log_z(e, trans, start, end)
        out.append(log_z if partition_only else log_z - _log_z(e + clamp, trans, start, end))
    return torch.stack(out)


def _log_z(e, trans, start, end):
    alpha = start.double() + e[0]
    for t in range(1, len(e)):
        alpha = torch.logsumexp(alpha.unsqueeze(1) + trans.double(), dim=0) + e[t]
    return torch.logsumexp(alpha + end.double(), dim=0)
