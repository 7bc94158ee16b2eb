"""Word-level tags → subword labels (`datasets.map(batched=True)`), and back."""

from __future__ import annotations

IGNORE_INDEX = -100


def align_word_labels(word_ids: list[int | None], word_labels: list[int]) -> list[int]:
    """Label the first subword of each word; later subwords and special tokens get ``-100``."""
    labels, previous = [], None
    for word_id in word_ids:
        if word_id is None or word_id == previous:
            labels.append(IGNORE_INDEX)
        else:
            labels.append(word_labels[word_id])
        previous = word_id
    return labels


def tokenize_and_align_labels(batch: dict, tokenizer, label_column: str = "ner_tags", max_length: int | None = None):
    """For ``dataset.map(tokenize_and_align_labels, batched=True, fn_kwargs={"tokenizer": tok})``."""
    encoded = tokenizer(batch["tokens"], is_split_into_words=True, truncation=max_length is not None,
                        max_length=max_length)
    encoded["labels"] = [
        align_word_labels(encoded.word_ids(i), tags) for i, tags in enumerate(batch[label_column])
    ]
    return encoded


def word_predictions(token_predictions: list[int], token_labels: list[int]) -> list[int]:
    """Predictions at the positions that carry a word label (first subwords)."""
    return [p for p, label in zip(token_predictions, token_labels) if label != IGNORE_INDEX]
