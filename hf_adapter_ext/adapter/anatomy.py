"""Finding the parts of an arbitrary `AutoModelForTokenClassification`: encoder, output layer, CRF, layers."""

from __future__ import annotations

import functools
import inspect
from contextlib import contextmanager

from peft.tuners.tuners_utils import BaseTunerLayer
from torch import nn

from ..modeling.crf import CRF


def output_layer_name(model: nn.Module, num_labels: int) -> str:
    """Name of the final ``nn.Linear`` that produces the label scores (``classifier`` in transformers)."""
    candidate = getattr(model, "classifier", None)
    if isinstance(candidate, nn.Linear) and candidate.out_features == num_labels:
        return "classifier"
    names = [name for name, m in model.named_children() if isinstance(m, nn.Linear) and m.out_features == num_labels]
    if len(names) != 1:
        raise ValueError(
            f"Cannot find the output layer of {type(model).__name__}: expected one top-level nn.Linear with "
            f"{num_labels} outputs (usually `classifier`), found {names or 'none'}."
        )
    return names[0]


def encoder_of(model: nn.Module) -> nn.Module:
    """The encoder below the output layer (`model.base_model` for transformers models)."""
    encoder = getattr(model, "base_model", None)
    if encoder is None or encoder is model:
        raise ValueError(
            f"{type(model).__name__} does not expose its encoder as `base_model`; the neural adapter needs a "
            "token-classification model whose encoder returns hidden states."
        )
    return encoder


def crf_of(model: nn.Module) -> CRF | None:
    crf = getattr(model, "crf", None)
    return crf if isinstance(crf, CRF) else None


# Query/value projection names across encoder families (PEFT's LoRA default is query + value): MPNet's q / v;
# ModernBERT fuses all three in Wqkv.
_ATTENTION_PROJECTIONS = (("query", "value"), ("q_lin", "v_lin"), ("query_proj", "value_proj"), ("q_proj", "v_proj"),
                          ("q", "v"), ("Wqkv",))


def attention_projections(encoder: nn.Module) -> list[str]:
    """Names of the query/value projections in ``encoder`` for LoRA, when PEFT has no default for it."""
    names = {name.rsplit(".", 1)[-1] for name, m in encoder.named_modules() if isinstance(m, nn.Linear)}
    for pair in _ATTENTION_PROJECTIONS:
        if set(pair) <= names:
            return list(pair)
    return []


@functools.lru_cache(maxsize=64)
def _forward_parameters(module_type: type) -> frozenset:
    return frozenset(inspect.signature(module_type.forward).parameters)


def accepted_inputs(module: nn.Module, inputs: dict) -> dict:
    """Drop inputs the module's ``forward`` does not take (DistilBERT has no ``token_type_ids``)."""
    params = _forward_parameters(type(module))
    return {k: v for k, v in inputs.items() if v is not None and k in params}


def run_with_outputs(module: nn.Module, inputs: dict, hidden: bool, attentions: bool):
    """``module`` on the ``inputs`` it takes (`accepted_inputs`), with its hidden states if ``hidden``; its
    attentions are asked for only when wanted, since modules without attention (a BiLSTM-CRF source) do not take
    ``output_attentions``."""
    asked = {"output_attentions": True} if attentions else {}
    return module(**accepted_inputs(module, inputs), output_hidden_states=hidden, **asked)


def tuner_layers(module: nn.Module) -> list:
    return [m for m in module.modules() if isinstance(m, BaseTunerLayer)]


@contextmanager
def lora_disabled(layers: list):
    """Temporarily switch off the given PEFT tuner layers (the source pass in `lora` mode)."""
    trainable = {p: p.requires_grad for layer in layers for p in layer.parameters()}
    for layer in layers:
        layer.enable_adapters(False)
    try:
        yield
    finally:
        for layer in layers:
            layer.enable_adapters(True)  # PEFT marks adapter weights trainable here; restore the flags
        for param, flag in trainable.items():
            param.requires_grad_(flag)


@contextmanager
def explained_overlong_input(config, length: int):
    """Turn the error a transformer raises deep inside its embeddings when an input is longer than its position
    embeddings ("The expanded size of the tensor (2002) must match ...") into one that says so and what to do.
    Only errors raised with such an input are reworded: a model that takes longer inputs never gets here."""
    try:
        yield
    except (RuntimeError, IndexError) as err:
        limit = getattr(config, "max_position_embeddings", None)
        if limit is None or length <= limit - 2:  # RoBERTa-style position ids start after the padding id: limit - 2
            raise
        raise ValueError(
            f"The input is {length} tokens long, but this model's position embeddings cover at most {limit} "
            "(max_position_embeddings), and the model failed on it. Truncate when tokenizing (truncation=True, "
            "max_length=...), or tag long texts in overlapping windows: pipeline(..., stride=128, "
            f"aggregation_strategy='first'), whose windows are the tokenizer's model_max_length long: set "
            f"tokenizer.model_max_length = {limit} if it is larger or unset."
        ) from err


def is_tuner_layer(module: nn.Module) -> bool:
    return isinstance(module, BaseTunerLayer)


def has_tuner_layers(module: nn.Module) -> bool:
    return bool(tuner_layers(module))


def signature(model: nn.Module) -> dict:
    """Facts that must match between the source an adapter was trained on and the one it is loaded onto."""
    config = model.config
    return {
        "architecture": type(model).__name__,
        "model_type": getattr(config, "model_type", None),
        "hidden_size": getattr(config, "hidden_size", getattr(config, "dim", None)),
        # LoRA weights injected in `lora` mode live inside the source but are not part of it.
        "num_parameters": sum(p.numel() for name, p in model.named_parameters() if "lora_" not in name),
    }
