"""The paper's CoNLL-2003 transfer protocol: a source split without the new type, a target split with all."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from datasets import DatasetDict

from ..validation import SAMPLE_LIMIT, check_number
from .alignment import tokenize_and_align_labels
from .conll import CONLL2003_LABELS, conll_dataset


@dataclass
class TransferTask:
    """Labels and data of one "add type C" experiment. Old label ids come first, new ones after."""

    new_type: str
    old_labels: list[str]
    new_labels: list[str]
    datasets: DatasetDict  # source_train, target_train, validation, test; tags as CoNLL-2003 ClassLabel

    @property
    def labels(self) -> list[str]:
        return self.old_labels + self.new_labels

    def encode(self, tokenizer, split: str, hide_types=(), max_length: int | None = None):
        """Tokenize ``split`` with labels in this task's id order; ``hide_types`` are relabelled O."""
        names = self.datasets[split].features["ner_tags"].feature.names
        label2id = {label: i for i, label in enumerate(self.labels)}
        hidden = {f"{p}-{t}" for t in hide_types for p in "BI"}
        used = {names[t] for tags in self.datasets[split]["ner_tags"] for t in tags}
        unknown = sorted(n for n in used if n not in hidden and n not in label2id)
        if unknown:
            raise ValueError(f"{split} uses tags {unknown} that are not in this task's labels {self.labels}; "
                             "hide their type (hide_types=...) or add them to the label set.")
        to_id = [label2id.get("O" if name in hidden else name, -1) for name in names]  # -1: never used here

        def encode_batch(batch):
            labelled = {"tokens": batch["tokens"], "ner_tags": [[to_id[t] for t in tags] for tags in batch["ner_tags"]]}
            return tokenize_and_align_labels(labelled, tokenizer, max_length=max_length)

        return self.datasets[split].map(encode_batch, batched=True, remove_columns=self.datasets[split].column_names,
                                        desc=f"Tokenizing {split}")


def load_transfer_task(
    new_type: str, data_dir: str | os.PathLike, limits: dict[str, int] | None = None
) -> TransferTask:
    """Read ``conll2003-transfer/<new_type>/`` and the CoNLL-2003 validation/test sets from ``data_dir``."""
    root = Path(data_dir)
    types = sorted({label[2:] for label in CONLL2003_LABELS if label != "O"})
    if new_type not in types:
        raise ValueError(f"new_type={new_type!r} is not a CoNLL-2003 type; choose one of {types}.")
    files = {
        "source_train": root / "conll2003-transfer" / new_type / "source_train.txt",
        "target_train": root / "conll2003-transfer" / new_type / "target_train.txt",
        "validation": root / "conll2003" / "validation.txt",
        "test": root / "conll2003" / "test.txt",
    }
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise ValueError(f"Missing data files {missing}; point data_dir at the folder that holds conll2003/ and conll2003-transfer/.")
    datasets = DatasetDict({split: conll_dataset(path) for split, path in files.items()})
    for split, limit in (limits or {}).items():
        if split not in datasets:
            raise ValueError(f"load_transfer_task: limits names {split!r}; its splits are {list(datasets)}.")
        check_number("load_transfer_task", f"limits[{split!r}]", limit, SAMPLE_LIMIT)
        if limit and limit < len(datasets[split]):
            datasets[split] = datasets[split].select(range(limit))
    new_labels = [f"B-{new_type}", f"I-{new_type}"]
    old_labels = [label for label in CONLL2003_LABELS if label not in new_labels]
    return TransferTask(new_type, old_labels, new_labels, datasets)


__all__ = ["TransferTask", "load_transfer_task"]
