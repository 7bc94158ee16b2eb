"""Why CLINC150's test classes gain less from shaping than its validation classes: the classes' own geometry.

fewshot_intents_names_aligned.md misses its CLINC150 targets by small margins while BANKING77 clears them, and
shaping_sweep.md showed shaping lifting CLINC150's *meta-validation* classes by 2.49 points. Here, on the features
fewshot_intents meta-trains on (the same cache: the pretrained MiniLM, and MiniLM shaped with the label names on
the meta-training classes), each split's classes are described without any few-shot method:

- nearest-class-mean accuracy with every class of the split at once, each class's mean taken over all its
  examples (how separable the split is on these features, a ceiling-like figure for all-way tasks);
- the split's closest pairs of class means (cosine), the pairs a 5-way task cannot tell apart when both are drawn.

Nothing here chooses a setting; it explains results.

    python -m benchmarks.class_geometry --seeds 0 1 2
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
import torch.nn.functional as F
from transformers import AutoTokenizer

from benchmarks.common import write_results
from benchmarks.fewshot_intents import frozen_features, shaped_features, task
from benchmarks.sib_fewshot import minilm
from hf_adapter_ext.meta.shaping import class_means

SPLITS = ("validation", "test")
CLOSEST = 3


def split_geometry(features: torch.Tensor, labels: torch.Tensor, split_classes: list[int],
                   names: list[str]) -> dict:
    """Nearest-class-mean accuracy (%) over the split's examples, all its classes at once, and its closest pairs."""
    rows = torch.cat([torch.nonzero(labels == c)[:, 0] for c in split_classes])
    gold = torch.cat([torch.full((int((labels == c).sum()),), i) for i, c in enumerate(split_classes)])
    means = F.normalize(class_means(features[rows], gold, len(split_classes)), dim=-1)
    accuracy = 100 * float(((F.normalize(features[rows], dim=-1) @ means.T).argmax(-1) == gold).float().mean())
    similarity = (means @ means.T).triu(diagonal=1)
    top = similarity.flatten().topk(CLOSEST)
    count = len(split_classes)
    pairs = [(names[split_classes[int(i) // count]], names[split_classes[int(i) % count]], round(float(v), 3))
             for v, i in zip(top.values, top.indices)]
    return {"ncm_accuracy": accuracy, "closest_pairs": pairs}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["clinc150", "banking77"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0], help="shaping seeds (features cached per seed)")
    parser.add_argument("--layers", type=int, default=2, help="shaped top layers, as fewshot_intents")
    args = parser.parse_args()
    tokenizer = AutoTokenizer.from_pretrained(minilm())
    results = {}
    rows = ["| dataset | split | classes | NCM all-way, frozen | NCM all-way, shaped (mean over seeds) | shaped − frozen | "
            "closest pairs of class means, frozen (cosine) |", "|---|---|---|---|---|---|---|"]
    for dataset in args.datasets:
        texts, labels, classes, names = task(dataset)
        label_tensor = torch.as_tensor(labels)
        frozen = frozen_features(dataset, texts, names, tokenizer)
        for split in SPLITS:
            before = split_geometry(frozen.texts, label_tensor, classes[split], names)
            after = [split_geometry(shaped_features(dataset, texts, labels, classes, names, args.layers, seed)[0].texts,
                                    label_tensor, classes[split], names) for seed in args.seeds]
            shaped = float(np.mean([a["ncm_accuracy"] for a in after]))
            gain = shaped - before["ncm_accuracy"]
            results[f"{dataset}_{split}"] = {"frozen": before, "shaped_per_seed": after}
            pairs = "; ".join(f"{a} / {b} {v:.3f}" for a, b, v in before["closest_pairs"])
            rows.append(f"| {dataset} | {split} | {len(classes[split])} | {before['ncm_accuracy']:.2f} | {shaped:.2f} | "
                        f"{gain:+.2f} | {pairs} |")
    header = (f"Nearest-class-mean (NCM) accuracy %, all of a split's classes at once, each class's mean over all its "
              f"examples, on the pretrained MiniLM (frozen) and on MiniLM with its top {args.layers} layers shaped on "
              f"the meta-training classes with their label names (fewshot_intents' features; seeds {args.seeds}). "
              "The closest pairs are those of the frozen features.\n")
    write_results("class_geometry", {"settings": vars(args), "targets": [], "results": results},  # no issue target
                  "\n".join([header, *rows]))


if __name__ == "__main__":
    main()
