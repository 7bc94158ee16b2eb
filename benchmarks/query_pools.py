"""Which unlabelled pools SIB should meta-train on: half uneven (the previous default) or half natural.

A user's unlabelled texts are a natural pool: each class turns up as often as the data holds it, some not at all.
fewshot_intents.md showed SIB's refinement *losing* to its own K = 0 start on such pools (BANKING77 5-way 1-shot,
natural: -1.02 over 3 seeds) while it gained on even ones: the model had only ever been meta-trained on even and
uneven pools. Here the equivariant net (5-way episodes, the library's SIB defaults) is meta-trained on the shaped
features of fewshot_intents with two mixes of training pools:

- ``uneven_half``: half even, half uneven (``uneven_train_queries=0.5``, the library's default until this run);
- ``natural_half``: half natural, a quarter uneven, a quarter even (``natural_train_queries=0.5``,
  ``uneven_train_queries=0.25``).

Each run keeps its best step on 5-way even meta-validation episodes, as fewshot_intents does. It is then scored
with K steps and with K = 0 on a second meta-validation draw and on the meta-test classes, under fewshot_intents'
four protocols (5-way even / uneven / natural, all-way natural).

The rule, fixed before the runs: the library trains on ``natural_half`` by default when its mean meta-validation
accuracy (K steps, over the four protocols, both datasets and every seed) is at least ``uneven_half``'s. Test
scores are reported, never used to choose. Resumable: each run is kept under benchmarks/.cache/query_pools/.

    python -m benchmarks.query_pools --seeds 0 1 2
"""

from __future__ import annotations

import argparse

import numpy as np

from benchmarks import fewshot_intents
from benchmarks.common import cached_json, target, write_results

MIXES = {"uneven_half": {"uneven": 0.5, "natural": 0.0}, "natural_half": {"uneven": 0.25, "natural": 0.5}}
SPLITS = {"val": ("validation", 4000), "test": ("test", 2000)}  # (classes, episode seed offset: fewshot_intents')


def run_one(dataset: str, shaped, labels, classes, k: int, seed: int, mix: str, args, steps: int | None = None,
            **config) -> dict:
    """Meta-train on ``mix``'s pools for ``steps`` (default ``args.steps``) with the library's SIB defaults and
    ``config`` (e.g. ``inner_steps=5``); K-step and K = 0 accuracy (%) per split and protocol."""
    model, record = fewshot_intents.meta_train(shaped, labels, classes, k, seed, steps or args.steps,
                                               args.val_episodes, pools=MIXES[mix], grad_net="equivariant", **config)
    for split, (part, offset) in SPLITS.items():
        accuracies = fewshot_intents.sib_accuracies(model, shaped, labels, classes[part], k, offset + seed,
                                                    args.episodes, args.allway_episodes)
        record.update({f"{split}_{protocol}": value for protocol, value in accuracies.items()})
    return record


def kept_run(dataset: str, shaped, labels, classes, k: int, seed: int, mix: str, steps: int, args, **config) -> dict:
    """`run_one`, computed once per setting and kept under benchmarks/.cache/query_pools/ (shared with
    benchmarks/meta_budget.py and benchmarks/inner_steps.py)."""
    changed = "".join(f"_{name}{value}" for name, value in sorted(config.items()))
    return cached_json(f"query_pools/{dataset}_{k}shot_s{seed}_{mix}_steps{steps}{changed}_v{args.episodes}",
                       lambda: run_one(dataset, shaped, labels, classes, k, seed, mix, args, steps, **config))


def comparison_rows(results: dict[str, list[dict]], settings: list[str], args) -> tuple[list[str], dict[str, float]]:
    """Markdown rows (accuracy with K steps, K − K=0 in brackets, per protocol) of ``results``, keyed
    ``{dataset}_{k}shot_{setting}``, and each setting's mean meta-validation accuracy over datasets, shots, seeds
    and protocols (the figure both comparisons choose by)."""
    protocols = list(fewshot_intents.PROTOCOLS)
    rows = ["| dataset | shots | training | split | " + " | ".join(protocols) + " | mean |",
            "|---|---|---|---|" + "---|" * (len(protocols) + 1)]
    val_means: dict[str, list[float]] = {setting: [] for setting in settings}
    for dataset in args.datasets:
        for k in args.shots:
            for setting in settings:
                runs = results[f"{dataset}_{k}shot_{setting}"]
                for split in SPLITS:
                    cells, means = [], []
                    for protocol in protocols:
                        steps = np.mean([r[f"{split}_{protocol}"]["sib_k3"] for r in runs])
                        start = np.mean([r[f"{split}_{protocol}"]["sib_k0"] for r in runs])
                        cells.append(f"{steps:.2f} ({steps - start:+.2f})")
                        means.append(steps)
                    rows.append(f"| {dataset} | {k} | {setting} | {split} | " + " | ".join(cells)
                                + f" | {np.mean(means):.2f} |")
                    if split == "val":
                        val_means[setting].append(float(np.mean(means)))
    return rows, {setting: float(np.mean(v)) for setting, v in val_means.items()}


def one_shot_refinement_targets(args, results: dict[str, list[dict]], setting: str) -> list[dict]:
    """`refinement_targets` of ``setting``'s 1-shot runs per dataset (none when 1-shot was not run): the issue asks
    the refinement's gain at 1-shot only."""
    return [found for dataset in args.datasets if 1 in args.shots
            for found in refinement_targets(dataset, 1, results[f"{dataset}_1shot_{setting}"], setting)]


def refinement_targets(dataset: str, k: int, runs: list[dict], training: str) -> list[dict]:
    """The issue's "the refinement earns its keep" target per 5-way protocol, on test."""
    targets = []
    for protocol in ("5way_even", "5way_uneven", "5way_natural"):
        gain = np.mean([r[f"test_{protocol}"]["sib_k3"] - r[f"test_{protocol}"]["sib_k0"] for r in runs])
        targets.append(target(f"{dataset} {protocol.replace('_', ' ')} {k}-shot, test, {training} training: SIB K − "
                              "its K=0 start (points)", float(gain), 0.5, ">="))
    return targets


def training_runs(args, settings: dict[str, tuple]) -> dict[str, list[dict]]:
    """`kept_run` per dataset, shot, seed and setting (name: (training pools of `MIXES`, steps[, SIB config changed
    from the defaults])), keyed ``{dataset}_{k}shot_{setting}``, seeds in order."""
    results: dict[str, list[dict]] = {}
    for dataset in args.datasets:
        texts, labels, classes, names = fewshot_intents.task(dataset)
        for k in args.shots:
            for seed in args.seeds:
                shaped, _ = fewshot_intents.shaped_features(dataset, texts, labels, classes, names, args.layers, seed)
                for setting, (mix, steps, *config) in settings.items():
                    results.setdefault(f"{dataset}_{k}shot_{setting}", []).append(
                        kept_run(dataset, shaped, labels, classes, k, seed, mix, steps, args, **(config or [{}])[0]))
    return results


def run(args) -> tuple[dict, list, list]:
    results = training_runs(args, {mix: (mix, args.steps) for mix in MIXES})
    rows, overall = comparison_rows(results, list(MIXES), args)
    targets = one_shot_refinement_targets(args, results, "natural_half")
    gap = overall["natural_half"] - overall["uneven_half"]
    targets.insert(0, target("mean meta-validation accuracy, natural_half − uneven_half training pools (points; "
                             "the rule: natural_half becomes the default when >= 0)", gap, 0.0, ">="))
    header = (f"SIB (equivariant net, library defaults, {args.steps} steps of 32 five-way episodes, best step on "
              f"5-way even meta-validation) on fewshot_intents' shaped MiniLM features, mean over seeds {args.seeds}. "
              f"Accuracy % with K steps, K − K=0 in brackets; {args.episodes} episodes per 5-way protocol and "
              f"{args.allway_episodes} all-way, the test episodes those of fewshot_intents. Mean meta-validation "
              f"accuracy: " + ", ".join(f"{mix} {value:.2f}" for mix, value in overall.items())
              + f" ({gap:+.2f} for natural_half; the rule picks "
              f"{'natural_half' if gap >= 0 else 'uneven_half'}).\n")
    return results, targets, [header, *rows]


def episode_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options this benchmark shares with benchmarks/meta_budget.py: data, seeds, shaping and episode counts."""
    parser.add_argument("--datasets", nargs="+", default=["clinc150", "banking77"])
    parser.add_argument("--shots", nargs="+", type=int, default=[1])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--layers", type=int, default=2, help="shaped top layers, as fewshot_intents")
    parser.add_argument("--episodes", type=int, default=600)
    parser.add_argument("--allway_episodes", type=int, default=100)
    parser.add_argument("--val_episodes", type=int, default=300, help="5-way even episodes that pick the best step")
    parser.add_argument("--results_name", default=None,
                        help="benchmarks/results/<name>.json and .md (default: the benchmark's own name)")
    return parser


def main():
    parser = episode_arguments(argparse.ArgumentParser(description=__doc__.splitlines()[0]))
    parser.add_argument("--steps", type=int, default=1200)
    args = parser.parse_args()
    results, targets, table = run(args)
    write_results(args.results_name or "query_pools", {"settings": vars(args), "mixes": MIXES, "targets": targets, "results": results},
                  "\n".join(table))


if __name__ == "__main__":
    main()
