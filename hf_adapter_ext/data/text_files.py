"""Reading the lines of a user's text file with errors that name the file and the line."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path


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
                raise ValueError(
                    f"{path}:{line_no}: byte {err.start} is not valid UTF-8 ({raw[:60]!r}). Save the file as UTF-8, "
                    "e.g. `iconv -f latin1 -t utf-8 in.txt > out.txt`."
                ) from None
            yield line_no, line


def read_sentences(path: str | os.PathLike, limit: int | None = None) -> list[str]:
    """The non-blank lines of a plain-text file (one sentence per line: rehearsal or unlabelled domain text), with
    :func:`numbered_lines`' checks; at most ``limit`` of them.

    Args:
        path: a UTF-8 text file.
        limit: keep the first ``limit`` sentences (None: all). 0 or a negative number is refused: it would silently
            use nothing, or everything.
    """
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit={limit!r}: pass a positive number of sentences, or None for all of them.")
    lines = [line.strip() for _, line in numbered_lines(path) if line.strip()]
    if not lines:
        raise ValueError(f"{path} holds no text: pass a file with one sentence per line.")
    return lines[:limit]
