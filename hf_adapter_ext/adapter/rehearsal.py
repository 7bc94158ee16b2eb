"""Rehearsal from unlabelled text: sentences from the source's world, labelled by the frozen source.

A domain's new types can swallow the old ones (359 politicians and 14 plain persons teach "every person is a
politician"). Plain text from where the source was trained (any news text; no labels) fixes that without old
labelled data: the extended model learns to give the source's output on it while it learns the new data.
"""

from __future__ import annotations

import warnings

from datasets import Dataset, IterableDataset, concatenate_datasets

from ..data.alignment import encode_unlabelled
from ..validation import (
    check_columns,
    check_encoded_by,
    check_texts,
    check_tokenizer_matches,
    refuse_conll_columns,
)
from .model import check_extended_model
from .source_cache import SOURCE_LOGITS, add_source_logits

REHEARSAL = "rehearsal"


def sentence_words(texts, what: str = "The rehearsal text") -> list[list[str]]:
    """Word lists of unlabelled text (rehearsal or domain text, named by ``what`` in errors): from strings (split
    on whitespace), word lists, or a ``Dataset`` / streaming ``IterableDataset`` with a ``tokens`` column (word
    lists) or a ``text`` column (sentences), as ``consolidate`` takes them. All of it is read: every sentence
    becomes a training row."""
    if isinstance(texts, (Dataset, IterableDataset)):
        columns = texts.column_names or list(next(iter(texts), {}))  # a stream may not know its columns
        column = next((c for c in ("tokens", "text") if c in columns), None)
        if column is None:
            raise ValueError(f"{what} as a Dataset needs a 'tokens' column (word lists) or a 'text' column "
                             f"(sentences); it has {columns}. Pass the words, not ids: the source's tokenizer "
                             "encodes them.")
        texts = texts[column] if isinstance(texts, Dataset) else [row[column] for row in texts]
    sentences = check_texts(texts, what, allow_words=True, drop_blank=True)
    refuse_conll_columns(sentences, what)
    return [text.split() if isinstance(text, str) else text for text in sentences]


def append_rows(train_dataset: Dataset, rows: Dataset, kind: str, caller: str) -> Dataset:
    """``train_dataset`` followed by ``rows`` (unlabelled text made into training rows of ``kind`` by ``caller``),
    on the columns they share; a training-set column the new rows cannot have is refused, naming it."""
    missing = sorted(set(train_dataset.column_names) - set(rows.column_names) - {"tokens", "ner_tags", "id"})
    if missing:
        raise ValueError(f"The training set has columns {missing} that {kind} rows cannot have; remove them "
                         f"(dataset.remove_columns) before {caller}.")
    shared = [c for c in train_dataset.column_names if c in rows.column_names]
    return concatenate_datasets([train_dataset.select_columns(shared), rows.select_columns(shared)])


def warn_on_labelled_rehearsal(train_dataset: Dataset, rehearsal: Dataset) -> None:
    """Warn when rehearsal sentences are also labelled training sentences: on those words rehearsal teaches the
    source's old tags while the labels teach the new types, and the two pull against each other."""
    labelled = {tuple(ids) for ids in train_dataset["input_ids"]}
    repeated = sum(tuple(ids) in labelled for ids in rehearsal["input_ids"])
    if repeated:
        warnings.warn(f"{repeated} of the {len(rehearsal)} rehearsal sentences are also labelled training sentences. "
                      "On them rehearsal teaches the source's old tags where the labels teach the new types. "
                      "Rehearsal text should come from the source's world (news text for a CoNLL tagger), not from "
                      "the new data; pass the domain's unlabelled text as unlabelled/self-training text instead.",
                      UserWarning, stacklevel=3)


def add_rehearsal(train_dataset: Dataset, texts, model, tokenizer, max_length: int | None = None) -> Dataset:
    """``train_dataset`` (tokenized, with ``labels``) plus ``texts`` encoded with the source's ``tokenizer``,
    flagged ``rehearsal=1``, with the frozen source's scores cached on every row (run once here, not at every
    step). On rehearsal rows every token learns the source's output (its decoded path as labels, and its
    distribution by distillation, parent + subtypes together with ``label_parents``).

    All the given text is added. `ExtensionTrainer` draws ``rehearsal_ratio`` rehearsal rows per labelled row in
    each pass (:class:`RehearsalSampler`: every rehearsal sentence is used once before any is used twice); a plain
    `Trainer` shuffles all the rows together each epoch, so the ratio is then how many sentences you pass.
    """
    check_extended_model(model, "add_rehearsal")
    check_tokenizer_matches(model.source.config, tokenizer, "add_rehearsal", model.source.name_or_path)
    check_encoded_by(texts, tokenizer, "The rehearsal text")
    sentences = sentence_words(texts)
    train_dataset = check_columns(train_dataset, ["input_ids", "labels"], "add_rehearsal's train_dataset",
                                  "it mixes rehearsal text into a tokenized training set (datasets.map("
                                  "tokenize_and_align_labels, ...)); tokenize it first")
    if REHEARSAL in train_dataset.column_names:
        raise ValueError("add_rehearsal's train_dataset already holds rehearsal rows (a 'rehearsal' column): pass the "
                         "training set before add_rehearsal, with all the rehearsal text in one call.")
    check_encoded_by(train_dataset, tokenizer, "add_rehearsal's train_dataset")
    rehearsal = encode_unlabelled(sentences, tokenizer, model.config.label2id.get("O", 0), max_length,
                                  desc="Encoding rehearsal text")
    warn_on_labelled_rehearsal(train_dataset, rehearsal)
    cached = SOURCE_LOGITS in train_dataset.column_names
    if cached:  # only the new rows need the source's scores
        rehearsal = add_source_logits(rehearsal, model, tokenizer)
    train_dataset = train_dataset.add_column(REHEARSAL, [0] * len(train_dataset))
    rehearsal = rehearsal.add_column(REHEARSAL, [1] * len(rehearsal))
    mixed = append_rows(train_dataset, rehearsal, "rehearsal", "add_rehearsal")
    return mixed if cached else add_source_logits(mixed, model, tokenizer)  # one pass of the source over all rows
