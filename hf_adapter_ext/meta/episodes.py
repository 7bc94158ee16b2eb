"""Episodes: N-way K-shot support + query sets, sampled deterministically or read from Few-NERD files.

Episode ``i`` of a sampler with seed ``s`` depends only on ``(s, i)``: runs are reproducible, a resumed
run continues with the same episodes, and processes that take different indices see different episodes.
"""

from __future__ import annotations

import copy
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import torch
from torch.utils.data import Dataset as TorchDataset

from ..constants import IGNORE_INDEX
from ..data.text_files import numbered_lines
from ..validation import (
    POSITIVE_INT,
    SEED,
    Number,
    WrongKindError,
    check_finite_tensor,
    check_number,
    check_settings,
    check_string_list,
    check_tag_sequences,
    repeated,
)

LEVELS = ("sequence", "token")  # what an episode's examples are: texts (intents) or words in sentences (entities)
_SAMPLER_RULES = {"n_way": Number(int, 2, example="5"), "k_shot": Number(int, 1, example="1"),
                  "n_query": Number(int, 1, example="15"), "seed": SEED,
                  "uneven_queries": Number(float, 0, 1, example="0.5", why="a share of episodes"),
                  "max_ways": Number(int, 2, optional=True, example="20"),
                  "natural_queries": Number(float, 0, 1, example="0.5", why="a share of episodes (True: all)")}


def episode_rng(seed: int, index: int) -> np.random.Generator:
    """The random stream of episode ``index``: a counter-based Philox keyed by (seed, index), cheap to create."""
    return np.random.Generator(np.random.Philox(key=[seed & 0xFFFFFFFFFFFFFFFF, index]))


@dataclass
class Episode:
    """Indices into a pool of examples (sequence level) or sentences (token level), and episode labels."""

    classes: list  # the episode's classes, in label-id order
    support: np.ndarray
    support_labels: np.ndarray | list
    query: np.ndarray
    query_labels: np.ndarray | list


class EpisodeSampler:
    """N-way K-shot episodes with ``n_query`` queries per class, from integer class labels.

    Only the classes in ``classes`` are used (the meta-train, -validation or -test split).

    Args:
        n_way: classes per episode; with ``max_ways``, the fewest.
        max_ways: draw each episode's class count uniformly from ``n_way..max_ways`` (None: always ``n_way``), so
            a model meta-trained on them serves tasks of any size. ``len(classes)`` is the all-way task.
        uneven_queries: the share of episodes (1.0 = all) whose classes each keep a random 1..``n_query`` of their
            queries; the episode is otherwise the same (classes and support set do not change). A user's
            unlabelled set rarely holds every class equally, and a model meta-trained on even query sets only
            learns to expect them.
        natural_queries: the share of episodes (``True``: all) that instead draw their ``n_query * n`` queries at
            once from all the remaining examples of their classes, so that each class gets queries as often as
            the data holds it (a class may get none): the unlabelled pool a user has. With both shares, an
            episode is natural, uneven or even with probabilities ``natural_queries``, ``uneven_queries`` and the
            rest, so the two shares may sum to at most 1.
    """

    def __init__(self, labels: Sequence[int], classes: Sequence[int], n_way: int, k_shot: int, n_query: int,
                 seed: int = 0, class_names: Sequence[str] | None = None, uneven_queries: float = 0.0,
                 max_ways: int | None = None, natural_queries: float | bool = 0.0):
        if isinstance(natural_queries, bool):  # True / False: every episode / none
            natural_queries = float(natural_queries)
        check_settings("EpisodeSampler", SimpleNamespace(n_way=n_way, k_shot=k_shot, n_query=n_query, seed=seed,
                                                         uneven_queries=uneven_queries, max_ways=max_ways,
                                                         natural_queries=natural_queries), _SAMPLER_RULES)
        if isinstance(labels, (str, bytes)) or isinstance(classes, (str, bytes)):
            raise TypeError("EpisodeSampler: labels and classes are sequences of class ids, not a string.")
        labels, classes = np.asarray(labels), np.asarray(classes)
        odd = next((ids for ids in (labels, classes) if ids.size and ids.dtype.kind not in "iu"), None)
        if odd is not None:  # names or floats: compared with class ids, they would match nothing or the wrong class
            raise WrongKindError(f"EpisodeSampler: labels and classes must be integer class ids (a ClassLabel "
                                 f"column's ids); got {odd.dtype} values such as {odd.flat[0]!r}. Map names to ids "
                                 "first, e.g. dataset.class_encode_column('label').")
        listed_twice = [int(c) for c in repeated(classes)]
        if listed_twice:
            raise ValueError(f"EpisodeSampler: classes {listed_twice} are listed more than once; an episode could then "
                             "take one class as two. List each class id once (e.g. sorted(set(classes))).")
        self.classes = np.asarray(sorted(classes))
        self.n_way, self.k_shot, self.n_query, self.seed = n_way, k_shot, n_query, seed
        self.max_ways = n_way if max_ways is None else max_ways
        self.uneven_queries, self.natural_queries = float(uneven_queries), float(natural_queries)
        if self.max_ways < n_way:
            raise ValueError(f"EpisodeSampler: max_ways={max_ways} is below n_way={n_way}; give max_ways >= n_way "
                             "(or None for n_way-way episodes only).")
        if self.natural_queries + self.uneven_queries > 1.0 + 1e-9:  # 1e-9: 0.7 + 0.3 may round above 1
            raise ValueError(f"EpisodeSampler: natural_queries={natural_queries} and uneven_queries={uneven_queries} "
                             "are shares of the same episodes (natural, uneven, and even for the rest), so they sum "
                             "to at most 1; lower one of them.")
        if len(self.classes) < self.max_ways:
            raise ValueError(f"{self.max_ways}-way episodes need at least {self.max_ways} classes; this split has "
                             f"{len(self.classes)}. Lower n_way (--n_way; max_train_ways if set), or give this split "
                             "more classes (--split_fractions or the class lists).")
        self.by_class = {int(c): np.flatnonzero(labels == c) for c in self.classes}
        needed = k_shot + n_query
        short = {int(c): len(ix) for c, ix in self.by_class.items() if len(ix) < needed}
        if short:
            named = {(class_names[c] if class_names else c): n for c, n in short.items()}
            fewest = min(short.values())
            fix = (f"n_query={fewest - k_shot} fits every class; the smallest has {fewest}" if fewest > k_shot else
                   f"the smallest class has {fewest}, too few even for k_shot={k_shot} and one query")
            raise ValueError(
                f"{len(named)} class(es) have fewer than k_shot + n_query = {needed} examples: "
                f"{dict(list(named.items())[:10])}{' ...' if len(named) > 10 else ''}; lower k_shot/n_query "
                f"({fix}) or drop those classes from the split."
            )

    def __call__(self, index: int) -> Episode:
        rng = episode_rng(self.seed, index)
        ways = self.n_way if self.max_ways == self.n_way else int(rng.integers(self.n_way, self.max_ways + 1))
        classes = self.classes[rng.permutation(len(self.classes))[:ways]]
        # the coin is drawn only when episodes are mixed, so all-natural and never-natural streams stay as they were
        kind = rng.random() if 0.0 < self.natural_queries < 1.0 else None
        if self.natural_queries >= 1.0 or (kind is not None and kind < self.natural_queries):
            return self._natural(rng, classes)
        support, query = [], []
        for c in classes:
            pool = self.by_class[int(c)]
            picked = pool[rng.permutation(len(pool))[: self.k_shot + self.n_query]]
            support.append(picked[: self.k_shot])
            query.append(picked[self.k_shot :])
        counts = np.full(ways, self.n_query)
        # drawn after the even episode, so that episode stays as it was (and a share of 1 draws no coin); in a mixed
        # stream the one coin decides: natural below natural_queries, then uneven for the next uneven_queries
        uneven = (kind < self.natural_queries + self.uneven_queries if kind is not None
                  else self.uneven_queries >= 1.0 or (self.uneven_queries and rng.random() < self.uneven_queries))
        if uneven:
            counts = rng.integers(1, self.n_query + 1, size=ways)
            query = [q[:n] for q, n in zip(query, counts)]
        return Episode(
            classes=[int(c) for c in classes],
            support=np.concatenate(support), support_labels=np.repeat(np.arange(ways), self.k_shot),
            query=np.concatenate(query), query_labels=np.repeat(np.arange(ways), counts),
        )

    def _natural(self, rng: np.random.Generator, classes: np.ndarray) -> Episode:
        """K support examples per class, then ``n_query`` per class on average, drawn from the classes' other
        examples at once (so as often as the data holds each class)."""
        support, rest, rest_labels = [], [], []
        for way, c in enumerate(classes):
            pool = self.by_class[int(c)][rng.permutation(len(self.by_class[int(c)]))]
            support.append(pool[: self.k_shot])
            rest.append(pool[self.k_shot :])
            rest_labels.append(np.full(len(pool) - self.k_shot, way))
        rest, rest_labels = np.concatenate(rest), np.concatenate(rest_labels)
        picked = np.sort(rng.permutation(len(rest))[: self.n_query * len(classes)])
        return Episode(classes=[int(c) for c in classes], support=np.concatenate(support),
                       support_labels=np.repeat(np.arange(len(classes)), self.k_shot),
                       query=rest[picked], query_labels=rest_labels[picked])


class _SampledEpisodes(TorchDataset):
    """``num_episodes`` episodes drawn by ``sampler`` over a fixed set of examples."""

    sampler: EpisodeSampler
    num_episodes: int
    examples: Sequence  # what the sampler's example indices point into (features or texts)

    def __len__(self) -> int:
        return self.num_episodes

    def with_sampler(self, sampler: EpisodeSampler, num_episodes: int):
        """Episodes of the same examples (features encoded once, as here) drawn by another sampler."""
        other = copy.copy(self)
        other.sampler, other.num_episodes = sampler, num_episodes
        other._check()
        return other

    def _check(self) -> None:
        """Refuse an episode count that is not a positive whole number, and examples that are not one per label the
        sampler draws from (an index past them would fail later, mid-training, or pick another example)."""
        name, rows = type(self).__name__, len(self.examples)
        check_number(name, "num_episodes", self.num_episodes, POSITIVE_INT)
        labelled = sum(len(ix) for ix in self.sampler.by_class.values())
        largest = max((int(ix.max()) for ix in self.sampler.by_class.values() if len(ix)), default=-1)
        if largest >= rows:
            raise ValueError(f"{name}: the sampler draws example {largest}, but there are only {rows} examples "
                             f"({labelled} labelled in its classes). Give the sampler the labels of exactly these "
                             "examples, in the same order.")


class SequenceEpisodes(_SampledEpisodes):
    """A fixed number of episodes over cached per-example features ([N, D]); item = one episode's tensors.

    Args:
        class_features: [classes, D] features of the label names by class id (`encode_label_names`), or None.
            Given, each episode also holds ``class_name_features``, its classes' rows in episode order, which a
            model with ``SIBConfig(use_label_names=True)`` reads as one more labelled example per class.
    """

    def __init__(self, features: torch.Tensor, sampler: EpisodeSampler, num_episodes: int,
                 class_features: torch.Tensor | None = None):
        if not torch.is_tensor(features) or features.dim() != 2:
            raise ValueError("SequenceEpisodes needs the examples' features as one [examples, dim] tensor "
                             f"(encode_texts(...)); got {getattr(features, 'shape', type(features).__name__)}.")
        if class_features is not None:
            largest = max(int(c) for c in sampler.by_class)  # the class ids the sampler draws from
            if not torch.is_tensor(class_features) or class_features.dim() != 2 \
                    or class_features.size(0) <= largest or class_features.size(1) != features.size(1):
                raise ValueError(f"SequenceEpisodes: class_features must be [classes, {features.size(1)}], one row "
                                 f"per class id up to {largest} (encode_label_names(model, tokenizer, names)); got "
                                 f"{getattr(class_features, 'shape', type(class_features).__name__)}.")
            check_finite_tensor(class_features, "SequenceEpisodes: the class_features")
        check_finite_tensor(features, "SequenceEpisodes: the features")  # else NaN scores, argmax class 0
        self.features = self.examples = features
        self.class_features = class_features
        self.sampler, self.num_episodes = sampler, num_episodes
        self._check()

    def __getitem__(self, index: int) -> dict:
        episode = self.sampler(index)
        # index_select: the same rows as ``features[ix]``, 3-10x faster on CPU (most of the sampling time of a step)
        device = self.features.device
        return {
            "support_features": self.features.index_select(0, torch.as_tensor(episode.support, device=device)),
            "support_labels": torch.as_tensor(episode.support_labels),
            "query_features": self.features.index_select(0, torch.as_tensor(episode.query, device=device)),
            "query_labels": torch.as_tensor(episode.query_labels),
            "episode_index": torch.tensor(index),
            **({} if self.class_features is None else {"class_name_features": self.class_features.index_select(
                0, torch.as_tensor(episode.classes, device=self.class_features.device))}),
        }


class TextEpisodes(_SampledEpisodes):
    """Episodes of tokenized texts, for training with a backbone that is fine-tuned (no feature cache)."""

    def __init__(self, texts: Sequence[str], tokenizer, sampler: EpisodeSampler, num_episodes: int,
                 max_length: int = 64):
        self.texts = self.examples = list(texts)
        self.tokenizer, self.sampler = tokenizer, sampler
        self.num_episodes, self.max_length = num_episodes, max_length
        self._check()

    def __getitem__(self, index: int) -> dict:
        episode = self.sampler(index)
        item = {"episode_index": torch.tensor(index)}
        for part in ("support", "query"):
            encoded = self.tokenizer([self.texts[i] for i in getattr(episode, part)], padding="max_length",
                                     padding_side="right", truncation=True, max_length=self.max_length,
                                     return_tensors="pt")  # right: as encode_texts pads
            item[f"{part}_input_ids"] = encoded["input_ids"]
            item[f"{part}_attention_mask"] = encoded["attention_mask"]
            item[f"{part}_labels"] = torch.as_tensor(getattr(episode, f"{part}_labels"))
        return item


# ---------------------------------------------------------------- token level (Few-NERD format)
_IO_HINT = ("Few-NERD-style episodes take IO tags: the entity type's name on every word of a mention ('person'), "
            "'O' elsewhere.")


def sentence_types(tags: Sequence[str]) -> Counter:
    """Entity mentions per type in an IO-tagged sentence (a run of equal non-O tags is one mention)."""
    counts, previous = Counter(), "O"
    for tag in tags:
        if tag != "O" and tag != previous:
            counts[tag] += 1
        previous = tag
    return counts


def greedy_nway_kshot(sentence_mentions: Sequence[Counter], types: Sequence[str], k: int,
                      rng: np.random.Generator, exclude: set | None = None) -> list[int]:
    """Few-NERD's greedy sampler: add sentences until every type has ≥ K mentions, none more than 2K.

    Only sentences whose entity types all belong to the episode are used (as in Few-NERD's sampler).
    ``sentence_mentions`` holds :func:`sentence_types` of each sentence.
    """
    counts = Counter({t: 0 for t in types})
    wanted = set(types)
    candidates = [i for i, m in enumerate(sentence_mentions) if m and m.keys() <= wanted]
    chosen = []
    for index in rng.permutation(candidates):
        if exclude and int(index) in exclude:
            continue
        mentions = sentence_mentions[index]
        if any(counts[t] + n > 2 * k for t, n in mentions.items()):
            continue
        if all(counts[t] >= k for t in mentions):
            continue
        chosen.append(int(index))
        counts.update(mentions)
        if all(counts[t] >= k for t in types):
            return chosen
    missing = {t: counts[t] for t in types if counts[t] < k}
    raise ValueError(f"Cannot find {k} mentions of {missing} with at most {2 * k} of each type; lower k_shot.")


class TokenEpisodeSampler:
    """N-way K~2K-shot NER episodes sampled greedily from IO-tagged sentences (tags are type names or "O")."""

    def __init__(self, sentence_tags: Sequence[Sequence[str]], types: Sequence[str], n_way: int, k_shot: int,
                 seed: int = 0):
        check_settings("TokenEpisodeSampler", SimpleNamespace(n_way=n_way, k_shot=k_shot, seed=seed),
                       {name: _SAMPLER_RULES[name] for name in ("n_way", "k_shot", "seed")})
        self.tags = check_tag_sequences("TokenEpisodeSampler", sentence_tags)  # a string: one tag per character
        self.types = sorted(check_string_list("TokenEpisodeSampler", "types", types, "['person', 'location']"))
        seen = {tag for tags in self.tags for tag in tags}
        if repeated(self.types):  # an episode could take one type as two
            raise ValueError(f"TokenEpisodeSampler: types {repeated(self.types)} are listed more than once; list each "
                             "type once.")
        absent = [t for t in self.types if t not in seen]
        if absent:  # episodes of it could never be drawn: every draw holding it would fail, or all of them
            raise ValueError(f"TokenEpisodeSampler: types {absent[:5]} occur in none of the sentences' tags (which hold "
                             f"{sorted(seen - {'O'})[:8]}); list the types the data has.")
        prefixed = sorted(tag for tag in seen if tag[:2] in ("B-", "I-")
                          and (tag[2:] in self.types or {f"B-{tag[2:]}", f"I-{tag[2:]}"} <= seen))
        if prefixed:  # B-X and I-X would be two types, and a mention of X two mentions
            raise ValueError(f"TokenEpisodeSampler: tags {prefixed[:3]} carry B-/I- prefixes. {_IO_HINT}")
        self.mentions = [sentence_types(tags) for tags in self.tags]
        self.n_way, self.k_shot, self.seed = n_way, k_shot, seed
        if len(self.types) < n_way:
            raise ValueError(f"{n_way}-way episodes need at least {n_way} entity types; got {len(self.types)}.")

    def __call__(self, index: int, attempts: int = 50) -> Episode:
        rng = episode_rng(self.seed, index)
        for _ in range(attempts):  # some type combinations cannot be sampled: draw another (deterministically)
            types = [str(t) for t in rng.choice(self.types, self.n_way, replace=False)]
            try:
                support = greedy_nway_kshot(self.mentions, types, self.k_shot, rng)
                query = greedy_nway_kshot(self.mentions, types, self.k_shot, rng, exclude=set(support))
            except ValueError:
                continue
            return episode_from_tags(types, support, [self.tags[i] for i in support], query,
                                     [self.tags[i] for i in query])
        raise ValueError(
            f"No {self.n_way}-way {self.k_shot}~{2 * self.k_shot}-shot episode found in {attempts} draws of types: "
            "the sentences hold too few mentions per type. Lower n_way or k_shot, or add data."
        )


def episode_from_tags(types, support, support_tags, query, query_tags) -> Episode:
    """Label ids per word: 0 = O, i + 1 = ``types[i]``; tags of other types count as O."""
    index = {t: i + 1 for i, t in enumerate(types)}
    encode = lambda sentences: [[index.get(t, 0) for t in tags] for tags in sentences]  # noqa: E731
    return Episode(["O", *types], np.asarray(support), encode(support_tags), np.asarray(query), encode(query_tags))


def read_fewnerd_episodes(path) -> tuple[list[list[str]], list[Episode]]:
    """A Few-NERD ``*.jsonl`` episode file → (unique sentences, episodes indexing into them)."""
    sentences, position, episodes = [], {}, []

    def index_of(words):
        key = tuple(words)
        if key not in position:
            position[key] = len(sentences)
            sentences.append(list(words))
        return position[key]

    for line_no, line in numbered_lines(path):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
            parts = {name: ([index_of(w) for w in raw[name]["word"]], raw[name]["label"])
                     for name in ("support", "query")}
            types = list(raw["types"])
        except (KeyError, TypeError, json.JSONDecodeError) as err:
            raise ValueError(f"{path}:{line_no}: not a Few-NERD episode ({err!r}).") from err
        if repeated(types):  # its labels would point at the type's last place; its first would have no example
            raise ValueError(f"{path}:{line_no}: the episode lists the types {repeated(types)} more than once.")
        empty = [name for name, (ids, _) in parts.items() if not ids]
        if empty:
            raise ValueError(f"{path}:{line_no}: the episode's {' and '.join(empty)} set holds no sentence; an episode "
                             "needs labelled support sentences and query sentences to score.")
        for name, (ids, tags) in parts.items():
            for sentence, (index, sentence_tags) in enumerate(zip(ids, tags)):
                if len(sentences[index]) != len(sentence_tags):
                    raise ValueError(
                        f"{path}:{line_no}: {name} sentence {sentence} has {len(sentences[index])} words but "
                        f"{len(sentence_tags)} labels; every word needs exactly one label."
                    )
                unknown = sorted({tag for tag in sentence_tags if tag != "O" and tag not in types})
                if unknown:  # it would be read as O: a mention of the episode's type lost from its labels
                    raise ValueError(f"{path}:{line_no}: {name} sentence {sentence} has labels {unknown[:3]} that are "
                                     f"neither 'O' nor one of the episode's types {types}. {_IO_HINT}")
            if len(ids) != len(tags):
                raise ValueError(f"{path}:{line_no}: {name} has {len(ids)} sentences but {len(tags)} label lists.")
        episodes.append(episode_from_tags(types, *parts["support"], *parts["query"]))
    if not episodes:
        raise ValueError(f"{path} holds no episodes.")
    return sentences, episodes


class TokenEpisodes(TorchDataset):
    """Token-level episodes over cached per-sentence word features (list of [words, D] tensors).

    ``episodes`` is a list of `Episode` (read from a file) or a sampler called with the episode index.
    """

    def __init__(self, word_features: list[torch.Tensor], episodes, num_episodes: int | None = None):
        for i, features in enumerate(word_features):
            check_finite_tensor(features, f"TokenEpisodes: the word features of sentence {i}")
        self.word_features, self.episodes = word_features, episodes
        self.num_episodes = num_episodes if callable(episodes) else len(episodes)

    def __len__(self) -> int:
        return self.num_episodes

    def _episode(self, index: int) -> Episode:
        return self.episodes(index) if callable(self.episodes) else self.episodes[index]

    def __getitem__(self, index: int) -> dict:
        episode = self._episode(index)
        item = {"episode_index": torch.tensor(index)}
        for part in ("support", "query"):
            ids, labels = getattr(episode, part), getattr(episode, f"{part}_labels")
            item[f"{part}_features"] = torch.cat([self.word_features[i] for i in ids])
            item[f"{part}_labels"] = torch.as_tensor([y for sentence in labels for y in sentence])
            item[f"{part}_sentence_lengths"] = torch.as_tensor([len(sentence) for sentence in labels])
        return item


def collate_episodes(items: list[dict]) -> dict:
    """Stack episodes, padding variable-length parts (features with 0, labels with -100)."""
    if not items:
        raise ValueError("collate_episodes got no episodes; pass a non-empty list of episode dicts.")
    batch = {}
    for key in items[0]:
        if any(key not in item for item in items):
            raise ValueError(f"collate_episodes: some episodes have no {key!r}; every episode of a batch needs the "
                             f"same parts ({sorted(items[0])}).")
        values = [item[key] for item in items]
        trailing = {tuple(value.shape[1:]) for value in values}
        if len(trailing) > 1:
            raise ValueError(f"collate_episodes: the episodes' {key!r} differ beyond their length ({sorted(trailing)}); "
                             "episodes of one batch must come from the same encoder (same feature size).")
        pad = IGNORE_INDEX if key.endswith("labels") else 0
        batch[key] = torch.nn.utils.rnn.pad_sequence(values, batch_first=True, padding_value=pad) \
            if values[0].dim() else torch.stack(values)
    return batch
