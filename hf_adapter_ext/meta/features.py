"""Encode a corpus once with the frozen backbone, so meta-training never re-encodes the same texts."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from types import SimpleNamespace

import numpy as np
import torch
from tqdm.auto import tqdm

from ..data.alignment import check_tokenizes_words_as_text, max_length_rule, visible_words, word_windows
from ..validation import POSITIVE_INT, check_settings, check_texts, check_tokenizer

logger = logging.getLogger(__name__)


def _by_length(lengths: Sequence[int], batch_size: int):
    order = np.argsort(lengths, kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


@torch.no_grad()
def encode_texts(model, tokenizer, texts: Sequence[str], batch_size: int = 64, max_length: int = 128,
                 desc: str = "Encoding texts") -> torch.Tensor:
    """Pooled features [N, D] of ``texts`` (``model.encode``, the SIB model's pooling), on CPU. A text is read up to
    ``max_length`` tokens (128: what MiniLM-style sentence encoders were trained on); how many texts reach that
    limit, and so may be cut, is logged as a warning."""
    if not isinstance(model, torch.nn.Module) or not hasattr(getattr(model, "config", None), "feature_dim"):
        raise TypeError(f"encode_texts needs a SIBForFewShotClassification (it pools the way the few-shot head reads "
                        f"features); got {type(model).__name__}. Build one over the backbone: "
                        "SIBForFewShotClassification.from_backbone_pretrained(name).")
    check_tokenizer(tokenizer, "encode_texts")
    check_settings("encode_texts", SimpleNamespace(batch_size=batch_size, max_length=max_length),
                   {"batch_size": POSITIVE_INT, "max_length": max_length_rule(tokenizer)})
    texts = check_texts(texts, "encode_texts: texts")
    out = torch.zeros(len(texts), model.config.feature_dim)
    at_limit = 0
    for chunk in tqdm(_by_length([len(t) for t in texts], batch_size), desc=desc, leave=False):
        # right padding whatever the tokenizer says: with absolute positions (BERT), left padding would shift a
        # text's positions by how long the others in its batch are, and its features with them
        encoded = tokenizer([texts[i] for i in chunk], padding=True, padding_side="right", truncation=True,
                            max_length=max_length, return_tensors="pt").to(model.device)
        at_limit += int((encoded["attention_mask"].sum(-1) >= max_length).sum())
        out[torch.as_tensor(chunk)] = model.encode(encoded["input_ids"], encoded["attention_mask"]).float().cpu()
    if at_limit:
        logger.warning("%d of %d texts reach the %d-token limit: whatever they hold beyond it is not read. Shorten "
                       "them, or keep what decides the label at their start.", at_limit, len(texts), max_length)
    return out


@torch.no_grad()
def encode_words(model, tokenizer, sentences: Sequence[Sequence[str]], batch_size: int = 32, max_length: int = 256,
                 desc: str = "Encoding sentences") -> list[torch.Tensor]:
    """One feature per word (its first subword) for each sentence: a list of [words, D] tensors on CPU.

    Sentences longer than ``max_length`` subwords are encoded in windows and re-joined.
    """
    check_tokenizer(tokenizer, "encode_words")
    check_settings("encode_words", SimpleNamespace(batch_size=batch_size, max_length=max_length),
                   {"batch_size": POSITIVE_INT, "max_length": max_length_rule(tokenizer)})
    check_tokenizes_words_as_text(tokenizer, "encode_words")
    pieces, owner = [], []
    for s, words in enumerate(sentences):
        words, counts = visible_words(words, tokenizer)  # a word the tokenizer drops would have no feature
        for start, end in word_windows(words, tokenizer, max_length, counts):
            pieces.append(list(words[start:end]))
            owner.append(s)
    encoded_pieces: list[torch.Tensor | None] = [None] * len(pieces)
    for chunk in tqdm(_by_length([len(p) for p in pieces], batch_size), desc=desc, leave=False):
        batch = tokenizer([pieces[i] for i in chunk], is_split_into_words=True, padding=True, padding_side="right",
                          return_tensors="pt")  # right: as in encode_texts
        width = max(len(pieces[i]) for i in chunk)
        starts = torch.full((len(chunk), width), -1, dtype=torch.long)
        for row in range(len(chunk)):
            seen = set()
            for position, word in enumerate(batch.word_ids(row)):
                if word is not None and word not in seen:
                    seen.add(word)
                    starts[row, word] = position
        feats = model.encode(batch["input_ids"].to(model.device), batch["attention_mask"].to(model.device),
                             word_starts=starts.to(model.device)).float().cpu()
        for row, i in enumerate(chunk):
            encoded_pieces[i] = feats[row, : len(pieces[i])]
    result: list[list[torch.Tensor]] = [[] for _ in sentences]
    for s, feats in zip(owner, encoded_pieces):
        result[s].append(feats)
    return [torch.cat(parts) for parts in result]
