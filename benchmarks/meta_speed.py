"""Meta-training speed: SIB (K = 3) episodes/s, batched vs one episode per step, vs the prototype baseline,
on cached MiniLM features and with the backbone re-encoding every episode. 5-way, 1- and 5-shot, 15 queries.

Both sides of each comparison run in this one process, alternating, after a warm-up; medians are reported.

With ``--compare_malloc`` the batched 1-shot SIB rate is also measured in fresh processes, alternating, under the
default C allocator and with glibc told to keep freed memory mapped (``TUNED_MALLOC``): the synthetic-gradient net's
[episodes, query x class pairs, hidden] tensors are about 1.5 MB each, and by default glibc hands such blocks back to
the system after every step and page-faults them in again in the next. The allocator is the process environment's,
not the library's to set.

    python -m benchmarks.meta_speed --compare_malloc
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

import torch

from benchmarks.common import alternate, cached, shared_data_dir, target, write_results
from benchmarks.sib_fewshot import minilm, new_model
from hf_adapter_ext.data import load_clinc150
from hf_adapter_ext.meta import (
    EpisodeSampler,
    SequenceEpisodes,
    TextEpisodes,
    collate_episodes,
    encode_texts,
)
from hf_adapter_ext.meta.baselines import prototype_logits


def sib_training(model, episodes, batch_size):
    """One optimiser step over ``batch_size`` episodes (sampling + collation included)."""
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    model.train()
    counter = iter(range(10**9))

    def step():
        batch = collate_episodes([episodes[next(counter) % len(episodes)] for _ in range(batch_size)])
        model(**batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        return batch_size

    return step


def prototype_eval(episodes, batch_size):
    counter = iter(range(10**9))

    @torch.no_grad()
    def step():
        batch = collate_episodes([episodes[next(counter) % len(episodes)] for _ in range(batch_size)])
        prototype_logits(batch["support_features"], batch["support_labels"], batch["query_features"], 5).argmax(-1)
        return batch_size

    return step


@torch.no_grad()
def batched_equals_single(model, episodes, batch_size=32) -> float:
    """Max |logit difference| between one batched call and one call per episode (eval mode)."""
    model.eval()
    items = [episodes[i] for i in range(batch_size)]
    batched = model(**collate_episodes(items)).logits
    single = torch.cat([model(**collate_episodes([item])).logits for item in items])
    return float((batched - single).abs().max())


# glibc settings that keep freed memory mapped instead of handing it back to the system after every step
TUNED_MALLOC = {"MALLOC_MMAP_THRESHOLD_": str(2**25), "MALLOC_TRIM_THRESHOLD_": str(2**30)}


def clinc150_training_data():
    """The tokenizer, the CLINC150 pool, its meta-training class ids and the cached MiniLM features of the pool."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(minilm())
    pool, split = load_clinc150(shared_data_dir() / "clinc150")
    names = pool.features["label"].names
    train_classes = [names.index(c) for c in split["train"]]
    encoder_model = new_model("sequence")
    features = cached("clinc150_minilm", lambda: encode_texts(encoder_model, tokenizer, pool["text"]))
    return tokenizer, pool, train_classes, features


def print_sib_rate(args) -> None:
    """One round of batched 5-way 1-shot SIB training in this process, printed as JSON (``--sib_rate_only``)."""
    _, pool, train_classes, features = clinc150_training_data()
    episodes = SequenceEpisodes(features, EpisodeSampler(pool["label"], train_classes, 5, 1, 15, seed=0), 10**6)
    torch.manual_seed(0)
    rate = alternate({"sib": sib_training(new_model("sequence", inner_steps=3), episodes, args.batch_size)},
                     args.seconds, 1)["sib"]
    print(json.dumps({"episodes_per_s": rate}))


def malloc_rates(args) -> dict[str, float]:
    """Median batched 1-shot SIB rate in fresh processes under the default allocator settings and `TUNED_MALLOC`,
    alternating, ``args.rounds`` each."""
    rates: dict[str, list[float]] = {"default": [], "tuned": []}
    for _ in range(args.rounds):
        for name, extra in (("default", {}), ("tuned", TUNED_MALLOC)):
            out = subprocess.run([sys.executable, "-m", "benchmarks.meta_speed", "--sib_rate_only", "--seconds",
                                  str(args.seconds), "--batch_size", str(args.batch_size)],
                                 env={**os.environ, **extra}, capture_output=True, text=True, check=True)
            rates[name].append(json.loads(out.stdout.strip().splitlines()[-1])["episodes_per_s"])
    return {name: statistics.median(values) for name, values in rates.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--compare_malloc", action="store_true", help="also measure with TUNED_MALLOC (subprocesses)")
    parser.add_argument("--sib_rate_only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sib_rate_only:
        return print_sib_rate(args)
    tokenizer, pool, train_classes, features = clinc150_training_data()
    results, targets, rows = {}, [], []
    for k in (1, 5):
        sampler = EpisodeSampler(pool["label"], train_classes, 5, k, 15, seed=0)
        episodes = SequenceEpisodes(features, sampler, 10**6)
        torch.manual_seed(0)
        batched_model, single_model = new_model("sequence", inner_steps=3), new_model("sequence", inner_steps=3)
        contenders = {
            "sib_batched": sib_training(batched_model, episodes, args.batch_size),
            "sib_one_per_step": sib_training(single_model, episodes, 1),
            "prototype": prototype_eval(episodes, args.batch_size),
        }
        rates = alternate(contenders, args.seconds, args.rounds)
        # Re-encoding every episode with the backbone (no feature cache): far fewer episodes per second.
        text_model = new_model("sequence", inner_steps=3)
        text_episodes = TextEpisodes(pool["text"], tokenizer, sampler, 10**6, max_length=32)
        rates.update(alternate({"sib_reencoding_backbone": sib_training(text_model, text_episodes, 4)},
                               args.seconds, 1))
        difference = batched_equals_single(batched_model, episodes)
        results[f"{k}shot"] = {"episodes_per_s": rates, "batched_vs_single_max_abs_logit_diff": difference}
        ratio = rates["sib_batched"] / rates["sib_one_per_step"]
        rows.append(f"| {k} | {rates['sib_batched']:.0f} | {rates['sib_one_per_step']:.0f} | {ratio:.1f}x | "
                    f"{rates['prototype']:.0f} | {rates['sib_reencoding_backbone']:.1f} | {difference:.1e} |")
        if k == 1:
            targets += [target("SIB K=3 5-way 1-shot batched training, episodes/s", rates["sib_batched"], 1000, ">="),
                        target("batched / one-episode-per-step speed ratio", ratio, 3, ">=")]
    width = batched_model.head.grad_net.output_layer.in_features
    table = (f"Episodes per second (median of {args.rounds} alternating rounds of {args.seconds}s; batch of "
             f"{args.batch_size} episodes; SIB training = sampling + forward + backward + Adam). SIB with the "
             f"library's defaults: the equivariant synthetic-gradient net, hidden width {width}.\n\n"
             "| shots | SIB K=3 batched | SIB K=3 one episode/step | ratio | prototype (eval) | SIB re-encoding backbone "
             "| batched vs single max abs logit diff |\n|---|---|---|---|---|---|---|\n" + "\n".join(rows))
    if args.compare_malloc:
        results["malloc"] = {"settings": TUNED_MALLOC, "episodes_per_s": malloc_rates(args)}
        default, tuned = results["malloc"]["episodes_per_s"].values()
        table += ("\n\nThe same batched 5-way 1-shot SIB training in fresh processes, alternating (median of "
                  f"{args.rounds} rounds), under glibc's default allocator settings and with "
                  + " ".join(f"`{k}={v}`" for k, v in TUNED_MALLOC.items())
                  + " (freed memory kept mapped, not page-faulted back every step):\n\n| allocator | episodes/s | ratio |"
                  f"\n|---|---|---|\n| default | {default:.0f} | 1.00x |\n| tuned | {tuned:.0f} | {tuned / default:.2f}x |")
    write_results("meta_speed", {"settings": vars(args), "grad_net_hidden_width": width, "results": results,
                                 "targets": targets}, table)


if __name__ == "__main__":
    main()
