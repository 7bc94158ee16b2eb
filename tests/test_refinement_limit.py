"""The refinement is used only for tasks up to the size where it was checked to help on meta-validation
(`SIBConfig.max_refined_classes`, chosen by `SemiSupervisedMetaTrainer` after training)."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from hf_adapter_ext import SemiSupervisedMetaTrainer, SIBConfig, SIBForFewShotClassification
from hf_adapter_ext.meta import collate_episodes
from hf_adapter_ext.meta.refinement import max_refined_classes, refinement_ways
from tests.test_any_number_of_labels import episode
from tests.test_meta import intent_data, meta_args, sib, tiny_backbone


@given(st.dictionaries(st.integers(2, 200), st.tuples(st.floats(-1, 1), st.floats(0, 1)), min_size=1, max_size=8))
def test_the_limit_stops_below_the_first_size_where_the_refinement_clearly_lost(gains):
    limit = max_refined_classes(gains)
    lost = [ways for ways, (mean, ci95) in gains.items() if mean + ci95 < 0]  # CI wholly below 0
    if not lost:
        assert limit is None  # never shown to lose: refine any size
    else:
        assert limit == max([ways for ways in gains if ways < min(lost)], default=0)


def test_a_loss_within_the_noise_keeps_the_refinement():
    assert max_refined_classes({5: (-0.0001, 0.002), 10: (-0.001, 0.003), 20: (-0.004, 0.002)}) == 10
    assert max_refined_classes({5: (-0.01, 0.002)}) == 0


@pytest.mark.parametrize(("n_way", "classes", "expected"), [(5, 50, [5, 10, 20, 40, 50]), (5, 5, [5]),
                                                             (5, 3, [3]), (2, 9, [2, 4, 8, 9])])
def test_the_checked_sizes_double_from_n_way_up_to_every_class(n_way, classes, expected):
    assert refinement_ways(n_way, classes) == expected


@pytest.mark.parametrize("training", [False, True])
def test_episodes_above_the_limit_keep_their_start_and_the_others_are_refined_as_without_it(training):
    model = sib()
    batch = collate_episodes([episode(ways, seed=ways) for ways in (2, 5, 3)])
    torch.manual_seed(0)
    unlimited = model.train(training)(**batch)
    model.config.max_refined_classes = 3
    limited = model(**batch)
    for b, ways in enumerate((2, 5, 3)):
        expected = unlimited.logits[b] if ways <= 3 else unlimited.logits_init[b]
        torch.testing.assert_close(limited.logits[b], expected)
    assert not torch.allclose(unlimited.logits[1], unlimited.logits_init[1])  # the 5-way one was refined before
    explicit = model(**batch, inner_steps=model.config.inner_steps)  # an explicit K refines every task
    torch.testing.assert_close(explicit.logits, unlimited.logits)
    model.config.max_refined_classes = 0
    torch.testing.assert_close(model(**batch).logits, unlimited.logits_init)


def test_the_trainer_chooses_the_limit_on_validation_tasks_and_the_saved_model_keeps_it(tmp_path, tokenizer,
                                                                                       monkeypatch):
    from hf_adapter_ext.meta import refinement

    data = intent_data(tokenizer, classes=9, per_class=6)
    train, validation = data.filter(lambda r: r["label"] < 4), data.filter(lambda r: r["label"] >= 4)
    model = SIBForFewShotClassification(SIBConfig(n_way=2), backbone=tiny_backbone(tokenizer.vocab_size))
    checked = {}

    def gains(model, episodes, batch_size):  # the real gains of a 4-step toy model are noise: pin them
        checked.update({ways: {len(episodes[ways].sampler(i).classes) for i in range(5)} for ways in episodes})
        assert all(e.sampler.natural_queries for e in episodes.values())
        return {2: (0.01, 0.005), 4: (-0.001, 0.003), 5: (-0.02, 0.01)}

    monkeypatch.setattr(refinement, "refinement_gains", gains)
    trainer = SemiSupervisedMetaTrainer(model=model, args=meta_args(tmp_path, refinement_check_episodes=5),
                                        train_dataset=train, eval_dataset=validation, processing_class=tokenizer)
    trainer.train()
    assert checked == {2: {2}, 4: {4}, 5: {5}}  # n_way, doubled, then every validation class at once
    assert model.config.max_refined_classes == 4
    model.save_pretrained(tmp_path / "saved")
    again = SIBForFewShotClassification.from_pretrained(tmp_path / "saved")
    assert again.config.max_refined_classes == 4
    assert "tasks of up to 4 labels" in (tmp_path / "saved" / "README.md").read_text()


def test_the_check_measures_k_steps_against_the_start_on_real_episodes(tmp_path, tokenizer):
    data = intent_data(tokenizer, classes=9, per_class=6)
    model = SIBForFewShotClassification(SIBConfig(n_way=2, inner_steps=2), backbone=tiny_backbone(tokenizer.vocab_size))
    trainer = SemiSupervisedMetaTrainer(model=model, args=meta_args(tmp_path, refinement_check_episodes=6),
                                        train_dataset=data, eval_dataset=data.filter(lambda r: r["label"] >= 4),
                                        processing_class=tokenizer)
    with torch.no_grad():  # an untrained net gives no gradient: make the refinement do something
        model.head.grad_net.output_layer.weight.normal_(0, 0.5, generator=torch.Generator().manual_seed(0))
    gains = trainer.choose_max_refined_classes()
    assert set(gains) == {2, 4, 5} and any(mean != 0 and ci95 > 0 for mean, ci95 in gains.values())
    assert model.config.max_refined_classes == max_refined_classes(gains)


@pytest.mark.parametrize("setting", [{"refinement_check_episodes": 0}, {"inner_steps": 0}, {"no_eval": True},
                                     {"freeze_backbone": False}])
def test_without_a_check_every_task_is_refined(tmp_path, tokenizer, setting):
    data = intent_data(tokenizer)
    model = SIBForFewShotClassification(SIBConfig(n_way=2, inner_steps=setting.get("inner_steps", 3),
                                                  freeze_backbone=setting.get("freeze_backbone", True)),
                                        backbone=tiny_backbone(tokenizer.vocab_size))
    args = meta_args(tmp_path, refinement_check_episodes=setting.get("refinement_check_episodes", 5))
    trainer = SemiSupervisedMetaTrainer(model=model, args=args, train_dataset=data, processing_class=tokenizer,
                                        eval_dataset=None if setting.get("no_eval") else data)
    trainer.train()
    assert model.config.max_refined_classes is None
