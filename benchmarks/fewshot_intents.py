"""Few-shot intents: SIB against what a user would pick instead, at 5-way and all-way, on even, uneven and natural
query pools (issue: few-shot classification that beats the free baseline, for any number of labels).

Per dataset, shot and seed:

1. MiniLM's top layers are shaped on the meta-training classes only (`SIBForFewShotClassification.shape_backbone`),
   with their label names aligned to their examples (`--shape_names aligned`, as the trainer shapes a model that
   reads names).
2. Candidate SIB configurations are meta-trained on the shaped features, each keeping its best step on 5-way
   meta-validation episodes; the candidate with the best mean meta-validation accuracy over the protocols below
   is kept. Nothing is chosen on test classes.
3. Every method is scored on the same test episodes (paired), per protocol:
   - ``5way_even`` (15 queries per class), ``5way_uneven`` (a random 1..15 per class), ``5way_natural`` and
     ``allway_natural`` (75 / 15 x N queries drawn from the episode classes' pool as the data's own class
     frequencies fall; all-way = every meta-test class at once);
   - prototypes and soft k-means on frozen and on shaped features, soft k-means on frozen features given the label
     names as one more example each (``soft_kmeans_frozen_names``: the free peer of what the names bring), logistic
     regression on frozen features (C chosen on meta-validation), SIB with K = 0 beside K, and as it answers by
     default (``sib``: K steps only for task sizes its meta-validation check allows, `refinement_check`); a
     candidate with ``use_label_names`` reads the names too (`hf_adapter_ext.meta.label_names`);
   - SetFit (per-task contrastive fine-tuning of the same MiniLM, the ``setfit`` package) on the first few test
     episodes of ``5way_even`` and ``allway_natural``, with its seconds per task; the other methods' scores on
     exactly those episodes stand beside it.

Class splits as in benchmarks/sib_fewshot.py. Resumable: each (dataset, shot, seed) result is kept under
benchmarks/.cache/fewshot_intents/. Needs the ``bench`` extra (setfit, scikit-learn).

    python -m benchmarks.fewshot_intents                      # CLINC150 + BANKING77, 1- and 5-shot, seed 0
    python -m benchmarks.fewshot_intents --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import tempfile
import time
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from transformers import AutoTokenizer

from benchmarks.common import cached, cached_json, shared_data_dir, target, write_results
from benchmarks.sib_fewshot import (
    best_soft_kmeans,
    minilm,
    new_model,
    per_method,
    score,
    soft_kmeans_sweep,
    summary,
    train_sib,
)
from hf_adapter_ext import SIBConfig
from hf_adapter_ext.data import load_banking77, load_clinc150
from hf_adapter_ext.meta import EpisodeSampler, MetaTrainingArguments, SequenceEpisodes, encode_texts
from hf_adapter_ext.meta.label_names import encode_label_names
from hf_adapter_ext.meta.refinement import check_refinement
from hf_adapter_ext.meta.shaping import shape_encoder

SIB_DEFAULTS = SIBConfig()
SHAPING = {name: MetaTrainingArguments.__dataclass_fields__[name].default
           for name in ("shape_epochs", "shape_learning_rate")}
# the shares of uneven and natural unlabelled pools among training episodes, as the library trains by default
TRAIN_POOLS = {name: MetaTrainingArguments.__dataclass_fields__[f"{name}_train_queries"].default
               for name in ("uneven", "natural")}
N_QUERY = 15
# protocol -> (classes per episode, None = every class of the split; how the query pool is drawn)
PROTOCOLS = {"5way_even": (5, "even"), "5way_uneven": (5, "uneven"), "5way_natural": (5, "natural"),
             "allway_natural": (None, "natural")}
# candidate -> (SIBConfig settings, (fewest, most) classes per training episode or None for 5-way only)
CANDIDATES = {"fixed_5way": ({"grad_net": "fixed", "use_label_names": False}, None),
              "equivariant_5way": ({"grad_net": "equivariant", "use_label_names": False}, None),
              "equivariant_2to10": ({"grad_net": "equivariant", "use_label_names": False}, (2, 10)),
              "equivariant_names": ({"grad_net": "equivariant", "use_label_names": True}, None)}
METHODS = ("proto_frozen", "soft_kmeans_frozen", "soft_kmeans_frozen_names", "logreg_frozen", "proto_shaped",
           "soft_kmeans_shaped", "sib_k0", "sib_k3", "sib")


LOGREG_C = (1.0, 10.0, 100.0)


class Encoded(NamedTuple):
    """One encoder's features of a pool: its texts [N, D] and its label names by class id [classes, D]."""

    texts: torch.Tensor
    names: torch.Tensor | None = None


def task(name: str):
    """The pool's texts, labels, class split and label names (by class id)."""
    pool, split = (load_clinc150 if name == "clinc150" else load_banking77)(shared_data_dir() / name)
    names = pool.features["label"].names
    classes = {part: [names.index(c) for c in intents] for part, intents in split.items()}
    return list(pool["text"]), list(pool["label"]), classes, names


def protocol_sampler(labels, classes, protocol: str, k: int, seed: int) -> EpisodeSampler:
    """The episodes of a test protocol (`PROTOCOLS`) over ``classes``."""
    n_way, pool = PROTOCOLS[protocol]
    return EpisodeSampler(labels, classes, n_way or len(classes), k, N_QUERY, seed,
                          uneven_queries=1.0 if pool == "uneven" else 0.0, natural_queries=pool == "natural")


def episodes(features: Encoded, labels, classes, protocol: str, k: int, seed: int, count: int):
    """``count`` episodes of a test protocol (`PROTOCOLS`) over ``classes``, on ``features`` (with the label
    names' features, which only a model with ``use_label_names`` and the ``*_names`` baselines read)."""
    return SequenceEpisodes(features.texts, protocol_sampler(labels, classes, protocol, k, seed), count, features.names)


def training_episodes(features, labels, classes, k: int, seed: int, count: int, ways=(5, 5), pools=None):
    """``count`` meta-training episodes of ``ways`` (fewest, most) classes, their unlabelled pools mixed as
    ``pools`` says ({"uneven": share, "natural": share}; default: as the library trains, `TRAIN_POOLS`)."""
    pools = pools or TRAIN_POOLS
    sampler = EpisodeSampler(labels, classes, ways[0], k, N_QUERY, seed, uneven_queries=pools["uneven"],
                             max_ways=ways[1], natural_queries=pools["natural"])
    return SequenceEpisodes(features.texts, sampler, count, features.names)


def frozen_features(name: str, texts, names, tokenizer) -> Encoded:
    """The pool's texts and label names encoded by the pretrained MiniLM (cached)."""
    return Encoded(cached(f"{name}_minilm", lambda: encode_texts(new_model("sequence"), tokenizer, texts)),
                   cached(f"{name}_minilm_label_names",
                          lambda: encode_label_names(new_model("sequence"), tokenizer, names)))


def shape_and_encode(texts, labels, classes, names, layers: int, seed: int,
                     **shaping) -> tuple[list[torch.Tensor], float]:
    """A fresh MiniLM's top ``layers`` layers shaped on the meta-training classes (`shape_encoder`, with the
    library's default epochs and rate and ``shaping``'s other settings, e.g. ``class_names``); the pool's texts and
    label ``names`` encoded by it, and the seconds shaping took."""
    torch.manual_seed(seed)
    model, tokenizer = new_model("sequence"), AutoTokenizer.from_pretrained(minilm())
    train_classes = set(classes["train"])
    train = [i for i, label in enumerate(labels) if label in train_classes]
    start = time.perf_counter()
    shape_encoder(model.backbone, tokenizer, [texts[i] for i in train], [labels[i] for i in train], top_layers=layers,
                  epochs=SHAPING["shape_epochs"], learning_rate=SHAPING["shape_learning_rate"],
                  pooling=model.config.pooling, seed=seed, **shaping)
    seconds = time.perf_counter() - start
    return [encode_texts(model, tokenizer, texts), encode_label_names(model, tokenizer, names)], seconds


def shaped_features(name: str, texts, labels, classes, names, layers: int, seed: int,
                    align_names: bool = True) -> tuple[Encoded, float | None]:
    """The pool's features (texts and label names) after shaping a fresh MiniLM on the meta-training classes
    (cached), and the seconds shaping took (None when read from the cache). ``align_names``: shaped with the
    meta-training classes' names as well (`shape_encoder`'s ``class_names``), as `SemiSupervisedMetaTrainer`
    shapes a model that reads label names."""
    key = (f"fewshot_intents_{name}_shaped{layers}_e{SHAPING['shape_epochs']}_lr{SHAPING['shape_learning_rate']}_"
           f"s{seed}_with_names{'_aligned' if align_names else ''}")
    seconds = {}

    def compute():
        features, seconds["shaping"] = shape_and_encode(
            texts, labels, classes, names, layers, seed,
            class_names={c: names[c] for c in classes["train"]} if align_names else None)
        return features

    return Encoded(*cached(key, compute)), seconds.get("shaping")


def protocol_count(protocol: str, five_way: int, all_way: int) -> int:
    """How many episodes of ``protocol`` to draw: all-way episodes are larger, so fewer of them."""
    return five_way if protocol.startswith("5way") else all_way


def episode_counts(protocol: str, args) -> tuple[int, int]:
    """(validation, test) episodes of a protocol."""
    return (protocol_count(protocol, args.val_episodes, args.allway_val_episodes),
            protocol_count(protocol, args.test_episodes, args.allway_test_episodes))


def meta_train(shaped, labels, classes, k: int, seed: int, steps: int, val_episodes: int, ways=(5, 5), pools=None,
               **config) -> tuple[object, dict]:
    """SIB with the library's defaults and ``config`` (e.g. ``grad_net="equivariant"``) meta-trained ``steps`` steps
    of 32 episodes on the meta-training classes (``ways`` and ``pools`` as `training_episodes`), kept at its best
    step on 5-way even meta-validation episodes; and {"seconds", "best_step"}."""
    train = training_episodes(shaped, labels, classes["train"], k, seed, steps * 32, ways=ways, pools=pools)
    val = episodes(shaped, labels, classes["validation"], "5way_even", k, 1000 + seed, val_episodes)
    start = time.perf_counter()
    model, _, best_step = train_sib("sequence", train, val, steps, 32, SIB_DEFAULTS.inner_lr,
                                    SIB_DEFAULTS.learn_inner_lr, seed, **config)
    return model, {"seconds": time.perf_counter() - start, "best_step": best_step}


def sib_accuracies(model, shaped, labels, classes, k: int, seed: int, five_way: int, all_way: int) -> dict:
    """SIB's accuracy (%) with K steps and with K = 0 per protocol, on ``five_way`` / ``all_way`` episodes of
    ``classes`` drawn with ``seed``."""
    out = {}
    for protocol in PROTOCOLS:
        got = score(model, episodes(shaped, labels, classes, protocol, k, seed,
                                    protocol_count(protocol, five_way, all_way)), "sequence")
        out[protocol] = {"sib_k3": 100 * summary(got["sib_k3"], "sequence"),
                         "sib_k0": 100 * summary(got["sib_k0"], "sequence")}
    return out


def logreg_scores(test, c: float) -> torch.Tensor:
    """Per-episode accuracy of logistic regression fitted on each episode's L2-normalised support features."""
    from sklearn.linear_model import LogisticRegression

    accuracy = []
    for i in range(len(test)):
        ep = test[i]
        fit = LogisticRegression(C=c, max_iter=1000).fit(F.normalize(ep["support_features"], dim=-1).numpy(),
                                                          ep["support_labels"].numpy())
        predicted = fit.predict(F.normalize(ep["query_features"], dim=-1).numpy())
        accuracy.append(float(np.mean(predicted == ep["query_labels"].numpy())))
    return torch.tensor(accuracy)


def setfit_scores(dataset, texts, sampler: EpisodeSampler, count: int, seed: int) -> tuple[torch.Tensor, float]:
    """SetFit's accuracy on the first ``count`` episodes of ``sampler`` (a fresh MiniLM fine-tuned per task), and its
    mean seconds per task (training and prediction). It does not depend on shaping or SIB, so it is kept per
    episode draw (benchmarks/.cache/fewshot_intents/setfit_*.json) and shared by every rerun."""
    got = cached_json(f"fewshot_intents/setfit_{dataset}_{sampler.k_shot}shot_{sampler.n_way}way_"
                      f"{'natural' if sampler.natural_queries else 'even'}_s{seed}_n{count}",
                      lambda: _fit_setfit(texts, sampler, count, seed))
    return torch.tensor(got["accuracy"]), got["seconds_per_task"]


def _fit_setfit(texts, sampler: EpisodeSampler, count: int, seed: int) -> dict:
    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments

    accuracy, seconds = [], []
    for i in range(count):
        ep = sampler(i)
        start = time.perf_counter()
        model = SetFitModel.from_pretrained(minilm())
        with tempfile.TemporaryDirectory() as out:
            args = TrainingArguments(output_dir=out, batch_size=16, num_epochs=1, num_iterations=20, seed=seed,
                                     show_progress_bar=False, save_strategy="no", report_to="none")
            train = Dataset.from_dict({"text": [texts[j] for j in ep.support], "label": list(map(int, ep.support_labels))})
            Trainer(model=model, args=args, train_dataset=train).train()
        predicted = model.predict([texts[j] for j in ep.query], as_numpy=True)
        seconds.append(time.perf_counter() - start)
        accuracy.append(float(np.mean(predicted == np.asarray(ep.query_labels))))
    return {"accuracy": accuracy, "seconds_per_task": float(np.mean(seconds))}


def soft_kmeans_scored(model, features, labels, classes, protocol, k, seed, args,
                       with_names: bool = False) -> tuple[dict, object, object]:
    """``score``'s per-episode accuracies on the test episodes of ``protocol`` over ``features``, with soft
    k-means' temperature and iterations chosen on its meta-validation episodes; and those validation and test
    episodes. ``with_names``: also soft k-means given the label names, its own setting chosen in the same sweep."""
    val_count, count = episode_counts(protocol, args)
    val = episodes(features, labels, classes["validation"], protocol, k, 1000 + seed, val_count)
    test = episodes(features, labels, classes["test"], protocol, k, 2000 + seed, count)
    sweep = soft_kmeans_sweep(model, val, "sequence")
    got = score(model, test, "sequence", skm=best_soft_kmeans(sweep))
    if with_names:
        got["soft_kmeans_names"] = score(model, test, "sequence", skm=best_soft_kmeans(
            sweep, "soft_kmeans_names"))["soft_kmeans_names"]
    return got, val, test


def frozen_scores(dataset, model, frozen, labels, classes, protocol, k, seed, args) -> dict[str, torch.Tensor]:
    """Per-episode accuracy of the methods on frozen features (prototypes, soft k-means, logistic regression) on
    the test episodes of ``protocol``. Nothing here depends on shaping or SIB, so it is kept once per episode draw
    (benchmarks/.cache/fewshot_intents/frozen_*.json) and shared by every rerun."""

    def compute() -> dict[str, list[float]]:
        got, val, test = soft_kmeans_scored(model, frozen, labels, classes, protocol, k, seed, args, with_names=True)
        best_c = max(LOGREG_C, key=lambda c: float(logreg_scores(val, c).mean()))
        return {"proto_frozen": got["proto"].tolist(), "soft_kmeans_frozen": got["soft_kmeans"].tolist(),
                "soft_kmeans_frozen_names": got["soft_kmeans_names"].tolist(),
                "logreg_frozen": logreg_scores(test, best_c).tolist()}

    val_count, count = episode_counts(protocol, args)
    kept = cached_json(f"fewshot_intents/frozen_{dataset}_{k}shot_{protocol}_s{seed}_v{val_count}_t{count}_names", compute)
    return {name: torch.tensor(values) for name, values in kept.items()}


def protocol_scores(dataset, model, frozen, shaped, labels, classes, protocol, k, seed, args) -> dict[str, torch.Tensor]:
    """Every method's per-episode accuracy on the test episodes of ``protocol`` (the same episodes for all)."""
    got, _, _ = soft_kmeans_scored(model, shaped, labels, classes, protocol, k, seed, args)
    return {**frozen_scores(dataset, model, frozen, labels, classes, protocol, k, seed, args),
            "proto_shaped": got["proto"], "soft_kmeans_shaped": got["soft_kmeans"], "sib_k0": got["sib_k0"],
            "sib_k3": got["sib_k3"], "sib": got.get("sib", got["sib_k3"])}  # no size limit: the default is K steps


def train_candidates(shaped, labels, classes, k, seed, args) -> tuple[str, object, dict]:
    """Meta-train each candidate on the shaped features; keep the one with the best mean meta-validation accuracy
    over the protocols."""
    chosen, report = None, {}
    for name, (config, ways) in CANDIDATES.items():
        if name not in args.candidates:
            continue
        model, trained = meta_train(shaped, labels, classes, k, seed, args.steps, args.val_episodes,
                                    ways=ways or (5, 5), **config)
        served = [p for p in PROTOCOLS if model.config.any_number_of_classes or PROTOCOLS[p][0] == 5]
        val_scores = {protocol: summary(score(model, episodes(
            shaped, labels, classes["validation"], protocol, k, 1000 + seed, episode_counts(protocol, args)[0]),
            "sequence")["sib_k3"], "sequence") for protocol in served}
        report[name] = {"val": val_scores, "val_mean_5way": float(np.mean([val_scores[p] for p in served
                                                                             if p.startswith("5way")])),
                        "serves_every_protocol": len(served) == len(PROTOCOLS), "chosen_step": trained["best_step"],
                        "seconds": trained["seconds"], "learned_inner_lr": float(model.head.log_inner_lr.exp())}
        if len(served) == len(PROTOCOLS):  # a model that cannot serve all-way tasks is not a candidate
            report[name]["val_mean"] = float(np.mean(list(val_scores.values())))
            if chosen is None or report[name]["val_mean"] > report[chosen[0]]["val_mean"]:
                chosen = (name, model)
    if chosen is None:
        raise ValueError(f"None of the candidates {args.candidates} serves all-way tasks; add an equivariant one.")
    return chosen[0], chosen[1], report


def refinement_check(model, shaped, labels, classes, k, seed, args) -> dict:
    """Set the model's ``max_refined_classes`` with the library's `check_refinement`, as `SemiSupervisedMetaTrainer`
    does after training: the refinement's gain over its K = 0 start (with its paired 95% CI) on meta-validation
    tasks of 5, 10, 20, ... and every validation class (natural pools), turned into a size limit."""
    base = episodes(shaped, labels, classes["validation"], "5way_natural", k, 3000 + seed, 1)  # re-sampled per size
    gains = check_refinement(model, base, labels, classes["validation"], k, N_QUERY, 3000 + seed,
                             args.refinement_check_episodes, batch_size=32)
    return {"gains": gains, "max_refined_classes": model.config.max_refined_classes}


def setfit_counts(seed: int, args) -> tuple[int, int]:
    """SetFit's (5-way, all-way) test episodes for ``seed``: none outside ``--setfit_seeds``."""
    if args.setfit_seeds is not None and seed not in args.setfit_seeds:
        return 0, 0
    return args.setfit_5way, args.setfit_allway


def run_one(dataset, texts, labels, classes, names, frozen, k, seed, args) -> dict:
    shaped, shaping_seconds = shaped_features(dataset, texts, labels, classes, names, args.layers, seed,
                                              args.shape_names == "aligned")
    chosen, model, candidates = train_candidates(shaped, labels, classes, k, seed, args)
    record = {"seed": seed, "shaping_seconds": shaping_seconds, "chosen": chosen, "candidates": candidates,
              "refinement_check": refinement_check(model, shaped, labels, classes, k, seed, args)}
    for protocol in PROTOCOLS:
        scores = protocol_scores(dataset, model, frozen, shaped, labels, classes, protocol, k, seed, args)
        record[protocol] = {**per_method(scores), "paired": per_method({
            "sib-soft_kmeans_frozen": scores["sib"] - scores["soft_kmeans_frozen"],
            "sib_k3-sib_k0": scores["sib_k3"] - scores["sib_k0"]})}
        five_way, all_way = setfit_counts(seed, args)
        setfit_count = five_way if protocol == "5way_even" else all_way if protocol == "allway_natural" else 0
        if setfit_count:
            test = protocol_sampler(labels, classes["test"], protocol, k, 2000 + seed)
            accuracy, seconds = setfit_scores(dataset, texts, test, setfit_count, seed)
            record[protocol]["setfit"] = {"episodes": setfit_count, "seconds_per_task": seconds,
                                          **per_method({"setfit": accuracy, **{m: scores[m][:setfit_count]
                                                                              for m in ("sib", "soft_kmeans_frozen")}})}
    return record


def refinement_limit(record: dict) -> str:
    limit = record["refinement_check"]["max_refined_classes"]
    return "any number of" if limit is None else str(limit)


def mean_over_seeds(per_seed, protocol, method) -> float:
    return 100 * float(np.mean([s[protocol][method]["mean"] for s in per_seed]))


def run(args) -> tuple[dict, list, list]:
    tokenizer = AutoTokenizer.from_pretrained(minilm())
    results, targets = {}, []
    rows = ["| dataset | shots | protocol | " + " | ".join(METHODS) + " | SIB − soft k-means frozen | SIB K − K=0 |",
            "|---|---|---|" + "---|" * (len(METHODS) + 2)]
    setfit_rows = ["| dataset | shots | protocol | seeds | episodes per seed | SetFit | SIB | soft k-means frozen | "
                   "SetFit s/task |", "|---|---|---|---|---|---|---|---|---|"]
    for dataset in args.datasets:
        texts, labels, classes, names = task(dataset)
        frozen = frozen_features(dataset, texts, names, tokenizer)
        for k in args.shots:
            per_seed = []
            for seed in args.seeds:
                key = (f"fewshot_intents/{dataset}_{k}shot_s{seed}_l{args.layers}_e{SHAPING['shape_epochs']}_"
                       f"lr{SHAPING['shape_learning_rate']}_steps{args.steps}_{'-'.join(args.candidates)}_"
                       f"pools-u{TRAIN_POOLS['uneven']}-n{TRAIN_POOLS['natural']}_"
                       f"t{args.test_episodes}-{args.allway_test_episodes}_rc{args.refinement_check_episodes}_"
                       f"sf{'-'.join(map(str, setfit_counts(seed, args)))}"
                       f"{'_names-aligned' if args.shape_names == 'aligned' else ''}")
                per_seed.append(cached_json(key, lambda seed=seed: run_one(dataset, texts, labels, classes, names,
                                                                           frozen, k, seed, args)))
            results[f"{dataset}_{k}shot"] = per_seed
            for protocol in PROTOCOLS:
                mean = {m: mean_over_seeds(per_seed, protocol, m) for m in METHODS}
                gap, refinement = mean["sib"] - mean["soft_kmeans_frozen"], mean["sib_k3"] - mean["sib_k0"]
                rows.append(f"| {dataset} | {k} | {protocol} | " + " | ".join(f"{mean[m]:.2f}" for m in METHODS)
                            + f" | {gap:+.2f} | {refinement:+.2f} |")
                if protocol in ("5way_even", "5way_uneven"):
                    targets.append(target(f"{dataset} 5-way {k}-shot, {protocol[5:]} queries: SIB − soft k-means on "
                                          "frozen features (points)", gap, 2.0 if k == 1 else 1.0, ">="))
                if protocol == "allway_natural":
                    targets.append(target(f"{dataset} all-way {k}-shot, natural queries: SIB − soft k-means on "
                                          "frozen features (points)", gap, 3.0, ">="))
                if k == 1 and protocol in ("5way_even", "5way_uneven"):
                    targets.append(target(f"{dataset} 5-way 1-shot, {protocol[5:]} queries: SIB K − its K=0 start "
                                          "(points)", refinement, 0.5, ">="))
                fitted = [s for s in per_seed if "setfit" in s[protocol]]
                if fitted:
                    fit = {m: 100 * float(np.mean([s[protocol]["setfit"][m]["mean"] for s in fitted]))
                           for m in ("setfit", "sib", "soft_kmeans_frozen")}
                    seconds = float(np.mean([s[protocol]["setfit"]["seconds_per_task"] for s in fitted]))
                    count = fitted[0][protocol]["setfit"]["episodes"]
                    setfit_rows.append(f"| {dataset} | {k} | {protocol} | {[s['seed'] for s in fitted]} | {count} | "
                                       f"{fit['setfit']:.2f} | "
                                       f"{fit['sib']:.2f} | {fit['soft_kmeans_frozen']:.2f} | {seconds:.1f} |")
                    if protocol == "allway_natural":
                        targets.append(target(f"{dataset} all-way {k}-shot: SIB − SetFit on the same {count} "
                                              "episodes per seed (points)", fit["sib"] - fit["setfit"], 0.0, ">="))
            minutes = [(s["shaping_seconds"] + s["candidates"][s["chosen"]]["seconds"]) / 60 for s in per_seed
                       if s["shaping_seconds"] is not None]
            if minutes:
                targets.append(target(f"{dataset} {k}-shot: meta-training minutes of the chosen model, shaping "
                                      "included", max(minutes), 30, "<="))
            rows.append(f"| {dataset} | {k} | chosen on meta-validation | "
                        + ", ".join(f"seed {s['seed']}: {s['chosen']}, refines up to "
                                    f"{refinement_limit(s)} labels"
                                    for s in per_seed) + " |" + " |" * (len(METHODS) + 1))
    header = (f"Accuracy %, mean over seeds {args.seeds} of each seed's mean over paired test episodes "
              f"({args.test_episodes} per 5-way protocol, {args.allway_test_episodes} all-way; per-seed 95% CIs and "
              "paired differences in the JSON). Shaping: MiniLM's top "
              f"{args.layers} layers, {SHAPING['shape_epochs']} epochs at {SHAPING['shape_learning_rate']} on the "
              f"meta-training classes{', their label names aligned with their examples' if args.shape_names == 'aligned' else ''}. SIB: the candidate ({', '.join(args.candidates)}) with the best mean "
              f"meta-validation accuracy over the protocols, each meta-trained {args.steps} steps of 32 episodes "
              f"({TRAIN_POOLS['uneven']:.0%} with uneven query sets, {TRAIN_POOLS['natural']:.0%} with natural pools, "
              "as `MetaTrainingArguments` trains by default) and kept at its best 5-way meta-validation step. `sib_k3`: its K = 3 refinement "
              "on every task; `sib`: what the model answers by default, K steps only for tasks of up to "
              "`max_refined_classes` labels, set as `SemiSupervisedMetaTrainer` sets it (below the first size where the "
              f"refinement's paired 95% CI against K = 0 lies below 0, on {args.refinement_check_episodes} "
              "meta-validation tasks each of 5, 10, 20, ... and every validation class, natural pools; gains and "
              "limits per seed in the JSON). Soft k-means' temperature and "
              "iterations and logistic regression's C are chosen on meta-validation per feature kind and protocol.\n")
    setfit_header = ("\nSetFit (setfit 1.x, the same MiniLM fine-tuned per task: 20 pair iterations, 1 epoch, batch "
                     "16, logistic-regression head) on the first test episodes of a protocol; SIB and soft k-means on "
                     "exactly those episodes beside it.\n")
    return results, targets, [header, *rows, setfit_header, *setfit_rows]


def arguments() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["clinc150", "banking77"])
    parser.add_argument("--shots", nargs="+", type=int, default=[1, 5])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--candidates", nargs="+", default=list(CANDIDATES), choices=list(CANDIDATES))
    parser.add_argument("--layers", type=int, default=2, help="top encoder layers shaped")
    parser.add_argument("--shape_names", choices=("aligned", "off"), default="aligned",
                        help="shape with the meta-training classes' label names as well (as the trainer shapes a "
                             "model that reads names; chosen by benchmarks/shaping_names.py) or without")
    parser.add_argument("--steps", type=int, default=3000,
                        help="SIB meta-training steps (32 episodes each): examples/meta.py's default, chosen by "
                             "benchmarks/meta_budget.py")
    parser.add_argument("--val_episodes", type=int, default=600)
    parser.add_argument("--refinement_check_episodes", type=int,
                        default=MetaTrainingArguments.__dataclass_fields__["refinement_check_episodes"].default,
                        help="meta-validation tasks per size on which the refinement is checked")
    parser.add_argument("--allway_val_episodes", type=int, default=100)
    parser.add_argument("--test_episodes", type=int, default=2000)
    parser.add_argument("--allway_test_episodes", type=int, default=300)
    parser.add_argument("--setfit_5way", type=int, default=10, help="5-way even test episodes SetFit trains on")
    parser.add_argument("--setfit_allway", type=int, default=2, help="all-way test episodes SetFit trains on")
    parser.add_argument("--setfit_seeds", type=int, nargs="+", default=None,
                        help="Seeds SetFit runs on (default: all); it costs minutes per task.")
    parser.add_argument("--results_name", default="fewshot_intents",
                        help="results/<name>.json and .md (a partial run kept apart from the full table).")
    return parser


def main():
    args = arguments().parse_args()
    results, targets, table = run(args)
    write_results(args.results_name, {"settings": vars(args), "targets": targets, "results": results}, "\n".join(table))


if __name__ == "__main__":
    main()
