"""`evaluate` metric modules shipped with the package (they load offline), and Trainer glue."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

ENTITY_F1 = str(Path(__file__).resolve().parent / "entity_f1")


def load_entity_f1():
    import evaluate

    return evaluate.load(ENTITY_F1)


def ids_to_tags(predictions: np.ndarray, label_ids: np.ndarray, id2label: Mapping[int, str]):
    """Drop ``-100`` positions and map ids to tag strings, sentence by sentence."""
    preds, refs = [], []
    for pred_row, label_row in zip(predictions, label_ids):
        keep = label_row != -100
        preds.append([id2label[int(p)] for p in pred_row[keep]])
        refs.append([id2label[int(label)] for label in label_row[keep]])
    return preds, refs


def entity_f1_compute_metrics(id2label: Mapping[int, str], new_types: Sequence[str] = ()):
    """A ``compute_metrics`` for `transformers.Trainer` reporting entity F1 overall, old/new and per type."""
    metric = load_entity_f1()

    def compute_metrics(eval_prediction) -> dict:
        logits, label_ids = eval_prediction.predictions, eval_prediction.label_ids
        preds, refs = ids_to_tags(np.asarray(logits).argmax(-1), np.asarray(label_ids), id2label)
        return metric.compute(predictions=preds, references=refs, new_types=list(new_types))

    return compute_metrics
