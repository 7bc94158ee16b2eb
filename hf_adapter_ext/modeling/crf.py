"""Linear-chain CRF for token classification with Hugging Face style labels.

Positions are handled in three ways:

* padding (``attention_mask == 0``) is outside the sequence;
* positions labelled ``-100`` (subword continuations, special tokens) are *latent*: the loss
  marginalises over their label, so training sees the same chain of sub-tokens that
  decoding walks at inference, when no labels (and no word boundaries) are known;
  this is what makes ``pipeline("token-classification")`` return the Viterbi path;
* every other position is observed.

Sequences may be padded on either side: attended positions are packed to the left first.
Everything is computed in float32 or wider (half-precision inputs are upcast, results come back in
the caller's dtype), in log space, so results stay exact whatever the scale of the scores.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from torch._higher_order_ops import scan

from ..bio import bio_allowed_transitions
from ..constants import IGNORE_INDEX
from ..validation import check_string_list, repeated

# Finite "minus infinity": a forbidden transition or label costs this much, so a gold path that
# breaks a constraint gives a large but finite loss instead of NaN gradients.
FORBIDDEN = -1e4


def check_label_ids(labels, shape: tuple, num_labels: int, names=None) -> None:
    """Type, shape and range of label ids (-100 marks a position to ignore), checked once where they enter, with
    messages that say what to pass instead."""
    if not isinstance(labels, torch.Tensor) or labels.dtype.is_floating_point or labels.dtype.is_complex or \
            labels.dtype == torch.bool:
        found = labels.dtype if isinstance(labels, torch.Tensor) else type(labels).__name__
        raise TypeError(f"labels must be an integer (int64) tensor of label ids, -100 to ignore a position; got "
                        f"{found}.")
    if tuple(labels.shape) != tuple(shape):
        raise ValueError(f"labels have shape {tuple(labels.shape)} but the inputs are {tuple(shape)} (batch, length): "
                         "give one label id per position, -100 for positions to ignore.")
    bad = labels[(labels != IGNORE_INDEX) & ((labels < 0) | (labels >= num_labels))]
    if bad.numel():
        listed = f" ({list(names)})" if names is not None else ""
        raise ValueError(f"Label id {bad[0].item()} is out of range: there are {num_labels} labels{listed}; use ids "
                         "in [0, num_labels) and -100 for positions to ignore.")


def is_tracing() -> bool:
    """Whether this call is being captured into a graph (torch.export, torch.compile, TorchScript tracing)."""
    return torch.compiler.is_compiling() or torch.compiler.is_exporting() or torch.jit.is_tracing()


def refuse_unexportable(what: str) -> None:
    """Refuse TorchScript tracing (``torch.jit.trace``, ``torch.onnx.export(..., dynamo=False)``): it records one
    run's Python branches and loop counts as constants, so the graph would silently replay the example input's
    answer. ``torch.export`` and ``torch.onnx.export(..., dynamo=True)`` capture the loops as ``scan``s."""
    if torch.jit.is_tracing() or (torch.onnx.is_in_onnx_export() and not torch.compiler.is_exporting()):
        raise RuntimeError(
            f"{what} depends on the input's values and length, which the TorchScript tracer would freeze into "
            "the graph (every input would get the example's answer). Export with torch.export.export(...) or "
            "torch.onnx.export(..., dynamo=True) instead; see the README's Export section."
        )


def left_order(mask: torch.Tensor) -> torch.Tensor:
    """For each row, the positions of its attended tokens in order, then its padding: ``gather`` with it packs
    the row to the left. A stable sort of ``~mask``, written with cumulative sums and a scatter, which every
    exporter (ONNX included) can translate."""
    mask = mask.bool()
    attended = mask.long().cumsum(dim=1) - 1
    padding = mask.long().sum(dim=1, keepdim=True) + (~mask).long().cumsum(dim=1) - 1
    slot = torch.where(mask, attended, padding)
    positions = torch.arange(mask.size(1), device=mask.device).expand_as(slot)
    return torch.zeros_like(slot).scatter(1, slot, positions)


def _pack_left(mask: torch.Tensor, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Move attended positions to the front of each row, keeping their order."""
    if not is_tracing() and torch.equal(mask, mask.cummin(dim=1).values):  # already right-padded
        return (mask, *tensors)
    order = left_order(mask)
    packed = [mask.gather(1, order)]
    for t in tensors:
        index = order if t.dim() == 2 else order.unsqueeze(-1).expand_as(t)
        packed.append(t.gather(1, index))
    return tuple(packed)


def _packed_emissions(emissions: torch.Tensor, mask: torch.Tensor, *tensors: torch.Tensor):
    """Emissions as the recursions take them: float32 or wider, packed left (with ``tensors``), each position
    shifted by its maximum (log p(y) and the marginals do not change; every value is <= 0), padding zeroed so that
    whatever a model emits there (even NaN) cannot leak into the sums. Returns (mask, emissions, *tensors)."""
    emissions = emissions.to(torch.promote_types(emissions.dtype, torch.float32))
    mask, emissions, *tensors = _pack_left(mask, emissions, *tensors)
    emissions = emissions - emissions.detach().amax(dim=-1, keepdim=True)
    return (mask, emissions.masked_fill(~mask.unsqueeze(-1), 0.0), *tensors)


def _unpack(packed_path: torch.Tensor, packed_mask: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Labels of left-packed rows back at the input's positions (``-100`` on padding)."""
    packed_path = packed_path.masked_fill(~packed_mask, IGNORE_INDEX)
    if not is_tracing() and torch.equal(packed_mask, mask):
        return packed_path
    order = left_order(mask)
    return torch.full_like(packed_path, IGNORE_INDEX).scatter(1, order, packed_path)


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


def _scan_inputs(emissions: torch.Tensor, mask: torch.Tensor, *scores: torch.Tensor):
    """What the exported recursions scan over, all detached: the emissions and mask with two masked positions
    appended (``scan`` needs at least two steps), each position's (emission, mask) after the first, time first, and
    the transition / start / end ``scores``."""
    emissions = nn.functional.pad(emissions, (0, 0, 0, 2)).detach()
    mask = nn.functional.pad(mask, (0, 2))
    steps = (emissions[:, 1:].transpose(0, 1).contiguous(), mask[:, 1:].transpose(0, 1).contiguous())
    return (emissions, mask, steps, *(score.detach() for score in scores))


def _viterbi_graph(emissions: torch.Tensor, mask: torch.Tensor, trans, start, end) -> torch.Tensor:
    """Viterbi over left-packed inputs as two ``scan`` loops: what ``torch.export`` captures with a dynamic
    batch size and length (a Python loop would freeze the example's length, and the NumPy backtrack its path)."""
    length = emissions.size(1)
    emissions, mask, steps, trans, start, end = _scan_inputs(emissions, mask, trans, start, end)

    def forward_step(score, step):
        emission, keep = step
        best, index = (score.unsqueeze(2) + trans).max(dim=1)
        stay = torch.arange(score.size(1), device=score.device).expand_as(index)
        keep = keep.unsqueeze(1)
        return torch.where(keep, best + emission, score).clone(), torch.where(keep, index, stay).clone()

    first = (start + emissions[:, 0]).contiguous()
    score, history = scan(forward_step, first, steps)

    def backward_step(label, pointers):
        return pointers.gather(1, label.unsqueeze(1)).squeeze(1).clone(), label.clone()

    head, tail = scan(backward_step, (score + end).argmax(dim=1), history, reverse=True)
    return torch.cat([head.unsqueeze(1), tail.transpose(0, 1)], dim=1)[:, :length]


def _marginals_graph(emissions: torch.Tensor, mask: torch.Tensor, trans, start, end) -> torch.Tensor:
    """Posterior marginals [B, T, L] over left-packed inputs (0 on padding) as two ``scan`` loops, forward alphas
    and backward betas, for ``torch.export`` (the eager `_LogPartition` takes them from autograd, which an exported
    graph cannot hold). Each step is re-centred on its maximum: a position's marginals do not change when its alpha
    or beta is shifted, and the values stay small over long sequences."""
    length = emissions.size(1)
    emissions, mask, steps, trans, start, end = _scan_inputs(emissions, mask, trans, start, end)

    def forward_step(alpha, step):
        emission, keep = step
        new = torch.logsumexp(alpha.unsqueeze(2) + trans, dim=1) + emission
        new = torch.where(keep.unsqueeze(1), new - new.amax(dim=1, keepdim=True), alpha)  # ended: carried
        return new.clone(), new.clone()

    first = start + emissions[:, 0]
    first = (first - first.amax(dim=1, keepdim=True)).contiguous()
    _, alphas = scan(forward_step, first, steps)
    at_end = end.expand_as(first).contiguous()

    def backward_step(beta, step):  # from position t + 1's emission and beta to position t's beta
        emission, keep = step
        new = torch.logsumexp(trans + (emission + beta).unsqueeze(1), dim=2)
        # where t is the last position, its beta is the end score (``end``, not ``at_end``: the body must not
        # capture the tensor that is also the scan's initial carry, which torch.export mixes up)
        new = torch.where(keep.unsqueeze(1), new - new.amax(dim=1, keepdim=True), end)
        return new.clone(), new.clone()

    _, betas = scan(backward_step, at_end, steps, reverse=True)
    alphas = torch.cat([first.unsqueeze(1), alphas.transpose(0, 1)], dim=1)
    betas = torch.cat([betas.transpose(0, 1), at_end.unsqueeze(1)], dim=1)
    marginals = torch.softmax(alphas + betas, dim=-1) * mask.unsqueeze(-1)
    return marginals[:, :length]


# A matrix-product step is exact to float32 precision unless one of its sums falls below this: then a term of it
# may have underflowed, and the batch is recomputed with log-sum-exp steps.
_SAFE_SUM = 1e-25


def _trusted(sums: list[torch.Tensor], relevant: torch.Tensor) -> bool:
    """Whether every per-step sum that matters ([B, T-1, L] where ``relevant``) stayed above ``_SAFE_SUM``."""
    return not sums or not bool((~(torch.stack(sums, dim=1) >= _SAFE_SUM) & relevant).any())


def _forward(emissions, mask, trans, start, full_steps, exact: bool):
    """Forward recursion: the normalised log alphas [B, T, L], the per-step shifts [B, T], and whether the result
    can be trusted. Each step sums over the previous label either as one [B, L] x [L, L] product of exponentials
    (fast on CPU, where per-op overhead dominates; trusted only if no sum that matters fell below ``_SAFE_SUM``)
    or, with ``exact``, as a log-sum-exp over (from, to) pairs, exact at any scale."""
    column_max = trans.amax(dim=0)
    products = (trans - column_max).exp()
    shifted = emissions if exact else emissions + column_max
    alpha = start + emissions[:, 0]
    shift = alpha.amax(dim=1, keepdim=True)
    alpha = alpha - shift
    alphas, shifts, sums = [alpha], [shift], []
    for t in range(1, emissions.size(1)):
        if exact:
            step = torch.logsumexp(alpha.unsqueeze(2) + trans, dim=1) + shifted[:, t]
        else:
            total = alpha.exp() @ products
            sums.append(total)
            step = total.log() + shifted[:, t]
        shift = step.amax(dim=1, keepdim=True)
        alpha = step - shift if t < full_steps else torch.where(mask[:, t : t + 1], step, alpha + shift) - shift
        alphas.append(alpha)
        shifts.append(shift)
    relevant = mask[:, 1:].unsqueeze(-1) & (emissions[:, 1:] > float("-inf"))
    return torch.stack(alphas, dim=1), torch.cat(shifts, dim=1), _trusted(sums, relevant)


def _backward(emissions, mask, trans, end, alphas, full_steps, exact: bool):
    """Backward recursion: the normalised log betas [B, T, L], and whether they can be trusted (as in
    :func:`_forward`)."""
    batch, length, labels = emissions.shape
    row_max = trans.amax(dim=1)
    products = (trans - row_max.unsqueeze(1)).exp().T
    at_end = end.expand(batch, labels)
    betas, sums, beta = [at_end] * length, [], at_end
    for t in range(length - 1, 0, -1):
        scores = emissions[:, t] + beta
        if exact:
            step = torch.logsumexp(trans + scores.unsqueeze(1), dim=2)
        else:
            total = (scores - scores.amax(dim=1, keepdim=True)).exp() @ products
            sums.append(total)
            step = total.log() + row_max
        step = step - step.amax(dim=1, keepdim=True)
        beta = step if t < full_steps else torch.where(mask[:, t : t + 1], step, at_end)
        betas[t - 1] = beta
    relevant = mask[:, 1:].unsqueeze(-1) & (alphas[:, :-1] > float("-inf"))
    return torch.stack(betas, dim=1), _trusted(sums[::-1], relevant)


class _LogPartition(torch.autograd.Function):
    """log Z of a linear-chain CRF with a hand-written backward pass (the forward-backward algorithm).

    Alphas and betas are kept in log space, re-centred on their maximum at every step, with the shifts summed
    in float64, so log Z keeps its precision over long sequences and at any score scale. Each step is first
    computed as a matrix product of exponentials (fast); if any sum that matters comes out below
    ``_SAFE_SUM`` (a term may have underflowed: scores tens of nats apart), the recursion is redone with a
    log-sum-exp over (from, to) pairs, which is exact. The backward pass gives the posterior marginals
    (d log Z / d emissions) and expected transition counts (d log Z / d transitions) without an autograd graph
    over the T steps. Inputs are left-packed float32 (-inf marks a label ruled out); ``mask`` [B, T] is bool.
    """

    @staticmethod
    def forward(ctx, emissions, mask, trans, start, end):
        full_steps = int(mask.sum(dim=1).min())  # steps every row takes: no masking needed there
        alphas, shifts, fast = _forward(emissions, mask, trans, start, full_steps, exact=False)
        if not fast:
            alphas, shifts, _ = _forward(emissions, mask, trans, start, full_steps, exact=True)
        shifts = shifts * mask
        last = (mask.sum(dim=1) - 1).clamp(min=0)
        final = alphas.gather(1, last.view(-1, 1, 1).expand(-1, 1, alphas.size(2))).squeeze(1)
        log_z = shifts.double().sum(dim=1) + torch.logsumexp(final + end, dim=1).double()
        ctx.save_for_backward(emissions, mask, trans, end, alphas, shifts)
        ctx.full_steps, ctx.fast = full_steps, fast
        return log_z

    @staticmethod
    def backward(ctx, grad_log_z):
        emissions, mask, trans, end, alphas, shifts = ctx.saved_tensors
        batch, length, labels = emissions.shape
        fast = ctx.fast
        if fast:
            betas, fast = _backward(emissions, mask, trans, end, alphas, ctx.full_steps, exact=False)
        if not fast:
            betas, _ = _backward(emissions, mask, trans, end, alphas, ctx.full_steps, exact=True)
        weight = grad_log_z.to(emissions.dtype).view(batch, 1) * mask
        unary = alphas + betas
        norm = torch.logsumexp(unary, dim=-1, keepdim=True)
        marginals = (unary - norm).exp() * weight.unsqueeze(-1)
        # Pair (t-1, t) marginals share position t's normaliser: alpha_t was shifted by s_t after summing over
        # t-1, so log xi_t(i, j) = alpha_{t-1}(i) + T(i, j) + e_t(j) + beta_t(j) - s_t - norm_t (<= 0).
        right = emissions[:, 1:] + betas[:, 1:] - shifts[:, 1:].unsqueeze(-1) - norm[:, 1:]
        if fast:  # xi = exp(alpha_{t-1}) exp(T - c) exp(right + c): one product, bounded because the sums were safe
            column_max = trans.amax(dim=0)
            left = alphas[:, :-1].exp().reshape(-1, labels)
            right = ((right + column_max).exp() * weight[:, 1:].unsqueeze(-1)).reshape(-1, labels)
            grad_trans = (trans - column_max).exp() * (left.T @ right)
        else:
            pair = (alphas[:, :-1].unsqueeze(3) + trans + right.unsqueeze(2)).clamp(max=0).exp()
            grad_trans = torch.einsum("btij,bt->ij", pair, weight[:, 1:])
        last = (mask.sum(dim=1) - 1).clamp(min=0)
        final = marginals.gather(1, last.view(batch, 1, 1).expand(batch, 1, labels)).squeeze(1)
        return marginals, None, grad_trans, marginals[:, 0].sum(0), final.sum(0)


class CRF(nn.Module):
    """Batched, masked linear-chain CRF: log-likelihood loss and Viterbi decoding."""

    def __init__(self, num_labels: int, allowed: torch.Tensor | None = None, allowed_start: torch.Tensor | None = None):
        super().__init__()
        if isinstance(num_labels, bool) or not isinstance(num_labels, int) or num_labels < 1:
            raise ValueError(f"CRF(num_labels={num_labels!r}): num_labels must be a positive int (the label count).")
        self.num_labels = num_labels
        self.transitions = nn.Parameter(torch.zeros(num_labels, num_labels))
        self.start_transitions = nn.Parameter(torch.zeros(num_labels))
        self.end_transitions = nn.Parameter(torch.zeros(num_labels))
        allowed = self._constraint(allowed, (num_labels, num_labels), "allowed")
        allowed_start = self._constraint(allowed_start, (num_labels,), "allowed_start")
        self.register_buffer("allowed", allowed, persistent=False)
        self.register_buffer("allowed_start", allowed_start, persistent=False)
        self.label_names: list[str] | None = None  # for messages; set by for_labels

    @staticmethod
    def _constraint(mask: torch.Tensor | None, shape: tuple[int, ...], name: str) -> torch.Tensor:
        if mask is None:
            return torch.ones(shape, dtype=torch.bool)
        if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool or tuple(mask.shape) != shape:
            found = f"{mask.dtype} {tuple(mask.shape)}" if isinstance(mask, torch.Tensor) else type(mask).__name__
            raise ValueError(f"CRF `{name}` must be a bool tensor of shape {shape}; got {found}.")
        return mask.clone()

    @classmethod
    def for_labels(cls, labels: Sequence[str], bio_constraints: bool = True) -> CRF:
        """A CRF over ``labels`` (in id order), with BIO's forbidden transitions when ``bio_constraints``."""
        labels = check_string_list("CRF.for_labels", "labels", labels, "['O', 'B-PER', 'I-PER']")
        listed_twice = repeated(labels)
        if listed_twice:
            raise ValueError(f"CRF.for_labels: labels {listed_twice} appear more than once; each label is one id, so list "
                             "each once (in id order).")
        crf = cls(len(labels), *map(torch.from_numpy, bio_allowed_transitions(labels))) if bio_constraints \
            else cls(len(labels))
        crf.label_names = list(labels)
        return crf

    def forward(self, *args, **kwargs):
        """Refused: pytorch-crf's ``crf(emissions, tags)`` returns the log-likelihood, [seq, batch] first by default,
        summed; a loss here under that call would have the opposite sign or the wrong axes without an error."""
        raise TypeError("CRF is not called directly: use crf.neg_log_likelihood(emissions, labels, attention_mask) for "
                        "the loss (the negative log-likelihood, mean over sequences, tensors [batch, length, ...]; "
                        "pytorch-crf's crf(...) returns the log-likelihood itself) and crf.decode(emissions, "
                        "attention_mask) for the best label path.")

    def _scores(self, forbidden: float = FORBIDDEN) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Transition, start and end scores in float32 (or wider), forbidden ones set to ``forbidden``: finite for
        the loss (a broken gold path costs much, not NaN), ``-inf`` for decoding and marginals (emissions of 1e4
        and more would outweigh a finite penalty: the best path would break the constraints, and forbidden paths
        would take the probability mass)."""
        dtype = torch.promote_types(self.transitions.dtype, torch.float32)
        trans = self.transitions.to(dtype).masked_fill(~self.allowed, forbidden)
        start = self.start_transitions.to(dtype).masked_fill(~self.allowed_start, forbidden)
        return trans, start, self.end_transitions.to(dtype)

    def _path_score(self, emissions: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Score (float64) of the labelled path of each left-packed, fully observed sequence."""
        trans, start, end = self._scores()
        labels = labels.clamp(min=0)
        emitted = emissions.gather(2, labels.unsqueeze(-1)).squeeze(-1).double()
        steps = trans[labels[:, :-1], labels[:, 1:]].double()
        last = labels.gather(1, (mask.sum(1, keepdim=True) - 1).clamp(min=0)).squeeze(1)
        return (start[labels[:, 0]] + end[last]).double() + (emitted * mask).sum(1) + (steps * mask[:, 1:]).sum(1)

    def sequence_nll(
        self, emissions: torch.Tensor, labels: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``-log p(observed labels)`` of each sequence [B] (0 for empty ones); ``-100`` positions are marginalised.

        Non-finite emissions or weights give a NaN (never a made-up number), which mixed-precision training
        skips like any overflow."""
        mask = self._mask(emissions, attention_mask)
        check_label_ids(labels, tuple(emissions.shape[:2]), self.num_labels)
        input_dtype = emissions.dtype
        if emissions.size(1) == 0:
            return emissions.sum(dim=(1, 2)) * 0
        mask, emissions, labels = _packed_emissions(emissions, mask, labels.long())
        self._check_gold_paths(labels, mask)
        trans, start, end = self._scores()
        observed = (labels != IGNORE_INDEX) & mask
        if torch.equal(observed, mask):  # every position labelled: the gold path's score, no second pass
            gold = self._path_score(emissions, labels, mask)
        else:
            allowed = torch.nn.functional.one_hot(labels.clamp(min=0), self.num_labels).bool()
            clamped = emissions.masked_fill(observed.unsqueeze(-1) & ~allowed, float("-inf"))
            gold = _LogPartition.apply(clamped, mask, trans, start, end)
        nll = _LogPartition.apply(emissions, mask, trans, start, end) - gold
        return torch.where(mask.any(dim=1), nll, torch.zeros_like(nll)).to(input_dtype)

    def neg_log_likelihood(
        self, emissions: torch.Tensor, labels: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Mean over the non-empty sequences of the batch of ``-log p(observed labels)``."""
        nll = self.sequence_nll(emissions, labels, attention_mask)
        has_tokens = self._mask(emissions, attention_mask).any(dim=1)
        return nll.sum() / has_tokens.sum().clamp(min=1)

    def marginals(self, emissions: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Posterior probability of each label at each position [B, T, L] (0 on padding), in float32 or wider."""
        mask = self._mask(emissions, attention_mask)
        if emissions.size(1) == 0:
            return torch.zeros(emissions.shape, dtype=torch.promote_types(emissions.dtype, torch.float32))
        if is_tracing():  # an exported graph holds no autograd: the forward-backward recursions as scans
            packed_mask, packed = _packed_emissions(emissions.detach(), mask)
            probabilities = _marginals_graph(packed, packed_mask, *self._scores(float("-inf")))
        else:
            self._check_finite(emissions, mask)  # NaN probabilities would read as "sure of nothing", not an error
            with torch.enable_grad():
                packed_mask, packed = _packed_emissions(emissions.detach(), mask)
                packed.requires_grad_(True)
                trans, start, end = (score.detach() for score in self._scores(float("-inf")))
                log_z = _LogPartition.apply(packed, packed_mask, trans, start, end)
                (probabilities,) = torch.autograd.grad(log_z.sum(), packed)
        order = left_order(mask)
        return torch.zeros_like(probabilities).scatter(1, order.unsqueeze(-1).expand_as(probabilities), probabilities)

    @torch.no_grad()
    def decode(self, emissions: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Viterbi path [B, T] (label ids; ``-100`` on padding), in the input's positions.

        Refuses non-finite emissions or weights (a path decoded from NaN would look like a real answer).
        Inside ``torch.export`` / ``torch.compile`` it runs as a graph; the TorchScript tracer cannot capture
        it and is refused."""
        mask = self._mask(emissions, attention_mask)
        trans, start, end = self._scores(float("-inf"))
        refuse_unexportable("The CRF's Viterbi decoding")
        if emissions.size(1) == 0:
            return torch.full(emissions.shape[:2], IGNORE_INDEX, dtype=torch.long, device=emissions.device)
        if not is_tracing():
            self._check_finite(emissions, mask)
        emissions = emissions.to(trans.dtype)
        packed_mask, packed = _pack_left(mask, emissions)
        if is_tracing():
            return _unpack(_viterbi_graph(packed, packed_mask, trans, start, end), packed_mask, mask)
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
        final = score + end
        if not bool(torch.isfinite(final.amax(dim=1)).all()):
            raise ValueError("No label path satisfies the CRF's constraints (allowed / allowed_start): every path "
                             "takes a forbidden start or transition. Allow at least one path, e.g. an outside "
                             "label that may start and follow every label.")
        packed_path = _backtrack(final.argmax(dim=1), history).to(packed.device)
        if full:
            return packed_path
        return _unpack(packed_path, packed_mask, mask)

    @torch.no_grad()
    def _check_gold_paths(self, labels: torch.Tensor, mask: torch.Tensor) -> None:
        """Refuse labels that no allowed path fits (left-packed rows; ``-100`` positions may take any label).

        Under BIO constraints an 'I-X' right after 'O' (IOB1 data, or tags made by hand) has no allowed path, so its
        loss is |FORBIDDEN| per broken step, ~1e4, and it swamps training without an error. Exact for any constraint
        matrix. Where one free position can join any two labels (BIO: through 'B-X' or 'O'), a path fits exactly
        when no two neighbouring labels and no first label break a rule, a check without a loop over positions;
        otherwise reachability is carried along the positions."""
        if is_tracing() or (bool(self.allowed.all()) and bool(self.allowed_start.all())):
            return
        allowed, allowed_start = self.allowed.to(labels.device), self.allowed_start.to(labels.device)
        observed = (labels != IGNORE_INDEX) & mask
        ids = labels.clamp(min=0)
        bridged = bool((allowed.float() @ allowed.float()).gt(0).all()) and \
            bool((allowed_start.float() @ allowed.float()).gt(0).all())
        if bridged:
            broken = torch.cat([observed[:, :1] & ~allowed_start[ids[:, :1]],
                                observed[:, :-1] & observed[:, 1:] & ~allowed[ids[:, :-1], ids[:, 1:]]], dim=1)
            broken_at = torch.where(broken.any(1), broken.float().argmax(1), -1)
        else:
            fits = torch.where(observed.unsqueeze(-1), nn.functional.one_hot(ids, self.num_labels).bool(),
                               torch.ones((), dtype=torch.bool, device=labels.device))
            reach = allowed_start & fits[:, 0]
            broken_at = torch.where(reach.any(-1) | ~mask[:, 0], -1, 0)
            for t in range(1, labels.size(1)):
                step = ((reach.float() @ allowed.float()) > 0) & fits[:, t]
                reach = torch.where(mask[:, t : t + 1], step, reach)
                broken_at = torch.where((broken_at < 0) & mask[:, t] & ~reach.any(-1), t, broken_at)
        if not bool((broken_at >= 0).any()):
            return
        row = int((broken_at >= 0).nonzero()[0])
        where = int(broken_at[row])
        name = (lambda i: repr(self.label_names[i])) if self.label_names else (lambda i: f"id {i}")
        seen = labels[row, : where + 1][observed[row, : where + 1]].tolist()
        path = " ".join(name(i) for i in seen[-3:])
        raise ValueError(
            f"The labels of sequence {row} (counting attended positions) fit no path the CRF allows: it ends "
            f"... {path} at token {where}. With BIO constraints an 'I-X' must follow 'B-X' or 'I-X'; such a gold path "
            "costs ~1e4 in the loss and swamps training. Convert IOB1 / hand-made tags to IOB2 "
            "(hf_adapter_ext.data.conll.to_iob2; load_conll does it for files), or build the CRF without BIO "
            "constraints (bio_constraints=False).")

    def _check_finite(self, emissions: torch.Tensor, mask: torch.Tensor) -> None:
        """One host sync when all is well; the details only when something is not finite."""
        weights = torch.cat([self.transitions.flatten(), self.start_transitions, self.end_transitions])
        bad = ~torch.isfinite(emissions).all(dim=-1) & mask
        if bool(torch.isfinite(weights).all()) and not bool(bad.any()):
            return
        for name, param in (("transitions", self.transitions), ("start_transitions", self.start_transitions),
                            ("end_transitions", self.end_transitions)):
            if not bool(torch.isfinite(param).all()):
                raise ValueError(
                    f"CRF.{name} holds NaN or inf: the weights are corrupt (a diverged training run or a bad "
                    "checkpoint). Reload good weights; no path can be decoded from them."
                )
        if bool(bad.any()):
            rows = sorted(set(bad.nonzero()[:, 0].tolist()))
            raise ValueError(
                f"The emissions of sequence(s) {rows[:10]} hold NaN or inf, so no CRF path can be decoded. The "
                "model's scores are non-finite: check its inputs (e.g. inputs_embeds) and its loaded weights."
            )

    def _mask(self, emissions: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        if not isinstance(emissions, torch.Tensor) or not emissions.is_floating_point():
            found = emissions.dtype if isinstance(emissions, torch.Tensor) else type(emissions).__name__
            raise TypeError(f"CRF emissions must be a floating-point tensor [batch, length, labels]; got {found}.")
        if emissions.dim() != 3 or emissions.size(-1) != self.num_labels:
            raise ValueError(
                f"CRF expects emissions of shape [batch, length, {self.num_labels}], got {tuple(emissions.shape)}."
            )
        if attention_mask is None:
            return torch.ones(emissions.shape[:2], dtype=torch.bool, device=emissions.device)
        if not isinstance(attention_mask, torch.Tensor) or attention_mask.is_complex() or \
                tuple(attention_mask.shape) != tuple(emissions.shape[:2]):
            found = (f"{attention_mask.dtype} {tuple(attention_mask.shape)}" if isinstance(attention_mask, torch.Tensor)
                     else type(attention_mask).__name__)
            raise ValueError(
                f"CRF attention_mask must be a tensor of shape {tuple(emissions.shape[:2])} (1 = token, 0 = padding) "
                f"(batch, length of the emissions); got {found}."
            )
        if attention_mask.dtype != torch.bool and not is_tracing() and \
                bool(((attention_mask != 0) & (attention_mask != 1)).any()):
            raise ValueError("CRF attention_mask holds values other than 0 and 1 (1 = token, 0 = padding); pass the "
                             "tokenizer's attention_mask, or a bool mask.")
        return attention_mask.bool()
