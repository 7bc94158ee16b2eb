"""Bad inputs across the library, table-driven: each is either handled correctly (the case asserts it) or
refused with a ValueError / TypeError (FileNotFoundError for a missing file) whose message names the argument,
file or line and says what to do. Never silent, never an error from deep inside torch."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pytest
import torch
from datasets import ClassLabel, Dataset, Features, Value
from datasets import Sequence as SequenceFeature

from hf_adapter_ext import (
    CRF,
    MetaTrainingArguments,
    NeuralAdapterConfig,
    NeuralAdapterModel,
    SemiSupervisedMetaTrainer,
    SIBConfig,
    SIBForFewShotClassification,
    add_rehearsal,
    get_adapter_model,
)
from hf_adapter_ext.bio import bio_allowed_transitions
from hf_adapter_ext.data import (
    conll_dataset,
    load_ner_files,
    read_conll,
    read_sentences,
    relabel_to_outside,
    rename_types,
    with_label_order,
)
from hf_adapter_ext.meta import EpisodeSampler, TokenEpisodeSampler
from hf_adapter_ext.meta.episodes import read_fewnerd_episodes

from .conftest import NEW_LABELS, build_tokenizer, tiny_source
from .helpers import toy_dataset

TOKENIZER = build_tokenizer()
WORK = Path(tempfile.mkdtemp(prefix="bad_inputs_"))
LABELS = ["O", "B-A", "I-A"]


def source():
    return tiny_source("bert", TOKENIZER.vocab_size)


def model(**config):
    return get_adapter_model(source(), NeuralAdapterConfig(new_labels=NEW_LABELS, **config)).eval()


def batch(length=6, size=2):
    return {"input_ids": torch.randint(5, 90, (size, length)), "attention_mask": torch.ones(size, length, dtype=torch.long)}


def call(m, **overrides):
    return m(**{**batch(), **overrides})


def saved_adapter(edit=None, remove=None, add=None) -> Path:
    folder = Path(tempfile.mkdtemp(dir=WORK))
    model().save_pretrained(folder)
    if edit:
        config = json.loads((folder / "adapter_config.json").read_text())
        config.update(edit)
        (folder / "adapter_config.json").write_text(json.dumps(config))
    if remove:
        (folder / remove).unlink()
    if add:
        (folder / add[0]).write_bytes(add[1])
    return folder


def text_file(content: bytes | str, name="data.txt") -> Path:
    path = Path(tempfile.mkdtemp(dir=WORK)) / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def crf(n=3, bio=False):
    return CRF.for_labels(LABELS[:n], bio) if bio else CRF(n)


def sib(n_way=3, **config):
    from transformers import BertConfig, BertModel

    backbone = BertModel(BertConfig(vocab_size=TOKENIZER.vocab_size, hidden_size=16, num_hidden_layers=1,
                                    num_attention_heads=2, intermediate_size=32), add_pooling_layer=False)
    return SIBForFewShotClassification(SIBConfig(n_way=n_way, **config), backbone=backbone)


def sib_head_only_reload():
    sib().save_pretrained(WORK / "sib_head_only")  # a frozen backbone built in memory has no name to reload from
    return SIBForFewShotClassification.from_pretrained(WORK / "sib_head_only")


def episode(**overrides):
    g = torch.Generator().manual_seed(0)
    base = {"support_features": torch.randn(1, 3, 16, generator=g), "support_labels": torch.tensor([[0, 1, 2]]),
            "query_features": torch.randn(1, 6, 16, generator=g), "query_labels": torch.tensor([[0, 1, 2, 0, 1, 2]])}
    return {**base, **overrides}


def intents(classes=4, per_class=3):
    features = Features({"text": Value("string"), "label": ClassLabel(names=[f"c{i}" for i in range(classes)])})
    return Dataset.from_dict({"text": [f"john paris {i}" for i in range(classes * per_class)],
                              "label": [i // per_class for i in range(classes * per_class)]}, features=features)


def meta_args(**kw):
    return MetaTrainingArguments(**{"output_dir": str(WORK / "meta"), "k_shot": 1, "n_query": 1,
                                    "report_to": "none", "use_cpu": True, **kw})


# ---------------------------------------------------------------- "handled" cases assert and return
def bom_docstart_is_not_a_sentence():
    path = text_file("\ufeff-DOCSTART- O\n\nJohn B-PER\n")
    assert read_conll(path) == [{"tokens": ["John"], "tags": ["B-PER"]}]


def left_and_right_padding_decode_the_same():
    c = crf(3)
    e = torch.randn(1, 4, 3)
    right = c.decode(torch.cat([e, torch.zeros(1, 2, 3)], 1), torch.tensor([[1, 1, 1, 1, 0, 0]]))
    left = c.decode(torch.cat([torch.zeros(1, 2, 3), e], 1), torch.tensor([[0, 0, 1, 1, 1, 1]]))
    assert right[0, :4].tolist() == left[0, 2:].tolist() and (right[0, 4:] == -100).all()


def empty_row_decodes_to_ignore():
    assert (crf().decode(torch.randn(2, 3, 3), torch.tensor([[0, 0, 0], [1, 1, 1]]))[0] == -100).all()


def zero_length_crf():
    assert crf().neg_log_likelihood(torch.zeros(1, 0, 3), torch.zeros(1, 0, dtype=torch.long)).item() == 0


def float_mask_is_read_as_attention():
    e = torch.randn(1, 3, 3)
    assert crf().decode(e, torch.tensor([[1.0, 1.0, 0.0]]))[0, :2].tolist() == crf().decode(e[:, :2])[0].tolist()


def half_emissions_are_computed_in_float32():
    out = crf().neg_log_likelihood(torch.randn(1, 4, 3).half(), torch.zeros(1, 4, dtype=torch.long))
    assert out.dtype == torch.float16 and torch.isfinite(out)


def lora_target_modules_as_regex_string():
    assert NeuralAdapterConfig(new_labels=NEW_LABELS, lora_target_modules=".*query").lora_target_modules == ".*query"


def new_labels_tuple_is_accepted():
    assert NeuralAdapterConfig(new_labels=("B-LOC", "I-LOC")).new_labels == ["B-LOC", "I-LOC"]


def nan_on_padding_is_ignored():
    e = torch.randn(1, 4, 3)
    e[0, 3] = float("nan")
    assert torch.isfinite(crf().neg_log_likelihood(e, torch.zeros(1, 4, dtype=torch.long), torch.tensor([[1, 1, 1, 0]])))


def int32_labels_are_accepted():
    m = model()
    m.train()
    out = call(m, labels=torch.zeros(2, 6, dtype=torch.int32))
    assert torch.isfinite(out.loss)


def all_ignored_labels_give_zero_loss():
    m = model(head="linear").train()
    assert call(m, labels=torch.full((2, 6), -100)).loss.item() == 0


def push_to_hub_passes_hub_arguments(monkeypatch=None):
    from unittest import mock

    with mock.patch("hf_adapter_ext.hub.HfApi") as api:
        api.return_value.create_repo.return_value.repo_id = "me/x"
        api.return_value.upload_folder.return_value.pr_url = "https://hf.co/me/x/discussions/1"
        url = model().push_to_hub("me/x", create_pr=True, commit_message="m", commit_description="d",
                                  private=True, revision="dev", token="t")
    kwargs = api.return_value.upload_folder.call_args.kwargs
    assert url.endswith("/1") and kwargs["create_pr"] is True and kwargs["revision"] == "dev"
    assert kwargs["commit_message"] == "m" and kwargs["commit_description"] == "d"
    assert api.call_args.kwargs["token"] == "t" and api.return_value.create_repo.call_args.kwargs["private"] is True


def legacy_checkpoint(m) -> Path:
    """A Trainer checkpoint as hf_adapter_ext 0.1 wrote it: the whole model (source included), no config."""
    from safetensors.torch import save_file
    from torch import nn

    folder = Path(tempfile.mkdtemp(dir=WORK))
    save_file({k: v.contiguous() for k, v in nn.Module.state_dict(m).items()}, str(folder / "model.safetensors"))
    return folder


def trainer_checkpoint_loads_with_its_config():
    m = model()
    folder = legacy_checkpoint(m)
    loaded = NeuralAdapterModel.from_pretrained(source(), folder, config=NeuralAdapterConfig(new_labels=NEW_LABELS))
    x = batch()
    assert torch.equal(loaded(**x).logits, m(**x).logits)


def few_nerd_episode_ok():
    line = {"support": {"word": [["a", "b"]], "label": [["O", "x"]]},
            "query": {"word": [["c"]], "label": [["x"]]}, "types": ["x"]}
    sentences, episodes = read_fewnerd_episodes(text_file(json.dumps(line) + "\n"))
    assert len(sentences) == 2 and len(episodes) == 1


def banking77_with_a_byte_order_mark():
    folder = text_file("\ufefftext,category\nhi,a\nyo,b\n", "train.csv").parent
    (folder / "test.csv").write_text("text,category\nhey,a\n")
    from hf_adapter_ext.data import load_banking77

    pool, _ = load_banking77(folder)
    assert pool["text"] == ["hi", "yo", "hey"]


def csv_cells_are_read_as_written():
    """NA, 007, 1e5, TRUE are words, not a missing value, a number or a boolean."""
    words = ["NA", "007", "1e5", "TRUE", "null"]
    data = load_ner_files({"train": text_file(("tokens,ner_tags\n" + " ".join(words) + ",O O O O O\n").encode(),
                                               "cells.csv")})
    assert data["train"][0]["tokens"] == words


def rename_to_outside_drops_the_type():
    renamed = rename_types(_types_data(), {"PER": "O"})
    assert "B-O" not in renamed.features["ner_tags"].feature.names
    names = renamed.features["ner_tags"].feature.names
    assert [names[t] for t in renamed[0]["ner_tags"]] == ["O", "B-ORG"]


def consolidate_tokenizes_a_text_dataset_and_leaves_args_alone():
    from transformers import TrainingArguments

    m = model(adapter="mlp", head="linear")
    m.has_trained = True
    args = TrainingArguments(output_dir=str(WORK / "c"), num_train_epochs=1, report_to="none", save_strategy="no",
                             use_cpu=True, disable_tqdm=True)
    plain = m.consolidate(toy_dataset(TOKENIZER), TOKENIZER, args=args,
                          unlabelled=Dataset.from_dict({"text": ["John met Mary .", "Acme rose ."]}))
    assert plain.consolidation_report["unlabelled_examples"] == 2
    assert args.remove_unused_columns is True


HANDLED = [csv_cells_are_read_as_written, rename_to_outside_drops_the_type,
           consolidate_tokenizes_a_text_dataset_and_leaves_args_alone, bom_docstart_is_not_a_sentence, left_and_right_padding_decode_the_same, empty_row_decodes_to_ignore,
           zero_length_crf, float_mask_is_read_as_attention, half_emissions_are_computed_in_float32,
           lora_target_modules_as_regex_string, new_labels_tuple_is_accepted,
           nan_on_padding_is_ignored, int32_labels_are_accepted, all_ignored_labels_give_zero_loss,
           push_to_hub_passes_hub_arguments, trainer_checkpoint_loads_with_its_config, few_nerd_episode_ok,
           banking77_with_a_byte_order_mark]

E = (ValueError, TypeError)
C = NeuralAdapterConfig
REFUSED = [
    # ---- NeuralAdapterConfig, on construction
    ("config new_labels str", lambda: C(new_labels="B-LOC"), TypeError, r"new_labels.*list"),
    ("config new_labels ints", lambda: C(new_labels=[1, 2]), TypeError, r"new_labels"),
    ("config new_labels None", lambda: C(new_labels=None), TypeError, r"new_labels"),
    ("config target", lambda: C(new_labels=NEW_LABELS, target="Copy"), ValueError, r"target.*choose"),
    ("config adapter", lambda: C(new_labels=NEW_LABELS, adapter="lstm"), ValueError, r"adapter.*choose"),
    ("config head", lambda: C(new_labels=NEW_LABELS, head="softmax"), ValueError, r"head.*choose"),
    ("config trainable", lambda: C(new_labels=NEW_LABELS, trainable="some"), ValueError, r"trainable"),
    ("config annotation", lambda: C(new_labels=NEW_LABELS, annotation="partial"), ValueError, r"annotation"),
    ("config hidden 0", lambda: C(new_labels=NEW_LABELS, adapter_hidden_size=0), ValueError, r"adapter_hidden_size"),
    ("config hidden str", lambda: C(new_labels=NEW_LABELS, adapter_hidden_size="64"), TypeError, r"adapter_hidden_size"),
    ("config hidden float", lambda: C(new_labels=NEW_LABELS, adapter_hidden_size=64.5), TypeError, r"adapter_hidden_size"),
    ("config hidden bool", lambda: C(new_labels=NEW_LABELS, adapter_hidden_size=True), TypeError, r"adapter_hidden_size"),
    ("config top layers -1", lambda: C(new_labels=NEW_LABELS, num_top_layers=-1), ValueError, r"num_top_layers"),
    ("config bio str", lambda: C(new_labels=NEW_LABELS, bio_constraints="false"), TypeError, r"bio_constraints"),
    ("config bio int", lambda: C(new_labels=NEW_LABELS, bio_constraints=0), TypeError, r"bio_constraints"),
    ("config temperature 0", lambda: C(new_labels=NEW_LABELS, distill_temperature=0), ValueError, r"distill_temperature"),
    ("config temperature nan", lambda: C(new_labels=NEW_LABELS, distill_temperature=float("nan")), ValueError,
     r"distill_temperature"),
    ("config weight -1", lambda: C(new_labels=NEW_LABELS, distill_weight=-1.0), ValueError, r"distill_weight"),
    ("config weight inf", lambda: C(new_labels=NEW_LABELS, distill_weight=float("inf")), ValueError, r"distill_weight"),
    ("config weight str", lambda: C(new_labels=NEW_LABELS, distill_weight="1"), TypeError, r"distill_weight"),
    ("config lora_r str", lambda: C(new_labels=NEW_LABELS, lora_r="8"), TypeError, r"lora_r"),
    ("config lora_r 0", lambda: C(new_labels=NEW_LABELS, lora_r=0), ValueError, r"lora_r"),
    ("config lora_alpha 0", lambda: C(new_labels=NEW_LABELS, lora_alpha=0), ValueError, r"lora_alpha"),
    ("config lora_dropout 1.5", lambda: C(new_labels=NEW_LABELS, lora_dropout=1.5), ValueError, r"lora_dropout"),
    ("config lora modules ints", lambda: C(new_labels=NEW_LABELS, lora_target_modules=[1]), TypeError,
     r"lora_target_modules"),
    ("config old_labels str", lambda: C(new_labels=NEW_LABELS, old_labels="O"), TypeError, r"old_labels"),
    ("config metrics list", lambda: C(new_labels=NEW_LABELS, metrics=[1]), TypeError, r"metrics"),
    ("config signature str", lambda: C(new_labels=NEW_LABELS, source_signature="x"), TypeError, r"source_signature"),
    # ---- adapter_config.json on load
    ("file bio 'false'", lambda: NeuralAdapterModel.from_pretrained(source(), saved_adapter({"bio_constraints": "false"})),
     ValueError, r"adapter_config.json.*bio_constraints"),
    ("file lora_r '8'", lambda: NeuralAdapterModel.from_pretrained(source(), saved_adapter({"lora_r": "8"})),
     ValueError, r"adapter_config.json.*lora_r"),
    ("file new_labels str", lambda: NeuralAdapterModel.from_pretrained(source(), saved_adapter({"new_labels": "B-LOC"})),
     ValueError, r"adapter_config.json.*new_labels"),
    ("file target bad", lambda: NeuralAdapterModel.from_pretrained(source(), saved_adapter({"target": "x"})),
     ValueError, r"adapter_config.json.*target"),
    ("file unknown field", lambda: NeuralAdapterModel.from_pretrained(source(), saved_adapter({"foo": 1})),
     ValueError, r"unknown fields \['foo'\]"),
    ("file peft_type", lambda: NeuralAdapterModel.from_pretrained(source(), saved_adapter({"peft_type": "LORA"})),
     ValueError, r"peft_type"),
    ("file old_labels differ", lambda: NeuralAdapterModel.from_pretrained(source(), saved_adapter(
        {"old_labels": ["O", "B-X", "I-X"]})), ValueError, r"trained on a source with labels"),
    ("file config missing", lambda: NeuralAdapterModel.from_pretrained(source(), saved_adapter(
        remove="adapter_config.json")), ValueError, r"adapter_config.json is missing"),
    ("file weights missing", lambda: NeuralAdapterModel.from_pretrained(source(), saved_adapter(
        remove="adapter_model.safetensors")), ValueError, r"adapter_model.safetensors is missing"),
    ("file weights corrupt", lambda: NeuralAdapterModel.from_pretrained(source(), saved_adapter(
        add=("adapter_model.safetensors", b"garbage"))), ValueError, r"not a readable safetensors"),
    ("file pickle present", lambda: NeuralAdapterModel.from_pretrained(source(), saved_adapter(
        add=("pytorch_model.bin", b"x"))), ValueError, r"pickle"),
    ("file config not json", lambda: NeuralAdapterModel.from_pretrained(source(), saved_adapter(
        add=("adapter_config.json", b"{oops"))), ValueError, r"not valid JSON"),
    ("file config a list", lambda: NeuralAdapterModel.from_pretrained(source(), saved_adapter(
        add=("adapter_config.json", b"[1]"))), ValueError, r"peft_type"),
    ("missing local folder", lambda: NeuralAdapterModel.from_pretrained(source(), "./no/such/adapter"), ValueError,
     r"not an existing folder"),
    ("missing folder Path", lambda: NeuralAdapterModel.from_pretrained(source(), WORK / "nope"), ValueError,
     r"not an existing folder"),
    ("missing source folder", lambda: NeuralAdapterModel.from_pretrained("./no/such/tagger", saved_adapter()),
     ValueError, r"The source model: ./no/such/tagger is not an existing folder"),
    ("offline hub id", lambda: NeuralAdapterModel.from_pretrained(source(), "someone/absent-adapter"), ValueError,
     r"neither a local folder nor a Hub repo"),
    ("adapter path is a file", lambda: NeuralAdapterModel.from_pretrained(
        source(), saved_adapter() / "adapter_config.json"), ValueError, r"is a file"),
    ("adapter path int", lambda: NeuralAdapterModel.from_pretrained(source(), 3), TypeError, r"folder path"),
    ("trainer checkpoint without config", lambda: NeuralAdapterModel.from_pretrained(
        source(), legacy_checkpoint(model())), ValueError, r"Trainer checkpoint.*0\.1.*config="),
    ("checkpoint with its own config given another", lambda: NeuralAdapterModel.from_pretrained(
        source(), saved_adapter(), config=C(new_labels=NEW_LABELS)), ValueError, r"drop config="),
    ("checkpoint config wrong type", lambda: NeuralAdapterModel.from_pretrained(
        source(), saved_adapter(remove="adapter_config.json", add=("model.safetensors", b"")), config={"x": 1}),
     TypeError, r"NeuralAdapterConfig"),
    # ---- get_adapter_model
    ("config not ours", lambda: get_adapter_model(source(), {"new_labels": NEW_LABELS}), ValueError,
     r"NeuralAdapterConfig"),
    ("source is a string", lambda: get_adapter_model("bert-base", C(new_labels=NEW_LABELS)), TypeError,
     r"from_pretrained"),
    ("source None", lambda: get_adapter_model(None, C(new_labels=NEW_LABELS)), TypeError, r"token-classification"),
    ("source without labels", lambda: get_adapter_model(tiny_source(labels=[f"LABEL_{i}" for i in range(3)]),
                                                        C(new_labels=NEW_LABELS)), ValueError, r"id2label"),
    ("new label exists", lambda: get_adapter_model(source(), C(new_labels=["B-PER", "I-PER"])), ValueError,
     r"already exist"),
    ("new labels empty", lambda: get_adapter_model(source(), C(new_labels=[])), ValueError, r"empty"),
    ("new labels duplicated", lambda: get_adapter_model(source(), C(new_labels=["B-LOC", "B-LOC"])), ValueError,
     r"more than once"),
    ("new label not BIO", lambda: get_adapter_model(source(), C(new_labels=["LOC"])), ValueError, r"BIO"),
    ("orphan I- label", lambda: get_adapter_model(source(), C(new_labels=["I-LOC"])), ValueError, r"B-LOC"),
    ("too many top layers", lambda: get_adapter_model(source(), C(new_labels=NEW_LABELS, trainable="top",
                                                                  num_top_layers=5)), ValueError, r"num_top_layers=5"),
    ("source with LoRA", lambda: get_adapter_model(model(target="lora").source, C(new_labels=["B-X", "I-X"])),
     ValueError, r"LoRA"),
    # ---- forward inputs
    ("labels float", lambda: call(model().train(), labels=torch.zeros(2, 6)), TypeError, r"labels.*int64"),
    ("labels list", lambda: call(model().train(), labels=[[0] * 6] * 2), TypeError, r"labels"),
    ("labels wrong shape", lambda: call(model().train(), labels=torch.zeros(2, 5, dtype=torch.long)), ValueError,
     r"labels.*shape \(2, 5\)"),
    ("labels 1-D", lambda: call(model().train(), labels=torch.zeros(12, dtype=torch.long)), ValueError, r"labels"),
    ("labels out of range", lambda: call(model().train(), labels=torch.full((2, 6), 9)), ValueError, r"Label id 9"),
    ("labels negative", lambda: call(model().train(), labels=torch.full((2, 6), -3)), ValueError, r"Label id -3"),
    ("labels out of range linear", lambda: call(model(head="linear").train(), labels=torch.full((2, 6), 11)),
     ValueError, r"Label id 11"),
    ("source_logits wrong labels", lambda: call(model(), source_logits=torch.zeros(2, 6, 5)), ValueError,
     r"source_logits.*\(2, 6, 7\)"),
    ("source_logits wrong length", lambda: call(model(), source_logits=torch.zeros(2, 4, 7)), ValueError,
     r"source_logits"),
    ("source_logits int", lambda: call(model(), source_logits=torch.zeros(2, 6, 7, dtype=torch.long)), TypeError,
     r"source_logits.*float"),
    ("source_logits list", lambda: call(model(), source_logits=[[0.0]]), TypeError, r"source_logits"),
    ("no inputs", lambda: model()(attention_mask=torch.ones(1, 3)), ValueError, r"exactly one of input_ids"),
    ("ids and embeds", lambda: call(model(), inputs_embeds=torch.zeros(2, 6, 32)), ValueError, r"exactly one"),
    ("input_ids float", lambda: call(model(), input_ids=torch.zeros(2, 6)), TypeError, r"input_ids.*integer"),
    ("input_ids 1-D", lambda: model()(input_ids=torch.tensor([5, 6, 7])), ValueError, r"batch dimension"),
    ("input_ids past vocab", lambda: call(model(), input_ids=torch.full((2, 6), 10_000)), ValueError,
     r"vocabulary"),
    ("input_ids negative", lambda: call(model(), input_ids=torch.full((2, 6), -1)), ValueError, r"vocabulary"),
    ("input length 0", lambda: model()(input_ids=torch.zeros(1, 0, dtype=torch.long)), ValueError, r"length 0"),
    ("attention_mask shape", lambda: call(model(), attention_mask=torch.ones(2, 5)), ValueError,
     r"attention_mask.*\(2, 6\)"),
    ("NaN weights CRF eval", lambda: call(_nan_weights(model())), ValueError, r"NaN"),
    ("NaN embeds CRF eval", lambda: model()(inputs_embeds=torch.full((1, 3, 32), float("nan"))), ValueError, r"NaN"),
    # ---- CRF
    ("CRF(0)", lambda: CRF(0), ValueError, r"num_labels"),
    ("CRF(-2)", lambda: CRF(-2), ValueError, r"num_labels"),
    ("CRF(2.5)", lambda: CRF(2.5), ValueError, r"num_labels"),
    ("CRF('3')", lambda: CRF("3"), ValueError, r"num_labels"),
    ("CRF(True)", lambda: CRF(True), ValueError, r"num_labels"),
    ("CRF allowed shape", lambda: CRF(3, torch.ones(2, 2, dtype=torch.bool)), ValueError, r"allowed"),
    ("CRF allowed dtype", lambda: CRF(3, torch.ones(3, 3)), ValueError, r"allowed.*bool"),
    ("CRF start shape", lambda: CRF(3, None, torch.ones(2, dtype=torch.bool)), ValueError, r"allowed_start"),
    ("CRF emissions 2-D", lambda: crf().decode(torch.zeros(3, 3)), ValueError, r"\[batch, length, 3\]"),
    ("CRF emissions labels", lambda: crf().decode(torch.zeros(1, 3, 4)), ValueError, r"\[batch, length, 3\]"),
    ("CRF emissions int", lambda: crf().decode(torch.zeros(1, 3, 3, dtype=torch.long)), TypeError, r"floating"),
    ("CRF emissions list", lambda: crf().decode([[[0.0] * 3]]), TypeError, r"floating"),
    ("CRF mask shape", lambda: crf().decode(torch.zeros(2, 3, 3), torch.ones(1, 3)), ValueError,
     r"attention_mask.*\(2, 3\)"),
    ("CRF mask 3-D", lambda: crf().decode(torch.zeros(2, 3, 3), torch.ones(2, 3, 1)), ValueError, r"attention_mask"),
    ("CRF nll mask shape", lambda: crf().neg_log_likelihood(torch.zeros(2, 3, 3), torch.zeros(2, 3, dtype=torch.long),
                                                           torch.ones(2, 4)), ValueError, r"attention_mask"),
    ("CRF tags shape", lambda: crf().neg_log_likelihood(torch.zeros(2, 3, 3), torch.zeros(2, 4, dtype=torch.long)),
     ValueError, r"labels have shape \(2, 4\)"),
    ("CRF tags float", lambda: crf().neg_log_likelihood(torch.zeros(1, 3, 3), torch.zeros(1, 3)), TypeError,
     r"integer"),
    ("CRF tags range", lambda: crf().neg_log_likelihood(torch.zeros(1, 2, 3), torch.tensor([[0, 7]])), ValueError,
     r"Label id 7"),
    ("CRF tags -5", lambda: crf().neg_log_likelihood(torch.zeros(1, 2, 3), torch.tensor([[0, -5]])), ValueError,
     r"Label id -5"),
    ("CRF NaN emissions decode", lambda: crf().decode(torch.full((1, 2, 3), float("nan"))), ValueError, r"NaN"),
    ("CRF inf emissions decode", lambda: crf().decode(torch.full((1, 2, 3), float("inf"))), ValueError, r"NaN or inf"),
    ("CRF NaN transitions", lambda: _nan_crf().decode(torch.zeros(1, 2, 3)), ValueError, r"transitions"),
    ("CRF marginals mask shape", lambda: crf().marginals(torch.zeros(2, 3, 3), torch.ones(2, 2)), ValueError,
     r"attention_mask"),
    # ---- readers
    ("conll not utf-8", lambda: read_conll(text_file(b"John B-PER\nM\xfcller B-PER\n")), ValueError,
     r"data.txt:2: .*UTF-8"),
    ("conll missing file", lambda: read_conll(WORK / "absent.txt"), FileNotFoundError, r"absent.txt does not exist"),
    ("conll folder", lambda: read_conll(WORK), ValueError, r"is a folder"),
    ("conll one column", lambda: read_conll(text_file("John\n")), ValueError, r"data.txt:1"),
    ("conll ragged columns", lambda: read_conll(text_file("John NNP B-PER\nSmith I-PER\n")), ValueError,
     r"data.txt:2"),
    ("conll unknown tag", lambda: conll_dataset(text_file("John B-XYZ\n"), labels=["O", "B-PER", "I-PER"]),
     ValueError, r"B-XYZ"),
    ("conll odd tag scheme", lambda: conll_dataset(text_file("John PERSON\n")), ValueError, r"PERSON.*look like IO tags"),
    ("rename unknown type", lambda: __import__("hf_adapter_ext.data", fromlist=["rename_types"]).rename_types(
        conll_dataset(text_file("John B-PER\n")), {"person": "PER"}), ValueError, r"\['person'\]"),
    ("conll empty", lambda: conll_dataset(text_file("\n\n")), ValueError, r"no sentences"),
    ("conll bad scheme", lambda: conll_dataset(text_file("John B-PER\n"), scheme="bio"), ValueError, r"scheme"),
    ("conll iob1 as iob2", lambda: conll_dataset(text_file("John I-PER\n"), scheme="iob2"), ValueError, r"IOB1"),
    ("relabel unknown type", lambda: relabel_to_outside(conll_dataset(text_file("John B-PER\n")), "XYZ"),
     ValueError, r"XYZ"),
    ("episodes fewer labels", lambda: read_fewnerd_episodes(text_file(json.dumps(
        {"support": {"word": [["a", "b"]], "label": [["O"]]}, "query": {"word": [["c"]], "label": [["x"]]},
         "types": ["x"]}))), ValueError, r"2 words but 1 labels"),
    ("episodes missing key", lambda: read_fewnerd_episodes(text_file(json.dumps({"support": {}}))), ValueError,
     r"data.txt:1: not a Few-NERD episode"),
    ("episodes not json", lambda: read_fewnerd_episodes(text_file("{oops\n")), ValueError, r"data.txt:1"),
    ("episodes empty", lambda: read_fewnerd_episodes(text_file("\n")), ValueError, r"no episodes"),
    ("episodes not utf-8", lambda: read_fewnerd_episodes(text_file(b"\xff\xfe{}\n")), ValueError, r"UTF-8"),
    # ---- SIB model
    ("SIBConfig n_way 1", lambda: SIBConfig(n_way=1), ValueError, r"n_way"),
    ("SIBConfig n_way str", lambda: SIBConfig(n_way="5"), TypeError, r"n_way"),
    ("SIBConfig steps -1", lambda: SIBConfig(inner_steps=-1), ValueError, r"inner_steps"),
    ("SIBConfig steps float", lambda: SIBConfig(inner_steps=1.5), TypeError, r"inner_steps"),
    ("SIBConfig lr 0", lambda: SIBConfig(inner_lr=0.0), ValueError, r"inner_lr"),
    ("SIBConfig lr str", lambda: SIBConfig(inner_lr="0.1"), TypeError, r"inner_lr"),
    ("SIBConfig lr nan", lambda: SIBConfig(inner_lr=float("nan")), ValueError, r"inner_lr"),
    ("SIBConfig level", lambda: SIBConfig(level="word"), ValueError, r"level"),
    ("SIBConfig pooling", lambda: SIBConfig(pooling="max"), ValueError, r"pooling"),
    ("SIBConfig bool str", lambda: SIBConfig(support_gradient="no"), TypeError, r"support_gradient"),
    ("SIBConfig multiplier 0", lambda: SIBConfig(grad_net_multiplier=0), ValueError, r"grad_net_multiplier"),
    ("SIB feature_dim mismatch", lambda: sib(feature_dim=99), ValueError, r"feature_dim=99"),
    ("SIB support label range", lambda: sib(grad_net="fixed")(**episode(support_labels=torch.tensor([[0, 1, 5]]))),
     ValueError, r"support_labels.*5"),
    ("SIB query label range", lambda: sib(grad_net="fixed")(**episode(query_labels=torch.tensor([[0, 1, 2, 0, 1, 9]]))),
     ValueError, r"query_labels.*9"),
    ("SIB query label without support", lambda: sib()(**episode(query_labels=torch.tensor([[0, 1, 2, 0, 1, 9]]))),
     ValueError, r"labelled class 9, which has no labelled support example"),
    ("SIB negative support label", lambda: sib()(**episode(support_labels=torch.tensor([[0, 1, -2]]))), ValueError,
     r"support_labels holds class id -2"),
    ("SIB empty query set", lambda: sib()(**episode(query_labels=torch.full((1, 6), -100))), ValueError,
     r"no labelled query"),
    ("SIB feature dim", lambda: sib()(**episode(query_features=torch.randn(1, 6, 8))), ValueError,
     r"query features.*16"),
    ("SIB support labels shape", lambda: sib()(**episode(support_labels=torch.tensor([[0, 1]]))), ValueError,
     r"support_labels must be"),
    ("SIB query labels shape", lambda: sib()(**episode(query_labels=torch.tensor([[0, 1, 2]]))), ValueError,
     r"query_labels must be"),
    ("banking77 not utf-8", lambda: _banking_with(b"text,category\ncaf\xe9,a\n"), ValueError, r"train.csv:2"),
    ("clinc150 bad json", lambda: _clinc_with(b"{oops"), ValueError, r"data_full.json:1"),
    ("SIB no features", lambda: sib()(support_labels=torch.tensor([[0, 1, 2]])), ValueError, r"\*_features"),
    ("SIB adapt class missing", lambda: sib().adapt(torch.randn(3, 16), [0, 2, 2], torch.randn(4, 16)), ValueError,
     r"no example of class\(es\) \[1\]"),
    ("SIB fixed adapt class missing", lambda: sib(grad_net="fixed").adapt(torch.randn(3, 16), [0, 1, 1],
                                                                          torch.randn(4, 16)), ValueError,
     r"no example of class\(es\) \[2\]"),
    ("SIB adapt label count", lambda: sib().adapt(torch.randn(3, 16), [0, 1], torch.randn(4, 16)), ValueError,
     r"one class id per support example"),
    ("SIB adapt empty query", lambda: sib().adapt(torch.randn(3, 16), [0, 1, 2], torch.randn(0, 16)), ValueError,
     r"query set is empty"),
    ("SIB adapt texts no tokenizer", lambda: sib().adapt(["a", "b", "c"], [0, 1, 2], ["d"]), ValueError,
     r"tokenizer"),
    # ---- samplers
    ("sampler too few classes", lambda: EpisodeSampler([0, 0, 1, 1], [0, 1], 3, 1, 1), ValueError, r"3-way"),
    ("sampler short class", lambda: EpisodeSampler([0, 1, 1, 2, 2], [0, 1, 2], 3, 1, 1), ValueError,
     r"fewer than k_shot \+ n_query = 2 examples: \{0: 1\}.*too few even for k_shot=1"),
    ("sampler short classes", lambda: EpisodeSampler([0] * 5 + [1] * 9 + [2] * 20, [0, 1, 2], 3, 1, 15), ValueError,
     r"2 class\(es\) have fewer than k_shot \+ n_query = 16 examples: \{0: 5, 1: 9\}.*n_query=4 fits every class"),
    ("token sampler too few types", lambda: TokenEpisodeSampler([["x"]], ["x"], 2, 1), ValueError, r"2-way"),
    # ---- meta trainer
    ("meta args n_way", lambda: meta_args(n_way=3), TypeError, r"n_way"),  # SIBConfig's alone
    ("SIB without a backbone", lambda: SIBForFewShotClassification(SIBConfig(n_way=3)), ValueError,
     r"from_backbone_pretrained"),
    ("SIB config of another kind", lambda: SIBForFewShotClassification(model().config), ValueError, r"SIBConfig"),
    ("SIBConfig backbone not a config", lambda: SIBConfig(backbone="bert"), TypeError, r"backbone"),
    ("SIB head reloaded without its backbone", sib_head_only_reload, ValueError, r"pass backbone="),
    ("meta trainer wrong columns", lambda: SemiSupervisedMetaTrainer(sib(), meta_args(), eval_dataset=intents(
        ).rename_column("text", "utterance"), processing_class=TOKENIZER), ValueError, r"lacks columns \['text'\]"),
    ("meta args k_shot 0", lambda: meta_args(k_shot=0), ValueError, r"k_shot"),
    ("meta args n_query 0", lambda: meta_args(n_query=0), ValueError, r"n_query"),
    ("meta trainer plain args", lambda: SemiSupervisedMetaTrainer(sib(), MetaTrainingArguments.__mro__[1](
        output_dir=str(WORK), report_to="none")), ValueError, r"MetaTrainingArguments"),
    ("meta trainer empty data", lambda: SemiSupervisedMetaTrainer(sib(), meta_args(), train_dataset=intents().select(
        [])), ValueError, r"empty"),
    ("meta trainer list of dicts", lambda: SemiSupervisedMetaTrainer(sib(), meta_args(), train_dataset=[
        {"text": "a", "label": 0}], processing_class=TOKENIZER), ValueError, r"must be a datasets.Dataset"),
    ("meta trainer no tokenizer", lambda: SemiSupervisedMetaTrainer(sib(), meta_args(), train_dataset=intents()),
     ValueError, r"processing_class"),
    ("meta trainer too few classes", lambda: SemiSupervisedMetaTrainer(sib(), meta_args(max_train_ways=None),
                                                                       train_dataset=intents(classes=2),
                                                                       processing_class=TOKENIZER), ValueError,
     r"train dataset holds 2 classes, fewer than n_way=3"),
    ("meta eval too few classes for a fixed net", lambda: SemiSupervisedMetaTrainer(
        sib(grad_net="fixed"), meta_args(), eval_dataset=intents(classes=2), processing_class=TOKENIZER), ValueError,
     r"eval dataset holds 2 classes, fewer than n_way=3"),  # an equivariant net is scored 2-way
    # ---- hub
    ("push unknown argument", lambda: model().push_to_hub("me/x", shard_size="1GB"), TypeError, r"shard_size"),
    ("push empty repo id", lambda: model().push_to_hub(""), ValueError, r"repo_id"),
    # ---- BIO helpers
    ("bio transitions of non-BIO", lambda: _bio_of_plain(), None, None),
    # ---- label hierarchy (label_parents) and rehearsal text
    ("parent not an old type", lambda: model(label_parents={"LOC": "GPE"}), ValueError, r"'GPE'.*not a type of the source"),
    ("parent itself new", lambda: parents_model({"politician": "LOC"}), ValueError, r"'LOC'.*itself a new type"),
    ("parents cycle", lambda: parents_model({"politician": "LOC", "LOC": "politician"}), ValueError, r"cycle"),
    ("subtype is an old label", lambda: model(label_parents={"PER": "ORG"}), ValueError, r"'PER' is already an old type"),
    ("subtype not new", lambda: model(label_parents={"band": "ORG"}), ValueError, r"'band' is not one of the new types"),
    ("parents string malformed", lambda: NeuralAdapterConfig(new_labels=NEW_LABELS, label_parents="LOC:PER"), ValueError,
     r"subtype=parent"),
    ("parents wrong type", lambda: NeuralAdapterConfig(new_labels=NEW_LABELS, label_parents={"LOC": 3}), TypeError,
     r"label_parents"),
    ("rehearsal empty list", lambda: rehearse([]), ValueError, r"rehearsal text is empty"),
    ("rehearsal blank lines", lambda: rehearse(["", "   "]), ValueError, r"rehearsal text is empty"),
    ("rehearsal one string", lambda: rehearse("John Smith lives in Paris ."), TypeError, r"list of sentences"),
    ("rehearsal ids", lambda: rehearse([[5, 6, 7]]), TypeError, r"not token ids"),
    ("rehearsal other tokenizer", lambda: rehearse(_other_tokenizer_rows()), ValueError,
     r"not made by this model's tokenizer"),
    ("rehearsal dataset without tokens or text", lambda: rehearse(Dataset.from_dict({"sentence": ["a b"]})),
     ValueError, r"'tokens' column \(word lists\) or a 'text' column"),  # a 'text' column is read as sentences
    ("rehearsal untokenized train", lambda: add_rehearsal(Dataset.from_dict({"tokens": [["a"]]}), ["John Smith"],
                                                          model(), TOKENIZER), ValueError, r"tokenize it first"),
    ("rehearsal on a plain model", lambda: add_rehearsal(toy_dataset(TOKENIZER), ["John"], source(), TOKENIZER),
     TypeError, r"extended model"),
    ("rehearsal flags wrong size", lambda: model().train()(**{**batch(), "labels": torch.zeros(2, 6, dtype=torch.long),
                                                           "rehearsal": torch.ones(3)}), ValueError, r"one flag per row"),
    # ---- the model's label order on data
    ("data tag the model lacks", lambda: with_label_order(Dataset.from_dict(
        {"ner_tags": [[0, 1]]}, features=Features({"ner_tags": SequenceFeature(ClassLabel(names=["O", "B-X"]))})),
        ["O", "B-PER"]), ValueError, r"\['B-X'\].*new_labels"),
    ("ner files none", lambda: load_ner_files({"train": None}), ValueError, r"training file"),
    ("ner files missing", lambda: load_ner_files({"train": WORK / "nope.txt"}), FileNotFoundError, r"nope.txt"),
    ("ner files mixed formats", lambda: load_ner_files({"train": text_file(b"a O\n", "a.txt"),
                                                        "test": text_file(b"{}", "b.jsonl")}), ValueError, r"mix formats"),
    ("ner jsonl wrong columns", lambda: load_ner_files({"train": text_file(b'{"w": ["a"], "t": ["O"]}\n', "c.jsonl")}),
     ValueError, r"tokens_column"),
    ("ner jsonl length mismatch", lambda: load_ner_files({"train": text_file(
        b'{"tokens": ["a", "b"], "ner_tags": ["O"]}\n', "d.jsonl")}), ValueError, r"2 words but 1 tags"),
    ("ner jsonl tag ids", lambda: load_ner_files({"train": text_file(b'{"tokens": ["a"], "ner_tags": [0]}\n',
                                                                      "e.jsonl")}), ValueError, r"non-string tags"),
    ("ner csv length mismatch", lambda: load_ner_files({"train": text_file(b"tokens,ner_tags\na b,O\n", "f.csv")}),
     ValueError, r"2 words but 1 tags"),
    # ---- silent before: each now refused where it enters
    ("parents BIO parent", lambda: parents_model({"politician": "B-PER"}), ValueError, r"'B-PER' is a BIO label.*'PER'"),
    ("parents BIO child", lambda: parents_model({"B-politician": "PER"}), ValueError, r"is a BIO label"),
    ("rehearsal dict sentence", lambda: rehearse(["John lives here .", {"text": "a dict"}]), TypeError,
     r"sentence 1 is a dict"),
    ("rehearsal number sentence", lambda: rehearse(["John lives here .", 7]), TypeError, r"sentence 1 is a int"),
    ("rename to empty", lambda: rename_types(_types_data(), {"PER": ""}), ValueError, r"not an entity type name"),
    ("rename to BIO label", lambda: rename_types(_types_data(), {"PER": "B-X"}), ValueError, r"without B-/I-"),
    ("rename to spaced", lambda: rename_types(_types_data(), {"PER": "a b"}), ValueError, r"no spaces"),
    ("rename to non-string", lambda: rename_types(_types_data(), {"PER": 3}), ValueError, r"entity type name"),
    ("sib queries bare string", lambda: sib().predict_labels({"a": ["x"], "b": ["y"], "c": ["z"]}, "paris",
                                                           TOKENIZER), ValueError, r"list of sentences.*per character"),
    ("sib inner_steps negative", lambda: sib()(**episode(), inner_steps=-1), ValueError, r"inner_steps=-1"),
    ("sib inner_steps float", lambda: sib()(**episode(), inner_steps=1.5), TypeError, r"whole number"),
    ("sib inner_steps bool", lambda: sib()(**episode(), inner_steps=True), TypeError, r"whole number"),
    ("read_sentences limit 0", lambda: read_sentences(text_file("a b\n"), 0), ValueError, r"limit=0 is out of range"),
    ("read_sentences empty file", lambda: read_sentences(text_file("\n\n")), ValueError, r"holds no text"),
    ("ner csv empty row", lambda: load_ner_files({"train": text_file(b'tokens,ner_tags\na,O\n"",""\n', "g.csv")}),
     ValueError, r"row 1 is empty"),
    ("consolidate unlabelled Dataset without text", lambda: _consolidate_unlabelled(
        Dataset.from_dict({"sentence": ["a b"]})), ValueError, r"'text' column"),
]


def _types_data():
    return Dataset.from_dict({"tokens": [["John", "Acme"]], "ner_tags": [[1, 3]]}).cast_column(
        "ner_tags", SequenceFeature(ClassLabel(names=["O", "B-PER", "I-PER", "B-ORG", "I-ORG"])))


def _consolidate_unlabelled(unlabelled):
    m = model(adapter="none", head="crf")
    m.has_trained = True
    return m.consolidate(toy_dataset(TOKENIZER), TOKENIZER, unlabelled=unlabelled)


def parents_model(parents):
    return get_adapter_model(source(), NeuralAdapterConfig(new_labels=["B-politician", "I-politician", *NEW_LABELS],
                                                           label_parents=parents))


def rehearse(texts):
    return add_rehearsal(toy_dataset(TOKENIZER), texts, model(), TOKENIZER)


def _other_tokenizer_rows():
    words = [["John", "Smith", "lives", "in", "Paris"]]
    other = {"input_ids": [[2, 40, 41, 42, 43, 44, 3]]}  # ids of some other vocabulary for the same words
    return Dataset.from_dict({"tokens": words, **other})


def _banking_with(content: bytes):
    from hf_adapter_ext.data import load_banking77

    folder = text_file(content, "train.csv").parent
    (folder / "test.csv").write_bytes(content)
    return load_banking77(folder)


def _clinc_with(content: bytes):
    from hf_adapter_ext.data import load_clinc150

    folder = text_file(content, "data_full.json").parent
    (folder / "domains.json").write_text("{}")
    return load_clinc150(folder)


def _nan_weights(m):
    with torch.no_grad():
        m.classifier.weight[0, 0] = float("nan")
    return m


def _nan_crf():
    c = crf()
    with torch.no_grad():
        c.transitions[0, 1] = float("nan")
    return c


def _bio_of_plain():
    allowed, start = bio_allowed_transitions(["O", "PER", "LOC"])  # no I- tags: nothing forbidden
    assert allowed.all() and start.all()


@pytest.mark.parametrize("case", HANDLED, ids=lambda f: f.__name__)
def test_handled(case):
    case()


@pytest.mark.parametrize("name,fn,error,pattern", REFUSED, ids=[c[0] for c in REFUSED])
def test_refused_with_a_clear_message(name, fn, error, pattern):
    if error is None:
        fn()
        return
    with pytest.raises(error, match=pattern):
        fn()


def test_matrix_has_at_least_120_cases():
    assert len(HANDLED) + len(REFUSED) >= 120


def teardown_module():
    shutil.rmtree(WORK, ignore_errors=True)
