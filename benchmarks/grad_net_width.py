"""How wide must SIB's synthetic-gradient net be? Meta-validation accuracy and training speed per hidden width.

The equivariant net (the default ``grad_net``) is most of SIB's meta-training time: K calls per episode over
[episodes, queries x classes, hidden] tensors, each differentiated. Its hidden width is ``4 x
grad_net_multiplier``. Per dataset, shot, seed and width, the net is meta-trained as `fewshot_intents.py` trains
its ``equivariant_5way`` candidate (the encoder shaped on the meta-training classes, 5-way episodes, best step on
5-way meta-validation), then scored with K = 0 and K steps on a second draw of meta-validation episodes of every
protocol (5-way even / uneven / natural, all-way natural). Test classes are never used. Training speed is
measured for all widths side by side in one process on the same episodes (`benchmarks/meta_speed.py`'s loop).

The default changes to the narrowest width whose mean meta-validation accuracy is within ``--tolerance`` points of
the widest's: smaller differences are within the episodes' noise (`benchmarks/shaping_sweep.py`'s rule).

    python -m benchmarks.grad_net_width --seeds 0 1
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from benchmarks import fewshot_intents
from benchmarks.common import alternate, cached_json, target, write_results
from benchmarks.meta_speed import sib_training
from benchmarks.sib_fewshot import new_model, score, summary, train_sib
from hf_adapter_ext import SIBConfig

DEFAULT_MULTIPLIER = SIBConfig().grad_net_multiplier


def run_one(dataset, shaped, labels, classes, k, seed, multiplier, args) -> dict:
    train = fewshot_intents.episodes(shaped, labels, classes["train"], "5way_even", k, seed, args.steps * 32,
                                     ways=(5, 5))
    val = fewshot_intents.episodes(shaped, labels, classes["validation"], "5way_even", k, 1000 + seed,
                                   args.val_episodes)
    start = time.perf_counter()
    model, _, best_step = train_sib("sequence", train, val, args.steps, 32, fewshot_intents.SIB_DEFAULTS.inner_lr,
                                    fewshot_intents.SIB_DEFAULTS.learn_inner_lr, seed, grad_net="equivariant",
                                    grad_net_multiplier=multiplier)
    record = {"seconds": time.perf_counter() - start, "best_step": best_step}
    for protocol in fewshot_intents.PROTOCOLS:
        count = args.val_episodes if protocol.startswith("5way") else args.allway_val_episodes
        got = score(model, fewshot_intents.episodes(shaped, labels, classes["validation"], protocol, k, 4000 + seed,
                                                    count), "sequence")
        record[protocol] = {"sib_k3": 100 * summary(got["sib_k3"], "sequence"),
                            "sib_k0": 100 * summary(got["sib_k0"], "sequence")}
    return record


def speed(shaped, labels, classes, multipliers, args) -> dict[str, float]:
    """Meta-training episodes/s of each width, 5-way 1-shot, alternating in this process (meta_speed's loop)."""
    episodes = fewshot_intents.episodes(shaped, labels, classes["train"], "5way_even", 1, 0, 10**6, ways=(5, 5))
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
    parser.add_argument("--tolerance", type=float, default=0.25)
    parser.add_argument("--speed_seconds", type=float, default=3.0)
    parser.add_argument("--speed_rounds", type=int, default=3)
    args = parser.parse_args()
    runs, rates = {}, None
    for dataset in args.datasets:
        texts, labels, classes = fewshot_intents.task(dataset)
        for seed in args.seeds:
            shaped, _ = fewshot_intents.shaped_features(dataset, texts, labels, classes, args.layers, seed)
            if rates is None:  # on the first dataset's shaped features; speed does not depend on their values
                rates = speed(shaped, labels, classes, args.multipliers, args)
            for k in args.shots:
                for m in args.multipliers:
                    key = f"grad_net_width/{dataset}_{k}shot_s{seed}_m{m}_steps{args.steps}_v{args.val_episodes}"
                    runs[f"{dataset}|{k}|{seed}|{m}"] = cached_json(key, lambda: run_one(
                        dataset, shaped, labels, classes, k, seed, m, args))
    protocols = list(fewshot_intents.PROTOCOLS)
    rows = ["| dataset | shots | hidden | " + " | ".join(f"{p} K / K=0" for p in protocols) + " | mean K | train s |",
            "|---|---|---|" + "---|" * (len(protocols) + 2)]
    overall = {}
    for m in args.multipliers:
        cells = []
        for dataset in args.datasets:
            for k in args.shots:
                got = [runs[f"{dataset}|{k}|{s}|{m}"] for s in args.seeds]
                means = {p: (np.mean([g[p]["sib_k3"] for g in got]), np.mean([g[p]["sib_k0"] for g in got]))
                         for p in protocols}
                mean = float(np.mean([v[0] for v in means.values()]))
                cells.append(mean)
                rows.append(f"| {dataset} | {k} | {4 * m} | " + " | ".join(f"{a:.2f} / {b:.2f}" for a, b in
                                                                           means.values())
                            + f" | {mean:.2f} | {np.mean([g['seconds'] for g in got]):.0f} |")
        overall[m] = float(np.mean(cells))
    widest = max(args.multipliers)
    chosen = min(m for m in args.multipliers if overall[m] >= overall[widest] - args.tolerance)
    speed_rows = " · ".join(f"hidden {4 * int(m)}: {r:.0f}" for m, r in rates.items())
    table = (f"Meta-validation accuracy %, SIB with K steps / its K = 0 start, mean over seeds {args.seeds} "
             f"({args.val_episodes} episodes per 5-way protocol, {args.allway_val_episodes} all-way, a draw apart "
             f"from the one that chose each run's step). The net meta-trained {args.steps} steps of 32 5-way episodes "
             f"on features shaped as fewshot_intents.py shapes them.\n\n" + "\n".join(rows)
             + "\n\nMean over datasets, shots and protocols: "
             + " · ".join(f"hidden {4 * m}: {overall[m]:.2f}" for m in args.multipliers)
             + f". The narrowest width within {args.tolerance} points of the widest ({4 * widest}): **{4 * chosen}**."
             + f"\n\nMeta-training episodes/s, 5-way 1-shot, side by side (median of {args.speed_rounds} rounds of "
             f"{args.speed_seconds} s): {speed_rows}.")
    targets = [target(f"hidden {4 * chosen}: mean meta-validation accuracy - hidden {4 * widest}'s (points)",
                      overall[chosen] - overall[widest], -args.tolerance, ">="),
               target(f"hidden {4 * chosen}: meta-training episodes/s / hidden {4 * widest}'s (same run)",
                      rates[str(chosen)] / rates[str(widest)], 1.0, ">=")]
    write_results("grad_net_width", {"settings": vars(args), "runs": runs, "overall": overall, "chosen_multiplier":
                                     chosen, "default_multiplier": DEFAULT_MULTIPLIER, "episodes_per_s": rates,
                                     "targets": targets}, table)


if __name__ == "__main__":
    main()
