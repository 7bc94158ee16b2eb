"""Your own NER files as one `DatasetDict`: CoNLL columns, JSON lines, or CSV, with one inferred label set."""

from __future__ import annotations

import csv
import os
from pathlib import Path

from datasets import Dataset, DatasetDict, load_dataset

from .conll import datasets_from_sentences, load_conll

_JSON = (".json", ".jsonl")
_CSV = (".csv", ".tsv")


def load_ner_files(files: dict[str, str | os.PathLike], tokens_column: str = "tokens", tags_column: str = "ner_tags",
                   labels: list[str] | None = None) -> DatasetDict:
    """Read ``{"train": path, "validation": path, ...}`` into ``tokens`` + ``ner_tags`` (``ClassLabel``) columns.

    - ``.json`` / ``.jsonl``: one object per line with a word list and a tag list (tag strings, IOB2/IOB1).
    - ``.csv`` / ``.tsv``: one sentence per row, words and tags as space-separated strings.
    - anything else: CoNLL columns (word first, tag last, a blank line between sentences).

    One label set is inferred from every file together (ids agree across splits), unless ``labels`` is given.
    """
    files = {split: Path(path) for split, path in files.items() if path is not None}
    if not files:
        raise ValueError("No data files given: pass at least a training file.")
    for split, path in files.items():
        if not path.is_file():
            raise FileNotFoundError(f"The {split} file {path} does not exist.")
    kinds = {_kind(path) for path in files.values()}
    if len(kinds) > 1:
        raise ValueError(f"The files mix formats ({sorted(kinds)}): give every split in one format.")
    kind = kinds.pop()
    if kind == "conll":
        return load_conll(files, labels=labels)
    if kind == "csv":
        raw = {split: _csv_columns(path) for split, path in files.items()}
    else:
        raw = load_dataset(kind, data_files={split: str(path) for split, path in files.items()})
    sentences = {}
    for split, dataset in raw.items():
        missing = [c for c in (tokens_column, tags_column) if c not in dataset.column_names]
        if missing:
            raise ValueError(f"{files[split]} has no column(s) {missing} (it has {dataset.column_names}); name the "
                             "word and tag columns with tokens_column= / tags_column= (--tokens_column, --tags_column).")
        words, tags = dataset[tokens_column], dataset[tags_column]
        if kind == "csv":
            words, tags = [str(w).split() for w in words], [str(t).split() for t in tags]
        for index, (w, t) in enumerate(zip(words, tags)):
            if not isinstance(w, list) or not isinstance(t, list) or len(w) != len(t):
                raise ValueError(f"{files[split]}: row {index} has {_size(w)} words but {_size(t)} tags; every word "
                                 "needs exactly one tag.")
            if not w:
                raise ValueError(f"{files[split]}: row {index} is empty (no words); remove it, or give the "
                                 "sentence's words and tags.")
            if not all(isinstance(tag, str) for tag in t):
                raise ValueError(f"{files[split]}: row {index} has non-string tags {t[:5]}; write tag names "
                                 "('B-PER'), not ids, so the label set is known.")
        sentences[split] = [{"tokens": list(map(str, w)), "tags": list(t)} for w, t in zip(words, tags)]
    return datasets_from_sentences(sentences, files, labels)


def _csv_columns(path: Path) -> Dataset:
    """A CSV/TSV file's columns as strings, cell for cell as written: no missing-value detection ("NA" stays a
    word) and no number parsing ("007" stays "007"), which a pandas-based reader would apply."""
    delimiter = "\t" if path.suffix == ".tsv" else ","
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle, delimiter=delimiter)
        header = next(reader, None)
        if not header:
            raise ValueError(f"{path} is empty: write a header row (e.g. tokens,ner_tags), then one sentence per row.")
        rows = list(reader)
    short = next((i for i, row in enumerate(rows) if len(row) != len(header)), None)
    if short is not None:
        raise ValueError(f"{path}: row {short} has {len(rows[short])} cells but the header has {len(header)}; "
                         "quote cells that hold the delimiter.")
    return Dataset.from_dict({name: [row[i] for row in rows] for i, name in enumerate(header)})


def _kind(path: Path) -> str:
    suffix = path.suffix.lower()
    return "json" if suffix in _JSON else "csv" if suffix in _CSV else "conll"


def _size(value) -> str:
    return str(len(value)) if isinstance(value, list) else f"a {type(value).__name__}"
