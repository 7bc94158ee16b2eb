"""SIB's synthetic-gradient nets: query logits → estimated dLoss/dlogits, one episode's statistics at a time.

Both nets normalise with :class:`EpisodeNorm`, BatchNorm over each episode's own queries. The refinement calls a
net K times per episode and meta-training differentiates through every call, so these few layers over
[episodes, queries x classes, hidden] tensors are most of SIB's training time. :func:`episode_standardize` gives
the normalisation a closed-form backward pass, and the equivariant net folds each norm's affine map into the next
linear layer: the same function, with fewer full passes over those tensors (`benchmarks/meta_speed.py`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable


def episode_weights(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """[B, Q] real-row mask → [B, 1, Q]: each real row's share of its episode's mean (0 for padding; all 0 for an
    episode with no real row)."""
    weight = mask.to(dtype).unsqueeze(1)
    return weight / weight.sum(-1, keepdim=True).clamp(min=1)


def episode_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """[B, Q, H] → [B, 1, H]: the mean over each episode's real queries, padding excluded; 0 for an episode with
    none. Written as a [B, 1, Q] @ [B, Q, H] product, which makes no masked copy of ``x``."""
    return episode_weights(mask, x.dtype) @ x


class _EpisodeStandardize(torch.autograd.Function):
    """``(y - mean) / sqrt(var + eps)`` per episode and feature over the episode's real rows, ``y = relu(x)`` when
    ``rectify``; padded rows are standardised with their episode's statistics and do not enter them.

    Autograd's own backward of that composition writes several [B, Q, H] temporaries (an outer product per mean,
    the square's and the quotient's gradients); BatchNorm's closed form,
    ``dx = rstd · (g − w · (Σ g + x̂ · Σ g x̂))`` with ``w`` each row's weight in its episode's mean, needs two
    reductions and one pass. Checked against autograd in float64 by `tests/test_meta.py`.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, mask: torch.Tensor, eps: float, rectify: bool) -> torch.Tensor:
        standardised = torch.relu(x) if rectify else x.clone()  # a fresh tensor, centred and scaled in place
        weight = episode_weights(mask, x.dtype)
        standardised.sub_(weight @ standardised)
        rstd = torch.rsqrt(weight @ standardised.square() + eps)  # biased variance, two passes, as BatchNorm
        standardised.mul_(rstd)
        ctx.save_for_backward(standardised, rstd, weight, x if rectify else None)
        return standardised

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):
        standardised, rstd, weight, x = ctx.saved_tensors
        total = grad.sum(1, keepdim=True)
        along = torch.linalg.vecdot(grad, standardised, dim=1).unsqueeze(1)
        grad_x = torch.addcmul(total, standardised, along).mul_(weight.transpose(1, 2))
        torch.sub(grad, grad_x, out=grad_x).mul_(rstd)
        if x is not None:  # relu's backward, in place: zero where x <= 0
            torch.ops.aten.threshold_backward.grad_input(grad_x, x, 0, grad_input=grad_x)
        return grad_x, None, None, None


def episode_standardize(x: torch.Tensor, mask: torch.Tensor, eps: float, rectify: bool = False) -> torch.Tensor:
    """[B, Q, H] → [B, Q, H]: BatchNorm's normalisation without its affine map, over each episode's real rows
    (``mask`` [B, Q]); with ``rectify``, of ``relu(x)``. Differentiable once (SIB never needs more)."""
    return _EpisodeStandardize.apply(x, mask, eps, rectify)


class EpisodeNorm(nn.Module):
    """BatchNorm over each episode's own queries ([B, Q, H], padding excluded), in training and at test.

    The reference applies ``BatchNorm1d`` to one episode's queries at a time and never switches it to
    ``eval()``: every episode is normalised with its own statistics, a transductive step that carries much
    of the method (forced onto running statistics it collapses). Normalising per episode keeps that while
    episodes are batched, so an episode's result does not depend on which others share its batch.
    """

    def __init__(self, features: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(features))
        self.bias = nn.Parameter(torch.zeros(features))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(self.bias, episode_standardize(x, mask, self.eps), self.weight)

    def fold_into(self, weight: torch.Tensor, bias: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A linear map's (weight, bias) with this norm's affine map ``x · γ + β`` applied first:
        ``W (x γ + β) + b = (W γ) x + (b + W β)``, computed on the [outputs, inputs] weights instead of the
        whole standardised tensor."""
        return weight * self.weight, torch.addmv(bias, weight, self.bias)


class SyntheticGradientNet(nn.Module):
    """Predicts dLoss/dlogits for unlabelled queries from their logits (n → hn → hn → n), per episode.

    With ``episode_context`` it also sees each query's probabilities and the episode's class marginal (the mean
    probability of each class over the episode's queries), so it can tell an over-claimed class from a
    neglected one, which a query's own logits cannot show.
    """

    def __init__(self, num_classes: int, multiplier: int, episode_context: bool = False):
        super().__init__()
        hidden = num_classes * multiplier
        self.episode_context = episode_context
        inputs = num_classes * (3 if episode_context else 1)
        self.net = nn.ModuleList([
            nn.Linear(inputs, hidden), nn.ReLU(), EpisodeNorm(hidden),
            nn.Linear(hidden, hidden), nn.ReLU(), EpisodeNorm(hidden),
            nn.Linear(hidden, num_classes),
        ])
        nn.init.zeros_(self.net[-1].weight)  # starts as "no gradient": SIB begins where the init network is
        nn.init.zeros_(self.net[-1].bias)

    @property
    def output_layer(self) -> nn.Linear:
        return self.net[-1]

    def forward(self, logits: torch.Tensor, query_mask: torch.Tensor,
                class_mask: torch.Tensor | None = None) -> torch.Tensor:
        """[B, Q, C] logits of each episode's queries → [B, Q, C] synthetic gradients (zero for padding). Every
        episode has all C classes (``class_mask`` is accepted for a common signature and not used)."""
        x = logits
        if self.episode_context:
            probs = logits.softmax(-1)
            marginal = episode_mean(probs, query_mask)
            x = torch.cat([logits, probs, marginal.expand_as(probs)], dim=-1)
        for layer in self.net:
            x = layer(x, query_mask) if isinstance(layer, EpisodeNorm) else layer(x)
        return x * query_mask.unsqueeze(-1).to(x.dtype)


def class_mean(x: torch.Tensor, class_mask: torch.Tensor) -> torch.Tensor:
    """[B, Q, C, H] → [B, Q, 1, H]: the mean over each episode's real classes (``class_mask`` [B, C])."""
    if bool(class_mask.all()):  # the usual batch, every episode with every class: no masked copy of ``x``
        # a sum, scaled after: its backward is a broadcast view, where a mean's writes a scaled copy of ``x``'s size
        return x.sum(dim=2, keepdim=True).div_(x.size(2))
    weight = class_mask[:, None, :, None].to(x.dtype)
    return (x * weight).sum(dim=2, keepdim=True) / weight.sum(dim=2, keepdim=True).clamp(min=1)


class ClassSetLayer(nn.Module):
    """``h_c ← W h_c + U mean_c' h_c'``: the same map for every class plus what the episode's classes share
    (a DeepSets layer), so permuting the classes permutes the outputs and any number of classes fits."""

    def __init__(self, inputs: int, outputs: int):
        super().__init__()
        self.own = nn.Linear(inputs, outputs)
        self.pooled = nn.Linear(inputs, outputs, bias=False)

    def forward(self, x: torch.Tensor, class_mask: torch.Tensor, norm: EpisodeNorm | None = None) -> torch.Tensor:
        """The layer applied to ``norm``'s affine map of ``x`` (``x · γ + β``) when a norm is given, without
        computing that map: ``W (x γ + β) = (W γ) x + W β``, and the class mean of ``x γ + β`` is its own
        mean times γ plus β. The same function and gradients as applying the norm first, with γ and β applied to
        the [outputs, inputs] weights instead of the whole [B, Q, C, H] tensor."""
        own, pooled, bias = self.own.weight, self.pooled.weight, self.own.bias
        if norm is not None:
            own, bias = norm.fold_into(own, bias)
            pooled, bias = norm.fold_into(pooled, bias)  # the pooled map's share of β, added to the one bias
        # the bias joins the pooled term, one row per query: adding it to every pair would take a pass of its own
        return F.linear(x, own).add_(F.linear(class_mean(x, class_mask), pooled, bias))


class ClassEquivariantGradientNet(nn.Module):
    """Predicts dLoss/dlogits for any number of classes: one network shared by every (query, class) pair.

    Each pair is described by the query's centred score for the class, its probability and the episode's class
    marginal (both times the class count, so 1 means "as expected for an even episode"); two class-set layers mix
    in what the episode's classes share, and :class:`EpisodeNorm` normalises over the episode's real pairs (the
    reference's per-episode BatchNorm). Classes absent from an episode (``class_mask`` False) are left out of
    every mean and get no gradient.

    The gradients are scaled by ``REFERENCE_QUERIES / queries``: the refinement step is a mean over the episode's
    queries, so a task with 450 unlabelled queries (30 labels) does not take a step 6x longer than the 75-query
    episodes it was meta-trained on. Summed as in the reference, an exploratory run saw 30-way tasks end well below
    their K = 0 start; `tests/test_any_number_of_labels.py` pins that duplicated queries leave the step unchanged.
    """

    REFERENCE_QUERIES = 75  # the 5-way, 15-query episode: inner_lr keeps the scale it had for the fixed net

    def __init__(self, multiplier: int):
        super().__init__()
        hidden = 4 * multiplier
        self.first, self.second = ClassSetLayer(3, hidden), ClassSetLayer(hidden, hidden)
        self.first_norm, self.second_norm = EpisodeNorm(hidden), EpisodeNorm(hidden)
        self.out = nn.Linear(hidden, 1)
        nn.init.zeros_(self.out.weight)  # starts as "no gradient": SIB begins where the init network is
        nn.init.zeros_(self.out.bias)

    @property
    def output_layer(self) -> nn.Linear:
        return self.out

    def forward(self, logits: torch.Tensor, query_mask: torch.Tensor,
                class_mask: torch.Tensor | None = None) -> torch.Tensor:
        """[B, Q, C] logits → [B, Q, C] synthetic gradients (zero for padded queries and absent classes; default
        ``class_mask``: every class present).

        Each layer is ``norm(relu(layer(x)))``. The norms' affine maps are applied inside the next layer
        (:meth:`ClassSetLayer.forward`, and ``out``'s weights below), so only the standardised pairs are stored.
        """
        batch, queries, classes = logits.shape
        if class_mask is None:
            class_mask = torch.ones(batch, classes, dtype=torch.bool, device=logits.device)
        present = class_mask[:, None, :]
        count = class_mask.sum(-1).to(logits.dtype)[:, None, None]
        probs = logits.masked_fill(~present, torch.finfo(logits.dtype).min).softmax(-1)
        centred = (logits - (logits * present).sum(-1, keepdim=True) / count) * present
        marginal = episode_mean(probs, query_mask).expand_as(probs)
        x = torch.stack([centred, probs * count, marginal * count], dim=-1)  # [B, Q, C, 3]
        pairs = (query_mask[:, :, None] & present).reshape(batch, queries * classes)
        previous = None
        for layer, norm in ((self.first, self.first_norm), (self.second, self.second_norm)):
            x = layer(x, class_mask, previous).reshape(batch, queries * classes, -1)
            x = episode_standardize(x, pairs, norm.eps, rectify=True).reshape(batch, queries, classes, -1)
            previous = norm
        out = F.linear(x, *previous.fold_into(self.out.weight, self.out.bias))
        per_query = self.REFERENCE_QUERIES / query_mask.sum(1).clamp(min=1).to(logits.dtype)
        return out.squeeze(-1) * pairs.reshape(batch, queries, classes).to(logits.dtype) * per_query[:, None, None]
