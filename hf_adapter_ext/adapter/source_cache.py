"""Precompute the frozen source's scores once (a `datasets.map` column) and pad them in the collator."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from datasets import Array2D, Dataset
from transformers import DataCollatorForTokenClassification
from transformers.utils import PaddingStrategy

from ..modeling.outputs import label_scores
from ..validation import (
    POSITIVE_INT,
    Number,
    check_choice,
    check_columns,
    check_finite_tensor,
    check_number,
    check_tokenizer,
    check_tokenizer_matches,
)
from .model import check_extended_model

SOURCE_LOGITS = "source_logits"
PAD_MULTIPLE = Number(int, 1, optional=True, example="8", why="padded lengths are rounded up to a multiple of it")
LABEL_PAD = Number(int, example="-100", why="the label id of padding positions, which the loss skips")
_MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def add_source_logits(dataset: Dataset, model, tokenizer, batch_size: int = 32) -> Dataset:
    """Add a ``source_logits`` column (one row of source scores per subword) to a tokenized dataset.

    ``model`` is a :class:`NeuralAdapterModel`; its frozen source runs once per example here instead of
    once per training step. Training on the cached column gives the same result as without it. The column is a
    float32 ``Array2D`` ([subwords, source labels]): stored as arrays, not as Python floats.
    """
    check_extended_model(model, "add_source_logits")
    check_number("add_source_logits", "batch_size", batch_size, POSITIVE_INT)
    check_tokenizer_matches(model.source.config, tokenizer, "add_source_logits", model.source.name_or_path)
    dataset = check_columns(dataset, ["input_ids"], "add_source_logits' dataset",
                            "tokenize it first (tokenize_and_align_labels)")
    collator = DataCollatorForTokenClassification(tokenizer)
    features = dataset.features.copy()
    features[SOURCE_LOGITS] = Array2D(shape=(None, model.num_old_labels), dtype="float32")

    def compute(batch):
        features = [
            {k: batch[k][i] for k in _MODEL_INPUTS if k in batch} for i in range(len(batch["input_ids"]))
        ]
        padded = collator(features)
        padded = {k: v.to(model.device) for k, v in padded.items()}
        logits = label_scores(model.source_outputs(padded)).float().cpu().numpy()
        lengths = [len(ids) for ids in batch["input_ids"]]
        left = tokenizer.padding_side == "left"
        rows = [logits[i, logits.shape[1] - n :] if left else logits[i, :n] for i, n in enumerate(lengths)]
        # the cached rows only (the collator's padding is dropped): NaN there would teach every rehearsal row NaN
        check_finite_tensor(torch.from_numpy(np.concatenate(rows)), "The frozen source model's scores")
        return {SOURCE_LOGITS: rows}

    return dataset.map(compute, batched=True, batch_size=batch_size, features=features,
                       desc="Caching source model outputs")


def check_aligned_features(features, per_token: Sequence[str]) -> None:
    """Refuse a batch the padding would silently misalign: no examples, a per-token column (labels, cached source
    logits) that only some examples have, or one whose length differs from the example's ``input_ids``."""
    if not features:
        raise ValueError("The data collator got an empty batch; pass at least one tokenized example.")
    for key in per_token:
        present = [key in feature for feature in features]
        if any(present) and not all(present):
            raise ValueError(f"Example {present.index(False)} of the batch has no {key!r} while others do; give every "
                             f"example of a data set the same columns (map them all with the same function).")
        for index, feature in enumerate(features):
            if key in feature and "input_ids" in feature and len(feature[key]) != len(feature["input_ids"]):
                raise ValueError(f"Example {index}: {len(feature[key])} {key} for {len(feature['input_ids'])} input_ids; "
                                 "they must be aligned one per token (tokenize_and_align_labels, add_source_logits).")


@dataclass
class AdapterDataCollator(DataCollatorForTokenClassification):
    """`DataCollatorForTokenClassification` that also pads a cached ``source_logits`` column. Its settings are
    checked when it is made: transformers' own collator fails on a bad ``pad_to_multiple_of`` only at the first
    batch, deep in the padding, and pads labels with whatever ``label_pad_token_id`` is."""

    def __post_init__(self):
        check_tokenizer(self.tokenizer, "AdapterDataCollator")
        check_number("AdapterDataCollator", "pad_to_multiple_of", self.pad_to_multiple_of, PAD_MULTIPLE)
        check_number("AdapterDataCollator", "max_length", self.max_length, dataclasses.replace(POSITIVE_INT,
                                                                                              optional=True))
        check_number("AdapterDataCollator", "label_pad_token_id", self.label_pad_token_id, LABEL_PAD)
        padding = self.padding.value if isinstance(self.padding, PaddingStrategy) else self.padding
        check_choice("AdapterDataCollator", "padding", padding, (True, False, *(s.value for s in PaddingStrategy)))
        # numpy batches skip torch_call, so cached source_logits would not be padded: the models here take tensors
        check_choice("AdapterDataCollator", "return_tensors", self.return_tensors, ("pt",))

    def torch_call(self, features):
        check_aligned_features(features, ("labels", SOURCE_LOGITS))
        cached = [f.pop(SOURCE_LOGITS) for f in features] if SOURCE_LOGITS in features[0] else None
        batch = super().torch_call(features)
        if cached is None:
            return batch
        length = batch["input_ids"].size(1)
        width = len(cached[0][0])
        padded = torch.zeros(len(cached), length, width)
        for i, rows in enumerate(cached):
            rows = torch.from_numpy(np.asarray(rows, dtype=np.float32))
            if self.tokenizer.padding_side == "left":
                padded[i, length - rows.size(0) :] = rows
            else:
                padded[i, : rows.size(0)] = rows
        batch[SOURCE_LOGITS] = padded
        return batch
