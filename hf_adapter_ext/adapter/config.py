"""`NeuralAdapterConfig`: a `peft.PeftConfig` describing how a token classifier is extended."""

from __future__ import annotations

from dataclasses import MISSING, asdict, dataclass, field, fields, make_dataclass
from typing import Literal, get_type_hints

from peft import PeftConfig
from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING

from ..modeling.tags import entity_types
from ..validation import Number, WrongKindError, check_settings, check_string_list, entity_type_name, repeated

PEFT_TYPE = "NEURAL_ADAPTER"
FRONT_DOOR_MESSAGE = (
    "A NeuralAdapterConfig describes a neural adapter, which is not a PEFT tuner: it runs a target network beside "
    "the frozen source. Build one with hf_adapter_ext.get_adapter_model(source, config); load a saved one with "
    "hf_adapter_ext.NeuralAdapterModel.from_pretrained(source_or_its_id, adapter_dir) (a consolidated plain "
    "model needs no hf_adapter_ext at all)."
)

_RULES = {
    "target": ("copy", "lora", "frozen"),
    "adapter": ("bilstm", "mlp", "none"),
    "head": ("crf", "linear"),
    "trainable": ("all", "top"),
    "annotation": ("full", "new_only"),
    "subtype_init": ("parent", "sampled"),
    "adapter_hidden_size": Number(int, 1, 16384, example="64", why="a BiLSTM/MLP width; 16384 already takes GBs"),
    "num_top_layers": Number(int, 0, example="1"),
    "lora_r": Number(int, 1, 4096, example="8"),
    "lora_alpha": Number(int, 1, example="16"),
    "lora_dropout": Number(float, 0, 1, high_open=True, example="0.1"),
    "bio_constraints": bool,
    "distill_temperature": Number(float, 0.01, 100, example="2.0", why="below 0.01 or above 100 the softmax is "
                                  "one-hot or flat in float32, and the distillation teaches nothing"),
    "distill_weight": Number(float, 0, 1000, example="1.0", why="above 1000 the task loss no longer counts"),
}
_OWNER = "NeuralAdapterConfig"


def parse_pairs(text: str, option: str, form: str, example: str) -> dict[str, str]:
    """A command line's mapping, ``"a=B,c=D"``, as a dict; anything else is refused, naming the option. A key given
    twice is refused too: which of its values was meant cannot be known."""
    if not isinstance(text, str):
        raise WrongKindError(f"{option} takes {form} pairs as one string, e.g. {example!r}; got {type(text).__name__}.")
    pairs = [item.split("=") for item in text.split(",") if item.strip()]
    if not pairs or any(len(pair) != 2 or not all(p.strip() for p in pair) for pair in pairs):
        raise ValueError(f"{option}={text!r}: write {form} pairs separated by commas, e.g. {example}.")
    keys = [key.strip() for key, _ in pairs]
    twice = repeated(keys)
    if twice:
        raise ValueError(f"{option}={text!r}: {twice} given more than once; give each one value.")
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
    for child, parent in value.items():
        entity_type_name(child, "label_parents")
        entity_type_name(parent, f"label_parents (the parent of {child!r})")
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
        distill_weight: weight of the distillation loss beside the task loss. On rehearsal rows, 3 kept a CoNLL
            tagger's old types at the source's level on CrossNER politics where 1 lost 2 F1, at the same domain F1
            but later best steps, and cost 0.3-0.5 domain F1 on music (benchmarks/results/
            fewshot_extension_all_devrest_dw3.md): an option, not the default.
        label_parents: new types that refine an old one, ``{"politician": "PER"}`` or ``"politician=PER"``: the
            source's parent probability is kept as the mass of parent + subtypes where the source is distilled.
        subtype_init: how the output rows of a type with a parent in ``label_parents`` start: ``parent`` copies
            the parent's rows (``B-politician`` starts as ``B-PER``), and with a source that has a CRF its start,
            end and transition scores too, so the few labelled sentences teach only what sets the subtype apart;
            ``sampled`` draws them from the old rows' statistics, as for a type without a parent (the paper).
            ``parent`` scored higher on both CrossNER domains' dev sets (docs/extending.md).
        lora_r, lora_alpha, lora_dropout, lora_target_modules: PEFT LoRA settings for ``target="lora"``
            (PEFT's default target modules for the architecture when unset).
        old_labels, source_signature, source_digest: set by :func:`get_adapter_model` from the source, so that a
            saved adapter refuses another source: other labels, another architecture, or other weights.
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
    distill_weight: float = field(default=1.0, metadata={
        "help": "Weight of the distillation loss (new_only data, rehearsal rows) beside the task loss."})
    label_parents: dict[str, str] | str | None = field(
        default=None, metadata={"help": "New types that refine an old one, e.g. politician=PER,band=ORG (or a dict). "
                                        "The source's parent probability is kept as the mass of parent + subtypes, "
                                        "and scores report old types with subtypes counted as their parent."}
    )
    subtype_init: Literal["parent", "sampled"] = field(
        default="parent", metadata={"help": "How a subtype's output rows (and CRF scores) start: parent = as its "
                                             "parent's (label_parents); sampled = drawn like any new type's."}
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
    source_digest: str | None = field(
        default=None, metadata={"help": "Digest of the source's weights (set automatically)."}
    )
    metrics: dict | None = field(default=None, metadata={"help": "Evaluation results shown in the model card."})

    def __post_init__(self):
        super().__post_init__()
        self.peft_type = PEFT_TYPE
        self.task_type = self.task_type or "TOKEN_CLS"
        if self.task_type != "TOKEN_CLS":
            raise ValueError(f"{_OWNER}.task_type={self.task_type!r}: a neural adapter extends a token classifier; "
                             "leave task_type unset (TOKEN_CLS).")
        self._check_types()
        check_settings(_OWNER, self, _RULES)
        self.label_parents = parse_label_parents(self.label_parents)

    def _check_types(self) -> None:
        """Refuse values of the wrong type (as JSON files and command lines produce: "8", "false")."""
        self.new_labels = check_string_list(_OWNER, "new_labels", self.new_labels, "['B-LOC', 'I-LOC']")
        for index, label in enumerate(self.new_labels):
            if label != label.strip() or not label:
                raise ValueError(f"{_OWNER}.new_labels[{index}]={label!r}: a label has no surrounding spaces and is "
                                 "not empty, e.g. 'B-LOC'.")
        modules = self.lora_target_modules
        if modules is not None and not isinstance(modules, str) and not (
                isinstance(modules, (list, tuple)) and all(isinstance(m, str) for m in modules)):
            raise TypeError(f"NeuralAdapterConfig.lora_target_modules must be a list of module names (or a regex "
                            f"string, as in PEFT); got {modules!r}.")
        if modules is not None and not modules:  # `or` would give the defaults: not what an empty list says
            raise ValueError(f"NeuralAdapterConfig.lora_target_modules={modules!r} names no module; leave it None for "
                             "the encoder's attention projections, or name some, e.g. ['query', 'value'].")
        if self.old_labels is not None:
            self.old_labels = check_string_list(_OWNER, "old_labels", self.old_labels, "['O', 'B-PER', 'I-PER']")
        if self.base_model_name_or_path is not None and not isinstance(self.base_model_name_or_path, str):
            raise TypeError(f"{_OWNER}.base_model_name_or_path must be the source's folder or Hub id (a string); "
                            f"got {self.base_model_name_or_path!r}.")
        if self.source_digest is not None and not isinstance(self.source_digest, str):
            raise TypeError(f"NeuralAdapterConfig.source_digest must be a string; got {self.source_digest!r}.")
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


# Settings that only some choices read: (setting, whether the config's other choices read it, which choice does);
# `get_adapter_model` warns of those given without their choice (`warn_idle_settings`).
READ_ONLY_WITH = (
    *((name, lambda c: c.target == "lora", "target='lora'")
      for name in ("lora_r", "lora_alpha", "lora_dropout", "lora_target_modules")),
    ("num_top_layers", lambda c: c.trainable == "top", "trainable='top'"),
    ("trainable", lambda c: c.target != "frozen", "target='copy' or 'lora' (a frozen target trains no encoder layer)"),
    ("adapter_hidden_size", lambda c: c.adapter != "none", "adapter='bilstm' or 'mlp'"),
    ("bio_constraints", lambda c: c.head == "crf", "head='crf'"),
    ("subtype_init", lambda c: bool(c.label_parents), "label_parents"),
)


# PEFT reads adapter_config.json through this table: `PeftConfig.from_pretrained(adapter_dir)` returns our config.
# No tuner is registered: PeftType has no member for a neural adapter (PEFT's register_peft_method accepts only
# those), and a neural adapter injects no layers into the base model, which is what a PEFT tuner does.
PEFT_TYPE_TO_CONFIG_MAPPING.setdefault(PEFT_TYPE, NeuralAdapterConfig)

# Set from the source, by the evaluation or by PEFT, never by hand: a command line does not offer them (given as
# options they were taken and then silently overwritten).
_AUTOMATIC = frozenset({"old_labels", "source_signature", "source_digest", "metrics"} | {f.name for f in fields(PeftConfig)})


def adapter_arguments_dataclass() -> type:
    """The user-facing settings of `NeuralAdapterConfig` as a dataclass, for ``HfArgumentParser``: each field's
    type, default and help as the config declares them (one definition), checked as the config checks them when
    the command line is parsed. Build the config with ``NeuralAdapterConfig(**dataclasses.asdict(arguments))``."""
    hints = get_type_hints(NeuralAdapterConfig)
    options = []
    for spec in fields(NeuralAdapterConfig):
        if spec.name in _AUTOMATIC:
            continue
        default = {"default": spec.default} if spec.default is not MISSING else {"default_factory": spec.default_factory}
        options.append((spec.name, hints[spec.name], field(metadata=spec.metadata, **default)))

    def check(self) -> None:  # before any model or data is read
        NeuralAdapterConfig(**asdict(self))

    return make_dataclass("AdapterArguments", options, namespace={"__post_init__": check})
