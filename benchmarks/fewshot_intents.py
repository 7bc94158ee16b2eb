"""Few-shot intents on frozen vs shaped MiniLM features (issue: few-shot classification that beats the free baseline).

Per dataset and seed: MiniLM's top layers are shaped on the meta-training classes only
(`SIBForFewShotClassification.shape_backbone`, the library's defaults), then every method is scored on the same
5-way test episodes (paired), with even query sets (15 per class) and uneven ones (a random 1..15 per class):

- soft k-means and prototypes on the frozen features (what a user gets for free);
- the same on the shaped features;
- SIB meta-trained on the shaped features (library defaults, best step on meta-validation), with K = 0 beside K.

Class splits as in benchmarks/sib_fewshot.py. Resumable: each (dataset, shot, seed) result is kept under
benchmarks/.cache/fewshot_intents/.

    python -m benchmarks.fewshot_intents                      # CLINC150 + BANKING77, 1- and 5-shot, seed 0
    python -m benchmarks.fewshot_intents --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from transformers import AutoTokenizer

from benchmarks.common import CACHE, cached, shared_data_dir, target, write_results
from benchmarks.sib_fewshot import (
    choose_soft_kmeans,
    minilm,
    new_model,
    per_method,
    score,
    sequence_episodes,
    train_sib,
)
from hf_adapter_ext import SIBConfig
from hf_adapter_ext.data import load_banking77, load_clinc150
from hf_adapter_ext.meta import MetaTrainingArguments, encode_texts

# The settings a user gets: SIBConfig's and MetaTrainingArguments' defaults, shaping included.
SIB_DEFAULTS = SIBConfig()
SHAPING = {name: MetaTrainingArguments.__dataclass_fields__[name].default
           for name in ("shape_epochs", "shape_learning_rate")}
METHODS = ("proto_frozen", "soft_kmeans_frozen", "proto_shaped", "soft_kmeans_shaped", "sib_k0", "sib_k3")


def task(name: str):
    pool, split = (load_clinc150 if name == "clinc150" else load_banking77)(shared_data_dir() / name)
    names = pool.features["label"].names
    classes = {part: [names.index(c) for c in intents] for part, intents in split.items()}
    return list(pool["text"]), list(pool["label"]), classes


def shaped_features(name: str, texts, labels, classes, layers: int, seed: int):
    """The pool's features after shaping a fresh MiniLM on the meta-training classes (cached), and the seconds
    shaping took (None when read from the cache)."""
    key = f"fewshot_intents_{name}_shaped{layers}_e{SHAPING['shape_epochs']}_lr{SHAPING['shape_learning_rate']}_s{seed}"
    seconds = {}

    def compute():
        torch.manual_seed(seed)
        model, tokenizer = new_model("sequence"), AutoTokenizer.from_pretrained(minilm())
        train_classes = set(classes["train"])
        train = [i for i, label in enumerate(labels) if label in train_classes]
        start = time.perf_counter()
        model.shape_backbone(tokenizer, [texts[i] for i in train], [labels[i] for i in train], top_layers=layers,
                             epochs=SHAPING["shape_epochs"], learning_rate=SHAPING["shape_learning_rate"], seed=seed)
        seconds["shaping"] = time.perf_counter() - start
        return encode_texts(model, tokenizer, texts)

    return cached(key, compute), seconds.get("shaping")


def run(args) -> tuple[dict, list, list]:
    tokenizer = AutoTokenizer.from_pretrained(minilm())
    results, targets = {}, []
    rows = ["| dataset | shots | queries | " + " | ".join(METHODS) + " | SIB K - soft k-means frozen |",
            "|---|---|---|" + "---|" * (len(METHODS) + 1)]
    for dataset in args.datasets:
        texts, labels, classes = task(dataset)
        frozen = cached(f"{dataset}_minilm", lambda: encode_texts(new_model("sequence"), tokenizer, texts))
        for k in args.shots:
            per_seed = []
            for seed in args.seeds:
                kept = CACHE / "fewshot_intents" / f"{dataset}_{k}shot_s{seed}_l{args.layers}_steps{args.steps}.json"
                if kept.is_file():
                    per_seed.append(json.loads(kept.read_text()))
                    continue
                shaped, shaping_seconds = shaped_features(dataset, texts, labels, classes, args.layers, seed)
                record = {"seed": seed, "shaping_seconds": shaping_seconds}
                train = sequence_episodes(shaped, labels, classes["train"], k, seed, args.steps * 32, 0.5)
                val = sequence_episodes(shaped, labels, classes["validation"], k, 1000 + seed, args.val_episodes)
                start = time.perf_counter()
                model, val_score, best_step = train_sib("sequence", train, val, args.steps, 32,
                                                        SIB_DEFAULTS.inner_lr, SIB_DEFAULTS.learn_inner_lr, seed)
                record.update(sib_seconds=time.perf_counter() - start, chosen_step=best_step,
                              val_sib_k3=val_score, learned_inner_lr=float(model.head.log_inner_lr.exp()))
                for queries, uneven in (("even", 0.0), ("uneven", 1.0)):
                    scores = {}
                    for kind, features in (("frozen", frozen), ("shaped", shaped)):
                        test = sequence_episodes(features, labels, classes["test"], k, 2000 + seed,
                                                 args.test_episodes, uneven)
                        skm, _ = choose_soft_kmeans(model, sequence_episodes(
                            features, labels, classes["validation"], k, 1000 + seed, args.val_episodes, uneven),
                            "sequence")
                        got = score(model, test, "sequence", skm=skm)
                        scores[f"proto_{kind}"], scores[f"soft_kmeans_{kind}"] = got["proto"], got["soft_kmeans"]
                        if kind == "shaped":
                            scores["sib_k0"], scores["sib_k3"] = got["sib_k0"], got["sib_k3"]
                    record[queries] = {**per_method(scores), "paired": per_method({
                        "sib_k3-soft_kmeans_frozen": scores["sib_k3"] - scores["soft_kmeans_frozen"],
                        "sib_k3-sib_k0": scores["sib_k3"] - scores["sib_k0"],
                        "soft_kmeans_shaped-soft_kmeans_frozen":
                            scores["soft_kmeans_shaped"] - scores["soft_kmeans_frozen"]})}
                kept.parent.mkdir(parents=True, exist_ok=True)
                kept.write_text(json.dumps(record))
                per_seed.append(record)
            results[f"{dataset}_{k}shot"] = per_seed
            for queries in ("even", "uneven"):
                mean = {m: 100 * sum(s[queries][m]["mean"] for s in per_seed) / len(per_seed) for m in METHODS}
                gap = mean["sib_k3"] - mean["soft_kmeans_frozen"]
                rows.append(f"| {dataset} | {k} | {queries} | " + " | ".join(f"{mean[m]:.2f}" for m in METHODS)
                            + f" | {gap:+.2f} |")
                goal = 2.0 if k == 1 else 1.0
                targets.append(target(f"{dataset} 5-way {k}-shot, {queries} queries: SIB K - soft k-means on frozen "
                                      "features (points)", gap, goal, ">="))
                if k == 1:
                    targets.append(target(f"{dataset} 5-way 1-shot, {queries} queries: SIB K - SIB K=0 on shaped "
                                          "features (points)", mean["sib_k3"] - mean["sib_k0"], 0.5, ">="))
            total = [s["shaping_seconds"] + s["sib_seconds"] for s in per_seed if s["shaping_seconds"] is not None]
            if total:
                targets.append(target(f"{dataset} {k}-shot: meta-training minutes, shaping included",
                                      max(total) / 60, 30, "<="))
    header = (f"Accuracy %, 5-way, mean over seeds {args.seeds} of each seed's mean over {args.test_episodes} paired "
              "test episodes (per-seed 95% CIs and paired differences in the JSON). Shaping: MiniLM's top "
              f"{args.layers} layers, {SHAPING['shape_epochs']} epochs at {SHAPING['shape_learning_rate']} on the "
              f"meta-training classes. SIB: SIBConfig defaults, {args.steps} steps of 32 episodes (half with uneven "
              "query sets), best step on meta-validation. Soft k-means' temperature and iterations are chosen on "
              "meta-validation for each feature kind and query kind.\n")
    return results, targets, [header, *rows]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["clinc150", "banking77"])
    parser.add_argument("--shots", nargs="+", type=int, default=[1, 5])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--layers", type=int, default=2, help="top encoder layers shaped")
    parser.add_argument("--steps", type=int, default=1200, help="SIB meta-training steps (32 episodes each)")
    parser.add_argument("--val_episodes", type=int, default=600)
    parser.add_argument("--test_episodes", type=int, default=2000)
    args = parser.parse_args()
    results, targets, table = run(args)
    write_results("fewshot_intents", {"settings": vars(args), "targets": targets, "results": results}, "\n".join(table))


if __name__ == "__main__":
    main()
