"""Your own NER files as one `DatasetDict`: CoNLL columns, JSON lines, or CSV, with one inferred label set."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

from datasets import DatasetDict

from .conll import datasets_from_sentences, load_conll
from .text_files import numbered_lines

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
    if not isinstance(files, dict):
        raise TypeError(f"files must be a dict of split -> path, e.g. {{'train': 'train.txt'}}; got "
                        f"{type(files).__name__}.")
    files = {split: Path(path) for split, path in files.items() if path is not None}
    if not files:
        raise ValueError("No data files given: pass at least a training file.")
    for split, path in files.items():
        if path.is_dir():
            raise ValueError(f"The {split} file {path} is a folder; pass the path of a file inside it.")
        if not path.is_file():
            raise FileNotFoundError(f"The {split} file {path} does not exist.")
    kinds = {_kind(path) for path in files.values()}
    if len(kinds) > 1:
        raise ValueError(f"The files mix formats ({sorted(kinds)}): give every split in one format.")
    kind = kinds.pop()
    if kind == "conll":
        return load_conll(files, labels=labels)
    read = _csv_rows if kind == "csv" else _json_rows
    sentences = {split: _sentences(read(path, tokens_column, tags_column), path, kind) for split, path in files.items()}
    return datasets_from_sentences(sentences, files, labels)


def _sentences(rows: list[tuple[str, object, object]], path: Path, kind: str) -> list[dict]:
    """``(row name, words, tags)`` rows as sentences; words and tags must be equally long lists of strings."""
    sentences = []
    for row, words, tags in rows:
        if kind == "csv":
            words, tags = words.split(), tags.split()
        if not isinstance(words, list) or not isinstance(tags, list) or len(words) != len(tags):
            raise ValueError(f"{path}: {row} has {_size(words)} words but {_size(tags)} tags; every word needs exactly "
                             "one tag.")
        if not words:
            raise ValueError(f"{path}: {row} is empty (no words); remove it, or give the sentence's words and tags.")
        if not all(isinstance(tag, str) for tag in tags):
            raise ValueError(f"{path}: {row} has non-string tags {tags[:5]}; write tag names ('B-PER'), not ids, so "
                             "the label set is known.")
        odd = next((w for w in words if not isinstance(w, str) or not w or w != w.strip()), None)
        if odd is not None:
            raise ValueError(f"{path}: {row} has the word {odd!r}; words must be non-empty strings without surrounding "
                             "spaces (quote numbers: \"007\" and 1e5 would not survive as numbers).")
        sentences.append({"tokens": words, "tags": tags})
    return sentences


def _json_rows(path: Path, tokens_column: str, tags_column: str) -> list[tuple[str, object, object]]:
    """JSON lines (one object per line), or one JSON array of objects; every value as written."""
    lines = list(numbered_lines(path))
    text = "".join(line for _, line in lines)
    if text.lstrip().startswith("["):
        try:
            records = [(f"item {i}", record) for i, record in enumerate(json.loads(text))]
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not valid JSON ({err}).") from None
    else:
        records = []
        for line_no, line in lines:
            if not line.strip():
                continue
            try:
                records.append((f"line {line_no}", json.loads(line)))
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{line_no}: not valid JSON ({err}); write one object per line.") from None
    if not records:
        raise ValueError(f"{path} holds no rows; write one JSON object per line, e.g. "
                         '{"tokens": ["John", "lives"], "ner_tags": ["B-PER", "O"]}.')
    return [_columns(path, row, record, tokens_column, tags_column) for row, record in records]


def _columns(path: Path, row: str, record, tokens_column: str, tags_column: str) -> tuple[str, object, object]:
    if not isinstance(record, dict):
        raise ValueError(f"{path}: {row} is a {type(record).__name__}, not an object with {tokens_column!r} and "
                         f"{tags_column!r}.")
    missing = [c for c in (tokens_column, tags_column) if c not in record]
    if missing:
        raise ValueError(f"{path}: {row} has no column(s) {missing} (it has {sorted(record)}); name the word and tag "
                         "columns with tokens_column= / tags_column= (--tokens_column, --tags_column).")
    return row, record[tokens_column], record[tags_column]


def _csv_rows(path: Path, tokens_column: str, tags_column: str) -> list[tuple[str, str, str]]:
    """A CSV/TSV file's word and tag cells as strings, cell for cell as written: no missing-value detection ("NA"
    stays a word) and no number parsing ("007" stays "007"), which a pandas-based reader would apply."""
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle, delimiter=delimiter)
            header = next(reader, None)
            rows = list(reader)
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: byte {err.start} is not valid UTF-8; save the file as UTF-8.") from None
    if not header:
        raise ValueError(f"{path} is empty: write a header row (e.g. tokens,ner_tags), then one sentence per row.")
    missing = [c for c in (tokens_column, tags_column) if c not in header]
    if missing:
        raise ValueError(f"{path} has no column(s) {missing} (it has {header}); name the word and tag columns with "
                         "tokens_column= / tags_column= (--tokens_column, --tags_column).")
    short = next((i for i, row in enumerate(rows) if len(row) != len(header)), None)
    if short is not None:
        raise ValueError(f"{path}: row {short} has {len(rows[short])} cells but the header has {len(header)}; "
                         "quote cells that hold the delimiter.")
    if not rows:
        raise ValueError(f"{path} has a header but no rows; write one sentence per row.")
    words, tags = header.index(tokens_column), header.index(tags_column)
    return [(f"row {i}", row[words], row[tags]) for i, row in enumerate(rows)]


def _kind(path: Path) -> str:
    suffix = path.suffix.lower()
    return "json" if suffix in _JSON else "csv" if suffix in _CSV else "conll"


def _size(value) -> str:
    return str(len(value)) if isinstance(value, list) else f"a {type(value).__name__}"
