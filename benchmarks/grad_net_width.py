"""How wide must SIB's synthetic-gradient net be? Meta-validation accuracy and training speed per hidden width.

The equivariant net (the default ``grad_net``) is most of SIB's meta-training time: K calls per episode over
[episodes, queries x classes, hidden] tensors, each differentiated. Its hidden width is ``4 x
grad_net_multiplier``. Per dataset, shot, seed and width, the net is meta-trained as `fewshot_intents.py` trains
its ``equivariant_5way`` candidate (the encoder shaped on the meta-training classes, 5-way episodes, best step on
5-way meta-validation), then scored with K = 0 and K steps on a second draw of meta-validation episodes of every
protocol (5-way even / uneven / natural, all-way natural). Test classes are never used. Training speed is
measured for all widths side by side in one process on the same episodes (`benchmarks/meta_speed.py`'s loop).

A width qualifies as the default when its mean meta-validation accuracy is within ``--tolerance`` points of the
widest's (`benchmarks/shaping_sweep.py`'s rule: smaller differences are within the episodes' noise) and none of
its 5-way cells (dataset x shots x protocol) falls more than ``--cell_tolerance`` below the widest's: a mean over
protocols can hide a loss on the one a user has.

    python -m benchmarks.grad_net_width --seeds 0 1
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from benchmarks import fewshot_intents
from benchmarks.common import alternate, cached_json, target, write_results
from benchmarks.meta_speed import sib_training
from benchmarks.sib_fewshot import new_model
from hf_adapter_ext import SIBConfig

DEFAULT_MULTIPLIER = SIBConfig().grad_net_multiplier


def run_one(dataset, shaped, labels, classes, k, seed, multiplier, args) -> dict:
    model, record = fewshot_intents.meta_train(shaped, labels, classes, k, seed, args.steps, args.val_episodes,
                                               grad_net="equivariant", grad_net_multiplier=multiplier)
    return {**record, **fewshot_intents.sib_accuracies(model, shaped, labels, classes["validation"], k, 4000 + seed,
                                                       args.val_episodes, args.allway_val_episodes)}


def speed(shaped, labels, classes, multipliers, args) -> dict[str, float]:
    """Meta-training episodes/s of each width, 5-way 1-shot, alternating in this process (meta_speed's loop)."""
    episodes = fewshot_intents.training_episodes(shaped, labels, classes["train"], 1, 0, 10**6)
    torch.manual_seed(0)
    steps = {str(m): sib_training(new_model("sequence", inner_steps=3, grad_net_multiplier=m), episodes, 32)
             for m in multipliers}
    return alternate(steps, args.speed_seconds, args.speed_rounds)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--datasets", nargs="+", default=["clinc150", "banking77"])
    parser.add_argument("--shots", nargs="+", type=int, default=[1, 5])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--multipliers", nargs="+", type=int, default=[8, 4, 2], help="hidden width / 4")
    parser.add_argument("--steps", type=int, default=1200)
    parser.add_argument("--val_episodes", type=int, default=600)
    parser.add_argument("--allway_val_episodes", type=int, default=100)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--tolerance", type=float, default=0.25, help="points, on the mean over every cell")
    parser.add_argument("--cell_tolerance", type=float, default=0.5, help="points, on each 5-way cell")
    parser.add_argument("--speed_seconds", type=float, default=3.0)
    parser.add_argument("--speed_rounds", type=int, default=3)
    args = parser.parse_args()
    runs = {}
    for dataset in args.datasets:
        texts, labels, classes, names = fewshot_intents.task(dataset)
        for seed in args.seeds:
            shaped, _ = fewshot_intents.shaped_features(dataset, texts, labels, classes, names, args.layers, seed)
            for k in args.shots:
                for m in args.multipliers:
                    pools = fewshot_intents.TRAIN_POOLS
                    key = (f"grad_net_width/{dataset}_{k}shot_s{seed}_m{m}_steps{args.steps}_v{args.val_episodes}_"
                           f"pools-u{pools['uneven']}-n{pools['natural']}")
                    runs[f"{dataset}|{k}|{seed}|{m}"] = cached_json(key, lambda: run_one(
                        dataset, shaped, labels, classes, k, seed, m, args))
    # last, alone: on the last features shaped (speed does not depend on their values), nothing else running
    rates = speed(shaped, labels, classes, args.multipliers, args)
    protocols = list(fewshot_intents.PROTOCOLS)
    cells = {(m, dataset, k, p): [float(np.mean([runs[f"{dataset}|{k}|{s}|{m}"][p][method] for s in args.seeds]))
                                  for method in ("sib_k3", "sib_k0")]
             for m in args.multipliers for dataset in args.datasets for k in args.shots for p in protocols}
    rows = ["| dataset | shots | hidden | " + " | ".join(f"{p} K / K=0" for p in protocols) + " | mean K | train s |",
            "|---|---|---|" + "---|" * (len(protocols) + 2)]
    for m in args.multipliers:
        for dataset in args.datasets:
            for k in args.shots:
                seconds = np.mean([runs[f"{dataset}|{k}|{s}|{m}"]["seconds"] for s in args.seeds])
                rows.append(f"| {dataset} | {k} | {4 * m} | " + " | ".join(
                    "{:.2f} / {:.2f}".format(*cells[m, dataset, k, p]) for p in protocols)
                    + f" | {np.mean([cells[m, dataset, k, p][0] for p in protocols]):.2f} | {seconds:.0f} |")
    widest = max(args.multipliers)
    overall = {m: float(np.mean([v[0] for key, v in cells.items() if key[0] == m])) for m in args.multipliers}
    worst = {m: min(((cells[key][0] - cells[(widest, *key[1:])][0], key[1:]) for key in cells
                     if key[0] == m and key[3].startswith("5way")), key=lambda pair: pair[0])
             for m in args.multipliers}
    qualifies = {m: overall[m] >= overall[widest] - args.tolerance and worst[m][0] >= -args.cell_tolerance
                 for m in args.multipliers}
    chosen = min(m for m in args.multipliers if qualifies[m])
    verdicts = "\n".join(
        f"- hidden {4 * m}: mean {overall[m]:.2f} ({overall[m] - overall[widest]:+.2f}); worst 5-way cell "
        f"{worst[m][0]:+.2f} ({worst[m][1][0]} {worst[m][1][1]}-shot {worst[m][1][2]}); "
        f"{rates[str(m)]:.0f} episodes/s ({rates[str(m)] / rates[str(widest)]:.2f}x)"
        for m in args.multipliers)
    table = (f"Meta-validation accuracy %, SIB with K steps / its K = 0 start, mean over seeds {args.seeds} "
             f"({args.val_episodes} episodes per 5-way protocol, {args.allway_val_episodes} all-way, a draw apart "
             f"from the one that chose each run's step). The net meta-trained {args.steps} steps of 32 5-way episodes "
             f"on features shaped as fewshot_intents.py shapes them.\n\n" + "\n".join(rows)
             + f"\n\nAgainst hidden {4 * widest} (meta-training episodes/s: 5-way 1-shot, side by side, median of "
             f"{args.speed_rounds} rounds of {args.speed_seconds} s):\n\n{verdicts}\n\nA width qualifies when its mean "
             f"is within {args.tolerance} points of hidden {4 * widest}'s and no 5-way cell (dataset x shots x "
             f"protocol, {args.val_episodes} episodes) falls more than {args.cell_tolerance} below: the narrowest "
             f"that qualifies is **{4 * chosen}** (the library's default: {4 * DEFAULT_MULTIPLIER}).")
    targets = []
    for m in args.multipliers:
        if m != widest:
            targets += [target(f"hidden {4 * m}: mean meta-validation accuracy - hidden {4 * widest}'s (points)",
                               overall[m] - overall[widest], -args.tolerance, ">="),
                        target(f"hidden {4 * m}: worst 5-way meta-validation cell - hidden {4 * widest}'s (points)",
                               worst[m][0], -args.cell_tolerance, ">=")]
    write_results("grad_net_width", {"settings": vars(args), "runs": runs, "overall": overall, "chosen_multiplier":
                                     chosen, "default_multiplier": DEFAULT_MULTIPLIER, "episodes_per_s": rates,
                                     "targets": targets}, table)


if __name__ == "__main__":
    main()
