import numpy as np
import pytest
import torch
from transformers import DataCollatorForTokenClassification, Trainer, TrainingArguments, pipeline

from hf_adapter_ext import AdapterDataCollator, NeuralAdapterConfig, add_source_logits, get_adapter_model
from hf_adapter_ext.metrics import entity_f1_compute_metrics

from .conftest import NEW_LABELS, tiny_source
from .helpers import toy_dataset


def args(tmp_path, **overrides):
    defaults = dict(output_dir=str(tmp_path), per_device_train_batch_size=2, learning_rate=5e-3, max_steps=6,
                    report_to="none", save_strategy="no", use_cpu=True, seed=7, disable_tqdm=True,
                    logging_strategy="no")
    return TrainingArguments(**{**defaults, **overrides})


@pytest.mark.parametrize("target", ["copy", "lora", "frozen"])
def test_trainer_optimises_only_trainable_parameters_and_evaluates(tmp_path, tokenizer, target):
    model = get_adapter_model(tiny_source(), NeuralAdapterConfig(new_labels=NEW_LABELS, target=target))
    data = toy_dataset(tokenizer, repeat=2)
    trainer = Trainer(
        model=model, args=args(tmp_path), train_dataset=data, eval_dataset=data,
        data_collator=DataCollatorForTokenClassification(tokenizer),
        compute_metrics=entity_f1_compute_metrics(model.config.id2label, new_types=["LOC"]),
    )
    trainer.create_optimizer()
    optimised = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert optimised == {id(p) for p in model.parameters() if p.requires_grad}
    trainer.train()
    metrics = trainer.evaluate()
    assert {"eval_overall_f1", "eval_old_f1", "eval_new_f1"} <= metrics.keys()


@pytest.mark.parametrize("target", ["copy", "lora"])
def test_training_on_cached_source_outputs_equals_training_without(tmp_path, tokenizer, target):
    data = toy_dataset(tokenizer, repeat=2)
    results = []
    for use_cache in (False, True):
        model = get_adapter_model(tiny_source(seed=1), NeuralAdapterConfig(new_labels=NEW_LABELS, target=target))
        train = add_source_logits(data, model, tokenizer, batch_size=3) if use_cache else data
        if use_cache:
            assert np.asarray(train[0]["source_logits"]).shape == (len(train[0]["input_ids"]), 7)
        calls = []
        hook = model.source.register_forward_hook(lambda *a, calls=calls: calls.append(1))
        Trainer(model=model, args=args(tmp_path), train_dataset=train,
                data_collator=AdapterDataCollator(tokenizer)).train()
        hook.remove()
        assert (len(calls) == 0) == use_cache, "with the cache the frozen source does not run during training"
        results.append({k: v.detach().clone() for k, v in model.adapter_state_dict().items()})
    plain, cached = results
    assert plain.keys() == cached.keys()
    for name in plain:
        torch.testing.assert_close(plain[name], cached[name], atol=2e-5, rtol=1e-4, msg=name)
    assert any(not torch.equal(v, get_adapter_model(tiny_source(seed=1), NeuralAdapterConfig(
        new_labels=NEW_LABELS, target=target)).adapter_state_dict()[k]) for k, v in plain.items() if "lora_" not in k)


@pytest.fixture(scope="module")
def fitted(tokenizer):
    """A tiny extended model that has learnt the toy corpus (old and new types)."""
    torch.manual_seed(0)
    model = get_adapter_model(tiny_source(seed=2), NeuralAdapterConfig(new_labels=NEW_LABELS))
    data = toy_dataset(tokenizer, repeat=4)
    collator = DataCollatorForTokenClassification(tokenizer)
    batch = collator([data[i] for i in range(len(data))])
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    model.train()
    for _ in range(150):
        model(**batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return model.eval()


def test_pipeline_finds_old_and_new_types_and_matches_viterbi(tokenizer, fitted):
    sentence = "Mary visited London with the United Nations delegation yesterday ."
    tagger = pipeline("token-classification", model=fitted, tokenizer=tokenizer, aggregation_strategy="simple")
    assert {"PER", "LOC", "ORG"} <= {g["entity_group"] for g in tagger(sentence)}
    # word-level grouping (label of each word's first subword, as the model was trained)
    words = pipeline("token-classification", model=fitted, tokenizer=tokenizer, aggregation_strategy="first")
    found = {(g["entity_group"], g["word"]) for g in words(sentence)}
    assert {("PER", "mary"), ("LOC", "london"), ("ORG", "united nations")} <= found, found

    raw = pipeline("token-classification", model=fitted, tokenizer=tokenizer, aggregation_strategy="none",
                   ignore_labels=[])
    text = "Peter Blackburn flew from Brussels to Washington for talks ."
    tokens = raw(text)
    encoded = tokenizer(text, return_tensors="pt")
    with torch.no_grad():
        emissions = fitted(**encoded).emissions
    viterbi = fitted.crf.decode(emissions, encoded["attention_mask"])[0, 1:-1]  # drop [CLS] / [SEP]
    assert [t["entity"] for t in tokens] == [fitted.config.id2label[int(i)] for i in viterbi]


@pytest.mark.parametrize("target", ["copy", "lora"])
def test_gradient_checkpointing_flag_trains_to_the_same_weights(tmp_path, tokenizer, target):
    from .conftest import OLD_LABELS
    from .scripts.one_step import _no_dropout_source

    results = []
    for checkpointing in (False, True):
        model = get_adapter_model(_no_dropout_source(tokenizer.vocab_size),
                                  NeuralAdapterConfig(new_labels=NEW_LABELS, target=target, lora_dropout=0.0))
        trainer = Trainer(model=model, args=args(tmp_path, gradient_checkpointing=checkpointing, max_steps=2),
                          train_dataset=toy_dataset(tokenizer, labels=OLD_LABELS + NEW_LABELS),
                          data_collator=AdapterDataCollator(tokenizer))
        trainer.train()
        assert model.is_gradient_checkpointing == checkpointing
        results.append(model.adapter_state_dict())
    for name, value in results[0].items():
        torch.testing.assert_close(results[1][name], value, msg=name)


@pytest.mark.parametrize("head", ["crf", "linear"])
def test_bf16_flag_trains_with_finite_losses_and_float32_weights(tmp_path, tokenizer, head):
    from .conftest import OLD_LABELS

    model = get_adapter_model(tiny_source(), NeuralAdapterConfig(new_labels=NEW_LABELS, head=head))
    trainer = Trainer(model=model, args=args(tmp_path, bf16=True, max_steps=3, logging_strategy="steps",
                                             logging_steps=1),
                      train_dataset=toy_dataset(tokenizer, labels=OLD_LABELS + NEW_LABELS),
                      data_collator=AdapterDataCollator(tokenizer))
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(losses) == 3 and all(np.isfinite(losses))
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_load_best_model_at_end_and_its_checkpoint_reload_with_from_pretrained(tmp_path, tokenizer):
    from hf_adapter_ext import NeuralAdapterModel

    from .conftest import OLD_LABELS

    config = NeuralAdapterConfig(new_labels=NEW_LABELS)
    model = get_adapter_model(tiny_source(), config)
    data = toy_dataset(tokenizer, labels=OLD_LABELS + NEW_LABELS)
    trainer = Trainer(model=model, args=args(tmp_path, eval_strategy="steps", eval_steps=2, save_strategy="steps",
                                             save_steps=2, load_best_model_at_end=True,
                                             metric_for_best_model="eval_loss"),
                      train_dataset=data, eval_dataset=data, data_collator=AdapterDataCollator(tokenizer))
    trainer.train()
    reloaded = NeuralAdapterModel.from_pretrained(tiny_source(), trainer.state.best_model_checkpoint)
    batch = AdapterDataCollator(tokenizer)([data[i] for i in range(3)])
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask")}
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**inputs).emissions, model(**inputs).emissions)


@pytest.mark.parametrize("target", ["frozen", "lora"])
def test_trainer_checkpoint_holds_only_what_trains_and_reloads_exactly(tmp_path, tokenizer, target):
    """A Trainer checkpoint of a frozen / lora extension stores at most 10 % of the source's weight bytes (the
    source is referenced, not stored again) and reloads, with no extra argument, to identical logits."""
    import os

    from transformers import BertConfig, BertForTokenClassification

    from hf_adapter_ext import NeuralAdapterModel

    from .conftest import OLD_LABELS

    labels = {"id2label": dict(enumerate(OLD_LABELS)), "label2id": {x: i for i, x in enumerate(OLD_LABELS)}}
    source_config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=128, num_hidden_layers=4,
                               num_attention_heads=4, intermediate_size=512, **labels)
    torch.manual_seed(0)
    source = BertForTokenClassification(source_config)
    source_bytes = sum(p.numel() * p.element_size() for p in source.parameters())
    model = get_adapter_model(source, NeuralAdapterConfig(new_labels=NEW_LABELS, target=target,
                                                          adapter_hidden_size=16))
    data = toy_dataset(tokenizer, labels=OLD_LABELS + NEW_LABELS)
    trainer = Trainer(model=model, args=args(tmp_path, save_strategy="steps", save_steps=3, max_steps=3),
                      train_dataset=data, data_collator=AdapterDataCollator(tokenizer))
    trainer.train()
    checkpoint = tmp_path / "checkpoint-3"
    weights = {(f.stat().st_ino, f.stat().st_size) for f in checkpoint.iterdir() if f.suffix == ".safetensors"}
    assert sum(size for _, size in weights) <= 0.10 * source_bytes, (weights, source_bytes)
    assert not any(f.name.startswith("source.") for f in checkpoint.iterdir())
    torch.manual_seed(0)
    fresh_source = BertForTokenClassification(source_config)  # the same source, loaded anew
    reloaded = NeuralAdapterModel.from_pretrained(fresh_source, str(checkpoint))
    batch = AdapterDataCollator(tokenizer)([data[i] for i in range(3)])
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask")}
    model.eval()
    with torch.no_grad():
        assert torch.equal(reloaded(**inputs).logits, model(**inputs).logits)
        assert torch.equal(reloaded(**inputs).emissions, model(**inputs).emissions)
    assert os.path.isfile(checkpoint / "optimizer.pt")  # Trainer's own state is still there to resume from

