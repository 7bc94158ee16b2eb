import pytest
import torch
from transformers import AutoConfig, AutoModelForTokenClassification, TrainingArguments

from hf_adapter_ext import NeuralAdapterConfig, NeuralAdapterModel, get_adapter_model

from .conftest import NEW_LABELS, OLD_LABELS, tiny_source
from .helpers import batch_of, snapshot, toy_dataset

TARGETS = ["copy", "lora", "frozen"]


@pytest.mark.parametrize("arch", ["bert", "roberta", "distilbert", "deberta-v2"])
@pytest.mark.parametrize("target", TARGETS)
def test_every_architecture_and_target_trains_and_keeps_the_source_frozen(tokenizer, arch, target):
    source = tiny_source(arch, tokenizer.vocab_size)
    before = snapshot(source)
    model = get_adapter_model(source, NeuralAdapterConfig(new_labels=NEW_LABELS, target=target))
    batch = batch_of(tokenizer, toy_dataset(tokenizer))
    if arch != "bert":
        batch.pop("token_type_ids", None)
    model.train()
    assert not source.training, "the source must never drop out"
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    for _ in range(2):
        out = model(**batch)
        assert out.logits.shape == (*batch["input_ids"].shape, len(OLD_LABELS) + len(NEW_LABELS))
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    # LoRA wraps source layers in place: their own weights move under `.base_layer`, unchanged
    after = {k.replace(".base_layer", ""): v for k, v in snapshot(source).items() if "lora_" not in k}
    assert after.keys() == before.keys()
    for name, value in before.items():
        assert torch.equal(after[name], value), f"source weight {name} changed"
    for name, param in source.named_parameters():
        if "lora_" not in name:
            assert not param.requires_grad and param.grad is None, name


def test_label_space_appends_new_labels_and_starts_from_the_source(tokenizer, source):
    model = get_adapter_model(source, NeuralAdapterConfig(new_labels=NEW_LABELS, head="linear"))
    labels = OLD_LABELS + NEW_LABELS
    assert model.config.num_labels == len(labels)
    assert model.config.id2label == dict(enumerate(labels))
    assert model.config.label2id == {label: i for i, label in enumerate(labels)}
    assert source.config.num_labels == len(OLD_LABELS), "the source's own config is untouched"
    new_rows = model.classifier.weight[len(OLD_LABELS):]
    old_rows = source.classifier.weight
    assert torch.equal(model.classifier.weight[: len(OLD_LABELS)], old_rows)
    assert new_rows.abs().sum() > 0
    # new rows drawn from the old rows' statistics
    assert abs(new_rows.mean() - old_rows.mean()) < 3 * old_rows.std()
    batch = batch_of(tokenizer, toy_dataset(tokenizer))
    batch.pop("labels")
    model.eval()
    with torch.no_grad():
        extended = model(**batch).logits[..., : len(OLD_LABELS)]
        original = source(**batch).logits
    torch.testing.assert_close(extended, original), "before training, old labels score as in the source"


@pytest.mark.parametrize("adapter", ["bilstm", "mlp", "none"])
@pytest.mark.parametrize("head", ["crf", "linear"])
def test_adapter_and_head_options(tokenizer, source, adapter, head):
    model = get_adapter_model(source, NeuralAdapterConfig(new_labels=NEW_LABELS, adapter=adapter, head=head))
    assert (model.adapter is None) == (adapter == "none")
    assert (model.crf is None) == (head == "linear")
    batch = batch_of(tokenizer, toy_dataset(tokenizer))
    out = model.train()(**batch)
    out.loss.backward()
    if adapter != "none":
        assert model.adapter.proj.weight.grad.abs().sum() > 0
    if head == "crf":
        assert model.crf.transitions.grad.abs().sum() > 0


def test_trainable_top_trains_only_the_top_layer_and_head(source):
    model = get_adapter_model(source, NeuralAdapterConfig(new_labels=NEW_LABELS, trainable="top"))
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert any(name.startswith("target_encoder.encoder.layer.1.") for name in trainable)
    assert not any(name.startswith("target_encoder.encoder.layer.0.") for name in trainable)
    assert not any(name.startswith("target_encoder.embeddings") for name in trainable)
    assert {"classifier.weight", "crf.transitions"} <= trainable
    all_model = get_adapter_model(tiny_source(), NeuralAdapterConfig(new_labels=NEW_LABELS, trainable="all"))
    assert all_model.trainable_parameters()[0] > model.trainable_parameters()[0]


MODERNBERT = {"pad_token_id": 0, "bos_token_id": 2, "eos_token_id": 3, "cls_token_id": 2, "sep_token_id": 3,
              "global_attn_every_n_layers": 1, "local_attention": 8}  # the test tokenizer's special token ids


def tiny_config(model_type: str, vocab_size: int = 60, **extra):
    return AutoConfig.for_model(model_type, vocab_size=vocab_size, hidden_size=16, num_hidden_layers=2,
                                num_attention_heads=2, intermediate_size=32, id2label=dict(enumerate(OLD_LABELS)),
                                label2id={label: i for i, label in enumerate(OLD_LABELS)}, **extra)


ARCHITECTURES = {"bert": {}, "roberta": {}, "xlm-roberta": {}, "camembert": {}, "electra": {"embedding_size": 16},
                 "albert": {"embedding_size": 16}, "deberta": {}, "deberta-v2": {}, "mpnet": {}, "modernbert": MODERNBERT,
                 "longformer": {"attention_window": [4, 4]},
                 "distilbert": {"n_layers": 2, "dim": 16, "n_heads": 2, "hidden_dim": 32}}


@pytest.mark.parametrize("model_type", ["distilbert", "deberta-v2", "mpnet", "modernbert"])
def test_a_lora_extension_of_other_encoder_families_consolidates_into_a_plain_model_of_the_source_s_class(
        model_type, tokenizer, tmp_path):
    torch.manual_seed(0)
    config = tiny_config(model_type, vocab_size=len(tokenizer), **ARCHITECTURES[model_type])
    model = get_adapter_model(AutoModelForTokenClassification.from_config(config),
                              NeuralAdapterConfig(new_labels=NEW_LABELS, target="lora"))
    model.has_trained = True  # the head as built: consolidation itself is what is checked
    plain = model.consolidate(toy_dataset(tokenizer), tokenizer, args=TrainingArguments(
        output_dir=str(tmp_path), max_steps=2, report_to="none", disable_tqdm=True, save_strategy="no"))
    assert type(plain) is type(model.source) and plain.config.num_labels == len(model.config.id2label)
    plain.save_pretrained(tmp_path / "plain")
    ids = torch.tensor([toy_dataset(tokenizer)[0]["input_ids"]])
    with torch.no_grad():
        torch.testing.assert_close(AutoModelForTokenClassification.from_pretrained(tmp_path / "plain")(ids).logits,
                                   plain.eval()(ids).logits, atol=0, rtol=0)


@pytest.mark.parametrize("model_type", list(ARCHITECTURES))
def test_every_target_builds_trains_reloads_and_scores_a_sentence_as_in_a_padded_batch(model_type, tmp_path):
    """The general case: encoders of every common family as the source, not only BERT."""
    ids = torch.randint(5, 60, (2, 7), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0
    for target in TARGETS:
        torch.manual_seed(0)
        source = AutoModelForTokenClassification.from_config(tiny_config(model_type, **ARCHITECTURES[model_type]))
        model = get_adapter_model(source, NeuralAdapterConfig(new_labels=NEW_LABELS, target=target))
        model(input_ids=ids, attention_mask=mask, labels=torch.zeros_like(ids).masked_fill(mask == 0, -100)
              ).loss.backward()
        model.eval().save_pretrained(tmp_path / target)
        with torch.no_grad():
            batch = model(input_ids=ids, attention_mask=mask).emissions
            alone = model(input_ids=ids[1:, :5], attention_mask=mask[1:, :5]).emissions
        torch.testing.assert_close(batch[1, :5], alone[0], atol=1e-5, rtol=1e-5)
        torch.manual_seed(0)
        fresh = AutoModelForTokenClassification.from_config(tiny_config(model_type, **ARCHITECTURES[model_type]))
        with torch.no_grad():
            reloaded = NeuralAdapterModel.from_pretrained(fresh, tmp_path / target).eval()(
                input_ids=ids, attention_mask=mask).emissions
        torch.testing.assert_close(reloaded, batch, atol=0, rtol=0)


@pytest.mark.parametrize(("model_type", "projections", "extra"), [("mpnet", ("q", "v"), {}),
                                                                  ("modernbert", ("Wqkv",), MODERNBERT)])
def test_lora_finds_the_attention_projections_of_encoders_peft_has_no_default_for(model_type, projections, extra):
    """PEFT's table has no LoRA targets for MPNet or ModernBERT: a lora target was refused for them."""
    source = AutoModelForTokenClassification.from_config(tiny_config(model_type, **extra))
    model = get_adapter_model(source, NeuralAdapterConfig(new_labels=NEW_LABELS, target="lora"))
    wrapped = {name.split(".lora_")[0].rsplit(".", 1)[-1] for name, p in model.named_parameters()
               if "lora_" in name and p.requires_grad}
    assert wrapped == set(projections)


def test_lora_top_wraps_the_top_layer_of_a_stack_at_the_encoder_s_root():
    """ModernBERT keeps its layers at the encoder's root (``layers.<i>``), where PEFT's layers_to_transform
    pattern found none and refused."""
    source = AutoModelForTokenClassification.from_config(tiny_config("modernbert", **MODERNBERT))
    model = get_adapter_model(source, NeuralAdapterConfig(new_labels=NEW_LABELS, target="lora", trainable="top"))
    assert {name.split(".lora_")[0] for name, p in model.named_parameters() if "lora_" in name} == {
        "source.model.layers.1.attn.Wqkv"}


@pytest.mark.parametrize("target", ["copy", "lora"])
def test_top_layers_are_refused_where_training_them_would_not_train_just_the_top(target):
    """ALBERT runs every pass through one shared layer: its 'top layer' is all of them."""
    source = AutoModelForTokenClassification.from_config(tiny_config("albert", embedding_size=16))
    with pytest.raises(ValueError, match=r"runs 2 layer passes through 1 shared layer"):
        get_adapter_model(source, NeuralAdapterConfig(new_labels=NEW_LABELS, target=target, trainable="top"))


def test_lora_top_only_wraps_the_top_layers(source):
    model = get_adapter_model(source, NeuralAdapterConfig(new_labels=NEW_LABELS, target="lora", trainable="top"))
    lora = [name for name, p in model.named_parameters() if "lora_" in name]
    assert lora and all(".layer.1." in name for name in lora)


def test_frozen_target_trains_only_adapter_and_head(source):
    model = get_adapter_model(source, NeuralAdapterConfig(new_labels=NEW_LABELS, target="frozen"))
    prefixes = {name.split(".")[0] for name, p in model.named_parameters() if p.requires_grad}
    assert prefixes == {"classifier", "adapter", "crf"}


def _train(model, batch, steps=40, lr=0.05, seed=0):
    torch.manual_seed(seed)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    for _ in range(steps):
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return model.eval()


@pytest.mark.parametrize("head", ["linear", "crf"])
def test_new_only_annotation_distills_old_types_instead_of_forgetting(tokenizer, head):
    """Target data with old types relabelled O: distillation keeps the source's old-type predictions."""
    data = toy_dataset(tokenizer, outside_types=("PER", "ORG", "MISC"))
    batch = batch_of(tokenizer, data)
    inputs = {k: v for k, v in batch.items() if k != "labels"}

    def teacher():  # a source that confidently predicts old entities on some tokens
        source = tiny_source(seed=3)
        with torch.no_grad():
            source.classifier.bias.copy_(torch.tensor([0.0, 1.5, 0.5, 1.0, 0.5, 0.2, 0.1]))
        return source

    with torch.no_grad():
        source_pred = teacher()(**inputs).logits.argmax(-1)
    old_entity = (batch["labels"] == 0) & (source_pred > 0)
    assert old_entity.sum() > 5
    kept = {}
    for annotation in ("full", "new_only"):
        config = NeuralAdapterConfig(new_labels=NEW_LABELS, annotation=annotation, head=head, adapter="none")
        model = _train(get_adapter_model(teacher(), config), batch)
        with torch.no_grad():
            pred = model(**inputs).logits.argmax(-1)
        kept[annotation] = (pred[old_entity] == source_pred[old_entity]).float().mean().item()
    assert kept["new_only"] > kept["full"] + 0.3, kept


def test_a_source_crf_is_carried_over_and_new_transitions_start_at_its_mean(source):
    from hf_adapter_ext import CRF

    source.crf = CRF.for_labels(OLD_LABELS)
    with torch.no_grad():
        for param in source.crf.parameters():
            param.normal_()
    model = get_adapter_model(source, NeuralAdapterConfig(new_labels=NEW_LABELS))
    n = len(OLD_LABELS)
    assert torch.equal(model.crf.transitions[:n, :n], source.crf.transitions)
    assert torch.equal(model.crf.start_transitions[:n], source.crf.start_transitions)
    torch.testing.assert_close(model.crf.transitions[n:, :], torch.full((2, n + 2), source.crf.transitions.mean().item()))
    assert not model.crf.allowed[0, n + 1], "O -> I-LOC stays forbidden"


def test_bilstm_adapter_reads_left_padded_rows_like_right_padded_ones():
    from hf_adapter_ext.adapter.layers import BiLSTMAdapter

    torch.manual_seed(0)
    adapter = BiLSTMAdapter(7, 9, 16)
    torch.nn.init.normal_(adapter.proj.weight)
    scores = torch.randn(2, 6, 7)
    right = torch.tensor([[1, 1, 1, 1, 0, 0], [1] * 6])
    left = torch.tensor([[0, 0, 1, 1, 1, 1], [1] * 6])
    shifted = torch.stack([scores[0].roll(2, 0), scores[1]])  # row 0: the same tokens after 2 pads
    out_right, out_left = adapter(scores, right), adapter(shifted, left)
    torch.testing.assert_close(out_left[0, 2:], out_right[0, :4])
    alone = adapter(scores[:1, :4], torch.ones(1, 4, dtype=torch.long))
    torch.testing.assert_close(out_right[0, :4], alone[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("target", ["copy", "lora", "frozen"])
def test_hidden_states_attentions_and_tuples_as_a_transformers_token_classifier(tokenizer, target):
    """output_hidden_states / output_attentions / return_dict mean what they mean for the source's own class: the
    states are those of the encoder the head reads (the target's, the frozen source's for target="frozen").
    Attentions need eager attention, as for the source's own class (sdpa returns none, with transformers' warning)."""
    source = tiny_source("bert", tokenizer.vocab_size)
    source.set_attn_implementation("eager")
    model = get_adapter_model(source, NeuralAdapterConfig(new_labels=NEW_LABELS, target=target)).eval()
    inputs = tokenizer(["John lives in Paris", "Mary"], padding=True, return_tensors="pt")
    labels = torch.zeros_like(inputs["input_ids"]).masked_fill(inputs["attention_mask"] == 0, -100)
    with torch.no_grad():
        out = model(**inputs, labels=labels, output_hidden_states=True, output_attentions=True)
        plain = model(**inputs, labels=labels)
        as_tuple = model(**inputs, labels=labels, return_dict=False)
        encoder = model._trained_encoder()  # the copy, or the source's own encoder (with LoRA on, or frozen)
        expected = encoder(**inputs, output_hidden_states=True).hidden_states
    layers = source.config.num_hidden_layers
    assert len(out.hidden_states) == layers + 1 and len(out.attentions) == layers
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(out.hidden_states, expected, strict=True))
    assert out.attentions[0].shape == (2, source.config.num_attention_heads, *inputs["input_ids"].shape[1:] * 2)
    assert plain.hidden_states is None and plain.attentions is None and torch.equal(plain.logits, out.logits)
    assert isinstance(as_tuple, tuple) and torch.equal(as_tuple[0], plain.loss) and torch.equal(as_tuple[1], plain.logits)


@pytest.mark.parametrize(("dtype", "trains_in"), [(torch.bfloat16, torch.float32), (torch.float16, torch.float32),
                                                   (torch.float64, torch.float64)])
@pytest.mark.parametrize("config", [{}, {"target": "lora"}, {"target": "frozen", "adapter": "mlp"},
                                    {"head": "linear"}, {"adapter": "none"}])
def test_a_source_in_any_precision_stays_so_and_what_trains_is_full_precision(tokenizer, tmp_path, dtype, trains_in,
                                                                               config):
    """A source loaded with torch_dtype=torch.bfloat16 to save memory, or in float64 (both were an RNN dtype error):
    the frozen source keeps its precision, the trained parts are float32 for a half-precision source (as PEFT keeps
    adapter weights) and float64 for a float64 one, the scores are those of the same extension over the source's
    weights in float32, up to the source's rounding; it trains and reloads."""
    def half_source():
        torch.manual_seed(0)
        return tiny_source("bert", tokenizer.vocab_size).to(dtype)

    half = half_source()
    float_twin = half_source().float()  # the same (rounded) weights, in float32
    batch = batch_of(tokenizer, toy_dataset(tokenizer))
    models = {}
    for name, source in (("half", half), ("float", float_twin)):
        torch.manual_seed(1)
        models[name] = get_adapter_model(source, NeuralAdapterConfig(new_labels=NEW_LABELS, **config)).eval()
    model = models["half"]
    assert all(p.dtype == dtype for n, p in half.named_parameters() if "lora_" not in n)
    assert all(p.dtype == trains_in for p in model.parameters() if p.requires_grad)
    with torch.no_grad():
        torch.testing.assert_close(model(**batch).emissions.float(), models["float"](**batch).emissions, atol=0.05,
                                   rtol=0.05)
    _train(model, batch, steps=3)
    model.save_pretrained(tmp_path)
    with torch.no_grad():
        expected = model(**batch).logits
        reloaded = NeuralAdapterModel.from_pretrained(half_source(), tmp_path).eval()(**batch).logits
    assert torch.isfinite(expected).all()
    torch.testing.assert_close(reloaded, expected, atol=0, rtol=0)


@pytest.mark.parametrize("trainable", ["all", "top"])
def test_lora_target_modules_as_a_regex_string_is_read_as_peft_reads_it(tokenizer, tmp_path, trainable):
    """The config documents PEFT's regex string; it was split into characters ({'.', '*', 'q', ...}) and matched
    nothing (or, with one-letter module names such as MPNet's q / v, something else)."""
    source = tiny_source("bert", tokenizer.vocab_size)
    model = get_adapter_model(source, NeuralAdapterConfig(new_labels=NEW_LABELS, target="lora", trainable=trainable,
                                                          lora_target_modules=r".*\.query"))
    wrapped = sorted({name.split(".lora_")[0].rsplit(".", 1)[-1] for name, _ in model.named_parameters()
                      if "lora_" in name})
    layers = sorted({name.split(".layer.")[1].split(".")[0] for name, _ in model.named_parameters() if "lora_" in name})
    assert wrapped == ["query"] and layers == (["0", "1"] if trainable == "all" else ["1"])
    model.eval().save_pretrained(tmp_path)
    batch = batch_of(tokenizer, toy_dataset(tokenizer))
    with torch.no_grad():
        expected = model(**batch).logits
        reloaded = NeuralAdapterModel.from_pretrained(tiny_source("bert", tokenizer.vocab_size), tmp_path).eval()
        torch.testing.assert_close(reloaded(**batch).logits, expected, atol=0, rtol=0)
