"""Word-level tags → subword labels (`datasets.map(batched=True)`), long sentences in windows, and back."""

from __future__ import annotations

import numbers
import os
from collections.abc import Sequence

from datasets import Dataset
from transformers import AutoTokenizer

from ..constants import IGNORE_INDEX
from ..validation import Number, WrongKindError, check_number

# Without a real limit from the tokenizer, stay within the 512 positions of BERT-style encoders.
DEFAULT_MAX_LENGTH = 512
# Words a tokenizer is given one by one must become the subwords the same words become in running text: a byte-level
# BPE tokenizer (RoBERTa, GPT-2, DeBERTa, ModernBERT) drops the space that marks a word's start unless it was loaded
# with add_prefix_space=True, and a tagger trained on such words would later be given other subwords by the pipeline.
_PROBE_WORDS = ("John", "lives", "in", "New", "York")


def _probe_ids(tokenizer) -> tuple[list[int], list[int]]:
    """The probe words' ids passed one by one (``is_split_into_words=True``), and as running text."""
    as_words = tokenizer(list(_PROBE_WORDS), is_split_into_words=True, add_special_tokens=False)["input_ids"]
    return as_words, tokenizer(" ".join(_PROBE_WORDS), add_special_tokens=False)["input_ids"]


def tokenizes_words_as_text(tokenizer) -> bool:
    """Whether ``tokenizer`` gives words passed one by one the subwords they get in running text."""
    as_words, as_text = _probe_ids(tokenizer)
    return as_words == as_text


def check_tokenizes_words_as_text(tokenizer, where: str) -> None:
    """Refuse a tokenizer that encodes pre-split words unlike running text (`tokenizes_words_as_text`)."""
    as_words, as_text = _probe_ids(tokenizer)
    if as_words != as_text:
        words, text = tokenizer.convert_ids_to_tokens(as_words), tokenizer.convert_ids_to_tokens(as_text)
        raise ValueError(f"{where}: the tokenizer ({type(tokenizer).__name__}) encodes words given one by one unlike "
                         f"the same words in running text ({words[:6]} against {text[:6]}), so a tagger trained on "
                         "them would be given other subwords by the pipeline. A byte-level BPE tokenizer (RoBERTa, "
                         "GPT-2, DeBERTa, ModernBERT) needs add_prefix_space=True: load it as "
                         "AutoTokenizer.from_pretrained(<name>, add_prefix_space=True), as run_ner.py does.")


def word_tokenizer(name_or_path: str, **kwargs):
    """``AutoTokenizer.from_pretrained(name_or_path)``, loaded again with ``add_prefix_space=True`` where it would
    encode pre-split words unlike running text (`tokenizes_words_as_text`): what the scripts tag words with."""
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise WrongKindError(f"word_tokenizer takes the tokenizer's folder or Hub id; got {type(name_or_path).__name__} "
                             f"{name_or_path!r:.60}.")
    tokenizer = AutoTokenizer.from_pretrained(name_or_path, **kwargs)
    if not tokenizes_words_as_text(tokenizer):
        tokenizer = AutoTokenizer.from_pretrained(name_or_path, add_prefix_space=True, **kwargs)
    return tokenizer


def align_word_labels(word_ids: list[int | None], word_labels: list[int]) -> list[int]:
    """Label the first subword of each word; later subwords and special tokens get ``-100``."""
    labels, previous = [], None
    for word_id in word_ids:
        if word_id is None or word_id == previous:
            labels.append(IGNORE_INDEX)
        elif word_id >= len(word_labels):
            raise ValueError(f"align_word_labels: the tokenizer found word {word_id}, but there are only "
                             f"{len(word_labels)} word labels; give one label per word (tokens and tags equally "
                             "long, the words as a list, not one string).")
        else:
            labels.append(word_labels[word_id])
        previous = word_id
    return labels


def max_length_rule(tokenizer, optional: bool = False) -> Number:
    """The shortest ``max_length`` worth encoding with: the special tokens plus one subword. Below it a text is cut
    to its special tokens alone, and every text gets the same features."""
    return Number(int, tokenizer.num_special_tokens_to_add() + 1, optional=optional, example="512",
                  why="the special tokens plus at least one subword")


def max_length_of(tokenizer, max_length: int | None = None) -> int:
    """``max_length``, else the tokenizer's own limit (else 512). A ``max_length`` that cannot hold a single subword
    beside the special tokens is refused: it would silently fall back to the default (0) or split nothing."""
    check_number("tokenize_and_align_labels", "max_length", max_length, max_length_rule(tokenizer, optional=True))
    limit = max_length or tokenizer.model_max_length
    return limit if limit and limit < 100_000 else DEFAULT_MAX_LENGTH


def subword_counts(words: Sequence[str], tokenizer) -> list[int]:
    """How many subwords each word becomes (0 for a word the tokenizer drops: a zero-width space, a control
    character)."""
    counts = [0] * len(words)
    if words:
        for word in tokenizer(list(words), is_split_into_words=True, add_special_tokens=False).word_ids():
            if word is not None:
                counts[word] += 1
    return counts


def word_windows(words: Sequence[str], tokenizer, max_length: int, counts: Sequence[int] | None = None
                 ) -> list[tuple[int, int]]:
    """``(start, end)`` word spans, in order, whose subwords plus special tokens fit in ``max_length``.

    Sentences are split between words, never truncated; a single word too long to fit is an error. ``counts``:
    the words' `subword_counts`, when the caller has them.
    """
    if not words:
        return [(0, 0)]
    per_word = subword_counts(words, tokenizer) if counts is None else counts
    budget = max_length - tokenizer.num_special_tokens_to_add()
    windows, start, used = [], 0, 0
    for i, size in enumerate(per_word):
        if size > budget:
            raise ValueError(f"Word {i} ({words[i][:30]!r}) alone has {size} subwords, more than the {budget} that "
                             f"fit in max_length={max_length}; clean the text or raise max_length.")
        if used + size > budget:
            windows.append((start, i))
            start, used = i, 0
        used += size
    windows.append((start, len(words)))
    return windows


def visible_words(words: Sequence[str], tokenizer) -> tuple[list[str], list[int]]:
    """``words`` with each word the tokenizer drops entirely replaced by its unknown token, and the subword counts.
    A dropped word has no subword to carry its tag, so its entity would vanish from training and from the gold
    tags it is scored against; kept as the unknown token, it is tagged and scored like any word."""
    words, counts = list(words), subword_counts(words, tokenizer)
    if 0 in counts and tokenizer.unk_token is not None:
        words = [tokenizer.unk_token if count == 0 else word for word, count in zip(words, counts)]
        counts = [count or 1 for count in counts]
    return words, counts


def tokenize_and_align_labels(batch: dict, tokenizer, label_column: str = "ner_tags", max_length: int | None = None):
    """For ``dataset.map(tokenize_and_align_labels, batched=True, fn_kwargs={"tokenizer": tok})``.

    Sentences longer than ``max_length`` subwords (default: the tokenizer's limit) become several rows, one
    per window of words; ``word_offset`` (the window's first word) lets :func:`join_windows` re-join them.
    """
    if not getattr(tokenizer, "is_fast", False):  # word_ids(), which aligns the labels, exists only there
        raise WrongKindError("tokenize_and_align_labels needs the model's fast tokenizer (AutoTokenizer.from_pretrained("
                             f"<model>), which is fast by default); got {type(tokenizer).__name__}. Pass it as "
                             "fn_kwargs={'tokenizer': tokenizer}.")
    missing = [column for column in ("tokens", label_column) if column not in batch]
    if missing:
        raise ValueError(f"tokenize_and_align_labels: the rows lack {missing} (they have {sorted(batch)}). Name the "
                         "tag column with fn_kwargs={'label_column': ...}, or rename the word column to 'tokens' "
                         "(dataset.rename_column).")
    sentences, tags = batch["tokens"], batch[label_column]
    if isinstance(tags, (list, tuple)) and tags and not isinstance(tags[0], (list, tuple)) \
            and all(isinstance(word, str) for word in sentences):
        # one row's words (dataset.map without batched=True): a sentence may become several rows (windows)
        raise ValueError("tokenize_and_align_labels got one row (its 'tokens' are words, not sentences): map it "
                         "batched, dataset.map(tokenize_and_align_labels, batched=True, fn_kwargs={'tokenizer': tok}), "
                         "since a long sentence becomes several rows.")
    check_tokenizes_words_as_text(tokenizer, "tokenize_and_align_labels")
    limit = max_length_of(tokenizer, max_length)
    words_out, labels_out, offsets = [], [], []
    for words, tags in zip(batch["tokens"], batch[label_column]):
        if isinstance(words, str):
            raise ValueError(f"{'tokens'!r} holds a sentence as one string ({words[:40]!r}); it must be a list of "
                             "words, e.g. text.split().")
        if len(words) != len(tags):
            raise ValueError(f"A sentence has {len(words)} tokens but {len(tags)} tags: {' '.join(words[:10])} ...")
        named = next((tag for tag in tags if not isinstance(tag, numbers.Integral) or isinstance(tag, bool)), None)
        if named is not None:
            raise ValueError(f"{label_column!r} holds {named!r}; tokenize_and_align_labels needs label ids (ints). "
                             f"Map tag names to ids first, e.g. dataset.map(lambda row: {{{label_column!r}: "
                             f"[label2id[t] for t in row[{label_column!r}]]}}), or read the file with load_ner_files.")
        words, counts = visible_words(words, tokenizer)
        for start, end in word_windows(words, tokenizer, limit, counts):
            words_out.append(list(words[start:end]))
            labels_out.append(list(tags[start:end]))
            offsets.append(start)
    encoded = tokenizer(words_out, is_split_into_words=True)
    encoded["labels"] = [align_word_labels(encoded.word_ids(i), tags) for i, tags in enumerate(labels_out)]
    encoded["word_offset"] = offsets
    return encoded


def encode_unlabelled(sentences: Sequence[Sequence[str]], tokenizer, outside_id: int = 0,
                      max_length: int | None = None, desc: str = "Encoding text") -> Dataset:
    """Unlabelled word lists as a tokenized dataset of :func:`tokenize_and_align_labels` rows, every word labelled
    ``outside_id``: the ``labels`` mark each word's first subword, so the rows can be tagged and read back by word."""
    words = Dataset.from_dict({"tokens": [list(s) for s in sentences],
                               "ner_tags": [[outside_id] * len(s) for s in sentences]})
    return words.map(tokenize_and_align_labels, batched=True, remove_columns=words.column_names,
                     fn_kwargs={"tokenizer": tokenizer, "max_length": max_length}, desc=desc)


def join_windows(rows: Sequence[list], offsets: Sequence[int]) -> list[list]:
    """Re-join per-window word lists into sentences (a window with offset 0 starts a new sentence)."""
    sentences: list[list] = []
    for row, offset in zip(rows, offsets):
        if offset == 0 or not sentences:
            sentences.append(list(row))
        else:
            sentences[-1].extend(row)
    return sentences


def word_predictions(token_predictions: list[int], token_labels: list[int]) -> list[int]:
    """Predictions at the positions that carry a word label (first subwords)."""
    return [p for p, label in zip(token_predictions, token_labels) if label != IGNORE_INDEX]
