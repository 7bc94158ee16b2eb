"""Consolidation: an extended model becomes one plain transformers model (loads without hf_adapter_ext), and
extension can go on step after step from it."""

import copy
import dataclasses
import json
import subprocess
import sys

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import (
    AutoModelForTokenClassification,
    BertForTokenClassification,
    Trainer,
    TrainingArguments,
    pipeline,
)

from hf_adapter_ext import (
    AdapterDataCollator,
    BIOTokenClassificationPipeline,
    NeuralAdapterConfig,
    get_adapter_model,
    save_consolidated,
)
from hf_adapter_ext.adapter import anatomy
from hf_adapter_ext.adapter.consolidation import initial_student

from .conftest import tiny_config
from .helpers import ALL_LABELS, batch_of, toy_dataset

STEP1_OLD = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG"]
STEP1_NEW = ["B-MISC", "I-MISC"]
STEP2_NEW = ["B-LOC", "I-LOC"]


def source(tokenizer, labels=STEP1_OLD):
    torch.manual_seed(0)
    config = tiny_config("bert", tokenizer.vocab_size, labels)
    config.hidden_dropout_prob = config.attention_probs_dropout_prob = 0.0
    return AutoModelForTokenClassification.from_config(config).eval()


def args(tmp_path, steps, lr):
    return TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=5, max_steps=steps,
                             learning_rate=lr, report_to="none", save_strategy="no", use_cpu=True, seed=0,
                             disable_tqdm=True, logging_strategy="no")


def extend_and_train(src, new_labels, tokenizer, tmp_path, **config):
    model = get_adapter_model(src, NeuralAdapterConfig(new_labels=new_labels, **config))
    labels = model.peft_config.labels
    data = toy_dataset(tokenizer, repeat=4, labels=labels, outside_types=[t[2:] for t in ALL_LABELS
                                                                           if t != "O" and t not in labels])
    Trainer(model=model, args=args(tmp_path, 30, 5e-3), train_dataset=data,
            data_collator=AdapterDataCollator(tokenizer)).train()
    return model.eval(), data


def agreement(a, b, batch) -> float:
    with torch.no_grad():
        x = {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
        pa, pb = a(**x).logits.argmax(-1), b(**x).logits.argmax(-1)
    mask = batch["attention_mask"].bool()
    return (pa == pb)[mask].float().mean().item()


def test_extend_consolidate_extend_consolidate_through_the_public_api(tmp_path, tokenizer):
    extended, data = extend_and_train(source(tokenizer), STEP1_NEW, tokenizer, tmp_path / "a")
    batch = batch_of(tokenizer, data)
    before = agreement(extended, initial_student(extended), batch)
    plain = extended.consolidate(data, tokenizer, args=args(tmp_path / "b", 60, 5e-3), eval_dataset=data)
    assert type(plain) is BertForTokenClassification and plain.config.num_labels == 7
    assert plain.config.id2label == extended.config.id2label
    after = agreement(extended, plain, batch)
    assert after >= max(before, 0.9), (before, after)
    evaluation = plain.consolidation_report["evaluation"]
    assert {"extended_overall_f1", "consolidated_overall_f1", "consolidated_bio_invalid_spans"} <= set(evaluation)
    assert evaluation["consolidated_constrained_bio_invalid_spans"] == 0  # constrained decoding breaks no span

    # step 2: the consolidated model is an ordinary source
    again, data2 = extend_and_train(plain, STEP2_NEW, tokenizer, tmp_path / "c")
    assert again.peft_config.old_labels == list(extended.peft_config.labels)
    final = again.consolidate(data2, tokenizer, unlabelled=["John flew to Paris .", "Mary rose ."],
                              args=args(tmp_path / "d", 60, 5e-3))
    assert final.config.num_labels == 9 and final.consolidation_report["unlabelled_examples"] == 2
    assert agreement(again, final, batch_of(tokenizer, data2)) >= 0.9


def test_consolidated_folder_is_plain_transformers_and_loads_where_hf_adapter_ext_cannot_be_imported(
        tmp_path, tokenizer):
    extended, data = extend_and_train(source(tokenizer), STEP1_NEW, tokenizer, tmp_path / "a")
    plain = extended.consolidate(data, tokenizer, args=args(tmp_path / "b", 20, 5e-3))
    folder = tmp_path / "plain"
    save_consolidated(plain, folder, tokenizer)
    names = {p.name for p in folder.iterdir()}
    assert {"config.json", "model.safetensors", "README.md", "tokenizer.json"} <= names
    assert not {n for n in names if n.endswith((".bin", ".pt", ".pkl")) or n.startswith("adapter_")}
    card = (folder / "README.md").read_text()
    assert "consolidated" in card and "CRF" in card and "mixed with 0.5 of its own decoded prediction" in card
    text = "John Smith works for Acme Corporation in Paris ."
    with torch.no_grad():
        expected = plain(**tokenizer(text, return_tensors="pt")).logits.argmax(-1)[0].tolist()
    script = f"""
import json, sys
sys.modules["hf_adapter_ext"] = None  # importing it now raises ImportError
import torch
from transformers import AutoModelForTokenClassification, AutoTokenizer, pipeline
model = AutoModelForTokenClassification.from_pretrained({str(folder)!r}).eval()
tok = AutoTokenizer.from_pretrained({str(folder)!r})
with torch.no_grad():
    ids = model(**tok({text!r}, return_tensors="pt")).logits.argmax(-1)[0].tolist()
entities = pipeline("token-classification", model={str(folder)!r})({text!r})
bio = pipeline(model={str(folder)!r}, trust_remote_code=True, aggregation_strategy="first")({text!r}, ignore_labels=[])
print(json.dumps({{"ids": ids, "entities": len(entities), "bio": [(e["entity_group"], e["start"], e["end"])
                                                                for e in bio]}}))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                            env={"HF_HUB_OFFLINE": "1", "PATH": "", "HF_HOME": str(tmp_path / "hf")})
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found["ids"] == expected
    # the BIO pipeline the folder carries (trust_remote_code) tags as hf_adapter_ext's own does
    ours = pipeline("token-classification", model=plain.eval(), tokenizer=tokenizer, aggregation_strategy="first",
                    pipeline_class=BIOTokenClassificationPipeline)(text, ignore_labels=[])
    assert found["bio"] == [[e["entity_group"], e["start"], e["end"]] for e in ours]
    assert json.loads((folder / "config.json").read_text())["custom_pipelines"]["bio-token-classification"][
        "impl"] == "pipelines.BIOTokenClassificationPipeline"
    assert "trust_remote_code=True" in card


def test_lora_is_merged_exactly_into_the_initial_plain_model(tmp_path, tokenizer):
    extended = get_adapter_model(source(tokenizer), NeuralAdapterConfig(new_labels=STEP1_NEW, target="lora",
                                                                        lora_dropout=0.0))
    with torch.no_grad():
        for name, p in extended.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    student = initial_student(extended)
    x = tokenizer(["John visited Paris ."], return_tensors="pt")
    with torch.no_grad():
        features = extended._features_and_source_logits(dict(x), None, need_source=False)[0]
        expected = extended.classifier(features)
        with anatomy.lora_disabled(extended._lora_layers):
            plain_features = extended.source.base_model(**x)[0]
        assert not torch.allclose(features, plain_features, atol=1e-3)  # LoRA changes them
        torch.testing.assert_close(student(**x).logits, expected, atol=1e-5, rtol=1e-5)


def test_an_expanded_linear_head_is_consolidated_exactly_without_distillation(tmp_path, tokenizer):
    extended, data = extend_and_train(source(tokenizer), STEP1_NEW, tokenizer, tmp_path, adapter="none",
                                      head="linear", annotation="new_only")
    plain = extended.consolidate(data, tokenizer)
    assert plain.consolidation_report["exact"] and plain.consolidation_report["distillation_examples"] == 0
    x = tokenizer(["John visited Paris .", "Acme hired Mary"], return_tensors="pt", padding=True)
    with torch.no_grad():
        torch.testing.assert_close(plain(**x).logits, extended(**x).logits, atol=1e-6, rtol=1e-6)
    save_consolidated(plain, tmp_path / "plain", tokenizer)
    assert "exact copy" in (tmp_path / "plain" / "README.md").read_text()


def test_consolidating_an_untrained_extension_is_refused(tokenizer):
    model = get_adapter_model(source(tokenizer), NeuralAdapterConfig(new_labels=STEP1_NEW))
    with pytest.raises(ValueError, match="not been trained"):
        model.consolidate(toy_dataset(tokenizer), tokenizer)


def test_consolidating_a_source_without_a_transformers_class_is_refused(tokenizer):
    from hf_adapter_ext import BiLSTMCRFConfig, BiLSTMCRFForTokenClassification

    labels = STEP1_OLD
    src = BiLSTMCRFForTokenClassification(BiLSTMCRFConfig(
        vocab_size=50, id2label=dict(enumerate(labels)), label2id={label: i for i, label in enumerate(labels)}))
    model = get_adapter_model(src, NeuralAdapterConfig(new_labels=STEP1_NEW))
    model.has_trained = True
    with pytest.raises(ValueError, match="transformers architecture"):
        model.consolidate(toy_dataset(tokenizer), tokenizer)


def test_extending_an_extended_model_points_to_consolidation(tokenizer):
    model = get_adapter_model(source(tokenizer), NeuralAdapterConfig(new_labels=STEP1_NEW))
    with pytest.raises(ValueError, match="Consolidate it first"):
        get_adapter_model(model, NeuralAdapterConfig(new_labels=STEP2_NEW))


def test_extending_with_labels_an_earlier_step_added_is_refused(tmp_path, tokenizer):
    extended, data = extend_and_train(source(tokenizer), STEP1_NEW, tokenizer, tmp_path / "a")
    plain = extended.consolidate(data, tokenizer, args=args(tmp_path / "b", 2, 5e-3))
    with pytest.raises(ValueError, match=r"already exist"):
        get_adapter_model(plain, NeuralAdapterConfig(new_labels=STEP1_NEW))


def test_unlabelled_text_must_be_non_empty_strings(tmp_path, tokenizer):
    extended, data = extend_and_train(source(tokenizer), STEP1_NEW, tokenizer, tmp_path / "a")
    with pytest.raises(ValueError, match="unlabelled"):
        extended.consolidate(data, tokenizer, unlabelled=[], args=args(tmp_path / "b", 2, 5e-3))


def test_extending_a_consolidated_model_with_another_tokenizer_is_refused(tmp_path, tokenizer):
    from transformers import AutoModelForTokenClassification, BertTokenizerFast

    from hf_adapter_ext import add_source_logits

    extended, data = extend_and_train(source(tokenizer), STEP1_NEW, tokenizer, tmp_path / "a")
    folder = tmp_path / "plain"
    save_consolidated(extended.consolidate(data, tokenizer, args=args(tmp_path / "b", 5, 5e-3)), folder, tokenizer)
    again = get_adapter_model(AutoModelForTokenClassification.from_pretrained(folder),
                              NeuralAdapterConfig(new_labels=STEP2_NEW))
    vocab = tmp_path / "vocab.txt"
    words = list(tokenizer.get_vocab())
    vocab.write_text("\n".join(words[::-1]))  # the same tokens, other ids: silently different words
    other = BertTokenizerFast(vocab_file=str(vocab))
    with pytest.raises(ValueError, match="vocabulary differs from the one saved with the model"):
        add_source_logits(data, again, other)
    assert len(add_source_logits(data, again, tokenizer)) == len(data)  # its own tokenizer is fine


@pytest.mark.parametrize("head", ["crf", "linear"])
def test_path_weight_makes_the_targets_argmax_the_teachers_own_prediction(tmp_path, tokenizer, head):
    from hf_adapter_ext.adapter.consolidation import teacher_distribution

    extended, data = extend_and_train(source(tokenizer), STEP1_NEW, tokenizer, tmp_path / "a", head=head)
    batch = batch_of(tokenizer, data)
    inputs = {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
    mask = batch["attention_mask"].bool()
    with torch.no_grad():
        out = extended(**inputs)
        predicted = extended.crf.decode(out.emissions, batch["attention_mask"]) if head == "crf" \
            else out.emissions.argmax(-1)
    soft = teacher_distribution(extended, batch)
    mixed = teacher_distribution(extended, batch, path_weight=0.5)
    torch.testing.assert_close(mixed.sum(-1)[mask], torch.ones(int(mask.sum())))
    assert torch.equal(mixed.argmax(-1)[mask], predicted[mask])
    torch.testing.assert_close(teacher_distribution(extended, batch, path_weight=0.0), soft)
    torch.testing.assert_close(mixed, 0.5 * soft + 0.5 * torch.nn.functional.one_hot(
        predicted.clamp(min=0), soft.size(-1)).float() * mask.unsqueeze(-1))


@pytest.mark.parametrize("weight", [-0.1, 1.5])
def test_a_path_weight_outside_0_1_is_refused(tokenizer, weight):
    model = get_adapter_model(source(tokenizer), NeuralAdapterConfig(new_labels=STEP1_NEW))
    with pytest.raises(ValueError, match="path_weight"):
        model.consolidate(toy_dataset(tokenizer), tokenizer, path_weight=weight)


def test_with_validation_the_distillation_keeps_its_best_step_and_stops_early(tmp_path, tokenizer):
    """A step budget evaluated on the labelled eval_dataset (entity F1 against its gold tags), the best step kept,
    stopped after the patience: how an extension trains (consolidation_training_defaults, #30 point 5)."""
    extended, data = extend_and_train(source(tokenizer), STEP1_NEW, tokenizer, tmp_path / "a")
    budget = TrainingArguments(output_dir=str(tmp_path / "b"), per_device_train_batch_size=5, max_steps=400,
                               learning_rate=5e-3, report_to="none", use_cpu=True, seed=0, disable_tqdm=True,
                               logging_strategy="no", eval_strategy="steps", eval_steps=5, save_strategy="steps",
                               save_steps=5, save_total_limit=1, load_best_model_at_end=True,
                               metric_for_best_model="overall_f1")
    plain = extended.consolidate(data, tokenizer, args=budget, eval_dataset=data)
    report = plain.consolidation_report
    assert report["best_step"] % 5 == 0 and report["steps"] < 400  # the toy task is learnt long before the budget
    assert report["evaluation"]["consolidated_overall_f1"] >= report["evaluation"]["extended_overall_f1"] - 0.05


def test_an_evaluating_budget_without_eval_dataset_is_refused(tmp_path, tokenizer):
    extended, data = extend_and_train(source(tokenizer), STEP1_NEW, tokenizer, tmp_path / "a")
    budget = TrainingArguments(output_dir=str(tmp_path / "b"), max_steps=5, report_to="none", use_cpu=True,
                               eval_strategy="steps", eval_steps=5)
    with pytest.raises(ValueError, match="no eval_dataset was given"):
        extended.consolidate(data, tokenizer, args=budget)


@pytest.mark.parametrize("validated", [False, True])
def test_the_default_consolidation_budget_is_valid_training_arguments(tmp_path, validated):
    from hf_adapter_ext.adapter.consolidation import consolidation_training_defaults
    from hf_adapter_ext.validation import check_training_arguments

    settings = TrainingArguments(output_dir=str(tmp_path), **consolidation_training_defaults(validated))
    check_training_arguments(settings)
    assert settings.max_steps > 0 and settings.load_best_model_at_end == validated


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 3), st.integers(1, 6), st.integers(0, 2**31 - 1))
def test_invalid_transition_mass_is_the_brute_force_probability_of_a_forbidden_pair(batch, length, seed):
    """Against a float64 sum over every (previous tag, tag) pair the BIO rules forbid, padding excluded."""
    from hf_adapter_ext.adapter.consolidation import invalid_transition_mass
    from hf_adapter_ext.bio import bio_allowed_transitions

    labels = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    generator = torch.Generator().manual_seed(seed)
    probs = torch.rand(batch, length, len(labels), generator=generator, dtype=torch.float64).softmax(-1)
    mask = torch.rand(batch, length, generator=generator) < 0.8
    mask[:, 0] = True
    mask = mask.cumprod(dim=1).bool()  # right padding
    allowed, _ = bio_allowed_transitions(labels)
    mass = invalid_transition_mass(probs, mask, torch.from_numpy(~allowed).double())
    for b in range(batch):
        for t in range(length):
            expected = 0.0
            if t > 0 and mask[b, t] and mask[b, t - 1]:
                expected = sum(float(probs[b, t - 1, i] * probs[b, t, j]) for i in range(len(labels))
                               for j in range(len(labels)) if not allowed[i, j])
            assert abs(float(mass[b, t]) - expected) < 1e-12


def test_a_transition_weight_trains_and_is_reported(tmp_path, tokenizer):
    extended, data = extend_and_train(source(tokenizer), STEP1_NEW, tokenizer, tmp_path / "a")
    plain = extended.consolidate(data, tokenizer, args=args(tmp_path / "b", 20, 5e-3), transition_weight=1.0)
    assert plain.consolidation_report["transition_weight"] == 1.0
    assert agreement(extended, plain, batch_of(tokenizer, data)) >= 0.9


@pytest.mark.parametrize("padding_side", ["right", "left"])
@pytest.mark.parametrize("head", ["crf", "linear"])
def test_precomputed_teacher_targets_are_each_rows_own_targets(tmp_path, tokenizer, head, padding_side):
    """`with_teacher_targets` pads rows of different lengths into one teacher pass; each row's cached target must be
    what the teacher gives that row alone, unpadded (left padding would shift BERT's positions), and the collator
    must put it back where the row's tokens are, on either padding side."""
    from hf_adapter_ext.adapter.consolidation import (
        TEACHER_TARGET,
        _DistillationCollator,
        distillation_data,
        teacher_distribution,
        with_teacher_targets,
    )

    extended, data = extend_and_train(source(tokenizer), STEP1_NEW, tokenizer, tmp_path / "a", head=head)
    tokenizer = copy.deepcopy(tokenizer)
    tokenizer.padding_side = padding_side
    rows = distillation_data(data.select(range(6)), ["Paris .", "John flew to Rome with Mary and Bob today ."],
                             tokenizer)
    cached = with_teacher_targets(rows, extended, tokenizer, path_weight=0.5, batch_size=4)
    assert len({len(ids) for ids in cached["input_ids"]}) > 1  # the rows really differ in length
    for row in cached:
        alone = {k: torch.tensor([row[k]]) for k in ("input_ids", "attention_mask", "token_type_ids") if k in row}
        torch.testing.assert_close(torch.tensor(row[TEACHER_TARGET]), teacher_distribution(extended, alone, 0.5)[0])
    batch = _DistillationCollator(tokenizer)([cached[i] for i in range(len(cached))])
    for row, target, mask in zip(cached, batch[TEACHER_TARGET], batch["attention_mask"].bool()):
        torch.testing.assert_close(target[mask], torch.tensor(row[TEACHER_TARGET]))
        assert not target[~mask].any()  # padding carries no target


def test_a_distillation_with_precomputed_targets_trains_the_student_a_per_step_teacher_would(
        tmp_path, tokenizer, monkeypatch):
    """A budget that visits each row more than once precomputes the teacher's targets; the student it trains is the
    one the teacher run at every step trains (float32 noise only). SGD, because Adam turns the float noise of a
    gradient that is zero in exact arithmetic (the attention keys' bias) into full-size steps."""
    from hf_adapter_ext.adapter import consolidation

    extended, data = extend_and_train(source(tokenizer), STEP1_NEW, tokenizer, tmp_path / "a")
    budget = dataclasses.replace(args(tmp_path / "b", 10, 0.1), optim="sgd")
    assert consolidation.visits_rows_more_than_once(budget, len(data))
    cached = extended.consolidate(data, tokenizer, args=budget)
    monkeypatch.setattr(consolidation, "visits_rows_more_than_once", lambda *_: False)
    per_step = extended.consolidate(data, tokenizer, args=budget)
    assert cached.consolidation_report["train_seconds"] and per_step.consolidation_report["steps"] == 10
    for (name, a), (_, b) in zip(cached.named_parameters(), per_step.named_parameters()):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4, msg=name)
