"""`NeuralAdapterModel`: a frozen source token classifier + a target network that knows old and new labels."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..constants import IGNORE_INDEX
from . import anatomy
from .config import NeuralAdapterConfig
from .labels import source_labels, validate_new_labels
from .layers import ADAPTERS, expand_crf, expand_linear
from .outputs import CRFTokenClassifierOutput, label_scores, viterbi_logits


class NeuralAdapterModel(nn.Module):
    """Source model (frozen) → adapter → target head over old + new labels.

    ``forward`` takes the usual token-classification inputs plus an optional ``source_logits``
    (the frozen source's scores, precomputed with :func:`hf_adapter_ext.add_source_logits`) and
    returns a ``TokenClassifierOutput`` (with the pre-CRF ``emissions`` too). With a CRF head,
    the ``logits`` of a model in eval mode encode the Viterbi path (argmax = decoded label), so
    ``pipeline`` and ``Trainer.predict`` return CRF decodings; in train mode they are the emissions.
    """

    main_input_name = "input_ids"

    def __init__(self, source: nn.Module, config: NeuralAdapterConfig):
        super().__init__()
        if anatomy.has_tuner_layers(source):
            raise ValueError(
                f"The source {type(source).__name__} already carries PEFT/LoRA layers (an earlier target='lora' "
                "extension injects them into the model it is given). Pass a freshly loaded source model, or "
                "merge the LoRA weights first (peft's merge_and_unload)."
            )
        old_labels = source_labels(source.config)
        validate_new_labels(old_labels, config.new_labels)
        config = copy.deepcopy(config)
        config.old_labels = old_labels
        config.source_signature = anatomy.signature(source)
        config.base_model_name_or_path = config.base_model_name_or_path or getattr(source, "name_or_path", None)
        self.peft_config = config
        self.num_old_labels = len(old_labels)

        for param in source.parameters():
            param.requires_grad_(False)
        self.source = source.eval()

        labels = config.labels
        self.config = copy.deepcopy(source.config)
        self.config.id2label = dict(enumerate(labels))
        self.config.label2id = {label: i for i, label in enumerate(labels)}
        self.config.num_labels = len(labels)
        self.config.keys_to_ignore_at_inference = ["emissions", "hidden_states", "attentions"]
        self.name_or_path = getattr(source, "name_or_path", "")

        source_head = getattr(source, anatomy.output_layer_name(source, self.num_old_labels))
        encoder = anatomy.encoder_of(source)
        if config.target == "copy":
            self.target_encoder = copy.deepcopy(encoder)
            self.target_encoder.requires_grad_(True)
            if config.trainable == "top":
                self._freeze_below_top(self.target_encoder)
        elif config.target == "lora":
            self._inject_lora(encoder)
        # LoRA layers switched off for the source pass (found once: walking the modules each call is slow)
        self._lora_layers = anatomy.tuner_layers(encoder) if config.target == "lora" else []
        dropout = getattr(source.config, "hidden_dropout_prob", getattr(source.config, "dropout", 0.1))
        self.dropout = nn.Dropout(dropout if isinstance(dropout, float) else 0.1)
        self.classifier = expand_linear(source_head, len(config.new_labels))
        adapter_cls = ADAPTERS.get(config.adapter)
        self.adapter = adapter_cls(self.num_old_labels, len(labels), config.adapter_hidden_size) if adapter_cls else None
        self.crf = expand_crf(anatomy.crf_of(source), labels, config.bio_constraints) if config.head == "crf" else None

    # ------------------------------------------------------------------ construction helpers
    def _freeze_below_top(self, encoder: nn.Module) -> None:
        encoder.requires_grad_(False)
        stack = anatomy.layer_stack(encoder)
        if stack is not None and self.peft_config.num_top_layers:
            for layer in stack[-self.peft_config.num_top_layers :]:
                layer.requires_grad_(True)

    def _inject_lora(self, encoder: nn.Module) -> None:
        from peft import LoraConfig, inject_adapter_in_model
        from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING

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
        layers = None
        if cfg.trainable == "top":
            stack = anatomy.layer_stack(encoder)
            depth = len(stack) if stack is not None else 0
            layers = list(range(max(depth - cfg.num_top_layers, 0), depth))
        lora = LoraConfig(
            r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
            target_modules=list(target_modules), layers_to_transform=layers,
        )
        inject_adapter_in_model(lora, encoder)

    # ------------------------------------------------------------------ forward
    @property
    def device(self) -> torch.device:
        return self.classifier.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.classifier.weight.dtype

    def train(self, mode: bool = True):
        super().train(mode)
        self.source.eval()  # the source never drops out: its scores are a fixed function of the input
        return self

    @torch.no_grad()
    def source_outputs(self, inputs: dict, hidden: bool = False):
        """The frozen source's output (no dropout: it always stays in eval mode; no LoRA; no gradient)."""
        with anatomy.lora_disabled(self._lora_layers):
            return self.source(**anatomy.accepted_inputs(self.source, inputs), output_hidden_states=hidden)

    def _features_and_source_logits(self, inputs: dict, source_logits, need_source: bool):
        target = self.peft_config.target
        if target == "frozen":  # one encoder pass gives both the source's scores and the features
            out = self.source_outputs(inputs, hidden=True)
            return out.hidden_states[-1], label_scores(out) if source_logits is None else source_logits
        if need_source and source_logits is None:
            source_logits = label_scores(self.source_outputs(inputs))
        encoder = self.target_encoder if target == "copy" else anatomy.encoder_of(self.source)
        features = encoder(**anatomy.accepted_inputs(encoder, inputs))[0]
        return features, source_logits

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        source_logits: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        **kwargs,
    ) -> CRFTokenClassifierOutput:
        reference = input_ids if input_ids is not None else inputs_embeds
        if attention_mask is None:
            attention_mask = torch.ones(reference.shape[:2], dtype=torch.long, device=reference.device)
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids,
                  "inputs_embeds": inputs_embeds}
        distill = labels is not None and self.peft_config.annotation == "new_only"
        need_source = self.adapter is not None or distill
        features, source_logits = self._features_and_source_logits(inputs, source_logits, need_source)
        emissions = self.classifier(self.dropout(features))
        if self.adapter is not None:
            emissions = emissions + self.adapter(source_logits.to(emissions.dtype), attention_mask)

        loss = None
        if labels is not None:
            self._check_labels(labels)
            loss = self._loss(emissions, labels, attention_mask, source_logits if distill else None)
        logits = emissions
        if self.crf is not None and not self.training:
            logits = viterbi_logits(self.crf, emissions, attention_mask)
        return CRFTokenClassifierOutput(loss=loss, logits=logits, emissions=emissions)

    def _check_labels(self, labels: torch.Tensor) -> None:
        bad = labels[(labels != IGNORE_INDEX) & ((labels < 0) | (labels >= self.config.num_labels))]
        if bad.numel():
            raise ValueError(
                f"Label id {bad[0].item()} is out of range: this model has {self.config.num_labels} labels "
                f"({list(self.config.id2label.values())}); use -100 for positions to ignore."
            )

    def _loss(self, emissions, labels, attention_mask, source_logits) -> torch.Tensor:
        distill_loss = 0.0
        if source_logits is not None:
            labels, distill_loss = self._distill(emissions, labels, source_logits, attention_mask)
        if self.crf is not None:
            task_loss = self.crf.neg_log_likelihood(emissions, labels, attention_mask)
        else:
            task_loss = F.cross_entropy(emissions.flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX)
        return task_loss + self.peft_config.distill_weight * distill_loss

    def _distill(self, emissions, labels, source_logits, attention_mask):
        """`new_only` data: on tokens labelled O, learn the source's view of the old types.

        Hard part: O labels become the source's prediction (an old entity, or O) — its Viterbi path when it
        has a CRF, since a CRF's emissions alone are no per-token classifier.
        Soft part: KL from the source's tempered distribution (zero mass on new labels) to the target's.
        """
        outside = self.config.label2id.get("O", 0)
        on_outside = labels == outside
        source_logits = source_logits.to(emissions.dtype)
        source_crf = anatomy.crf_of(self.source)
        predicted = (source_crf.decode(source_logits, attention_mask).clamp(min=0) if source_crf is not None
                     else source_logits.argmax(-1))
        labels = torch.where(on_outside, predicted, labels)
        if not on_outside.any():
            return labels, emissions.new_zeros(())
        temperature = self.peft_config.distill_temperature
        teacher = F.softmax(source_logits[on_outside] / temperature, dim=-1)
        teacher = F.pad(teacher, (0, emissions.size(-1) - self.num_old_labels))
        student = F.log_softmax(emissions[on_outside] / temperature, dim=-1)
        kl = F.kl_div(student, teacher, reduction="batchmean") * temperature**2
        return labels, kl

    # ------------------------------------------------------------------ persistence
    def adapter_state_dict(self) -> dict[str, torch.Tensor]:
        """What cannot be rebuilt from the source: every trainable parameter, plus new modules' buffers."""
        state = {name: p.detach() for name, p in self.named_parameters() if p.requires_grad}
        for prefix in ("classifier", "adapter", "crf"):
            module = getattr(self, prefix)
            if module is not None:
                state.update({f"{prefix}.{k}": v.detach() for k, v in module.state_dict().items()})
        return {k: v.contiguous() for k, v in state.items()}

    def trainable_parameters(self) -> tuple[int, int]:
        trainable = sum(p.numel() for p in self.parameters() if p.requires_grad)
        return trainable, sum(p.numel() for p in self.parameters())

    def save_pretrained(self, save_directory: str | os.PathLike, metrics: dict | None = None, **kwargs) -> None:
        """Write ``adapter_config.json``, ``adapter_model.safetensors`` and a ``README.md`` model card."""
        from .persistence import save_adapter

        save_adapter(self, Path(save_directory), metrics=metrics)

    @classmethod
    def from_pretrained(cls, source, adapter_dir_or_repo: str | os.PathLike, **hub_kwargs) -> NeuralAdapterModel:
        """Rebuild a saved extended model on ``source`` (a model or a Hub id / path of one)."""
        from .persistence import load_adapter

        return load_adapter(cls, source, adapter_dir_or_repo, **hub_kwargs)

    def push_to_hub(self, repo_id: str, **kwargs) -> str:
        """Upload the files of :meth:`save_pretrained` to ``repo_id`` through ``huggingface_hub``."""
        from ..hub import push_folder_to_hub

        return push_folder_to_hub(self.save_pretrained, repo_id, **kwargs)


def get_adapter_model(source_model: nn.Module, config: NeuralAdapterConfig) -> NeuralAdapterModel:
    """Extend ``source_model`` (any ``AutoModelForTokenClassification``) to ``config.new_labels``."""
    if not isinstance(config, NeuralAdapterConfig):
        raise ValueError(f"get_adapter_model expects a NeuralAdapterConfig, got {type(config).__name__}.")
    return NeuralAdapterModel(source_model, config)
