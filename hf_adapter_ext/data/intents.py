"""Intent-classification corpora (CLINC150, BANKING77) as `datasets.Dataset` with meta-learning class splits."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

from datasets import ClassLabel, Dataset, Features, Value

from .text_files import numbered_lines


def _dataset(texts: list[str], intents: list[str], names: list[str]) -> Dataset:
    features = Features({"text": Value("string"), "label": ClassLabel(names=names)})
    index = {name: i for i, name in enumerate(names)}
    return Dataset.from_dict({"text": texts, "label": [index[i] for i in intents]}, features=features)


def _read_json(path: Path):
    text = "".join(line for _, line in numbered_lines(path))
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}:{err.lineno}: not valid JSON ({err.msg}).") from None


def load_clinc150(data_dir: str | os.PathLike) -> tuple[Dataset, dict[str, list[str]]]:
    """All in-scope CLINC150 utterances (train+val+test) and the class split of the benchmark protocol:
    intents of the first 6 domains of ``domains.json`` → train, next 2 → validation, last 2 → test."""
    root = Path(data_dir)  # the folder holding data_full.json and domains.json
    full, domains = _read_json(root / "data_full.json"), _read_json(root / "domains.json")
    order = list(domains)
    rows = [row for split in ("train", "val", "test") for row in full[split]]
    names = [intent for domain in order for intent in domains[domain]]
    split = {
        "train": [i for d in order[:6] for i in domains[d]],
        "validation": [i for d in order[6:8] for i in domains[d]],
        "test": [i for d in order[8:10] for i in domains[d]],
    }
    return _dataset([r[0] for r in rows], [r[1] for r in rows], names), split


def load_banking77(data_dir: str | os.PathLike) -> tuple[Dataset, dict[str, list[str]]]:
    """BANKING77 train+test and the protocol's class split: intents sorted by name, 47 / 10 / 20."""
    root = Path(data_dir)  # the folder holding train.csv and test.csv
    texts, intents = [], []
    for name in ("train.csv", "test.csv"):
        lines = (line for _, line in numbered_lines(root / name))
        for row in csv.DictReader(lines):
            texts.append(row["text"])
            intents.append(row["category"])
    names = sorted(set(intents))
    split = {"train": names[:47], "validation": names[47:57], "test": names[57:]}
    return _dataset(texts, intents, names), split
