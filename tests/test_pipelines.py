"""BIOTokenClassificationPipeline: transformers' token-classification pipeline with BIO-constrained tags."""

import pytest
import torch
from transformers import pipeline

from hf_adapter_ext.metrics import bio_decoder, bio_invalid_spans, predict_tags
from hf_adapter_ext.pipelines import BIOTokenClassificationPipeline

from .conftest import tiny_source
from .helpers import ALL_LABELS, TAGGED, toy_dataset


@pytest.fixture(scope="module")
def confident_plain_tagger():
    model = tiny_source(labels=ALL_LABELS)
    torch.nn.init.normal_(model.classifier.weight, std=2.0)  # random, confident tags: many broken spans
    return model


def tagger(model, tokenizer, strategy, pipeline_class=BIOTokenClassificationPipeline):
    return pipeline("token-classification", model=model, tokenizer=tokenizer, aggregation_strategy=strategy,
                    pipeline_class=pipeline_class, device="cpu")


def word_groups(sentence: str, tags: list[str]) -> list[tuple[str, int, int]]:
    """(type, start, end) in characters of the groups transformers' pipeline forms from the tags of the sentence's
    space-separated words: a B- tag or a change of type opens a group (a run of O is one group)."""
    groups: list[list] = []
    start = 0
    for word, tag in zip(sentence.split(" "), tags):
        prefix, kind = (tag[:1], tag[2:]) if tag[:2] in ("B-", "I-") else ("I", tag)
        if groups and groups[-1][0] == kind and prefix != "B":
            groups[-1][2] = start + len(word)
        else:
            groups.append([kind, start, start + len(word)])
        start += len(word) + 1
    return [tuple(group) for group in groups]


def test_first_word_tags_are_predict_tags_bio_decoding(confident_plain_tagger, tokenizer):
    """Per word (first piece), the pipeline tags as predict_tags(decoding='bio') does on the same words."""
    sentences = [text for text, _ in TAGGED]
    id2label = confident_plain_tagger.config.id2label
    groups = tagger(confident_plain_tagger, tokenizer, "first")(sentences, ignore_labels=[])
    expected, _ = predict_tags(confident_plain_tagger, toy_dataset(tokenizer), tokenizer, id2label, decoding="bio")
    argmax, _ = predict_tags(confident_plain_tagger, toy_dataset(tokenizer), tokenizer, id2label)
    assert bio_invalid_spans(argmax) > 0 and argmax != expected  # the model breaks spans: the test bites
    for sentence, found, tags in zip(sentences, groups, expected):
        assert [(g["entity_group"], g["start"], g["end"]) for g in found] == word_groups(sentence, tags)
        assert all(0 < g["score"] <= 1 for g in found)


@pytest.mark.parametrize("strategy", ["none", "simple"])
def test_token_level_tags_are_the_constrained_path_over_all_pieces(confident_plain_tagger, tokenizer, strategy):
    text = TAGGED[0][0]
    out = tagger(confident_plain_tagger, tokenizer, "none")(text, ignore_labels=[])
    tags = [t["entity"] for t in out]
    assert bio_invalid_spans([tags]) == 0
    encoded = tokenizer(text, return_tensors="pt")
    with torch.no_grad():
        logits = confident_plain_tagger(**encoded).logits[0, 1:-1]  # no [CLS] / [SEP]
    path = bio_decoder(confident_plain_tagger.config.id2label).decode(logits.log_softmax(-1)[None])[0]
    assert tags == [confident_plain_tagger.config.id2label[int(i)] for i in path]
    if strategy == "simple":  # grouping valid tags: every group is one entity type, opened by a B- tag
        groups = tagger(confident_plain_tagger, tokenizer, "simple")(text)
        assert all(g["entity_group"] != "O" for g in groups)


@pytest.mark.parametrize("strategy", ["average", "max"])
def test_average_and_max_decode_words_scored_as_transformers_aggregates_them(confident_plain_tagger, tokenizer,
                                                                             strategy):
    """A word's distribution is its pieces' mean (average) or its most confident piece's (max), then the words are
    decoded under BIO: computed here by hand from the model's logits."""
    text = "Johnny Smithers visited Londonderry with the United Nationals delegation ."
    words = text.split(" ")
    encoded = tokenizer(words, is_split_into_words=True, return_tensors="pt")
    assert len(encoded["input_ids"][0]) > len(words) + 2  # some words have several pieces
    with torch.no_grad():
        probs = confident_plain_tagger(**encoded).logits[0].softmax(-1)
    word_ids = encoded.word_ids()
    per_word = []
    for w in range(len(words)):
        pieces = probs[[i for i, wid in enumerate(word_ids) if wid == w]]
        per_word.append(pieces.mean(0) if strategy == "average" else pieces[pieces.max(-1).values.argmax()])
    id2label = confident_plain_tagger.config.id2label
    path = bio_decoder(id2label).decode(torch.stack(per_word).log()[None])[0]
    groups = tagger(confident_plain_tagger, tokenizer, strategy)(text, ignore_labels=[])
    expected = word_groups(text, [id2label[int(i)] for i in path])
    assert [(g["entity_group"], g["start"], g["end"]) for g in groups] == expected


def test_labels_that_are_not_bio_are_refused(tokenizer):
    model = tiny_source(labels=["positive", "negative", "neutral"])
    with pytest.raises(ValueError, match="needs BIO labels"):
        tagger(model, tokenizer, "first")("John lives in Paris .")


def test_nan_scores_are_refused_where_transformers_pipeline_returns_no_entity(tokenizer):
    model = tiny_source(labels=ALL_LABELS)
    with torch.no_grad():
        model.classifier.bias[:] = float("nan")
    assert pipeline("token-classification", model=model, tokenizer=tokenizer)("john smith") == []  # silent there
    with pytest.raises(ValueError, match="NaN or infinite"):
        tagger(model, tokenizer, "first")("john smith")


@pytest.mark.parametrize("pipeline_class", [None, BIOTokenClassificationPipeline])
def test_a_crf_models_pipeline_scores_are_its_marginals(tokenizer, pipeline_class):
    """A CRF model's tags are its Viterbi path and each tag's score is the CRF's posterior marginal of it (the
    scores were all 1.0: the logits only marked the path)."""
    from hf_adapter_ext import NeuralAdapterConfig, get_adapter_model

    model = get_adapter_model(tiny_source(), NeuralAdapterConfig(new_labels=["B-LOC", "I-LOC"], head="crf")).eval()
    with torch.no_grad():
        model.classifier.weight.normal_(0, 0.5, generator=torch.Generator().manual_seed(0))
        model.crf.transitions.normal_(0, 2, generator=torch.Generator().manual_seed(1))
    sentence = "john smith lives in paris and works for acme corporation"
    chosen = {"pipeline_class": pipeline_class} if pipeline_class else {}
    found = pipeline("token-classification", model=model, tokenizer=tokenizer, device="cpu", **chosen)(sentence)
    encoded = tokenizer(sentence, return_tensors="pt")
    with torch.no_grad():
        out = model(**encoded)
    mask = encoded["attention_mask"]
    path = model.crf.decode(out.emissions, mask)[0]
    marginals = model.crf.marginals(out.emissions, mask)[0]
    probabilities = out.logits[0].softmax(-1)
    assert torch.equal(out.logits[0].argmax(-1), path)
    on_path = marginals.gather(-1, path.unsqueeze(-1)).squeeze(-1)
    top = marginals.argmax(-1) == path
    torch.testing.assert_close(probabilities.gather(-1, path.unsqueeze(-1)).squeeze(-1)[top], on_path[top])
    assert bool((probabilities.gather(-1, path.unsqueeze(-1)).squeeze(-1) >= on_path - 1e-6).all())
    assert found and all(entity["score"] < 0.999 for entity in found)
    for entity in found:  # each reported tag's score is its token's marginal on the path
        assert entity["entity"] == model.config.id2label[int(path[entity["index"]])]
        assert entity["score"] == pytest.approx(float(probabilities[entity["index"], path[entity["index"]]]),
                                                abs=1e-6)
