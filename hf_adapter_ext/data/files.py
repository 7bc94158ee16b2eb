"""Your own NER files as one `DatasetDict`: CoNLL columns, JSON lines, or CSV, with one inferred label set."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path

from datasets import DatasetDict

from ..validation import SAMPLE_LIMIT, WrongKindError, check_number
from .conll import datasets_from_sentences, load_conll
from .text_files import read_csv_rows, read_json_records

logger = logging.getLogger(__name__)
_JSON = (".json", ".jsonl")
_CSV = (".csv", ".tsv")
_COLUMN_FIX = "name the word and tag columns with tokens_column= / tags_column= (--tokens_column, --tags_column)"


def load_ner_files(files: dict[str, str | os.PathLike], tokens_column: str = "tokens", tags_column: str = "ner_tags",
                   labels: list[str] | None = None) -> DatasetDict:
    """Read ``{"train": path, "validation": path, ...}`` into ``tokens`` + ``ner_tags`` (``ClassLabel``) columns.

    - ``.json`` / ``.jsonl``: one object per line with a word list and a tag list (tag strings; with ``labels``,
      tag ids too, as ``Dataset.to_json`` writes a ClassLabel column).
    - ``.csv`` / ``.tsv``: one sentence per row, words and tags as space-separated strings.
    - anything else: CoNLL columns (word first, tag last, a blank line between sentences).

    Tags in IOB1, IOBES or BILOU are converted to IOB2 (with a warning); IO tags are refused, since they cannot
    tell two adjacent entities of one type apart. One label set is inferred from every file together (ids agree
    across splits), unless ``labels`` is given.
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
    sentences = {split: _sentences(read(path, tokens_column, tags_column), path, kind, labels)
                 for split, path in files.items()}
    return datasets_from_sentences(sentences, files, labels)


def first_rows(data: DatasetDict, limits: dict[str, int | None]) -> DatasetDict:
    """Each split cut to its first ``limits[split]`` rows (``--max_train_samples`` and kin; None: all), as run_ner.py
    does. A limit beyond a split's size keeps all of it, and says so: a sample size the data cannot give is not that
    sample size."""
    if not isinstance(limits, Mapping):
        raise WrongKindError(f"first_rows: limits must be a dict of split -> row count (None: all), e.g. "
                             f"{{'train': 100}}; got {limits!r}.")
    for split, limit in limits.items():
        check_number("first_rows", f"limits[{split!r}]", limit, SAMPLE_LIMIT)
        if limit and split in data:
            if limit > len(data[split]):
                logger.warning("The %s limit (%d) is more than the %d sentences there: all of them are used.", split,
                               limit, len(data[split]))
            data[split] = data[split].select(range(min(limit, len(data[split]))))
    return data


def _sentences(rows: list[tuple[str, object, object]], path: Path, kind: str, labels: list[str] | None = None
               ) -> list[dict]:
    """``(row name, words, tags)`` rows as sentences; words and tags must be equally long lists of strings (or,
    given ``labels``, of ids into them)."""
    sentences = []
    for row, words, tags in rows:
        if kind == "csv":
            words, tags = words.split(), tags.split()
        if not isinstance(words, list) or not isinstance(tags, list) or len(words) != len(tags):
            raise ValueError(f"{path}: {row} has {_size(words)} words but {_size(tags)} tags; every word needs exactly "
                             "one tag.")
        if not words:
            raise ValueError(f"{path}: {row} is empty (no words); remove it, or give the sentence's words and tags.")
        if labels is not None and all(isinstance(tag, int) and not isinstance(tag, bool) for tag in tags):
            unknown = [tag for tag in tags if not 0 <= tag < len(labels)]
            if unknown:
                raise ValueError(f"{path}: {row} has the tag id {unknown[0]}, but labels has {len(labels)} names "
                                 f"(ids 0..{len(labels) - 1}); pass the names the ids were written with.")
            tags = [labels[tag] for tag in tags]
        if not all(isinstance(tag, str) for tag in tags):
            raise ValueError(f"{path}: {row} has non-string tags {tags[:5]}; write tag names ('B-PER'), or pass the "
                             "names by id as labels= (e.g. the dataset's features['ner_tags'].feature.names), so the "
                             "label set is known.")
        odd = [w for w in words if not isinstance(w, str) or not w or w != w.strip()]
        if odd:
            raise ValueError(f"{path}: {row} has the word {odd[0]!r}; words must be non-empty strings without surrounding "
                             "spaces (quote numbers: \"007\" and 1e5 would not survive as numbers).")
        sentences.append({"tokens": words, "tags": tags})
    return sentences


def _json_rows(path: Path, tokens_column: str, tags_column: str) -> list[tuple[str, object, object]]:
    return [(row, record[tokens_column], record[tags_column])
            for row, record in read_json_records(path, (tokens_column, tags_column), _COLUMN_FIX)]


def _csv_rows(path: Path, tokens_column: str, tags_column: str) -> list[tuple[str, str, str]]:
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    return [(row, cells[0], cells[1])
            for row, cells in read_csv_rows(path, (tokens_column, tags_column), delimiter, _COLUMN_FIX,
                                            "a file named .tsv is read tab-separated, any other comma-separated: "
                                            "rename it or write it with that delimiter")]


def _kind(path: Path) -> str:
    suffix = path.suffix.lower()
    return "json" if suffix in _JSON else "csv" if suffix in _CSV else "conll"


def _size(value) -> str:
    return str(len(value)) if isinstance(value, list) else f"a {type(value).__name__}"
