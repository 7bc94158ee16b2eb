"""SIB: support set → classifier weights θ⁰; unlabelled query set → synthetic gradients that refine θ.

Reference behaviour (amzn/xfer, synthetic_info_bottleneck), batched over episodes:
cosine classifier ``scale * (cos(f, θ) + bias)``; θ⁰ = per-class mean of L2-normalised support features
times a learnable per-feature vector; a synthetic-gradient net (n → 8n → 8n → n, ReLU + BatchNorm) maps
query logits to dLoss/dlogits; K steps of ``θ ← θ − lr · (∂logits/∂θ)ᵀ g(logits)``, differentiable while
training; loss = cross-entropy on the query labels after K steps. Like the reference, which never calls
``eval()`` on that net, its BatchNorm layers normalise each episode's queries with that episode's own
statistics, in training and at test (`grad_nets.EpisodeNorm`): batching episodes changes no episode's result.
"""

from __future__ import annotations

import difflib
import inspect
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, AutoModel, PreTrainedModel
from transformers.modeling_outputs import ModelOutput

from ..constants import IGNORE_INDEX
from ..hub import (
    check_model_location,
    hub_model_id,
    push_folder_to_hub,
    render_sib_card,
    split_push_arguments,
)
from ..modeling.fingerprint import check_weights_digest, weights_digest
from ..validation import (
    WrongKindError,
    check_finite_tensor,
    check_input_ids,
    check_number,
    check_save_directory,
    check_texts,
)
from .baselines import prototypes, row_scores, soft_kmeans_prototypes, unit_rows
from .config import INNER_STEPS, SIBConfig
from .features import encode_texts
from .grad_nets import ClassEquivariantGradientNet, SyntheticGradientNet
from .label_names import encode_label_names, names_say_something, with_label_names
from .shaping import SHAPING_DEFAULTS, ShapingResult, pool_states, shape_encoder


@dataclass
class SIBOutput(ModelOutput):
    """``logits``: query scores after K refinement steps; ``logits_init``: with K = 0 (support only)."""

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    logits_init: torch.FloatTensor | None = None


class SIBHead(nn.Module):
    """Cosine classifier, initialisation network and synthetic-gradient refinement, for B episodes at once."""

    def __init__(self, config: SIBConfig):
        super().__init__()
        self.num_classes = config.num_classes
        self.any_number_of_classes = config.any_number_of_classes
        self.scale = nn.Parameter(torch.tensor(float(config.init_scale)))
        self.bias = nn.Parameter(torch.zeros(()))
        self.feature_weight = nn.Parameter(torch.ones(config.feature_dim))
        self.grad_net = (ClassEquivariantGradientNet(config.grad_net_multiplier) if config.any_number_of_classes
                         else SyntheticGradientNet(config.num_classes, config.grad_net_multiplier,
                                                   config.grad_net_context))
        self.support_gradient = config.support_gradient
        if config.support_gradient:
            self.log_support_weight = nn.Parameter(torch.zeros(()))
        self.transductive_init = config.transductive_init
        if config.transductive_init:
            self.log_init_temperature = nn.Parameter(torch.tensor(math.log(0.1)))
        log_lr = torch.tensor(math.log(config.inner_lr))
        if config.learn_inner_lr:
            self.log_inner_lr = nn.Parameter(log_lr)
        else:
            self.register_buffer("log_inner_lr", log_lr)

    @staticmethod
    def _cosine(query_unit: torch.Tensor, theta: torch.Tensor):
        theta_norm = theta.norm(dim=-1, keepdim=True).clamp(min=1e-12)
        theta_unit = theta / theta_norm
        return row_scores(query_unit, theta_unit), theta_unit, theta_norm

    def _logits(self, query_unit: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        return self.scale * (self._cosine(query_unit, theta)[0] + self.bias)

    def classify(self, features: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        """[B, M, D] features, [B, C, D] weights → [B, M, C] scaled cosine scores."""
        return self._logits(unit_rows(features), theta)

    def episode_classes(self, support_labels: torch.Tensor) -> torch.Tensor:
        """[B, C] which classes each episode has: for the equivariant net the classes with a labelled support
        example (C = the batch's largest class id + 1); for the fixed net all of its ``num_classes``."""
        if not self.any_number_of_classes:
            return torch.ones(support_labels.size(0), self.num_classes, dtype=torch.bool, device=support_labels.device)
        valid = support_labels != IGNORE_INDEX
        classes = int(support_labels[valid].max()) + 1 if bool(valid.any()) else 1
        return F.one_hot(support_labels.clamp(min=0), classes).mul(valid.unsqueeze(-1)).sum(1) > 0

    def init_theta(self, support_unit: torch.Tensor, support_labels: torch.Tensor, class_mask: torch.Tensor,
                   query_unit: torch.Tensor, query_mask: torch.Tensor) -> torch.Tensor:
        """Per-class mean of the (L2-normalised) support features (labels -100 ignored), weighted per feature; with
        ``transductive_init`` the means are first refined by soft k-means over the unlabelled queries."""
        if self.transductive_init:
            means = soft_kmeans_prototypes(support_unit, support_labels, query_unit, class_mask.size(-1), query_mask,
                                           self.log_init_temperature.exp(), iterations=3, class_mask=class_mask)
        else:
            means = prototypes(support_unit, support_labels, class_mask.size(-1))
        return means * self.feature_weight

    def refine(self, theta: torch.Tensor, query_unit: torch.Tensor, query_mask: torch.Tensor,
               class_mask: torch.Tensor, steps: int, support_unit: torch.Tensor | None = None,
               support_targets: torch.Tensor | None = None) -> torch.Tensor:
        """K synthetic-gradient steps ``θ ← θ − lr · (∂logits/∂θ)ᵀ g(logits)`` on the unlabelled queries.

        For the cosine classifier the product is written out,
        ``(∂logits/∂θ_c)ᵀ g = scale / |θ_c| · Σ_q g_qc (q̂_q − cos_qc θ̂_c)``, so the inner loop is plain tensor
        algebra: it runs the same under ``torch.no_grad()`` callers (the Trainer's evaluation), and training
        differentiates through it with one ordinary backward pass instead of double backward.
        With ``support_unit`` / ``support_targets`` (one-hot, zero rows for padding), each step also takes the
        true cross-entropy gradient of the labelled support set, which keeps θ anchored to it.
        """
        lr = self.log_inner_lr.exp()
        absent = ~class_mask[:, None, :]
        units = query_unit if support_unit is None else torch.cat([query_unit, support_unit], dim=1)
        queries = query_unit.size(1)
        if support_unit is not None:
            labelled = support_targets.sum(-1, keepdim=True)  # 0 for padded support rows
            support_weight = self.log_support_weight.exp()
        for _ in range(steps):
            cos, theta_unit, theta_norm = self._cosine(units, theta)
            logits = self.scale * (cos + self.bias)
            g = self.grad_net(logits[:, :queries], query_mask, class_mask)
            if support_unit is not None:
                support_probs = logits[:, queries:].masked_fill(absent, torch.finfo(cos.dtype).min).softmax(-1)
                support_g = (support_probs * labelled - support_targets) * support_weight
                g = torch.cat([g, support_g], dim=1)
            along = g.transpose(1, 2) @ units - (g * cos).sum(dim=1).unsqueeze(-1) * theta_unit
            theta = theta - lr * self.scale / theta_norm * along
        return theta

    def forward(self, support, support_labels, query, query_mask, steps: int, max_refined_classes: int | None = None):
        """Query scores after ``steps`` refinement steps and with none, [B, Q, C] each; classes an episode lacks
        (equivariant net, episodes of several sizes in one batch) score the dtype's minimum. An episode with more
        than ``max_refined_classes`` classes keeps its K = 0 start (None: every episode is refined)."""
        query_unit, support_unit = unit_rows(query), unit_rows(support)
        class_mask = self.episode_classes(support_labels)
        classes = class_mask.size(-1)
        theta0 = self.init_theta(support_unit, support_labels, class_mask, query_unit, query_mask)
        refined = None if max_refined_classes is None else class_mask.sum(-1) <= max_refined_classes
        if refined is not None and not bool(refined.any()):
            steps = 0
        anchor = {}
        if self.support_gradient:
            valid = (support_labels != IGNORE_INDEX).unsqueeze(-1)
            anchor = {"support_unit": support_unit,
                      "support_targets": F.one_hot(support_labels.clamp(min=0), classes).to(support.dtype) * valid}
        theta = self.refine(theta0, query_unit, query_mask, class_mask, steps, **anchor)
        if refined is not None:
            theta = torch.where(refined[:, None, None], theta, theta0)
        absent = ~class_mask[:, None, :]
        scores = self._logits(query_unit, theta), self._logits(query_unit, theta0)  # bf16 under autocast
        return tuple(x.masked_fill(absent, torch.finfo(x.dtype).min) for x in scores)


def episode_mean_loss(logits: torch.Tensor, query_labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy averaged over each episode's labelled queries, then over the episodes."""
    counts = (query_labels != IGNORE_INDEX).sum(dim=1)
    if bool((counts == 0).any()):
        empty = (counts == 0).nonzero()[:, 0].tolist()
        raise ValueError(
            f"Episode(s) {empty[:10]} of this batch have no labelled query (query_labels all -100), so their loss "
            "is undefined. Sample episodes with n_query >= 1 from classes that have enough examples."
        )
    losses = F.cross_entropy(logits.transpose(1, 2).float(), query_labels, ignore_index=IGNORE_INDEX, reduction="none")
    return (losses.sum(dim=1) / counts).mean()


# encoder weights SIB never reads (features are its last hidden states): AutoModel may initialise them at random
UNREAD_ENCODER_WEIGHTS = ("pooler",)


# AutoModel.from_pretrained's options that users pass where a model is loaded by name
_LOADING_OPTIONS = {"dtype", "torch_dtype", "revision", "token", "cache_dir", "device_map", "local_files_only",
                    "trust_remote_code", "attn_implementation", "force_download", "subfolder"}


class SIBForFewShotClassification(PreTrainedModel):
    """SIB on any `AutoModel` backbone, at sequence level (intents) or token level (few-shot NER).

    Built like transformers' `EncoderDecoderModel`: ``SIBForFewShotClassification(config)`` builds the backbone
    from ``config.backbone``; ``from_backbone_pretrained(name, **sib_settings)`` loads it. ``save_pretrained``
    writes config.json + model.safetensors + a model card; a frozen backbone is referenced by name, not copied.

    ``forward`` takes an episode batch: ``support_features`` [B, S, D], ``support_labels`` [B, S],
    ``query_features`` [B, Q, D] and optionally ``query_labels`` [B, Q] (for the loss) and ``query_mask``
    (which queries exist; default: all, or ``query_labels != -100``). With a trainable backbone,
    pass ``support_input_ids`` / ``support_attention_mask`` (and the query ones) instead of features.
    ``class_name_features`` [B, C, D] (optional): the features of each episode class's name, which a model with
    ``config.use_label_names`` reads as one more labelled support example per class (`label_names`).
    """

    config_class = SIBConfig
    base_model_prefix = "sib"
    main_input_name = "query_features"
    # TrainingArguments(gradient_checkpointing=True) recomputes a trained backbone's activations in the backward pass
    supports_gradient_checkpointing = True
    # The loss is a mean over episodes of each episode's mean query loss: with Trainer dividing by the
    # accumulation steps (and DDP averaging), any split of a step's episodes gives the same gradient.
    accepts_loss_kwargs = False

    def __init__(self, config: SIBConfig, backbone: PreTrainedModel | None = None):
        if not isinstance(config, SIBConfig):
            raise ValueError(f"SIBForFewShotClassification needs a SIBConfig; got {type(config).__name__}. Build one "
                             "from a pretrained encoder with SIBForFewShotClassification.from_backbone_pretrained().")
        if backbone is not None:
            config.set_backbone(backbone.config)
            config.backbone_name_or_path = config.backbone_name_or_path or getattr(backbone, "name_or_path", None)
        elif config.backbone is None:
            raise ValueError("SIBConfig has no backbone config: build the model with "
                             "SIBForFewShotClassification.from_backbone_pretrained(name_or_path, ...) or pass "
                             "backbone=AutoModel.from_pretrained(...).")
        super().__init__(config)
        if not config.stores_backbone:  # loading must not warn about the encoder weights a saved model references
            self._keys_to_ignore_on_load_missing = [r"^backbone\."]
        self.backbone = backbone if backbone is not None else AutoModel.from_config(config.backbone)
        self.head = SIBHead(config)
        if config.freeze_backbone:  # and no dropout: a frozen encoder's features are the same on every pass
            self.backbone.requires_grad_(False).eval()
        self.post_init()
        if not config.stores_backbone:  # saved by name only (also in Trainer checkpoints, which then reload quietly)
            self._keys_to_ignore_on_save = {k for k in self.state_dict() if k.startswith("backbone.")}

    @classmethod
    def from_backbone_pretrained(cls, backbone_name_or_path: str | os.PathLike, **config_kwargs):
        """A new SIB model over a pretrained encoder, e.g. ``from_backbone_pretrained("bert-base-cased", n_way=5)``
        (like `EncoderDecoderModel.from_encoder_decoder_pretrained`); keyword arguments are `SIBConfig` settings.
        Any other keyword is refused: `PretrainedConfig` would keep a misspelt setting (``inner_step=5``) as an
        attribute nobody reads, and the model would train with the default."""
        settings = [name for name in inspect.signature(SIBConfig.__init__).parameters
                    if name not in ("self", "kwargs", "backbone", "backbone_name_or_path", "backbone_digest")]
        unknown = sorted(set(config_kwargs) - set(settings))
        loading = sorted(set(unknown) & _LOADING_OPTIONS)
        if loading:  # AutoModel.from_pretrained's, not SIB's: the saved config could not load the encoder so again
            raise TypeError(f"from_backbone_pretrained got {loading}, which are options of loading the encoder: load "
                            f"it yourself, encoder = AutoModel.from_pretrained(name, {loading[0]}=...), and pass it: "
                            "SIBForFewShotClassification(SIBConfig(...), backbone=encoder).")
        if unknown:
            hints = {name: difflib.get_close_matches(name, settings, n=1) for name in unknown}
            hint = "; ".join(f"{name!r}: did you mean {match[0]!r}?" for name, match in hints.items() if match)
            raise TypeError(f"from_backbone_pretrained got {unknown}, which are not SIBConfig settings"
                            f"{' (' + hint + ')' if hint else ''}. Its settings: {settings}.")
        check_model_location(backbone_name_or_path, "from_backbone_pretrained: the encoder ", "Pass a pretrained "
                             "encoder's folder or Hub id, e.g. 'sentence-transformers/all-MiniLM-L6-v2'.")
        backbone = AutoModel.from_pretrained(backbone_name_or_path)
        config = SIBConfig(backbone_name_or_path=str(backbone_name_or_path), **config_kwargs)
        return cls(config, backbone=backbone)

    @torch.no_grad()
    def _init_weights(self, module):
        """The head sets its own starting values (the reference's); the backbone initialises its own modules."""
        if any(module is m for m in self.backbone.modules()):
            self.backbone._init_weights(module)

    def train(self, mode: bool = True):
        """A frozen backbone stays in eval mode (no dropout), so its features match the cached ones."""
        super().train(mode)
        if self.config.freeze_backbone:
            self.backbone.eval()
        return self

    # ------------------------------------------------------------------ features
    def encode(self, input_ids, attention_mask, word_starts: torch.Tensor | None = None, **inputs) -> torch.Tensor:
        """Backbone features: pooled per example ([N, D]), or per word at its first subword ([N, W, D])."""
        check_input_ids(input_ids, self.backbone.get_input_embeddings().num_embeddings, "the backbone's")
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.config.freeze_backbone):
            states = self.backbone(input_ids=input_ids, attention_mask=attention_mask, **inputs).last_hidden_state
        if word_starts is not None:
            index = word_starts.clamp(min=0).unsqueeze(-1).expand(-1, -1, states.size(-1))
            return states.gather(1, index) * (word_starts >= 0).unsqueeze(-1)
        return pool_states(states, attention_mask, self.config.pooling)

    def shape_backbone(self, tokenizer, texts: Sequence[str], labels: Sequence[int],
                       top_layers: int = SHAPING_DEFAULTS.top_layers, epochs: int = SHAPING_DEFAULTS.epochs,
                       learning_rate: float = SHAPING_DEFAULTS.learning_rate, seed: int = 0,
                       class_names: Mapping[int, str] | Sequence[str] | None = None) -> ShapingResult:
        """Fine-tune the encoder's top ``top_layers`` layers on labelled meta-training texts (`shape_encoder`)
        before meta-training, so that its features separate intents of the same kind; returns the loss per epoch
        and whether the names were aligned (`ShapingResult`, also kept in the config for the model card).
        The shaped encoder is saved with the model from then on (``config.shaped_layers``). ``class_names`` (class
        id → label name), for a model that reads label names: the encoder also learns to put each name where its
        class's examples lie."""
        if self.config.level != "sequence":
            raise ValueError("shape_backbone shapes sequence features (level='sequence'); at token level train on "
                             "the pretrained encoder (shape_top_layers=0).")
        if self.config.shaped_layers:
            raise ValueError(f"This model's encoder is already shaped ({self.config.shaped_layers} top layers); "
                             "shaping it again would train on its own output. Start from the pretrained encoder.")
        result = shape_encoder(self.backbone, tokenizer, texts, labels, top_layers=top_layers, epochs=epochs,
                               learning_rate=learning_rate, pooling=self.config.pooling, seed=seed,
                               class_names=class_names)
        self.config.shaped_layers = top_layers
        self.config.shaped_with_label_names = result.names_aligned
        self.config.shaped_name_agreement = result.name_agreement
        self._keys_to_ignore_on_load_missing, self._keys_to_ignore_on_save = set(), set()  # saved with the head now
        return result

    def _episode_features(self, features, input_ids, attention_mask):
        if features is not None:  # cached features are float32: computed in the head's dtype
            return features.to(self.head.scale.dtype)
        if input_ids is None:
            raise ValueError("Pass either *_features (cached) or *_input_ids with *_attention_mask.")
        batch, size, length = input_ids.shape
        flat = self.encode(input_ids.reshape(-1, length), attention_mask.reshape(-1, length))
        return flat.reshape(batch, size, -1)

    # ------------------------------------------------------------------ episodes
    def forward(
        self,
        support_labels: torch.Tensor | None = None,
        support_features: torch.Tensor | None = None,
        query_features: torch.Tensor | None = None,
        query_labels: torch.Tensor | None = None,
        query_mask: torch.Tensor | None = None,
        support_input_ids: torch.Tensor | None = None,
        support_attention_mask: torch.Tensor | None = None,
        query_input_ids: torch.Tensor | None = None,
        query_attention_mask: torch.Tensor | None = None,
        class_name_features: torch.Tensor | None = None,
        inner_steps: int | None = None,
        episode_index: torch.Tensor | None = None,
        support_sentence_lengths: torch.Tensor | None = None,
        query_sentence_lengths: torch.Tensor | None = None,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
    ) -> SIBOutput:
        """Scores for the queries of a batch of episodes (`SIBOutput`).

        ``input_ids`` / ``attention_mask`` / ``token_type_ids`` are named only to refuse them: a plain batch of text
        (what transformers' text-classification pipeline passes) has no labelled examples to classify against.
        ``episode_index`` and ``*_sentence_lengths`` are bookkeeping for the trainer (named here so the Trainer's
        unused-column removal keeps them); the model does not need them."""
        if input_ids is not None or attention_mask is not None or token_type_ids is not None:
            raise ValueError(
                "SIB classifies queries against labelled examples given with them, so it takes episodes "
                "(support_labels with support_input_ids or support_features, and query_input_ids or query_features), "
                "not a plain batch of input_ids; transformers' text-classification and zero-shot pipelines cannot "
                "pass the examples. Call model.predict_labels({label: [example texts, ...]}, queries, tokenizer).")
        if support_labels is None:
            raise ValueError("SIB's forward needs support_labels: the class id of each support example of each "
                             "episode ([episodes, support size], -100 for padding).")
        support = self._episode_features(support_features, support_input_ids, support_attention_mask)
        query = self._episode_features(query_features, query_input_ids, query_attention_mask)
        if query_mask is None:
            query_mask = (query_labels != IGNORE_INDEX) if query_labels is not None else torch.ones(
                query.shape[:2], dtype=torch.bool, device=query.device)
        self._check_episode_shapes(support, support_labels, query, query_labels, query_mask)
        if not self.training:  # a NaN or all-zero feature would still come out as a class (training: the loss shows it)
            for name, features, real in (("support", support, support_labels != IGNORE_INDEX),
                                         ("query", query, query_mask.bool())):  # padding rows are 0 and not real
                if not torch.isfinite(features).all():
                    raise ValueError(f"The {name} features hold NaN or infinite values; SIB would still predict a "
                                     "class for them. Check the inputs (or the backbone's weights).")
                blank = (features.abs().amax(-1) == 0) & real
                if bool(blank.any()):
                    episode, row = blank.nonzero()[0].tolist()
                    raise ValueError(f"{int(blank.sum())} {name} example(s) have all-zero features (first: episode "
                                     f"{episode}, row {row}); the cosine classifier has no direction to score them and "
                                     "would still name a class. Check the inputs (features computed from real text, "
                                     "not placeholders).")
        self._check_labels(support_labels, "support_labels")
        unlabelled = ~(support_labels != IGNORE_INDEX).any(dim=1)
        if bool(unlabelled.any()):
            raise ValueError(f"Episode(s) {unlabelled.nonzero()[:, 0].tolist()[:10]} have no labelled support example "
                             "(support_labels all -100), so there is no class to score their queries against. Give "
                             "every episode at least one labelled support example per class.")
        if class_name_features is not None and self.config.use_label_names:
            support, support_labels = self._with_label_names(support, support_labels, class_name_features)
        if inner_steps is None:  # the configured K, for tasks of up to max_refined_classes labels
            steps, limit = self.config.inner_steps, self.config.max_refined_classes
        else:  # an explicit K, for every task
            steps, limit = check_number("", "inner_steps", inner_steps, INNER_STEPS), None
        logits, logits_init = self.head(support, support_labels, query, query_mask.bool(), steps, limit)
        if not self.training:  # finite features, yet NaN weights (a diverged run) would still name a class
            check_finite_tensor(torch.where(query_mask.bool().unsqueeze(-1), logits, 0), "SIB's query scores")
        loss = None
        if query_labels is not None:
            self._check_labels(query_labels, "query_labels")
            self._check_query_classes(support_labels, query_labels)
            loss = episode_mean_loss(logits, query_labels)
        return SIBOutput(loss=loss, logits=logits, logits_init=logits_init)

    def _with_label_names(self, support, support_labels, class_name_features):
        """The support set with each class's name feature as one more labelled example (`with_label_names`)."""
        names = class_name_features.to(support.dtype)
        classes = int(support_labels.max()) + 1
        if names.dim() != 3 or names.size(0) != support.size(0) or names.size(-1) != support.size(-1) \
                or names.size(1) < classes:
            raise ValueError(f"class_name_features must be [episodes, classes, {support.size(-1)}], one name feature "
                             f"per class id 0..{classes - 1} of each of the {support.size(0)} episode(s); got "
                             f"{tuple(names.shape)}.")
        if not torch.isfinite(names).all():
            raise ValueError("class_name_features hold NaN or infinite values; encode the label names with "
                             "hf_adapter_ext.meta.label_names.encode_label_names.")
        return with_label_names(support, support_labels, names)

    def _check_episode_shapes(self, support, support_labels, query, query_labels, query_mask) -> None:
        dim = self.config.feature_dim
        for name, features in (("support", support), ("query", query)):
            if features.dim() != 3 or features.size(-1) != dim:
                raise ValueError(f"{name} features must be [episodes, examples, {dim}] (the backbone's hidden size); "
                                 f"got {tuple(features.shape)}.")
        for name, labels, features in (("support_labels", support_labels, support),
                                       ("query_labels", query_labels, query), ("query_mask", query_mask, query)):
            if labels is not None and tuple(labels.shape) != tuple(features.shape[:2]):
                raise ValueError(f"{name} must be [episodes, examples] = {tuple(features.shape[:2])}, one value "
                                 f"per example; got {tuple(labels.shape)}.")

    def _check_labels(self, labels: torch.Tensor, name: str) -> None:
        if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
            raise TypeError(f"{name} must be an integer tensor of class ids (0, 1, ... and -100 for padding); got "
                            f"{labels.dtype}. Convert it with .long().")
        if self.config.any_number_of_classes:
            bad = labels[(labels != IGNORE_INDEX) & (labels < 0)]
            if bad.numel():
                raise ValueError(f"{name} holds class id {bad[0].item()}; use ids 0, 1, ... and -100 for padding.")
            return
        bad = labels[(labels != IGNORE_INDEX) & ((labels < 0) | (labels >= self.config.num_classes))]
        if bad.numel():
            raise ValueError(
                f"{name} holds class id {bad[0].item()}, but this model (grad_net='fixed') classifies "
                f"{self.config.num_classes} classes per episode (n_way={self.config.n_way}, level={self.config.level!r}); "
                f"use ids in [0, {self.config.num_classes}) and -100 for padding, or a model with "
                "grad_net='equivariant', which serves any number of classes."
            )

    def _check_query_classes(self, support_labels: torch.Tensor, query_labels: torch.Tensor) -> None:
        """A labelled query of a class its episode has no support example of: its loss would be infinite."""
        present = F.pad(self.head.episode_classes(support_labels), (0, 1))  # last column: ids beyond every class
        ids = query_labels.clamp(min=0, max=present.size(-1) - 1)
        orphan = (query_labels != IGNORE_INDEX) & ~present.gather(1, ids)
        if bool(orphan.any()):
            episode, position = orphan.nonzero()[0].tolist()
            raise ValueError(f"Episode {episode}: query {position} is labelled class {int(query_labels[episode, position])}, "
                             "which has no labelled support example in that episode. Give every class at least one "
                             "support example, or drop (or label -100) the queries of classes without one.")

    @torch.no_grad()
    def adapt(self, support, support_labels, query, tokenizer=None, inner_steps: int | None = None) -> torch.Tensor:
        """Classify a brand-new task's ``query`` from a labelled ``support`` set, at run time.

        ``support`` / ``query`` are texts (with ``tokenizer``) or feature tensors [S, D] / [Q, D];
        ``support_labels`` are class ids 0..C-1 (C = n_way for ``grad_net="fixed"``, any number otherwise).
        Returns the predicted class of each query.
        """
        return self._adapted_logits(support, support_labels, query, tokenizer, inner_steps).argmax(-1)

    @torch.no_grad()
    def predict_labels(self, examples: Mapping[str, Sequence[str]], queries: Sequence[str], tokenizer,
                       inner_steps: int | None = None) -> list[dict]:
        """Label names for ``queries`` from a few labelled ``examples`` per label, e.g.
        ``{"refund": ["I want my money back"], "card_lost": ["I lost my card"]}``: one
        ``{"label", "score"}`` per query, the score being SIB's probability after refinement on the queries
        (which also serve as its unlabelled set)."""
        if not isinstance(examples, Mapping):
            raise ValueError("predict_labels needs a dict of label name -> example texts, e.g. {'refund': ['I want "
                             f"my money back'], 'card_lost': ['I lost my card']}}; got {type(examples).__name__}.")
        if self.config.any_number_of_classes and len(examples) < 2:
            raise ValueError(f"predict_labels needs at least 2 labels to choose between; got {len(examples)}.")
        if not self.config.any_number_of_classes and len(examples) != self.config.n_way:
            raise ValueError(f"predict_labels: this model (grad_net='fixed') serves exactly n_way={self.config.n_way} "
                             f"labels; got {len(examples)}. Meta-train a model with grad_net='equivariant' (the "
                             "default), which serves any number of labels.")
        examples = {name: list(texts) if isinstance(texts, Iterable) and not isinstance(texts, (str, bytes, Mapping))
                    else texts for name, texts in examples.items()}  # numpy arrays, pandas or datasets columns
        empty = [name for name, texts in examples.items() if isinstance(texts, (str, bytes)) or not texts]
        if empty:
            raise ValueError(f"Labels {empty} have no examples (or a bare string instead of a list of texts): give "
                             "every label at least one example text in a list.")
        by_spelling: dict[str, str] = {}
        for name, texts in examples.items():
            if not isinstance(name, str) or not name.strip():
                raise ValueError(f"predict_labels: label {name!r} is not a name; key the examples by label names.")
            twin = by_spelling.setdefault(" ".join(name.casefold().split()), name)
            if twin != name:
                raise ValueError(f"predict_labels: the labels {twin!r} and {name!r} differ only in case or spaces, so "
                                 "they would be two classes (which a model reading label names cannot tell apart). "
                                 "Give each label once, with all its examples.")
            check_texts(texts, f"predict_labels: the examples of {name!r}")
        if isinstance(queries, AbstractSet):
            raise ValueError("predict_labels: queries is a set, whose order is arbitrary: the answers could not be "
                             "matched to their queries. Pass a list of texts.")
        queries = check_texts(queries, "predict_labels: queries")
        owners: dict[str, set] = {}
        for name, texts in examples.items():
            for text in texts:
                owners.setdefault(text.strip(), set()).add(name)
        clashes = {text: sorted(names) for text, names in owners.items() if len(names) > 1}
        if clashes:
            text, names = next(iter(clashes.items()))
            raise ValueError(f"predict_labels: {len(clashes)} example text(s) are given for more than one label, e.g. "
                             f"{text!r} for {names}; one text cannot teach two labels. Keep each example under one "
                             "label.")
        if tokenizer is None or not callable(tokenizer):
            raise TypeError("predict_labels needs the backbone's tokenizer (AutoTokenizer.from_pretrained(...)) as its "
                            f"third argument; got {type(tokenizer).__name__}.")
        names = list(examples)
        support = [text for texts in examples.values() for text in texts]
        labels = [i for i, texts in enumerate(examples.values()) for _ in texts]
        probabilities = self._adapted_logits(support, labels, list(queries), tokenizer, inner_steps,
                                             names=names).softmax(-1)
        score, best = probabilities.max(-1)
        return [{"label": names[i], "score": float(p)} for i, p in zip(best.tolist(), score.tolist())]

    def _adapted_logits(self, support, support_labels, query, tokenizer, inner_steps,
                        names: Sequence[str] | None = None) -> torch.Tensor:
        support, query = self._feature_rows(support, "support"), self._feature_rows(query, "query")
        named = next((label for label in support_labels if isinstance(label, str)), None) \
            if isinstance(support_labels, (list, tuple)) else None
        if named is not None:
            raise ValueError(f"support_labels must be class ids 0, 1, ...; got the name {named!r}. For label names, "
                             "call predict_labels({name: [example texts], ...}, queries, tokenizer).")
        if isinstance(support_labels, (str, bytes)) or not isinstance(support_labels, (Sequence, torch.Tensor,
                                                                                        np.ndarray)):
            raise WrongKindError(f"support_labels must be one class id per support example, e.g. [0, 1, 1]; got "
                                 f"{type(support_labels).__name__}.")
        labels = torch.as_tensor(support_labels, device=self.device)
        if labels.dim() != 1 or labels.dtype not in (torch.int64, torch.int32) or len(labels) != len(support):
            raise ValueError(f"support_labels must be one class id per support example ({len(support)}); got "
                             f"{list(labels.shape)} of {labels.dtype}.")
        if bool((labels < 0).any()):
            raise ValueError(f"support_labels must be class ids 0, 1, ...; got {labels.min().item()}.")
        classes = int(labels.max()) + 1 if self.config.any_number_of_classes and len(labels) else self.config.num_classes
        if classes < 2:  # one class: every query gets it, whatever it says
            raise ValueError("The support set has examples of one class only; a task needs at least 2 classes to "
                             "choose between (class ids 0 and 1 at least).")
        missing = sorted(set(range(classes)) - set(labels.tolist()))
        if missing:
            raise ValueError(
                f"The support set has no example of class(es) {missing} (of {classes}): every class id from 0 to the "
                "largest needs at least one labelled example, or SIB could still predict the empty ones."
            )
        if len(query) == 0:
            raise ValueError("The query set is empty: pass at least one text (or feature row) to classify.")
        was_training = self.training
        self.eval()
        support_f, query_f = (self._texts_to_features(x, tokenizer) for x in (support, query))
        name_f = (encode_label_names(self, tokenizer, names).to(self.device).unsqueeze(0)
                  if names is not None and self.config.use_label_names and names_say_something(names) else None)
        out = self(support_labels=labels.unsqueeze(0), support_features=support_f.unsqueeze(0),
                   query_features=query_f.unsqueeze(0), class_name_features=name_f, inner_steps=inner_steps)
        self.train(was_training)
        return out.logits[0]

    def _feature_rows(self, items, name: str):
        """``items`` as given when they are texts; feature rows (a tensor or a numeric numpy array) as a tensor,
        checked to be one task's [examples, dim]."""
        if isinstance(items, np.ndarray) and items.dtype.kind in "fiu":  # feature rows, not texts
            items = torch.from_numpy(items)
        if isinstance(items, torch.Tensor) and items.dim() != 2:
            raise ValueError(f"adapt() takes one task: {name} feature rows [examples, {self.config.feature_dim}]; got "
                             f"a tensor of shape {tuple(items.shape)}. For batches of episodes, call the model itself "
                             "(support_features=[episodes, examples, dim], ...).")
        return items

    def _texts_to_features(self, items, tokenizer) -> torch.Tensor:
        if isinstance(items, torch.Tensor):
            return items.to(self.device)
        if self.config.level == "token":  # texts would be mean-pooled: sentences, not the words it was trained on
            raise ValueError("This model is token-level (level='token'): it was meta-trained on one feature per word, "
                             "so whole texts cannot be classified with it. Pass word features instead (tensors from "
                             "hf_adapter_ext.meta.encode_words), or meta-train a level='sequence' model for texts.")
        if tokenizer is None:
            raise ValueError("adapt() got texts: pass the backbone's tokenizer too (tokenizer=...).")
        # length-sorted batches: one padded batch of 1000 queries costs 2-3x as much (benchmarks/predict_labels_speed)
        return encode_texts(self, tokenizer, list(items), desc="Encoding").to(self.device)

    # ------------------------------------------------------------------ persistence
    def model_card(self, metrics: dict | None = None, tags: list[str] | str | None = None) -> str:
        """The README.md that :meth:`save_pretrained` writes: the config, the step size learned, ``metrics``."""
        return render_sib_card(self.config, metrics, tags, float(self.head.log_inner_lr.detach().exp()))

    def save_pretrained(self, save_directory: str | os.PathLike, metrics: dict | None = None,
                        tags: list[str] | None = None, **kwargs) -> None:
        """transformers' ``save_pretrained`` plus a model card (with ``metrics`` and extra ``tags`` when given). A
        frozen, unshaped backbone is not copied: config.json names it (``backbone_name_or_path``) and
        ``from_pretrained`` loads it from there. A shaped or trained one is saved with the head."""
        check_save_directory(save_directory, "SIBForFewShotClassification.save_pretrained")
        push, kwargs = split_push_arguments(save_directory, kwargs)  # pushed below, once the card is written
        # what a frozen, referenced encoder must be when the head is loaded over it again
        self.config.backbone_digest = (None if self.config.stores_backbone
                                       else weights_digest(self.backbone, UNREAD_ENCODER_WEIGHTS))
        super().save_pretrained(save_directory, **kwargs)
        (Path(save_directory) / "README.md").write_text(self.model_card(metrics, tags))
        if push is not None and kwargs.get("is_main_process", True):
            self.push_to_hub(push.pop("repo_id"), metrics=metrics, tags=tags, **push)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, backbone: PreTrainedModel | None = None,
                        **kwargs):
        """transformers' ``from_pretrained`` (with ``output_loading_info=True``, a ``(model, loading_info)`` pair, as
        there); a frozen backbone comes from ``backbone`` when given, else from the ``backbone_name_or_path`` the
        config names."""
        check_model_location(pretrained_model_name_or_path, "SIBForFewShotClassification.from_pretrained: ",
                             "An extended tagger loads with NeuralAdapterModel.from_pretrained(source, "
                             "adapter_dir); a SIB model's folder holds config.json and model.safetensors.")
        model = super().from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)
        model, loading_info = model if isinstance(model, tuple) else (model, None)  # output_loading_info=True
        if model.config.stores_backbone and backbone is not None:
            raise ValueError(
                f"{pretrained_model_name_or_path} stores its own encoder (shaped_layers={model.config.shaped_layers}, "
                f"freeze_backbone={model.config.freeze_backbone}); a backbone passed in would replace the weights the "
                "head was meta-trained on (and one of another vocabulary would read every token id as another word). "
                "Load it without backbone=, and use the tokenizer of config.backbone_name_or_path.")
        if not model.config.stores_backbone:
            if backbone is None and not model.config.backbone_name_or_path:
                raise ValueError(f"{pretrained_model_name_or_path} holds a SIB head whose frozen backbone has no name "
                                 "or path to load it from: pass backbone=AutoModel.from_pretrained(...).")
            if backbone is None:  # ``revision`` names a revision of the head's repo, not of the encoder's
                hub = {k: kwargs[k] for k in ("cache_dir", "token", "local_files_only", "dtype",
                                              "torch_dtype") if k in kwargs}
                backbone = AutoModel.from_pretrained(model.config.backbone_name_or_path, **hub)
            model.config.set_backbone(backbone.config)
            where = model.config.backbone_name_or_path
            found = weights_digest(backbone, UNREAD_ENCODER_WEIGHTS)
            check_weights_digest(model.config.backbone_digest, found, "the encoder",
                                 "Load the encoder the head was meta-trained over"
                                 + (f" ({where}, at the same revision)." if where else "."))
            model.backbone = backbone.to(model.device).requires_grad_(False).eval()
        return model.eval() if loading_info is None else (model.eval(), loading_info)

    def push_to_hub(self, repo_id: str, *, commit_message: str | None = None, commit_description: str | None = None,
                    private: bool | None = None, token: str | bool | None = None, revision: str | None = None,
                    create_pr: bool = False, max_shard_size: int | str | None = "50GB",
                    tags: list[str] | None = None, metrics: dict | None = None) -> str:
        """transformers' ``push_to_hub`` arguments; uploads what ``save_pretrained`` writes, our model card included
        (the mixin would replace it with a generic one). A frozen backbone is not uploaded, so it must be named by a
        Hub id (``config.backbone_name_or_path``): a local path would publish a model nobody else can load."""
        path = self.config.backbone_name_or_path
        if not self.config.stores_backbone and hub_model_id(path) is None:
            raise ValueError(
                f"The frozen backbone is referenced as {path!r}, which others cannot load from the Hub, so the pushed "
                "model would not load. Set model.config.backbone_name_or_path to the encoder's Hub id (e.g. "
                "'sentence-transformers/all-MiniLM-L6-v2'), or push a model with freeze_backbone=False, which stores "
                "the encoder.")
        def save(folder: str) -> None:
            self.save_pretrained(folder, metrics=metrics, tags=tags, max_shard_size=max_shard_size)

        return push_folder_to_hub(save, repo_id, commit_message=commit_message, commit_description=commit_description,
                                  private=private, token=token, revision=revision, create_pr=create_pr)


AutoConfig.register(SIBConfig.model_type, SIBConfig, exist_ok=True)
AutoModel.register(SIBConfig, SIBForFewShotClassification, exist_ok=True)
