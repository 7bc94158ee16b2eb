"""Adapters that carry the source's scores into the target head, and output-layer expansion."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch._higher_order_ops import scan

from ..modeling.crf import CRF, left_order, refuse_unexportable


class BiLSTMAdapter(nn.Module):
    """The paper's adapter: a BiLSTM over the source's per-token scores, projected to the new label space.

    The projection starts at zero, so before training the extended model scores old labels exactly
    like the source and the adapter only adds what the target data teaches it.
    """

    def __init__(self, num_old_labels: int, num_labels: int, hidden_size: int):
        super().__init__()
        self.lstm = nn.LSTM(num_old_labels, hidden_size, batch_first=True, bidirectional=True)
        self.proj = nn.Linear(2 * hidden_size, num_labels)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, source_logits: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        refuse_unexportable("The BiLSTM adapter")
        if torch.compiler.is_exporting():
            return self.proj(_exported_bilstm(self.lstm, source_logits, attention_mask.bool()))
        if bool(attention_mask.all()):  # no padding (e.g. one sentence): no packing needed
            return self.proj(self.lstm(source_logits)[0])
        # Packing reads the first `length` positions of each row: align real tokens left first (inputs may be
        # padded on the left), and put the outputs back in place after.
        mask = attention_mask.bool()
        order = left_order(mask)
        lengths = mask.sum(dim=1).clamp(min=1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(_gather_rows(source_logits, order), lengths, batch_first=True,
                                                   enforce_sorted=False)
        out, _ = self.lstm(packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=source_logits.size(1))
        return self.proj(_scatter_rows(out * mask.gather(1, order).unsqueeze(-1), order))




def _gather_rows(x: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    return x.gather(1, order.unsqueeze(-1).expand(-1, -1, x.size(-1)))


def _scatter_rows(x: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`_gather_rows` with the same ``order``."""
    return torch.zeros_like(x).scatter(1, order.unsqueeze(-1).expand(-1, -1, x.size(-1)), x)


def _exported_bilstm(lstm: nn.LSTM, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """A one-layer BiLSTM as two ``scan`` loops, for ``torch.export`` (which would unroll ``nn.LSTM`` over the
    example's length, and cannot capture packing). Padding, wherever it sits, does not update the state, and
    its outputs are zero: the packed LSTM's output, position for position. Inference only (weights detached)."""
    keep = mask.transpose(0, 1).unsqueeze(-1).contiguous()
    outputs = []
    for suffix, reverse in (("", False), ("_reverse", True)):
        w_ih, w_hh, b_ih, b_hh = (getattr(lstm, f"{name}_l0{suffix}").detach()
                                  for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
        gates_in = (x @ w_ih.T + b_ih + b_hh).transpose(0, 1).contiguous()
        zeros = x.new_zeros(x.size(0), lstm.hidden_size)

        def step(state, inputs, w_hh=w_hh):
            h, c = state
            gates, k = inputs
            i, f, g, o = (gates + h @ w_hh.T).chunk(4, dim=-1)
            c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h_new = torch.sigmoid(o) * torch.tanh(c_new)
            h, c = torch.where(k, h_new, h), torch.where(k, c_new, c)
            return (h.clone(), c.clone()), h.clone()

        _, hidden = scan(step, (zeros, zeros.clone()), (gates_in, keep), reverse=reverse)
        outputs.append(hidden.transpose(0, 1))
    return torch.cat(outputs, dim=-1) * mask.unsqueeze(-1).to(x.dtype)


class MLPAdapter(nn.Module):
    """A per-token two-layer MLP over the source's scores (no context); zero-initialised output."""

    def __init__(self, num_old_labels: int, num_labels: int, hidden_size: int):
        super().__init__()
        self.hidden = nn.Linear(num_old_labels, hidden_size)
        self.proj = nn.Linear(hidden_size, num_labels)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, source_logits: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.proj(torch.tanh(self.hidden(source_logits)))


ADAPTERS = {"bilstm": BiLSTMAdapter, "mlp": MLPAdapter}


def _sample_like(reference: torch.Tensor, rows: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Rows drawn from N(mean, std) of ``reference``'s rows, per column (the paper's initialisation)."""
    mean = reference.mean(dim=0)
    std = reference.std(dim=0, unbiased=False) if reference.size(0) > 1 else torch.zeros_like(mean)
    # drawn in float32 whatever the weights' dtype: one seed gives one start, for a source in any precision
    noise = torch.randn((rows, *mean.shape), generator=generator, dtype=torch.float32).to(reference.dtype)
    return mean + std * noise.to(reference.device)


@torch.no_grad()
def expand_linear(old: nn.Linear, num_new: int, copy_rows: Sequence[int] | None = None) -> nn.Linear:
    """A copy of ``old`` with ``num_new`` output rows appended.

    Args:
        old: the source's output layer.
        num_new: output rows to append.
        copy_rows: for each new row, the old row it starts as (a subtype starts as its parent type: ``B-politician``
            as ``B-PER``, so it already knows what a person looks like and learns only what sets a politician
            apart), or -1 for a row drawn from the old rows' statistics (the paper's initialisation).
    """
    copy_rows = list(copy_rows) if copy_rows is not None else [-1] * num_new
    if len(copy_rows) != num_new:
        raise ValueError(f"copy_rows names {len(copy_rows)} rows for {num_new} new ones.")
    new = nn.Linear(old.in_features, old.out_features + num_new, bias=old.bias is not None)
    new = new.to(device=old.weight.device, dtype=old.weight.dtype)
    new.weight[: old.out_features] = old.weight
    # every new row is drawn, copied ones too: the random stream, and so the rest of a run, is the same either way
    new.weight[old.out_features :] = _sample_like(old.weight, num_new)
    if old.bias is not None:
        new.bias[: old.out_features] = old.bias
        new.bias[old.out_features :] = old.bias.mean()
    for offset, row in enumerate(copy_rows):
        if row >= 0:
            new.weight[old.out_features + offset] = old.weight[row]
            if old.bias is not None:
                new.bias[old.out_features + offset] = old.bias[row]
    return new


@torch.no_grad()
def expand_crf(old: CRF | None, labels: list[str], bio_constraints: bool,
               copy_from: Sequence[int] | None = None) -> CRF:
    """A CRF over ``labels``; transitions of a source CRF are kept, new ones start at the old mean.

    Args:
        old: the source's CRF, if it has one (else the new CRF starts at zero, as a fresh one does).
        labels: every label, old ones first.
        bio_constraints: forbid the transitions BIO never takes (a mask, whatever the values).
        copy_from: for each label id, the old label id it starts as: itself for an old label, the parent's
            ``B-``/``I-`` for a subtype, -1 for a new label that starts at the old mean. A subtype's start, end and
            transition scores are then its parent's (``B-politician -> I-politician`` scores as ``B-PER -> I-PER``),
            as its output rows are (`expand_linear`), so it starts as its parent in the whole path score. None:
            every old label as itself and every new one at the old mean.
    """
    crf = CRF.for_labels(labels, bio_constraints)
    if old is None:
        return crf
    if copy_from is None:  # every old label as itself; new labels at the old mean
        copy_from = list(range(old.num_labels)) + [-1] * (len(labels) - old.num_labels)
    if len(copy_from) != len(labels):
        raise ValueError(f"copy_from names {len(copy_from)} labels for {len(labels)}.")
    known = torch.tensor([i for i, p in enumerate(copy_from) if p >= 0], dtype=torch.long)
    mapped = torch.tensor([p for p in copy_from if p >= 0], dtype=torch.long)
    crf.transitions.fill_(old.transitions.mean())
    crf.transitions[known.unsqueeze(1), known] = old.transitions[mapped.unsqueeze(1), mapped]
    for name in ("start_transitions", "end_transitions"):
        param, source = getattr(crf, name), getattr(old, name)
        param.fill_(source.mean())
        param[known] = source[mapped]
    return crf
