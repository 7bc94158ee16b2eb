"""Labelled `datasets.Dataset` → episode datasets: a sampler over its labels, and features encoded once.

``text`` + ``label`` rows give sequence-level episodes (intents); ``tokens`` + IO ``tags`` rows give token-level
episodes (few-shot NER). `SemiSupervisedMetaTrainer` calls `build_episodes` from its dataloader methods, so a
dataset is encoded when it is first used, never while the trainer is being set up.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass

from ..validation import check_columns, check_model, repeated
from .episodes import EpisodeSampler, SequenceEpisodes, TextEpisodes, TokenEpisodes, TokenEpisodeSampler
from .features import encode_texts, encode_words
from .label_names import encode_label_names, names_say_something

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EpisodeColumns:
    """Which columns hold the texts and labels (sequence level) or the words and IO tags (token level)."""

    text: str = "text"
    label: str = "label"
    tokens: str = "tokens"
    tags: str = "tags"


def string_tags(data, column: str) -> list[list[str]]:
    """Each sentence's tags as type names ("O" outside), from a ClassLabel sequence or plain strings."""
    names = getattr(getattr(data.features[column], "feature", None), "names", None)
    return [[names[t] for t in tags] if names else list(tags) for tags in data[column]]


def label_column_names(data, columns: EpisodeColumns) -> list[str] | None:
    """The names of ``data``'s label column by class id (its ClassLabel feature), or None for bare ids."""
    return getattr(data.features.get(columns.label), "names", None)


def class_names(data, config, columns: EpisodeColumns) -> set[str] | None:
    """The classes ``data`` holds by name (a ClassLabel's names, string labels, or token-level entity types), or
    None where its labels are bare ids, which may be numbered per split and so say nothing across datasets."""
    if config.level == "token":
        return {t for sentence in string_tags(data, columns.tags) for t in sentence if t != "O"}
    labels = set(data[columns.label])
    names = label_column_names(data, columns)
    if names:
        return {names[label] for label in labels}
    return labels if all(isinstance(label, str) for label in labels) else None


def episode_sampler(data, config, k_shot: int, n_query: int, seed: int, columns: EpisodeColumns, name: str,
                    uneven_queries: float = 0.0, ways: tuple[int, int] | None = None, natural_queries: float = 0.0):
    """The episode sampler over ``data``'s labels; raises a ValueError naming the problem when ``data`` cannot
    give ``config.n_way``-way ``k_shot``-shot episodes. Cheap: nothing is encoded. ``uneven_queries`` /
    ``natural_queries``: the shares of (sequence-level) episodes whose query set is uneven / a natural pool
    (`EpisodeSampler`); ``ways``: (fewest, most) classes per episode, drawn
    per episode (default: ``n_way`` each, `EpisodeSampler`)."""
    if ways is not None and ways != (config.n_way, config.n_way) and not config.any_number_of_classes:
        raise ValueError(f"Episodes of {ways[0]}..{ways[1]} classes (min/max_train_ways), but this model "
                         f"(grad_net='fixed') serves exactly n_way={config.n_way} classes. Use grad_net='equivariant' "
                         "or drop max_train_ways.")
    if ways is not None and config.level == "token":
        raise ValueError("max_train_ways applies to sequence-level episodes; token-level episodes are n_way-way.")
    needed = (columns.tokens, columns.tags) if config.level == "token" else (columns.text, columns.label)
    data = check_columns(data, needed, f"The {name} dataset",
                         f"a {config.level}-level SIB needs {list(needed)}: rename them or pass the column names")
    if config.level == "token":
        tags = string_tags(data, columns.tags)
        types = sorted({t for sentence in tags for t in sentence if t != "O"})
        return TokenEpisodeSampler(tags, types, config.n_way, k_shot, seed)
    labels = list(data[columns.label])
    missing = next((row for row, label in enumerate(labels) if label is None), None)
    if missing is not None:  # failed in sorting the classes: "'<' not supported between 'NoneType' and 'int'"
        raise ValueError(f"The {name} dataset's {columns.label!r} column has no label in row {missing} (None); every "
                         "example needs its class. Drop the unlabelled rows (dataset.filter(lambda row: "
                         f"row[{columns.label!r}] is not None)).")
    named = next((label for label in labels if isinstance(label, str)), None)
    if named is not None:  # failed deep in the sampler with "invalid literal for int()"
        raise ValueError(f"The {name} dataset's {columns.label!r} column holds label names ({named!r}); episodes take "
                         f"class ids. Encode them first: dataset = dataset.class_encode_column({columns.label!r}) "
                         "(the names are kept in its ClassLabel feature).")
    names = label_column_names(data, columns)
    fewest, most = ways or (config.n_way, config.n_way)
    classes = len(set(labels))
    if classes < 2:
        raise ValueError(f"The {name} dataset holds {classes} class; an episode chooses between at least 2. Give it "
                         "more classes.")
    if ways is not None:  # mixed sizes: as many as the split holds, at most
        most = min(most, classes)
        fewest = min(fewest, most)
    elif classes < config.n_way and config.any_number_of_classes and name != "train":
        # a small evaluation split (a user's 12 intents split 60/20/20 leaves 2-3 per split): all of its classes
        # at once, which a model that serves any number of labels can be scored on
        fewest = most = classes
        logger.warning("The %s dataset holds %d classes, fewer than n_way=%d: its episodes are %d-way (all of them).",
                       name, classes, config.n_way, classes)
    elif classes < config.n_way:
        raise ValueError(f"The {name} dataset holds {classes} classes, fewer than n_way={config.n_way}: lower n_way "
                         "(--n_way), or give it more classes (--split_fractions or the class lists)"
                         + ("." if name == "train" or config.any_number_of_classes else
                            "; a model with grad_net='equivariant' is scored on small splits with all their classes."))
    return EpisodeSampler(labels, sorted(set(labels)), fewest, k_shot, n_query, seed, names, uneven_queries, most,
                          natural_queries)


def build_episodes(data, model, tokenizer, k_shot: int, n_query: int, seed: int, num_episodes: int,
                   columns: EpisodeColumns | None = None, name: str = "train", uneven_queries: float = 0.0,
                   ways: tuple[int, int] | None = None, natural_queries: float = 0.0):
    """``num_episodes`` episodes over a labelled dataset, with the frozen backbone's features computed once
    (texts are tokenized per episode instead when the backbone is trained)."""
    if tokenizer is None:
        raise ValueError("Pass processing_class=<the backbone's tokenizer> so the trainer can encode the texts.")
    check_model(model, "build_episodes")
    columns = columns or EpisodeColumns()
    sampler = episode_sampler(data, model.config, k_shot, n_query, seed, columns, name, uneven_queries, ways,
                              natural_queries)
    if model.config.level == "token":
        features = encode_words(model, tokenizer, data[columns.tokens], desc=f"Encoding {name}")
        return TokenEpisodes(features, sampler, num_episodes)
    if name != "train":
        warn_repeated_texts(data[columns.text], name)
    if not model.config.freeze_backbone:
        return TextEpisodes(list(data[columns.text]), tokenizer, sampler, num_episodes)
    features = encode_texts(model, tokenizer, data[columns.text], desc=f"Encoding {name}")
    return SequenceEpisodes(features, sampler, num_episodes, label_name_features(data, model, tokenizer, columns, name))


def warn_repeated_texts(texts, name: str) -> None:
    """Warn when texts that episodes are scored on occur more than once: an episode may draw one copy as a labelled
    example and another as a query, which is then solved by copying, and the accuracy comes out optimistic."""
    twice = repeated(" ".join(str(text).split()) for text in texts)
    if twice:
        logger.warning("The %s dataset holds %d texts more than once (e.g. %r): an episode may draw one copy as a "
                       "labelled example and another as a query, so its accuracy comes out optimistic. Drop the "
                       "repeats (dataset.unique(...) or pandas' drop_duplicates) for an honest estimate.", name,
                       len(twice), twice[0])


def label_name_features(data, model, tokenizer, columns: EpisodeColumns, name: str):
    """The features of ``data``'s label names by class id, for a model that reads them
    (``SIBConfig(use_label_names=True)``); None, with a warning, where its labels are bare ids."""
    if not model.config.use_label_names:
        return None
    names = label_column_names(data, columns)
    if not names:
        warnings.warn(f"The {name} dataset's {columns.label!r} column holds bare class ids, so this model "
                      "(use_label_names=True) meets its classes without their names. Give the column a ClassLabel "
                      f"feature (dataset.cast_column({columns.label!r}, ClassLabel(names=[...]))).", UserWarning,
                      stacklevel=3)
        return None
    if not names_say_something(names):
        logger.info("The %s dataset's label names are bare numbers (%s, ...): classifying from the examples alone.",
                    name, ", ".join(names[:3]))
        return None
    return encode_label_names(model, tokenizer, names)
