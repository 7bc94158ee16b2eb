"""`NeuralAdapterConfig`: a `peft.PeftConfig` describing how a token classifier is extended."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Literal

from peft import PeftConfig
from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING

from ..modeling.tags import entity_types

PEFT_TYPE = "NEURAL_ADAPTER"
FRONT_DOOR_MESSAGE = (
    "A NeuralAdapterConfig describes a neural adapter, which is not a PEFT tuner: it runs a target network beside "
    "the frozen source. Build one with hf_adapter_ext.get_adapter_model(source, config); load a saved one with "
    "hf_adapter_ext.NeuralAdapterModel.from_pretrained(source_or_its_id, adapter_dir) (a consolidated plain "
    "model needs no hf_adapter_ext at all)."
)

_CHOICES = {
    "target": ("copy", "lora", "frozen"),
    "adapter": ("bilstm", "mlp", "none"),
    "head": ("crf", "linear"),
    "trainable": ("all", "top"),
    "annotation": ("full", "new_only"),
}


_TYPES = {"adapter_hidden_size": int, "num_top_layers": int, "lora_r": int, "lora_alpha": int,
          "bio_constraints": bool, "distill_temperature": float, "distill_weight": float, "lora_dropout": float}
_EXAMPLES = {int: "8", bool: "false", float: "0.5"}
_RANGES = [  # (field, lower check, upper check)
    ("adapter_hidden_size", lambda v: v >= 1, lambda v: True),
    ("num_top_layers", lambda v: v >= 0, lambda v: True),
    ("lora_r", lambda v: v >= 1, lambda v: True),
    ("lora_alpha", lambda v: v >= 1, lambda v: True),
    ("distill_temperature", lambda v: v > 0, lambda v: True),
    ("distill_weight", lambda v: v >= 0, lambda v: True),
    ("lora_dropout", lambda v: v >= 0, lambda v: v < 1),
]
_RANGE_HELP = {
    "adapter_hidden_size": "use a positive size such as 64", "num_top_layers": "use 0 or more layers",
    "lora_r": "use a positive rank such as 8", "lora_alpha": "use a positive value such as 16",
    "distill_temperature": "use a finite temperature above 0, such as 2.0",
    "distill_weight": "use a finite weight of 0 or more, such as 1.0", "lora_dropout": "use a rate in [0, 1)",
}


def parse_pairs(text: str, option: str, form: str, example: str) -> dict[str, str]:
    """A command line's mapping, ``"a=B,c=D"``, as a dict; anything else is refused, naming the option."""
    pairs = [item.split("=") for item in text.split(",") if item.strip()]
    if not pairs or any(len(pair) != 2 or not all(p.strip() for p in pair) for pair in pairs):
        raise ValueError(f"{option}={text!r}: write {form} pairs separated by commas, e.g. {example}.")
    return {key.strip(): value.strip() for key, value in pairs}


def parse_label_parents(value) -> dict[str, str] | None:
    """``{"politician": "PER"}``, or the command line's ``"politician=PER,band=ORG"``, as a dict."""
    if value is None or isinstance(value, dict) and not value:
        return None
    if isinstance(value, str):
        value = parse_pairs(value, "NeuralAdapterConfig.label_parents", "subtype=parent", "'politician=PER,band=ORG'")
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise TypeError(f"NeuralAdapterConfig.label_parents must map new types to old types, e.g. "
                        f"{{'politician': 'PER'}}; got {value!r}.")
    return dict(value)


@dataclass
class NeuralAdapterConfig(PeftConfig):
    """How to extend a trained token classifier with new labels (Chen & Moschitti, AAAI 2019).

    The source model stays frozen; a target network (a trained copy, LoRA on the shared encoder, or the
    shared frozen encoder) predicts old + new labels, and the source's per-token scores reach the
    target's final layer through the adapter.

    Args:
        new_labels: the labels to add, as BIO tags when the source uses them (``["B-LOC", "I-LOC"]``).
        target: ``copy`` trains a copy of the source's encoder (the paper; best quality); ``lora`` trains LoRA
            layers on the shared encoder and ``frozen`` trains only adapter and head (both save a few percent of
            the source's bytes and serve in about one encoder pass).
        adapter: how the source's scores reach the head: ``bilstm`` (the paper), ``mlp``, or ``none`` (the
            "expand the output layer and fine-tune" baseline).
        head: ``crf`` (log-likelihood training, Viterbi decoding, BIO constraints) or ``linear``.
        trainable: ``all`` target weights train, or only the ``top`` ``num_top_layers`` layers and the head.
        annotation: ``full`` when the target data labels old and new types (the paper); ``new_only`` when only
            new types are labelled, so old types are distilled from the source on the ``O`` tokens.
        adapter_hidden_size: hidden size of the BiLSTM / MLP adapter.
        num_top_layers: encoder layers that train with ``trainable="top"``.
        bio_constraints: forbid ``O -> I-X`` and other transitions that BIO never takes, in the CRF.
        distill_temperature: softmax temperature of the distillation (``new_only`` data, rehearsal text).
        distill_weight: weight of the distillation loss beside the task loss.
        label_parents: new types that refine an old one, ``{"politician": "PER"}`` or ``"politician=PER"``: the
            source's parent probability is kept as the mass of parent + subtypes where the source is distilled.
        lora_r, lora_alpha, lora_dropout, lora_target_modules: PEFT LoRA settings for ``target="lora"``
            (PEFT's default target modules for the architecture when unset).
        old_labels, source_signature: set by :func:`get_adapter_model` from the source, so that a saved adapter
            refuses another source.
        metrics: evaluation results, shown in the model card.
    """

    new_labels: list[str] = field(default_factory=list, metadata={"help": "Labels to add, e.g. ['B-LOC', 'I-LOC']."})
    target: Literal["copy", "lora", "frozen"] = field(
        default="copy", metadata={"help": "copy: train a copy of the source (paper); lora: LoRA on the shared "
                                          "encoder; frozen: shared frozen encoder, only adapter and head train."}
    )
    adapter: Literal["bilstm", "mlp", "none"] = field(
        default="bilstm", metadata={"help": "How source scores reach the target head; 'none' = expand baseline."}
    )
    head: Literal["crf", "linear"] = field(default="crf", metadata={"help": "Final layer of the target."})
    trainable: Literal["all", "top"] = field(
        default="all", metadata={"help": "all: every target weight trains; top: only the top layers."}
    )
    annotation: Literal["full", "new_only"] = field(
        default="full", metadata={"help": "full: old and new types labelled in the target data; new_only: only "
                                          "new types labelled, old types distilled from the source on O tokens."}
    )
    adapter_hidden_size: int = field(default=64, metadata={"help": "Hidden size of the BiLSTM / MLP adapter."})
    num_top_layers: int = field(default=1, metadata={"help": "Encoder layers that train when trainable='top'."})
    bio_constraints: bool = field(default=True, metadata={"help": "Forbid O -> I-X transitions in the CRF."})
    distill_temperature: float = field(default=2.0, metadata={"help": "Softmax temperature for new_only distillation."})
    distill_weight: float = field(default=1.0, metadata={"help": "Weight of the distillation loss (new_only)."})
    label_parents: dict[str, str] | str | None = field(
        default=None, metadata={"help": "New types that refine an old one, e.g. politician=PER,band=ORG (or a dict). "
                                        "The source's parent probability is kept as the mass of parent + subtypes, "
                                        "and scores report old types with subtypes counted as their parent."}
    )
    lora_r: int = field(default=8, metadata={"help": "LoRA rank (target='lora')."})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA alpha (target='lora')."})
    lora_dropout: float = field(default=0.1, metadata={"help": "LoRA dropout (target='lora')."})
    lora_target_modules: list[str] | None = field(
        default=None, metadata={"help": "Modules LoRA wraps; PEFT's defaults for the architecture when unset."}
    )
    # Filled in by `get_adapter_model` so a saved adapter can check the source it is loaded onto.
    old_labels: list[str] | None = field(default=None, metadata={"help": "The source's labels (set automatically)."})
    source_signature: dict | None = field(
        default=None, metadata={"help": "Architecture facts of the source (set automatically)."}
    )
    metrics: dict | None = field(default=None, metadata={"help": "Evaluation results shown in the model card."})

    def __post_init__(self):
        super().__post_init__()
        self.peft_type = PEFT_TYPE
        self.task_type = self.task_type or "TOKEN_CLS"
        self._check_types()
        for name, choices in _CHOICES.items():
            value = getattr(self, name)
            if value not in choices:
                raise ValueError(f"NeuralAdapterConfig.{name}={value!r} is not supported; choose one of {choices}.")
        for name, low, high in _RANGES:
            value = getattr(self, name)
            if not (math.isfinite(value) and low(value) and high(value)):
                raise ValueError(f"NeuralAdapterConfig.{name}={value!r} is out of range: {_RANGE_HELP[name]}.")
        self.new_labels = list(self.new_labels)
        self.label_parents = parse_label_parents(self.label_parents)

    def _check_types(self) -> None:
        """Refuse values of the wrong type (as JSON files and command lines produce: "8", "false")."""
        if isinstance(self.new_labels, str) or not isinstance(self.new_labels, (list, tuple)) or not all(
                isinstance(label, str) for label in self.new_labels):
            raise TypeError(
                f"NeuralAdapterConfig.new_labels must be a list of label strings, e.g. ['B-LOC', 'I-LOC']; got "
                f"{self.new_labels!r}."
            )
        for name, kind in _TYPES.items():
            value = getattr(self, name)
            wrong_bool = isinstance(value, bool) and kind is not bool
            if wrong_bool or not isinstance(value, kind if kind is not float else (int, float)):
                raise TypeError(
                    f"NeuralAdapterConfig.{name} must be {kind.__name__}, got {value!r} ({type(value).__name__}); "
                    f"write it without quotes, e.g. {name}={_EXAMPLES[kind]}."
                )
        modules = self.lora_target_modules
        if modules is not None and not isinstance(modules, str) and not (
                isinstance(modules, (list, tuple)) and all(isinstance(m, str) for m in modules)):
            raise TypeError(f"NeuralAdapterConfig.lora_target_modules must be a list of module names (or a regex "
                            f"string, as in PEFT); got {modules!r}.")
        old = self.old_labels
        if old is not None and not (isinstance(old, list) and all(isinstance(v, str) for v in old)):
            raise TypeError(f"NeuralAdapterConfig.old_labels must be a list of label strings; got {old!r}.")
        for name in ("source_signature", "metrics"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, dict):
                raise TypeError(f"NeuralAdapterConfig.{name} must be a dict; got {value!r}.")

    @property
    def is_prompt_learning(self) -> bool:
        """PEFT asks this first of a config it is about to build a tuner from (``get_peft_model``,
        ``PeftModel.from_pretrained``, ``AutoPeftModel*``, transformers' ``load_adapter``). A neural adapter is no
        PEFT tuner, so those front doors stop here, with directions to ours."""
        raise ValueError(FRONT_DOOR_MESSAGE)

    @property
    def labels(self) -> list[str]:
        """Old labels followed by new ones: the extended model's id order."""
        if self.old_labels is None:
            raise ValueError("This config has not been attached to a source model yet (old_labels is unset).")
        return list(self.old_labels) + list(self.new_labels)

    @property
    def old_types(self) -> list[str]:
        """The source's entity types ('B-PER', 'I-PER' -> 'PER'), or its labels when they are not BIO tags."""
        if self.old_labels is None:
            raise ValueError("This config has not been attached to a source model yet (old_labels is unset).")
        return entity_types(self.old_labels) or list(self.old_labels)

    @property
    def new_types(self) -> list[str]:
        """The entity types the extension adds, or its labels when they are not BIO tags."""
        return entity_types(self.new_labels) or list(self.new_labels)

    @property
    def uses_source_at_forward(self) -> bool:
        """Whether training/inference needs the source's scores (the adapter, or distillation)."""
        return self.adapter != "none" or self.annotation == "new_only"

    @classmethod
    def field_names(cls) -> set[str]:
        return {f.name for f in fields(cls)}


# PEFT reads adapter_config.json through this table: `PeftConfig.from_pretrained(adapter_dir)` returns our config.
# No tuner is registered: PeftType has no member for a neural adapter (PEFT's register_peft_method accepts only
# those), and a neural adapter injects no layers into the base model, which is what a PEFT tuner does.
PEFT_TYPE_TO_CONFIG_MAPPING.setdefault(PEFT_TYPE, NeuralAdapterConfig)
