"""Label names as evidence: each class's name, read as text, joins its support set as one more labelled example."""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch

from ..constants import IGNORE_INDEX
from .evaluation import paired_accuracy_gain
from .features import encode_texts


def label_text(name: str) -> str:
    """How a label's name is read as text: ``"card_lost"`` → ``"card lost"``, ``"Refund-not-showing"`` →
    ``"Refund not showing"`` (the encoder saw words, not identifiers)."""
    return " ".join(part for part in re.split(r"[_\-\s]+", str(name)) if part)


_NUMBER = re.compile(r"\d+(\.\d*)?")


def names_say_something(names: Sequence[str]) -> bool:
    """False when every name is a bare number ("0", "17", as `class_encode_column` makes of integer labels; "3.0",
    as a spreadsheet writes them): such names hold nothing to read, and reading them would only pull the classes
    together."""
    return not all(_NUMBER.fullmatch(label_text(name).replace(" ", "")) for name in names)


def encode_label_names(model, tokenizer, names: Sequence[str]) -> torch.Tensor:
    """[len(names), D] features of the names read as text (`label_text`), pooled as the model pools examples."""
    texts = [label_text(name) for name in names]
    blank = [name for name, text in zip(names, texts) if not text]
    if blank:
        raise ValueError(f"Label names {blank!r} have no words to read; name every label (or set "
                         "SIBConfig(use_label_names=False)).")
    return encode_texts(model, tokenizer, texts, desc="Encoding label names")


def with_label_names(support: torch.Tensor, support_labels: torch.Tensor,
                     name_features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``support`` [B, S, D] and ``support_labels`` [B, S] with each episode class's name feature appended as one
    more labelled example: [B, S + C, D], [B, S + C]. ``name_features`` [B, C, D] holds class ``c``'s name in row
    ``c``; a row whose class has no support example in its episode (padding of a batch of smaller episodes) is
    labelled -100, so it adds no class."""
    classes = name_features.size(1)
    ids = torch.arange(classes, device=support_labels.device).expand(support_labels.size(0), classes)
    present = (support_labels.unsqueeze(-1) == ids.unsqueeze(1)).any(dim=1)
    labels = torch.where(present, ids, torch.full_like(ids, IGNORE_INDEX))
    return torch.cat([support, name_features.to(support.dtype)], dim=1), torch.cat([support_labels, labels], dim=1)


def label_names_gain(model, episodes, batch_size: int = 8) -> tuple[float, float]:
    """Mean over labelled validation ``episodes`` (which carry ``class_name_features``) of (accuracy reading the
    label names − accuracy without them), with the half-width of its paired 95% CI; both from the model's K steps."""
    reads_names = model.config.use_label_names

    def with_and_without_names(model, batch):
        scores = []
        for use in (True, False):
            model.config.use_label_names = use
            scores.append(model(**batch).logits)
        return scores

    try:
        return paired_accuracy_gain(model, episodes, batch_size, with_and_without_names)
    finally:
        model.config.use_label_names = reads_names


def check_label_names(model, episodes, batch_size: int = 8) -> tuple[float, float]:
    """Turn ``model.config.use_label_names`` off when, on labelled validation ``episodes``, reading the names was
    *shown* to cost accuracy (the paired 95% CI of `label_names_gain` wholly below 0): names that say nothing
    ("intent_17") then stop steering the classifier. Returns the gain and its CI half-width."""
    mean, ci95 = label_names_gain(model, episodes, batch_size)
    if mean + ci95 < 0:
        model.config.use_label_names = False
    return mean, ci95
