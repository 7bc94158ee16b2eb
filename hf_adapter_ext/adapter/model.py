"""`NeuralAdapterModel`: a frozen source token classifier + a target network that knows old and new labels."""

from __future__ import annotations

import contextlib
import copy
import os
import re
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from peft import LoraConfig, inject_adapter_in_model
from peft.tuners.tuners_utils import cast_adapter_dtype
from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING
from torch import nn
from torch.nn.modules.module import _IncompatibleKeys
from transformers import PretrainedConfig, PreTrainedModel
from transformers.pipelines.base import SUPPORTED_PEFT_TASKS
from transformers.utils import logging

from ..hub import PUSH_ARGUMENTS, push_folder_to_hub, render_adapter_card, split_push_arguments
from ..modeling.crf import CRF, is_tracing
from ..modeling.fingerprint import weights_digest
from ..modeling.layer_stacks import top_layers
from ..modeling.losses import check_labels, loss_denominator, token_classification_loss_sum
from ..modeling.outputs import CRFTokenClassifierOutput, label_scores, viterbi_logits
from ..modeling.tags import (
    parent_label_ids,
    source_labels,
    validate_label_parents,
    validate_new_labels,
    validate_source_labels,
)
from ..validation import (
    WrongKindError,
    check_batch_shape,
    check_finite_tensor,
    check_input_ids,
    check_inputs_embeds,
    check_save_directory,
    warn_idle_settings,
)
from . import anatomy
from .config import READ_ONLY_WITH, NeuralAdapterConfig
from .consolidation import consolidate
from .layers import ADAPTERS, expand_crf, expand_linear
from .persistence import load_adapter, save_adapter

# who asks for the top layers, and what to do instead
_TOP_ONLY = ("trainable='top'", "num_top_layers=0 to train the head (and adapter) alone, or trainable='all'")

logger = logging.get_logger(__name__)
# transformers' PEFT integration (`PeftAdapterMixin`, inherited from `PreTrainedModel`) injects PEFT tuners into a
# plain model and keeps them by name; an extended model is its own kind of adapter, so each of those entry points
# refuses by name instead of failing deep inside (delete_adapter asked for a newer PEFT).
def _refuse_peft_mixin(name: str):
    def refuse(self, *args, **kwargs):
        raise ValueError(
            f"An extended model does not take PEFT adapters through transformers' PEFT integration ({name}). "
            "Reload a saved extension with NeuralAdapterModel.from_pretrained(source, folder); to extend it "
            "further, consolidate it (model.consolidate(...)) and call get_adapter_model on the plain model. "
            "model.disable_adapter() (a context manager) or disable_adapters() / enable_adapters() switch between "
            "the source's own outputs and the extension's.")

    refuse.__name__ = refuse.__qualname__ = name
    refuse.__doc__ = f"Refused: transformers' PEFT integration ``{name}`` does not apply to an extended model."
    return refuse


def trained_dtype(source: nn.Module) -> torch.dtype:
    """The dtype the extension trains in: the source's, or float32 for a source in half precision (bf16 / fp16,
    loaded so to save memory), as PEFT keeps adapter weights: half-precision weights lose the small updates."""
    dtype = next((p.dtype for p in source.parameters() if p.is_floating_point()), torch.float32)
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def _is_lora_target(name: str, target_modules: str | Sequence[str]) -> bool:
    """Whether the module ``name`` (its full name in the encoder) is a LoRA target as PEFT reads ``target_modules``: a
    string is a regular expression over the full name, a list names the last part."""
    if isinstance(target_modules, str):
        return re.fullmatch(target_modules, name) is not None
    return name.rsplit(".", 1)[-1] in target_modules


class NeuralAdapterModel(PreTrainedModel):
    """Source model (frozen) → adapter → target head over old + new labels: a composite `PreTrainedModel`, in the
    shape of transformers' `EncoderDecoderModel`.

    The frozen source is *referenced*, never stored again: ``state_dict()`` holds only what trains (the target
    network's trainable weights, the adapter, the head and the CRF), so ``save_pretrained``, Trainer checkpoints
    and ``push_to_hub`` hold only that, and ``from_pretrained(source, folder)`` rebuilds the rest from the source.
    ``config`` is the source's config with the extended labels (what ``pipeline`` and ``Trainer`` read);
    ``peft_config`` is the :class:`NeuralAdapterConfig` (what ``adapter_config.json`` holds).

    ``forward`` takes the usual token-classification inputs plus an optional ``source_logits``
    (the frozen source's scores, precomputed with :func:`hf_adapter_ext.add_source_logits`) and
    returns a ``TokenClassifierOutput`` (with the pre-CRF ``emissions`` too). With a CRF head,
    the ``logits`` of a model in eval mode encode the Viterbi path (argmax = decoded label), so
    ``pipeline`` and ``Trainer.predict`` return CRF decodings; in train mode they are the emissions.

    Args:
        source: the trained token classifier to extend (any ``AutoModelForTokenClassification``); it is frozen.
        config: how to extend it.
    """

    config_class = PretrainedConfig  # the source's own config class, with the extended labels
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _supports_sdpa = True  # attention is the source's: whatever it was loaded with
    _supports_flash_attn = True
    # The loss divides by Trainer's ``num_items_in_batch`` (see modeling/losses.py): exact under gradient
    # accumulation and DDP.
    accepts_loss_kwargs = True

    def __init__(self, source: nn.Module, config: NeuralAdapterConfig):
        if not isinstance(source, nn.Module) or not hasattr(source, "config"):
            hint = (" Load it first: AutoModelForTokenClassification.from_pretrained(...)."
                    if isinstance(source, (str, os.PathLike)) else "")
            raise TypeError(f"The source must be a transformers token-classification model, got "
                            f"{type(source).__name__}.{hint}")
        kind = type(source).__name__
        if type(source).__module__.startswith("transformers.") and not kind.endswith("ForTokenClassification"):
            raise TypeError(f"The source is a {kind}, not a token classifier: a neural adapter extends per-token "
                            "labels. Load it with AutoModelForTokenClassification.from_pretrained(...).")
        if isinstance(source, NeuralAdapterModel):
            raise ValueError(
                "The source is itself an extended model. Consolidate it first (plain = model.consolidate(...)) and "
                "extend the plain model: inference then stays at one encoder pass per step instead of one more per "
                "extension."
            )
        if anatomy.has_tuner_layers(source):
            raise ValueError(
                f"The source {type(source).__name__} already carries PEFT/LoRA layers (an earlier target='lora' "
                "extension injects them into the model it is given). Pass a freshly loaded source model, or "
                "merge the LoRA weights first (peft's merge_and_unload)."
            )
        old_labels = source_labels(source.config)
        validate_source_labels(old_labels, config.annotation)
        validate_new_labels(old_labels, config.new_labels)
        if config.label_parents:
            validate_label_parents(old_labels, config.new_labels, config.label_parents)
        config = copy.deepcopy(config)
        config.old_labels = old_labels
        config.source_signature = anatomy.signature(source)
        config.source_digest = weights_digest(source, skip=("lora_",))
        config.base_model_name_or_path = config.base_model_name_or_path or getattr(source, "name_or_path", None)
        super().__init__(extended_config(source.config, config.labels))
        self.peft_config = config
        self.num_old_labels = len(old_labels)
        self._adapter_disabled = False
        self.has_trained = False  # set by a training step or by loading a saved adapter; consolidate() needs it

        for param in source.parameters():
            param.requires_grad_(False)
        self.source = source.eval()

        labels = config.labels
        self.name_or_path = getattr(source, "name_or_path", "")

        source_head = getattr(source, anatomy.output_layer_name(source, self.num_old_labels))
        encoder = anatomy.encoder_of(source)
        dtype = trained_dtype(source)  # of every part that trains
        if config.target == "copy":
            self.target_encoder = copy.deepcopy(encoder).to(dtype)
            self.target_encoder.requires_grad_(True)
            if config.trainable == "top":
                self._freeze_below_top(self.target_encoder)
        elif config.target == "lora":
            self._inject_lora(encoder)
        # LoRA layers switched off for the source pass (found once: walking the modules each call is slow)
        self._lora_layers = anatomy.tuner_layers(encoder) if config.target == "lora" else []
        dropout = getattr(source.config, "hidden_dropout_prob", getattr(source.config, "dropout", 0.1))
        self.dropout = nn.Dropout(dropout if isinstance(dropout, float) else 0.1)
        parents = parent_label_ids(labels, self.num_old_labels, config.label_parents or {})
        copy_from = parents if config.subtype_init == "parent" else None  # subtypes start as their parents
        copy_rows = copy_from[self.num_old_labels:] if copy_from is not None else None
        self.classifier = expand_linear(source_head, len(config.new_labels), copy_rows)
        adapter_cls = ADAPTERS.get(config.adapter)
        self.adapter = adapter_cls(self.num_old_labels, len(labels), config.adapter_hidden_size) if adapter_cls else None
        self.crf = (expand_crf(anatomy.crf_of(source), labels, config.bio_constraints, copy_from)
                    if config.head == "crf" else None)
        # The parts that train meet in one dtype (a source in bf16 stays so, frozen; see trained_dtype)
        for part in (self.classifier, self.adapter, self.crf):
            if part is not None:
                part.to(dtype)
        # Distillation compares the source's distribution with the target's collapsed onto the source's labels:
        # a subtype's mass counts for its parent (label_parents), a new label without a parent stays its own
        # column, where the source's mass is zero.
        columns = list(range(self.num_old_labels)) + [i for i, p in enumerate(parents) if p < 0]
        membership = torch.full((len(labels), len(columns)), float("-inf"))
        for i, parent in enumerate(parents):
            membership[i, columns.index(parent if parent >= 0 else i)] = 0.0
        self.register_buffer("_collapse", membership, persistent=False)
        subtypes = [i for i, p in enumerate(parents) if i >= self.num_old_labels and p >= 0]
        self.register_buffer("_subtype_ids", torch.tensor(subtypes, dtype=torch.long), persistent=False)
        # Each label's entity opener: I-X -> B-X, every other label itself (see _open_cut_entities).
        label2id = {label: i for i, label in enumerate(labels)}
        openers = [label2id.get(f"B-{label[2:]}", i) if label.startswith("I-") else i for i, label in enumerate(labels)]
        self.register_buffer("_opener_ids", torch.tensor(openers, dtype=torch.long), persistent=False)
        self._warned_parents_idle = False  # label_parents on fully labelled data without rehearsal: warned once
        # Distilled tokens (`new_only` data, rehearsal text) with a CRF head and a source without one: the source's
        # scores are decoded under the target's BIO constraints to give pseudo-labels. Built once here, not at
        # every training step; its zero transition weights are constants.
        needs_decoder = self.crf is not None and anatomy.crf_of(source) is None
        self.source_path_decoder = (CRF.for_labels(old_labels, config.bio_constraints).requires_grad_(False)
                                    if needs_decoder else None)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        """Nothing to initialise: every part starts from the source (copies, grown layers) or sets its own values."""

    # ------------------------------------------------------------------ construction helpers
    def _freeze_below_top(self, encoder: nn.Module) -> None:
        encoder.requires_grad_(False)
        for layer in top_layers(encoder, self.peft_config.num_top_layers, *_TOP_ONLY):
            layer.requires_grad_(True)

    def _inject_lora(self, encoder: nn.Module) -> None:
        cfg = self.peft_config
        target_modules = (
            cfg.lora_target_modules
            or TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING.get(getattr(self.source.config, "model_type", None))
            or anatomy.attention_projections(encoder)
        )
        if not target_modules:
            raise ValueError(
                f"No default LoRA target modules for model_type={self.source.config.model_type!r}; "
                "set NeuralAdapterConfig.lora_target_modules, e.g. ['query', 'value']."
            )
        if cfg.trainable == "top":  # the projections inside the top layers, by full name: PEFT's layers_to_transform
            # finds layers by a name pattern that misses stacks at the encoder's root (ModernBERT's ``layers``)
            inside = {id(module) for layer in top_layers(encoder, cfg.num_top_layers, *_TOP_ONLY)
                      for module in layer.modules()}
            target_modules = [name for name, module in encoder.named_modules()
                              if id(module) in inside and _is_lora_target(name, target_modules)]
            if not target_modules:
                raise ValueError(f"trainable='top' with num_top_layers={cfg.num_top_layers} leaves LoRA no projection "
                                 "to wrap; give num_top_layers >= 1, or trainable='all'.")
        lora = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                          target_modules=target_modules if isinstance(target_modules, str) else list(target_modules))
        inject_adapter_in_model(lora, encoder)
        cast_adapter_dtype(encoder, "default", autocast_adapter_dtype=True)  # float32 LoRA on a half-precision source

    # ------------------------------------------------------------------ forward
    def _trained_encoder(self) -> nn.Module:
        """The encoder that trains: the copy, or the shared one (which carries LoRA, or is frozen)."""
        return self.target_encoder if self.peft_config.target == "copy" else anatomy.encoder_of(self.source)

    def get_input_embeddings(self) -> nn.Module:
        """The trained encoder's embeddings (activation checkpointing hooks them, as for any transformers model)."""
        return self._trained_encoder().get_input_embeddings()

    def train(self, mode: bool = True):
        super().train(mode)
        self.source.eval()  # the source never drops out: its scores are a fixed function of the input
        return self

    @torch.no_grad()
    def source_outputs(self, inputs: dict, hidden: bool = False, attentions: bool = False):
        """The frozen source's output (no dropout: it always stays in eval mode; no LoRA; no gradient) for model
        ``inputs`` (``input_ids``, ``attention_mask``, ...)."""
        if not isinstance(inputs, Mapping):
            raise WrongKindError(f"source_outputs takes the model inputs as a dict (input_ids, attention_mask, ...); "
                                 f"got {type(inputs).__name__}.")
        with anatomy.lora_disabled(self._lora_layers):
            return anatomy.run_with_outputs(self.source, inputs, hidden, attentions)

    def _features_and_source_logits(self, inputs: dict, source_logits, need_source: bool, hidden: bool = False,
                                    attentions: bool = False):
        """The features the head reads, the source's scores, and the output of the encoder that made the features
        (the target's; the source's with a frozen target), with its hidden states / attentions if asked for."""
        target = self.peft_config.target
        if target == "frozen":  # one encoder pass gives both the source's scores and the features
            out = self.source_outputs(inputs, hidden=True, attentions=attentions)
            return out.hidden_states[-1], label_scores(out) if source_logits is None else source_logits, out
        if need_source and source_logits is None:
            source_logits = label_scores(self.source_outputs(inputs))
        out = anatomy.run_with_outputs(self._trained_encoder(), inputs, hidden, attentions)
        return out[0], source_logits, out

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        source_logits: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        rehearsal: torch.Tensor | None = None,
        num_items_in_batch: int | torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        return_dict: bool | None = None,
    ) -> CRFTokenClassifierOutput | tuple:
        """``rehearsal`` ([batch], from :func:`~hf_adapter_ext.add_rehearsal`) marks rows of unlabelled text from
        the source's world: every token there learns the source's output, as ``new_only`` O tokens do.

        ``output_hidden_states`` / ``output_attentions`` / ``return_dict`` mean what they mean for a transformers
        token classifier; the hidden states and attentions are those of the encoder whose features the head reads
        (the target network's, or the frozen source's with ``target="frozen"``)."""
        if not is_tracing():
            self._check_inputs(input_ids, attention_mask, inputs_embeds, source_logits, token_type_ids)
        if labels is None and self.training and torch.is_grad_enabled() and not is_tracing():
            self._refuse_training_without_labels(rehearsal)
        reference = input_ids if input_ids is not None else inputs_embeds
        with anatomy.explained_overlong_input(self.config, reference.size(1)):
            out = self._forward(input_ids, attention_mask, token_type_ids, labels, source_logits, inputs_embeds,
                                rehearsal, num_items_in_batch, bool(output_hidden_states), bool(output_attentions))
        use_dict = self.config.return_dict if return_dict is None else return_dict
        return out if use_dict else out.to_tuple()

    def _forward(self, input_ids, attention_mask, token_type_ids, labels, source_logits, inputs_embeds, rehearsal,
                 num_items_in_batch, hidden: bool, attentions: bool) -> CRFTokenClassifierOutput:
        if self._adapter_disabled:
            inputs = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids,
                      "inputs_embeds": inputs_embeds}
            return self.source_outputs(inputs, hidden, attentions)
        reference = input_ids if input_ids is not None else inputs_embeds
        if attention_mask is None:
            attention_mask = torch.ones(reference.shape[:2], dtype=torch.long, device=reference.device)
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids,
                  "inputs_embeds": inputs_embeds}
        distilled_rows = self._distilled_rows(labels, rehearsal)
        if self.training and labels is not None and self._subtype_ids.numel() and rehearsal is None \
                and self.peft_config.annotation == "full" and not self._warned_parents_idle:
            self._warned_parents_idle = True
            logger.warning(
                "label_parents keeps the parents' probability only where the source is distilled (rehearsal text "
                "or annotation='new_only'); on fully labelled data alone the new subtypes start as their parents "
                "but will take over from them on text outside this domain. Add plain sentences from the source's "
                "world with add_rehearsal(train, sentences, model, tokenizer).")
        distill = distilled_rows is not None
        need_source = self.adapter is not None or distill
        features, source_logits, encoded = self._features_and_source_logits(inputs, source_logits, need_source,
                                                                            hidden, attentions)
        emissions = self.classifier(self.dropout(features).to(self.classifier.weight.dtype))
        if self.adapter is not None:
            emissions = emissions + self.adapter(source_logits.to(emissions.dtype), attention_mask)

        loss = None
        if labels is not None:
            labels = check_labels(labels, emissions, self.config.num_labels, self.config.id2label, attention_mask)
            loss = self._loss(emissions, labels, attention_mask, source_logits if distill else None,
                              distilled_rows, num_items_in_batch)
        logits = emissions
        if self.crf is not None and not self.training:  # the Viterbi decoding refuses NaN scores itself
            logits = viterbi_logits(self.crf, emissions, attention_mask)
        elif not self.training and not is_tracing():  # NaN scores would be tagged: argmax reads them as label 0, "O"
            check_finite_tensor(emissions, "The extended model's scores")
        return CRFTokenClassifierOutput(loss=loss, logits=logits, emissions=emissions,
                                        hidden_states=encoded.hidden_states if hidden else None,
                                        attentions=encoded.attentions if attentions else None)

    def _refuse_training_without_labels(self, rehearsal) -> None:
        """transformers' Trainer takes the labels away from the model when ``label_smoothing_factor > 0`` (or a
        ``compute_loss_func`` is set) and puts a cross-entropy on the raw scores instead. That is this model's loss
        only for a linear head without distillation: with a CRF, ``annotation="new_only"`` or rehearsal rows it
        would train something else without a word."""
        left_out = [what for what, used in (("the CRF", self.crf is not None),
                                            ("the source's distillation", self.peft_config.annotation == "new_only"),
                                            ("the rehearsal rows", rehearsal is not None)) if used]
        if left_out:
            raise ValueError(
                f"The extended model is training (train mode, gradients on) but got no labels, so its loss, which "
                f"includes {' and '.join(left_out)}, cannot be computed. transformers' Trainer withholds the labels "
                "when label_smoothing_factor > 0 or compute_loss_func is set, and trains a plain cross-entropy on the "
                "raw scores instead: set label_smoothing_factor=0 and leave compute_loss_func unset. To score text, "
                "call model.eval() or run under torch.no_grad().")

    def _check_inputs(self, input_ids, attention_mask, inputs_embeds, source_logits, token_type_ids=None) -> None:
        """Shapes, dtypes and ids, once at the public boundary, with messages that say what to pass."""
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("Pass exactly one of input_ids and inputs_embeds.")
        if input_ids is not None:
            check_input_ids(input_ids, getattr(self.config, "vocab_size", None), "the source's")
        if inputs_embeds is not None:
            check_inputs_embeds(inputs_embeds, getattr(self.config, "hidden_size", None))
        shape = check_batch_shape((input_ids if input_ids is not None else inputs_embeds).shape[:2])
        types = getattr(self.config, "type_vocab_size", None)
        if token_type_ids is not None and types and token_type_ids.numel() and \
                not (0 <= int(token_type_ids.min()) and int(token_type_ids.max()) < types):
            raise ValueError(f"token_type_ids must lie in [0, {types}) for this source (its type_vocab_size); got "
                             f"values up to {int(token_type_ids.max())}. Use the source model's own tokenizer.")
        if attention_mask is not None and (not isinstance(attention_mask, torch.Tensor)
                                           or tuple(attention_mask.shape) != shape):
            found = tuple(attention_mask.shape) if isinstance(attention_mask, torch.Tensor) else type(attention_mask)
            raise ValueError(f"attention_mask must have the inputs' shape {shape}; got {found}.")
        if source_logits is not None:
            expected = (*shape, self.num_old_labels)
            if not isinstance(source_logits, torch.Tensor) or not source_logits.is_floating_point():
                found = source_logits.dtype if isinstance(source_logits, torch.Tensor) else type(source_logits).__name__
                raise TypeError(f"source_logits must be a float tensor {expected} (the frozen source's scores, e.g. "
                                f"from add_source_logits); got {found}.")
            if tuple(source_logits.shape) != expected:
                raise ValueError(f"source_logits have shape {tuple(source_logits.shape)}; expected {expected} "
                                 "(batch, length, the source's label count). Recompute them with add_source_logits "
                                 "for this source and tokenizer.")
            check_finite_tensor(source_logits, "source_logits")

    def _distilled_rows(self, labels, rehearsal) -> torch.Tensor | None:
        """Rows whose O tokens learn the source's output: every row with ``new_only`` data, else the rehearsal
        rows; None when there are none (no source pass is needed for the loss)."""
        if labels is None:
            return None
        if self.peft_config.annotation == "new_only":
            return torch.ones(labels.size(0), dtype=torch.bool, device=labels.device)
        if rehearsal is None:
            return None
        rows = rehearsal.to(device=labels.device, dtype=torch.bool).reshape(-1)
        if rows.numel() != labels.size(0):
            raise ValueError(f"rehearsal has {rows.numel()} entries for a batch of {labels.size(0)} rows; pass one "
                             "flag per row (add_rehearsal makes the column).")
        return rows if bool(rows.any()) else None

    def _loss(self, emissions, labels, attention_mask, source_logits, distilled_rows, num_items_in_batch):
        """(task loss + distillation) summed over the batch, divided by the step's labelled-token count."""
        self.has_trained = self.has_trained or self.training
        denominator = loss_denominator(labels, num_items_in_batch)
        distill_loss = 0.0
        if source_logits is not None:
            labels, distill_loss = self._distill(emissions, labels, source_logits, attention_mask, distilled_rows)
        task_loss = token_classification_loss_sum(emissions, labels, attention_mask, self.crf)
        return (task_loss + self.peft_config.distill_weight * distill_loss) / denominator

    def _distill(self, emissions, labels, source_logits, attention_mask, distilled_rows):
        """Learn the source's view of the old types on the O tokens of ``distilled_rows`` (``new_only`` data,
        rehearsal text), and, with ``label_parents``, on their subtype tokens too.

        Hard part: O labels become the source's prediction (an old entity, or O): its Viterbi path when it
        has a CRF, since a CRF's emissions alone are no per-token classifier; otherwise the best path under its
        per-token log-probabilities that the target's BIO constraints allow (a plain argmax can say O -> I-X,
        which the target CRF forbids, and a forbidden gold path costs ~1e4 in the loss).
        Soft part: KL from the source's tempered distribution to the target's, collapsed onto the source's
        labels (a subtype's probability counts for its parent; a new label without a parent keeps its own
        column, where the source puts no mass), summed over those tokens. A subtype token ("politician") keeps
        its gold label and learns only that parent + subtypes together hold the source's parent probability.
        """
        outside = self.config.label2id.get("O", 0)
        rows = distilled_rows[:, None]
        on_outside = (labels == outside) & rows
        soft = on_outside
        if self._subtype_ids.numel():
            soft = soft | (torch.isin(labels, self._subtype_ids) & rows)
        source_logits = source_logits.to(emissions.dtype)
        source_crf = anatomy.crf_of(self.source)
        if source_crf is not None:
            predicted = source_crf.decode(source_logits, attention_mask).clamp(min=0)
        elif self.source_path_decoder is not None:
            predicted = self.source_path_decoder.decode(F.log_softmax(source_logits.float(), dim=-1),
                                                        attention_mask).clamp(min=0)
        else:
            predicted = source_logits.argmax(-1)
        labels = self._open_cut_entities(torch.where(on_outside, predicted, labels), on_outside)
        temperature = self.peft_config.distill_temperature
        teacher = F.softmax(source_logits[soft].float() / temperature, dim=-1)
        teacher = F.pad(teacher, (0, self._collapse.size(1) - self.num_old_labels))
        student = F.log_softmax(emissions[soft].float() / temperature, dim=-1)
        collapsed = torch.logsumexp(student[:, :, None] + self._collapse[None], dim=1)
        kl = F.kl_div(collapsed, teacher, reduction="sum") * temperature**2  # summed: divided with the task loss
        return labels, kl

    def _open_cut_entities(self, labels: torch.Tensor, replaced: torch.Tensor) -> torch.Tensor:
        """The source's path filled in around gold tokens (``new_only`` data) can continue an entity across one:
        gold 'B-LOC', then the source's 'I-ORG' from an ORG it saw over both words. The CRF forbids that step, so the
        merged path would cost ~1e4; such a filled-in 'I-X' opens its entity with 'B-X' instead. One pass suffices:
        a changed label keeps its type, and what may follow a label depends only on its type."""
        if self.crf is None or bool(self.crf.allowed.all()):
            return labels
        previous, current = labels[:, :-1].clamp(min=0), labels[:, 1:].clamp(min=0)
        broken = (labels[:, :-1] >= 0) & (labels[:, 1:] >= 0) & ~self.crf.allowed[previous, current] & replaced[:, 1:]
        if not bool(broken.any()):
            return labels
        return torch.cat([labels[:, :1], torch.where(broken, self._opener_ids[current], labels[:, 1:])], dim=1)

    # ------------------------------------------------------------------ persistence
    def _trained_state_names(self) -> set[str]:
        """What cannot be rebuilt from the source: every trainable parameter, plus the new modules' buffers."""
        names = {name for name, p in self.named_parameters() if p.requires_grad}
        for prefix in ("classifier", "adapter", "crf"):
            module = getattr(self, prefix)
            if module is not None:
                names.update(f"{prefix}.{k}" for k in module.state_dict())
        return names

    def state_dict(self, *args, destination=None, prefix: str = "", keep_vars: bool = False):
        """Only what trains (see :meth:`_trained_state_names`): the frozen source is referenced, not owned, so
        Trainer checkpoints, ``accelerate`` states and saved folders never store it again (PEFT's
        ``get_peft_model_state_dict``, as the module's own state)."""
        full = super().state_dict(prefix=prefix, keep_vars=keep_vars)
        own = self._trained_state_names()
        destination = OrderedDict() if destination is None else destination
        destination.update((k, v) for k, v in full.items() if k[len(prefix):] in own)
        return destination

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """Load what :meth:`state_dict` holds; the source's weights are the source's (``missing_keys`` and
        ``unexpected_keys`` are reckoned against the trained state only)."""
        own = self._trained_state_names()
        missing, unexpected = sorted(own - set(state_dict)), sorted(set(state_dict) - own)
        if strict and (missing or unexpected):
            raise RuntimeError(f"This state does not fit the extended model: missing {missing[:5]}, unexpected "
                               f"{unexpected[:5]}. Load saved folders with NeuralAdapterModel.from_pretrained(source, "
                               "folder).")
        super().load_state_dict({k: v for k, v in state_dict.items() if k in own}, strict=False, assign=assign)
        return _IncompatibleKeys(missing, unexpected)

    def adapter_state_dict(self) -> dict[str, torch.Tensor]:
        """:meth:`state_dict` as detached, contiguous tensors: what ``adapter_model.safetensors`` holds."""
        return {k: v.detach().contiguous() for k, v in self.state_dict().items()}

    def trainable_parameters(self) -> tuple[int, int]:
        trainable = sum(p.numel() for p in self.parameters() if p.requires_grad)
        return trainable, sum(p.numel() for p in self.parameters())

    def consolidate(self, train_dataset, tokenizer, unlabelled=None, args=None, eval_dataset=None,
                    path_weight: float = 0.5, transition_weight: float = 0.0):
        """A plain transformers model of the source's class (linear head over old + new labels) that gives this
        extended model's predictions at the source's cost (one encoder pass), and loads without hf_adapter_ext:
        PEFT's ``merge_and_unload`` for a neural adapter.

        It starts from the target network and is distilled on ``train_dataset`` (tokenized, as for training)
        plus ``unlabelled`` text (strings or a tokenized dataset) to match this model's per-token label
        distribution (CRF posterior marginals, or the softmax), mixed with ``path_weight`` of its decoded
        prediction (Viterbi path or argmax) as one-hot targets, so that the student's argmax follows the
        teacher's prediction (0.5, chosen on CoNLL validation over 3 seeds against 0:
        benchmarks/results/consolidation_path_weight.md). ``args``: `TrainingArguments` for the
        distillation (default ``consolidation_training_defaults``: at most 1500 steps at lr 5e-5, batch 16).
        With ``eval_dataset`` (labelled, the validation set) the student's entity F1 is measured every 50
        steps, the best step is kept and training stops after 6 evaluations without gain, as an extension
        trains; the report then compares both models' F1 on it and counts BIO-invalid spans, what dropping the
        CRF costs. ``transition_weight`` adds to each token's loss that many times the probability, under the
        student's own per-token distributions, that its tag may not follow the previous token's under BIO: the
        plain model has no CRF to forbid such transitions, so the loss teaches it to avoid them. Save it with
        :func:`hf_adapter_ext.save_consolidated` (weights, tokenizer, a card that says how it was made).
        """
        return consolidate(self, train_dataset, tokenizer, unlabelled=unlabelled, args=args, eval_dataset=eval_dataset,
                           path_weight=path_weight, transition_weight=transition_weight)

    # PeftModel's everyday names
    def get_nb_trainable_parameters(self) -> tuple[int, int]:
        return self.trainable_parameters()

    def print_trainable_parameters(self) -> None:
        trainable, total = self.trainable_parameters()
        print(f"trainable params: {trainable:,d} || all params: {total:,d} || trainable%: {100 * trainable / total:.4f}")

    def get_base_model(self) -> nn.Module:
        """The frozen source model (PEFT's name for the model an adapter is attached to)."""
        return self.source

    load_adapter = _refuse_peft_mixin("load_adapter")
    add_adapter = _refuse_peft_mixin("add_adapter")
    set_adapter = _refuse_peft_mixin("set_adapter")
    delete_adapter = _refuse_peft_mixin("delete_adapter")
    active_adapters = _refuse_peft_mixin("active_adapters")
    get_adapter_state_dict = _refuse_peft_mixin("get_adapter_state_dict")
    enable_peft_hotswap = _refuse_peft_mixin("enable_peft_hotswap")

    def merge_adapter(self, *args, **kwargs):
        """PEFT's in-place merge; no weights of the source can hold an extension (:meth:`merge_and_unload`)."""
        self.merge_and_unload()

    def unload(self) -> nn.Module:
        """The source model without the extension, as PEFT's ``unload`` returns the base model: here the frozen
        source, unchanged (old labels only)."""
        return self.get_base_model()

    def merge_and_unload(self, *args, **kwargs):
        """PEFT folds a LoRA update into the base weights; an extension adds a network beside the source, which no
        weights of the source can hold. :meth:`consolidate` distils it into one plain model instead."""
        raise ValueError("An extended model cannot be merged into the source's weights: it runs a target network and "
                         "an adapter beside the source. Distil it into one plain transformers model with "
                         "model.consolidate(train_dataset, tokenizer) (hf_adapter_ext.save_consolidated to save it).")

    def resize_token_embeddings(self, *args, **kwargs):
        """The frozen source and the target read the same token ids, so the vocabulary is the source's."""
        raise ValueError("The extended model reads the source's vocabulary (the frozen source and the target share "
                         "token ids). Resize the source before extending it: source.resize_token_embeddings("
                         "len(tokenizer)), then get_adapter_model(source, config).")

    @contextlib.contextmanager
    def disable_adapter(self):
        """Within the block, ``forward`` returns the frozen source's own outputs (old labels only), as
        ``PeftModel.disable_adapter`` does: compare old and extended predictions on the same inputs."""
        self.disable_adapters()
        try:
            yield
        finally:
            self.enable_adapters()

    def disable_adapters(self) -> None:
        """From now on ``forward`` returns the frozen source's own outputs (old labels only), as transformers'
        ``disable_adapters`` does for a model with PEFT adapters, until :meth:`enable_adapters`."""
        self._adapter_disabled = True

    def enable_adapters(self) -> None:
        """Undo :meth:`disable_adapters`: ``forward`` returns the extension's outputs (old + new labels) again."""
        self._adapter_disabled = False

    def model_card(self, tags: list[str] | str | None = None) -> str:
        """The README.md that :meth:`save_pretrained` writes (``tags`` added to its own)."""
        return render_adapter_card(self.peft_config, tags)

    def save_pretrained(self, save_directory: str | os.PathLike, metrics: dict | None = None,
                        is_main_process: bool = True, state_dict: dict | None = None, **kwargs) -> None:
        """Write PEFT's layout: ``adapter_config.json``, ``adapter_model.safetensors`` (what trains) and a
        ``README.md`` model card; plus ``model.safetensors``, a hard link to the same bytes, under the name
        `Trainer` looks for (``load_best_model_at_end``, ``resume_from_checkpoint``).

        Args:
            save_directory: the folder (created if missing).
            metrics: evaluation results for the model card and ``adapter_config.json``.
            is_main_process: as in transformers: only the main process writes (Trainer passes it under DDP).
            state_dict: the state to write (Trainer passes :meth:`state_dict`); only the trained part is kept.
            **kwargs: ``push_to_hub=True`` (with ``repo_id``, ``commit_message``, ``private``, ``token``, ...)
                uploads the folder after writing it, as in transformers. The arguments Trainer, accelerate and PEFT
                pass (``safe_serialization``, ``max_shard_size``, ``save_function``, ``selected_adapters``, ...)
                need nothing: the files are always safetensors, and small. Any other argument is refused.
        """
        push, kwargs = split_push_arguments(save_directory, kwargs)
        unknown = sorted(set(kwargs) - SAVE_ARGUMENTS_NEEDING_NOTHING)
        if unknown:
            raise TypeError(f"NeuralAdapterModel.save_pretrained got unexpected arguments {unknown}; it takes "
                            f"save_directory, metrics, is_main_process, state_dict, push_to_hub (with "
                            f"{', '.join(PUSH_ARGUMENTS)}) and {sorted(SAVE_ARGUMENTS_NEEDING_NOTHING)}.")
        if not is_main_process:
            return
        own = self._trained_state_names()
        state = {k: v.detach().contiguous() for k, v in (self.state_dict() if state_dict is None else state_dict).items() if k in own}
        save_adapter(self.peft_config, state, check_save_directory(save_directory, "save_pretrained"), metrics=metrics)
        if push is not None:
            self.push_to_hub(push.pop("repo_id"), metrics=metrics, **push)

    @classmethod
    def from_pretrained(cls, source, adapter_dir_or_repo: str | os.PathLike | None = None,
                        config: NeuralAdapterConfig | None = None, is_trainable: bool = False,
                        **hub_kwargs) -> NeuralAdapterModel:
        """Rebuild a saved extended model on ``source``; ``from_pretrained(adapter_dir)`` alone loads the source the
        adapter names (``base_model_name_or_path``), as PEFT's ``AutoPeftModel`` does.

        Args:
            source: the source model, or its Hub id / folder (loaded with ``AutoModelForTokenClassification``).
            adapter_dir_or_repo: a folder written by :meth:`save_pretrained`, a Trainer checkpoint
                (``out/checkpoint-500``), or a Hub repo of either.
            config: only to convert a Trainer checkpoint written by hf_adapter_ext 0.1 (the whole model's
                weights, no ``adapter_config.json``): the config it was trained with.
            is_trainable: as in PEFT: return the model in training mode, to train it further (by default it is
                in eval mode, ready for inference).
            **hub_kwargs: ``huggingface_hub`` download arguments (``revision``, ``token``, ``cache_dir``, ...);
                any other keyword is refused. ``revision`` is the adapter repo's; a source given by id loads its
                default revision (pass the loaded source for another), and a source whose weights differ from the
                trained-on ones is refused.
        """
        return load_adapter(cls, source, adapter_dir_or_repo, config=config, is_trainable=is_trainable, **hub_kwargs)

    def push_to_hub(self, repo_id: str, *, metrics: dict | None = None, **hub_kwargs) -> str:
        """Upload what :meth:`save_pretrained` writes (our model card included: the mixin would replace it with a
        generic one), with transformers' ``push_to_hub`` arguments (``commit_message``, ``private``, ``token``,
        ``revision``, ``create_pr``, ``commit_description``). Returns the commit (or PR) URL."""
        def save(folder: str) -> None:
            save_adapter(self.peft_config, self.adapter_state_dict(), Path(folder), metrics=metrics,
                         trainer_link=False)

        return push_folder_to_hub(save, repo_id, **hub_kwargs)


# save_pretrained arguments of transformers, accelerate and PEFT that the adapter's few safetensors files need no
# action for (Trainer passes safe_serialization; accelerate save_function; PEFT selected_adapters).
SAVE_ARGUMENTS_NEEDING_NOTHING = frozenset({"safe_serialization", "max_shard_size", "save_function",
                                            "selected_adapters", "save_embedding_layers", "save_peft_format"})


def extended_config(source_config: PretrainedConfig, labels: list[str]) -> PretrainedConfig:
    """The source's config with the extended label set: what ``pipeline``, ``Trainer`` and metrics read."""
    config = copy.deepcopy(source_config)
    config.id2label = dict(enumerate(labels))
    config.label2id = {label: i for i, label in enumerate(labels)}
    config.num_labels = len(labels)
    config.keys_to_ignore_at_inference = ["emissions", "hidden_states", "attentions"]
    return config


def check_extended_model(model, where: str) -> None:
    """Refuse anything but an extended model where one is needed (its frozen source and label layout are read)."""
    if not isinstance(model, NeuralAdapterModel):
        raise TypeError(f"{where} needs the extended model (get_adapter_model(...) or NeuralAdapterModel."
                        f"from_pretrained(...)), got {type(model).__name__}.")


def get_adapter_model(source_model: nn.Module, config: NeuralAdapterConfig) -> NeuralAdapterModel:
    """Extend ``source_model`` (any ``AutoModelForTokenClassification``) to ``config.new_labels``."""
    if not isinstance(config, NeuralAdapterConfig):
        raise ValueError(f"get_adapter_model expects a NeuralAdapterConfig, got {type(config).__name__}.")
    warn_idle_settings("NeuralAdapterConfig", config, READ_ONLY_WITH)
    return NeuralAdapterModel(source_model, config)


def _register_for_token_classification_pipelines() -> None:
    """Name NeuralAdapterModel among the PEFT-style models transformers' ``pipeline("token-classification")``
    accepts, as PEFT's own `PeftModelForTokenClassification` is. An extended model's config is its source's (a
    BertConfig, ...), so it cannot join the Auto mapping, and the pipeline would otherwise log an error that the
    model is not supported before tagging with it correctly."""
    for task in ("token-classification", "ner"):  # pipeline("ner") keeps its alias as the task it checks
        accepted = SUPPORTED_PEFT_TASKS.setdefault(task, [])
        if NeuralAdapterModel.__name__ not in accepted:
            accepted.append(NeuralAdapterModel.__name__)


_register_for_token_classification_pipelines()
