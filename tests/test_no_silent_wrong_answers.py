"""Calls that used to run cleanly and answer (or train) wrongly, found by trying bad inputs as a new user would:
saved parts that reference a frozen model by name (an adapter's source, a SIB head's encoder) loaded over a model
with other weights; features at scales float32 normalisation could not read; episodes without labelled support;
Trainer's label smoothing, which takes the labels away from a model whose loss needs them. Each is now refused with
the fix, or answered correctly."""

from __future__ import annotations

import copy
import logging

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from transformers import (
    BertConfig,
    BertModel,
    DataCollatorForTokenClassification,
    Trainer,
    TrainingArguments,
    pipeline,
)

from hf_adapter_ext import (
    CRF,
    NeuralAdapterConfig,
    NeuralAdapterModel,
    SIBConfig,
    SIBForFewShotClassification,
    get_adapter_model,
)
from hf_adapter_ext.meta.baselines import unit_rows
from hf_adapter_ext.modeling.fingerprint import check_weights_digest, weights_digest

from .conftest import NEW_LABELS, tiny_source
from .helpers import toy_dataset


def encoder(vocab_size: int, seed: int = 0) -> BertModel:
    torch.manual_seed(seed)
    return BertModel(BertConfig(vocab_size=vocab_size, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                intermediate_size=32), add_pooling_layer=False)


# ---------------------------------------------------------------- the digest
def test_digest_follows_every_value_and_ignores_names(tokenizer):
    model = tiny_source("bert", tokenizer.vocab_size)
    before = weights_digest(model)
    assert weights_digest(tiny_source("bert", tokenizer.vocab_size)) == before  # same weights, another object
    with torch.no_grad():
        model.bert.encoder.layer[1].output.dense.weight[3, 5] += 1e-6  # one value, deep inside
    assert weights_digest(model) != before
    assert weights_digest(model, skip=("layer.1.output.dense",)) == weights_digest(
        tiny_source("bert", tokenizer.vocab_size), skip=("layer.1.output.dense",))


def test_digest_of_another_precision_warns_instead_of_refusing(tokenizer, caplog):
    model = tiny_source("bert", tokenizer.vocab_size)
    saved, half = weights_digest(model), weights_digest(model.to(torch.bfloat16))
    assert saved.startswith("float32:") and half.startswith("bfloat16:")
    with caplog.at_level(logging.WARNING):
        check_weights_digest(saved, half, "the source model", "")
    assert "cannot be checked" in caplog.text
    check_weights_digest(None, half, "the source model", "")  # saved before digests: not checked


# ---------------------------------------------------------------- the adapter's source
def test_adapter_refuses_a_source_with_other_weights(tokenizer, tmp_path):
    source = tiny_source("bert", tokenizer.vocab_size, seed=0)
    get_adapter_model(source, NeuralAdapterConfig(new_labels=NEW_LABELS)).save_pretrained(tmp_path)
    NeuralAdapterModel.from_pretrained(tiny_source("bert", tokenizer.vocab_size, seed=0), tmp_path)  # the same: loads
    with pytest.raises(ValueError, match="weights of the source model differ"):
        NeuralAdapterModel.from_pretrained(tiny_source("bert", tokenizer.vocab_size, seed=1), tmp_path)


def test_adapter_on_a_lora_target_checks_the_source_without_its_lora_weights(tokenizer, tmp_path):
    model = get_adapter_model(tiny_source("bert", tokenizer.vocab_size), NeuralAdapterConfig(
        new_labels=NEW_LABELS, target="lora"))
    model.save_pretrained(tmp_path)
    NeuralAdapterModel.from_pretrained(tiny_source("bert", tokenizer.vocab_size), tmp_path)


def test_adapter_from_pretrained_refuses_a_non_model_source(tokenizer, tmp_path):
    get_adapter_model(tiny_source("bert", tokenizer.vocab_size), NeuralAdapterConfig(
        new_labels=NEW_LABELS)).save_pretrained(tmp_path)
    with pytest.raises(TypeError, match="first argument is the source model"):
        NeuralAdapterModel.from_pretrained(None, tmp_path)


# ---------------------------------------------------------------- SIB's referenced encoder
def test_sib_head_refuses_an_encoder_with_other_weights(tokenizer, tmp_path):
    SIBForFewShotClassification(SIBConfig(n_way=3), backbone=encoder(tokenizer.vocab_size)).save_pretrained(tmp_path)
    SIBForFewShotClassification.from_pretrained(tmp_path, backbone=encoder(tokenizer.vocab_size))  # the same: loads
    for other in (encoder(tokenizer.vocab_size, seed=1), encoder(50)):  # other weights; another vocabulary
        with pytest.raises(ValueError, match="weights of the encoder differ"):
            SIBForFewShotClassification.from_pretrained(tmp_path, backbone=other)


# ---------------------------------------------------------------- inputs SIB could not read
def test_sib_answers_the_same_at_any_feature_scale():
    """Cosine scores do not depend on a feature's length; float32 normalisation overflowed beyond ~1e19 (every
    class then scored alike and the argmax named class 0) and underflowed below ~1e-19."""
    model = SIBForFewShotClassification(SIBConfig(n_way=3), backbone=encoder(60)).eval()
    g = torch.Generator().manual_seed(0)
    support, query = torch.randn(2, 3, 16, generator=g), torch.randn(2, 8, 16, generator=g)
    labels = torch.tensor([[0, 1, 2], [0, 1, 2]])
    expected = model(support_features=support, support_labels=labels, query_features=query).logits
    for scale in (1e30, 1e-30, 3e38 / 16):
        got = model(support_features=support * scale, support_labels=labels, query_features=query * scale).logits
        torch.testing.assert_close(got, expected)


def test_unit_rows_matches_float64_normalisation_over_the_float32_range():
    g = torch.Generator().manual_seed(1)
    rows = torch.randn(7, 5, generator=g, dtype=torch.float64)
    rows[6] = 0  # padding stays zero
    scales = torch.tensor([1e-35, 1e-20, 1e-3, 1.0, 1e4, 1e25, 1e37], dtype=torch.float64)[:, None]
    got = unit_rows((rows * scales).float())
    expected = torch.nn.functional.normalize(rows, dim=-1).float()
    torch.testing.assert_close(got, expected)
    nan_row = torch.tensor([[1.0, float("nan")], [float("inf"), 1.0]])
    assert torch.isnan(unit_rows(nan_row)).any(dim=-1).all()  # non-finite in, non-finite out


@pytest.mark.parametrize("overrides,error,pattern", [
    ({"support_labels": torch.tensor([[0.0, 1.0, 2.0]])}, TypeError, r"support_labels must be an integer tensor"),
    ({"query_mask": torch.ones(1, 3, dtype=torch.bool)}, ValueError, r"query_mask must be \[episodes, examples\]"),
    ({"support_labels": torch.full((1, 3), -100)}, ValueError, r"no labelled support example"),
])
def test_sib_episode_inputs_refused(overrides, error, pattern):
    model = SIBForFewShotClassification(SIBConfig(n_way=3), backbone=encoder(60)).eval()
    g = torch.Generator().manual_seed(0)
    episode = {"support_features": torch.randn(1, 3, 16, generator=g), "support_labels": torch.tensor([[0, 1, 2]]),
               "query_features": torch.randn(1, 6, 16, generator=g)}
    with pytest.raises(error, match=pattern):
        model(**{**episode, **overrides})


# ---------------------------------------------------------------- inputs the extended model could not read
def test_overlong_text_is_refused_with_the_fix(tokenizer):
    model = get_adapter_model(tiny_source("bert", tokenizer.vocab_size), NeuralAdapterConfig(
        new_labels=NEW_LABELS)).eval()
    tagger = pipeline("token-classification", model=model, tokenizer=tokenizer)
    with pytest.raises(ValueError, match=r"2002 tokens long.*at most 512.*stride=.*model_max_length = 512"):
        tagger(" ".join(["john"] * 2000))
    assert isinstance(tagger("john smith lives in paris"), list)  # in range: tags as before
    windowed = copy.deepcopy(tokenizer)  # the fix the message gives, followed: every word tagged
    windowed.model_max_length = 512
    entities = pipeline("token-classification", model=model, tokenizer=windowed, stride=128,
                        aggregation_strategy="first", ignore_labels=[])(" ".join(["john"] * 2000))
    assert max(entity["end"] for entity in entities) > 5 * 1900  # words past the first window are tagged too


def test_plain_pipeline_accepts_the_extended_model_without_an_error_log(tokenizer, caplog):
    model = get_adapter_model(tiny_source("bert", tokenizer.vocab_size), NeuralAdapterConfig(new_labels=NEW_LABELS))
    with caplog.at_level(logging.ERROR):
        pipeline("token-classification", model=model.eval(), tokenizer=tokenizer)
    assert "not supported" not in caplog.text


def test_crf_mask_with_values_other_than_zero_and_one_is_refused():
    with pytest.raises(ValueError, match="values other than 0 and 1"):
        CRF(3).decode(torch.randn(1, 4, 3), torch.tensor([[0.5, 1.0, 1.0, 1.0]]))
    CRF(3).decode(torch.randn(1, 4, 3), torch.tensor([[0, 1, 1, 1]]))  # integer 0/1 masks, left padding: fine


@pytest.mark.parametrize("head", ["crf", "linear"])
def test_trainer_label_smoothing_is_refused_where_it_would_replace_the_models_loss(tokenizer, tmp_path, head):
    """With label_smoothing_factor > 0, Trainer withholds the labels and smooths a cross-entropy on the raw scores:
    for a CRF head that trains the emissions alone; for a linear head it is the model's own loss, smoothed."""
    model = get_adapter_model(tiny_source("bert", tokenizer.vocab_size), NeuralAdapterConfig(new_labels=NEW_LABELS,
                                                                                            head=head))
    args = TrainingArguments(str(tmp_path), max_steps=1, label_smoothing_factor=0.1, report_to=[], use_cpu=True)
    trainer = Trainer(model=model, args=args, train_dataset=toy_dataset(tokenizer),
                      data_collator=DataCollatorForTokenClassification(tokenizer))
    if head == "crf":
        with pytest.raises(ValueError, match="label_smoothing_factor=0"):
            trainer.train()
    else:
        trainer.train()


def test_entity_f1_refuses_gold_tags_in_iob1():
    """Strict IOB2 drops an entity that opens with I-: IOB1 gold (the raw CoNLL-2003 files) scored 0 here."""
    from hf_adapter_ext.metrics import load_entity_f1

    metric = load_entity_f1()
    for gold in (["I-PER", "I-PER", "O"], ["B-PER", "I-ORG", "O"], ["B-PER", "O", "I-PER"]):
        with pytest.raises(ValueError, match="looks like IOB1"):
            metric.compute(predictions=[["B-PER", "I-PER", "O"]], references=[gold])
    scored = metric.compute(predictions=[["I-PER", "I-PER", "O"]], references=[["B-PER", "I-PER", "O"]])
    assert scored["overall_f1"] == 0.0  # a prediction that opens with I- is the model's error, scored as one
    with pytest.raises(ValueError, match="None is not an IOB2 tag"):
        metric.compute(predictions=[["B-PER", None, "O"]], references=[["B-PER", "I-PER", "O"]])


@given(st.lists(st.lists(st.sampled_from(["O", "B-PER", "I-PER", "B-ORG", "I-ORG"]), max_size=12), max_size=4))
def test_another_models_tags_become_valid_gold_with_the_same_strict_spans(sequences):
    """source_agreement scores the extension against the source's own tags: written as valid IOB2 gold, they keep
    exactly the spans strict IOB2 reads in them."""
    from seqeval.scheme import IOB2, Entities

    from hf_adapter_ext.metrics import without_unopened_entities

    def spans(tags):
        return {e.to_tuple() for sentence in Entities(tags, IOB2).entities for e in sentence}

    repaired = [without_unopened_entities(tags) for tags in sequences]
    assert spans(repaired) == spans(sequences)
    assert all(not t.startswith("I-") or p[2:] == t[2:] for tags in repaired for p, t in zip(["O", *tags], tags))


def test_compute_metrics_reads_per_batch_predictions(tokenizer, tmp_path):
    """TrainingArguments(eval_do_concat_batches=False) hands compute_metrics a list of per-batch arrays, each padded
    to its own length; the scores are those of the concatenated evaluation."""
    from hf_adapter_ext.metrics import entity_f1_compute_metrics

    id2label = {0: "O", 1: "B-PER", 2: "I-PER"}
    g = np.random.default_rng(0)
    labels = [np.array([[0, 1, 2, -100]]), np.array([[1, 2, 0, 1, -100, -100], [0, 0, 1, 2, 2, -100]])]
    scores = [g.normal(size=(*ids.shape, 3)) for ids in labels]
    per_batch = entity_f1_compute_metrics(id2label)((scores, labels))
    width = max(ids.shape[1] for ids in labels)
    padded = np.concatenate([np.pad(ids, ((0, 0), (0, width - ids.shape[1])), constant_values=-100) for ids in labels])
    padded_scores = np.concatenate([np.pad(s, ((0, 0), (0, width - s.shape[1]), (0, 0))) for s in scores])
    assert per_batch == entity_f1_compute_metrics(id2label)((padded_scores, padded))


@pytest.mark.parametrize("batch,pattern", [
    ({"tokens": [["John", "lives"]], "ner_tags": [["B-PER", "O"]]}, r"holds 'B-PER'.*label ids"),
    ({"tokens": ["John lives"], "ner_tags": [[1, 0]]}, r"one string \('John lives'\).*list of words"),
])
def test_alignment_refuses_tag_names_and_unsplit_sentences(tokenizer, batch, pattern):
    """Tag names used to come out as a labels column mixing strings with -100, and a sentence given as one string
    was read one character per word."""
    from hf_adapter_ext.data import tokenize_and_align_labels

    with pytest.raises(ValueError, match=pattern):
        tokenize_and_align_labels(batch, tokenizer)
    assert tokenize_and_align_labels({"tokens": [["John", "lives"]], "ner_tags": [np.array([1, 0])]},
                                     tokenizer)["labels"][0].count(1) == 1  # numpy ids are ids


def test_extend_ner_offers_the_adapter_settings_and_not_what_is_set_for_you():
    """The script used to take every PeftConfig field (--peft_type LORA, --task_type SEQ_CLS, --old_labels,
    --source_signature, ...) and then overwrite or ignore it without a word."""
    import dataclasses

    from transformers import HfArgumentParser

    from hf_adapter_ext.adapter.config import _AUTOMATIC, adapter_arguments_dataclass

    arguments = adapter_arguments_dataclass()
    offered = {f.name for f in dataclasses.fields(arguments)}
    assert offered == NeuralAdapterConfig.field_names() - _AUTOMATIC
    assert {"peft_type", "task_type", "old_labels", "source_digest", "metrics"} <= _AUTOMATIC
    parser = HfArgumentParser(arguments)
    (parsed,) = parser.parse_args_into_dataclasses(["--new_labels", "B-LOC", "I-LOC", "--head", "linear"])
    config = NeuralAdapterConfig(**dataclasses.asdict(parsed))
    assert (config.new_labels, config.head, config.adapter) == (["B-LOC", "I-LOC"], "linear", "bilstm")
    with pytest.raises(ValueError, match="not used"):
        parser.parse_args_into_dataclasses(["--source_digest", "float32:00"])
    with pytest.raises(ValueError, match="adapter_hidden_size"):  # checked as the config checks it, at parse time
        parser.parse_args_into_dataclasses(["--adapter_hidden_size", "0"])


def test_evaluation_refuses_new_types_the_labels_do_not_have(tokenizer):
    """A misspelt new type scored a new-type F1 of 0 and left the real new type among the old ones."""
    from hf_adapter_ext.metrics import entity_f1_compute_metrics, evaluate_tagger

    model = get_adapter_model(tiny_source("bert", tokenizer.vocab_size), NeuralAdapterConfig(
        new_labels=NEW_LABELS)).eval()
    with pytest.raises(ValueError, match=r"new_types \['Loc'\] are not types"):
        entity_f1_compute_metrics(model.config.id2label, ["Loc"])
    with pytest.raises(ValueError, match=r"new_types \['loc'\] are not types.*\['LOC'\]"):
        evaluate_tagger(model, toy_dataset(tokenizer), tokenizer, model.config.id2label, ["loc"])
    assert "new_f1" in evaluate_tagger(model, toy_dataset(tokenizer), tokenizer, model.config.id2label, ["LOC"])
    source = tiny_source("bert", tokenizer.vocab_size)  # a source scored with its extension's new types: no LOC
    old_only = toy_dataset(tokenizer, labels=list(source.config.id2label.values()) + NEW_LABELS, outside_types=("LOC",))
    assert evaluate_tagger(source, old_only, tokenizer, source.config.id2label, ["LOC"])["new_f1"] == 0.0


def test_forgotten_types_refuses_scores_without_per_type_entries():
    """{"PER": 0.9} has no 'PER_f1' / 'PER_support' keys: every type passed as "not forgotten"."""
    from hf_adapter_ext.metrics import forgotten_types

    with pytest.raises(ValueError, match="no per-type scores"):
        forgotten_types({"PER": 0.9}, {"PER": 0.5})
    before = {"PER_f1": 0.9, "PER_support": 10}
    assert forgotten_types(before, {"PER_f1": 0.5, "PER_support": 10}) == {"PER": (0.9, 0.5)}


def test_rehearsal_text_that_repeats_the_labelled_sentences_is_warned(tokenizer):
    from hf_adapter_ext import add_rehearsal

    from .conftest import CORPUS

    model = get_adapter_model(tiny_source("bert", tokenizer.vocab_size), NeuralAdapterConfig(new_labels=NEW_LABELS))
    with pytest.warns(UserWarning, match="5 of the 5 rehearsal sentences are also labelled"):
        add_rehearsal(toy_dataset(tokenizer), CORPUS, model, tokenizer)


def test_a_word_the_tokenizer_drops_keeps_its_tag(tokenizer):
    """A zero-width space or a control character tokenizes to nothing: its tag (here an entity's) was dropped from
    training and from the gold tags. It is now read as the unknown token and keeps its tag."""
    from hf_adapter_ext.data import tokenize_and_align_labels

    encoded = tokenize_and_align_labels({"tokens": [["John", "\u200b", "Smith", "\x00"]],
                                         "ner_tags": [[1, 3, 2, 0]]}, tokenizer)
    labels = [label for label in encoded["labels"][0] if label != -100]
    assert labels == [1, 3, 2, 0]
    assert encoded["input_ids"][0].count(tokenizer.unk_token_id) == 2


def test_token_level_sib_gives_a_dropped_word_a_feature(tokenizer):
    """Few-shot NER features are each word's first subword: a word with none got an all-zero feature, which
    evaluation then refused as a broken input."""
    from hf_adapter_ext.meta.features import encode_words

    model = SIBForFewShotClassification(SIBConfig(n_way=3, level="token"), backbone=encoder(tokenizer.vocab_size))
    (features,) = encode_words(model.eval(), tokenizer, [["John", "\u200b", "Smith"]])
    assert features.shape == (3, 16) and bool((features.abs().sum(-1) > 0).all())
