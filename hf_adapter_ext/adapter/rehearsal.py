"""Rehearsal from unlabelled text: sentences from the source's world, labelled by the frozen source.

A domain's new types can swallow the old ones (359 politicians and 14 plain persons teach "every person is a
politician"). Plain text from where the source was trained (any news text; no labels) fixes that without old
labelled data: the extended model learns to give the source's output on it while it learns the new data.
"""

from __future__ import annotations

from collections.abc import Sequence

from datasets import Dataset, concatenate_datasets

from ..data.alignment import tokenize_and_align_labels
from .model import NeuralAdapterModel
from .source_cache import SOURCE_LOGITS, add_source_logits

REHEARSAL = "rehearsal"
_CHECKED_ROWS = 8


def rehearsal_sentences(texts) -> list[list[str]]:
    """Word lists from strings (split on whitespace), word lists, or a ``Dataset`` with a ``tokens`` column."""
    if isinstance(texts, Dataset):
        if "tokens" not in texts.column_names:
            raise ValueError(f"Rehearsal text as a Dataset needs a 'tokens' column (word lists); it has "
                             f"{texts.column_names}. Pass the words, not ids: the source's tokenizer encodes them.")
        texts = texts["tokens"]
    if isinstance(texts, str) or not isinstance(texts, Sequence):
        raise TypeError(f"Rehearsal text must be a list of sentences (strings or word lists); got "
                        f"{type(texts).__name__}.")
    odd = next((i for i, text in enumerate(texts) if not isinstance(text, (str, list, tuple))), None)
    if odd is not None:
        raise TypeError(f"Rehearsal sentence {odd} is a {type(texts[odd]).__name__} ({texts[odd]!r:.60}); each sentence "
                        "must be a string or a list of word strings.")
    sentences = [text.split() if isinstance(text, str) else list(text) for text in texts]
    sentences = [words for words in sentences if words]
    if not sentences:
        raise ValueError("The rehearsal text is empty (no sentence has a word). Pass plain sentences from the "
                         "source's world, e.g. news text, or leave rehearsal out.")
    if not all(isinstance(word, str) for words in sentences for word in words):
        raise TypeError("Rehearsal sentences must be strings or lists of word strings, not token ids; the source's "
                        "tokenizer encodes them here.")
    return sentences


def check_same_tokenizer(texts, tokenizer) -> None:
    """A Dataset that already carries ``input_ids`` must have been encoded by ``tokenizer``: ids from another
    vocabulary would be read as different words, silently."""
    if not isinstance(texts, Dataset) or "input_ids" not in texts.column_names:
        return
    rows = texts.select(range(min(_CHECKED_ROWS, len(texts))))
    for row in rows:
        if "word_offset" in row and row["word_offset"]:
            continue  # a later window of a long sentence: its words start mid-sentence
        expected = tokenizer(row["tokens"], is_split_into_words=True)["input_ids"]
        if row["input_ids"] != expected:
            raise ValueError(
                "The rehearsal text's input_ids were not made by this source's tokenizer (re-encoding its tokens "
                f"gives {expected[:8]}..., the dataset holds {row['input_ids'][:8]}...). Pass the words (a 'tokens' "
                "column or plain sentences) and let add_rehearsal encode them with the source's tokenizer."
            )


def add_rehearsal(train_dataset: Dataset, texts, model, tokenizer, max_length: int | None = None) -> Dataset:
    """``train_dataset`` (tokenized, with ``labels``) plus ``texts`` encoded with the source's ``tokenizer``,
    flagged ``rehearsal=1``, with the frozen source's scores cached on every row (run once here, not at every
    step). On rehearsal rows every token learns the source's output (its decoded path as labels, and its
    distribution by distillation, parent + subtypes together with ``label_parents``).

    All the given text is mixed in: the ratio of rehearsal to new data is how many sentences you pass. Trainer
    shuffles the rows together each epoch.
    """
    if not isinstance(model, NeuralAdapterModel):
        raise TypeError(f"add_rehearsal needs the extended model (get_adapter_model(...)), got {type(model).__name__}.")
    check_same_tokenizer(texts, tokenizer)
    sentences = rehearsal_sentences(texts)
    if "labels" not in train_dataset.column_names or "input_ids" not in train_dataset.column_names:
        raise ValueError("add_rehearsal mixes rehearsal text into a tokenized training set with 'input_ids' and "
                         "'labels' (datasets.map(tokenize_and_align_labels, ...)); tokenize it first.")
    outside = model.config.label2id.get("O", 0)
    words = Dataset.from_dict({"tokens": sentences, "ner_tags": [[outside] * len(s) for s in sentences]})
    rehearsal = words.map(tokenize_and_align_labels, batched=True, remove_columns=words.column_names,
                          fn_kwargs={"tokenizer": tokenizer, "max_length": max_length}, desc="Encoding rehearsal text")
    cached = SOURCE_LOGITS in train_dataset.column_names
    if cached:  # only the new rows need the source's scores
        rehearsal = add_source_logits(rehearsal, model, tokenizer)
    train_dataset = train_dataset.add_column(REHEARSAL, [0] * len(train_dataset))
    rehearsal = rehearsal.add_column(REHEARSAL, [1] * len(rehearsal))
    shared = [c for c in train_dataset.column_names if c in rehearsal.column_names]
    missing = sorted(set(train_dataset.column_names) - set(shared) - {"tokens", "ner_tags", "id"})
    if missing:
        raise ValueError(f"The training set has columns {missing} that rehearsal rows cannot have; remove them "
                         "(dataset.remove_columns) before add_rehearsal.")
    mixed = concatenate_datasets([train_dataset.select_columns(shared), rehearsal.select_columns(shared)])
    return mixed if cached else add_source_logits(mixed, model, tokenizer)  # one pass of the source over all rows
