"""Episode metrics with 95% confidence intervals: accuracy (sequence level), entity F1 (token level)."""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial, reduce

import torch
from torch.utils.data import DataLoader
from transformers.trainer_pt_utils import nested_concat

from ..constants import IGNORE_INDEX
from ..validation import check_choice, check_finite_tensor
from .episodes import LEVELS, collate_episodes


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


@torch.no_grad()
def paired_accuracy_gain(model, episodes, batch_size: int,
                         paired_scores: Callable[[object, dict], tuple[torch.Tensor, torch.Tensor]]) -> tuple[float, float]:
    """Mean over labelled ``episodes`` of (accuracy of the first scores − accuracy of the second), with the
    half-width of its paired 95% CI; ``paired_scores(model, batch)`` gives a batch's two [B, Q, C] score tensors.
    The model runs in eval mode and is left in the mode it was in.

    Args:
        model: a `SIBForFewShotClassification`.
        episodes: labelled validation episodes.
        batch_size: episodes per forward pass.
        paired_scores: the two ways of scoring a batch that are compared, episode by episode.
    """
    was_training = model.training
    model.eval()
    differences = []
    try:
        for batch in DataLoader(episodes, batch_size=batch_size, collate_fn=collate_episodes):
            batch = {k: v.to(model.device) for k, v in batch.items()}
            first, second = paired_scores(model, batch)
            labels = batch["query_labels"]
            differences.append(episode_accuracy(first, labels) - episode_accuracy(second, labels))
    finally:
        model.train(was_training)
    return mean_ci95(torch.cat(differences))


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
            if length <= 0:  # padding (0 within a batch, -100 where the evaluation loop joins batches)
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


METHODS = ("sib", "sib_k0", "proto", "soft_kmeans")


def episode_compute_metrics(level: str):
    """A Trainer ``compute_metrics`` over evaluation episodes: for each method whose query scores the trainer
    predicts (SIB after K steps, SIB with K = 0, and on cached features prototypes and soft k-means), the mean
    over episodes with its 95% CI: accuracy at sequence level, episode entity F1 (and micro F1) at token level."""
    check_choice("episode_compute_metrics", "level", level, LEVELS)

    def compute(prediction) -> dict[str, float]:
        scores, labels = prediction.predictions, prediction.label_ids
        if isinstance(labels, list):  # eval_do_concat_batches=False: per-batch outputs, joined as Trainer joins them
            scores, labels = (reduce(partial(nested_concat, padding_index=IGNORE_INDEX), batches)
                              for batches in (scores, labels))
        scores = scores if isinstance(scores, tuple) else (scores,)
        lengths = None
        if level == "token":
            labels, lengths = (torch.as_tensor(x) for x in labels)
        labels = torch.as_tensor(labels)
        metrics: dict[str, float] = {"episodes": len(labels)}
        for method, logits in zip(METHODS, scores):
            logits = torch.as_tensor(logits)
            check_finite_tensor(logits, f"The {method} query scores")  # argmax of NaN: class 0, a clean-looking guess
            if level == "token":
                counts = episode_entity_counts(logits.argmax(-1), labels, lengths)
                metrics[f"{method}_f1"], metrics[f"{method}_f1_ci95"] = mean_ci95(f1_from_counts(counts))
                metrics[f"{method}_micro_f1"] = float(f1_from_counts(counts.sum(0)))
            else:
                metrics[f"{method}_accuracy"], metrics[f"{method}_accuracy_ci95"] = mean_ci95(
                    episode_accuracy(logits, labels))
        return metrics

    return compute
