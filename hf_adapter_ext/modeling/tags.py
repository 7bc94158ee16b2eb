"""The label space of an extended model: old ids keep their ids, new labels are appended."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

from ..bio import is_bio_label
from ..validation import WrongKindError, entity_type_name, repeated

_DEFAULT_LABEL = re.compile(r"^LABEL_\d+$")


def source_labels(config) -> list[str]:
    """The source model's labels in id order; refuses configs that never named their labels.

    Args:
        config: the model's ``PretrainedConfig``, the model itself, or its ``config.json`` as a dict (whose ids
            are strings).
    """
    config = getattr(config, "config", config)  # a model: its config
    if isinstance(config, Mapping):
        id2label = config.get("id2label") or {}
    elif hasattr(config, "to_dict"):
        id2label = getattr(config, "id2label", None) or {}
    else:
        raise WrongKindError(f"source_labels takes a token classifier, its config or its config.json as a dict; got "
                             f"{type(config).__name__}.")
    id2label = {int(k): v for k, v in id2label.items()}
    labels = [id2label[i] for i in sorted(id2label)]
    labels = [str(label) for label in labels]
    if not labels or all(_DEFAULT_LABEL.match(label) for label in labels):
        raise ValueError(
            "The source model's config has no real `id2label` (found "
            f"{labels or 'nothing'}). Set `source.config.id2label` / `label2id` to the label names the "
            "model was trained with, e.g. {0: 'O', 1: 'B-PER', 2: 'I-PER', ...}, before extending it."
        )
    return labels


def uses_bio(labels: Sequence[str]) -> bool:
    return any(is_bio_label(label) for label in labels)


# prefixes of the other tagging schemes (IOBES, BILOU) and of lower-case BIO, as a label's first two characters
_OTHER_SCHEME_PREFIX = re.compile(r"^[BIESLUbieslu]-(?=\S)")


def validate_source_labels(labels: Sequence[str], annotation: str) -> None:
    """Refuse a source whose labels the extension would misread: BIO tags mixed with other schemes' tags (IOBES,
    BILOU: the CRF's constraints, rehearsal and the entity F1 read IOB2 only), or no ``'O'`` where the extension
    needs the outside tag (BIO tags, or ``annotation="new_only"``, where old types are read from O words).

    Args:
        labels: the source's labels in id order (`source_labels`).
        annotation: `NeuralAdapterConfig.annotation`.
    """
    twice = repeated(labels)
    if twice:  # label2id keeps one of the ids: the other output would be read as it, or not at all
        ids = [i for i, label in enumerate(labels) if label == twice[0]]
        raise ValueError(f"The source's config.id2label names {twice[0]!r} for several outputs (ids {ids}): each "
                         "label must name one output, else the extension reads one of them as the other. Give every "
                         "id its own name in source.config.id2label and label2id before extending.")
    if "O" not in labels and (uses_bio(labels) or annotation == "new_only"):
        others = _non_bio(labels)
        which = repr(others[0]) if len(others) == 1 else f"one of {others[:5]}"
        rename = (f" If {which} is the outside tag, rename it 'O' in source.config.id2label and label2id before "
                  "extending.") if others else " A tagger extended with hf_adapter_ext needs one."
        raise ValueError(f"The source's labels {list(labels)[:6]} have no 'O', the tag of words outside every "
                         "entity, which the extension reads (rehearsal, new_only annotation, BIO decoding)." + rename)
    if uses_bio(labels):
        odd = _non_bio(labels)
        if odd:
            scheme = ("IOBES / BILOU tags" if any(_OTHER_SCHEME_PREFIX.match(label) for label in odd)
                      else "labels that are neither 'O' nor 'B-<type>' / 'I-<type>'")
            raise ValueError(f"The source's labels mix BIO tags with {scheme}: {odd[:5]}. hf_adapter_ext extends IOB2 "
                             "taggers ('O', 'B-<type>', 'I-<type>'): its CRF constraints, rehearsal and entity F1 "
                             "would misread the others. Extend a tagger trained on IOB2 tags (conll_dataset and "
                             "examples/train_tagger.py convert IOBES / BILOU files to IOB2).")


def validate_new_labels(old: Sequence[str], new: Sequence[str]) -> None:
    """Refuse new labels that clash with old ones or break the old labels' BIO scheme."""
    if not new:
        raise ValueError("`new_labels` is empty: name at least one label to add, e.g. ['B-LOC', 'I-LOC'].")
    duplicates = repeated(new)
    if duplicates:
        raise ValueError(f"`new_labels` lists {duplicates} more than once; give each new label once.")
    clashing = [label for label in new if label in old]
    if clashing:
        raise ValueError(
            f"New labels {clashing} already exist in the source model (its labels are {list(old)}); "
            "list only labels the source does not know."
        )
    if not uses_bio(old):
        if uses_bio(new):  # one label set in two schemes: the CRF constrains half of it, the metric reads neither
            raise ValueError(f"New labels {[label for label in new if is_bio_label(label)]} are BIO tags, but the "
                             f"source's labels are not ({list(old)}): name new labels as the source does, one label "
                             f"per type, e.g. {sorted({label[2:] for label in new if is_bio_label(label)})}.")
        return
    for label in new:
        if is_bio_label(label):
            entity_type_name(label[2:], f"new_labels: {label!r}")  # 'B-O', 'B-B-X'
    broken = [label for label in new if not is_bio_label(label)]
    if broken:
        # 'b-loc' / 'S-LOC' name the type 'loc' / 'LOC'; a bare 'loc' needs both tags
        hint = sorted({f"{prefix}-{label[2:] if _OTHER_SCHEME_PREFIX.match(label) else label}"
                       for label in broken for prefix in ("B", "I")})
        raise ValueError(
            f"New labels {broken} break the source's BIO scheme (labels like 'B-PER', 'I-PER'). "
            f"Name them as BIO tags, e.g. {hint}."
        )
    old_types = {name.lower(): name for name in entity_types(old)}
    cased = sorted({(name, old_types[name.lower()]) for name in entity_types(new)
                    if name.lower() in old_types and name not in old_types.values()})
    if cased:  # 'B-per' beside the source's 'B-PER': one type under two names, as the data readers refuse too
        raise ValueError(f"New types {[n for n, _ in cased]} differ from the source's {[o for _, o in cased]} only in "
                         "case; use the source's own name, or a distinct one if it is a new type.")
    all_labels = set(old) | set(new)
    for prefix, other in (("I-", "B-"), ("B-", "I-")):
        # without its B- tag a type cannot open an entity; without its I- tag, no entity of it spans two words
        orphans = [label for label in new if label.startswith(prefix) and f"{other}{label[2:]}" not in all_labels]
        if orphans:
            raise ValueError(f"New labels {orphans} have no matching {other!r} tag; add "
                             f"{[f'{other}{label[2:]}' for label in orphans]} too.")


def entity_types(labels: Sequence[str]) -> list[str]:
    """Entity types named by BIO labels, in first-seen order ('B-LOC', 'I-LOC' -> 'LOC')."""
    if isinstance(labels, (str, bytes)) or not isinstance(labels, Iterable):  # a string would be read one
        # character per label, and name no type at all
        raise WrongKindError(f"entity_types takes the labels as a list of strings, e.g. ['O', 'B-LOC', 'I-LOC']; got "
                             f"{labels!r}.")
    labels = list(labels)
    not_strings = [label for label in labels if not isinstance(label, str)]
    if not_strings:
        raise WrongKindError(f"entity_types takes label names (strings), e.g. ['O', 'B-LOC', 'I-LOC']; got "
                             f"{not_strings[0]!r} ({type(not_strings[0]).__name__}). Map ids to names with the model's "
                             "config.id2label first.")
    odd = _non_bio(labels)
    if odd and (len(odd) < len(labels) - labels.count("O") or any(_OTHER_SCHEME_PREFIX.match(label) for label in odd)):
        raise ValueError(f"entity_types reads IOB2 labels ('O', 'B-<type>', 'I-<type>', capital prefixes); {odd[:5]} "
                         "are not, so their types would be missed. Convert IOBES / BILOU tags with "
                         "hf_adapter_ext.data.conll.from_iobes and write the prefixes in capitals.")
    return list(dict.fromkeys(label[2:] for label in labels if is_bio_label(label)))


def _non_bio(labels: Sequence[str]) -> list[str]:
    """The labels that are neither 'O' nor BIO tags."""
    return [label for label in labels if label != "O" and not is_bio_label(label)]


def validate_label_parents(old: Sequence[str], new: Sequence[str], parents: Mapping[str, str]) -> None:
    """Refuse a hierarchy that cannot mean "this new type is a kind of that old type": a subtype that is not
    new (or is also old), a parent that is not old, a parent that is itself new, or a cycle."""
    bio = uses_bio(old)
    old_types, new_types = (set(entity_types(old)), set(entity_types(new))) if bio else (set(old), set(new))
    example = "label_parents={'politician': 'PER'}"
    for child, parent in parents.items():
        entity_type_name(child, "label_parents")  # B-/I- labels, 'O', spaces: refused by name
        entity_type_name(parent, f"label_parents (the parent of {child!r})")
    for child, parent in parents.items():
        seen = [child]
        while parent in parents and parent not in seen:  # follow the chain: a cycle is named as such
            seen.append(parent)
            parent = parents[parent]
        if parent in seen:
            raise ValueError(f"label_parents has a cycle: {' -> '.join(map(repr, [*seen, parent]))}. Each new type names one "
                             f"old type as its parent, e.g. {example}.")
    for child, parent in parents.items():
        if child in old_types:
            raise ValueError(f"label_parents: {child!r} is already an old type of the source, so it cannot be a new "
                             f"subtype; only new types take parents, e.g. {example}.")
        if child not in new_types:
            raise ValueError(f"label_parents: {child!r} is not one of the new types {sorted(new_types)}; name new "
                             f"types (without B-/I-), e.g. {example}.")
        if parent in new_types:
            raise ValueError(f"label_parents: the parent of {child!r} is {parent!r}, which is itself a new type; a "
                             "parent must be an old type the source knows, so that its predictions can be kept.")
        if parent not in old_types:
            raise ValueError(f"label_parents: the parent of {child!r} is {parent!r}, which is not a type of the "
                             f"source (its types: {entity_types(old) or list(old)}). Use an old type, e.g. {example}.")


def parent_label_ids(labels: Sequence[str], num_old: int, parents: Mapping[str, str]) -> list[int]:
    """For each label id, the old label id it falls under: itself for old labels, ``B-``/``I-`` of the parent
    type for subtype labels, and -1 for new labels without a parent."""
    index = {label: i for i, label in enumerate(labels)}
    mapped = []
    for i, label in enumerate(labels):
        if i < num_old:
            mapped.append(i)
        elif is_bio_label(label) and label[2:] in parents:
            mapped.append(index.get(f"{label[:2]}{parents[label[2:]]}", index.get(parents[label[2:]], -1)))
        else:
            mapped.append(index.get(parents.get(label, ""), -1))
    return mapped
