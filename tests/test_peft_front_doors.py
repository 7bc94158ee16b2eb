"""PEFT's and transformers' front doors, given a neural adapter, either work or point to ours (never KeyError)."""

import pytest
import torch

from hf_adapter_ext import NeuralAdapterConfig, get_adapter_model

from .conftest import NEW_LABELS, tiny_source

POINTER = r"get_adapter_model.*NeuralAdapterModel\.from_pretrained"


@pytest.fixture
def saved(tmp_path, tokenizer):
    source_dir, adapter_dir = tmp_path / "source", tmp_path / "adapter"
    source = tiny_source("bert", tokenizer.vocab_size)
    source.save_pretrained(source_dir)
    model = get_adapter_model(source, NeuralAdapterConfig(new_labels=NEW_LABELS,
                                                          base_model_name_or_path=str(source_dir)))
    model.save_pretrained(adapter_dir)
    return source_dir, adapter_dir


def test_get_peft_model_points_to_get_adapter_model(tokenizer):
    from peft import get_peft_model

    with pytest.raises(ValueError, match=POINTER):
        get_peft_model(tiny_source("bert", tokenizer.vocab_size), NeuralAdapterConfig(new_labels=NEW_LABELS))


def test_peft_model_from_pretrained_points_to_ours(saved, tokenizer):
    from peft import PeftModel

    with pytest.raises(ValueError, match=POINTER):
        PeftModel.from_pretrained(tiny_source("bert", tokenizer.vocab_size), str(saved[1]))


def test_auto_peft_model_points_to_ours(saved):
    from peft import AutoPeftModelForTokenClassification

    with pytest.raises(ValueError, match=POINTER):
        AutoPeftModelForTokenClassification.from_pretrained(str(saved[1]))


def test_transformers_auto_class_on_an_adapter_folder_points_to_ours(saved):
    from transformers import AutoModelForTokenClassification

    with pytest.raises(ValueError, match=POINTER):
        AutoModelForTokenClassification.from_pretrained(str(saved[1]))


def test_everyday_peft_names(tokenizer, capsys):
    source = tiny_source("bert", tokenizer.vocab_size)
    model = get_adapter_model(source, NeuralAdapterConfig(new_labels=NEW_LABELS)).eval()
    model.print_trainable_parameters()
    assert "trainable params:" in capsys.readouterr().out
    assert model.get_base_model() is source
    ids = torch.randint(5, 90, (2, 7))
    model.has_trained = True
    with torch.no_grad(), model.disable_adapter():
        old = model(input_ids=ids).logits
    assert model.has_trained, "disabling the adapter for a while must not forget that the model was trained"
    with torch.no_grad():
        new = model(input_ids=ids).logits
        expected = source(input_ids=ids).logits
    assert torch.equal(old, expected) and new.shape[-1] == old.shape[-1] + len(NEW_LABELS)


def test_the_extended_model_is_a_composite_pretrained_model(tokenizer):
    """save/load/push, checkpointing, device and dtype come from transformers' mixin; its own state is what trains."""
    from transformers import PreTrainedModel

    from hf_adapter_ext import NeuralAdapterModel

    assert issubclass(NeuralAdapterModel, PreTrainedModel)
    for name in ("activation_checkpointing_enable", "gradient_checkpointing_enable", "device", "dtype",
                 "num_parameters"):
        assert getattr(NeuralAdapterModel, name) is getattr(PreTrainedModel, name), name
    source = tiny_source("bert", tokenizer.vocab_size)
    model = get_adapter_model(source, NeuralAdapterConfig(new_labels=NEW_LABELS, target="frozen"))
    assert model.device == torch.device("cpu") and model.dtype == torch.float32
    assert not any(key.startswith("source.") for key in model.state_dict())
    with pytest.raises(ValueError, match=r"does not take PEFT adapters.*from_pretrained"):
        model.load_adapter("some/peft-adapter")
    # PEFT's and transformers' names that cannot apply say what does, instead of an AttributeError or
    # transformers' "set_input_embeddings not auto-handled"
    with pytest.raises(ValueError, match=r"cannot be merged into the source's weights.*model.consolidate"):
        model.merge_and_unload()
    with pytest.raises(ValueError, match=r"Resize the source before extending it"):
        model.resize_token_embeddings(tokenizer.vocab_size + 8)


def test_every_entry_point_of_transformers_peft_integration_refuses_or_switches(tokenizer):
    """The class, not the instances: each public method of transformers' `PeftAdapterMixin` (which every
    `PreTrainedModel` inherits) refuses by name, or, for disable_adapters / enable_adapters, switches between the
    source's outputs and the extension's, as it does for a model with PEFT adapters. delete_adapter used to ask for
    a newer PEFT."""
    from transformers.integrations.peft import PeftAdapterMixin

    source = tiny_source("bert", tokenizer.vocab_size)
    model = get_adapter_model(source, NeuralAdapterConfig(new_labels=NEW_LABELS, target="frozen")).eval()
    public = [name for name, value in vars(PeftAdapterMixin).items() if callable(value) and not name.startswith("_")]
    switches = {"disable_adapters", "enable_adapters"}
    assert switches <= set(public) and len(public) > len(switches)
    for name in sorted(set(public) - switches):
        with pytest.raises(ValueError, match=rf"PEFT integration \({name}\).*NeuralAdapterModel.from_pretrained"):
            getattr(model, name)("some/peft-adapter")
    ids = torch.tensor([[2, 10, 11, 3]])
    with torch.no_grad():
        extended = model(input_ids=ids).logits
        model.disable_adapters()
        disabled = model(input_ids=ids).logits
        model.enable_adapters()
        enabled = model(input_ids=ids).logits
        expected = source(input_ids=ids).logits
    assert torch.equal(disabled, expected) and torch.equal(enabled, extended)
    assert extended.shape[-1] == expected.shape[-1] + len(NEW_LABELS)
