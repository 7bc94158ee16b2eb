"""`SIBConfig`: the synthetic-information-bottleneck few-shot classifier (Hu et al., ICLR 2020)."""

from __future__ import annotations

import dataclasses
import inspect
import re
import typing
from types import SimpleNamespace

from transformers import AutoConfig, PretrainedConfig, TrainingArguments

from ..validation import CLI, Number, check_settings
from .arguments import MetaTrainingArguments
from .episodes import LEVELS
from .shaping import POOLINGS

GRAD_NETS = ("equivariant", "fixed")
INNER_STEPS = Number(int, 0, 1000, example="3", why="0 is the support-only start; each step costs a pass")
_RULES = {
    "n_way": Number(int, 2, 1024, example="5", why="classes per training episode (grad_net='fixed': 8n x 8n wide)"),
    "inner_steps": INNER_STEPS,
    "inner_lr": Number(float, 0, 10, low_open=True, example="0.03"),
    "grad_net_multiplier": Number(int, 1, 64, example="8"),
    "init_scale": Number(float, 0, 1000, low_open=True, example="10.0", why="the cosine classifier's scale"),
    "learn_inner_lr": bool, "support_gradient": bool, "transductive_init": bool, "grad_net_context": bool,
    "use_label_names": (True, False, None),
    "freeze_backbone": bool, "level": LEVELS, "pooling": POOLINGS, "grad_net": GRAD_NETS,
    "feature_dim": Number(int, 1, optional=True, example="384", why="the encoder's hidden size"),
    "shaped_layers": Number(int, 0, 1000, example="0", why="how many top encoder layers were shaped"),
    "shaped_with_label_names": bool,
    "shaped_name_agreement": Number(float, 0, 1, optional=True, example="0.87",
                                    why="a share of the meta-training classes' names"),
    "max_refined_classes": Number(int, 0, optional=True, example="20",
                                  why="tasks with more labels are answered from the K = 0 start; None refines all"),
}
# Settings of the episodes and of meta-training, not of the model: given to SIBConfig, transformers would store
# them on the config and nothing would read them.
_TRAINING_SETTINGS = ({f.name for f in dataclasses.fields(MetaTrainingArguments)}
                      - {f.name for f in dataclasses.fields(TrainingArguments)})


def check_model_settings(kwargs: dict) -> None:
    """Refuse meta-training settings given to `SIBConfig` (``k_shot``, ``n_query``, ...): `PretrainedConfig` keeps any
    unknown keyword, so ``SIBConfig(k_shot=5)`` would be stored and silently do nothing."""
    misplaced = sorted(set(kwargs) & _TRAINING_SETTINGS)
    if misplaced:
        raise ValueError(f"SIBConfig does not take {misplaced}: they are settings of the episodes and of meta-training, "
                         f"so pass them to MetaTrainingArguments (or examples/meta.py as --{misplaced[0]}) instead.")


class SIBConfig(PretrainedConfig):
    """Settings of SIB on top of an encoder, and the encoder's own config (as `EncoderDecoderConfig` holds its
    encoder's): the one place that holds ``n_way`` and the inner-loop settings.

    Args:
        n_way: classes per episode when meta-training (and, with ``grad_net="fixed"``, the only number of classes
            the model serves). At ``level="token"`` the "O" class is added, so the classifier has ``n_way + 1``
            outputs.
        grad_net: the synthetic-gradient net. ``"equivariant"`` (default): one small network shared by every
            class, which sees each query's score for the class, its probability and the episode's class marginal,
            plus the mean over the episode's classes; it is the same function for every class, so one model serves
            any number of labels at run time (2 to hundreds), and meta-training can mix episode sizes
            (`MetaTrainingArguments.max_train_ways`). ``"fixed"``: the reference's MLP over the whole logit vector
            (n -> 8n -> 8n -> n), which serves exactly ``n_way`` classes.
        inner_steps: K, synthetic-gradient refinement steps on the unlabelled query set.
        max_refined_classes: the most labels a task may have and still be refined; a task with more is answered
            from the K = 0 start (an explicit ``inner_steps=`` at call time overrides it). None (default) refines
            every task. `SemiSupervisedMetaTrainer` sets it after training, from meta-validation tasks of
            increasing size (`MetaTrainingArguments.refinement_check_episodes`): on frozen or shaped sentence
            features the refinement helps at 5 labels and can cost accuracy at 50.
        inner_lr: step size of each refinement step (its starting value when learned). 0.03 is what
            `benchmarks/sib_fewshot.py` chose on meta-validation for every dataset, shot and seed.
        learn_inner_lr: make the step size a trained parameter (log-parametrised); on by default, as in the
            benchmark.
        support_gradient: each refinement step also follows the true cross-entropy gradient of the labelled
            support set (with a learned weight), which keeps the refined classifier anchored to it. Beyond the
            reference (``False``), which refines with the query set's synthetic gradient alone; measured on
            BANKING77 it adds ~0.7 point at 1-shot and turns a loss into a gain over prototypes at 5-shot.
        transductive_init: start the refinement from soft k-means prototypes (the support means refined with soft
            assignments of the unlabelled queries, learned temperature) instead of the support means alone. On by
            default: with it, over 3 seeds, SIB ties or leads soft k-means at 1-shot on even query sets and leads
            it by about 1 point on uneven ones (benchmarks/results/sib_fewshot_best_1shot.md). ``False`` is the
            reference's initialisation.
        grad_net_context: (``grad_net="fixed"`` only; the equivariant net always has it) the synthetic-gradient
            net also sees each query's probabilities and the episode's class marginal, not only the query's
            logits. Off by default. Meta-trained on even episodes only (``uneven_train_queries=0``,
            ``natural_train_queries=0``) it gives the best 1-shot results on query sets even by construction, and
            the worst on uneven ones (several points below soft k-means): the marginal teaches it to expect even
            classes (benchmarks/results/sib_fewshot_best_1shot_even_queries.md). With half-uneven
            episodes it changes nothing measurable.
        use_label_names: read each label's name as one more labelled example of it (``"card_lost"`` is encoded
            as the text "card lost"), in the K = 0 start and the refinement's support gradient. Names come from
            `predict_labels`' keys, and in meta-training from the dataset's ``ClassLabel`` names; episodes without
            names (`adapt`, ready-made features, bare class ids) are classified from their examples alone. None
            (default): wherever it applies, a sequence-level model over a frozen (or shaped) encoder, as
            chosen on meta-validation (benchmarks/results/fewshot_intents_label_names.md). Names that say nothing
            ("intent_17") cost accuracy: `SemiSupervisedMetaTrainer` turns them off when validation shows it, and
            ``False`` turns them off by hand.
        grad_net_multiplier: hidden width of the synthetic-gradient net: in multiples of the class count for
            ``grad_net="fixed"`` (the reference uses n → 8n → 8n → n), in multiples of 4 units per class for
            ``"equivariant"``.
        init_scale: starting value of the cosine classifier's learnable scale.
        level: ``"sequence"`` (one feature per example) or ``"token"`` (one feature per word, first subword).
        pooling: how a sequence feature is made from token states: ``"mean"`` (sentence-transformers) or ``"cls"``.
        freeze_backbone: keep the encoder frozen (its features can then be cached). A saved model then holds only
            the head and references the encoder by ``backbone_name_or_path``; a fine-tuned encoder is saved too.
        shaped_layers: how many of the encoder's top layers were fine-tuned on the meta-training classes
            (`SIBForFewShotClassification.shape_backbone`; 0: the encoder is as pretrained). A shaped encoder is
            saved with the model, since ``backbone_name_or_path`` no longer holds its weights.
        shaped_with_label_names: whether shaping also aligned the meta-training classes' label names with their
            examples (set by ``shape_backbone``; the model card says so).
        shaped_name_agreement: the share of those names that pointed to their own class on the pretrained
            encoder, which decides whether they are aligned (set by ``shape_backbone``; None: shaped without
            names to read).
        feature_dim: the encoder's hidden size (filled in from ``backbone``).
        backbone: the encoder's config (a config or its dict), so the model can be built without weights.
        backbone_name_or_path: where the frozen encoder's weights are loaded from.
        backbone_digest: digest of the frozen encoder's weights, written by ``save_pretrained`` so that
            ``from_pretrained`` refuses an encoder with other weights (set automatically).
    """

    model_type = "sib"

    def __init__(
        self,
        n_way: int = 5,
        inner_steps: int = 3,
        max_refined_classes: int | None = None,
        inner_lr: float = 0.03,
        learn_inner_lr: bool = True,
        support_gradient: bool = True,
        transductive_init: bool = True,
        grad_net_context: bool = False,
        use_label_names: bool | None = None,
        grad_net: str = "equivariant",
        grad_net_multiplier: int = 8,
        init_scale: float = 10.0,
        level: str = "sequence",
        pooling: str = "mean",
        freeze_backbone: bool = True,
        shaped_layers: int = 0,
        shaped_with_label_names: bool = False,
        shaped_name_agreement: float | None = None,
        feature_dim: int | None = None,
        backbone: PretrainedConfig | dict | None = None,
        backbone_name_or_path: str | None = None,
        backbone_digest: str | None = None,
        **kwargs,
    ):
        check_settings("SIBConfig", SimpleNamespace(**{k: v for k, v in locals().items() if k in _RULES}), _RULES)
        check_model_settings(kwargs)
        if grad_net_context and grad_net != "fixed":
            raise ValueError("SIBConfig(grad_net_context=True) applies to grad_net='fixed' only: the equivariant net "
                             "always sees the episode's class marginal. Drop grad_net_context, or set grad_net='fixed'.")
        if use_label_names is None:
            use_label_names = level == "sequence" and freeze_backbone
        if use_label_names and (level != "sequence" or not freeze_backbone):
            raise ValueError("SIBConfig(use_label_names=True) needs level='sequence' and a frozen (or shaped) encoder "
                             f"(freeze_backbone=True); got level={level!r}, freeze_backbone={freeze_backbone}. Drop "
                             "use_label_names for token-level or fine-tuned-encoder models.")
        if backbone_name_or_path is not None and not isinstance(backbone_name_or_path, str):
            raise TypeError(f"SIBConfig.backbone_name_or_path must be the encoder's Hub id or folder (a string); got "
                            f"{backbone_name_or_path!r}.")
        self.n_way = n_way
        self.inner_steps = inner_steps
        self.max_refined_classes = max_refined_classes
        self.inner_lr = inner_lr
        self.learn_inner_lr = learn_inner_lr
        self.support_gradient = support_gradient
        self.transductive_init = transductive_init
        self.grad_net_context = grad_net_context
        self.use_label_names = use_label_names
        self.grad_net = grad_net
        self.grad_net_multiplier = grad_net_multiplier
        self.init_scale = init_scale
        self.level = level
        self.pooling = pooling
        self.freeze_backbone = freeze_backbone
        self.shaped_layers = shaped_layers
        self.shaped_with_label_names = shaped_with_label_names
        self.shaped_name_agreement = shaped_name_agreement
        self.feature_dim, self.backbone = feature_dim, None
        if backbone is not None:
            self.set_backbone(backbone)
        if backbone_digest is not None and not isinstance(backbone_digest, str):
            raise TypeError(f"SIBConfig.backbone_digest must be a string; got {backbone_digest!r}.")
        self.backbone_name_or_path, self.backbone_digest = backbone_name_or_path, backbone_digest
        super().__init__(**kwargs)

    def set_backbone(self, backbone: PretrainedConfig | dict) -> None:
        """Hold the encoder's config (or its dict) and take ``feature_dim`` from its hidden size."""
        if isinstance(backbone, dict):
            backbone = AutoConfig.for_model(**backbone)
        if not isinstance(backbone, PretrainedConfig):
            raise TypeError(f"SIBConfig.backbone must be the encoder's config (or its dict); got {type(backbone).__name__}.")
        hidden = getattr(backbone, "hidden_size", getattr(backbone, "dim", None))
        if None not in (self.feature_dim, hidden) and self.feature_dim != hidden:
            raise ValueError(f"SIBConfig.feature_dim={self.feature_dim} but the backbone's hidden size is {hidden}.")
        self.backbone, self.feature_dim = backbone, hidden if hidden is not None else self.feature_dim

    @classmethod
    def from_dict(cls, config_dict: dict, **kwargs):
        # saved before an option existed: the behaviour it was trained with
        config_dict = {"support_gradient": False, "transductive_init": False, "grad_net_context": False,
                       "grad_net": "fixed", "use_label_names": False, **config_dict}
        return super().from_dict(config_dict, **kwargs)

    @property
    def stores_backbone(self) -> bool:
        """Whether a saved model holds the encoder's weights: trained with the head, or shaped before it."""
        return not self.freeze_backbone or self.shaped_layers > 0

    @property
    def num_classes(self) -> int:
        """Classifier outputs of an ``n_way`` episode ("O" included at token level)."""
        return self.n_way + (1 if self.level == "token" else 0)

    @property
    def sees_class_marginal(self) -> bool:
        """Whether the synthetic-gradient net sees how the episode's queries spread over its classes."""
        return self.grad_net_context or self.grad_net == "equivariant"

    @property
    def any_number_of_classes(self) -> bool:
        """Whether the model serves any number of classes per episode (not only ``n_way``)."""
        return self.grad_net == "equivariant"


# What a command line sets; the rest (level, feature_dim, backbone, ...) follows from the data and the encoder.
_CLI_SETTINGS = ("n_way", "inner_steps", "inner_lr", "learn_inner_lr", "support_gradient", "transductive_init",
                 "grad_net_context", "use_label_names", "grad_net", "grad_net_multiplier", "init_scale", "pooling", "freeze_backbone")


def _documented(name: str) -> str:
    """The ``Args:`` text of one ``SIBConfig`` setting, on one line."""
    match = re.search(rf"^ {{8}}{name}: (.*?)(?=^ {{8}}\w+: |\Z)", SIBConfig.__doc__, re.S | re.M)
    return " ".join(match.group(1).split()) if match else ""


def sib_arguments_dataclass() -> type:
    """SIBConfig's settings as a dataclass, for ``HfArgumentParser``: one definition of each setting, its default
    and its help (the ``Args:`` above), so a script's options cannot drift from the config's."""
    signature, types = inspect.signature(SIBConfig.__init__).parameters, typing.get_type_hints(SIBConfig.__init__)
    fields = [(name, types[name],
               dataclasses.field(default=signature[name].default, metadata={"help": _documented(name)}))
              for name in _CLI_SETTINGS]
    def check(self) -> None:  # on the command line, before any data or model is read
        check_settings(CLI, self, {name: _RULES[name] for name in _CLI_SETTINGS})

    return dataclasses.make_dataclass("SIBArguments", fields, namespace={"__post_init__": check})
