import json
from pathlib import Path

import pytest
import torch
from huggingface_hub import HfApi, ModelCard
from peft import PeftConfig
from transformers import BertConfig, BertForTokenClassification

from hf_adapter_ext import NeuralAdapterConfig, NeuralAdapterModel, get_adapter_model

from .conftest import NEW_LABELS, OLD_LABELS, tiny_source
from .helpers import batch_of, toy_dataset


def trained(model, batch, steps=3):
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    model.train()
    for _ in range(steps):
        model(**batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return model.eval()


@pytest.mark.parametrize("target", ["copy", "lora", "frozen"])
@pytest.mark.parametrize("trainable", ["all", "top"])
def test_save_and_reload_gives_identical_logits(tmp_path, tokenizer, target, trainable):
    batch = batch_of(tokenizer, toy_dataset(tokenizer))
    config = NeuralAdapterConfig(new_labels=NEW_LABELS, target=target, trainable=trainable)
    model = trained(get_adapter_model(tiny_source(seed=5), config), batch)
    model.save_pretrained(tmp_path, metrics={"new_f1": 0.5})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["README.md", "adapter_config.json",
                                                            "adapter_model.safetensors", "model.safetensors"]
    # Trainer's file name is a hard link to the adapter's weights: the same bytes, stored once
    assert (tmp_path / "model.safetensors").stat().st_ino == (tmp_path / "adapter_model.safetensors").stat().st_ino
    # a freshly loaded source (same weights), as a user would have after a restart
    reloaded = NeuralAdapterModel.from_pretrained(tiny_source(seed=5), tmp_path)
    assert not reloaded.training
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    with torch.no_grad():
        original, restored = model(**inputs), reloaded(**inputs)
    assert torch.equal(original.logits, restored.logits)
    assert torch.equal(original.emissions, restored.emissions)  # the raw scores too, not only the decoded path
    assert isinstance(PeftConfig.from_pretrained(str(tmp_path)), NeuralAdapterConfig)


def test_saved_adapter_is_small_in_frozen_and_lora_modes(tmp_path):
    labels = {"id2label": dict(enumerate(OLD_LABELS)), "label2id": {x: i for i, x in enumerate(OLD_LABELS)}}
    source = BertForTokenClassification(BertConfig(vocab_size=3000, hidden_size=128, num_hidden_layers=4,
                                                   num_attention_heads=4, intermediate_size=512, **labels))
    source_bytes = sum(p.numel() * p.element_size() for p in source.parameters())
    sizes = {}
    for target in ("copy", "lora", "frozen"):
        fresh = BertForTokenClassification(source.config)
        model = get_adapter_model(fresh, NeuralAdapterConfig(new_labels=NEW_LABELS, target=target,
                                                              adapter_hidden_size=16))
        model.save_pretrained(tmp_path / target)
        sizes[target] = (tmp_path / target / "adapter_model.safetensors").stat().st_size / source_bytes
    assert sizes["copy"] > 0.9
    assert sizes["frozen"] < 0.05 and sizes["lora"] < 0.05, sizes


def test_model_card_names_base_model_labels_mode_and_metrics(tmp_path, source):
    source.name_or_path = "acme/ner-per-org-misc"
    model = get_adapter_model(source, NeuralAdapterConfig(new_labels=NEW_LABELS, target="frozen"))
    model.save_pretrained(tmp_path, metrics={"new_f1": 0.875, "old_f1": 0.9})
    card = ModelCard.load(tmp_path / "README.md")
    assert card.data.base_model == "acme/ner-per-org-misc"
    assert card.data.library_name == "hf_adapter_ext"
    assert "token-classification" == card.data.pipeline_tag
    for text in ("PER, ORG, MISC", "LOC", "`frozen`", "0.8750", "new_f1"):
        assert text in card.text, text


def test_push_to_hub_uploads_the_saved_files(monkeypatch, source):
    calls = {}

    def create_repo(self, repo_id, **kwargs):
        calls["create"] = repo_id
        return type("RepoUrl", (), {"repo_id": repo_id})()

    def upload_folder(self, repo_id, folder_path, **kwargs):
        folder = Path(folder_path)
        calls["repo"] = repo_id
        calls["files"] = sorted(p.name for p in folder.iterdir())
        calls["config"] = json.loads((folder / "adapter_config.json").read_text())
        calls["card"] = ModelCard.load(folder / "README.md")
        return type("Commit", (), {"commit_url": f"https://hub/{repo_id}/commit/1"})()

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    model = get_adapter_model(source, NeuralAdapterConfig(new_labels=NEW_LABELS))
    url = model.push_to_hub("me/ner-plus-loc")
    assert url.endswith("/commit/1") and calls["create"] == calls["repo"] == "me/ner-plus-loc"
    assert calls["files"] == ["README.md", "adapter_config.json", "adapter_model.safetensors"]
    assert calls["config"]["peft_type"] == "NEURAL_ADAPTER" and calls["config"]["new_labels"] == NEW_LABELS
    assert calls["card"].data.library_name == "hf_adapter_ext"


def test_save_pretrained_with_push_to_hub_pushes_the_folder_with_its_card(monkeypatch, source, tmp_path):
    """transformers' save_pretrained(push_to_hub=True, ...) was swallowed with every other keyword: nothing was
    uploaded, without a word. Now it pushes (repo id: the folder's name unless given), and a misspelt argument is
    refused."""
    uploads = []
    monkeypatch.setattr(HfApi, "create_repo", lambda self, repo_id, **kw: type("R", (), {"repo_id": repo_id})())

    def upload_folder(self, repo_id, folder_path, commit_message=None, **kwargs):
        uploads.append((repo_id, commit_message, sorted(p.name for p in Path(folder_path).iterdir()),
                        ModelCard.load(Path(folder_path) / "README.md").data.library_name))
        return type("Commit", (), {"commit_url": "https://hub/c/1"})()

    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    model = get_adapter_model(source, NeuralAdapterConfig(new_labels=NEW_LABELS))
    model.save_pretrained(tmp_path / "ner-plus-loc", push_to_hub=True, commit_message="v1",
                          safe_serialization=True)  # Trainer's argument: nothing to do
    model.save_pretrained(tmp_path / "local", push_to_hub=True, repo_id="me/ner")
    model.save_pretrained(tmp_path / "only-local", push_to_hub=False)
    files = ["README.md", "adapter_config.json", "adapter_model.safetensors"]
    assert uploads == [("ner-plus-loc", "v1", files, "hf_adapter_ext"), ("me/ner", "Upload with hf_adapter_ext", files, "hf_adapter_ext")]
    with pytest.raises(TypeError, match=r"unexpected arguments \['safe_serialisation'\]"):
        model.save_pretrained(tmp_path / "typo", safe_serialisation=True)


# ---------------------------------------------------------------- bad input, clear errors
def saved(tmp_path, source=None, **overrides):
    model = get_adapter_model(source or tiny_source(), NeuralAdapterConfig(new_labels=NEW_LABELS, **overrides))
    model.save_pretrained(tmp_path)
    return tmp_path


@pytest.mark.parametrize("keyword, message", [
    ({"dtype": torch.bfloat16}, r"does not take \['dtype'\]: they are the source's loading options"),
    ({"device_map": "cpu"}, r"does not take \['device_map'\]"),
    ({"adapter_nam": "x"}, r"unexpected arguments \['adapter_nam'\].*Hub download arguments"),
])
@pytest.mark.parametrize("where", ["folder", "hub id"])
def test_load_keywords_it_cannot_honour_are_refused(tmp_path, keyword, message, where):
    """They were dropped without a word for a folder (dtype=torch.bfloat16 loaded float32) and failed inside
    snapshot_download for a Hub id."""
    source = tiny_source()
    folder = saved(tmp_path, source) if where == "folder" else "me/ner-plus-loc"
    with pytest.raises(TypeError, match=message):
        NeuralAdapterModel.from_pretrained(source, folder, **keyword)


def test_is_trainable_loads_in_training_mode_as_in_peft(tmp_path):
    source = tiny_source()
    folder = saved(tmp_path, source)
    assert not NeuralAdapterModel.from_pretrained(source, folder).training
    assert NeuralAdapterModel.from_pretrained(source, folder, is_trainable=True).training


@pytest.mark.parametrize("new_labels, message", [
    (["B-PER"], "already exist"),
    (["LOC"], "break the source's BIO scheme"),
    (["I-LOC"], "no matching 'B-' tag"),
    (["B-LOC"], r"no matching 'I-' tag; add \['I-LOC'\]"),
    ([], "empty"),
    (["B-LOC", "B-LOC"], "more than once"),
])
def test_bad_new_labels_are_refused(source, new_labels, message):
    with pytest.raises(ValueError, match=message):
        get_adapter_model(source, NeuralAdapterConfig(new_labels=new_labels))


def test_source_without_label_names_is_refused():
    source = BertForTokenClassification(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1,
                                                   num_attention_heads=2, intermediate_size=16, num_labels=3))
    with pytest.raises(ValueError, match="id2label"):
        get_adapter_model(source, NeuralAdapterConfig(new_labels=NEW_LABELS))


def test_bad_option_values_are_refused():
    with pytest.raises(ValueError, match="target='shared'"):
        NeuralAdapterConfig(new_labels=NEW_LABELS, target="shared")


def test_label_ids_out_of_range_are_refused(tokenizer, source):
    model = get_adapter_model(source, NeuralAdapterConfig(new_labels=NEW_LABELS, head="linear"))
    batch = batch_of(tokenizer, toy_dataset(tokenizer))
    batch["labels"][0, 1] = 42
    with pytest.raises(ValueError, match="Label id 42 is out of range"):
        model(**batch)


def test_loading_onto_a_source_with_other_labels_or_architecture_is_refused(tmp_path):
    folder = saved(tmp_path)
    with pytest.raises(ValueError, match="labels"):
        NeuralAdapterModel.from_pretrained(tiny_source(labels=["O", "B-PER", "I-PER"]), folder)
    with pytest.raises(ValueError, match="architecture"):
        NeuralAdapterModel.from_pretrained(tiny_source("roberta"), folder)


def test_missing_corrupt_or_pickled_files_are_refused(tmp_path):
    folder = saved(tmp_path / "a")
    (folder / "adapter_model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="not a readable safetensors"):
        NeuralAdapterModel.from_pretrained(tiny_source(), folder)
    (folder / "adapter_model.safetensors").unlink()
    with pytest.raises(ValueError, match="missing"):
        NeuralAdapterModel.from_pretrained(tiny_source(), folder)

    folder = saved(tmp_path / "b")
    torch.save({"x": torch.zeros(1)}, folder / "pytorch_model.bin")
    with pytest.raises(ValueError, match="never unpickles"):
        NeuralAdapterModel.from_pretrained(tiny_source(), folder)

    with pytest.raises(ValueError, match="adapter_config.json is missing"):
        NeuralAdapterModel.from_pretrained(tiny_source(), tmp_path)


def test_config_with_unknown_fields_or_wrong_peft_type_is_refused(tmp_path):
    folder = saved(tmp_path)
    path = folder / "adapter_config.json"
    values = json.loads(path.read_text())
    path.write_text(json.dumps({**values, "evil_field": 1}))
    with pytest.raises(ValueError, match="unknown fields \\['evil_field'\\]"):
        NeuralAdapterModel.from_pretrained(tiny_source(), folder)
    path.write_text(json.dumps({**values, "peft_type": "LORA"}))
    with pytest.raises(ValueError, match="peft_type='LORA'"):
        NeuralAdapterModel.from_pretrained(tiny_source(), folder)
    path.write_text("{ not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        NeuralAdapterModel.from_pretrained(tiny_source(), folder)


def test_weights_from_another_config_are_refused(tmp_path):
    folder = saved(tmp_path / "mlp", adapter="mlp")
    other = saved(tmp_path / "bilstm", adapter="bilstm")
    (folder / "adapter_model.safetensors").write_bytes((other / "adapter_model.safetensors").read_bytes())
    with pytest.raises(ValueError, match="does not fit"):
        NeuralAdapterModel.from_pretrained(tiny_source(), folder)


def test_lora_source_reuse_is_refused(source):
    get_adapter_model(source, NeuralAdapterConfig(new_labels=NEW_LABELS, target="lora"))
    with pytest.raises(ValueError, match="already carries PEFT/LoRA layers"):
        get_adapter_model(source, NeuralAdapterConfig(new_labels=NEW_LABELS))


def test_from_pretrained_accepts_a_source_path(tmp_path, tokenizer):
    source_dir = tmp_path / "source"
    tiny_source(seed=4).save_pretrained(source_dir)
    folder = saved(tmp_path / "adapter", source=tiny_source(seed=4), target="frozen")
    model = NeuralAdapterModel.from_pretrained(str(source_dir), folder)
    assert model.config.id2label[len(OLD_LABELS)] == "B-LOC"
    with pytest.raises(ValueError, match=r"is not a saved NeuralAdapterModel but a model \(config.json\)\. The "
                                         r"source comes first, then the adapter's folder"):
        NeuralAdapterModel.from_pretrained(folder, str(source_dir))


def test_from_pretrained_with_the_adapter_alone_loads_the_source_it_names(tmp_path, tokenizer):
    """As PEFT's AutoPeftModel: the adapter's base_model_name_or_path is the source to load."""
    source_dir = tmp_path / "source"
    tiny_source(seed=4).save_pretrained(source_dir)
    source = BertForTokenClassification.from_pretrained(source_dir)
    model = get_adapter_model(source, NeuralAdapterConfig(new_labels=NEW_LABELS)).eval()
    model.save_pretrained(tmp_path / "adapter")
    batch = batch_of(tokenizer, toy_dataset(tokenizer))
    batch.pop("labels")
    reloaded = NeuralAdapterModel.from_pretrained(tmp_path / "adapter")
    assert torch.equal(reloaded(**batch).logits, model(**batch).logits)
    saved(tmp_path / "in_memory", source=tiny_source(seed=4))  # a source built in memory has no name to load
    with pytest.raises(ValueError, match="does not name its source model.*from_pretrained\\(source, "):
        NeuralAdapterModel.from_pretrained(tmp_path / "in_memory")


def test_a_checkpoint_of_version_0_1_is_refused_with_the_conversion_and_converts_exactly(tmp_path, tokenizer):
    """hf_adapter_ext 0.1 Trainer checkpoints held the whole model (source included) in model.safetensors and no
    adapter_config.json: refused with the one-line conversion, which then reproduces the model exactly."""
    from safetensors.torch import save_file
    from torch import nn

    batch = batch_of(tokenizer, toy_dataset(tokenizer))
    config = NeuralAdapterConfig(new_labels=NEW_LABELS, target="frozen")
    model = trained(get_adapter_model(tiny_source(seed=5), config), batch)
    old = tmp_path / "checkpoint-500"
    old.mkdir()
    everything = nn.Module.state_dict(model)  # what Trainer wrote for a plain nn.Module
    save_file({k: v.contiguous() for k, v in everything.items()}, str(old / "model.safetensors"))
    with pytest.raises(ValueError, match=r"hf_adapter_ext 0\.1.*Convert it once.*config="):
        NeuralAdapterModel.from_pretrained(tiny_source(seed=5), old)
    converted = NeuralAdapterModel.from_pretrained(tiny_source(seed=5), old, config=config)
    converted.save_pretrained(tmp_path / "converted")
    reloaded = NeuralAdapterModel.from_pretrained(tiny_source(seed=5), tmp_path / "converted")
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    with torch.no_grad():
        assert torch.equal(reloaded(**inputs).emissions, model(**inputs).emissions)
    with pytest.raises(ValueError, match=r"has its own adapter_config.json; drop config="):
        NeuralAdapterModel.from_pretrained(tiny_source(seed=5), tmp_path / "converted", config=config)


def recorded_hub_uploads(monkeypatch) -> dict:
    """HfApi's repo creation and folder upload, recorded instead of sent: the uploaded folder's model card."""
    calls = {}

    def create_repo(self, repo_id, **kwargs):
        return type("RepoUrl", (), {"repo_id": repo_id})()

    def upload_folder(self, repo_id=None, folder_path=None, **kwargs):
        calls["card"] = ModelCard.load(Path(folder_path) / "README.md")
        return type("Commit", (), {"commit_url": f"https://hub/{repo_id}/commit/1", "oid": "1"})()

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    return calls


def test_trainer_push_to_hub_keeps_the_adapters_own_model_card(monkeypatch, tmp_path, tokenizer, source):
    """TrainingArguments(push_to_hub=True) + trainer.push_to_hub(): Trainer wrote its generic card ("fine-tuned
    version of [](...) on the None dataset", library transformers) over the adapter's."""
    from transformers import TrainingArguments

    from hf_adapter_ext import ExtensionTrainer

    calls = recorded_hub_uploads(monkeypatch)
    model = get_adapter_model(source, NeuralAdapterConfig(new_labels=NEW_LABELS))
    args = TrainingArguments(str(tmp_path), max_steps=1, per_device_train_batch_size=5, report_to=[], use_cpu=True,
                             push_to_hub=True, hub_model_id="me/ner-plus-loc", hub_strategy="end")
    trainer = ExtensionTrainer(model=model, args=args, train_dataset=toy_dataset(tokenizer), processing_class=tokenizer,
                               early_stopping_patience=0)
    trainer.train()
    trainer.push_to_hub(tags=["my-tag"])
    card = calls["card"]
    assert card.data.library_name == "hf_adapter_ext" and "Neural adapter" in card.text
    assert {"neural-adapter", "my-tag"} <= set(card.data.tags)
