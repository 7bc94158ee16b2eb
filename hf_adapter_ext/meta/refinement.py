"""Which tasks SIB's refinement helps, chosen on meta-validation by the number of labels.

The synthetic-gradient refinement is meta-trained on small episodes (5-way by default). On the shaped sentence
features of benchmarks/fewshot_intents.py it lifts 5-way tasks above their K = 0 start and lowers 50-way 1-shot
tasks below it (benchmarks/results/fewshot_intents.md). So after meta-training, the refinement is checked on
validation tasks of increasing size, and tasks larger than the largest size where it held are answered from the
K = 0 start (`SIBConfig.max_refined_classes`).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset

from .episodes import collate_episodes
from .evaluation import episode_accuracy


def refinement_ways(n_way: int, num_classes: int) -> list[int]:
    """The task sizes the refinement is checked at: ``n_way``, then doubling, and ``num_classes`` (every class of the
    validation split at once), never more than ``num_classes``."""
    ways, size = [], n_way
    while size < num_classes:
        ways.append(size)
        size *= 2
    return [*ways, num_classes]


@torch.no_grad()
def refinement_gains(model, episodes_by_ways: Mapping[int, TorchDataset], batch_size: int = 8) -> dict[int, float]:
    """Per task size, the mean over validation episodes of (accuracy after the model's K refinement steps −
    accuracy of its K = 0 start), both from the same forward pass.

    Args:
        model: a `SIBForFewShotClassification`.
        episodes_by_ways: labelled validation episodes per number of classes.
        batch_size: episodes per forward pass.
    """
    was_training = model.training
    model.eval()
    gains = {}
    for ways, episodes in episodes_by_ways.items():
        differences = []
        for batch in DataLoader(episodes, batch_size=batch_size, collate_fn=collate_episodes):
            batch = {k: v.to(model.device) for k, v in batch.items()}
            out = model(**batch, inner_steps=model.config.inner_steps)  # explicit K: refine whatever the size
            labels = batch["query_labels"]
            differences.append(episode_accuracy(out.logits, labels) - episode_accuracy(out.logits_init, labels))
        gains[ways] = float(torch.cat(differences).mean())
    model.train(was_training)
    return gains


def max_refined_classes(gains: Mapping[int, float]) -> int | None:
    """The rule that turns `refinement_gains` into `SIBConfig.max_refined_classes`: refine tasks of up to the
    largest checked size at which the refinement, and at every smaller checked size, was at least as accurate as
    its K = 0 start. None (refine every task) when it held at every size; 0 (refine none) when it lost at the
    smallest."""
    limit = 0
    for ways in sorted(gains):
        if gains[ways] < 0:
            return limit
        limit = ways
    return None
