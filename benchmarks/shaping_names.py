"""Shape with the label names or without, for a model that reads them: chosen on meta-validation classes only.

A model with ``SIBConfig(use_label_names=True)`` reads each label's name as one more labelled example. Shaping can
also teach the encoder where names belong (`shape_encoder`'s ``class_names``: every meta-training example is also
classified among its classes' name features). Both ways of shaping are compared here on the features
benchmarks/fewshot_intents.py meta-trains on (the same cache), by soft k-means given the label names (the K = 0
start of a SIB that reads them) and without them, on meta-validation episodes of each protocol at 1 and 5 shots.
Soft k-means' temperature and iterations are chosen on one draw of episodes and scored on another. Test classes are
never touched.

    python -m benchmarks.shaping_names --seeds 0 1 2
"""

from __future__ import annotations

import argparse

import numpy as np

from benchmarks.common import cached_json, target, write_results
from benchmarks.fewshot_intents import episodes, shaped_features, task
from benchmarks.sib_fewshot import best_soft_kmeans, new_model, score, soft_kmeans_sweep

PROTOCOLS = [("5way_even", 1), ("5way_uneven", 1), ("allway_natural", 1), ("5way_even", 5), ("5way_uneven", 5),
             ("allway_natural", 5)]
VARIANTS = {"off": False, "aligned": True}
METHODS = ("soft_kmeans_names", "soft_kmeans")


def validation_scores(dataset: str, seed: int, aligned: bool, args) -> dict[str, dict[str, float]]:
    """Per protocol and shot: soft k-means accuracy (%) with and without the names on meta-validation episodes,
    each method's settings chosen on another draw."""
    texts, labels, classes, names = task(dataset)
    features, _ = shaped_features(dataset, texts, labels, classes, names, args.layers, seed, aligned)
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
    for dataset in args.datasets:
        means = {}
        for variant, aligned in VARIANTS.items():
            per_seed = [cached_json(f"shaping_names/{dataset}_{variant}_l{args.layers}_s{seed}_v{args.episodes}-"
                                    f"{args.allway_episodes}",
                                    lambda seed=seed, aligned=aligned: validation_scores(dataset, seed, aligned, args))
                        for seed in args.seeds]
            results[f"{dataset}_{variant}"] = per_seed
            for method in METHODS:
                mean = {c: float(np.mean([s[c][method] for s in per_seed])) for c in columns}
                means[variant, method] = float(np.mean(list(mean.values())))
                rows.append(f"| {dataset} | {variant} | {method} | " + " | ".join(f"{mean[c]:.2f}" for c in columns)
                            + f" | {means[variant, method]:.2f} |")
        gain = means["aligned", "soft_kmeans_names"] - means["off", "soft_kmeans_names"]
        gains.append(gain)
        targets.append(target(f"{dataset}: shaping with the names − without, soft k-means given the names, mean "
                              "meta-validation accuracy over the protocols (points)", gain, 0.0, ">="))
    targets.append(target("mean over the datasets of the same gain (the default shapes with the names when >= 0)",
                          float(np.mean(gains)), 0.0, ">="))
    header = (f"Soft k-means accuracy % on meta-validation episodes ({args.episodes} per 5-way protocol, "
              f"{args.allway_episodes} all-way; temperature and iterations chosen per method on a second draw), mean "
              f"over seeds {args.seeds}, on MiniLM shaped as benchmarks/fewshot_intents.py shapes it ({args.layers} top "
              "layers), without the label names (`off`) or with them aligned to their examples (`aligned`). "
              "`soft_kmeans_names`: given each label's name as one more example (how a SIB that reads names "
              "starts).\n")
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
