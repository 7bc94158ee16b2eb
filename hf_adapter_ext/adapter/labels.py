"""The label space of an extended model: old ids keep their ids, new labels are appended."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

_DEFAULT_LABEL = re.compile(r"^LABEL_\d+$")
_BIO_LABEL = re.compile(r"^[BI]-\S+$")


def source_labels(config) -> list[str]:
    """The source model's labels in id order; refuses configs that never named their labels."""
    id2label: Mapping = getattr(config, "id2label", None) or {}
    labels = [id2label[i] for i in sorted(int(k) for k in id2label)] if id2label else []
    labels = [str(label) for label in labels]
    if not labels or all(_DEFAULT_LABEL.match(label) for label in labels):
        raise ValueError(
            "The source model's config has no real `id2label` (found "
            f"{labels or 'nothing'}). Set `source.config.id2label` / `label2id` to the label names the "
            "model was trained with, e.g. {0: 'O', 1: 'B-PER', 2: 'I-PER', ...}, before extending it."
        )
    return labels


def uses_bio(labels: Sequence[str]) -> bool:
    return any(_BIO_LABEL.match(label) for label in labels)


def validate_new_labels(old: Sequence[str], new: Sequence[str]) -> None:
    """Refuse new labels that clash with old ones or break the old labels' BIO scheme."""
    if not new:
        raise ValueError("`new_labels` is empty: name at least one label to add, e.g. ['B-LOC', 'I-LOC'].")
    duplicates = sorted({label for label in new if list(new).count(label) > 1})
    if duplicates:
        raise ValueError(f"`new_labels` lists {duplicates} more than once; give each new label once.")
    clashing = [label for label in new if label in old]
    if clashing:
        raise ValueError(
            f"New labels {clashing} already exist in the source model (its labels are {list(old)}); "
            "list only labels the source does not know."
        )
    if not uses_bio(old):
        return
    broken = [label for label in new if not _BIO_LABEL.match(label)]
    if broken:
        hint = sorted({f"B-{label}" for label in broken} | {f"I-{label}" for label in broken})
        raise ValueError(
            f"New labels {broken} break the source's BIO scheme (labels like 'B-PER', 'I-PER'). "
            f"Name them as BIO tags, e.g. {hint}."
        )
    all_labels = set(old) | set(new)
    orphans = [label for label in new if label.startswith("I-") and f"B-{label[2:]}" not in all_labels]
    if orphans:
        raise ValueError(
            f"New labels {orphans} have no matching 'B-' tag; add {[f'B-{label[2:]}' for label in orphans]} too."
        )


def entity_types(labels: Sequence[str]) -> list[str]:
    """Entity types named by BIO labels, in first-seen order ('B-LOC', 'I-LOC' -> 'LOC')."""
    seen: dict[str, None] = {}
    for label in labels:
        if _BIO_LABEL.match(label):
            seen[label[2:]] = None
    return list(seen)
