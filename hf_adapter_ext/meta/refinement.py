"""Which tasks SIB's refinement helps, chosen on meta-validation by the number of labels.

The synthetic-gradient refinement is meta-trained on small episodes (5-way by default). On the shaped sentence
features of benchmarks/fewshot_intents.py it lifts 5-way tasks above their K = 0 start and lowers 50-way 1-shot
tasks below it (benchmarks/results/fewshot_intents.md). So after meta-training, the refinement is checked on
validation tasks of increasing size, and tasks from the first size where it clearly lost are answered from the
K = 0 start (`SIBConfig.max_refined_classes`).
"""

from __future__ import annotations

from collections.abc import Mapping

from torch.utils.data import Dataset as TorchDataset

from .episodes import EpisodeSampler
from .evaluation import paired_accuracy_gain


def refinement_ways(n_way: int, num_classes: int) -> list[int]:
    """The task sizes the refinement is checked at: ``n_way``, then doubling, and ``num_classes`` (every class of the
    validation split at once), never more than ``num_classes``."""
    ways, size = [], n_way
    while size < num_classes:
        ways.append(size)
        size *= 2
    return [*ways, num_classes]


def refinement_gains(model, episodes_by_ways: Mapping[int, TorchDataset],
                     batch_size: int = 8) -> dict[int, tuple[float, float]]:
    """Per task size, the mean over validation episodes of (accuracy after the model's K refinement steps −
    accuracy of its K = 0 start), both from the same forward pass, and the half-width of its paired 95% CI.

    Args:
        model: a `SIBForFewShotClassification`.
        episodes_by_ways: labelled validation episodes per number of classes.
        batch_size: episodes per forward pass.
    """
    def refined_and_start(model, batch):  # explicit K: refine whatever the size
        out = model(**batch, inner_steps=model.config.inner_steps)
        return out.logits, out.logits_init

    return {ways: paired_accuracy_gain(model, episodes, batch_size, refined_and_start)
            for ways, episodes in episodes_by_ways.items()}


def max_refined_classes(gains: Mapping[int, tuple[float, float]]) -> int | None:
    """The rule that turns `refinement_gains` into `SIBConfig.max_refined_classes`: refine tasks of up to the
    largest checked size below the first at which the refinement was *shown* to lose, its gain's paired 95% CI
    lying wholly below 0. The meta-trained refinement is kept unless validation is clear against it: a
    difference within the noise (a 5-way check on 200 tasks measures to about ±0.2 points) changes nothing.
    None (refine every task) when it never lost; 0 (refine none) when it lost at the smallest size."""
    limit = 0
    for ways in sorted(gains):
        mean, ci95 = gains[ways]
        if mean + ci95 < 0:
            return limit
        limit = ways
    return None


def check_refinement(model, episodes, labels, classes, k_shot: int, n_query: int, seed: int, count: int,
                     batch_size: int) -> dict[int, tuple[float, float]]:
    """Set ``model.config.max_refined_classes`` from validation tasks of `refinement_ways` sizes (only ``n_way``
    for a fixed-width net), ``count`` of each, drawn with natural unlabelled pools over ``episodes``' examples
    (encoded once); returns the gains per size (`refinement_gains`).

    Args:
        model: a `SIBForFewShotClassification`.
        episodes: episodes over the validation examples (`SequenceEpisodes` / `TextEpisodes`), re-sampled per size.
        labels: the class id of each of those examples; ``classes``: the validation classes.
        k_shot, n_query: labelled examples per class, and unlabelled queries per class on average.
        seed: seed of the check's tasks.
        count: tasks per size.
        batch_size: tasks per forward pass.
    """
    config = model.config
    sizes = refinement_ways(config.n_way, len(classes)) if config.any_number_of_classes else [config.n_way]
    checks = {ways: episodes.with_sampler(EpisodeSampler(labels, classes, ways, k_shot, n_query, seed,
                                                         natural_queries=True), count) for ways in sizes}
    gains = refinement_gains(model, checks, batch_size)
    config.max_refined_classes = max_refined_classes(gains)
    return gains
