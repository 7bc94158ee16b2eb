"""Soak: long meta-training (20,000 episodes) and a multi-epoch adapter training, watching resident memory and
throughput over time. A leak from the inner loop's graphs or the feature cache shows as memory that keeps growing;
a slowdown as throughput that decays.

    python -m benchmarks.soak
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import torch

from benchmarks.common import cached, shared_data_dir, target, write_results
from benchmarks.sib_fewshot import minilm, new_model
from hf_adapter_ext import AdapterDataCollator, NeuralAdapterConfig, add_source_logits, get_adapter_model
from hf_adapter_ext.data import load_clinc150, load_transfer_task
from hf_adapter_ext.meta import EpisodeSampler, SequenceEpisodes, collate_episodes, encode_texts


def rss_mib() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * resource.getpagesize() / 2**20


def quarters(samples: list[tuple[float, float]]) -> dict:
    """Mean (memory, rate) in the first and last quarter of the run."""
    q = max(1, len(samples) // 4)
    first, last = samples[:q], samples[-q:]
    mean = lambda xs, i: sum(x[i] for x in xs) / len(xs)  # noqa: E731
    return {"memory_first_mib": mean(first, 0), "memory_last_mib": mean(last, 0),
            "rate_first": mean(first, 1), "rate_last": mean(last, 1)}


def soak_meta(episodes_total: int, batch_size: int) -> dict:
    from transformers import AutoTokenizer

    pool, split = load_clinc150(shared_data_dir() / "clinc150")
    names = pool.features["label"].names
    model = new_model("sequence", inner_steps=3, learn_inner_lr=True, inner_lr=0.03)
    features = cached("clinc150_minilm", lambda: encode_texts(model, AutoTokenizer.from_pretrained(minilm()),
                                                               pool["text"]))
    episodes = SequenceEpisodes(features, EpisodeSampler(pool["label"], [names.index(c) for c in split["train"]],
                                                         5, 1, 15, seed=0), episodes_total)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    model.train()
    samples, window_start, done = [], time.perf_counter(), 0
    for step, start in enumerate(range(0, episodes_total, batch_size), start=1):  # first 25 steps: warm-up
        batch = collate_episodes([episodes[i] for i in range(start, min(start + batch_size, episodes_total))])
        model(**batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        done += len(batch["episode_index"])
        if step % 25 == 0:
            now = time.perf_counter()
            if step > 25:
                samples.append((rss_mib(), done / (now - window_start)))
            window_start, done = now, 0
    return {"samples": samples, **quarters(samples)}


def soak_adapter(epochs: int, sentences: int) -> dict:
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    task = load_transfer_task("LOC", shared_data_dir(), limits={"target_train": sentences})
    tokenizer = AutoTokenizer.from_pretrained(minilm())
    id2label = dict(enumerate(task.old_labels))
    source = AutoModelForTokenClassification.from_pretrained(minilm(), id2label=id2label,
                                                             label2id={v: k for k, v in id2label.items()})
    model = get_adapter_model(source, NeuralAdapterConfig(new_labels=task.new_labels, target="copy"))
    data = add_source_logits(task.encode(tokenizer, "target_train").remove_columns("word_offset"), model, tokenizer)
    collator = AdapterDataCollator(tokenizer)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-5)
    model.train()
    samples = []
    for epoch in range(epochs):
        for start in range(0, len(data), 32):
            batch = collator([data[i] for i in range(start, min(start + 32, len(data)))])
            begin = time.perf_counter()
            model(**batch).loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            if epoch > 0:  # the first epoch is warm-up: optimiser state and allocator pools appear there
                samples.append((rss_mib(), int(batch["attention_mask"].sum()) / (time.perf_counter() - begin)))
    return {"samples": samples, **quarters(samples)}


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--episodes", type=int, default=20_000)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--adapter_epochs", type=int, default=6, help="The first is warm-up, not measured.")
    parser.add_argument("--adapter_sentences", type=int, default=256)
    args = parser.parse_args()
    meta = soak_meta(args.episodes, args.batch_size)
    adapter = soak_adapter(args.adapter_epochs, args.adapter_sentences)
    rows = ["| run | memory first quarter (MiB) | memory last quarter (MiB) | rate first quarter | rate last quarter |",
            "|---|---|---|---|---|"]
    for name, r, unit in (("SIB meta-training", meta, "episodes/s"), ("adapter training", adapter, "tokens/s")):
        rows.append(f"| {name} ({unit}) | {r['memory_first_mib']:.0f} | {r['memory_last_mib']:.0f} | "
                    f"{r['rate_first']:.0f} | {r['rate_last']:.0f} |")
    targets = []
    for name, r in (("meta-training", meta), ("adapter training", adapter)):
        targets += [target(f"{name}: memory growth first → last quarter (MiB)",
                           r["memory_last_mib"] - r["memory_first_mib"], 50, "<="),
                    target(f"{name}: throughput last quarter ÷ first quarter", r["rate_last"] / r["rate_first"], 0.9,
                           ">=")]
    write_results("soak", {"settings": vars(args), "meta": meta, "adapter": adapter, "targets": targets},
                  "\n".join(rows))


if __name__ == "__main__":
    main()
