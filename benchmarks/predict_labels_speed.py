"""Run-time cost of a new task: `SIBForFewShotClassification.predict_labels` with 50 labels x 5 examples and 1000
unlabelled queries, encoding included (MiniLM, the library's defaults), against the same texts encoded alone.

Texts are real BANKING77 utterances (the first 50 intents, 5 examples each; 1000 other utterances of those intents
as queries). The head's weights do not change the cost, so a freshly built model is timed. Median of ``--rounds``
calls after one warm-up.

    python -m benchmarks.predict_labels_speed
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from transformers import AutoTokenizer

from benchmarks.common import shared_data_dir, target, write_results
from benchmarks.sib_fewshot import minilm, new_model
from hf_adapter_ext.data import load_banking77
from hf_adapter_ext.meta import encode_texts


def timed(call, rounds: int) -> float:
    call()  # warm-up
    seconds = []
    for _ in range(rounds):
        start = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", type=int, default=50)
    parser.add_argument("--shots", type=int, default=5)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    pool, _ = load_banking77(shared_data_dir() / "banking77")
    names, texts, labels = pool.features["label"].names, pool["text"], pool["label"]
    examples, queries = {}, []
    for label in range(args.labels):
        rows = [i for i, y in enumerate(labels) if y == label]
        examples[names[label]] = [texts[i] for i in rows[: args.shots]]
        queries += [texts[i] for i in rows[args.shots :]]
    queries = queries[: args.queries]
    tokenizer = AutoTokenizer.from_pretrained(minilm())
    torch.manual_seed(0)
    model = new_model("sequence").eval()
    predict = timed(lambda: model.predict_labels(examples, queries, tokenizer), args.rounds)
    support = [text for texts_of in examples.values() for text in texts_of]
    encode = timed(lambda: encode_texts(model, tokenizer, support + queries), args.rounds)
    predictions = model.predict_labels(examples, queries, tokenizer)
    assert len(predictions) == len(queries)
    results = {"predict_labels_seconds": predict, "encoding_alone_seconds": encode, "labels": args.labels,
               "examples_per_label": args.shots, "queries": len(queries), "threads": torch.get_num_threads()}
    targets = [target(f"predict_labels, {args.labels} labels x {args.shots} examples + {len(queries)} queries, "
                      "encoding included (s)", predict, 5.0, "<=")]
    table = (f"Median of {args.rounds} calls after a warm-up.\n\n| call | seconds |\n|---|---|\n"
             f"| predict_labels ({args.labels} labels x {args.shots} examples, {len(queries)} queries) | {predict:.2f} |\n"
             f"| encoding the same {len(support) + len(queries)} texts alone (encode_texts) | {encode:.2f} |")
    write_results("predict_labels_speed", {"settings": vars(args), "results": results, "targets": targets}, table)


if __name__ == "__main__":
    main()
