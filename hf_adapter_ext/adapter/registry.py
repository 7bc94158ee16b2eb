"""Teach PEFT the "NEURAL_ADAPTER" peft_type so `PeftConfig.from_pretrained(dir)` returns our config.

`peft.register_peft_method` only accepts members of PEFT's own `PeftType` enum, so the string type is
added to the registries it fills. The tuner registry is left alone on purpose: `peft.get_peft_model`
expects a `BaseTuner`; extended models are built with `hf_adapter_ext.get_adapter_model`.
"""

from __future__ import annotations

from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING, PEFT_TYPE_TO_PREFIX_MAPPING
from transformers import AutoModelForTokenClassification, PretrainedConfig

from .config import PEFT_TYPE, NeuralAdapterConfig

PREFIX = "neural_adapter_"


class NeuralAdapterModelConfig(PretrainedConfig):
    """Placeholder config under which `NeuralAdapterModel` is listed for the token-classification pipeline.

    Extended models keep their source's config (with the extended labels); this class only exists so
    `pipeline("token-classification", model=extended_model)` recognises the model class.
    """

    model_type = "neural_adapter"


def register() -> None:
    PEFT_TYPE_TO_CONFIG_MAPPING.setdefault(PEFT_TYPE, NeuralAdapterConfig)
    PEFT_TYPE_TO_PREFIX_MAPPING.setdefault(PEFT_TYPE, PREFIX)
    from .model import NeuralAdapterModel

    AutoModelForTokenClassification.register(NeuralAdapterModelConfig, NeuralAdapterModel, exist_ok=True)
