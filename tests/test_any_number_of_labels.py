"""One meta-trained SIB model serves any number of labels (grad_net="equivariant"), and episodes of several sizes
can be mixed in one batch without changing any episode's result."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hf_adapter_ext import SIBConfig, SIBForFewShotClassification
from hf_adapter_ext.meta import EpisodeSampler, collate_episodes
from tests.test_meta import intent_data, meta_args, reference_refine, sib, tiny_backbone


def episode(ways, shots=2, queries=3, dim=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {
        "support_features": torch.randn(ways * shots, dim, generator=g),
        "support_labels": torch.arange(ways).repeat_interleave(shots),
        "query_features": torch.randn(ways * queries, dim, generator=g),
        "query_labels": torch.arange(ways).repeat_interleave(queries),
    }


def test_the_equivariant_inner_loop_matches_the_hand_written_reference():
    model = sib(n_way=4, transductive_init=False).eval()  # the reference start
    batch = collate_episodes([episode(4, seed=s) for s in range(2)])
    with torch.no_grad():
        out = model(**batch)
    for b in range(2):
        expected = reference_refine(model.head, batch["support_features"][b], batch["support_labels"][b],
                                    batch["query_features"][b], steps=2, lr=0.5,
                                    support_weight=model.head.log_support_weight.exp().item())
        torch.testing.assert_close(out.logits[b], expected.detach(), atol=1e-4, rtol=1e-4)
    assert not torch.allclose(out.logits, out.logits_init), "the synthetic gradient must change the classifier"


@pytest.mark.parametrize("ways", [2, 3, 7, 50])
def test_permuting_the_classes_permutes_the_scores(ways):
    model = sib().eval()  # meta-trained width n_way=3 does not limit the classes served
    one = episode(ways, seed=ways)
    permutation = torch.randperm(ways, generator=torch.Generator().manual_seed(1))
    permuted = {**one, "support_labels": permutation[one["support_labels"]],
                "query_labels": permutation[one["query_labels"]]}
    with torch.no_grad():
        out = model(**collate_episodes([one]))
        out_permuted = model(**collate_episodes([permuted]))
    torch.testing.assert_close(out_permuted.logits[0][:, permutation], out.logits[0], atol=1e-4, rtol=1e-4)
    assert out.logits.shape == (1, ways * 3, ways)


@pytest.mark.parametrize("training", [False, True])
def test_episodes_of_different_sizes_in_one_batch_score_as_they_do_alone(training):
    model = sib().train(training)
    episodes = [episode(ways, seed=ways) for ways in (2, 5, 3)]
    batch = collate_episodes(episodes)
    torch.manual_seed(0)
    out = model(**batch)
    for b, alone_episode in enumerate(episodes):
        alone = model(**collate_episodes([alone_episode]))
        ways, queries = len(alone_episode["support_labels"]) // 2, len(alone_episode["query_labels"])
        torch.testing.assert_close(out.logits[b, :queries, :ways], alone.logits[0], atol=1e-4, rtol=1e-4)
        assert bool((out.logits[b, :, ways:] == torch.finfo(out.logits.dtype).min).all()), \
            "classes an episode lacks must never be predicted"
    expected = torch.stack([model(**collate_episodes([e])).loss for e in episodes]).mean()
    torch.testing.assert_close(out.loss, expected, atol=1e-5, rtol=1e-5)


def test_one_model_serves_two_to_many_labels_in_predict_labels(tokenizer):
    model = SIBForFewShotClassification(SIBConfig(n_way=3), backbone=tiny_backbone(tokenizer.vocab_size))
    words = ["paris", "london", "acme", "john", "mary", "union", "german", "monday", "shares", "talks"]
    for ways in (2, 4, 10):
        examples = {f"label_{i}": [f"{words[i]} {words[i]}", words[i]] for i in range(ways)}
        predicted = model.predict_labels(examples, [f"{w} {w}" for w in words[:ways]], tokenizer)
        assert len(predicted) == ways and {p["label"] for p in predicted} <= set(examples)
        assert all(1.0 / ways - 1e-6 <= p["score"] <= 1.0 for p in predicted)


def test_a_fixed_width_model_refuses_other_label_counts_naming_the_fix(tokenizer):
    model = SIBForFewShotClassification(SIBConfig(n_way=3, grad_net="fixed"), backbone=tiny_backbone(tokenizer.vocab_size))
    with pytest.raises(ValueError, match="exactly n_way=3 labels; got 2.*grad_net='equivariant'"):
        model.predict_labels({"a": ["paris"], "b": ["john"]}, ["paris"], tokenizer)


@pytest.mark.parametrize(("steps", "pattern"), [(-1, "inner_steps"), (1.5, "inner_steps"), ("3", "inner_steps")])
def test_bad_inner_steps_are_refused_by_name(tokenizer, steps, pattern):
    model = SIBForFewShotClassification(SIBConfig(n_way=3), backbone=tiny_backbone(tokenizer.vocab_size))
    with pytest.raises(ValueError, match=pattern):
        model.predict_labels({"a": ["paris"], "b": ["john"]}, ["paris"], tokenizer, inner_steps=steps)


def test_queries_as_a_bare_string_are_refused(tokenizer):
    model = SIBForFewShotClassification(SIBConfig(n_way=3), backbone=tiny_backbone(tokenizer.vocab_size))
    with pytest.raises(ValueError, match="bare string"):
        model.predict_labels({"a": ["paris"], "b": ["john"]}, "paris", tokenizer)


@settings(max_examples=40, deadline=None)
@given(counts=st.lists(st.integers(0, 25), min_size=3, max_size=10), n_way=st.integers(2, 3), extra=st.integers(0, 3),
       k=st.integers(1, 3), q=st.integers(1, 4), seed=st.integers(0, 1000), index=st.integers(0, 10_000),
       natural=st.booleans())
def test_sampler_with_several_sizes_and_natural_pools(counts, n_way, extra, k, q, seed, index, natural):
    labels = np.repeat(np.arange(len(counts)), counts)
    eligible = [c for c, n in enumerate(counts) if n >= k + q]
    max_ways = n_way + extra
    if len(eligible) < max_ways:
        with pytest.raises(ValueError):
            EpisodeSampler(labels, eligible, n_way, k, q, seed, max_ways=max_ways, natural_queries=natural)
        return
    sampler = EpisodeSampler(labels, eligible, n_way, k, q, seed, max_ways=max_ways, natural_queries=natural)
    ep = sampler(index)
    ways = len(ep.classes)
    assert n_way <= ways <= max_ways and len(set(ep.classes)) == ways
    assert list(ep.support_labels) == list(np.repeat(np.arange(ways), k))
    assert not set(ep.support.tolist()) & set(ep.query.tolist()), "a support example is never a query"
    assert [ep.classes[y] for y in ep.query_labels] == labels[ep.query].tolist()
    assert len(ep.query) == ways * q  # on average n_query per class: a natural pool may miss a class
    if not natural:
        assert list(np.bincount(ep.query_labels, minlength=ways)) == [q] * ways
    again = sampler(index)
    assert again.classes == ep.classes and list(again.query) == list(ep.query)


def test_natural_pools_follow_the_class_frequencies():
    labels = np.repeat([0, 1], [400, 100])  # class 0 is 4x as frequent
    sampler = EpisodeSampler(labels, [0, 1], 2, 1, 20, seed=0, natural_queries=True)
    share = np.mean([np.mean(np.array(sampler(i).classes)[sampler(i).query_labels] == 0) for i in range(200)])
    assert 0.75 < share < 0.85


def test_the_trainer_mixes_episode_sizes_and_refuses_them_for_a_fixed_width_net(tmp_path, tokenizer):
    from hf_adapter_ext import SemiSupervisedMetaTrainer

    data = intent_data(tokenizer)
    model = SIBForFewShotClassification(SIBConfig(n_way=2), backbone=tiny_backbone(tokenizer.vocab_size))
    trainer = SemiSupervisedMetaTrainer(model=model, args=meta_args(tmp_path, max_train_ways=5), train_dataset=data,
                                        processing_class=tokenizer)
    sizes = {len(trainer.as_episodes(data, training=True).sampler(i).classes) for i in range(40)}
    assert sizes == {2, 3, 4, 5}
    assert trainer.train().training_loss > 0
    fixed = SIBForFewShotClassification(SIBConfig(n_way=2, grad_net="fixed"), backbone=tiny_backbone(tokenizer.vocab_size))
    with pytest.raises(ValueError, match="grad_net='fixed'.*exactly n_way=2"):
        SemiSupervisedMetaTrainer(model=fixed, args=meta_args(tmp_path, max_train_ways=5), train_dataset=data,
                                  processing_class=tokenizer)
    capped = SemiSupervisedMetaTrainer(model=model, args=meta_args(tmp_path, max_train_ways=9), train_dataset=data,
                                       processing_class=tokenizer)  # the data has 6 classes
    assert {len(capped.as_episodes(data, training=True).sampler(i).classes) for i in range(60)} == {2, 3, 4, 5, 6}
    assert SemiSupervisedMetaTrainer(model=model, args=meta_args(tmp_path), train_dataset=data,
                                     processing_class=tokenizer).training_ways is None  # default: n_way-way


def test_the_refinement_step_does_not_grow_with_the_number_of_unlabelled_queries():
    """Twice the same unlabelled queries tell nothing new: the refined scores must not change (a summed step would
    double, and 30-label tasks with 450 queries would overshoot). The start is the support means here: soft k-means
    would weigh the queries against the support set differently."""
    model = sib(transductive_init=False).eval()
    one = episode(4, seed=3)
    doubled = {**one, "query_features": one["query_features"].repeat(2, 1),
               "query_labels": one["query_labels"].repeat(2)}
    with torch.no_grad():
        out = model(**collate_episodes([one])).logits[0]
        out_doubled = model(**collate_episodes([doubled])).logits[0, : len(one["query_labels"])]
    torch.testing.assert_close(out_doubled, out, atol=1e-4, rtol=1e-4)


def test_a_split_with_fewer_classes_than_n_way_is_scored_on_all_of_them_or_refused_by_name(tmp_path, tokenizer,
                                                                                            caplog):
    """A user's 12 intents, split 60/20/20, leave 2-3 classes to validation and test: a model that serves any number
    of labels is scored on all of them at once (a 5-way sampler refused them, naming no split)."""
    from hf_adapter_ext import SemiSupervisedMetaTrainer

    data = intent_data(tokenizer)
    small = data.filter(lambda row: row["label"] < 3)
    model = SIBForFewShotClassification(SIBConfig(n_way=5), backbone=tiny_backbone(tokenizer.vocab_size))
    with caplog.at_level("WARNING", logger="hf_adapter_ext.meta.episode_data"):
        trainer = SemiSupervisedMetaTrainer(model=model, args=meta_args(tmp_path, shape_top_layers=0),
                                            train_dataset=data, eval_dataset=small, processing_class=tokenizer)
        episodes = trainer.as_episodes(small, training=False)
    assert {len(episodes.sampler(i).classes) for i in range(10)} == {3}
    assert "holds 3 classes, fewer than n_way=5: its episodes are 3-way" in caplog.text
    assert 0 <= trainer.evaluate()["eval_sib_accuracy"] <= 1
    fixed = SIBForFewShotClassification(SIBConfig(n_way=5, grad_net="fixed"), backbone=tiny_backbone(tokenizer.vocab_size))
    with pytest.raises(ValueError, match=r"eval dataset holds 3 classes, fewer than n_way=5.*grad_net='equivariant'"):
        SemiSupervisedMetaTrainer(model=fixed, args=meta_args(tmp_path), train_dataset=data, eval_dataset=small,
                                  processing_class=tokenizer)
    with pytest.raises(ValueError, match=r"train dataset holds 3 classes, fewer than n_way=5: lower n_way"):
        SemiSupervisedMetaTrainer(model=model, args=meta_args(tmp_path), train_dataset=small,
                                  processing_class=tokenizer)
