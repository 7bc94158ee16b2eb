"""Linear-chain CRF for token classification with Hugging Face style labels.

Positions are handled in three ways:

* padding (``attention_mask == 0``) is outside the sequence;
* positions labelled ``-100`` (subword continuations, special tokens) are *latent*: the loss
  marginalises over their label, so training sees the same chain of sub-tokens that
  decoding walks at inference, when no labels (and no word boundaries) are known —
  this is what makes ``pipeline("token-classification")`` return the Viterbi path;
* every other position is observed.

Sequences may be padded on either side: attended positions are packed to the left first.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

IGNORE_INDEX = -100
# Finite "minus infinity": a forbidden transition or label costs this much, so a gold path that
# breaks a constraint gives a large but finite loss instead of NaN gradients.
FORBIDDEN = -1e4
_TINY = 1e-30  # floor of a probability-space sum in the forward algorithm


def bio_allowed_transitions(labels: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Boolean masks of allowed ``(from, to)`` transitions and allowed start labels for BIO tags.

    ``I-X`` may only follow ``B-X`` or ``I-X`` and may not start a sequence.
    """
    n = len(labels)
    allowed = torch.ones(n, n, dtype=torch.bool)
    start = torch.ones(n, dtype=torch.bool)
    for j, to in enumerate(labels):
        if not to.startswith("I-"):
            continue
        entity = to[2:]
        start[j] = False
        for i, frm in enumerate(labels):
            allowed[i, j] = frm in (f"B-{entity}", f"I-{entity}")
    return allowed, start


def _pack_left(mask: torch.Tensor, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Move attended positions to the front of each row, keeping their order."""
    if torch.equal(mask, mask.cummin(dim=1).values):  # already right-padded: nothing to move
        return (mask, *tensors)
    order = torch.sort((~mask).to(torch.int8), dim=1, stable=True).indices
    packed = [mask.gather(1, order)]
    for t in tensors:
        index = order if t.dim() == 2 else order.unsqueeze(-1).expand_as(t)
        packed.append(t.gather(1, index))
    return tuple(packed)


def _backtrack(last: torch.Tensor, history: list[torch.Tensor]) -> torch.Tensor:
    """Follow the backpointers ``history`` ([B, L] per step) back from the ``last`` labels [B].

    In NumPy on the host: one transfer, then a microsecond per step instead of a gather kernel per step,
    which dominated decoding of single sentences.
    """
    labels = last.cpu().numpy()
    path = [labels]
    if history:
        pointers, rows = torch.stack(history).cpu().numpy(), np.arange(labels.size)
        for step in pointers[::-1]:
            labels = step[rows, labels]
            path.append(labels)
    return torch.from_numpy(np.stack(path[::-1], axis=1))


class _LogPartition(torch.autograd.Function):
    """log Z of a linear-chain CRF with a hand-written backward pass (the forward-backward algorithm).

    Both recursions are scaled: alpha and beta are kept as normalised probability vectors (one [B, L] x [L, L]
    matrix product per step, emissions exponentiated once for all steps) and only the forward scales are
    summed, in float64, into log Z. Because ``sum_j alpha_t(j) beta_t(j) = Z`` at every step, the posterior
    marginals (d log Z / d emissions) and expected transition counts (d log Z / d transitions) are the
    normalised products ``p_t * b_t`` and ``p_{t-1} x (T * e_t * b_t)``: no log scales, no autograd graph over the
    T steps, which is what makes the loss cheap on CPU, where per-op overhead dominates at these sizes.
    """

    @staticmethod
    def forward(ctx, emissions, mask, trans, start, end):
        length = emissions.size(1)
        trans_max = trans.max()
        exp_trans = (trans - trans_max).exp()
        emission_max = emissions.max(dim=-1, keepdim=True).values
        exp_emissions = (emissions - emission_max).exp()
        alpha = start + emissions[:, 0]
        first_scale = alpha.max(dim=1, keepdim=True).values
        p = (alpha - first_scale).exp()
        p = p / p.sum(dim=1, keepdim=True)
        forward_p, log_totals = [p], []
        for t in range(1, length):
            q = (p @ exp_trans) * exp_emissions[:, t]
            total = q.sum(dim=1, keepdim=True).clamp(min=_TINY)
            p = torch.where(mask[:, t : t + 1], q / total, p)
            forward_p.append(p)
            log_totals.append(total)
        end_max = end.max()
        exp_end = (end - end_max).exp()
        final = (p * exp_end).sum(dim=1).clamp(min=_TINY)
        steps = torch.zeros(emissions.size(0), 0, dtype=torch.float64, device=emissions.device)
        if log_totals:
            offsets = (emission_max[:, 1:, 0] + trans_max) * mask[:, 1:]
            steps = (torch.cat(log_totals, dim=1).log() * mask[:, 1:] + offsets).double()
        first_norm = (alpha - first_scale).exp().sum(dim=1).log()
        log_z = (first_scale.squeeze(1) + first_norm + final.log() + end_max).double() + steps.sum(dim=1)
        ctx.save_for_backward(mask, exp_trans, exp_emissions, exp_end, torch.stack(forward_p, dim=1))
        return log_z.to(emissions.dtype)

    @staticmethod
    def backward(ctx, grad_log_z):
        mask, exp_trans, exp_emissions, exp_end, forward_p = ctx.saved_tensors
        batch, length, labels = exp_emissions.shape
        last = (mask.sum(dim=1) - 1).clamp(min=0)
        backward_b = [None] * length
        b = exp_end.expand(batch, labels)
        for t in range(length - 1, -1, -1):
            b = torch.where((last == t).unsqueeze(1), exp_end.expand(batch, labels), b)
            backward_b[t] = b
            if t > 0:
                q = (exp_emissions[:, t] * b) @ exp_trans.T
                b = torch.where(mask[:, t : t + 1], q / q.sum(dim=1, keepdim=True).clamp(min=_TINY), b)
        b = torch.stack(backward_b, dim=1)
        weight = grad_log_z.view(batch, 1, 1) * mask.unsqueeze(-1)
        unary = forward_p * b
        marginals = unary / unary.sum(dim=-1, keepdim=True).clamp(min=_TINY) * weight
        pair = forward_p[:, :-1].unsqueeze(3) * exp_trans * (exp_emissions[:, 1:] * b[:, 1:]).unsqueeze(2)
        pair = pair / pair.sum(dim=(2, 3), keepdim=True).clamp(min=_TINY) * weight[:, 1:].unsqueeze(-1)
        at_end = marginals.gather(1, last.view(batch, 1, 1).expand(batch, 1, labels)).squeeze(1)
        return marginals, None, pair.sum(dim=(0, 1)), marginals[:, 0].sum(0), at_end.sum(0)


class CRF(nn.Module):
    """Batched, masked linear-chain CRF: log-likelihood loss and Viterbi decoding."""

    def __init__(self, num_labels: int, allowed: torch.Tensor | None = None, allowed_start: torch.Tensor | None = None):
        super().__init__()
        self.num_labels = num_labels
        self.transitions = nn.Parameter(torch.zeros(num_labels, num_labels))
        self.start_transitions = nn.Parameter(torch.zeros(num_labels))
        self.end_transitions = nn.Parameter(torch.zeros(num_labels))
        if allowed is None:
            allowed = torch.ones(num_labels, num_labels, dtype=torch.bool)
        if allowed_start is None:
            allowed_start = torch.ones(num_labels, dtype=torch.bool)
        self.register_buffer("allowed", allowed.clone(), persistent=False)
        self.register_buffer("allowed_start", allowed_start.clone(), persistent=False)

    @classmethod
    def for_labels(cls, labels: Sequence[str], bio_constraints: bool = True) -> CRF:
        if not bio_constraints:
            return cls(len(labels))
        return cls(len(labels), *bio_allowed_transitions(labels))

    def _scores(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        trans = self.transitions.masked_fill(~self.allowed, FORBIDDEN)
        start = self.start_transitions.masked_fill(~self.allowed_start, FORBIDDEN)
        return trans, start, self.end_transitions

    def _log_partition(self, emissions: torch.Tensor, mask: torch.Tensor, exact: bool = False) -> torch.Tensor:
        """Forward algorithm over left-packed ``emissions`` [B, T, L] with ``mask`` [B, T].

        By default :class:`_LogPartition` runs it with matrix products in probability space and an analytic
        backward pass (posterior marginals). ``exact`` uses autograd through log-space sums instead: needed when
        every path left is forbidden (a gold path that breaks the BIO constraints), whose tiny mass the
        probability-space floor would overstate.
        """
        trans, start, end = self._scores()
        if exact:
            alpha = start + emissions[:, 0]
            for t in range(1, emissions.size(1)):
                step = torch.logsumexp(alpha.unsqueeze(2) + trans, dim=1) + emissions[:, t]
                alpha = torch.where(mask[:, t : t + 1], step, alpha)
            return torch.logsumexp(alpha + end, dim=1)
        return _LogPartition.apply(emissions, mask, trans, start, end)

    def _path_score(self, emissions: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Score of the labelled path of each left-packed, fully observed sequence."""
        trans, start, end = self._scores()
        labels = labels.clamp(min=0)
        emitted = emissions.gather(2, labels.unsqueeze(-1)).squeeze(-1)
        steps = trans[labels[:, :-1], labels[:, 1:]]
        last = labels.gather(1, (mask.sum(1, keepdim=True) - 1).clamp(min=0)).squeeze(1)
        return (start[labels[:, 0]] + (emitted * mask).sum(1) + (steps * mask[:, 1:]).sum(1) + end[last])

    def neg_log_likelihood(
        self, emissions: torch.Tensor, labels: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Mean over the batch of ``-log p(observed labels)``; ``-100`` positions are marginalised."""
        mask = self._mask(emissions, attention_mask)
        self._check_labels(labels, mask)
        mask, emissions, labels = _pack_left(mask, emissions, labels)
        observed = (labels != IGNORE_INDEX) & mask
        if torch.equal(observed, mask):  # every position labelled: the gold path's score, no second pass
            gold = self._path_score(emissions, labels, mask)
        else:
            allowed = torch.nn.functional.one_hot(labels.clamp(min=0), self.num_labels).bool()
            clamped = emissions.masked_fill(observed.unsqueeze(-1) & ~allowed, FORBIDDEN)
            gold = self._log_partition(clamped, mask, exact=True)
        nll = self._log_partition(emissions, mask) - gold
        has_tokens = mask.any(dim=1)
        return nll[has_tokens].sum() / has_tokens.sum().clamp(min=1)

    @torch.no_grad()
    def decode(self, emissions: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Viterbi path [B, T] (label ids; ``-100`` on padding), in the input's positions."""
        mask = self._mask(emissions, attention_mask)
        packed_mask, packed = _pack_left(mask, emissions)
        trans, start, end = self._scores()
        full = bool(packed_mask.all())  # no padding: no per-step masking
        stay = torch.arange(self.num_labels, device=packed.device)
        steps = packed.unbind(1)
        score = start + steps[0]
        history = []
        for t in range(1, len(steps)):
            best, idx = (score.unsqueeze(2) + trans).max(dim=1)
            if full:
                score = best + steps[t]
                history.append(idx)
                continue
            step_mask = packed_mask[:, t : t + 1]
            score = torch.where(step_mask, best + steps[t], score)
            # Where the sequence has ended, a backpointer to itself carries the last label through.
            history.append(torch.where(step_mask, idx, stay))
        packed_path = _backtrack((score + end).argmax(dim=1), history).to(packed.device)
        if full:
            return packed_path
        packed_path = packed_path.masked_fill(~packed_mask, IGNORE_INDEX)
        if torch.equal(packed_mask, mask):  # was already right-padded
            return packed_path
        order = torch.sort((~mask).to(torch.int8), dim=1, stable=True).indices
        return torch.full_like(packed_path, IGNORE_INDEX).scatter(1, order, packed_path)

    def _mask(self, emissions: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        if emissions.dim() != 3 or emissions.size(-1) != self.num_labels:
            raise ValueError(
                f"CRF expects emissions of shape [batch, length, {self.num_labels}], got {tuple(emissions.shape)}."
            )
        if attention_mask is None:
            return torch.ones(emissions.shape[:2], dtype=torch.bool, device=emissions.device)
        return attention_mask.bool()

    def _check_labels(self, labels: torch.Tensor, mask: torch.Tensor) -> None:
        valid = labels[mask & (labels != IGNORE_INDEX)]
        if valid.numel() and (valid.min() < 0 or valid.max() >= self.num_labels):
            bad = valid[(valid < 0) | (valid >= self.num_labels)][0].item()
            raise ValueError(
                f"Label id {bad} is out of range for a CRF over {self.num_labels} labels; "
                "use ids in [0, num_labels) and -100 for positions to ignore."
            )
