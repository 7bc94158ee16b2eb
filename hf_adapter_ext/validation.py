"""The checks every public entry point runs on its inputs where they enter: one definition of each.

A config, a function or a command-line option declares what it accepts (a :class:`Number` range, a choice, a list of
texts, a label or type name, the columns it reads, the tokenizer it needs) and refuses anything else here, before
any work, with a message that names the argument and says how to fix it. Checks run at the boundary, never in a
training step.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import numbers
import os
import re
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from datasets import IterableDataset
from transformers import AutoTokenizer, TrainingArguments
from transformers.utils import find_labels

_TYPE_NAME = re.compile(r"^[^\s]+$")


class WrongKindError(TypeError, ValueError):
    """A value of the wrong kind (a string for a number, a bare string for a list, ...). It is a TypeError, as
    Python reports such mistakes, and a ValueError, so that ``except ValueError`` catches every bad input the
    library refuses."""


@dataclass(frozen=True)
class Number:
    """What a numeric setting accepts.

    Args:
        kind: ``int`` (a whole number; ``True`` is not one) or ``float`` (an int is accepted too).
        low, high: the bounds (None: unbounded); ``low_open`` / ``high_open`` exclude them.
        example: a good value, quoted in the message.
        why: what the setting means, when a bound alone does not say why a value is refused.
        optional: ``None`` is accepted (the setting's "unset").
        special: further accepted values outside the range (``-1`` = "use the epochs" for ``max_steps``).
    """

    kind: type
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    example: str = ""
    why: str = ""
    optional: bool = False
    special: tuple = ()

    def range_text(self) -> str:
        low = "" if self.low is None else f"{'>' if self.low_open else '>='} {self.low:g}"
        high = "" if self.high is None else f"{'<' if self.high_open else '<='} {self.high:g}"
        return " and ".join(part for part in (low, high) if part) or "finite"

    def contains(self, value) -> bool:
        if not math.isfinite(value):
            return False
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return False
        return self.high is None or not (value > self.high or (self.high_open and value == self.high))


POSITIVE_INT = Number(int, 1, example="8")
COUNT = Number(int, 0, example="3")
POSITIVE_FLOAT = Number(float, 0, low_open=True, example="0.001")
SHARE = Number(float, 0, 1, example="0.5")
SEED = Number(int, 0, 2**32 - 1, example="42", why="numpy and torch seeds are unsigned 32-bit numbers")
SAMPLE_LIMIT = Number(int, 1, optional=True, example="100", why="leave it out to use every sentence")


CLI = "--"  # as an ``owner``: the names are command-line options (``--learning_rate``)


def _named(owner: str, name: str) -> str:
    if owner == CLI:
        return f"--{name}"
    return f"{owner}.{name}" if owner else name


def check_number(owner: str, name: str, value, rule: Number):
    """``value`` if it is of ``rule``'s kind and in its range; else a TypeError (wrong kind, as JSON files and command
    lines produce: ``"8"``, ``true``) or a ValueError (out of range, NaN, infinite), naming ``owner.name``."""
    where = _named(owner, name)
    if value is None and rule.optional or value in rule.special and not isinstance(value, bool):
        return value
    accepted = (int, float) if rule.kind is float else rule.kind
    if isinstance(value, bool) or not isinstance(value, accepted):
        if isinstance(value, numbers.Real if rule.kind is float else numbers.Integral) \
                and not isinstance(value, bool):  # a numpy or torch scalar: right number, but configs save as JSON
            raise WrongKindError(f"{where} must be a Python {rule.kind.__name__}, got {value!r} of type "
                                 f"{type(value).__name__}; pass {name}={rule.kind.__name__}(value).")
        raise WrongKindError(f"{where} must be {'a whole number' if rule.kind is int else 'a number'}, got {value!r} "
                             f"({type(value).__name__}); {'write it without quotes' if isinstance(value, str) else 'pass'}"
                             f", e.g. {name}={rule.example or 1}.")
    if not rule.contains(value):
        extra = f" or {', '.join(map(repr, rule.special))}" if rule.special else ""
        why = f" ({rule.why})" if rule.why else ""
        raise ValueError(f"{where}={value!r} is out of range: it must be {rule.range_text()}{extra}{why}, "
                         f"e.g. {name}={rule.example or rule.low}.")
    return value


def check_flag(owner: str, name: str, value) -> bool:
    """``value`` if it is a bool: ``"false"`` (a string) would be true."""
    if not isinstance(value, bool):
        raise WrongKindError(f"{_named(owner, name)} must be true or false, got {value!r} ({type(value).__name__}); write "
                        f"it without quotes, e.g. {name}=false.")
    return value


def check_choice(owner: str, name: str, value, choices: Sequence):
    if value not in choices:
        raise ValueError(f"{_named(owner, name)}={value!r} is not supported; choose one of {tuple(choices)}.")
    return value


def check_settings(owner: str, settings: object, rules: Mapping[str, Number | type | tuple]) -> None:
    """Check each named attribute of ``settings`` against its rule: a :class:`Number`, ``bool`` or a tuple of
    choices."""
    for name, rule in rules.items():
        value = getattr(settings, name)
        if isinstance(rule, Number):
            check_number(owner, name, value, rule)
        elif rule is bool:
            check_flag(owner, name, value)
        else:
            check_choice(owner, name, value, rule)


def warn_idle_settings(owner: str, settings: object, readers: Sequence[tuple[str, Callable[[object], bool], str]],
                       stacklevel: int = 3) -> None:
    """Warn of the settings of a dataclass ``settings`` that were given a value other than their default although
    nothing reads them under its other choices: a user who set one expects it to do something.

    Args:
        readers: ``(setting, whether the other choices read it, which choice does)`` rows, e.g.
            ``("lora_r", lambda c: c.target == "lora", "target='lora'")``.
    """
    defaults = {spec.name: spec.default if spec.default is not dataclasses.MISSING else spec.default_factory()
                for spec in dataclasses.fields(settings)}
    idle = [f"{name}={getattr(settings, name)!r} (read only with {reader})" for name, reads, reader in readers
            if getattr(settings, name) != defaults[name] and not reads(settings)]
    if idle:
        warnings.warn(f"{owner}: with the other settings given, nothing reads {'; '.join(idle)}. Drop it, or make "
                      "the choice that reads it.", UserWarning, stacklevel=stacklevel)


def repeated(values: Iterable) -> list:
    """The values that occur more than once, sorted: a list of labels or classes must name each once."""
    return sorted(value for value, count in Counter(values).items() if count > 1)


def check_distinct_columns(columns: Sequence[str], fix: str) -> None:
    """Refuse one column named for two roles (words and tags, text and label): each would be read as the other."""
    twice = repeated(columns)
    if twice:
        raise ValueError(f"The column {twice[0]!r} is named for two roles ({list(columns)}); {fix}.")


def check_string_list(owner: str, name: str, value, example: str) -> list[str]:
    """A list (or tuple) of strings, as a list; a bare string would be read as one item per character."""
    if isinstance(value, str) or not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise WrongKindError(f"{_named(owner, name)} must be a list of strings, e.g. {example}; got {value!r}.")
    return list(value)


def check_tag_sequences(owner: str, value) -> list[list[str]]:
    """Predicted or gold tags: a list of sentences, each a list of tag strings. A bare string or a flat list of tags
    would be read one character per tag."""
    example = "[['B-PER', 'I-PER', 'O']]"
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable):
        raise WrongKindError(f"{owner} takes a list of sentences' tags, e.g. {example}; got a {type(value).__name__}.")
    value = list(value)
    for index, tags in enumerate(value):
        if isinstance(tags, str) or not isinstance(tags, (list, tuple)) or not all(isinstance(t, str) for t in tags):
            raise WrongKindError(f"{owner}: sentence {index} is {tags!r:.60}, not a list of tag strings; pass one list "
                                 f"of tags per sentence, e.g. {example}.")
    return value


def check_input_ids(input_ids, vocab_size: int | None, whose: str) -> None:
    """Token ids as a model takes them: an integer tensor [batch, length] of ids in ``[0, vocab_size)`` (``whose``
    vocabulary, for the message). Out-of-range ids would fail deep in an embedding lookup, or read another row."""
    if not isinstance(input_ids, torch.Tensor) or input_ids.dtype not in (torch.int64, torch.int32):
        found = input_ids.dtype if isinstance(input_ids, torch.Tensor) else type(input_ids).__name__
        raise TypeError(f"input_ids must be an integer tensor [batch, length] from the tokenizer "
                        f"(return_tensors='pt'); got {found}.")
    if input_ids.dim() != 2:
        raise ValueError(f"input_ids must be [batch, length]; got shape {tuple(input_ids.shape)} "
                         "(a single sentence needs a batch dimension: input_ids[None]).")
    check_batch_shape(input_ids.shape)
    low, high = torch.aminmax(input_ids)
    if int(low) < 0 or (vocab_size and int(high) >= vocab_size):
        raise ValueError(f"input_ids hold ids outside {whose} vocabulary [0, {vocab_size}); use the model's own "
                         "tokenizer.")


def check_inputs_embeds(inputs_embeds, hidden_size: int | None) -> None:
    """Embeddings given instead of ids: a finite float tensor [batch, length, hidden_size]."""
    if not isinstance(inputs_embeds, torch.Tensor) or inputs_embeds.dim() != 3 or not \
            inputs_embeds.is_floating_point() or (hidden_size and inputs_embeds.size(-1) != hidden_size):
        found = (f"{inputs_embeds.dtype} {tuple(inputs_embeds.shape)}" if isinstance(inputs_embeds, torch.Tensor)
                 else type(inputs_embeds).__name__)
        raise ValueError(f"inputs_embeds must be a float tensor [batch, length, {hidden_size}] (the model's embedding "
                         f"size); got {found}.")
    check_finite_tensor(inputs_embeds, "inputs_embeds")


def check_batch_shape(shape) -> tuple[int, int]:
    """A batch's (sentences, length), refused when either is 0."""
    batch, length = tuple(shape[:2])
    if batch == 0:
        raise ValueError("The batch holds no sentences (batch size 0); pass at least one tokenized text.")
    if length == 0:
        raise ValueError("The inputs have length 0; a tokenized text has at least its special tokens.")
    return batch, length


def check_finite_tensor(tensor, name: str) -> None:
    """Refuse NaN or infinite values in a model input: they flow through as NaN scores, and an argmax of NaN scores
    is label 0, a clean-looking "O" for every token."""
    if not bool(torch.isfinite(tensor).all()):
        raise ValueError(f"{name} hold NaN or infinite values (first at {tuple(torch.nonzero(~torch.isfinite(tensor))[0].tolist())}); "
                         "every label would be scored NaN. Check how they were computed (or the weights that made them).")


def check_score(owner: str, name: str, value) -> float:
    """A metric score (F1, precision, ...): a finite real number. A NaN would compare as no change at all."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{owner}: {name} is {value!r}, not a finite number; pass the scores evaluate_tagger (or "
                         "the Trainer's evaluation) returned.")
    return float(value)


def check_save_directory(save_directory, where: str) -> Path:
    """The folder a model is saved to: a path that is not an existing file (transformers would log an error and
    save nothing)."""
    if not isinstance(save_directory, (str, os.PathLike)) or not str(save_directory):
        raise WrongKindError(f"{where}: save_directory must be a folder path; got {save_directory!r}.")
    path = Path(save_directory)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{where}: {str(path)!r} is a file, not a folder; save to a folder path (it is created if "
                         "missing).")
    return path


# ------------------------------------------------------------------ texts
def check_texts(texts, what: str, allow_words: bool = False, drop_blank: bool = False) -> list:
    """A non-empty list of sentences: strings (or, with ``allow_words``, lists of word strings). A bare string, a
    dict, a number or a blank sentence is refused, naming the first offending item: read as a sentence it would
    become characters, keys or nothing. With ``drop_blank``, blank sentences (a file's empty lines) are dropped."""
    if isinstance(texts, (str, bytes, Mapping)) or not isinstance(texts, Iterable):
        form = "strings or word lists" if allow_words else "strings"
        raise WrongKindError(f"{what} must be a list of sentences ({form}), e.g. ['John lives in Paris .']; got a "
                        f"{type(texts).__name__} (a bare string would be read as one sentence per character).")
    texts = list(texts)
    kept = []
    for index, text in enumerate(texts):
        words = allow_words and isinstance(text, (list, tuple))
        if words and not all(isinstance(word, str) and word.strip() for word in text):
            raise WrongKindError(f"{what}: sentence {index} ({text!r:.60}) holds non-string or blank words; pass words as "
                            "non-empty strings (not token ids: the tokenizer encodes them here).")
        if not words and not isinstance(text, str):
            raise WrongKindError(f"{what}: sentence {index} is a {type(text).__name__} ({text!r:.60}); each sentence must "
                            f"be a string{' or a list of word strings' if allow_words else ''}.")
        if text.strip() if isinstance(text, str) else text:
            kept.append(list(text) if words else text)
        elif not drop_blank:
            raise ValueError(f"{what}: sentence {index} is blank; remove it or give it words.")
    if not kept:
        raise ValueError(f"{what} is empty: pass at least one sentence with words.")
    return kept


def looks_like_conll_columns(lines: Sequence[str]) -> bool:
    """Whether most lines are a few columns ending in a BIO tag ("Paris NNP B-LOC"): labelled CoNLL data, not
    plain sentences."""
    tagged = sum(1 for line in lines if len(line.split()) <= 5 and re.search(r"\s(?:O|[BIES]-\S+)$", line.strip()))
    return len(lines) > 0 and tagged >= 0.8 * len(lines)


def refuse_conll_columns(sentences: Sequence, what: str) -> None:
    """Refuse plain text (``what``: the rehearsal text, a file, ...) whose lines are really labelled CoNLL columns: each
    "word tag" line would be read as a two-word sentence, the tags as words. Judged on the first 200 string lines."""
    lines = [sentence for sentence in sentences[:200] if isinstance(sentence, str)]
    if looks_like_conll_columns(lines):
        raise ValueError(f"{what} looks like labelled CoNLL columns (a word and its tag per line, e.g. {lines[0]!r}), "
                         "not plain text: give one sentence per line, without tags. Labelled data is training data.")


def refuse_one_word_lines(lines: Sequence[str], what: str) -> None:
    """Refuse a plain-text file (``what``) whose lines are single words, as in a CoNLL file without its tag column:
    each word would be read as a one-word sentence, with no context to tag it in. Judged on the first 200 non-blank
    lines, at least 10 of them, 90% of them one word."""
    lines = list(lines[:200])
    one_word = sum(len(line.split()) == 1 for line in lines)
    if len(lines) >= 10 and one_word >= 0.9 * len(lines):
        raise ValueError(f"{what}: {one_word} of its first {len(lines)} lines are a single word ({lines[:3]}...), as in a "
                         "CoNLL file without tags; write one sentence per line, its words separated by spaces.")


# ------------------------------------------------------------------ labels and type names
def entity_type_name(value, where: str, allow_outside: bool = False) -> str:
    """The one check of an entity type name (``PER``, ``politician``), used by ``label_parents``, ``rename_types``,
    ``--label_map``, metrics' ``type_parents`` and new labels: a non-empty string with no spaces and no ``B-`` /
    ``I-`` prefix, and not ``O`` (the outside tag) unless ``allow_outside``."""
    example = "'PER'"
    if not isinstance(value, str) or not value:
        raise ValueError(f"{where}: {value!r} is not an entity type name; use a bare name such as {example}.")
    if not _TYPE_NAME.match(value):
        raise ValueError(f"{where}: {value!r} is not an entity type name: type names have no spaces; use e.g. "
                         f"{example}.")
    if value[:2] in ("B-", "I-"):
        raise ValueError(f"{where}: {value!r} is a BIO label; name the entity type without B-/I- ({value[2:]!r}), "
                         f"e.g. {example}.")
    if value == "O" and not allow_outside:
        raise ValueError(f"{where}: 'O' is the outside tag, not an entity type; name a type such as {example}.")
    return value


def check_type_parents(owner: str, value, name: str = "type_parents") -> dict[str, str]:
    """A ``{subtype: parent type}`` mapping (``{"politician": "PER"}``) as a dict, each name an entity type; None is
    an empty one. A bare string or a list of names would be read as pairs of characters."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise WrongKindError(f"{owner}: {name} must be a dict of subtype -> the old type it refines, e.g. "
                             f"{{'politician': 'PER'}}; got {type(value).__name__} {value!r:.60}.")
    for child, parent in value.items():
        entity_type_name(child, f"{owner} {name}")
        entity_type_name(parent, f"{owner} {name} (the parent of {child!r})")
    return dict(value)


def check_bio_label(label: str, where: str) -> str:
    """A BIO label ``B-<type>`` / ``I-<type>`` whose type passes :func:`entity_type_name`."""
    if not isinstance(label, str) or label[:2] not in ("B-", "I-"):
        raise ValueError(f"{where}: {label!r} is not a BIO label; write 'B-<type>' and 'I-<type>', e.g. "
                         "['B-LOC', 'I-LOC'].")
    entity_type_name(label[2:], f"{where} {label!r}")
    return label


def check_bio_label_set(owner: str, name: str, labels) -> list[str]:
    """A label set in id order: 'O' once, and otherwise :func:`check_bio_label` labels, each once."""
    labels = check_string_list(owner, name, labels, "['O', 'B-PER', 'I-PER']")
    where = _named(owner, name)
    for label in labels:
        if label != "O":
            check_bio_label(label, where)
    twice = repeated(labels)
    if twice:
        raise ValueError(f"{where} names {twice} more than once; give each label once, in id order.")
    if "O" not in labels:
        raise ValueError(f"{where} {labels[:6]} lacks 'O', the tag of words outside every entity; add it (usually as "
                         "id 0).")
    return labels


def check_tag_case(tagged: Iterable[tuple[str, str]]) -> None:
    """Refuse tags whose types differ only in case ('B-PER' and 'B-per', or 'I-per' after 'B-PER'), which would be
    two types where one is meant; each tag comes with where it was found (``"train.txt: sentence 3"``)."""
    seen: dict[str, tuple[str, str, str]] = {}
    for tag, where in tagged:
        if tag == "O":  # outside every entity: not a type, so 'B-o' is no clash
            continue
        name = tag[2:] if tag[1:2] == "-" else tag  # the type a tag names: 'B-PER' -> 'PER'
        first, first_tag, first_where = seen.setdefault(name.casefold(), (name, tag, where))
        if first != name:
            raise ValueError(f"{where}: the tag {tag!r} differs only in case from {first_tag!r} ({first_where}) in "
                             f"its type ({name!r}, {first!r}), so they would be two types. Write every tag of a type "
                             "the same way.")


# ------------------------------------------------------------------ data sets and tokenizers
def check_columns(dataset, required: Sequence[str], where: str, fix: str):
    """Refuse a ``datasets.Dataset`` that lacks ``required`` columns, naming what it has. A streaming
    ``IterableDataset`` is refused too: what takes a data set here reads it whole or row by row (caches per row,
    scores, class indices), which a stream cannot give (it failed on ``len()``).

    Returns the data set as Python objects (``with_format(None)``), which the caller reads: under a
    ``with_format("torch" / "numpy" / "pandas")`` the columns are tensors or arrays, whose truth value and equality
    are ambiguous ("Boolean value of Tensor with more than one value is ambiguous")."""
    if isinstance(dataset, IterableDataset):
        raise WrongKindError(f"{where} is a streaming datasets.IterableDataset; this needs a map-style datasets.Dataset "
                             "(read whole, row by row). Load it without streaming=True, or materialise the rows you "
                             "need: Dataset.from_list(list(stream.take(n))).")
    names = getattr(dataset, "column_names", None)
    if not isinstance(names, list):
        raise WrongKindError(f"{where} must be a datasets.Dataset, got {type(dataset).__name__}; {fix}.")
    missing = [c for c in required if c not in names]
    if missing:
        raise ValueError(f"{where} lacks columns {missing} (it has {names}); {fix}.")
    if len(dataset) == 0:
        raise ValueError(f"{where} is empty (0 rows); pass data with at least one example.")
    return dataset if dataset.format["type"] is None else dataset.with_format(None)


def check_tokenizer(tokenizer, where: str) -> None:
    """A loaded tokenizer, not its name, ``None`` or a model: each failed later as an AttributeError far from here."""
    if not callable(tokenizer) or not hasattr(tokenizer, "get_vocab"):
        load = " Load it first." if isinstance(tokenizer, (str, os.PathLike)) else ""
        raise WrongKindError(f"{where} needs the model's tokenizer (AutoTokenizer.from_pretrained(<model folder>)); got "
                             f"{type(tokenizer).__name__} {tokenizer!r:.60}.{load}")


def check_model(model, where: str) -> None:
    """A loaded transformers model (a torch module with a ``config``), not its Hub id or folder: a name failed later
    as "'str' object has no attribute 'training'"."""
    if not isinstance(model, torch.nn.Module) or not hasattr(model, "config"):
        load = (" Load it first: AutoModelForTokenClassification.from_pretrained(...) (or "
                "NeuralAdapterModel.from_pretrained(source, adapter_folder))."
                if isinstance(model, (str, os.PathLike)) else "")
        raise WrongKindError(f"{where} needs a loaded model; got {type(model).__name__} {model!r:.60}.{load}")


def check_tokenizer_matches(config, tokenizer, where: str, saved_with: str | Path | None = None) -> None:
    """The one tokenizer-identity check (rehearsal, consolidation, caching, loading): ``tokenizer`` must be the
    model's own, else its ids would be read as other words, silently. Checked against the model's vocabulary size
    and, when ``saved_with`` is a folder holding a tokenizer, against that tokenizer's vocabulary."""
    check_tokenizer(tokenizer, where)
    vocab_size = getattr(config, "vocab_size", None)
    if vocab_size and len(tokenizer) > vocab_size:
        raise ValueError(f"{where}: the tokenizer has {len(tokenizer)} tokens but the model's vocabulary has "
                         f"{vocab_size}: it is not the model's tokenizer. Load the one saved with the model "
                         "(AutoTokenizer.from_pretrained(<model folder>)).")
    folder = Path(str(saved_with or ""))
    if saved_with and (folder / "tokenizer.json").is_file():
        if AutoTokenizer.from_pretrained(folder).get_vocab() != tokenizer.get_vocab():
            raise ValueError(f"{where}: this tokenizer's vocabulary differs from the one saved with the model in "
                             f"{folder}; use that one: AutoTokenizer.from_pretrained({str(folder)!r}).")


def check_encoded_by(dataset, tokenizer, where: str, rows: int = 8) -> None:
    """A dataset that already carries ``input_ids`` must have been encoded by ``tokenizer``: its ``tokens``, re-encoded,
    give the same ids (windows of long sentences are skipped), and no id lies outside the vocabulary."""
    if "input_ids" not in getattr(dataset, "column_names", []):
        return
    sample = dataset.select(range(min(rows, len(dataset))))
    largest = max((max(ids) for ids in sample["input_ids"] if ids), default=0)
    if largest >= len(tokenizer):
        raise ValueError(f"{where} holds token id {largest}, beyond this tokenizer's {len(tokenizer)} tokens: it was "
                         "encoded by another tokenizer. Pass the words and let the model's tokenizer encode them.")
    if "tokens" not in sample.column_names:
        return
    for row in sample:
        if row.get("word_offset"):
            continue  # a later window of a long sentence: its words start mid-sentence
        expected = tokenizer(row["tokens"], is_split_into_words=True)["input_ids"]
        if row["input_ids"] != expected:
            raise ValueError(
                f"{where}: its input_ids were not made by this model's tokenizer (re-encoding its tokens gives "
                f"{expected[:8]}..., the dataset holds {row['input_ids'][:8]}...). Pass the words (a 'tokens' column "
                "or plain sentences) and let the model's tokenizer encode them.")


# ------------------------------------------------------------------ training arguments
TRAINING_NUMBERS = {
    "learning_rate": Number(float, 0, low_open=True, example="5e-5", why="at 0 nothing would train"),
    "num_train_epochs": Number(float, 0, low_open=True, example="3", why="at 0 nothing would train"),
    "max_steps": Number(int, 1, special=(-1,), example="500", why="-1 trains for num_train_epochs"),
    "warmup_steps": Number(float, 0, example="50", why="a value below 1 is a share of the training steps"),
    "logging_steps": Number(float, 0, low_open=True, example="50", why="a value below 1 is a share of the steps"),
    "eval_delay": Number(float, 0, example="0"),
    "per_device_train_batch_size": POSITIVE_INT,
    "per_device_eval_batch_size": POSITIVE_INT,
    "gradient_accumulation_steps": Number(int, 1, example="2"),
    "weight_decay": Number(float, 0, example="0.01"),
    "max_grad_norm": Number(float, 0, example="1.0", why="0 turns clipping off", optional=True),
    "adam_beta1": Number(float, 0, 1, high_open=True, example="0.9"),
    "adam_beta2": Number(float, 0, 1, high_open=True, example="0.999"),
    "adam_epsilon": Number(float, 0, low_open=True, example="1e-8", why="at 0 a zero gradient divides 0 by 0"),
    "label_smoothing_factor": Number(float, 0, 1, high_open=True, example="0.1"),
    "seed": SEED,
    "dataloader_num_workers": COUNT,
    "save_total_limit": Number(int, 1, optional=True, example="2", why="leave it out to keep every checkpoint"),
}


def check_training_arguments(args) -> None:
    """Refuse ``TrainingArguments`` values that transformers accepts but that train nothing, silently (a learning
    rate or epoch count of 0, a batch of 0, negative accumulation), or that give NaN (``adam_epsilon=0``). Named as
    the command line spells them (``--learning_rate``)."""
    check_settings(CLI, args, {name: rule for name, rule in TRAINING_NUMBERS.items() if hasattr(args, name)})
    if getattr(args, "max_steps", -1) == -1 and not math.isfinite(args.num_train_epochs):
        raise ValueError(f"--num_train_epochs={args.num_train_epochs} never ends; give a finite number of epochs or "
                         "--max_steps.")
    # Any other number transformers takes (a noise scale, a timeout, a step interval) is meaningless as NaN or
    # infinity; refuse the whole class, not only the fields named above.
    for field in dataclasses.fields(args) if dataclasses.is_dataclass(args) else ():
        value = getattr(args, field.name, None)
        if field.name != "num_train_epochs" and isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"--{field.name}={value} is not a finite number; give a real value, e.g. the default "
                             f"--{field.name} {field.default}.")
    for name in ("eval_steps", "save_steps"):
        value = getattr(args, name, None)
        if name == "eval_steps" and value == 0:
            continue  # transformers reads it as unset and evaluates every logging_steps
        if value is not None and not (isinstance(value, (int, float)) and value > 0 and math.isfinite(value)):
            raise ValueError(f"--{name}={value!r} is out of range: it must be > 0 (a step count, or a share of the "
                             f"training steps below 1), e.g. --{name} 500.")
    evaluate_every, save_every = getattr(args, "eval_steps", None), getattr(args, "save_steps", None)
    unset = not evaluate_every  # transformers then evaluates every --logging_steps
    if unset:
        evaluate_every = getattr(args, "logging_steps", None)
    if (getattr(args, "load_best_model_at_end", False) and args.eval_strategy == args.save_strategy == "steps"
            and evaluate_every and save_every and evaluate_every >= 1 and save_every >= 1
            and save_every % evaluate_every != 0):
        interval = (f"--eval_steps (unset, so --logging_steps: {evaluate_every:g})" if unset
                    else f"--eval_steps ({evaluate_every:g})")
        raise ValueError(f"--load_best_model_at_end keeps the best of the saved checkpoints, so --save_steps "
                         f"({save_every:g}) must be a multiple of {interval}, e.g. both 200.")
    schedule = getattr(getattr(args, "lr_scheduler_type", None), "value", getattr(args, "lr_scheduler_type", None))
    if getattr(args, "warmup_steps", 0) and schedule in ("constant", "reduce_lr_on_plateau"):
        warnings.warn(f"--warmup_steps {args.warmup_steps:g} does nothing under --lr_scheduler_type {schedule}, which "
                      "never warms up: use --lr_scheduler_type constant_with_warmup (or a decaying schedule such as "
                      "linear), or drop --warmup_steps.", UserWarning, stacklevel=3)
    chosen_on = (getattr(args, "metric_for_best_model", None) or "loss").removeprefix("eval_")
    if getattr(args, "prediction_loss_only", False) and getattr(args, "load_best_model_at_end", False) \
            and chosen_on != "loss":
        raise ValueError(f"--prediction_loss_only computes no metric at evaluation, so --metric_for_best_model "
                         f"{chosen_on} could never be read (transformers fails at the first evaluation): drop "
                         "--prediction_loss_only, or choose on --metric_for_best_model loss.")


def check_label_names(model, args) -> None:
    """Refuse ``label_names`` other than the ones ``model.forward`` reads: Trainer would hold back no labels and look
    for columns the batches do not have (it failed with "Target 7 is out of bounds")."""
    own_labels = find_labels(type(model))  # what Trainer holds back as labels by default
    if args.label_names is not None and list(args.label_names) != own_labels:
        raise ValueError(f"--label_names={args.label_names}: {type(model).__name__} reads its labels from "
                         f"{own_labels}; leave --label_names unset.")


def check_trainer_columns(model, args, datasets: Mapping[str, object]) -> None:
    """Refuse Trainer flags that change which dataset columns reach ``model.forward``: ``label_names`` other than the
    model's own (Trainer would then hold back no labels, and look for labels the batches do not have), and
    ``remove_unused_columns=False`` with columns that ``forward`` does not take (``tokens``, ``ner_tags``, ...).

    Args:
        datasets: the datasets the trainer reads, by the name messages give them (``{"train": ..., "eval": ...}``).
    """
    check_label_names(model, args)
    accepted = inspect.signature(model.forward).parameters
    if args.remove_unused_columns:
        return
    for name, dataset in datasets.items():
        extra = [column for column in getattr(dataset, "column_names", None) or () if column not in accepted]
        if extra:
            raise ValueError(f"--remove_unused_columns false passes every column to the model, and the {name} dataset "
                             f"has columns {extra} that {type(model).__name__}.forward does not take. Leave "
                             f"--remove_unused_columns at its default (true), or drop them first "
                             f"(dataset.remove_columns({extra})).")


@dataclass
class CheckedTrainingArguments(TrainingArguments):
    """`TrainingArguments` whose numbers are checked (`check_training_arguments`) before transformers' own
    ``__post_init__`` reads them: some values it takes silently (``learning_rate=0``), others it fails on with an
    error that names no option (``logging_steps=inf``: "cannot convert float infinity to integer"). Without an
    accelerator, batches are not pinned (``dataloader_pin_memory``): pinning does nothing there but make every
    DataLoader warn."""

    def __post_init__(self):
        check_training_arguments(self)
        if not torch.accelerator.is_available():
            self.dataloader_pin_memory = False
        super().__post_init__()


def check_finite_loss(loss: float, fix: str) -> None:
    """Refuse to go on after a training run whose loss is NaN or infinite: its weights are garbage."""
    if loss is not None and not math.isfinite(loss):
        raise ValueError(f"Training diverged (training loss {loss}); nothing it learned can be used. {fix}")
