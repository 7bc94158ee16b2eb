"""Shape with the label names or without, for a model that reads them: chosen on meta-validation classes only.

A model with ``SIBConfig(use_label_names=True)`` reads each label's name as one more labelled example. Shaping can
also teach the encoder where names belong (`shape_encoder`'s ``class_names``: every meta-training example is also
classified among its classes' name features). Both ways of shaping are compared here on the features
benchmarks/fewshot_intents.py meta-trains on (the same cache), by soft k-means given the label names (the K = 0
start of a SIB that reads them) and without them, on meta-validation episodes of each protocol at 1 and 5 shots.
Soft k-means' temperature and iterations are chosen on one draw of episodes and scored on another. Test classes are
never touched.

Names that say nothing: the first seed is also shaped with every class renamed ``intent_<random number>``, aligned
regardless (``min_name_agreement=0``), to measure what aligning such names costs; `shape_encoder` skips names
unless at least ``NAME_AGREEMENT`` of them point to their own class on the pretrained encoder (`name_agreement`,
reported for both kinds of names).

    python -m benchmarks.shaping_names --seeds 0 1 2
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from transformers import AutoTokenizer

from benchmarks.common import cached, cached_json, target, write_results
from benchmarks.fewshot_intents import Encoded, episodes, shape_and_encode, shaped_features, task
from benchmarks.sib_fewshot import best_soft_kmeans, minilm, new_model, score, soft_kmeans_sweep
from hf_adapter_ext.meta import encode_texts
from hf_adapter_ext.meta.label_names import encode_label_names
from hf_adapter_ext.meta.shaping import NAME_AGREEMENT, class_means, name_agreement

PROTOCOLS = [("5way_even", 1), ("5way_uneven", 1), ("allway_natural", 1), ("5way_even", 5), ("5way_uneven", 5),
             ("allway_natural", 5)]
VARIANTS = ("off", "aligned", "say_nothing")
METHODS = ("soft_kmeans_names", "soft_kmeans")


def say_nothing_names(names: list[str]) -> list[str]:
    """Every class renamed ``intent_<a random number>``: names that tell nothing about their class."""
    order = torch.randperm(len(names), generator=torch.Generator().manual_seed(0)).tolist()
    return [f"intent_{order[c]}" for c in range(len(names))]


def say_nothing_features(dataset: str, texts, labels, classes, names, layers: int, seed: int) -> Encoded:
    """The pool's features after shaping with `say_nothing_names` aligned regardless of `name_agreement` (cached)."""
    return Encoded(*cached(f"shaping_names_{dataset}_say_nothing_l{layers}_s{seed}", lambda: shape_and_encode(
        texts, labels, classes, names, layers, seed, class_names={c: names[c] for c in classes["train"]},
        min_name_agreement=0.0)[0]))


def frozen_agreement(dataset: str, texts, labels, classes, names) -> float:
    """`name_agreement` of ``names`` over the meta-training classes on the pretrained MiniLM, as shaping checks it."""
    model, tokenizer = new_model("sequence"), AutoTokenizer.from_pretrained(minilm())
    features = cached(f"{dataset}_minilm", lambda: encode_texts(model, tokenizer, texts))
    train, train_classes = classes["train"], set(classes["train"])
    rows = [i for i, label in enumerate(labels) if label in train_classes]
    means = class_means(features[rows], torch.as_tensor([train.index(labels[i]) for i in rows]), len(train))
    return name_agreement(encode_label_names(model, tokenizer, [names[c] for c in train]),
                          torch.arange(len(train)), means)


def validation_scores(dataset: str, seed: int, variant: str, args) -> dict[str, dict[str, float]]:
    """Per protocol and shot: soft k-means accuracy (%) with and without the names on meta-validation episodes,
    each method's settings chosen on another draw."""
    texts, labels, classes, names = task(dataset)
    if variant == "say_nothing":
        names = say_nothing_names(names)
        features = say_nothing_features(dataset, texts, labels, classes, names, args.layers, seed)
    else:
        features, _ = shaped_features(dataset, texts, labels, classes, names, args.layers, seed, variant == "aligned")
    model = new_model("sequence")
    out = {}
    for protocol, k in PROTOCOLS:
        count = args.allway_episodes if protocol.startswith("allway") else args.episodes
        choose = episodes(features, labels, classes["validation"], protocol, k, 1500 + seed, count)
        held = episodes(features, labels, classes["validation"], protocol, k, 1000 + seed, count)
        sweep = soft_kmeans_sweep(model, choose, "sequence")
        out[f"{k}shot_{protocol}"] = {
            method: 100 * float(score(model, held, "sequence", skm=best_soft_kmeans(sweep, method))[method].mean())
            for method in METHODS}
    return out


def run(args) -> tuple[dict, list, list]:
    columns = [f"{k}shot_{protocol}" for protocol, k in PROTOCOLS]
    rows = ["| dataset | shaping | method | " + " | ".join(columns) + " | mean |", "|---|---|---|" + "---|" * (len(columns) + 1)]
    results, targets, gains = {}, [], []
    agreements = []
    for dataset in args.datasets:
        texts, labels, classes, names = task(dataset)
        agreement = {kind: frozen_agreement(dataset, texts, labels, classes, given)
                     for kind, given in (("real", names), ("say_nothing", say_nothing_names(names)))}
        agreements.append(f"{dataset}: {100 * agreement['real']:.0f}% of the real names and "
                          f"{100 * agreement['say_nothing']:.0f}% of the `intent_<n>` names point to their own class")
        results[f"{dataset}_name_agreement"] = agreement
        means = {}
        for variant in VARIANTS:
            seeds = args.seeds[:1] if variant == "say_nothing" else args.seeds
            per_seed = [cached_json(f"shaping_names/{dataset}_{variant}_l{args.layers}_s{seed}_v{args.episodes}-"
                                    f"{args.allway_episodes}",
                                    lambda seed=seed, variant=variant: validation_scores(dataset, seed, variant, args))
                        for seed in seeds]
            results[f"{dataset}_{variant}"] = per_seed
            for method in METHODS:
                mean = {c: float(np.mean([s[c][method] for s in per_seed])) for c in columns}
                means[variant, method] = float(np.mean(list(mean.values())))
                rows.append(f"| {dataset} | {variant}{' (seed ' + str(seeds[0]) + ')' if variant == 'say_nothing' else ''} | {method} | " + " | ".join(f"{mean[c]:.2f}" for c in columns)
                            + f" | {means[variant, method]:.2f} |")
        gain = means["aligned", "soft_kmeans_names"] - means["off", "soft_kmeans_names"]
        gains.append(gain)
        targets.append(target(f"{dataset}: shaping with the names − without, soft k-means given the names, mean "
                              "meta-validation accuracy over the protocols (points)", gain, 0.0, ">="))
        targets.append(target(f"{dataset}: share of the real names that point to their own class (shaping aligns "
                              "them only at or above NAME_AGREEMENT)", agreement["real"], NAME_AGREEMENT, ">="))
        targets.append(target(f"{dataset}: share of the `intent_<n>` names that point to their own class (near "
                              "chance, far below NAME_AGREEMENT, so shaping leaves them out)", agreement["say_nothing"],
                              0.1, "<="))
    targets.append(target("mean over the datasets of the same gain (the default shapes with the names when >= 0)",
                          float(np.mean(gains)), 0.0, ">="))
    header = (f"Soft k-means accuracy % on meta-validation episodes ({args.episodes} per 5-way protocol, "
              f"{args.allway_episodes} all-way; temperature and iterations chosen per method on a second draw), mean "
              f"over seeds {args.seeds}, on MiniLM shaped as benchmarks/fewshot_intents.py shapes it ({args.layers} top "
              "layers), without the label names (`off`) or with them aligned to their examples (`aligned`). "
              "`soft_kmeans_names`: given each label's name as one more example (how a SIB that reads names "
              "starts). `say_nothing`: every class renamed `intent_<random n>` and aligned regardless, first seed "
              "only. On the pretrained encoder (`name_agreement`, meta-training classes): " + "; ".join(agreements)
              + f". Shaping aligns names only where at least {NAME_AGREEMENT:.0%} do.\n")
    return results, targets, [header, *rows]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["clinc150", "banking77"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--episodes", type=int, default=300)
    parser.add_argument("--allway_episodes", type=int, default=50)
    args = parser.parse_args()
    results, targets, table = run(args)
    write_results("shaping_names", {"settings": vars(args), "targets": targets, "results": results}, "\n".join(table))


if __name__ == "__main__":
    main()
