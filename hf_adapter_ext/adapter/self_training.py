"""Self-training on unlabelled domain text: the extended model tags plain sentences of the new domain, and the
words it is sure of join the training set as labels.

A domain seldom comes with more than a few dozen labelled sentences, but plain text of it is plentiful. After a
first training run, the model's own confident tags on that text are more examples of the new types in context;
a second run learns from both. Words below the confidence threshold keep no label (``-100``): the CRF sums over
their labels, a linear head skips them, so an unsure guess teaches nothing.
"""

from __future__ import annotations

import logging

import torch
from datasets import Dataset
from tqdm.auto import tqdm

from ..constants import IGNORE_INDEX
from ..data.alignment import encode_unlabelled
from ..modeling.outputs import label_scores
from ..validation import (
    POSITIVE_INT,
    SHARE,
    check_columns,
    check_encoded_by,
    check_number,
    check_tokenizer,
    check_tokenizer_matches,
)
from .model import NeuralAdapterModel, check_extended_model
from .rehearsal import REHEARSAL, append_rows, sentence_words
from .source_cache import SOURCE_LOGITS, AdapterDataCollator, add_source_logits

logger = logging.getLogger(__name__)

PSEUDO_LABEL_THRESHOLD = 0.9  # a word keeps the model's tag when the model gives it at least this probability


@torch.no_grad()
def pseudo_label(model: NeuralAdapterModel, texts, tokenizer, threshold: float = PSEUDO_LABEL_THRESHOLD,
                 max_length: int | None = None, batch_size: int = 32) -> Dataset:
    """``texts`` (plain domain sentences or word lists) tokenized, with ``labels`` = the model's tags where it is
    sure of them and ``-100`` elsewhere.

    Args:
        model: the extended model after a first training run.
        texts: unlabelled sentences of the target domain.
        threshold: a word is labelled when the probability of its predicted tag reaches it: the CRF's marginal of
            the Viterbi path's label (the path itself is BIO-valid), else the softmax of the logits.
        max_length: longer sentences are cut to this many subwords.
        batch_size: sentences per forward pass.
    """
    check_extended_model(model, "pseudo_label")
    check_number("pseudo_label", "threshold", threshold, SHARE)
    check_number("pseudo_label", "batch_size", batch_size, POSITIVE_INT)
    check_tokenizer_matches(model.source.config, tokenizer, "pseudo_label", model.source.name_or_path)
    check_encoded_by(texts, tokenizer, "The unlabelled domain text")
    sentences = sentence_words(texts, "The unlabelled domain text")
    encoded = encode_unlabelled(sentences, tokenizer, model.config.label2id.get("O", 0), max_length,
                                desc="Encoding unlabelled domain text")
    collator = AdapterDataCollator(tokenizer)
    was_training = model.training
    model.eval()
    labels = []
    inputs = encoded.select_columns([c for c in ("input_ids", "attention_mask", "token_type_ids", "labels")
                                     if c in encoded.column_names])
    for start in tqdm(range(0, len(encoded), batch_size), desc="Tagging unlabelled domain text", leave=False):
        rows = inputs[start: start + batch_size]
        batch = collator([dict(zip(rows, values)) for values in zip(*rows.values())])
        words = batch.pop("labels") != IGNORE_INDEX
        batch = {k: v.to(model.device) for k, v in batch.items()}
        emissions = label_scores(model(**batch)).float()
        if model.crf is not None:
            path = model.crf.decode(emissions, batch["attention_mask"]).clamp(min=0)
            probabilities = model.crf.marginals(emissions, batch["attention_mask"])
        else:
            probabilities = emissions.softmax(-1)
            path = probabilities.argmax(-1)
        sure = probabilities.gather(-1, path.unsqueeze(-1)).squeeze(-1) >= threshold
        tags = torch.where(words & sure.cpu(), path.cpu(), torch.full_like(path.cpu(), IGNORE_INDEX))
        for row, n in zip(tags, (len(ids) for ids in rows["input_ids"])):
            # the collator pads on the tokenizer's side; the row's own positions are the last n when padding left
            labels.append((row[-n:] if tokenizer.padding_side == "left" else row[:n]).tolist())
    model.train(was_training)
    return encoded.remove_columns("labels").add_column("labels", labels)


def add_pseudo_labels(train_dataset: Dataset, texts, model: NeuralAdapterModel, tokenizer,
                      threshold: float = PSEUDO_LABEL_THRESHOLD, max_length: int | None = None) -> Dataset:
    """``train_dataset`` plus the unlabelled domain ``texts`` with the model's confident tags as labels
    (:func:`pseudo_label`), ready for a second training run. They are labelled domain rows, not rehearsal: with
    ``label_parents`` and rehearsal text the old types are kept as in the first run. Rows that the model is sure of
    nowhere are dropped.

    Args:
        train_dataset: the first run's training set (tokenized; rehearsal rows and cached source scores are kept).
        texts, model, tokenizer, threshold, max_length: as in :func:`pseudo_label`.
    """
    check_tokenizer(tokenizer, "add_pseudo_labels")
    train_dataset = check_columns(train_dataset, ["input_ids", "labels"], "add_pseudo_labels' train_dataset",
                                  "it adds rows to a tokenized training set (datasets.map(tokenize_and_align_labels, "
                                  "...))")
    check_encoded_by(train_dataset, tokenizer, "add_pseudo_labels' train_dataset")
    tagged = pseudo_label(model, texts, tokenizer, threshold, max_length)
    tagged = tagged.filter(lambda row: any(label != IGNORE_INDEX for label in row["labels"]),
                           desc="Dropping sentences without a sure word")
    words = sum(label != IGNORE_INDEX for row in tagged["labels"] for label in row)
    outside = model.config.label2id.get("O", 0)
    entities = sum(label not in (IGNORE_INDEX, outside) for row in tagged["labels"] for label in row)
    logger.info("Self-training: %d unlabelled sentences give %d sure words (%d inside entities) at threshold %.2f.",
                len(tagged), words, entities, threshold)
    if not len(tagged):
        logger.warning("The model is sure of no word of the unlabelled text at threshold %.2f; the training set is "
                       "unchanged. Lower the threshold or train the first run longer.", threshold)
        return train_dataset
    if REHEARSAL in train_dataset.column_names:
        tagged = tagged.add_column(REHEARSAL, [0] * len(tagged))
    if SOURCE_LOGITS in train_dataset.column_names:
        tagged = add_source_logits(tagged, model, tokenizer)
    return append_rows(train_dataset, tagged, "pseudo-labelled", "add_pseudo_labels")
