"""Reading the lines of a user's text file with errors that name the file and the line."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from ..validation import (
    SAMPLE_LIMIT,
    check_distinct_columns,
    check_number,
    refuse_conll_columns,
    refuse_one_word_lines,
)

ARCHIVE_MAGIC = {b"\x1f\x8b": "gzip", b"PK": "zip", b"BZ": "bzip2", b"\xfd7": "xz"}  # a file's first two bytes


def numbered_lines(path: str | os.PathLike) -> Iterator[tuple[int, str]]:
    """``(line number, line)`` of a UTF-8 file; a byte-order mark is dropped (it would glue onto the first
    token, turning ``-DOCSTART-`` into a word)."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path} is a folder; pass the path of a file inside it.")
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; check the path (relative paths start at {Path.cwd()}).")
    with open(path, "rb") as handle:
        for line_no, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8-sig" if line_no == 1 else "utf-8")
            except UnicodeDecodeError as err:
                if line_no == 1 and raw[:2] in ARCHIVE_MAGIC:
                    raise ValueError(f"{path} is a {ARCHIVE_MAGIC[raw[:2]]} archive, not text; unpack it first and "
                                     "pass the text file inside.") from None
                # A UTF-16 file opens with its byte-order mark; anything else is most often Latin-1 / Windows-1252.
                source = "utf-16" if line_no == 1 and raw[:2] in (b"\xff\xfe", b"\xfe\xff") else "latin1"
                raise ValueError(
                    f"{path}:{line_no}: byte {err.start} is not valid UTF-8 ({raw[:60]!r}). Save the file as UTF-8, "
                    f"e.g. `iconv -f {source} -t utf-8 in.txt > out.txt`."
                ) from None
            yield line_no, line


def read_sentences(path: str | os.PathLike, limit: int | None = None) -> list[str]:
    """The sentences of a text file (rehearsal or unlabelled domain text), with :func:`numbered_lines`' checks; at
    most ``limit`` of them. A plain file holds one sentence per line (blank lines skipped); a ``.jsonl`` / ``.json``
    file, as `datasets` writes text, holds one object per sentence with a ``text`` (or ``tokens``, a word list)
    field; a ``.csv`` / ``.tsv`` file a ``text`` column.

    Args:
        path: a UTF-8 text file.
        limit: keep the first ``limit`` sentences (None: all). 0 or a negative number is refused: it would silently
            use nothing, or everything.
    """
    check_number("read_sentences", "limit", limit, SAMPLE_LIMIT)
    suffix, plain = Path(path).suffix.lower(), False
    if suffix in (".json", ".jsonl"):
        lines = [_record_text(path, row, record) for row, record in read_json_records(
            path, [], "write one object per sentence with a 'text' field")]
    elif suffix in (".csv", ".tsv"):
        delimiter = "\t" if suffix == ".tsv" else ","
        lines = [cells[0] for _, cells in read_csv_rows(
            path, ["text"], delimiter, "name the column of sentences 'text'",
            "name the file .tsv if it is tab-separated, .csv if comma-separated")]
    else:
        lines, plain = [line for _, line in numbered_lines(path)], True
    lines = [line.strip() for line in lines if line.strip()]
    if plain:  # one sentence per line, not one word
        refuse_one_word_lines(lines, str(path))
    if not lines:
        raise ValueError(f"{path} holds no text: pass a file with one sentence per line.")
    refuse_conll_columns(lines, str(path))
    return lines[:limit]


def _record_text(path, row: str, record: dict) -> str:
    """A JSON record's sentence: its ``text``, or its ``tokens`` joined by spaces."""
    if isinstance(record.get("text"), str):
        return record["text"]
    tokens = record.get("tokens")
    if isinstance(tokens, list) and all(isinstance(token, str) for token in tokens):
        return " ".join(tokens)
    raise ValueError(f"{path}: {row} has no 'text' string or 'tokens' list of words (it has {sorted(record)}); write "
                     "one object per sentence, e.g. {\"text\": \"John lives in Paris .\"}.")


def read_json_records(path: str | os.PathLike, columns: Sequence[str], fix: str) -> list[tuple[str, dict]]:
    """``(row name, object)`` of a JSON-lines file (one object per line) or of one JSON array of objects, every value
    as written; each object must hold ``columns`` (``fix`` says how to name others)."""
    check_distinct_columns(columns, fix)
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
        raise ValueError(f"{path} holds no rows; write one JSON object per line with {list(columns)}.")
    for row, record in records:
        if not isinstance(record, dict):
            raise ValueError(f"{path}: {row} is a {type(record).__name__}, not an object with {list(columns)}.")
        missing = [c for c in columns if c not in record]
        if missing:
            raise ValueError(f"{path}: {row} has no column(s) {missing} (it has {sorted(record)}); {fix}.")
    return records


def read_csv_rows(path: str | os.PathLike, columns: Sequence[str], delimiter: str, fix: str, delimiter_fix: str
                  ) -> list[tuple[str, list[str]]]:
    """``(row name, cells)`` of ``columns`` in a CSV/TSV file, as strings, cell for cell as written: no missing-value
    detection ("NA" stays a word) and no number parsing ("007" stays "007"), which a pandas-based reader applies.

    Args:
        fix: how the caller's user names other columns, said when a column is missing.
        delimiter_fix: how the caller's user reads the file with another delimiter, said when the header holds the
            columns at another one (a tab-separated file read as CSV).
    """
    if not isinstance(delimiter, str) or len(delimiter) != 1:
        raise ValueError(f"delimiter={delimiter!r}: a CSV delimiter is one character, e.g. ',' or a tab.")
    check_distinct_columns(columns, fix)
    lines = [line for _, line in numbered_lines(path)]  # UTF-8 checked, a byte-order mark dropped
    reader = csv.reader(lines, delimiter=delimiter)
    header = next(reader, None)
    if not header:
        raise ValueError(f"{path} is empty: write a header row (e.g. {delimiter.join(columns)}), then one row per "
                         "example.")
    missing = [c for c in columns if c not in header]
    if missing:
        text = delimiter.join(header)
        other = next((d for d in "\t;,|" if d != delimiter and all(c in text.split(d) for c in columns)), None)
        if other:
            raise ValueError(f"{path} has no column(s) {missing} at delimiter {delimiter!r}, but its header splits "
                             f"into {text.split(other)} at {other!r}: {delimiter_fix}.")
        raise ValueError(f"{path} has no column(s) {missing} (its header is {header}); {fix}.")
    rows = list(reader)
    short = next((i for i, row in enumerate(rows) if len(row) != len(header)), None)
    if short is not None:
        raise ValueError(f"{path}: row {short} has {len(rows[short])} cells but the header has {len(header)}; "
                         "quote cells that hold the delimiter.")
    if not rows:
        raise ValueError(f"{path} has a header but no rows; write one example per row.")
    index = [header.index(c) for c in columns]
    return [(f"row {i}", [row[j] for j in index]) for i, row in enumerate(rows)]
