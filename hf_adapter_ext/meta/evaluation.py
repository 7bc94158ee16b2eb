"""Episode metrics with 95% confidence intervals: accuracy (sequence level), entity F1 (token level)."""

from __future__ import annotations

import math

import torch

from ..constants import IGNORE_INDEX


def mean_ci95(values) -> tuple[float, float]:
    """Mean and half-width of the normal-approximation 95% confidence interval over episodes."""
    values = torch.as_tensor(values, dtype=torch.float64)
    if values.numel() < 2:
        return float(values.mean()), float("nan")
    return float(values.mean()), float(1.96 * values.std(unbiased=True) / math.sqrt(values.numel()))


def episode_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Accuracy of each episode in a batch: [B]."""
    valid = labels != IGNORE_INDEX
    correct = ((logits.argmax(-1) == labels) & valid).sum(1)
    return correct.float() / valid.sum(1).clamp(min=1)


def io_spans(tags: list[int]) -> set:
    """Entity spans ``(start, end, label)`` of an IO-tagged sentence (0 = O): runs of one non-zero label."""
    spans, start = set(), 0
    for i in range(1, len(tags) + 1):
        if i == len(tags) or tags[i] != tags[start]:
            if tags[start] != 0:
                spans.add((start, i, tags[start]))
            start = i
    return spans


def episode_entity_counts(predictions, labels, sentence_lengths) -> torch.Tensor:
    """[B, 3] (correct, predicted, gold) entity counts per episode, sentences split by their lengths."""
    counts = torch.zeros(len(labels), 3)
    for b in range(len(labels)):
        offset = 0
        for length in sentence_lengths[b].tolist():
            if length == 0:
                continue
            gold = io_spans(labels[b, offset : offset + length].tolist())
            pred = io_spans(predictions[b, offset : offset + length].tolist())
            counts[b] += torch.tensor([len(gold & pred), len(pred), len(gold)], dtype=torch.float)
            offset += length
    return counts


def f1_from_counts(counts: torch.Tensor) -> torch.Tensor:
    """F1 per row of (correct, predicted, gold); 0 where nothing is correct."""
    correct, predicted, gold = counts.unbind(-1)
    precision = correct / predicted.clamp(min=1)
    recall = correct / gold.clamp(min=1)
    return torch.where(correct > 0, 2 * precision * recall / (precision + recall).clamp(min=1e-12), 0.0)
