"""Small shared pieces for the tests: a labelled toy corpus and a tokenized batch."""

from __future__ import annotations

import socket

import torch
from datasets import Dataset

from hf_adapter_ext.data import tokenize_and_align_labels

ALL_LABELS = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-MISC", "I-MISC", "B-LOC", "I-LOC"]
TAGGED = [
    ("John Smith lives in Paris and works for Acme Corporation .",
     "B-PER I-PER O O B-LOC O O O B-ORG I-ORG O"),
    ("Mary visited London with the United Nations delegation yesterday .",
     "B-PER O B-LOC O O B-ORG I-ORG O O O"),
    ("The European Union rejected the German proposal on Monday .",
     "O B-ORG I-ORG O O B-MISC O O O O"),
    ("Peter Blackburn flew from Brussels to Washington for talks .",
     "B-PER I-PER O O B-LOC O B-LOC O O O"),
    ("Shares of International Business Machines rose in New York trading .",
     "O O B-ORG I-ORG I-ORG O O B-LOC I-LOC O O"),
]


def toy_dataset(tokenizer, repeat: int = 1, labels=ALL_LABELS, outside_types=()) -> Dataset:
    """The toy corpus, tokenized with aligned labels; ``outside_types`` are relabelled O."""
    label2id = {label: i for i, label in enumerate(labels)}
    rows = {"tokens": [], "ner_tags": []}
    for text, tags in TAGGED * repeat:
        tags = ["O" if t[2:] in outside_types else t for t in tags.split()]
        rows["tokens"].append(text.split())
        rows["ner_tags"].append([label2id[t] for t in tags])
    ds = Dataset.from_dict(rows)
    return ds.map(tokenize_and_align_labels, batched=True, fn_kwargs={"tokenizer": tokenizer},
                  remove_columns=["tokens", "ner_tags"]).remove_columns("word_offset")


def batch_of(tokenizer, dataset: Dataset, size: int | None = None) -> dict:
    from transformers import DataCollatorForTokenClassification

    rows = [dataset[i] for i in range(size or len(dataset))]
    return DataCollatorForTokenClassification(tokenizer)(rows)


def snapshot(module: torch.nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def free_port() -> int:
    """A TCP port nobody listens on now, for a distributed launch: accelerate's default (29500) can still be held
    by the previous launch's processes or by another job on the machine."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
