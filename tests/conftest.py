"""Tiny models and a tokenizer built inside the tests: offline, CPU, seconds."""

from __future__ import annotations

import os

import pytest
import torch
from hypothesis import settings
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from transformers import (
    AutoModelForTokenClassification,
    BertConfig,
    DebertaV2Config,
    DistilBertConfig,
    PreTrainedTokenizerFast,
    RobertaConfig,
    RobertaTokenizerFast,
)
from transformers.convert_slow_tokenizer import bytes_to_unicode

from benchmarks.common import shared_data_dir

# The gate runs the property tests on a fixed sequence of examples, so that a pass or a failure repeats; exploring
# new examples is a run of its own: HYPOTHESIS_PROFILE=explore make test.
settings.register_profile("gate", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "gate"))

OLD_LABELS = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-MISC", "I-MISC"]
NEW_LABELS = ["B-LOC", "I-LOC"]
CORPUS = [
    "John Smith lives in Paris and works for Acme Corporation .",
    "Mary visited London with the United Nations delegation yesterday .",
    "The European Union rejected the German proposal on Monday .",
    "Peter Blackburn flew from Brussels to Washington for talks .",
    "Shares of International Business Machines rose in New York trading .",
]


@pytest.fixture(scope="session")
def tokenizer() -> PreTrainedTokenizerFast:
    return build_tokenizer()


def build_tokenizer() -> PreTrainedTokenizerFast:
    """A WordPiece tokenizer over the toy corpus, built deterministically (trained tokenizers vary between
    processes, which would make subprocess runs differ): whole words, and every character as a subword."""
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    words = sorted({w.lower() for line in CORPUS for w in line.split()} - {"paris"})  # one word left to split
    chars = sorted({c for line in CORPUS for c in line.lower() if not c.isspace()})
    vocab = {token: i for i, token in enumerate(dict.fromkeys([*specials, *chars, *(f"##{c}" for c in chars), *words]))}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]",
        mask_token="[MASK]",
    )


def build_byte_level_tokenizer(add_prefix_space: bool = False) -> PreTrainedTokenizerFast:
    """A RoBERTa-style byte-level BPE tokenizer (every byte a token, no merges), which marks a word's start with
    the space before it, 'Ġ': words passed one by one lose it unless ``add_prefix_space``."""
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    vocab = {token: i for i, token in enumerate([*specials, *sorted(bytes_to_unicode().values())])}
    return RobertaTokenizerFast(vocab=vocab, merges=[], add_prefix_space=add_prefix_space)


def _label_kwargs(labels):
    return {"id2label": dict(enumerate(labels)), "label2id": {label: i for i, label in enumerate(labels)}}


def tiny_config(arch: str, vocab_size: int, labels=OLD_LABELS):
    common = {"vocab_size": vocab_size, **_label_kwargs(labels)}
    if arch == "bert":
        return BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, **common)
    if arch == "roberta":
        return RobertaConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                             pad_token_id=0, bos_token_id=2, eos_token_id=3, **common)
    if arch == "distilbert":
        return DistilBertConfig(dim=32, n_layers=2, n_heads=2, hidden_dim=64, pad_token_id=0, **common)
    if arch == "deberta-v2":
        return DebertaV2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                               pad_token_id=0, **common)
    raise ValueError(arch)


def tiny_source(arch: str = "bert", vocab_size: int = 120, seed: int = 0, labels=OLD_LABELS):
    torch.manual_seed(seed)
    return AutoModelForTokenClassification.from_config(tiny_config(arch, vocab_size, labels)).eval()


@pytest.fixture
def source(tokenizer):
    return tiny_source("bert", tokenizer.vocab_size)


@pytest.fixture(scope="session")
def shared_data():
    path = shared_data_dir()
    if not path.is_dir():
        pytest.skip(f"real data folder {path} is absent (set HF_ADAPTER_EXT_DATA to point at shared/data)")
    return path


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("WANDB_DISABLED", "true")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
