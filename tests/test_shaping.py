"""Shaping the encoder on the meta-training classes: the cached-layer trick reproduces the encoder exactly, shaping
trains only the top layers and separates the classes, shaping with the label names puts each name where its class
lies, the shaped encoder is saved with the model, and misuse is refused by name."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoConfig, AutoModel, BertConfig, BertModel, RobertaConfig, RobertaModel

from hf_adapter_ext import SIBConfig, SIBForFewShotClassification
from hf_adapter_ext.constants import IGNORE_INDEX
from hf_adapter_ext.meta import SemiSupervisedMetaTrainer, modeling
from hf_adapter_ext.meta.shaping import (
    NAME_AGREEMENT,
    SHAPING_DEFAULTS,
    ShapingResult,
    TopLayers,
    _name_alignment_loss,
    encoder_layers,
    layer_output_width,
    name_agreement,
    pool_states,
    shape_encoder,
)

from .test_meta import intent_data, meta_args

SIZES = dict(hidden_size=16, num_hidden_layers=3, num_attention_heads=2, intermediate_size=32)


def encoder(arch: str, vocab_size: int, seed: int = 0):
    torch.manual_seed(seed)
    if arch == "roberta":
        return RobertaModel(RobertaConfig(vocab_size=vocab_size, pad_token_id=0, **SIZES), add_pooling_layer=False)
    return BertModel(BertConfig(vocab_size=vocab_size, **SIZES), add_pooling_layer=False)


def pooled(backbone, tokenizer, texts):
    encoded = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        return pool_states(backbone(**encoded).last_hidden_state, encoded["attention_mask"], "mean")


# Encoders whose layers take more than the states and a mask, handed to them by the encoder itself: MPNet a relative
# position bias, DeBERTa relative embeddings, ModernBERT rotary embeddings and per-layer attention kinds.
OTHER_ENCODERS = {"distilbert": {"n_layers": 3, "dim": 16, "n_heads": 2, "hidden_dim": 32}, "mpnet": {},
                  "deberta-v2": {}, "modernbert": {"pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2,
                                                   "cls_token_id": 1, "sep_token_id": 2,
                                                   "global_attn_every_n_layers": 2, "local_attention": 4}}


def any_encoder(arch: str, vocab_size: int):
    if arch in ("bert", "roberta"):
        return encoder(arch, vocab_size)
    torch.manual_seed(0)
    model = AutoModel.from_config(AutoConfig.for_model(arch, vocab_size=vocab_size, **{**SIZES, **OTHER_ENCODERS[arch]}))
    if arch == "mpnet":  # a trained MPNet's bias is far from its initial near-zero values
        with torch.no_grad():
            model.encoder.relative_attention_bias.weight.normal_(0, 3)
    return model


@pytest.mark.parametrize("arch", ["bert", "roberta", *OTHER_ENCODERS])
def test_top_layers_run_on_cached_states_reproduce_the_encoder_with_padding(tokenizer, arch):
    backbone = any_encoder(arch, len(tokenizer)).eval()
    texts = ["john", "mary visited london with the united nations delegation yesterday", "acme rose"]
    encoded = dict(tokenizer(texts, padding=True, return_tensors="pt"))
    layers = encoder_layers(backbone)
    originals = list(layers)
    with torch.no_grad():
        out = backbone(**encoded, output_hidden_states=True)
        for cut in range(len(layers)):
            width = layer_output_width(layers[cut - 1], backbone, encoded) if cut else None
            top = TopLayers(backbone, cut, width)(encoded, out.hidden_states[cut])
            torch.testing.assert_close(top, out.last_hidden_state, atol=1e-5, rtol=1e-5)
    assert all(layer is original for layer, original in zip(layers, originals)), "the real layers are put back"


@pytest.mark.parametrize("arch", list(OTHER_ENCODERS))
def test_shaping_trains_the_top_layers_of_other_encoder_families(tokenizer, arch):
    backbone = any_encoder(arch, len(tokenizer))
    data = intent_data(tokenizer)
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    losses = shape_encoder(backbone, tokenizer, list(data["text"]), list(data["label"]), top_layers=1, epochs=2,
                           learning_rate=3e-3, batch_size=16).losses
    top = {f"{name}." for name, module in backbone.named_modules() if module is encoder_layers(backbone)[-1]}
    changed = {k for k, v in backbone.state_dict().items() if not torch.equal(v, before[k])}
    assert len(losses) == 2 and changed and all(any(k.startswith(prefix) for prefix in top) for k in changed)


def class_separation(features, labels):
    """Mean cosine to the own class mean minus mean cosine to the other class means."""
    unit = torch.nn.functional.normalize(features, dim=-1)
    labels = torch.as_tensor(labels)
    means = torch.stack([unit[labels == c].mean(0) for c in labels.unique()])
    cos = unit @ torch.nn.functional.normalize(means, dim=-1).T
    own = cos.gather(1, labels.unsqueeze(1)).squeeze(1)
    return float((own - (cos.sum(1) - own) / (len(means) - 1)).mean())


def test_shaping_trains_only_the_top_layers_and_separates_the_classes(tokenizer):
    backbone = encoder("bert", len(tokenizer))
    data = intent_data(tokenizer)
    texts, labels = list(data["text"]), list(data["label"])
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    backbone.requires_grad_(False)
    separation = class_separation(pooled(backbone, tokenizer, texts), labels)
    losses = shape_encoder(backbone, tokenizer, texts, labels, top_layers=1, epochs=8, learning_rate=3e-3,
                           batch_size=16).losses
    assert len(losses) == 8 and losses[-1] < losses[0]
    changed = {k.split(".")[2] for k, v in backbone.state_dict().items()
               if k.startswith("encoder.layer.") and not torch.equal(v, before[k])}
    assert changed == {"2"}, "only the top layer trains"
    assert all(torch.equal(v, before[k]) for k, v in backbone.state_dict().items() if not k.startswith("encoder.layer.2"))
    assert not any(p.requires_grad for p in backbone.parameters()), "the backbone stays frozen afterwards"
    assert not backbone.training
    assert class_separation(pooled(backbone, tokenizer, texts), labels) > separation + 0.05


def test_a_shaped_model_saves_its_encoder_and_reloads_exactly(tmp_path, tokenizer):
    model = SIBForFewShotClassification(SIBConfig(n_way=3), backbone=encoder("bert", len(tokenizer)))
    data = intent_data(tokenizer)
    model.shape_backbone(tokenizer, list(data["text"]), list(data["label"]), top_layers=2, epochs=1)
    assert model.config.shaped_layers == 2 and model.config.stores_backbone
    model.save_pretrained(tmp_path)
    assert any(k.startswith("backbone.encoder.layer.2") for k in load_file(str(tmp_path / "model.safetensors")))
    assert "top 2 layers shaped" in (tmp_path / "README.md").read_text()
    reloaded = SIBForFewShotClassification.from_pretrained(tmp_path)  # no backbone=: the checkpoint holds it
    texts = ["john flew to paris", "acme shares rose"]
    torch.testing.assert_close(pooled(reloaded.backbone, tokenizer, texts), pooled(model.backbone, tokenizer, texts),
                               atol=0, rtol=0)
    examples = {"a": [data["text"][0]], "b": [data["text"][8]], "c": [data["text"][16]]}
    assert model.predict_labels(examples, texts, tokenizer) == reloaded.predict_labels(examples, texts, tokenizer)


def test_a_shaped_checkpoint_refuses_a_backbone_passed_in(tmp_path, tokenizer):
    model = SIBForFewShotClassification(SIBConfig(n_way=3), backbone=encoder("bert", len(tokenizer)))
    data = intent_data(tokenizer)
    model.shape_backbone(tokenizer, list(data["text"]), list(data["label"]), top_layers=1, epochs=1)
    model.save_pretrained(tmp_path)
    other_vocabulary = encoder("bert", len(tokenizer) + 50)
    with pytest.raises(ValueError, match="stores its own encoder.*without backbone="):
        SIBForFewShotClassification.from_pretrained(tmp_path, backbone=other_vocabulary)


def test_the_trainer_shapes_before_encoding_any_episode(tmp_path, tokenizer):
    model = SIBForFewShotClassification(SIBConfig(n_way=3, inner_steps=1), backbone=encoder("bert", len(tokenizer)))
    data = intent_data(tokenizer)
    train, evaluation = data.filter(lambda r: r["label"] < 3), data.filter(lambda r: r["label"] >= 3)
    trainer = SemiSupervisedMetaTrainer(model=model, args=meta_args(tmp_path, shape_top_layers=1, shape_epochs=1),
                                        train_dataset=train, eval_dataset=evaluation, processing_class=tokenizer)
    trainer.evaluate()  # episodes of the pretrained encoder: dropped once it is shaped
    trainer.train()
    assert model.config.shaped_layers == 1
    features = trainer.as_episodes(evaluation, training=False).features
    torch.testing.assert_close(features, pooled(model.backbone, tokenizer, list(evaluation["text"])),
                               atol=1e-5, rtol=1e-4)
    trainer.train()  # a second run does not shape the shaped encoder again
    assert model.config.shaped_layers == 1


@pytest.mark.parametrize("call, message", [
    (lambda m, t, x, y: m.shape_backbone(t, x, y, top_layers=4), r"top_layers=4 is out of range.*<= 3"),
    (lambda m, t, x, y: m.shape_backbone(t, x, y, top_layers=0), r"top_layers=0 is out of range"),
    (lambda m, t, x, y: m.shape_backbone(t, x, y, epochs=0), r"epochs=0 is out of range"),
    (lambda m, t, x, y: m.shape_backbone(t, x, y[:-1]), r"one class id per text"),
    (lambda m, t, x, y: m.shape_backbone(t, x, [0] * len(x)), r"at least two classes"),
    (lambda m, t, x, y: m.shape_backbone(t, "one text", y), r"texts"),
    (lambda m, t, x, y: m.shape_backbone(t, x, y, class_names="paris"), r"class_names must map each class id"),
    (lambda m, t, x, y: m.shape_backbone(t, x, y, class_names={"0": "paris"}), r"names none of the label ids"),
    (lambda m, t, x, y: shape_encoder(m.backbone, t, x, y, min_name_agreement=1.5),
     r"min_name_agreement=1.5 is out of range"),
])
def test_bad_shaping_calls_are_refused_by_name(tokenizer, call, message):
    model = SIBForFewShotClassification(SIBConfig(n_way=3), backbone=encoder("bert", len(tokenizer)))
    data = intent_data(tokenizer)
    with pytest.raises((ValueError, TypeError), match=message):
        call(model, tokenizer, list(data["text"]), list(data["label"]))


def test_shaping_twice_at_token_level_or_on_an_unsupported_encoder_is_refused(tokenizer):
    data = intent_data(tokenizer)
    texts, labels = list(data["text"]), list(data["label"])
    model = SIBForFewShotClassification(SIBConfig(n_way=3), backbone=encoder("bert", len(tokenizer)))
    model.shape_backbone(tokenizer, texts, labels, top_layers=1, epochs=1)
    with pytest.raises(ValueError, match="already shaped"):
        model.shape_backbone(tokenizer, texts, labels)
    token = SIBForFewShotClassification(SIBConfig(n_way=3, level="token"), backbone=encoder("bert", len(tokenizer)))
    with pytest.raises(ValueError, match="level='sequence'"):
        token.shape_backbone(tokenizer, texts, labels)
    albert = AutoModel.from_config(AutoConfig.for_model("albert", vocab_size=len(tokenizer), embedding_size=16, **SIZES))
    with pytest.raises(ValueError, match="runs 3 layer passes through 1 shared layer"):
        shape_encoder(albert, tokenizer, texts, labels)


def test_shape_top_layers_needs_the_labelled_training_data(tmp_path, tokenizer):
    model = SIBForFewShotClassification(SIBConfig(n_way=3), backbone=encoder("bert", len(tokenizer)))
    trainer = SemiSupervisedMetaTrainer(model=model, args=meta_args(tmp_path, shape_top_layers=1),
                                        processing_class=tokenizer)
    with pytest.raises(ValueError, match="shape_top_layers needs the labelled training dataset"):
        trainer.shape_backbone()
    with pytest.raises(ValueError, match="shape_top_layers=-1 is out of range"):
        meta_args(tmp_path, shape_top_layers=-1)
    with pytest.raises(ValueError, match="shape_with_label_names must be true or false"):
        meta_args(tmp_path, shape_with_label_names="false")


def test_the_default_shapes_where_shaping_applies_and_says_why_not_elsewhere(tmp_path, tokenizer, caplog):
    data = intent_data(tokenizer)
    train = data.filter(lambda r: r["label"] < 3)

    def trainer(config: SIBConfig, train_dataset, backbone=None):
        model = SIBForFewShotClassification(config, backbone=backbone or encoder("bert", len(tokenizer)))
        return SemiSupervisedMetaTrainer(model=model, args=meta_args(tmp_path, shape_epochs=1),
                                         train_dataset=train_dataset, processing_class=tokenizer)

    assert meta_args(tmp_path).shape_top_layers is None
    shaped = trainer(SIBConfig(n_way=3), train)
    assert shaped.shape_backbone() is not None
    assert shaped.model.config.shaped_layers == SHAPING_DEFAULTS.top_layers
    one_layer = BertModel(BertConfig(vocab_size=len(tokenizer), **{**SIZES, "num_hidden_layers": 1}),
                          add_pooling_layer=False)
    assert trainer(SIBConfig(n_way=3), train, one_layer).shape_backbone() is not None  # as many as it has
    episodes = shaped.as_episodes(train, training=True)  # ready-made episodes carry no texts to shape on
    cases = {"token-level": trainer(SIBConfig(n_way=3, level="token"), None),
             "freeze_backbone=False": trainer(SIBConfig(n_way=3, freeze_backbone=False), train),
             "ready-made episodes": trainer(SIBConfig(n_way=3), episodes)}
    for reason, unshaped in cases.items():
        with caplog.at_level("INFO", logger="hf_adapter_ext.meta.trainer"):
            assert unshaped.shape_backbone() is None
        assert unshaped.model.config.shaped_layers == 0
        assert reason.split()[0] in caplog.text, reason


# ---------------------------------------------------------------- shaping with the label names
def test_the_name_alignment_loss_matches_a_one_example_at_a_time_reference():
    torch.manual_seed(0)
    states, mask = torch.randn(3, 4, 5, dtype=torch.float64), torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]])
    rows = torch.tensor([2, IGNORE_INDEX, 0, 1])  # class 1 has no readable name
    pooled, targets = torch.randn(6, 5, dtype=torch.float64), torch.tensor([0, 1, 2, 3, 1, 0])
    def unchanged(inputs, states):  # no layer to shape: the names' states as cached
        return states

    names_cached = ({"attention_mask": mask}, states, rows)
    got = _name_alignment_loss(unchanged, names_cached, pooled, targets, 20.0, "mean")
    names = [states[j, : int(mask[j].sum())].mean(0) for j in range(3)]
    terms = []
    for feature, target in zip(pooled, targets.tolist()):
        if rows[target] == IGNORE_INDEX:
            continue
        logits = torch.stack([20.0 * torch.cosine_similarity(feature, name, dim=0) for name in names])
        terms.append(-torch.log_softmax(logits, 0)[rows[target]])
    torch.testing.assert_close(got, torch.stack(terms).mean())
    unnamed = _name_alignment_loss(unchanged, names_cached, pooled, torch.tensor([1, 1]), 20.0, "mean")
    assert unnamed.item() == 0.0


def name_margin(backbone, tokenizer, texts, labels, names):
    """Mean over classes of (cosine of a name to its own class mean − its best cosine to another class mean)."""
    unit = torch.nn.functional.normalize(pooled(backbone, tokenizer, texts), dim=-1)
    labels = torch.as_tensor(labels)
    means = torch.nn.functional.normalize(torch.stack([unit[labels == c].mean(0) for c in range(len(names))]), dim=-1)
    cos = torch.nn.functional.normalize(pooled(backbone, tokenizer, names), dim=-1) @ means.T
    own = cos.diagonal()
    return float((own - cos.masked_fill(torch.eye(len(names), dtype=torch.bool), -2).max(1).values).mean())


def test_shaping_with_the_names_puts_each_name_where_its_class_lies(tokenizer, caplog):
    data = intent_data(tokenizer)
    texts, labels = list(data["text"]), list(data["label"])
    names = ["paris", "london", "acme", "john", "mary", "union"]  # each class's texts start with its name
    margins = {}
    for aligned in (False, True):
        backbone = encoder("bert", len(tokenizer))
        with caplog.at_level("INFO", logger="hf_adapter_ext.meta.shaping"):
                shape_encoder(backbone, tokenizer, texts, labels, top_layers=2, epochs=30, learning_rate=3e-3,
                          batch_size=16, class_names=dict(enumerate(names)) if aligned else None)
        margins[aligned] = name_margin(backbone, tokenizer, texts, labels, names)
    assert margins[True] > margins[False] + 0.2, margins
    assert "Shaping with the label names" in caplog.text


def test_names_that_say_nothing_leave_shaping_as_it_was(tokenizer):
    data = intent_data(tokenizer)
    texts, labels = list(data["text"]), list(data["label"])
    results = [shape_encoder(encoder("bert", len(tokenizer)), tokenizer, texts, labels, top_layers=1, epochs=2,
                             class_names=names)
               for names in (None, {c: str(c) for c in range(6)}, [" _ "] * 6)]
    assert all(got == results[0] for got in results[1:])
    assert results[0].name_agreement is None and not results[0].names_aligned


@pytest.mark.parametrize("use_label_names, shape_with_label_names", [(True, True), (False, True), (True, False)])
def test_the_trainer_shapes_with_the_datasets_label_names_only_for_a_model_that_reads_them(
        tmp_path, tokenizer, monkeypatch, use_label_names, shape_with_label_names):
    seen = {}
    monkeypatch.setattr(modeling, "shape_encoder", lambda *a, class_names=None, **kw: seen.update(names=class_names)
                        or ShapingResult([0.0]))
    data = intent_data(tokenizer).filter(lambda r: r["label"] < 3)
    model = SIBForFewShotClassification(SIBConfig(n_way=3, use_label_names=use_label_names),
                                        backbone=encoder("bert", len(tokenizer)))
    args = meta_args(tmp_path, shape_top_layers=1, shape_with_label_names=shape_with_label_names)
    SemiSupervisedMetaTrainer(model=model, args=args, train_dataset=data, processing_class=tokenizer).shape_backbone()
    expected = [f"intent_{c}" for c in range(6)] if use_label_names and shape_with_label_names else None
    assert seen["names"] == expected


def test_names_listed_by_class_id_shape_as_names_keyed_by_it(tokenizer):
    data = intent_data(tokenizer)
    texts, labels = list(data["text"]), list(data["label"])
    names = ["paris", "london", "acme", "john", "mary", "union"]
    losses = [shape_encoder(encoder("bert", len(tokenizer)), tokenizer, texts, labels, top_layers=1, epochs=2,
                            class_names=given).losses for given in (names, dict(enumerate(names)), None)]
    assert losses[0] == losses[1] != losses[2]


def test_names_that_point_to_other_classes_are_not_aligned(tokenizer, caplog):
    data = intent_data(tokenizer)
    texts, labels = list(data["text"]), list(data["label"])
    swapped = ["london", "acme", "john", "mary", "union", "paris"]  # each class named after its neighbour
    with caplog.at_level("INFO", logger="hf_adapter_ext.meta.shaping"):
        results = [shape_encoder(encoder("bert", len(tokenizer)), tokenizer, texts, labels, top_layers=1, epochs=2,
                                 class_names=names) for names in (swapped, None)]
    assert results[0].losses == results[1].losses
    assert results[0].name_agreement < NAME_AGREEMENT and not results[0].names_aligned
    assert "Shaping without the label names" in caplog.text
    forced = shape_encoder(encoder("bert", len(tokenizer)), tokenizer, texts, labels, top_layers=1, epochs=2,
                           class_names=swapped, min_name_agreement=0.0)
    assert forced.losses != results[1].losses and forced.names_aligned


@pytest.mark.parametrize("names, aligned", [(["paris", "london", "acme", "john", "mary", "union"], True),
                                           (["london", "acme", "john", "mary", "union", "paris"], False)])
def test_the_saved_model_and_its_card_say_whether_shaping_aligned_the_names(tmp_path, tokenizer, names, aligned):
    data = intent_data(tokenizer)
    model = SIBForFewShotClassification(SIBConfig(n_way=3), backbone=encoder("bert", len(tokenizer)))
    result = model.shape_backbone(tokenizer, list(data["text"]), list(data["label"]), top_layers=1, epochs=1,
                                  class_names=names)
    assert result.names_aligned is aligned
    model.save_pretrained(tmp_path)
    reloaded = SIBForFewShotClassification.from_pretrained(tmp_path)
    assert reloaded.config.shaped_with_label_names is aligned
    assert reloaded.config.shaped_name_agreement == pytest.approx(result.name_agreement)
    card = (tmp_path / "README.md").read_text()
    share = f"{100 * result.name_agreement:.0f}%"
    expected = (f"shaped to put each meta-training class's name where its examples lie ({share}" if aligned else
                f"shaped without them: only {share} of the meta-training classes' names")
    assert expected in card


def test_a_model_shaped_without_names_says_nothing_about_them():
    card = SIBForFewShotClassification(SIBConfig(n_way=3, shaped_layers=2), backbone=encoder("bert", 100)).model_card()
    assert "top 2 layers shaped" in card and "pointed to their own class" not in card


def test_name_agreement_counts_the_names_nearest_to_their_own_class():
    means = torch.eye(3)
    names = torch.tensor([[1.0, 0.1, 0.0], [0.0, 0.0, 1.0]])  # class 0's name, then class 2's (class 1 unnamed)
    assert name_agreement(names, torch.tensor([0, IGNORE_INDEX, 1]), means) == 1.0
    assert name_agreement(names, torch.tensor([1, IGNORE_INDEX, 0]), means) == 0.0
