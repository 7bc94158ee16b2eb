"""label_parents and rehearsal: the distillation against a slow float64 reference, rehearsal rows behaving as
new_only rows, and old-type F1 with subtypes counted as their parent."""

from __future__ import annotations

import logging
import math

import pytest
import torch

from hf_adapter_ext import AdapterDataCollator, NeuralAdapterConfig, add_rehearsal, get_adapter_model
from hf_adapter_ext.metrics import load_entity_f1

from .conftest import OLD_LABELS, build_tokenizer, tiny_source
from .helpers import toy_dataset

TOKENIZER = build_tokenizer()
NEW = ["B-politician", "I-politician", "B-LOC", "I-LOC"]
PARENTS = {"politician": "PER"}


def extended(**config):
    torch.manual_seed(0)
    model = get_adapter_model(tiny_source("bert", TOKENIZER.vocab_size), NeuralAdapterConfig(new_labels=NEW, **config))
    return model.train()


def reference_kl(emissions, source_logits, labels, labels_of, old: int, parents: dict, temperature: float) -> float:
    """Token by token in float64: on O tokens and subtype tokens, KL(source || target collapsed onto the source's
    labels, unparented new labels kept as their own, zero-mass columns)."""
    subtype_ids = {i for i, name in enumerate(labels_of) if name[2:] in parents}
    total = 0.0
    for b in range(labels.size(0)):
        for t in range(labels.size(1)):
            label = int(labels[b, t])
            if label != 0 and label not in subtype_ids:
                continue
            teacher = torch.softmax(source_logits[b, t].double() / temperature, -1).tolist()
            student = torch.softmax(emissions[b, t].double() / temperature, -1).tolist()
            collapsed = student[:old]
            extra = []
            for i in range(old, len(labels_of)):
                name = labels_of[i]
                if name[2:] in parents:
                    collapsed[labels_of.index(f"{name[:2]}{parents[name[2:]]}")] += student[i]
                else:
                    extra.append(student[i])
            for p, q in zip(teacher + [0.0] * len(extra), collapsed + extra):
                total += p * (math.log(p) - math.log(q)) if p > 0 else 0.0
    return total * temperature**2


@pytest.mark.parametrize("scale", [4.0, 50.0])  # ordinary scores, and scores far beyond float32's softmax comfort
@pytest.mark.parametrize("parents", [None, PARENTS])
def test_distillation_matches_a_float64_reference(parents, scale):
    model = extended(annotation="new_only", label_parents=parents)
    labels_of = list(model.config.id2label.values())
    torch.manual_seed(1)
    batch, length = 3, 7
    emissions = torch.randn(batch, length, len(labels_of)) * scale
    source_logits = torch.randn(batch, length, len(OLD_LABELS)) * scale
    labels = torch.randint(0, len(labels_of), (batch, length))
    labels[0, :3] = 0
    labels[1, 2] = labels_of.index("B-politician")
    mask = torch.ones(batch, length, dtype=torch.long)
    _, kl = model._distill(emissions, labels, source_logits, mask, torch.ones(batch, dtype=torch.bool))
    expected = reference_kl(emissions, source_logits, labels, labels_of, len(OLD_LABELS), parents or {}, 2.0)
    assert kl.item() == pytest.approx(expected, rel=1e-5)


def test_without_parents_a_politician_token_is_not_distilled_and_with_them_it_is():
    labels_of = list(extended().config.id2label.values())
    labels = torch.full((1, 4), labels_of.index("B-politician"))
    emissions, source_logits = torch.randn(1, 4, len(labels_of)), torch.randn(1, 4, len(OLD_LABELS))
    mask, rows = torch.ones(1, 4, dtype=torch.long), torch.ones(1, dtype=torch.bool)
    assert extended(annotation="new_only")._distill(emissions, labels, source_logits, mask, rows)[1].item() == 0
    assert extended(annotation="new_only", label_parents=PARENTS)._distill(
        emissions, labels, source_logits, mask, rows)[1].item() > 0


def test_rehearsal_rows_learn_the_source_as_new_only_rows_do():
    """A full-annotation model on rehearsal rows gives the loss and gradients of a new_only model on the same
    text labelled O: rehearsal is new_only distillation, row by row."""
    sentences = ["John Smith lives in Paris .", "Mary visited London with the United Nations delegation ."]
    full, new_only = extended(label_parents=PARENTS), extended(annotation="new_only", label_parents=PARENTS)
    new_only.load_state_dict(full.state_dict())
    train = toy_dataset(TOKENIZER, labels=list(full.config.id2label.values()), outside_types=["LOC", "politician"])
    mixed = add_rehearsal(train, sentences, full, TOKENIZER)
    rows = [r for r in mixed if r["rehearsal"] == 1]
    assert len(rows) == 2 and all(set(r["labels"]) <= {-100, 0} for r in rows)
    batch = AdapterDataCollator(TOKENIZER)(rows)
    losses = {}
    for name, model in (("full", full), ("new_only", new_only)):
        model.eval().zero_grad()  # no dropout: the two models must see the same function
        loss = model(**batch).loss
        loss.backward()
        losses[name] = (loss.item(), model.classifier.weight.grad.clone())
    assert losses["full"][0] == pytest.approx(losses["new_only"][0], rel=1e-6)
    torch.testing.assert_close(losses["full"][1], losses["new_only"][1])
    batch.pop("rehearsal")  # the same rows without the flag are plain O-labelled data: a different loss
    assert full(**batch).loss.item() != pytest.approx(losses["full"][0], rel=1e-3)


def test_parents_without_any_distilled_text_warn_that_they_keep_nothing(caplog):
    """label_parents keeps the parents' probability only through distillation: on fully labelled data with no
    rehearsal column the subtypes merely start as their parents (benchmarks/results/domain_extension.md: with rows
    drawn at random, adapter+parents scored exactly as adapter), so training says so."""
    model = extended(label_parents=PARENTS)
    train = toy_dataset(TOKENIZER, labels=list(model.config.id2label.values()), outside_types=["LOC", "politician"])
    plain = AdapterDataCollator(TOKENIZER)([train[i] for i in range(2)])
    rehearsed = add_rehearsal(train, ["John Smith lives in Paris ."], model, TOKENIZER)
    with caplog.at_level(logging.WARNING):
        extended()(**plain)  # no parents: nothing to say
        model(**AdapterDataCollator(TOKENIZER)([rehearsed[i] for i in range(len(rehearsed))]))
        assert "label_parents keeps" not in caplog.text
        model(**plain)
        model(**plain)
    assert caplog.text.count("label_parents keeps") == 1 and "add_rehearsal" in caplog.text


def test_rehearsal_caches_source_scores_on_every_row_and_keeps_the_training_rows():
    model = extended()
    train = toy_dataset(TOKENIZER, labels=list(model.config.id2label.values()), outside_types=["LOC", "politician"])
    mixed = add_rehearsal(train, [["John", "Smith"], "Mary visited London"], model, TOKENIZER)
    assert len(mixed) == len(train) + 2 and mixed["rehearsal"] == [0] * len(train) + [1, 1]
    assert all(len(r["source_logits"]) == len(r["input_ids"]) for r in mixed)
    assert mixed.select(range(len(train)))["labels"] == train["labels"]


def test_old_f1_with_subtypes_counts_a_subtype_as_its_parent():
    gold = [["B-PER", "I-PER", "O", "B-ORG"]]
    predicted = [["B-politician", "I-politician", "O", "B-ORG"]]
    scores = load_entity_f1().compute(predictions=predicted, references=gold, new_types=["politician"],
                                      type_parents=PARENTS)
    assert scores["old_f1"] == pytest.approx(2 / 3)  # strict: the person was called a politician
    assert scores["old_f1_with_subtypes"] == 1.0
    assert "old_f1_with_subtypes" not in load_entity_f1().compute(predictions=predicted, references=gold)


def test_parents_survive_saving_and_loading(tmp_path):
    from hf_adapter_ext import NeuralAdapterModel

    model = extended(label_parents="politician=PER")
    model.save_pretrained(tmp_path)
    reloaded = NeuralAdapterModel.from_pretrained(tiny_source("bert", TOKENIZER.vocab_size), tmp_path)
    assert reloaded.peft_config.label_parents == PARENTS
    torch.testing.assert_close(reloaded._collapse, model._collapse)


@pytest.mark.parametrize("subtype_init", ["parent", "sampled"])
def test_a_subtype_starts_as_its_parent_only_when_asked(subtype_init):
    model = extended(label_parents=PARENTS, subtype_init=subtype_init)
    weight, bias = model.classifier.weight, model.classifier.bias
    label_id = model.config.label2id
    starts_as_parent = [torch.equal(weight[label_id[f"{p}-politician"]], weight[label_id[f"{p}-PER"]])
                        and torch.equal(bias[label_id[f"{p}-politician"]], bias[label_id[f"{p}-PER"]]) for p in "BI"]
    assert starts_as_parent == [subtype_init == "parent"] * 2
    # a type without a parent is drawn either way, and the source's rows are the source's
    assert not torch.equal(weight[label_id["B-LOC"]], weight[label_id["B-PER"]])
    assert torch.equal(weight[: len(OLD_LABELS)], model.source.classifier.weight)


def test_an_unknown_subtype_init_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="subtype_init.*parent.*sampled"):
        NeuralAdapterConfig(new_labels=NEW, subtype_init="copy")


def test_a_source_entity_the_gold_labels_cut_opens_again_instead_of_breaking_the_path():
    """new_only data: gold 'B-LOC' on word 1, O on word 2, where the source reads one ORG over both words. Filled in
    as is, the path would be B-LOC I-ORG, which the CRF forbids (~1e4 loss, refused by the CRF); the source's entity
    opens again on word 2 instead: B-LOC B-ORG."""
    model = extended(annotation="new_only")
    label2id = model.config.label2id
    source_logits = torch.full((1, 4, len(OLD_LABELS)), -10.0)
    for position, label in enumerate(["O", "B-ORG", "I-ORG", "O"]):
        source_logits[0, position, OLD_LABELS.index(label)] = 10.0
    gold = torch.tensor([[label2id["O"], label2id["B-LOC"], label2id["O"], label2id["O"]]])
    labels, _ = model._distill(torch.zeros(1, 4, len(label2id)), gold, source_logits, torch.ones(1, 4, dtype=torch.long),
                               torch.ones(1, dtype=torch.bool))
    assert [model.config.id2label[int(i)] for i in labels[0]] == ["O", "B-LOC", "B-ORG", "O"]
    loss = model(input_ids=torch.tensor([[2, 10, 11, 3]]), attention_mask=torch.ones(1, 4, dtype=torch.long),
                 labels=gold, source_logits=source_logits).loss
    assert torch.isfinite(loss) and loss < 100
