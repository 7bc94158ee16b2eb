"""Teach PEFT the "NEURAL_ADAPTER" peft_type so `PeftConfig.from_pretrained(dir)` returns our config.

`peft.register_peft_method` only accepts members of PEFT's own `PeftType` enum, so the string type is
added to the registries it fills. A neural adapter is not a PEFT tuner (it runs a second network beside the
frozen source), so PEFT's front doors (`get_peft_model`, `PeftModel.from_pretrained`,
`AutoPeftModelFor*.from_pretrained`, transformers' `from_pretrained(adapter_dir)`) reach a tuner entry whose
only job is to say which of our functions to call instead of failing with ``KeyError: 'NEURAL_ADAPTER'``.
"""

from __future__ import annotations

from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING, PEFT_TYPE_TO_PREFIX_MAPPING, PEFT_TYPE_TO_TUNER_MAPPING
from transformers import AutoModelForTokenClassification, PretrainedConfig

from .config import PEFT_TYPE, NeuralAdapterConfig

PREFIX = "neural_adapter_"


class NeuralAdapterModelConfig(PretrainedConfig):
    """Placeholder config under which `NeuralAdapterModel` is listed for the token-classification pipeline.

    Extended models keep their source's config (with the extended labels); this class only exists so
    `pipeline("token-classification", model=extended_model)` recognises the model class.
    """

    model_type = "neural_adapter"


FRONT_DOOR_MESSAGE = (
    "A NeuralAdapterConfig describes a neural adapter, which is not a PEFT tuner: it runs a target network beside "
    "the frozen source. Build one with hf_adapter_ext.get_adapter_model(source, config); load a saved one with "
    "hf_adapter_ext.NeuralAdapterModel.from_pretrained(source_or_its_id, adapter_dir) (a consolidated plain "
    "model needs no hf_adapter_ext at all)."
)


class _Refusing(type):
    """PEFT reads a tuner's class attributes before creating one: any of them refuses too."""

    def __getattr__(cls, name):
        raise ValueError(FRONT_DOOR_MESSAGE)


class NeuralAdapterTunerRefusal(metaclass=_Refusing):
    """Stands in PEFT's tuner registry for "NEURAL_ADAPTER" and refuses with directions (see module docstring)."""

    def __init__(self, *args, **kwargs):
        raise ValueError(FRONT_DOOR_MESSAGE)


def register() -> None:
    PEFT_TYPE_TO_CONFIG_MAPPING.setdefault(PEFT_TYPE, NeuralAdapterConfig)
    PEFT_TYPE_TO_PREFIX_MAPPING.setdefault(PEFT_TYPE, PREFIX)
    PEFT_TYPE_TO_TUNER_MAPPING.setdefault(PEFT_TYPE, NeuralAdapterTunerRefusal)
    from .model import NeuralAdapterModel

    AutoModelForTokenClassification.register(NeuralAdapterModelConfig, NeuralAdapterModel, exist_ok=True)
