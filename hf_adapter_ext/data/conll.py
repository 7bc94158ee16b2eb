"""CoNLL-2003 style files → `datasets.DatasetDict` with the Hub's `conll2003` schema."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence

from datasets import ClassLabel, Dataset, DatasetDict, Features, Value, load_dataset
from datasets import Sequence as SequenceFeature

from ..validation import (
    Number,
    WrongKindError,
    check_bio_label,
    check_bio_label_set,
    check_number,
    check_string_list,
    check_tag_case,
    check_texts,
    entity_type_name,
    repeated,
)
from .text_files import numbered_lines

logger = logging.getLogger(__name__)
TAG_COLUMN = Number(int, example="-1", why="a column's index; -1, the default, is the last")
CONLL2003_LABELS = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]


def read_conll(path: str | os.PathLike, tag_column: int = -1) -> list[dict]:
    """Sentences of a CoNLL file as ``{"tokens": [...], "tags": [...]}``; ``-DOCSTART-`` lines are skipped.

    Raises ``ValueError`` naming the file and line when a line has a different number of columns
    than the file's first token line.
    """
    check_number("read_conll", "tag_column", tag_column, TAG_COLUMN)
    sentences, tokens, tags = [], [], []
    columns = None
    for line_no, line in numbered_lines(path):
        parts = line.split()
        if not parts or parts[0] == "-DOCSTART-":
            if tokens and parts:
                logger.warning("%s:%d: -DOCSTART- inside a sentence (no blank line before it); the sentence ends "
                               "there.", path, line_no)
            if tokens:
                sentences.append({"tokens": tokens, "tags": tags})
                tokens, tags = [], []
            continue
        if columns is None:  # the first token line sets the file's columns; every other line is held to them
            columns, first = len(parts), (line_no, line.rstrip())
            if not -columns <= tag_column < columns:
                raise ValueError(f"{path}:{line_no}: tag_column={tag_column}, but the file's lines have {columns} "
                                 f"columns; use a column between {-columns} and {columns - 1} (-1, the default, is "
                                 "the last).")
        if columns < 2:
            raise ValueError(f"{path}:{line_no}: {line.rstrip()!r} has one column, but a CoNLL file has a word and its "
                             "tag on each line ('EU B-ORG'). For plain text without tags, use read_sentences.")
        if len(parts) != columns:
            raise ValueError(
                f"{path}:{line_no}: expected {columns} whitespace-separated columns (token ... tag) like the "
                f"lines before it, found {len(parts)}: {line.rstrip()!r}. Fix or remove that line; or, if line "
                f"{first[0]} ({first[1]!r}) set the count wrongly (a word with a space in it), fix that one."
            )
        tokens.append(parts[0])
        tags.append(parts[tag_column])
    if tokens:
        sentences.append({"tokens": tokens, "tags": tags})
    return sentences


# IOBES (S-, E-) and BILOU (U-, L-) prefixes, and the IOB2 prefix each becomes: a one-word entity opens with B-,
# an entity's last word continues it with I-.
_IOB2_PREFIX = {"S-": "B-", "U-": "B-", "E-": "I-", "L-": "I-"}


def _checked_tags(owner: str, tags: Sequence[str], prefixes: str) -> list[str]:
    """``tags`` as a list of 'O' and '<prefix>-<type>' strings (one of ``prefixes``), or a refusal naming the others
    and their fix: read past, they would pass through unconverted and be scored as something else."""
    tags = check_string_list(owner, "tags", tags, "['B-PER', 'I-PER', 'O']")
    odd = sorted({tag for tag in tags if not _is_tag(tag, prefixes)})
    if odd:
        also = f" (or {', '.join(p + '-' for p in prefixes[2:])} of IOBES / BILOU)" if prefixes[2:] else ""
        raise ValueError(f"{owner}: tags {odd[:5]} are neither 'O' nor 'B-<type>' / 'I-<type>'{also}. "
                         f"{_scheme_hint(odd)}")
    return tags


def _is_tag(value: str, prefixes: str = "BIESUL") -> bool:
    return value == "O" or (value[:1] in prefixes and value[1:2] == "-")


def _check_file_tags(sentences: list[dict], path) -> None:
    """Each sentence's tags, checked as :func:`_checked_tags` does, naming the file and sentence; a file with the
    tags in its first column and the words in its last is named as such (its words read as tags otherwise, and
    were refused as "IO tags")."""
    for index, sentence in enumerate(sentences):
        owner = f"{path}: sentence {index}"
        if all(map(_is_tag, sentence["tokens"])) and not all(map(_is_tag, sentence["tags"])):
            raise ValueError(f"{owner}: the first column holds tags ({sentence['tokens'][:3]}) and the last holds "
                             f"words ({sentence['tags'][:3]}); a CoNLL file puts each word first and its tag last "
                             "('EU B-ORG'): swap the columns.")
        _checked_tags(owner, sentence["tags"], "BIESUL")


def from_iobes(tags: Sequence[str]) -> list[str]:
    """IOBES / BILOU → IOB2 (``S-X``/``U-X`` → ``B-X``, ``E-X``/``L-X`` → ``I-X``); IOB tags are kept. The same
    spans, since IOB2 marks only where an entity opens; an end with no start (``S-PER E-ORG``) opens its own."""
    return _iobes_to_iob2(_checked_tags("from_iobes", tags, "BIESUL"))


def to_iob2(tags: Sequence[str]) -> list[str]:
    """IOB1 → IOB2: an ``I-X`` that opens an entity (after ``O`` or another type) becomes ``B-X``."""
    return _iob1_to_iob2(_checked_tags("to_iob2", tags, "BI"))


def _iobes_to_iob2(tags: list[str]) -> list[str]:
    """:func:`from_iobes` on tags already checked (the readers check each file's once, naming file and sentence)."""
    return _iob1_to_iob2([_IOB2_PREFIX[tag[:2]] + tag[2:] if tag[:2] in _IOB2_PREFIX else tag for tag in tags])


def _iob1_to_iob2(tags: list[str]) -> list[str]:
    """:func:`to_iob2` on tags already checked."""
    out, previous = [], "O"
    for tag in tags:
        if tag.startswith("I-") and previous[2:] != tag[2:]:
            tag = "B-" + tag[2:]
        out.append(tag)
        previous = tag
    return out


def conll_features(labels: Sequence[str] = CONLL2003_LABELS) -> Features:
    return Features({
        "id": Value("string"),
        "tokens": SequenceFeature(Value("string")),
        "ner_tags": SequenceFeature(ClassLabel(names=list(labels))),
    })


def infer_labels(tag_sets: Sequence[Sequence[str]]) -> list[str]:
    """The label set of some tag sequences: CoNLL-2003's own order when every tag is one of its labels (so ids
    stay the same across files), else ``O`` then ``B-``/``I-`` of each type in alphabetical order."""
    tags = {tag for sequence in tag_sets for tag in sequence} | {"O"}
    if tags <= set(CONLL2003_LABELS):
        return list(CONLL2003_LABELS)
    others = sorted(tag for tag in tags if tag != "O" and tag[:2] not in ("B-", "I-"))
    if others:
        raise ValueError(f"Tags {others[:5]} are neither 'O' nor 'B-<type>' / 'I-<type>'. {_scheme_hint(others)}")
    types = sorted({check_bio_label(tag, "the tag")[2:] for tag in tags if tag != "O"})
    return ["O", *(f"{prefix}-{name}" for name in types for prefix in ("B", "I"))]


def _scheme_hint(tags: Sequence[str]) -> str:
    """How to fix tags that are not IOB2 (``others`` of :func:`infer_labels`)."""
    if any(tag[:2] in _IOB2_PREFIX for tag in tags):
        return "They are IOBES / BILOU tags: convert them with from_iobes (the file readers do it for you)."
    if any(tag.isdigit() for tag in tags):
        return "Write tag names ('B-PER'), not label ids."
    if any(tag[:2].upper() in ("B-", "I-", "S-", "E-", "O") for tag in tags):
        return "Write the prefixes and the outside tag in capitals: 'B-PER', 'I-PER', 'O'."
    return ("They look like IO tags (a type name on every word of an entity), which cannot tell two adjacent "
            "entities of one type apart: write IOB2 tags, 'B-<type>' on an entity's first word and 'I-<type>' on the "
            "rest (IOB1, IOBES and BILOU files are converted for you).")


def conll_dataset(path: str | os.PathLike, labels: Sequence[str] | None = None, scheme: str = "auto") -> Dataset:
    """One CoNLL file as a `datasets.Dataset` (``id``, ``tokens``, ``ner_tags`` as ``ClassLabel``), in IOB2.

    ``labels``: the label set, in id order; when not given it is inferred from the file (:func:`infer_labels`).
    ``scheme``: ``"iob2"`` refuses a file where an entity opens with ``I-`` (IOB1); ``"iob1"`` converts it;
    ``"auto"`` converts IOB1, IOBES and BILOU when it finds such tags and logs a warning saying so.
    """
    return _dataset_from_sentences(read_conll(path), path, labels, scheme)


def _dataset_from_sentences(sentences, path, labels, scheme) -> Dataset:
    if scheme not in ("auto", "iob1", "iob2"):
        raise ValueError(f"scheme={scheme!r}; choose 'auto', 'iob1' or 'iob2'.")
    if not sentences:
        raise ValueError(f"{path} holds no sentences; check the path and the file format (one token per line).")
    _check_file_tags(sentences, path)
    check_tag_case((tag, f"{path}: sentence {i}") for i, s in enumerate(sentences) for tag in s["tags"])
    _from_iobes_in_place(sentences, path, scheme)
    converted = 0
    for index, sentence in enumerate(sentences):
        iob2 = _iob1_to_iob2(sentence["tags"])
        if iob2 != sentence["tags"]:
            if scheme == "iob2":
                raise ValueError(
                    f"{path}: sentence {index} ({' '.join(sentence['tokens'][:8])} ...) opens an entity with 'I-' "
                    f"({sentence['tags']}), which IOB2 forbids. The file looks like IOB1: pass scheme='iob1' "
                    "(or 'auto') to convert it."
                )
            converted += 1
            sentence["tags"] = iob2
    if converted and scheme == "auto":
        logger.warning("%s: converted %d sentences from IOB1 to IOB2 (entities opened with 'I-').", path, converted)
    labels = (check_bio_label_set("conll_dataset", "labels", labels) if labels is not None
              else infer_labels([s["tags"] for s in sentences]))
    label2id = {label: i for i, label in enumerate(labels)}
    rows = {"id": [], "tokens": [], "ner_tags": []}
    for index, sentence in enumerate(sentences):
        unknown = sorted(set(sentence["tags"]) - set(label2id))
        if unknown:
            raise ValueError(
                f"{path}: sentence {index} ({' '.join(sentence['tokens'][:8])} ...) uses tags {unknown} that are "
                f"not in the label set {list(labels)}; pass `labels=` with every tag the file uses."
            )
        rows["id"].append(str(index))
        rows["tokens"].append(sentence["tokens"])
        rows["ner_tags"].append([label2id[tag] for tag in sentence["tags"]])
    return Dataset.from_dict(rows, features=conll_features(labels))


def _from_iobes_in_place(sentences: list[dict], path, scheme: str) -> None:
    """Convert IOBES / BILOU tags to IOB2 (``scheme="auto"``, with a warning), or refuse them (``"iob1"`` /
    ``"iob2"``, which name another scheme)."""
    converted = [s for s in sentences if any(tag[:2] in _IOB2_PREFIX for tag in s["tags"])]
    if converted and scheme != "auto":
        sentence = converted[0]
        raise ValueError(f"{path}: sentence {sentences.index(sentence)} ({' '.join(sentence['tokens'][:8])} ...) has "
                         f"IOBES/BILOU tags ({sentence['tags']}), not {scheme.upper()}: pass scheme='auto' to convert "
                         "them to IOB2.")
    for sentence in converted:
        sentence["tags"] = _iobes_to_iob2(sentence["tags"])
    if converted:
        logger.warning("%s: converted %d sentences from IOBES/BILOU to IOB2 (S-/U- tags became B-, E-/L- became I-).",
                       path, len(converted))


def load_conll(
    files: dict[str, str | os.PathLike] | str, labels: Sequence[str] | None = None, **hub_kwargs
) -> DatasetDict:
    """CoNLL files by split (``{"train": path, ...}``), or a Hub dataset id such as ``"conll2003"``. Without
    ``labels``, one label set is inferred from all the files together, so ids agree across splits."""
    if isinstance(files, str):
        if os.path.isfile(files):  # else load_dataset answers "Couldn't find any data file at <the file>"
            raise ValueError(f"load_conll: {files!r} is a file, but a string is read as a Hub dataset id; pass the "
                             f"files by split: load_conll({{'train': {files!r}}}).")
        return load_dataset(files, **hub_kwargs)
    if not isinstance(files, Mapping):
        raise TypeError(f"load_conll: files must be a dict of split -> path or a Hub id; got {type(files).__name__}.")
    files = {split: path for split, path in files.items() if path is not None}
    if not files:
        raise ValueError("load_conll: no files given; pass at least {'train': path}.")
    return datasets_from_sentences({split: read_conll(path) for split, path in files.items()}, files, labels)


def datasets_from_sentences(sentences: dict[str, list[dict]], sources: dict, labels: Sequence[str] | None = None
                            ) -> DatasetDict:
    """``{"tokens", "tags"}`` sentences by split as one `DatasetDict` in IOB2 (IOB1 converted, with a warning),
    with one label set for every split: ``labels``, or inferred from all of them. ``sources`` name each split's
    file in messages."""
    for split, rows in sentences.items():
        _check_file_tags(rows, sources[split])
    check_tag_case((tag, f"{sources[split]}: sentence {i}") for split, rows in sentences.items()
                   for i, s in enumerate(rows) for tag in s["tags"])
    warn_repeated_training_sentences(sentences, sources)
    if labels is None:
        labels = infer_labels([from_iobes(s["tags"]) for split in sentences.values() for s in split])
    return DatasetDict({split: _dataset_from_sentences(rows, sources[split], labels, "auto")
                        for split, rows in sentences.items()})


# Above this share of its sentences repeated from the training file, a validation or test split is warned about.
MAX_REPEATED_SHARE = 0.2


def warn_repeated_training_sentences(sentences: dict[str, list[dict]], sources: dict) -> None:
    """Warn when a validation or test split repeats many training sentences (the same file passed twice, or an
    overlapping export): its scores would be optimistic, and a checkpoint chosen on it would be chosen on training
    data. A few shared sentences are common in public corpora and pass."""
    if "train" not in sentences:
        return
    seen = {tuple(s["tokens"]) for s in sentences["train"]}
    for split, rows in sentences.items():
        repeated = sum(tuple(s["tokens"]) in seen for s in rows) if split != "train" and rows else 0
        if repeated > MAX_REPEATED_SHARE * len(rows):
            logger.warning("%s: %d of the %s split's %d sentences are also in the training file %s (%.0f%%): its "
                           "scores, and a checkpoint chosen on them, measure training data. Pass a held-out file.",
                           sources[split], repeated, split, len(rows), sources["train"], 100 * repeated / len(rows))


def warn_unlabelled_in_evaluation(texts: Sequence[str], splits, what: str = "The unlabelled domain text") -> None:
    """Warn when plain ``texts`` (one sentence per string) repeat sentences of the ``splits`` a model is chosen or
    scored on (``{name: Dataset with a 'tokens' column}``, e.g. validation and test): self-training on them would
    make those scores optimistic. The benchmark drops such sentences from its unlabelled text."""
    texts = check_texts(texts, what)
    if not isinstance(splits, Mapping):
        raise WrongKindError(f"warn_unlabelled_in_evaluation: splits must be a dict of split name -> Dataset with a "
                             f"'tokens' column, e.g. {{'validation': dev}}; got {type(splits).__name__}.")
    given = {tuple(text.split()) for text in texts}
    for split, rows in splits.items():
        shared = sum(tuple(tokens) in given for tokens in rows["tokens"])
        if shared:
            logger.warning("%s repeats %d of the %s split's %d sentences: the model learns from its own tags on "
                           "them, so the %s scores come out optimistic. Drop them from the text.", what, shared,
                           split, len(rows), split)


def rename_types(dataset: Dataset | DatasetDict, mapping: dict[str, str], column: str = "ner_tags"):
    """Rename entity types in a ``ClassLabel`` tag column (``{"person": "PER", "country": "LOC", ...}``);
    types renamed to the same name are merged, and a type renamed to ``"O"`` is dropped (its tags become ``O``).
    Refuses names that are not types of the dataset, and new names that are not type names."""
    if not isinstance(mapping, Mapping):
        raise TypeError(f"rename_types: mapping must be a dict of old type -> new type, e.g. {{'person': 'PER'}}; got "
                        f"{type(mapping).__name__}.")
    names = tag_names(dataset, column)
    types = {name[2:] for name in names if name[:2] in ("B-", "I-")}
    unknown = sorted(map(str, set(mapping) - types))
    if unknown:
        raise ValueError(f"rename_types: {unknown} are not entity types of this dataset (its types: {sorted(types)}).")
    for old, new in mapping.items():
        entity_type_name(new, f"rename_types: {old!r} -> {new!r} (use 'O' to drop the type)", allow_outside=True)
    renamed = [("O" if mapping.get(name[2:]) == "O" else f"{name[:2]}{mapping.get(name[2:], name[2:])}")
               if name[:2] in ("B-", "I-") else name for name in names]
    new_names = list(dict.fromkeys(renamed))
    return _renumbered(dataset, column, new_names, [new_names.index(name) for name in renamed],
                       "Renaming entity types")


def tag_names(dataset, column: str = "ner_tags") -> list[str]:
    """The tag names of a ``Dataset`` / ``DatasetDict``'s ``ClassLabel`` sequence column; anything else is refused,
    naming the column and how to get names (``load_ner_files`` / ``conll_dataset`` infer them)."""
    if not isinstance(dataset, (Dataset, DatasetDict)) or isinstance(dataset, DatasetDict) and not dataset:
        raise TypeError(f"Expected a datasets.Dataset or a non-empty DatasetDict, got {type(dataset).__name__}.")
    first = dataset[next(iter(dataset))] if isinstance(dataset, DatasetDict) else dataset
    feature = first.features.get(column)
    names = getattr(getattr(feature, "feature", None), "names", None)
    if names is None:
        raise ValueError(f"The dataset's {column!r} column is {feature or 'missing'}, not a sequence of ClassLabel tag "
                         f"names (its columns: {first.column_names}); read files with load_ner_files/conll_dataset, "
                         "or cast the column to Sequence(ClassLabel(names=[...])).")
    return list(names)


def _renumbered(dataset, column: str, names: list[str], remap: list[int], desc: str):
    """The tag column with id ``i`` replaced by ``remap[i]`` and its ``ClassLabel`` names set to ``names``."""
    first = dataset[next(iter(dataset))] if isinstance(dataset, DatasetDict) else dataset
    features = first.features.copy()
    features[column] = SequenceFeature(ClassLabel(names=list(names)))

    def apply(batch):
        return {column: [[remap[t] for t in tags] for tags in batch[column]]}

    return dataset.map(apply, batched=True, features=features, desc=desc)


def relabel_to_outside(dataset: Dataset | DatasetDict, entity_type: str) -> Dataset | DatasetDict:
    """Map every ``B-/I-<entity_type>`` tag to ``O`` (how the paper builds the source data)."""
    names = tag_names(dataset)
    entity_type_name(entity_type, "relabel_to_outside")
    if "O" not in names:
        raise ValueError(f"relabel_to_outside: the tag set {names} has no 'O' tag to relabel to.")
    outside = names.index("O")
    drop = {i for i, name in enumerate(names) if name[2:] == entity_type and name[:2] in ("B-", "I-")}
    if not drop:
        raise ValueError(f"No tags of type {entity_type!r} in {names}; nothing to relabel.")

    def relabel(batch):
        return {"ner_tags": [[outside if t in drop else t for t in tags] for tags in batch["ner_tags"]]}

    return dataset.map(relabel, batched=True, desc=f"{entity_type} -> O")


def with_label_order(dataset: Dataset | DatasetDict, labels: Sequence[str], column: str = "ner_tags"):
    """Re-number a ``ClassLabel`` tag column to ``labels``' order (e.g. a model's ``id2label``: old labels, then
    new ones), so the data's ids mean what the model's ids mean. Refuses tags the data uses that the model lacks."""
    names = tag_names(dataset, column)
    labels = check_string_list("with_label_order", "labels", labels, "['O', 'B-PER', 'I-PER']")
    listed_twice = repeated(labels)
    if listed_twice:
        raise ValueError(f"with_label_order: labels {listed_twice} appear more than once; give each label once.")
    splits = dataset.values() if isinstance(dataset, DatasetDict) else [dataset]
    used = {names[t] for split in splits for tags in split[column] for t in tags}
    unknown = sorted(used - set(labels))
    if unknown:
        raise ValueError(f"The data has tags {unknown} that are not among the model's labels {list(labels)}: add them "
                         "to new_labels, or rename their types (rename_types / --label_map).")
    position = {label: i for i, label in enumerate(labels)}
    return _renumbered(dataset, column, list(labels), [position.get(name, -1) for name in names],
                       "Matching the model's label ids")
