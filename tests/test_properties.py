"""Property-based tests (hypothesis) for classes of defect rather than named cases:

- readers: any tokens and BIO tags, written as CoNLL columns, JSON lines or CSV, read back identical;
- label renaming: any renaming of a data set's types scores, through the shipped metric, what seqeval scores on
  the renamed tags;
- SIB at run time: permuting the query set only permutes the answers;
- the extended model: a sentence scores and decodes the same alone as in any padded batch, for every target,
  adapter and head; a source's labels listed in any order teach the same extension, up to that order;
- type names: any string as a rename target or a label parent is used as written, or refused by name;
- new labels: any list of B-/I- tags is accepted only when every new type has both its tags, else refused by name;
- the scripts' numeric options at 0, negative, huge, NaN and infinite values: refused by name at parse time, or
  accepted (reaching the next step); where only positive values mean something, always refused.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import re
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from seqeval.metrics import f1_score
from seqeval.scheme import IOB2

from hf_adapter_ext import (
    AdapterDataCollator,
    NeuralAdapterConfig,
    SIBConfig,
    SIBForFewShotClassification,
    add_rehearsal,
    get_adapter_model,
)
from hf_adapter_ext.data import load_ner_files, rename_types
from hf_adapter_ext.metrics import load_entity_f1
from hf_adapter_ext.modeling.tags import validate_new_labels

from .conftest import OLD_LABELS, build_tokenizer, tiny_source
from .helpers import toy_dataset
from .test_bad_inputs_surfaces import REACHED_NEXT_STEP, SCRIPT_MODULES, run

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# A token is any text a whitespace-separated format can hold: no whitespace (str.split's, which includes the
# \x1c-\x1f separators and U+2028), no U+FEFF (a byte-order mark at a file's start is dropped by design), and not
# the CoNLL document marker.
_TOKEN_CHARS = st.characters(blacklist_categories=("Cs",), blacklist_characters="\ufeff").filter(
    lambda c: (c + "x").split() != ["x"])
TOKENS = st.text(_TOKEN_CHARS, min_size=1, max_size=8).filter(lambda t: t.split() == [t] and t != "-DOCSTART-")
TYPES = st.text(st.characters(min_codepoint=ord("a"), max_codepoint=ord("z")), min_size=1, max_size=4)


@st.composite
def tagged_sentences(draw):
    """Sentences of (token, IOB2 tag) with a few entity types; every I- continues an entity of its type."""
    types = draw(st.lists(TYPES, min_size=1, max_size=3, unique=True))
    sentences = []
    for _ in range(draw(st.integers(1, 4))):
        length = draw(st.integers(1, 6))
        tokens = draw(st.lists(TOKENS, min_size=length, max_size=length))
        tags, previous = [], None
        for _ in range(length):
            choice = draw(st.sampled_from(["O", "B", "I"] if previous else ["O", "B"]))
            if choice == "O":
                tags.append("O")
                previous = None
            elif choice == "B":
                previous = draw(st.sampled_from(types))
                tags.append(f"B-{previous}")
            else:
                tags.append(f"I-{previous}")
        sentences.append((tokens, tags))
    return sentences


def write(sentences, kind: str, folder: Path) -> Path:
    path = folder / {"conll": "train.txt", "json": "train.jsonl", "csv": "train.csv"}[kind]
    if kind == "conll":
        path.write_text("\n\n".join("\n".join(f"{w} {t}" for w, t in zip(*s)) for s in sentences) + "\n",
                        encoding="utf-8")
    elif kind == "json":
        path.write_text("".join(json.dumps({"tokens": w, "ner_tags": t}) + "\n" for w, t in sentences),
                        encoding="utf-8")
    else:
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["tokens", "ner_tags"])
            writer.writerows([" ".join(w), " ".join(t)] for w, t in sentences)
    return path


def read_back(dataset):
    names = dataset.features["ner_tags"].feature.names
    return [(row["tokens"], [names[t] for t in row["ner_tags"]]) for row in dataset]


@SETTINGS
@given(sentences=tagged_sentences(), kind=st.sampled_from(["conll", "json", "csv"]))
@example(sentences=[(["0"], ["O"]), (["0"], ["B-o"])], kind="conll")  # the outside tag is no type 'o' clashes with
def test_readers_give_back_every_token_and_tag_as_written(sentences, kind):
    with tempfile.TemporaryDirectory() as folder:
        data = load_ner_files({"train": write(sentences, kind, Path(folder))})
        assert read_back(data["train"]) == sentences


@SETTINGS
@given(sentences=tagged_sentences(), data=st.data())
def test_any_renaming_scores_as_seqeval_scores_the_renamed_tags(sentences, data):
    with tempfile.TemporaryDirectory() as folder:
        dataset = load_ner_files({"train": write(sentences, "json", Path(folder))})["train"]
    types = sorted({t[2:] for _, tags in sentences for t in tags if t != "O"})
    mapping = {t: data.draw(st.sampled_from(["O", "PER", "ORG", t.upper()]), label=t) for t in types}
    renamed = read_back(rename_types(dataset, mapping))

    def rename(tag: str) -> str:
        if tag == "O" or mapping[tag[2:]] == "O":
            return "O"
        return f"{tag[:2]}{mapping[tag[2:]]}"

    expected_tags = [[rename(t) for t in tags] for _, tags in sentences]
    assert [tags for _, tags in renamed] == expected_tags
    # predictions: the gold tags with every other entity dropped, so scores are neither 0 nor 1 only
    predictions = [[t if i % 2 == 0 else "O" for i, t in enumerate(tags)] for tags in expected_tags]
    predictions = [[t if t == "O" or t.startswith("B-") or p[i - 1] != "O" else "O" for i, t in enumerate(p)]
                   for p in predictions]
    ours = load_entity_f1().compute(predictions=predictions, references=expected_tags)["overall_f1"]
    reference = f1_score(expected_tags, predictions, mode="strict", scheme=IOB2, zero_division=0)
    assert abs(ours - reference) < 1e-9


def tiny_sib(n_way: int, steps: int) -> SIBForFewShotClassification:
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    backbone = BertModel(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                    intermediate_size=32), add_pooling_layer=False)
    return SIBForFewShotClassification(SIBConfig(n_way=n_way, inner_steps=steps), backbone=backbone).eval()


@SETTINGS
@given(n_way=st.integers(2, 6), shots=st.integers(1, 3), queries=st.integers(1, 20), steps=st.integers(0, 3),
       seed=st.integers(0, 2**16))
def test_permuting_the_queries_only_permutes_the_answers(n_way, shots, queries, steps, seed):
    model = tiny_sib(n_way, steps)
    g = torch.Generator().manual_seed(seed)
    support = torch.randn(1, n_way * shots, 16, generator=g)
    labels = torch.arange(n_way).repeat(shots)[None]
    query = torch.randn(1, queries, 16, generator=g)
    order = torch.randperm(queries, generator=g)
    with torch.no_grad():
        logits = model(support_labels=labels, support_features=support, query_features=query).logits[0]
        permuted = model(support_labels=labels, support_features=support, query_features=query[:, order]).logits[0]
    torch.testing.assert_close(permuted, logits[order], atol=1e-4, rtol=1e-4)


EXTENDED_OPTIONS = st.fixed_dictionaries({"target": st.sampled_from(["copy", "lora", "frozen"]),
                                          "adapter": st.sampled_from(["bilstm", "mlp", "none"]),
                                          "head": st.sampled_from(["crf", "linear"])})


@SETTINGS
@given(options=EXTENDED_OPTIONS, lengths=st.lists(st.integers(1, 12), min_size=1, max_size=4),
       seed=st.integers(0, 2**16))
def test_a_sentence_scores_the_same_alone_as_in_any_padded_batch(options, lengths, seed):
    """The batch a sentence is tagged in (its neighbours, how much padding) must not change its scores or its
    decoded tags: the source's scores, the BiLSTM adapter and the CRF all read the mask. (Right padding, as BERT's
    tokenizers pad: left padding shifts BERT's absolute positions in the source itself; the adapter alone is
    checked on left padding in test_adapter_model.)"""
    torch.manual_seed(seed)
    model = get_adapter_model(tiny_source("bert", 60, seed=seed % 7), NeuralAdapterConfig(
        new_labels=["B-LOC", "I-LOC"], **options)).eval()
    rows = [torch.randint(5, 60, (n,)) for n in lengths]
    width = max(lengths)
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, row in enumerate(rows):
        ids[i, : len(row)], mask[i, : len(row)] = row, 1
    with torch.no_grad():
        batch = model(input_ids=ids, attention_mask=mask)
        for i, row in enumerate(rows):
            alone = model(input_ids=row[None], attention_mask=torch.ones(1, len(row), dtype=torch.long))
            real = mask[i].bool()
            torch.testing.assert_close(batch.emissions[i, real], alone.emissions[0], atol=1e-4, rtol=1e-4)
            assert torch.equal(batch.logits[i, real].argmax(-1), alone.logits[0].argmax(-1))


TOY_TOKENIZER = build_tokenizer()


def extension_after_training(old_labels: list[str], row_order: list[int], options: dict):
    """A source whose output rows are the reference source's in ``row_order`` (labelled ``old_labels``), extended
    with LOC and trained a few steps on the toy corpus with rehearsal text: its scores (emissions, in its own label
    order), its decoded tags and its last loss."""
    source = tiny_source("bert", TOY_TOKENIZER.vocab_size, labels=old_labels)
    with torch.no_grad():
        source.classifier.weight.copy_(source.classifier.weight[row_order])
        source.classifier.bias.copy_(source.classifier.bias[row_order])
    torch.manual_seed(0)
    model = get_adapter_model(source, NeuralAdapterConfig(new_labels=["B-LOC", "I-LOC"], adapter="none", **options))
    labels = [*old_labels, "B-LOC", "I-LOC"]
    data = add_rehearsal(toy_dataset(TOY_TOKENIZER, labels=labels), ["mary visited acme", "the european union"],
                         model, TOY_TOKENIZER)
    batch = AdapterDataCollator(TOY_TOKENIZER)(list(data))
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=0.01)
    model.train()
    for _ in range(4):
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    with torch.no_grad():
        out = model.eval()(**{k: v for k, v in batch.items() if k not in ("labels", "rehearsal")})
    real = batch["attention_mask"].bool()
    tags = [labels[i] for i in out.logits[real].argmax(-1).tolist()]
    return out.emissions[real], tags, loss.item(), labels


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(order=st.permutations(range(len(OLD_LABELS))), head=st.sampled_from(["crf", "linear"]),
       annotation=st.sampled_from(["full", "new_only"]))
def test_a_source_s_label_order_does_not_change_what_its_extension_learns(order, head, annotation):
    """Hub taggers list their labels in any order ('O' last, types interleaved). Whatever reads a label by its id
    (the outside tag, padding, distillation of the source's scores, rehearsal, the BIO constraints) must read it by
    name: the same source with its labels listed in another order learns the same extension, up to that order."""
    options = {"head": head, "annotation": annotation}
    emissions, tags, loss, labels = extension_after_training(OLD_LABELS, list(range(len(OLD_LABELS))), options)
    permuted = [OLD_LABELS[i] for i in order]
    emissions_p, tags_p, loss_p, labels_p = extension_after_training(permuted, order, options)
    assert tags_p == tags
    assert loss_p == pytest.approx(loss, rel=1e-4)
    torch.testing.assert_close(emissions_p[:, [labels_p.index(label) for label in labels]], emissions,
                               atol=1e-4, rtol=1e-4)


# Any string a user may type as a type name: letters, the BIO prefixes, "O", spaces, empty.
NAME_PARTS = st.sampled_from(["", "O", "B-", "I-", " ", "PER", "per", "x", "\t", "-", "ORG", "é"])
ANY_NAME = st.lists(NAME_PARTS, min_size=0, max_size=3).map("".join)


def is_type_name(name: str) -> bool:
    """What an entity type name is, said independently of the library: non-empty, no whitespace, no BIO prefix."""
    return bool(name) and name.split() == [name] and name[:2] not in ("B-", "I-")


@SETTINGS
@given(sentences=tagged_sentences(), target=ANY_NAME)
def test_any_rename_target_is_renamed_or_refused_by_name(sentences, target):
    with tempfile.TemporaryDirectory() as folder:
        dataset = load_ner_files({"train": write(sentences, "json", Path(folder))})["train"]
    first = sorted({t[2:] for _, tags in sentences for t in tags if t != "O"} or {"x"})[0]
    if not any(t[2:] == first for _, tags in sentences for t in tags):
        return
    try:
        renamed = read_back(rename_types(dataset, {first: target}))
    except ValueError as err:
        assert not is_type_name(target) and repr(target) in str(err)
        return
    assert is_type_name(target)
    expected = [[("O" if target == "O" else f"{t[:2]}{target}") if t[2:] == first else t for t in tags]
                for _, tags in sentences]
    assert [tags for _, tags in renamed] == expected


@SETTINGS
@given(child=ANY_NAME, parent=ANY_NAME)
def test_any_label_parents_are_kept_or_refused_by_name(child, parent):
    new = [f"B-{child}", f"I-{child}"] if is_type_name(child) and child != "O" else ["B-LOC", "I-LOC"]
    try:
        model = get_adapter_model(tiny_source(), NeuralAdapterConfig(new_labels=new, label_parents={child: parent}))
    except (ValueError, TypeError) as err:
        old_types = ("PER", "ORG", "MISC")
        valid = is_type_name(child) and child not in ("O", *old_types) and parent in old_types and f"B-{child}" in new
        named = repr(child) in str(err) or repr(parent) in str(err) or f"'B-{child}'" in str(err)
        assert not valid and named, str(err)
        return
    assert model.peft_config.label_parents == {child: parent} and parent in ("PER", "ORG", "MISC")


PAIRED_SOURCE_LABELS = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG"]


@SETTINGS
@given(new=st.lists(st.tuples(st.sampled_from("BI"), st.sampled_from(["LOC", "GPE", "PER"])), min_size=1,
                    max_size=5, unique=True))
def test_any_new_labels_are_accepted_only_as_whole_b_i_pairs(new):
    labels = [f"{prefix}-{name}" for prefix, name in new]
    pairs_complete = all(f"{other}-{name}" in labels + PAIRED_SOURCE_LABELS for _, name in new for other in "BI")
    try:
        validate_new_labels(PAIRED_SOURCE_LABELS, labels)
    except ValueError as err:
        clash = any(label in PAIRED_SOURCE_LABELS for label in labels)
        assert clash or not pairs_complete, str(err)
        assert any(repr(label) in str(err) for label in labels), str(err)  # names what is wrong
        return
    assert pairs_complete and not any(label in PAIRED_SOURCE_LABELS for label in labels)


# Options where 0 or a negative value means nothing sensible (nothing trains, nothing is drawn): always refused.
POSITIVE_ONLY = {"learning_rate", "head_learning_rate", "num_train_epochs", "per_device_train_batch_size",
                 "per_device_eval_batch_size", "gradient_accumulation_steps", "max_train_samples", "max_eval_samples",
                 "max_predict_samples", "adapter_hidden_size", "lora_r", "lora_alpha", "distill_temperature",
                 "k_shot", "n_query", "n_way", "inner_lr", "init_scale", "grad_net_multiplier", "train_episodes",
                 "num_eval_episodes", "soft_kmeans_temperature", "max_test_episodes_file", "adam_epsilon",
                 "logging_steps"}
# Distributed-launch settings: a value there starts (or waits for) a process group instead of parsing on.
LAUNCH_OPTIONS = {"local_rank", "ddp_timeout", "ddp_bucket_cap_mb"}
# The values a user's typo gives a number.
TYPO_VALUES = ["0", "-1", "-0.5", "nan", "inf", "-inf", "1e308", str(2**64), "1e-300"]


def numeric_options(script: str) -> list[str]:
    """Every int or float option of a script's command line, read from the dataclasses it parses (so an option added
    later is covered without editing this test)."""
    groups = SCRIPT_MODULES[script]["ARGUMENTS"]
    return sorted({field.name for group in groups for field in dataclasses.fields(group)
                   if re.search(r"\b(int|float)\b", str(field.type)) and "list" not in str(field.type)
                   and not field.name.startswith("_") and field.name not in LAUNCH_OPTIONS})


def check_numeric_option(script: str, option: str, value: str) -> None:
    try:
        run(script, f"--{option}", value)
    except SystemExit as exit_:  # argparse: not a number of the option's kind ("0.5" for an int), named on stderr
        assert exit_.code == 2
        return
    except (ValueError, TypeError, FileNotFoundError, OSError) as err:
        message = str(err)
        refused = re.search(rf"\b{option}\b", message)
        assert refused or re.search(REACHED_NEXT_STEP, message), f"--{option} {value}: {message}"
        number = float(value)
        if option in POSITIVE_ONLY and not number > 0 or number != number:
            assert refused, f"--{option} {value} was accepted: {message}"
        return
    raise AssertionError(f"{script} --{option} {value} neither refused nor reached its next step")


@pytest.mark.parametrize("script", sorted(SCRIPT_MODULES))
def test_every_numeric_option_at_every_typo_value_is_refused_by_name_or_reaches_the_next_step(script):
    options = numeric_options(script)
    assert {"learning_rate", "seed", "warmup_steps"} <= set(options)
    for option in options:
        for value in TYPO_VALUES:
            check_numeric_option(script, option, value)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), script=st.sampled_from(sorted(SCRIPT_MODULES)))
def test_numeric_options_at_any_integer_are_refused_by_name_or_reach_the_next_step(data, script):
    option = data.draw(st.sampled_from(numeric_options(script)), label="option")
    check_numeric_option(script, option, str(data.draw(st.integers(-10**12, 10**12), label="value")))


