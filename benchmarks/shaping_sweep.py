"""How much to shape the encoder: top layers × learning rate × epochs, chosen on meta-validation classes only.

For each setting, a fresh MiniLM's top layers are shaped on the meta-training classes (`shape_encoder`); after
every epoch the meta-validation classes' texts are encoded and scored with soft k-means (the free transductive
baseline, and SIB's K = 0 start) on:

- ``5way_even`` 1-shot and 5-shot (15 queries per class),
- ``allway_natural`` 1-shot (every meta-validation class at once, queries drawn as the data's class frequencies
  fall).

Soft k-means' temperature and iterations are chosen on one draw of meta-validation episodes and scored on another,
so the figure of a setting is not the maximum of noise. The frozen encoder (the pool's cached MiniLM features, as
fewshot_intents uses them) is scored once per dataset and seed. Test classes are never touched. Resumable: each (dataset, setting, seed) is kept under benchmarks/.cache/shaping_sweep/.

    python -m benchmarks.shaping_sweep --datasets clinc150 --layers 2 4 --learning_rates 2e-5 1e-4
"""

from __future__ import annotations

import argparse
import itertools
import time

import numpy as np
import torch
from transformers import AutoTokenizer

from benchmarks.common import cached, cached_json, target, write_results
from benchmarks.fewshot_intents import Encoded, episodes, task
from benchmarks.sib_fewshot import choose_soft_kmeans, minilm, new_model, score
from hf_adapter_ext.meta import encode_texts
from hf_adapter_ext.meta.shaping import SHAPING_DEFAULTS, shape_encoder

# protocol name -> (fewshot_intents protocol, shots)
PROTOCOLS = {"5way_1shot": ("5way_even", 1), "5way_5shot": ("5way_even", 5), "allway_1shot": ("allway_natural", 1)}


def validation_scores(model, features, labels, classes, seed: int, args) -> dict[str, float]:
    """Soft k-means accuracy (%) on meta-validation episodes per protocol, its settings chosen on another draw."""
    out = {}
    for name, (protocol, k) in PROTOCOLS.items():
        count = args.allway_episodes if protocol.startswith("allway") else args.episodes
        choose = episodes(Encoded(features), labels, classes["validation"], protocol, k, 1500 + seed, count)
        held = episodes(Encoded(features), labels, classes["validation"], protocol, k, 1000 + seed, count)
        skm, _ = choose_soft_kmeans(model, choose, "sequence")
        out[name] = 100 * float(score(model, held, "sequence", skm=skm)["soft_kmeans"].mean())
    return out


def sweep_one(dataset, texts, labels, classes, layers: int, learning_rate: float, seed: int, args) -> dict:
    """Scores after each epoch of shaping ``layers`` top layers at ``learning_rate`` (``per_epoch[i]`` is epoch
    i + 1), with the seconds spent shaping so far (scoring excluded)."""
    torch.manual_seed(seed)
    model, tokenizer = new_model("sequence"), AutoTokenizer.from_pretrained(minilm())
    train_classes, val_classes = set(classes["train"]), set(classes["validation"])
    train = [i for i, label in enumerate(labels) if label in train_classes]
    val = [i for i, label in enumerate(labels) if label in val_classes]
    features = torch.zeros(len(texts), model.config.feature_dim)  # only validation rows are ever sampled
    per_epoch, clock = [], {"start": time.perf_counter(), "scoring": 0.0}

    def evaluate(epoch: int) -> None:
        began = time.perf_counter()
        features[torch.as_tensor(val)] = encode_texts(model, tokenizer, [texts[i] for i in val])
        scores = validation_scores(model, features, labels, classes, seed, args)
        per_epoch.append({"epoch": epoch, "shaping_seconds": began - clock["start"] - clock["scoring"], **scores})
        clock["scoring"] += time.perf_counter() - began
        print(dataset, layers, learning_rate, per_epoch[-1], flush=True)

    shaped = shape_encoder(model.backbone, tokenizer, [texts[i] for i in train], [labels[i] for i in train],
                           top_layers=layers, epochs=args.epochs, learning_rate=learning_rate,
                           pooling=model.config.pooling, seed=seed, on_epoch_end=evaluate)
    return {"layers": layers, "learning_rate": learning_rate, "seed": seed, "losses": shaped.losses,
            "per_epoch": per_epoch}


def seed_mean(entries: list[dict]) -> tuple[dict[str, float], float]:
    """Per-protocol means over seeds of score entries, and their mean over the protocols."""
    mean = {name: float(np.mean([entry[name] for entry in entries])) for name in PROTOCOLS}
    return mean, float(np.mean(list(mean.values())))


def table_row(dataset: str, shown: tuple[str, str, str], seconds: float, mean: dict, overall: float) -> str:
    return (f"| {dataset} | {' | '.join(shown)} | {seconds:.0f} | " + " | ".join(f"{mean[n]:.2f}" for n in PROTOCOLS)
            + f" | {overall:.2f} |")


def run(args) -> tuple[dict, list, list]:
    results, targets = {}, []
    rows = ["| dataset | top layers | learning rate | epochs | shaping s | " + " | ".join(PROTOCOLS) + " | mean |",
            "|---|---|---|---|---|" + "---|" * (len(PROTOCOLS) + 1)]
    # (layers, learning rate, epochs) -> per-dataset mean accuracy
    overall_by_setting: dict[tuple, list[float]] = {}
    episodes_key = f"v{args.episodes}-{args.allway_episodes}"
    for dataset in args.datasets:
        texts, labels, classes, _ = task(dataset)
        model = new_model("sequence")
        features = cached(f"{dataset}_minilm", lambda: encode_texts(model, AutoTokenizer.from_pretrained(minilm()),
                                                                    texts))  # the frozen encoder, as fewshot_intents
        frozen_mean, frozen = seed_mean([cached_json(
            f"{args.results_name}/{dataset}_frozen_s{seed}_{episodes_key}",
            lambda seed=seed: validation_scores(model, features, labels, classes, seed, args)) for seed in args.seeds])
        rows.append(table_row(dataset, ("frozen", "–", "0"), 0, frozen_mean, frozen))
        best = None
        for layers, learning_rate in itertools.product(args.layers, args.learning_rates):
            per_seed = [cached_json(f"{args.results_name}/{dataset}_l{layers}_lr{learning_rate}_e{args.epochs}_s{seed}_"
                                    f"{episodes_key}", lambda seed=seed: sweep_one(
                                        dataset, texts, labels, classes, layers, learning_rate, seed, args))
                        for seed in args.seeds]
            results[f"{dataset}_l{layers}_lr{learning_rate}"] = per_seed
            for epoch in range(1, args.epochs + 1):
                entries = [s["per_epoch"][epoch - 1] for s in per_seed]
                mean, overall = seed_mean(entries)
                seconds = float(np.mean([entry["shaping_seconds"] for entry in entries]))
                rows.append(table_row(dataset, (str(layers), f"{learning_rate:g}", str(epoch)), seconds, mean, overall))
                overall_by_setting.setdefault((layers, learning_rate, epoch), []).append(overall)
                if best is None or overall > best[0]:
                    best = (overall, layers, learning_rate, epoch, seconds)
        results[f"{dataset}_frozen"] = {"mean": frozen_mean, "overall": frozen}
        targets.append(target(f"{dataset}: best shaping's mean meta-validation soft k-means accuracy − frozen "
                              f"encoder's (points; {best[1]} layers, lr {best[2]:g}, {best[3]} epochs)",
                              best[0] - frozen, 0.0, ">="))
        targets.append(target(f"{dataset}: seconds the best shaping takes (2 cores)", best[4], 30 * 60, "<="))
    complete = {key: float(np.mean(v)) for key, v in overall_by_setting.items() if len(v) == len(args.datasets)}
    best = max(complete, key=complete.get)
    default = (SHAPING_DEFAULTS.top_layers, SHAPING_DEFAULTS.learning_rate, SHAPING_DEFAULTS.epochs)
    if default in complete:
        gap = complete[default] - complete[best]
        rows.append(f"\nOver {', '.join(args.datasets)} (mean of the datasets' means): the best setting is top "
                    f"{best[0]} layers, learning rate {best[1]:g}, {best[2]} epochs ({complete[best]:.2f}); the "
                    f"default (`SHAPING_DEFAULTS`: {default[0]} layers, {default[1]:g}, {default[2]} epochs) scores "
                    f"{complete[default]:.2f} ({gap:+.2f}). The default changes only when a setting beats it by more "
                    f"than {args.tolerance} points: smaller differences are within the episodes' noise. Settings "
                    f"within {args.tolerance} of the best: " + "; ".join(
                        f"{k[0]} layers, {k[1]:g}, {k[2]} epochs ({complete[k]:.2f})"
                        for k in sorted(complete, key=complete.get, reverse=True)
                        if complete[k] >= complete[best] - args.tolerance) + ".")
        targets.append(target(f"the default shaping ({default[0]} layers, lr {default[1]:g}, {default[2]} epochs): "
                              "mean meta-validation accuracy − the best setting's (points)", gap, -args.tolerance,
                              ">="))
    header = (f"Soft k-means accuracy % on meta-validation episodes ({args.episodes} per 5-way protocol, "
              f"{args.allway_episodes} all-way; temperature and iterations chosen on a second draw), mean over seeds "
              f"{args.seeds}, after each epoch of shaping MiniLM's top layers on the meta-training classes. Shaping "
              "seconds exclude the scoring between epochs.\n")
    return results, targets, [header, *rows]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["clinc150", "banking77"])
    parser.add_argument("--layers", nargs="+", type=int, default=[2, 4])
    parser.add_argument("--learning_rates", nargs="+", type=float, default=[2e-5, 1e-4])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--episodes", type=int, default=300)
    parser.add_argument("--allway_episodes", type=int, default=50)
    parser.add_argument("--tolerance", type=float, default=0.25,
                        help="points by which a setting must beat the default for the default to change")
    parser.add_argument("--results_name", default="shaping_sweep",
                        help="results/<name>.json|md, and the runs kept in CACHE/<name>/ (resumable)")
    args = parser.parse_args()
    results, targets, table = run(args)
    write_results(args.results_name, {"settings": vars(args), "targets": targets, "results": results},
                  "\n".join(table))


if __name__ == "__main__":
    main()
