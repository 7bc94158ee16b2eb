"""The forgetting check on text of the source's kind: the extension's old-type tags against the source's own."""

from __future__ import annotations

import pytest

from hf_adapter_ext.metrics import as_old_types, source_agreement

from .conftest import CORPUS, tiny_source

OLD = {"PER", "ORG", "MISC"}


def test_refining_types_count_as_their_parent_and_other_new_types_as_outside():
    tags = ["B-politician", "I-politician", "B-LOC", "I-LOC", "O", "B-PER", "I-ORG"]
    assert as_old_types(tags, OLD, {"politician": "PER"}) == ["B-PER", "I-PER", "O", "O", "O", "B-PER", "I-ORG"]


def test_a_model_agrees_fully_with_itself_and_less_with_another(tokenizer):
    source = tiny_source(vocab_size=len(tokenizer))
    itself = source_agreement(source, source, CORPUS, tokenizer)
    assert itself and set(itself) <= OLD and all(f1 == 1.0 for f1 in itself.values())
    other = source_agreement(source, tiny_source(vocab_size=len(tokenizer), seed=3), CORPUS, tokenizer)
    assert set(other) == set(itself) and min(other.values()) < 1.0


def test_max_sentences_and_bad_text_are_refused_by_name(tokenizer):
    source = tiny_source(vocab_size=len(tokenizer))
    with pytest.raises(ValueError, match="max_sentences"):
        source_agreement(source, source, CORPUS, tokenizer, max_sentences=0)
    with pytest.raises((ValueError, TypeError), match="sentences"):
        source_agreement(source, source, "John Smith lives in Paris .", tokenizer)
