"""Parameter-free yardsticks on the same features: cosine prototypes and transductive soft k-means."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..constants import IGNORE_INDEX


def unit_rows(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """``x / |x|`` along the last dimension (all-zero rows stay 0), as ``F.normalize``, at any finite scale.

    ``F.normalize`` squares the values, so a float32 row beyond about 1e19 gets an infinite norm and comes out all
    zero, and one below about 1e-19 underflows to a zero norm and comes out near zero: either way every class then
    scores alike and the argmax names one class for no reason. Such rows (checked on the norms, one host sync) are
    first divided by their largest absolute value, which leaves their direction as it is. Rows in range take
    ``F.normalize``'s arithmetic unchanged; non-finite rows stay non-finite.
    """
    norm = torch.linalg.vector_norm(x, dim=-1, keepdim=True)
    suspect = ~torch.isfinite(norm) | (norm < 1e-18)  # out of range, or all zero (padding rows, left as they are)
    if bool(suspect.any()):
        scale = torch.linalg.vector_norm(x, ord=float("inf"), dim=-1, keepdim=True)
        rescale = suspect & (scale > 0) & torch.isfinite(scale)  # NaN or inf rows stay non-finite
        if bool(rescale.any()):
            x = torch.where(rescale, x / scale.clamp(min=torch.finfo(x.dtype).tiny), x)
            norm = torch.linalg.vector_norm(x, dim=-1, keepdim=True)
    return x / norm.clamp(min=eps)


def prototypes(support: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """[B, C, D] mean of L2-normalised support features per class (labels -100 ignored)."""
    valid = labels != IGNORE_INDEX
    onehot = F.one_hot(labels.clamp(min=0), num_classes).to(support.dtype) * valid.unsqueeze(-1)
    sums = onehot.transpose(1, 2) @ unit_rows(support)
    return sums / onehot.sum(1).clamp(min=1).unsqueeze(-1)


def row_scores(rows: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """[B, M, D] rows, [B, C, D] class weights → [B, M, C] dot products, computed as ``(weights @ rowsᵀ)ᵀ``.

    The same numbers as ``rows @ weightsᵀ``, with a faster backward on CPU: the weights' gradient is then a
    [B, C, M] @ [B, M, D] product, where ``rows @ weightsᵀ`` needs ``rowsᵀ @ grad``, a [B, D, M] @ [B, M, C]
    product over a transposed view that took about 7x as long at SIB's sizes (32 episodes x 75 queries x 384
    features, one thread, timed ad hoc).
    """
    return (weights @ rows.transpose(1, 2)).transpose(1, 2)


def cosine_logits(query: torch.Tensor, protos: torch.Tensor) -> torch.Tensor:
    return row_scores(unit_rows(query), F.normalize(protos, dim=-1))


def prototype_logits(support, support_labels, query, num_classes: int) -> torch.Tensor:
    """Prototypical network with cosine similarity (ProtoBERT at token level)."""
    return cosine_logits(query, prototypes(support, support_labels, num_classes))


def soft_kmeans_prototypes(support_unit, support_labels, query_unit, num_classes: int, query_mask=None,
                           temperature: float | torch.Tensor = 0.1, iterations: int = 3,
                           class_mask: torch.Tensor | None = None) -> torch.Tensor:
    """[B, C, D] prototypes refined with soft assignments of the unlabelled queries (Ren et al., 2018).

    ``p_c = (Σ_support_c x + Σ_q z_qc x_q) / (n_c + Σ_q z_qc)`` with ``z = softmax(cos / temperature)``, on
    L2-normalised features, which the caller gives (``support_unit``, ``query_unit``: SIB normalises its queries
    once per batch for this and its refinement); ``query_mask`` leaves padded queries out, ``class_mask`` [B, C]
    the classes an episode lacks (episodes of several sizes in one batch): no query is assigned to them.
    """
    valid = support_labels != IGNORE_INDEX
    s, q = support_unit, query_unit
    onehot = F.one_hot(support_labels.clamp(min=0), num_classes).to(s.dtype) * valid.unsqueeze(-1)
    support_sum, support_count = onehot.transpose(1, 2) @ s, onehot.sum(1).unsqueeze(-1)
    weights_mask = query_mask.unsqueeze(-1).to(q.dtype) if query_mask is not None else 1.0
    protos = support_sum / support_count.clamp(min=1)
    for _ in range(iterations):
        scores = row_scores(q, F.normalize(protos, dim=-1)) / temperature
        if class_mask is not None:
            scores = scores.masked_fill(~class_mask[:, None, :], torch.finfo(scores.dtype).min)
        z = torch.softmax(scores, dim=-1) * weights_mask
        protos = (support_sum + z.transpose(1, 2) @ q) / (support_count + z.sum(1).unsqueeze(-1)).clamp(min=1e-6)
    return protos


def soft_kmeans_logits(support, support_labels, query, num_classes: int, query_mask=None,
                       temperature: float = 0.1, iterations: int = 3,
                       class_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Cosine scores against the soft k-means prototypes (the transductive baseline)."""
    protos = soft_kmeans_prototypes(unit_rows(support), support_labels, unit_rows(query),
                                    num_classes, query_mask, temperature, iterations, class_mask)
    return cosine_logits(query, protos)
