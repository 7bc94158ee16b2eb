"""`NeuralAdapterConfig`: a `peft.PeftConfig` describing how a token classifier is extended."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Literal

from peft import PeftConfig

PEFT_TYPE = "NEURAL_ADAPTER"

_CHOICES = {
    "target": ("copy", "lora", "frozen"),
    "adapter": ("bilstm", "mlp", "none"),
    "head": ("crf", "linear"),
    "trainable": ("all", "top"),
    "annotation": ("full", "new_only"),
}


@dataclass
class NeuralAdapterConfig(PeftConfig):
    """How to extend a trained token classifier with new labels (Chen & Moschitti, AAAI 2019).

    The source model stays frozen; a target network (a trained copy, LoRA on the shared encoder, or the
    shared frozen encoder) predicts old + new labels, and the source's per-token scores reach the
    target's final layer through the adapter.
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
        for name, choices in _CHOICES.items():
            value = getattr(self, name)
            if value not in choices:
                raise ValueError(f"NeuralAdapterConfig.{name}={value!r} is not supported; choose one of {choices}.")
        if self.adapter_hidden_size <= 0 or self.num_top_layers < 0 or self.lora_r <= 0:
            raise ValueError("adapter_hidden_size and lora_r must be positive and num_top_layers non-negative.")
        self.new_labels = list(self.new_labels)

    @property
    def labels(self) -> list[str]:
        """Old labels followed by new ones: the extended model's id order."""
        if self.old_labels is None:
            raise ValueError("This config has not been attached to a source model yet (old_labels is unset).")
        return list(self.old_labels) + list(self.new_labels)

    @property
    def uses_source_at_forward(self) -> bool:
        """Whether training/inference needs the source's scores (the adapter, or distillation)."""
        return self.adapter != "none" or self.annotation == "new_only"

    @classmethod
    def field_names(cls) -> set[str]:
        return {f.name for f in fields(cls)}
