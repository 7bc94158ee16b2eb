"""The parameter-free yardsticks (and SIB's soft k-means start) against slow float64 references, one episode and one
query at a time, on batches with padded queries and episodes that lack classes."""

import pytest
import torch

from hf_adapter_ext.constants import IGNORE_INDEX
from hf_adapter_ext.meta.baselines import prototype_logits, row_scores, soft_kmeans_logits


def unit(v: torch.Tensor) -> torch.Tensor:
    return v / v.norm()


def reference_soft_kmeans(support, labels, queries, classes, temperature, iterations):
    """Ren et al. (2018) for one episode, written out: support sums per class, then soft assignments of every query."""
    s = [unit(x) for x in support]
    q = [unit(x) for x in queries]
    sums = {c: sum((x for x, y in zip(s, labels) if y == c), torch.zeros_like(s[0])) for c in classes}
    counts = {c: sum(1 for y in labels if y == c) for c in classes}
    protos = {c: sums[c] / counts[c] for c in classes}
    for _ in range(iterations):
        units = {c: unit(protos[c]) for c in classes}
        weights = []
        for x in q:
            scores = torch.stack([x @ units[c] / temperature for c in classes])
            weights.append(dict(zip(classes, scores.softmax(0))))
        protos = {c: (sums[c] + sum(w[c] * x for w, x in zip(weights, q))) / (counts[c] + sum(w[c] for w in weights))
                  for c in classes}
    return torch.stack([torch.stack([x @ unit(protos[c]) for c in classes]) for x in q])


def episode_batch(seed: int):
    """Three episodes in one padded batch: 4 classes, 3 classes (class 3 absent) and 4 classes with 1 query only."""
    generator = torch.Generator().manual_seed(seed)
    features = torch.randn(3, 6, 16, generator=generator) * torch.rand(3, 6, 1, generator=generator) * 40
    support_labels = torch.tensor([[0, 1, 2, 3, 0, 1], [0, 1, 2, 0, IGNORE_INDEX, IGNORE_INDEX], [3, 2, 1, 0, 0, 3]])
    queries = torch.randn(3, 5, 16, generator=generator) * 10
    query_mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0]], dtype=torch.bool)
    class_mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0], [1, 1, 1, 1]], dtype=torch.bool)
    return features, support_labels, queries, query_mask, class_mask


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("temperature", [0.05, 0.1, 1.0])
def test_soft_kmeans_matches_a_one_query_at_a_time_float64_reference(seed, temperature):
    support, labels, queries, query_mask, class_mask = episode_batch(seed)
    logits = soft_kmeans_logits(support, labels, queries, 4, query_mask, temperature, 3, class_mask)
    for b in range(3):
        classes = class_mask[b].nonzero()[:, 0].tolist()
        real = labels[b] != IGNORE_INDEX
        kept = query_mask[b]
        expected = reference_soft_kmeans(support[b][real].double(), labels[b][real].tolist(),
                                         queries[b][kept].double(), classes, temperature, 3)
        torch.testing.assert_close(logits[b][kept][:, classes].double(), expected, atol=2e-6, rtol=0)


def test_prototypes_match_the_per_class_mean_of_unit_support_vectors():
    support, labels, queries, _, _ = episode_batch(3)
    logits = prototype_logits(support, labels, queries, 4)
    for b, c in [(0, 0), (0, 3), (1, 2), (2, 1)]:
        members = [unit(x) for x, y in zip(support[b].double(), labels[b].tolist()) if y == c]
        proto = unit(sum(members) / len(members))
        torch.testing.assert_close(logits[b, :, c].double(), torch.stack([unit(x) @ proto for x in queries[b].double()]),
                                   atol=1e-6, rtol=0)


def test_row_scores_is_the_plain_product_in_value_and_gradient():
    rows = torch.randn(4, 7, 12, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(4, 3, 12, dtype=torch.float64, requires_grad=True)
    upstream = torch.randn(4, 7, 3, dtype=torch.float64)
    fast = torch.autograd.grad((row_scores(rows, weights) * upstream).sum(), (rows, weights))
    plain_value = rows @ weights.transpose(1, 2)
    plain = torch.autograd.grad((plain_value * upstream).sum(), (rows, weights))
    torch.testing.assert_close(row_scores(rows, weights), plain_value)
    for a, b in zip(fast, plain):
        torch.testing.assert_close(a, b)
