"""Training an extension: per-step rehearsal sampling, a step budget with early stopping, self-training on
unlabelled domain text (ExtensionTrainer, RehearsalSampler, pseudo_label, add_pseudo_labels)."""

import logging
import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from transformers import Trainer, TrainingArguments
from transformers.optimization import Adafactor

from hf_adapter_ext import (
    AdapterDataCollator,
    ExtensionTrainer,
    NeuralAdapterConfig,
    add_pseudo_labels,
    add_rehearsal,
    add_source_logits,
    extension_training_defaults,
    get_adapter_model,
)
from hf_adapter_ext.adapter import RehearsalSampler, pseudo_label
from hf_adapter_ext.adapter.optim import FRESH_PREFIXES, adapter_optimizer
from hf_adapter_ext.constants import IGNORE_INDEX
from hf_adapter_ext.metrics import predict_tags

from .conftest import CORPUS, NEW_LABELS, tiny_source
from .helpers import toy_dataset


# ------------------------------------------------------------------ the sampler
@given(labelled=st.integers(1, 30), pool=st.integers(0, 80), ratio=st.floats(0.1, 4.0), seed=st.integers(0, 99))
def test_each_pass_holds_every_labelled_row_once_and_a_fixed_share_of_rehearsal(labelled, pool, ratio, seed):
    flags = [0] * labelled + [1] * pool
    sampler = RehearsalSampler(flags, ratio, seed)
    uses = torch.zeros(labelled + pool, dtype=torch.long)
    for epoch in range(4):
        sampler.set_epoch(epoch)
        rows = list(sampler)
        assert len(rows) == len(sampler)
        assert sorted(r for r in rows if r < labelled) == list(range(labelled))
        drawn = [r for r in rows if r >= labelled]
        assert len(drawn) == (math.ceil(ratio * labelled) if pool else 0)
        uses += torch.bincount(torch.tensor(drawn, dtype=torch.long), minlength=labelled + pool)
        if pool:  # every rehearsal row is used before any is used twice
            assert uses[labelled:].max() - uses[labelled:].min() <= 1


def test_a_pass_depends_on_the_seed_and_the_pass_only():
    flags = [0] * 6 + [1] * 20
    first, again, other = RehearsalSampler(flags, 1.0, 3), RehearsalSampler(flags, 1.0, 3), RehearsalSampler(flags, 1.0, 4)
    first.set_epoch(2)
    again.set_epoch(2)
    other.set_epoch(2)
    assert list(first) == list(again) != list(other)


def test_the_sampler_refuses_what_it_cannot_draw():
    with pytest.raises(ValueError, match="only rehearsal rows"):
        RehearsalSampler([1, 1, 1])
    with pytest.raises(ValueError, match="ratio"):
        RehearsalSampler([0, 1], ratio=0.0)
    assert len(RehearsalSampler([0, 0, 0])) == 3  # no pool: the labelled rows alone


# ------------------------------------------------------------------ the trainer
def training_args(tmp_path, **overrides):
    settings = {**extension_training_defaults(), "output_dir": str(tmp_path), "max_steps": 40, "eval_steps": 4,
                "save_steps": 4, "per_device_train_batch_size": 4, "learning_rate": 5e-3, "report_to": "none",
                "use_cpu": True, "disable_tqdm": True, "logging_strategy": "no", "seed": 0}
    return TrainingArguments(**{**settings, **overrides})


class Scores:
    """compute_metrics returning a chosen sequence of overall_f1 values, one per evaluation."""

    def __init__(self, values):
        self.values = list(values)

    def __call__(self, prediction):
        return {"overall_f1": self.values.pop(0) if len(self.values) > 1 else self.values[0]}


@pytest.fixture
def extension():
    torch.manual_seed(0)
    return get_adapter_model(tiny_source(), NeuralAdapterConfig(new_labels=NEW_LABELS))


def test_the_fresh_parts_train_at_the_head_learning_rate(tmp_path, tokenizer, extension):
    data = toy_dataset(tokenizer)
    trainer = ExtensionTrainer(model=extension, args=training_args(tmp_path), train_dataset=data, eval_dataset=data,
                               data_collator=AdapterDataCollator(tokenizer), head_learning_rate=0.02,
                               compute_metrics=Scores([0.1]))
    trainer.create_optimizer()
    rates = {id(p): group["lr"] for group in trainer.optimizer.param_groups for p in group["params"]}
    for name, param in extension.named_parameters():
        if param.requires_grad:
            assert rates[id(param)] == (0.02 if name.startswith(FRESH_PREFIXES) else 5e-3), name


def test_training_stops_once_validation_stops_rising(tmp_path, tokenizer, extension):
    data = toy_dataset(tokenizer)
    trainer = ExtensionTrainer(model=extension, args=training_args(tmp_path), train_dataset=data, eval_dataset=data,
                               data_collator=AdapterDataCollator(tokenizer), early_stopping_patience=2,
                               compute_metrics=Scores([0.1, 0.5, 0.4, 0.3, 0.2]))
    trainer.train()
    assert trainer.state.global_step == 16  # best at step 8, then 2 evaluations without gain
    assert trainer.state.best_global_step == 8


def test_a_run_whose_best_step_is_its_last_says_so(tmp_path, tokenizer, extension, caplog):
    data = toy_dataset(tokenizer)
    trainer = ExtensionTrainer(model=extension, args=training_args(tmp_path, max_steps=12), train_dataset=data,
                               eval_dataset=data, data_collator=AdapterDataCollator(tokenizer),
                               compute_metrics=Scores([0.1, 0.2, 0.3]))
    with caplog.at_level(logging.WARNING):
        trainer.train()
    assert "still improving" in caplog.text and "step 12 of 12" in caplog.text


def test_rehearsal_rows_are_drawn_per_step(tmp_path, tokenizer, extension):
    train = add_rehearsal(toy_dataset(tokenizer), CORPUS * 8, extension, tokenizer)  # 5 labelled, 40 rehearsal
    trainer = ExtensionTrainer(model=extension, args=training_args(tmp_path, eval_strategy="no",
                                                                   load_best_model_at_end=False, save_strategy="no"),
                               train_dataset=train, data_collator=AdapterDataCollator(tokenizer), rehearsal_ratio=2.0)
    loader = trainer.get_train_dataloader()
    assert len(loader.dataset) == 45 and len(list(loader)) == 4  # 5 labelled + 10 rehearsal rows in batches of 4


@pytest.mark.parametrize("option, value", [("head_learning_rate", 0.0), ("rehearsal_ratio", -1.0),
                                           ("early_stopping_patience", -1), ("early_stopping_patience", 1.5)])
def test_bad_trainer_settings_are_refused_by_name(tmp_path, tokenizer, extension, option, value):
    with pytest.raises((TypeError, ValueError), match=f"ExtensionTrainer.{option}"):
        ExtensionTrainer(model=extension, args=training_args(tmp_path), **{option: value})


# ------------------------------------------------------------------ self-training
@pytest.mark.parametrize("patience, steps", [(1, 8), (3, 28), (0, 40)])
def test_the_self_training_run_stops_on_its_own_patience(tmp_path, tokenizer, extension, patience, steps):
    """The second run stops after ``patience`` evaluations without gain (0: its whole budget), whatever the first
    run's patience, and reports its validation curve."""
    data = toy_dataset(tokenizer)
    scores = Scores([0.1, 0.5, 0.4, 0.3, 0.2])
    trainer = ExtensionTrainer(model=extension, args=training_args(tmp_path), train_dataset=data, eval_dataset=data,
                               data_collator=AdapterDataCollator(tokenizer), early_stopping_patience=2,
                               compute_metrics=scores)
    trainer.train()
    # the first run's validation score, then the second run's evaluations every 4 steps
    scores.values = [0.5, 0.6, 0.55, 0.58, 0.7, 0.65]
    report = trainer.self_train(CORPUS, tokenizer, threshold=0.0, patience=patience)
    assert report["second_run_steps"] == steps
    assert report["second_run_curve"] == list(zip(range(4, steps + 1, 4), [0.6, 0.55, 0.58, 0.7] + [0.65] * 6))
    assert report["second_run_best_step"] == (4 if patience == 1 else 16)


def test_self_training_on_validation_sentences_is_warned(tmp_path, tokenizer, extension, caplog):
    """Pseudo-labelled validation sentences would decide, on a score the second run learned its own tags for,
    whether that run is kept."""
    data = toy_dataset(tokenizer)
    trainer = ExtensionTrainer(model=extension, args=training_args(tmp_path, max_steps=4), train_dataset=data,
                               eval_dataset=data, data_collator=AdapterDataCollator(tokenizer),
                               compute_metrics=Scores([0.1, 0.2]))
    trainer.train()
    with caplog.at_level(logging.WARNING, logger="hf_adapter_ext.adapter.training"):
        trainer.self_train([CORPUS[0], "a sentence the validation set lacks"], tokenizer, threshold=0.0, patience=1)
    assert "1 of the unlabelled sentences are validation sentences" in caplog.text


def test_a_bad_self_training_patience_is_refused(tmp_path, tokenizer, extension):
    trainer = ExtensionTrainer(model=extension, args=training_args(tmp_path), train_dataset=toy_dataset(tokenizer),
                               eval_dataset=toy_dataset(tokenizer), data_collator=AdapterDataCollator(tokenizer),
                               compute_metrics=Scores([0.1]))
    with pytest.raises(ValueError, match="self_train.patience=-1"):
        trainer.self_train(CORPUS, tokenizer, patience=-1)


@pytest.mark.parametrize("head", ["crf", "linear"])
def test_with_threshold_zero_every_word_takes_the_models_own_tag(tokenizer, head):
    torch.manual_seed(1)
    model = get_adapter_model(tiny_source(seed=3), NeuralAdapterConfig(new_labels=NEW_LABELS, head=head)).eval()
    tagged = pseudo_label(model, CORPUS, tokenizer, threshold=0.0)
    id2label = model.config.id2label
    for i, sentence in enumerate(CORPUS):
        (predicted,), _ = predict_tags(model, tagged.select([i]), tokenizer, id2label)
        words = [id2label[label] for label in tagged[i]["labels"] if label != IGNORE_INDEX]
        assert words == predicted and len(words) == len(sentence.split())


def test_words_below_the_threshold_keep_no_label(tokenizer, extension):
    everything = pseudo_label(extension, CORPUS, tokenizer, threshold=0.0)
    none = pseudo_label(extension, CORPUS, tokenizer, threshold=1.0)
    half = pseudo_label(extension, CORPUS, tokenizer, threshold=0.5)
    count = [sum(label != IGNORE_INDEX for row in d["labels"] for label in row) for d in (everything, half, none)]
    assert count[0] == sum(len(s.split()) for s in CORPUS) >= count[1] >= count[2]
    assert count[2] == 0  # an untrained model is sure of nothing


def test_pseudo_labelled_rows_join_rehearsal_and_cached_scores(tokenizer, extension):
    train = add_rehearsal(toy_dataset(tokenizer), CORPUS[:2], extension, tokenizer)
    mixed = add_pseudo_labels(train, CORPUS, extension, tokenizer, threshold=0.0)
    assert len(mixed) == len(train) + len(CORPUS) and mixed.column_names == train.column_names
    assert mixed["rehearsal"][len(train):] == [0] * len(CORPUS)  # domain rows, not rehearsal
    cached = add_source_logits(toy_dataset(tokenizer), extension, tokenizer)
    assert "source_logits" in add_pseudo_labels(cached, CORPUS, extension, tokenizer, 0.0).column_names


def test_unlabelled_text_the_model_is_sure_of_nowhere_changes_nothing(tokenizer, extension, caplog):
    train = toy_dataset(tokenizer)
    with caplog.at_level(logging.WARNING):
        assert add_pseudo_labels(train, CORPUS, extension, tokenizer, threshold=1.0) is train
    assert "sure of no word" in caplog.text


@pytest.mark.parametrize("texts, error, match", [
    ([], ValueError, "empty"), ("One sentence .", TypeError, "list of sentences"), ([3], TypeError, "sentence 0"),
])
def test_bad_unlabelled_text_is_refused(tokenizer, extension, texts, error, match):
    with pytest.raises(error, match=match):
        pseudo_label(extension, texts, tokenizer)


def test_a_bad_threshold_or_model_is_refused(tokenizer, extension):
    with pytest.raises(ValueError, match="pseudo_label.threshold=1.5"):
        pseudo_label(extension, CORPUS, tokenizer, threshold=1.5)
    with pytest.raises(TypeError, match="extended model"):
        pseudo_label(tiny_source(), CORPUS, tokenizer)


@pytest.mark.parametrize("options, kind, settings", [
    ({}, torch.optim.AdamW, {"betas": (0.9, 0.999), "eps": 1e-8}),
    ({"adam_beta2": 0.98, "adam_epsilon": 1e-6}, torch.optim.AdamW, {"betas": (0.9, 0.98), "eps": 1e-6}),
    ({"optim": "sgd"}, torch.optim.SGD, {}),
    ({"optim": "adafactor"}, Adafactor, {"relative_step": False}),
])
def test_the_optimiser_and_its_settings_are_the_training_arguments(tmp_path, tokenizer, extension, options, kind,
                                                                     settings):
    """ExtensionTrainer's two learning rates used to come with AdamW at PyTorch's defaults whatever optim,
    adam_beta1/2 and adam_epsilon said (a run_ner.py user's --optim adafactor trained AdamW without a word)."""
    data = toy_dataset(tokenizer)
    trainer = ExtensionTrainer(model=extension, args=training_args(tmp_path, **options), train_dataset=data,
                               eval_dataset=data, data_collator=AdapterDataCollator(tokenizer), head_learning_rate=0.02,
                               compute_metrics=Scores([0.1]))
    optimizer = trainer.create_optimizer()
    assert type(optimizer) is kind
    assert sorted(group["lr"] for group in optimizer.param_groups) == [5e-3, 0.02]
    for name, value in settings.items():
        assert all(group[name] == value for group in optimizer.param_groups), name


def test_optimisers_that_group_parameters_themselves_are_refused(tmp_path, extension, monkeypatch):
    """GaLore, APOLLO, LOMO (each an extra package) come from transformers with parameter groups of their own, which
    the extension's two learning rates cannot join: refused by name, not trained with one of the two lost."""
    def galore_like(args, model=None):
        return torch.optim.AdamW, {"lr": args.learning_rate, "params": [{"params": list(model.parameters())}]}

    monkeypatch.setattr(Trainer, "get_optimizer_cls_and_kwargs", staticmethod(galore_like))
    with pytest.raises(ValueError, match=r"optim='adamw_torch_fused' builds its own parameter groups \(\['params'\]\)"):
        adapter_optimizer(extension, 1e-3, args=training_args(tmp_path))
