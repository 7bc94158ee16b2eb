"""SIB reading label names: each class's name, encoded as text, joins its support set as one more example."""

import pytest
import torch
from datasets import ClassLabel, Dataset

from hf_adapter_ext import SemiSupervisedMetaTrainer, SIBConfig
from hf_adapter_ext.meta import EpisodeSampler, SequenceEpisodes, build_episodes, collate_episodes
from hf_adapter_ext.meta.label_names import label_text, with_label_names

from .test_meta import intent_data, meta_args, sib, toy_episode


def test_label_text_reads_identifiers_as_words():
    assert label_text("card_lost") == "card lost"
    assert label_text("Refund-not_showing  up") == "Refund not showing up"


def test_names_join_the_support_set_and_absent_classes_add_nothing():
    support, labels = torch.randn(2, 3, 4), torch.tensor([[0, 1, 2], [0, 1, -100]])
    names = torch.randn(2, 3, 4)
    joined, joined_labels = with_label_names(support, labels, names)
    assert torch.equal(joined, torch.cat([support, names], dim=1))
    # the second episode has classes 0 and 1 only: its third name row is padding
    assert joined_labels.tolist() == [[0, 1, 2, 0, 1, 2], [0, 1, -100, 0, 1, -100]]


@pytest.mark.parametrize("grad_net", ["equivariant", "fixed"])
def test_a_model_reading_names_scores_as_if_each_name_were_one_more_support_example(grad_net):
    episode = toy_episode(batch=2, n_way=3, shots=1)
    names = torch.randn(2, 3, episode["support_features"].size(-1))
    reading = sib(use_label_names=True, grad_net=grad_net).eval()
    ignoring = sib(use_label_names=False, grad_net=grad_net).eval()
    ignoring.load_state_dict(reading.state_dict())
    with_names = reading(**episode, class_name_features=names)
    by_hand = ignoring(**{**episode, "support_features": torch.cat([episode["support_features"], names], dim=1),
                          "support_labels": torch.cat([episode["support_labels"],
                                                       torch.arange(3).expand(2, 3)], dim=1)})
    torch.testing.assert_close(with_names.logits, by_hand.logits)
    torch.testing.assert_close(with_names.logits_init, by_hand.logits_init)
    # a model that does not read names ignores them; one that does changes its answer
    torch.testing.assert_close(ignoring(**episode, class_name_features=names).logits, ignoring(**episode).logits)
    assert not torch.allclose(with_names.logits_init, reading(**episode).logits_init)


QUERIES = ["john acme", "mary union shares", "talks flew"]


def answers_reading_names_and_not(examples, tokenizer, spelt_out: bool):
    """predict_labels' answers from a model reading the names, then from the same model not reading them (given the
    names as one more example text each, with ``spelt_out``); and the model."""
    model = sib(use_label_names=True).eval()
    reading = model.predict_labels(examples, QUERIES, tokenizer)
    model.config.use_label_names = False
    shown = {name: [*texts, label_text(name)] for name, texts in examples.items()} if spelt_out else examples
    return reading, model.predict_labels(shown, QUERIES, tokenizer), model


def test_predict_labels_reads_the_label_names_as_texts(tokenizer):
    examples = {"card_lost": ["john paris acme"], "refund": ["mary london union"], "talks_monday": ["talks rose"]}
    got, spelt_out, model = answers_reading_names_and_not(examples, tokenizer, spelt_out=True)
    assert [g["label"] for g in got] == [s["label"] for s in spelt_out]
    assert [g["score"] for g in got] == pytest.approx([s["score"] for s in spelt_out], abs=1e-5)
    assert "**Label names:** not read" in model.model_card()
    model.config.use_label_names = True
    assert "**Label names:** read" in model.model_card()


def test_episodes_carry_their_classes_names_in_episode_order_and_batch_across_sizes():
    labels = [c for c in range(6) for _ in range(4)]
    names = torch.arange(6.0).unsqueeze(-1).expand(6, 3).contiguous()  # row c holds c
    sampler = EpisodeSampler(labels, list(range(6)), 2, 1, 2, seed=3, max_ways=4)
    data = SequenceEpisodes(torch.randn(len(labels), 3), sampler, 8, class_features=names)
    items = [data[i] for i in range(8)]
    for i, item in enumerate(items):
        assert item["class_name_features"][:, 0].tolist() == sampler(i).classes
    batch = collate_episodes(items)
    assert batch["class_name_features"].shape == (8, max(len(sampler(i).classes) for i in range(8)), 3)


def test_class_features_that_do_not_cover_every_class_are_refused():
    sampler = EpisodeSampler([c for c in range(4) for _ in range(3)], list(range(4)), 2, 1, 1)
    with pytest.raises(ValueError, match=r"one row per class id up to 3"):
        SequenceEpisodes(torch.randn(12, 3), sampler, 2, class_features=torch.randn(3, 3))
    with pytest.raises(ValueError, match=r"class_name_features must be \[episodes, classes, 16\]"):
        sib(use_label_names=True)(**toy_episode(batch=1, n_way=3), class_name_features=torch.randn(1, 2, 16))


def test_names_need_a_sequence_level_model_over_a_frozen_encoder():
    for settings in ({"level": "token"}, {"freeze_backbone": False}):
        with pytest.raises(ValueError, match="use_label_names=True"):
            SIBConfig(use_label_names=True, **settings)


def test_episodes_of_a_class_label_dataset_carry_its_names_and_bare_ids_warn(tokenizer):
    model = sib(use_label_names=True)
    named = build_episodes(intent_data(tokenizer), model, tokenizer, 1, 2, 0, 4)
    assert named[0]["class_name_features"].shape == (3, 16)
    bare = Dataset.from_dict({"text": ["john paris", "mary london", "acme union"] * 4, "label": [0, 1, 2] * 4})
    with pytest.warns(UserWarning, match="bare class ids"):
        episodes = build_episodes(bare, model, tokenizer, 1, 2, 0, 4)
    assert "class_name_features" not in episodes[0]
    assert isinstance(intent_data(tokenizer).features["label"], ClassLabel)


def test_blank_label_names_are_refused(tokenizer):
    with pytest.raises(ValueError, match="have no words"):
        sib(use_label_names=True).predict_labels({"__": ["john"], "refund": ["mary"], "c": ["acme"]}, ["x"], tokenizer)


def test_the_trainer_meta_trains_checks_the_names_on_validation_and_evaluates_with_them(tmp_path, tokenizer, caplog):
    model = sib(use_label_names=True)
    trainer = SemiSupervisedMetaTrainer(model=model, args=meta_args(tmp_path, shape_top_layers=0),
                                        train_dataset=intent_data(tokenizer), eval_dataset=intent_data(tokenizer),
                                        processing_class=tokenizer)
    with caplog.at_level("INFO", logger="hf_adapter_ext.meta.trainer"):
        trainer.train()
    assert "Reading the label names changes validation accuracy by" in caplog.text
    assert "class_name_features" in trainer.as_episodes(trainer.eval_dataset, training=False)[0]
    assert 0.0 <= trainer.evaluate()["eval_sib_accuracy"] <= 1.0


def clustered_episodes(name_shift: int, classes=6, per_class=12, dim=16, seed=0):
    """Episodes over noisy points around one centre per class, whose names are the centre of the class
    ``name_shift`` further on (0: each name describes its own class; 1: each names its neighbour)."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, dim, generator=g)
    labels = [c for c in range(classes) for _ in range(per_class)]
    features = centres[labels] + 1.2 * torch.randn(len(labels), dim, generator=g)
    names = centres.roll(-name_shift, dims=0)
    sampler = EpisodeSampler(labels, list(range(classes)), 3, 1, 4, seed=seed, natural_queries=True)
    return SequenceEpisodes(features, sampler, 200, class_features=names)


@pytest.mark.parametrize("shift, kept", [(0, True), (1, False)])
def test_names_that_clearly_cost_accuracy_on_validation_are_turned_off(shift, kept):
    from hf_adapter_ext.meta.label_names import check_label_names

    model = sib(use_label_names=True, steps=0).eval()
    mean, ci95 = check_label_names(model, clustered_episodes(shift), batch_size=50)
    assert model.config.use_label_names is kept
    assert (mean - ci95 > 0) if kept else (mean + ci95 < 0)


@pytest.mark.parametrize("names", [("0", "1", "17"), ("1.0", "2.0", "17.0")])  # "3.0": a spreadsheet's numbers
def test_names_that_are_bare_numbers_are_not_read(tokenizer, names):
    examples = dict(zip(names, (["john paris acme"], ["mary london union"], ["talks rose"])))
    got, without, model = answers_reading_names_and_not(examples, tokenizer, spelt_out=False)
    assert got == without
    model.config.use_label_names = True
    numbered = intent_data(tokenizer).cast_column("label", ClassLabel(names=[str(i) for i in range(6)]))
    assert "class_name_features" not in build_episodes(numbered, model, tokenizer, 1, 2, 0, 4)[0]
