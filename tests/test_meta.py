import json
import logging
import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from datasets import ClassLabel, Dataset, Features, Value, concatenate_datasets
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import BertConfig, BertModel

from hf_adapter_ext import (
    MetaTrainingArguments,
    SemiSupervisedMetaTrainer,
    SIBConfig,
    SIBForFewShotClassification,
)
from hf_adapter_ext.meta import (
    EpisodeSampler,
    TokenEpisodeSampler,
    build_episodes,
    collate_episodes,
    encode_texts,
    encode_words,
)
from hf_adapter_ext.meta.episodes import sentence_types

from .conftest import build_tokenizer


def tiny_backbone(vocab_size=120, seed=0):
    torch.manual_seed(seed)
    return BertModel(BertConfig(vocab_size=vocab_size, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                intermediate_size=32), add_pooling_layer=False)


def sib(n_way=3, steps=2, seed=0, **kw):
    model = SIBForFewShotClassification(SIBConfig(n_way=n_way, inner_steps=steps, inner_lr=0.5, **kw),
                                        backbone=tiny_backbone(seed=seed))
    with torch.no_grad():  # a non-trivial synthetic-gradient net (the real one starts at zero)
        model.head.grad_net.output_layer.weight.normal_(0, 0.5)
    return model


def toy_episode(batch=2, n_way=3, shots=2, queries=4, dim=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {
        "support_features": torch.randn(batch, n_way * shots, dim, generator=g),
        "support_labels": torch.arange(n_way).repeat_interleave(shots).repeat(batch, 1),
        "query_features": torch.randn(batch, n_way * queries, dim, generator=g),
        "query_labels": torch.arange(n_way).repeat_interleave(queries).repeat(batch, 1),
    }


def reference_refine(head, support, support_labels, query, steps, lr, support_weight=None):
    """One episode at a time, written from the paper: θ ← θ − lr · Jᵀ g(logits), J = ∂logits/∂θ; with
    ``support_weight``, plus that weight times autograd's gradient of the support set's summed cross-entropy."""
    num_classes = head.num_classes
    s = F.normalize(support, dim=-1)
    theta = torch.stack([s[support_labels == c].mean(0) for c in range(num_classes)]) * head.feature_weight

    def logits_of(th, x=query):
        return head.scale * (F.normalize(x, dim=-1) @ F.normalize(th, dim=-1).T + head.bias)

    for _ in range(steps):
        logits = logits_of(theta)
        g = head.grad_net(logits.unsqueeze(0), torch.ones(1, len(logits), dtype=torch.bool))[0]
        jacobian = torch.autograd.functional.jacobian(logits_of, theta)  # [Q, C, C, D]
        grad = torch.einsum("qcjd,qc->jd", jacobian, g)
        if support_weight is not None:
            theta_leaf = theta.detach().requires_grad_()
            ce = F.cross_entropy(logits_of(theta_leaf, support), support_labels, reduction="sum")
            grad = grad + support_weight * torch.autograd.grad(ce, theta_leaf)[0]
        theta = theta - lr * grad
    return logits_of(theta)


@pytest.mark.parametrize("support_gradient", [False, True])
def test_inner_loop_matches_a_hand_written_reference(support_gradient):
    model = sib(support_gradient=support_gradient, transductive_init=False).eval()  # the reference start
    if support_gradient:
        model.head.log_support_weight.data.fill_(-0.7)
    episode = toy_episode()
    with torch.no_grad():
        out = model(**episode)
    for b in range(2):
        weight = model.head.log_support_weight.exp().item() if support_gradient else None
        expected = reference_refine(model.head, episode["support_features"][b], episode["support_labels"][b],
                                    episode["query_features"][b], steps=2, lr=0.5, support_weight=weight)
        torch.testing.assert_close(out.logits[b], expected.detach(), atol=1e-4, rtol=1e-4)
    assert not torch.allclose(out.logits, out.logits_init), "the synthetic gradient must change the classifier"


def test_support_gradient_alone_moves_the_classifier_towards_the_support_labels():
    model = sib(support_gradient=True).eval()
    torch.nn.init.zeros_(model.head.grad_net.output_layer.weight)  # no query signal: only the labelled support acts
    with torch.no_grad():
        model.head.log_inner_lr.fill_(-5.0)  # small steps: gradient descent on the support loss must lower it
    episode = toy_episode(shots=3)
    support_episode = {**episode, "query_features": episode["support_features"],
                       "query_labels": episode["support_labels"]}
    with torch.no_grad():
        out = model(**support_episode)
    assert out.loss < F.cross_entropy(out.logits_init.flatten(0, 1), episode["support_labels"].flatten())


def test_gradients_reach_init_and_synthetic_gradient_nets_not_the_frozen_backbone():
    model = sib().train()
    out = model(**toy_episode())
    out.loss.backward()
    head = model.head
    for name in ("feature_weight", "scale", "bias"):
        assert getattr(head, name).grad is not None and getattr(head, name).grad.abs().sum() > 0, name
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in head.grad_net.parameters()), \
        "second-order gradients must reach every layer of the synthetic-gradient net"
    assert all(p.grad is None and not p.requires_grad for p in model.backbone.parameters())


def test_evaluation_works_under_no_grad_callers_with_the_same_result():
    model = sib().eval()
    episode = toy_episode()
    with torch.no_grad():
        quiet = model(**episode).logits
    loud = model(**episode).logits
    torch.testing.assert_close(quiet, loud.detach())


@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_a_text_s_features_do_not_depend_on_its_batch_or_the_tokenizer_s_padding_side(padding_side):
    """BERT's positions are absolute: left padding shifted a text's positions by its batch neighbours' lengths,
    and its features with them (the encoders pad on the right whatever the tokenizer says)."""
    model = sib(level="token")
    tokenizer = build_tokenizer()  # its own: the shared fixture must keep its padding side
    tokenizer.padding_side = padding_side
    texts = ["john lives in paris", "acme", "mary works for acme in london"]
    alone = torch.cat([encode_texts(model, tokenizer, [text]) for text in texts])
    torch.testing.assert_close(encode_texts(model, tokenizer, texts), alone, atol=1e-5, rtol=1e-5)
    sentences = [text.split() for text in texts]
    words_alone = [encode_words(model, tokenizer, [words])[0] for words in sentences]
    for batched, single in zip(encode_words(model, tokenizer, sentences), words_alone):
        torch.testing.assert_close(batched, single, atol=1e-5, rtol=1e-5)


def test_k_zero_is_the_support_only_classifier():
    model = sib(steps=0).eval()
    out = model(**toy_episode())
    torch.testing.assert_close(out.logits, out.logits_init)


def test_bad_labels_are_refused():
    model = sib(grad_net="fixed")
    episode = toy_episode()
    episode["support_labels"][0, 0] = 7
    with pytest.raises(ValueError, match="class id 7"):
        model(**episode)
    model = sib()  # any number of classes: only negative ids are wrong
    episode["support_labels"][0, 0] = -3
    with pytest.raises(ValueError, match="class id -3"):
        model(**episode)


def test_a_query_labelled_with_a_class_its_episode_has_no_support_for_is_refused():
    episode = toy_episode()
    episode["query_labels"][1, 2] = 4  # the episodes have classes 0..2
    with pytest.raises(ValueError, match="Episode 1: query 2 is labelled class 4"):
        sib()(**episode)


@settings(max_examples=40, deadline=None)
@given(counts=st.lists(st.integers(0, 30), min_size=2, max_size=12), n_way=st.integers(2, 5),
       k=st.integers(1, 5), q=st.integers(1, 5), seed=st.integers(0, 1000), index=st.integers(0, 10_000))
def test_episode_sampler_invariants(counts, n_way, k, q, seed, index):
    labels = np.repeat(np.arange(len(counts)), counts)
    rng = np.random.default_rng(seed)
    rng.shuffle(labels)
    split = list(range(0, len(counts), 2))  # a class split: only even classes
    eligible = [c for c in split if counts[c] >= k + q]
    if len(split) < n_way or len(eligible) < len(split):
        with pytest.raises(ValueError):
            EpisodeSampler(labels, split, n_way, k, q, seed)
        return
    sampler = EpisodeSampler(labels, split, n_way, k, q, seed)
    episode = sampler(index)
    assert len(set(episode.classes)) == n_way and set(episode.classes) <= set(split)
    assert len(episode.support) == n_way * k and len(episode.query) == n_way * q
    assert not set(episode.support) & set(episode.query)
    for ids, ys in ((episode.support, episode.support_labels), (episode.query, episode.query_labels)):
        assert [episode.classes[y] for y in ys] == labels[ids].tolist()
    again = EpisodeSampler(labels, split, n_way, k, q, seed)(index)
    assert np.array_equal(again.support, episode.support) and np.array_equal(again.query, episode.query)


@settings(max_examples=30, deadline=None)
@given(n_way=st.integers(2, 5), k=st.integers(1, 3), q=st.integers(1, 15), seed=st.integers(0, 1000),
       index=st.integers(0, 10_000))
def test_uneven_queries_keep_the_episode_and_cut_each_class_to_1_to_n_query(n_way, k, q, seed, index):
    labels = np.repeat(np.arange(6), 20)
    even = EpisodeSampler(labels, range(6), n_way, k, q, seed)(index)
    uneven = EpisodeSampler(labels, range(6), n_way, k, q, seed, uneven_queries=1.0)(index)
    assert uneven.classes == even.classes and np.array_equal(uneven.support, even.support)
    counts = np.bincount(uneven.query_labels, minlength=n_way)
    assert counts.min() >= 1 and counts.max() <= q and len(uneven.query) == counts.sum()
    for c in range(n_way):  # each class keeps a prefix of its balanced queries
        assert np.array_equal(uneven.query[uneven.query_labels == c], even.query[even.query_labels == c][: counts[c]])
        assert set(labels[uneven.query[uneven.query_labels == c]]) == {even.classes[c]}


def test_token_sampler_gives_k_to_2k_mentions_of_each_type():
    rng = np.random.default_rng(0)
    types = ["a", "b", "c", "d"]
    tags = [[str(rng.choice(["O", "O", "O", *types])) for _ in range(rng.integers(3, 10))] for _ in range(300)]
    sampler = TokenEpisodeSampler(tags, types, n_way=2, k_shot=2, seed=3)
    for index in range(20):
        episode = sampler(index)
        assert not set(episode.support.tolist()) & set(episode.query.tolist())
        for part in (episode.support, episode.query):
            mentions = sum((sentence_types([t if t in episode.classes[1:] else "O" for t in tags[i]]) for i in part),
                           start=__import__("collections").Counter())
            assert all(2 <= mentions[t] <= 4 for t in episode.classes[1:]), mentions


def test_episode_labels_outside_the_episodes_types_or_in_bio_are_refused(tmp_path):
    """A label that is neither O nor an episode type used to be read as O, and BIO tags made B-X and I-X two
    types: both lose mentions without a word."""
    from hf_adapter_ext.meta import read_fewnerd_episodes

    episode = {"support": {"word": [["Ann", "sang"]], "label": [["person", "O"]]},
               "query": {"word": [["Bob", "ran"]], "label": [["persn", "O"]]}, "types": ["person"]}
    path = tmp_path / "episodes.jsonl"
    path.write_text(json.dumps(episode) + "\n")
    with pytest.raises(ValueError, match=r"episodes.jsonl:1: query sentence 0 has labels \['persn'\] .* IO tags"):
        read_fewnerd_episodes(path)
    episode["query"]["label"] = [["person", "O"]]
    path.write_text(json.dumps(episode) + "\n")
    assert read_fewnerd_episodes(path)[1][0].query_labels == [[1, 0]]
    bio = [["B-a", "I-a", "O"], ["B-b", "O", "O"], ["B-b", "I-b", "O"]] * 10
    with pytest.raises(ValueError, match=r"tags \['B-a', 'B-b', 'I-a'\] carry B-/I- prefixes"):
        TokenEpisodeSampler(bio, ["B-a", "B-b", "I-a", "I-b"], n_way=2, k_shot=1)


def test_transductive_init_starts_from_the_soft_kmeans_prototypes_and_stays_batch_independent():
    from hf_adapter_ext.meta.baselines import soft_kmeans_logits

    model = sib(transductive_init=True).eval()
    batch = toy_episode(batch=3)
    with torch.no_grad():
        out = model(**batch)
        alone = torch.cat([model(**{k: v[i : i + 1] for k, v in batch.items()}).logits for i in range(3)])
        head = model.head
        expected = soft_kmeans_logits(batch["support_features"], batch["support_labels"], batch["query_features"],
                                      3, query_mask=batch["query_labels"] != -100, temperature=0.1)
    torch.testing.assert_close(out.logits_init / head.scale - head.bias, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.logits, alone, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("net", [{"grad_net": "fixed", "grad_net_context": True}, {"grad_net": "equivariant"}])
def test_grad_net_context_sees_the_episode_marginal_of_real_queries_only(net):
    model = sib(**net).eval()
    batch = toy_episode(batch=3)
    padded = {k: v.clone() for k, v in batch.items()}
    padded["query_features"] = torch.cat([batch["query_features"], torch.randn(3, 5, 16) * 50], dim=1)
    padded["query_labels"] = torch.cat([batch["query_labels"], torch.full((3, 5), -100)], dim=1)
    with torch.no_grad():
        out = model(**batch)
        alone = torch.cat([model(**{k: v[i : i + 1] for k, v in batch.items()}).logits for i in range(3)])
        with_padding = model(**padded).logits[:, : batch["query_labels"].size(1)]
        # the marginal is an input: changing one query's logits moves every query's synthetic gradient
        logits = torch.randn(1, 6, 3)
        mask = torch.ones(1, 6, dtype=torch.bool)
        shifted = logits.clone()
        shifted[0, 0] += torch.tensor([5.0, -5.0, 0.0])
        grads, grads_shifted = model.head.grad_net(logits, mask), model.head.grad_net(shifted, mask)
    torch.testing.assert_close(out.logits, alone, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(with_padding, out.logits, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(grads[0, 1:], grads_shifted[0, 1:])
    assert not torch.allclose(out.logits, out.logits_init)


def test_configs_saved_before_an_option_existed_reload_with_the_behaviour_they_were_trained_with():
    old = SIBConfig(n_way=3).to_dict()
    for option in ("support_gradient", "transductive_init", "grad_net_context", "grad_net"):
        old.pop(option)
    reloaded = SIBConfig.from_dict(old)
    assert (reloaded.support_gradient, reloaded.transductive_init, reloaded.grad_net_context) == (False,) * 3
    assert reloaded.grad_net == "fixed"


def test_save_and_load_round_trip(tmp_path):
    model = sib().eval()
    model.save_pretrained(tmp_path, metrics={"sib_accuracy": 0.9})
    assert {p.name for p in tmp_path.iterdir()} == {"config.json", "model.safetensors", "README.md"}
    reloaded = SIBForFewShotClassification.from_pretrained(tmp_path, backbone=tiny_backbone())
    episode = toy_episode()
    with torch.no_grad():
        torch.testing.assert_close(model(**episode).logits, reloaded(**episode).logits, atol=0, rtol=0)
    assert "0.9000" in (tmp_path / "README.md").read_text()


def test_a_misspelt_setting_is_refused_not_kept_as_an_idle_attribute(tmp_path, tokenizer):
    """PretrainedConfig keeps unknown keywords as attributes, so inner_step=5 trained with the default 3."""
    tiny_backbone(tokenizer.vocab_size).save_pretrained(tmp_path / "encoder")
    with pytest.raises(TypeError, match=r"\['inner_step'\], which are not SIBConfig settings \('inner_step': did "
                                        r"you mean 'inner_steps'\?\)"):
        SIBForFewShotClassification.from_backbone_pretrained(tmp_path / "encoder", inner_step=5)
    assert SIBForFewShotClassification.from_backbone_pretrained(tmp_path / "encoder", inner_steps=5).config.inner_steps == 5


@pytest.mark.parametrize("freeze", [True, False])
def test_auto_classes_reload_a_saved_model_and_a_frozen_backbone_is_referenced_not_copied(tmp_path, tokenizer,
                                                                                          freeze):
    from safetensors import safe_open
    from transformers import AutoConfig, AutoModel

    tiny_backbone(tokenizer.vocab_size).save_pretrained(tmp_path / "encoder")
    model = SIBForFewShotClassification.from_backbone_pretrained(tmp_path / "encoder", n_way=3, inner_steps=2,
                                                                 freeze_backbone=freeze)
    if not freeze:  # a fine-tuned backbone differs from the one on disk: it must be stored
        with torch.no_grad():
            model.backbone.embeddings.word_embeddings.weight.add_(1.0)
    model.save_pretrained(tmp_path / "sib")
    with safe_open(str(tmp_path / "sib" / "model.safetensors"), "pt") as weights:
        stored = set(weights.keys())
    assert any(k.startswith("head.") for k in stored)
    assert any(k.startswith("backbone.") for k in stored) == (not freeze)
    assert type(AutoConfig.from_pretrained(tmp_path / "sib")) is SIBConfig
    reloaded = AutoModel.from_pretrained(tmp_path / "sib")
    assert type(reloaded) is SIBForFewShotClassification and not reloaded.training
    used = lambda m: {k: v for k, v in m.state_dict().items() if ".pooler." not in k}  # noqa: E731 (unused pooler)
    torch.testing.assert_close(used(reloaded), used(model), atol=0, rtol=0)
    texts = ["paris london", "john mary", "acme union"]
    torch.testing.assert_close(reloaded._adapted_logits(texts, [0, 1, 2], texts, tokenizer, None),
                               model.eval()._adapted_logits(texts, [0, 1, 2], texts, tokenizer, None))
    assert all(not p.requires_grad for p in reloaded.backbone.parameters()) == freeze


def test_a_model_can_be_built_from_its_config_alone():
    config = SIBConfig(n_way=3, backbone=tiny_backbone().config.to_dict())
    model = SIBForFewShotClassification(config)
    assert model.config.feature_dim == 16 and model.backbone.config.hidden_size == 16
    with pytest.raises(ValueError, match="from_backbone_pretrained"):
        SIBForFewShotClassification(SIBConfig(n_way=3))


def test_models_saved_before_the_support_gradient_option_reload_as_the_reference(tmp_path):
    model = sib(support_gradient=False).eval()
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    del config["support_gradient"]  # what a save from before the option looks like
    (tmp_path / "config.json").write_text(json.dumps(config))
    reloaded = SIBForFewShotClassification.from_pretrained(tmp_path, backbone=tiny_backbone())
    assert reloaded.config.support_gradient is False
    episode = toy_episode()
    with torch.no_grad():
        torch.testing.assert_close(model(**episode).logits, reloaded(**episode).logits, atol=0, rtol=0)


# ---------------------------------------------------------------- the trainer on tiny data
def intent_data(tokenizer, classes=6, per_class=8):
    words = ["paris", "london", "acme", "john", "mary", "union", "german", "monday", "shares", "talks", "rose", "flew"]
    rng = np.random.default_rng(0)
    texts, labels = [], []
    for c in range(classes):
        for _ in range(per_class):
            texts.append(" ".join([words[c], words[(c + 3) % 12], *rng.choice(words, 3)]))
            labels.append(c)
    features = Features({"text": Value("string"), "label": ClassLabel(names=[f"intent_{c}" for c in range(classes)])})
    return Dataset.from_dict({"text": texts, "label": labels}, features=features)


def meta_args(tmp_path, **kw):
    defaults = dict(output_dir=str(tmp_path), k_shot=1, n_query=2, max_steps=4, train_episodes=40,
                    num_eval_episodes=12, per_device_train_batch_size=4, per_device_eval_batch_size=5,
                    report_to="none", save_strategy="no", use_cpu=True, disable_tqdm=True, learning_rate=1e-2,
                    refinement_check_episodes=8)
    return MetaTrainingArguments(**{**defaults, **kw})


@pytest.mark.parametrize("freeze", [True, False])
def test_trainer_trains_and_reports_accuracy_with_confidence_intervals(tmp_path, tokenizer, freeze):
    model = SIBForFewShotClassification(SIBConfig(n_way=3, inner_steps=2, freeze_backbone=freeze),
                                        backbone=tiny_backbone(tokenizer.vocab_size))
    data = intent_data(tokenizer)
    train = data.filter(lambda r: r["label"] < 3)
    evaluation = data.filter(lambda r: r["label"] >= 3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = SemiSupervisedMetaTrainer(model=model, args=meta_args(tmp_path, shape_top_layers=0),  # frozen stays
                                        train_dataset=train, eval_dataset=evaluation, processing_class=tokenizer)
    assert trainer.train_dataset is train, "episodes are built by the dataloader methods, not in __init__"
    trainer.train()
    assert trainer.state.global_step == 4 and len(trainer.train_dataset) == 40
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert any(k.startswith("head.") for k in changed)
    assert any(k.startswith("backbone.") for k in changed) == (not freeze)
    metrics = trainer.evaluate()
    for method in ("sib", "sib_k0"):
        assert 0 <= metrics[f"eval_{method}_accuracy"] <= 1 and metrics[f"eval_{method}_accuracy_ci95"] >= 0
    assert metrics["eval_episodes"] == 12
    if freeze:
        assert {"eval_proto_accuracy", "eval_soft_kmeans_accuracy"} <= metrics.keys()


@pytest.mark.parametrize("net", [{"grad_net": "fixed", "grad_net_context": True}, {}])
def test_a_marginal_seeing_grad_net_on_even_training_episodes_warns_that_uneven_query_sets_will_suffer(
        tmp_path, tokenizer, net):
    model = SIBForFewShotClassification(SIBConfig(n_way=3, **net), backbone=tiny_backbone(tokenizer.vocab_size))
    data = intent_data(tokenizer)
    with pytest.warns(UserWarning, match="class marginal .*, with even training episodes only"):
        SemiSupervisedMetaTrainer(model=model, args=meta_args(tmp_path, uneven_train_queries=0.0,
                                                              natural_train_queries=0.0),
                                  train_dataset=data, processing_class=tokenizer)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="class marginal")
        SemiSupervisedMetaTrainer(model=model, args=meta_args(tmp_path), train_dataset=data,
                                  processing_class=tokenizer)


def test_evaluation_classes_that_were_trained_on_are_named_in_a_warning(tmp_path, tokenizer):
    """Meta-validation on training classes selects checkpoints by memory; disjoint class splits stay silent."""
    model = SIBForFewShotClassification(SIBConfig(n_way=3), backbone=tiny_backbone(tokenizer.vocab_size))
    data = intent_data(tokenizer)
    train = data.filter(lambda row: row["label"] < 4)
    with pytest.warns(UserWarning, match=r"eval dataset shares 1 classes .*\['intent_3'\]"):
        SemiSupervisedMetaTrainer(model=model, args=meta_args(tmp_path), train_dataset=train,
                                  eval_dataset=data.filter(lambda row: row["label"] >= 3), processing_class=tokenizer)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*shares .* classes")
        SemiSupervisedMetaTrainer(model=model, args=meta_args(tmp_path), train_dataset=data.filter(
            lambda row: row["label"] < 3), eval_dataset={"val": data.filter(lambda row: row["label"] >= 3)},
            processing_class=tokenizer)


def test_uneven_query_shares_reach_the_trainers_episodes(tmp_path, tokenizer):
    model = SIBForFewShotClassification(SIBConfig(n_way=3, inner_steps=1), backbone=tiny_backbone(tokenizer.vocab_size))
    data = intent_data(tokenizer)
    args = meta_args(tmp_path, n_query=5, uneven_train_queries=1.0, natural_train_queries=0.0, uneven_eval_queries=0.0,
                     max_train_ways=None)
    trainer = SemiSupervisedMetaTrainer(model=model, args=args, train_dataset=data, eval_dataset=data,
                                        processing_class=tokenizer)
    train = trainer.get_train_dataloader().dataset
    evaluation = trainer.get_eval_dataloader().dataset
    assert train.sampler.uneven_queries == 1.0 and evaluation.sampler.uneven_queries == 0.0
    sizes = {len(train[i]["query_labels"]) for i in range(40)}
    assert min(sizes) < 15 and max(sizes) <= 15 and {len(evaluation[i]["query_labels"]) for i in range(12)} == {15}
    trainer.train()  # uneven episodes pad to one batch and train
    with pytest.raises(ValueError, match=r"uneven_train_queries=1.5 is out of range"):
        meta_args(tmp_path, uneven_train_queries=1.5)


def test_evaluation_runs_through_the_trainer_loop_so_best_model_loading_and_early_stopping_work(tmp_path, tokenizer):
    from transformers import EarlyStoppingCallback

    model = SIBForFewShotClassification(SIBConfig(n_way=3, inner_steps=2), backbone=tiny_backbone(tokenizer.vocab_size))
    data = intent_data(tokenizer)
    args = meta_args(tmp_path, max_steps=12, eval_strategy="steps", eval_steps=2, save_strategy="steps", save_steps=2,
                     load_best_model_at_end=True, metric_for_best_model="sib_accuracy", learning_rate=0.05,
                     refinement_check_episodes=0)  # the check could then answer 3-way tasks from K = 0
    trainer = SemiSupervisedMetaTrainer(model=model, args=args, train_dataset=data.filter(lambda r: r["label"] < 3),
                                        eval_dataset=data.filter(lambda r: r["label"] >= 3), processing_class=tokenizer,
                                        callbacks=[EarlyStoppingCallback(early_stopping_patience=1)])
    trainer.train()
    evaluations = [log for log in trainer.state.log_history if "eval_sib_accuracy" in log]
    assert evaluations and all("eval_runtime" in log and "eval_soft_kmeans_accuracy_ci95" in log for log in evaluations)
    assert trainer.state.best_metric == max(log["eval_sib_accuracy"] for log in evaluations)
    best = trainer.state.best_global_step
    assert trainer.evaluate()["eval_sib_accuracy"] == trainer.state.best_metric, f"step {best}'s weights are loaded"
    if len(evaluations) < 6:  # stopped early: the last evaluation did not improve on the one before
        assert evaluations[-1]["eval_sib_accuracy"] <= evaluations[-2]["eval_sib_accuracy"]


@pytest.mark.parametrize("metric", ["sib_accuracy", "eval_sib_accuracy"])  # Trainer takes either spelling
@pytest.mark.parametrize("scores, warned", [([0.2, 0.3, 0.4], True), ([0.4, 0.3, 0.2], False)])
def test_a_meta_training_run_whose_best_step_is_its_last_says_so(tmp_path, tokenizer, caplog, metric, scores, warned):
    model = SIBForFewShotClassification(SIBConfig(n_way=3, inner_steps=1), backbone=tiny_backbone(tokenizer.vocab_size))
    data = intent_data(tokenizer)
    args = meta_args(tmp_path, max_steps=6, eval_strategy="steps", eval_steps=2, save_strategy="steps", save_steps=2,
                     load_best_model_at_end=True, metric_for_best_model=metric, refinement_check_episodes=0,
                     shape_top_layers=0)
    rising = iter(scores)
    trainer = SemiSupervisedMetaTrainer(model=model, args=args, train_dataset=data.filter(lambda r: r["label"] < 3),
                                        eval_dataset=data.filter(lambda r: r["label"] >= 3), processing_class=tokenizer,
                                        compute_metrics=lambda prediction: {"sib_accuracy": next(rising)})
    with caplog.at_level(logging.WARNING):
        trainer.train()
    assert trainer.state.best_global_step == (6 if warned else 2)
    assert ("still improving" in caplog.text and "step 6 of 6" in caplog.text) is warned


def test_a_users_compute_metrics_replaces_the_default(tmp_path, tokenizer):
    model = SIBForFewShotClassification(SIBConfig(n_way=3, inner_steps=2), backbone=tiny_backbone(tokenizer.vocab_size))
    data = intent_data(tokenizer)
    seen = {}

    def compute_metrics(prediction):
        seen["scores"] = len(prediction.predictions)
        return {"my_metric": 1.0}

    trainer = SemiSupervisedMetaTrainer(model=model, args=meta_args(tmp_path), eval_dataset=data,
                                        processing_class=tokenizer, compute_metrics=compute_metrics)
    assert trainer.evaluate()["eval_my_metric"] == 1.0
    assert seen["scores"] == 4  # SIB, SIB with K = 0, prototypes, soft k-means


def test_token_level_trainer_reports_episode_entity_f1(tmp_path, tokenizer):
    rng = np.random.default_rng(1)
    vocabulary = "john paris acme london mary union german monday shares talks".split()
    types = ["person", "place", "company", "group"]
    tokens, tags = [], []
    for _ in range(80):
        length = int(rng.integers(4, 9))
        words = list(rng.choice(vocabulary, length))
        kind = str(rng.choice(types))  # one entity type per sentence, as in real NER data mostly
        sentence_tags = [str(rng.choice(["O", "O", kind])) for _ in words]
        tokens.append(words)
        tags.append(sentence_tags)
    data = Dataset.from_dict({"tokens": tokens, "tags": tags})
    model = SIBForFewShotClassification(SIBConfig(n_way=2, level="token"), backbone=tiny_backbone(tokenizer.vocab_size))
    trainer = SemiSupervisedMetaTrainer(model=model, args=meta_args(tmp_path), train_dataset=data,
                                        eval_dataset=data, processing_class=tokenizer)
    trainer.train()
    metrics = trainer.evaluate()
    assert {"eval_sib_f1", "eval_sib_f1_ci95", "eval_proto_f1", "eval_sib_micro_f1"} <= metrics.keys()


def test_too_few_examples_per_class_is_a_clear_error(tmp_path, tokenizer):
    model = SIBForFewShotClassification(SIBConfig(n_way=3), backbone=tiny_backbone(tokenizer.vocab_size))
    data = intent_data(tokenizer, per_class=2)
    with pytest.raises(ValueError, match="fewer than k_shot \\+ n_query"):
        SemiSupervisedMetaTrainer(model=model, args=meta_args(tmp_path, n_query=5), train_dataset=data,
                                  processing_class=tokenizer)


def test_adapt_classifies_a_new_task_from_texts(tokenizer):
    model = SIBForFewShotClassification(SIBConfig(n_way=2), backbone=tiny_backbone(tokenizer.vocab_size))
    predictions = model.adapt(["paris london", "john mary"], [0, 1], ["paris london", "john mary", "london"],
                              tokenizer=tokenizer)
    assert predictions.tolist()[:2] == [0, 1]


def test_a_frozen_backbone_built_in_training_mode_encodes_without_dropout(tokenizer):
    backbone = tiny_backbone(tokenizer.vocab_size).train()  # as BertModel(config) or AutoModel.from_config leave it
    model = SIBForFewShotClassification(SIBConfig(n_way=2), backbone=backbone)
    texts = ["paris london", "john mary peter"]
    torch.testing.assert_close(encode_texts(model, tokenizer, texts), encode_texts(model, tokenizer, texts),
                               atol=0, rtol=0)


def test_texts_cut_at_the_token_limit_are_counted_in_a_warning(tokenizer, caplog):
    model = SIBForFewShotClassification(SIBConfig(n_way=2), backbone=tiny_backbone(tokenizer.vocab_size))
    with caplog.at_level("WARNING", logger="hf_adapter_ext.meta.features"):
        encode_texts(model, tokenizer, ["paris london", "john mary"])
        assert "token limit" not in caplog.text
        long = " ".join(["paris london john mary"] * 40)  # 160 words: beyond 128 tokens
        features = encode_texts(model, tokenizer, ["paris london", long, long + " peter"])
    assert "2 of 3 texts reach the 128-token limit" in caplog.text
    torch.testing.assert_close(features[1], features[2])  # the words past the limit are not read


def test_predict_labels_gives_label_names_and_probabilities(tokenizer):
    # names not read: its answers are then adapt's on the same examples (tests/test_label_names.py reads them)
    model = SIBForFewShotClassification(SIBConfig(n_way=2, use_label_names=False),
                                        backbone=tiny_backbone(tokenizer.vocab_size))
    examples = {"city": ["paris london"], "person": ["john mary", "peter"]}
    predicted = model.predict_labels(examples, ["paris london", "john mary", "london"], tokenizer)
    assert [p["label"] for p in predicted[:2]] == ["city", "person"]
    assert all(0.5 <= p["score"] <= 1.0 for p in predicted)  # the winning probability of two classes
    ids = model.adapt(["paris london", "john mary", "peter"], [0, 1, 1], ["paris london", "john mary", "london"],
                      tokenizer=tokenizer)
    assert [p["label"] for p in predicted] == [list(examples)[i] for i in ids.tolist()]


@pytest.mark.parametrize(("examples", "pattern"), [
    ({"city": ["paris"], "person": []}, r"\['person'\] have no examples"),
    ({"city": ["paris"], "person": "john"}, r"bare string"),
    ({"city": ["paris"]}, r"at least 2 labels"),
    (["paris", "john"], r"dict of label name -> example texts"),
])
def test_predict_labels_refuses_an_empty_or_malformed_support_set(tokenizer, examples, pattern):
    model = SIBForFewShotClassification(SIBConfig(n_way=2), backbone=tiny_backbone(tokenizer.vocab_size))
    with pytest.raises(ValueError, match=pattern):
        model.predict_labels(examples, ["paris"], tokenizer)


def test_collate_pads_variable_length_episodes():
    items = [{"support_features": torch.ones(n, 2), "support_labels": torch.zeros(n, dtype=torch.long),
              "episode_index": torch.tensor(i)} for i, n in enumerate((2, 4))]
    batch = collate_episodes(items)
    assert batch["support_features"].shape == (2, 4, 2)
    assert batch["support_labels"][0].tolist() == [0, 0, -100, -100]


def test_push_to_hub_uploads_config_weights_and_card(monkeypatch, tmp_path):
    from pathlib import Path

    from huggingface_hub import HfApi, ModelCard

    uploaded = {}
    monkeypatch.setattr(HfApi, "create_repo", lambda self, repo_id, **kw: type("R", (), {"repo_id": repo_id})())

    def upload_folder(self, repo_id, folder_path, **kwargs):
        uploaded["files"] = sorted(p.name for p in Path(folder_path).iterdir())
        uploaded["card"] = ModelCard.load(Path(folder_path) / "README.md")
        return type("C", (), {"commit_url": "https://hub/c/1"})()

    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    model = sib()
    with pytest.raises(ValueError, match=r"frozen backbone is referenced as ''.*Hub id"):
        model.push_to_hub("me/sib-intents")  # nobody could load its encoder
    model.config.backbone_name_or_path = "/home/me/.venv/minilm"
    with pytest.raises(ValueError, match=r"'/home/me/.venv/minilm'.*backbone_name_or_path"):
        model.push_to_hub("me/sib-intents")
    model.config.backbone_name_or_path = "sentence-transformers/all-MiniLM-L6-v2"
    assert model.push_to_hub("me/sib-intents", tags=["intents"], commit_message="v1") == "https://hub/c/1"
    assert uploaded["files"] == ["README.md", "config.json", "model.safetensors"]
    uploaded.clear()  # save_pretrained(push_to_hub=True) pushes the folder once it holds our card, not before
    model.save_pretrained(tmp_path / "sib-intents", push_to_hub=True, tags=["intents"])
    assert uploaded["files"] == ["README.md", "config.json", "model.safetensors"]
    assert "intents" in uploaded["card"].data.tags
    assert {"few-shot", "intents"} <= set(uploaded["card"].data.tags)


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("support_gradient", [False, True])
def test_batched_episodes_equal_one_at_a_time_in_training_and_at_test(training, support_gradient):
    """Each episode's queries are normalised with that episode's own statistics (the reference's BatchNorm, never
    in eval mode): which episodes share a batch, and padding, change nothing."""
    model = sib(support_gradient=support_gradient).train(training)
    episode = toy_episode(batch=4)
    episode["query_labels"][2, -3:] = -100  # a padded episode: fewer queries
    batched = model(**episode)
    for b in range(4):
        real = episode["query_labels"][b] != -100
        alone = model(support_features=episode["support_features"][b : b + 1],
                      support_labels=episode["support_labels"][b : b + 1],
                      query_features=episode["query_features"][b : b + 1, real],
                      query_labels=episode["query_labels"][b : b + 1, real])
        torch.testing.assert_close(batched.logits[b, real], alone.logits[0], atol=1e-5, rtol=1e-5)



def test_meta_training_under_bf16_autocast_trains_and_evaluates(tmp_path, tokenizer):
    """--bf16 on CPU: the scores of classes an episode lacks were filled with float32's minimum, which bf16 cannot
    hold ("value cannot be converted to type c10::BFloat16 without overflow")."""
    model = SIBForFewShotClassification(SIBConfig(n_way=3, inner_steps=2), backbone=tiny_backbone(tokenizer.vocab_size))
    data = intent_data(tokenizer)
    trainer = SemiSupervisedMetaTrainer(model=model, args=meta_args(tmp_path, shape_top_layers=0, bf16=True),
                                        train_dataset=data.filter(lambda r: r["label"] < 3),
                                        eval_dataset=data.filter(lambda r: r["label"] >= 3), processing_class=tokenizer)
    assert math.isfinite(trainer.train().training_loss)
    assert 0 <= trainer.evaluate()["eval_sib_accuracy"] <= 1


def test_trainer_push_to_hub_keeps_sibs_own_model_card(monkeypatch, tmp_path, tokenizer):
    """Trainer.push_to_hub wrote its generic card over SIB's (which shows the config and the learned step size)."""
    from .test_adapter_persistence import recorded_hub_uploads

    calls = recorded_hub_uploads(monkeypatch)
    model = SIBForFewShotClassification(SIBConfig(n_way=3), backbone=tiny_backbone(tokenizer.vocab_size))
    trainer = SemiSupervisedMetaTrainer(model=model, args=meta_args(tmp_path, shape_top_layers=0, push_to_hub=True,
                                                                    hub_model_id="me/sib", hub_strategy="end"),
                                        train_dataset=intent_data(tokenizer), processing_class=tokenizer)
    trainer.train()
    trainer.push_to_hub()
    assert calls["card"].data.library_name == "hf_adapter_ext" and "sib" in calls["card"].data.tags


def test_evaluation_scores_do_not_depend_on_how_the_episodes_are_batched(tmp_path, tokenizer):
    """Trainer's evaluation options change how the episodes' scores reach compute_metrics (batch size, moved to the
    CPU every step, or per-batch lists under eval_do_concat_batches=False, which failed with "expected sequence of
    length 5"); the accuracies must not change."""
    data = intent_data(tokenizer, classes=8)
    train, evaluation = data.filter(lambda r: r["label"] < 4), data.filter(lambda r: r["label"] >= 4)
    model = sib(n_way=3, grad_net="equivariant")
    results = []
    for options in ({}, {"per_device_eval_batch_size": 1}, {"per_device_eval_batch_size": 7},
                    {"eval_do_concat_batches": False}, {"eval_accumulation_steps": 1}):
        trainer = SemiSupervisedMetaTrainer(model=model, args=meta_args(tmp_path / str(len(results)), **options),
                                            train_dataset=train, eval_dataset=evaluation, processing_class=tokenizer)
        metrics = trainer.evaluate()
        results.append({k: v for k, v in metrics.items() if "accuracy" in k or k == "eval_episodes"})
    assert all(result == results[0] for result in results), results


def test_gradient_checkpointing_recomputes_a_trained_backbone_and_trains_the_same(tmp_path, tokenizer):
    """TrainingArguments(gradient_checkpointing=True) was refused ("does not support activation checkpointing"); with
    a backbone that trains, its layers recompute their activations and the run is the same."""
    train = intent_data(tokenizer, classes=4)
    runs = []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        model = SIBForFewShotClassification(SIBConfig(n_way=3, inner_steps=1, freeze_backbone=False),
                                            backbone=tiny_backbone(tokenizer.vocab_size))
        trainer = SemiSupervisedMetaTrainer(model=model, train_dataset=train, processing_class=tokenizer,
                                            args=meta_args(tmp_path / str(checkpointing),
                                                           gradient_checkpointing=checkpointing))
        loss = trainer.train().training_loss
        assert model.is_gradient_checkpointing == checkpointing
        runs.append((loss, [p.detach().clone() for p in model.backbone.parameters()]))
    assert runs[0][0] == pytest.approx(runs[1][0], rel=1e-6)
    for before, after in zip(runs[0][1], runs[1][1]):
        torch.testing.assert_close(before, after)


def test_evaluation_texts_given_twice_are_warned(tokenizer, caplog):
    """A query that is a copy of a labelled example of the same episode is solved by copying: the accuracy of
    evaluation data with repeated texts is optimistic, and says so."""
    data = intent_data(tokenizer, classes=4)
    twice = concatenate_datasets([data, data.select(range(3))])
    with caplog.at_level(logging.WARNING, logger="hf_adapter_ext.meta.episode_data"):
        build_episodes(data, sib(n_way=3), tokenizer, 1, 2, 0, 4, name="eval")
        assert "more than once" not in caplog.text
        build_episodes(twice, sib(n_way=3), tokenizer, 1, 2, 0, 4, name="eval")
    assert "The eval dataset holds 3 texts more than once" in caplog.text
