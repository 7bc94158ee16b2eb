"""Consolidate an extended model into one plain transformers token classifier.

PEFT's ``merge_and_unload`` folds LoRA into the base weights arithmetically. A neural adapter cannot be folded:
its target head reads the frozen source's *outputs*. So the plain model (the source's own class, a linear head
over old + new labels) starts from the target network (the trained copy, the LoRA-merged encoder, or the
frozen encoder, with the extended classifier) and learns, by distillation, to give the extended model's
per-token label distribution: the CRF's posterior marginals (or the linear head's softmax), half-mixed with its
decoded path, on the target data plus any unlabelled text. The result loads with ``AutoModelForTokenClassification`` and runs in
``pipeline`` without hf_adapter_ext, at the source's own cost: one encoder pass.
"""

from __future__ import annotations

import copy
import dataclasses
import tempfile
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from datasets import Dataset, concatenate_datasets
from transformers import DataCollatorForTokenClassification, PreTrainedModel, Trainer, TrainingArguments

from ..bio import bio_allowed_transitions
from ..callbacks import add_stopping_callbacks
from ..constants import IGNORE_INDEX
from ..metrics import entity_f1_compute_metrics, evaluate_tagger, predicted_label_ids
from ..validation import (
    CheckedTrainingArguments,
    Number,
    check_columns,
    check_encoded_by,
    check_label_names,
    check_number,
    check_texts,
    check_tokenizer_matches,
    check_training_arguments,
    refuse_conll_columns,
)
from . import anatomy
from .budget import EARLY_STOPPING_PATIENCE, EVAL_STEPS, step_budget

_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
TEACHER_TARGET = "teacher_target"  # the column that holds a row's precomputed distillation target


def check_consolidable(model) -> None:
    """Refuse what cannot be consolidated, before any work: an untrained extension, or a source that is not a
    transformers class (the result must load without hf_adapter_ext)."""
    if not model.has_trained:
        raise ValueError(
            "This extended model has not been trained (or loaded from a trained adapter): consolidating it would "
            "copy an untrained head. Train it first (Trainer(model=...).train()), then call consolidate()."
        )
    source = model.source
    if not isinstance(source, PreTrainedModel) or not type(source).__module__.startswith("transformers."):
        raise ValueError(
            f"The source is a {type(source).__module__}.{type(source).__name__}, which plain transformers cannot "
            "rebuild with from_pretrained; consolidation makes a model of the source's own class, so it needs a "
            "transformers architecture (e.g. BertForTokenClassification). Keep the extended model instead."
        )


def initial_student(model) -> PreTrainedModel:
    """A plain model of the source's class over old + new labels, holding the target network's weights."""
    source, num_old = model.source, model.num_old_labels
    config = copy.deepcopy(model.config)
    for name in ("keys_to_ignore_at_inference",):
        if hasattr(config, name):
            delattr(config, name)
    student = type(source)(config)
    head = anatomy.output_layer_name(source, num_old)
    prefix = source.base_model_prefix
    state = {k: v for k, v in source.state_dict().items()
             if not k.startswith(f"{head}.") and not k.startswith(f"{prefix}.")}
    target = model.peft_config.target
    encoder = model.target_encoder if target == "copy" else anatomy.encoder_of(source)
    encoder_state = _merged_lora_state(encoder) if target == "lora" else encoder.state_dict()
    state.update({f"{prefix}.{k}": v for k, v in encoder_state.items()})
    state.update({f"{head}.{k}": v for k, v in model.classifier.state_dict().items()})
    missing, unexpected = student.load_state_dict(state, strict=False)
    missing = [k for k in missing if k not in dict(student.named_buffers())]
    if missing or unexpected:
        raise ValueError(f"Could not map the target network onto a fresh {type(source).__name__} (missing "
                         f"{missing[:5]}, unexpected {unexpected[:5]}); please report this architecture.")
    return student.to(model.device)


def _merged_lora_state(encoder) -> dict[str, torch.Tensor]:
    """The encoder's weights with each LoRA layer folded into its base weight (W + BA·scale), names as plain."""
    state = {}
    tuned = {name: layer for name, layer in encoder.named_modules() if anatomy.is_tuner_layer(layer)}
    for key, value in encoder.state_dict().items():
        owner = next((name for name in tuned if key.startswith(f"{name}.")), None)
        if owner is None:
            state[key] = value
        elif key == f"{owner}.base_layer.weight":
            layer = tuned[owner]
            delta = sum(layer.get_delta_weight(name) for name in layer.active_adapters)
            state[f"{owner}.weight"] = value + delta.to(value.dtype)
        elif key == f"{owner}.base_layer.bias":
            state[f"{owner}.bias"] = value
    return state


@torch.no_grad()
def teacher_distribution(teacher, inputs: dict, path_weight: float = 0.0) -> torch.Tensor:
    """The extended model's per-token label distribution (CRF posterior marginals, or the linear softmax), mixed
    with ``path_weight`` of its decoded prediction (the Viterbi path, or the argmax) as one-hot targets.

    A linear student predicts each token's argmax. Marginals alone teach it the marginals' argmax, which is not
    the Viterbi path where the CRF is unsure and can break BIO; with ``path_weight >= 0.5`` the target's argmax
    is the teacher's own prediction, and the rest of the target keeps the teacher's uncertainty."""
    mask = inputs["attention_mask"]
    out = teacher(**{k: v for k, v in inputs.items() if k in _INPUTS})
    crf = teacher.crf
    soft = crf.marginals(out.emissions, mask) if crf is not None else F.softmax(out.emissions.float(), dim=-1)
    if not path_weight:
        return soft
    path = crf.decode(out.emissions, mask) if crf is not None else soft.argmax(-1)
    hard = F.one_hot(path.clamp(min=0), soft.size(-1)).to(soft.dtype) * mask.unsqueeze(-1).to(soft.dtype)
    return (1 - path_weight) * soft + path_weight * hard


def with_teacher_targets(data: Dataset, teacher, tokenizer, path_weight: float, batch_size: int = 32) -> Dataset:
    """``data`` with each row's distillation target (`teacher_distribution`, [tokens, labels]) in a
    ``teacher_target`` column, computed once. The teacher is frozen and in eval mode, so its targets are the same
    every time a row comes round; with them cached, a distillation step runs the student alone instead of the
    extended model's two encoders as well.

    Args:
        data: tokenized rows (``input_ids``, ``attention_mask``, ...), unpadded.
        teacher: the extended model, on the device it should run on.
        tokenizer: pads each batch for the teacher pass.
        path_weight: as in `teacher_distribution`.
        batch_size: rows per teacher pass.
    """
    teacher.eval()

    def targets(batch: dict) -> dict:
        rows = [{k: batch[k][i] for k in _INPUTS if k in batch} for i in range(len(batch["input_ids"]))]
        # Padded on the right whatever the tokenizer says: with absolute positions, left padding would shift a
        # row's positions by however long the other rows in this pass happen to be.
        padded = tokenizer.pad(rows, return_tensors="pt", padding_side="right")
        target = teacher_distribution(teacher, {k: v.to(teacher.device) for k, v in padded.items()}, path_weight)
        return {TEACHER_TARGET: [t[: len(row["input_ids"])].float().cpu().numpy() for t, row in zip(target, rows)]}

    return data.map(targets, batched=True, batch_size=batch_size, keep_in_memory=True,
                    new_fingerprint=f"{data._fingerprint}-{TEACHER_TARGET}-{path_weight}",
                    desc="Computing the extended model's distillation targets")


def visits_rows_more_than_once(args: TrainingArguments, rows: int) -> bool:
    """Whether a training run under ``args`` draws more rows than ``rows``: then precomputing each row's teacher
    target once (`with_teacher_targets`) saves teacher passes; otherwise computing them as they come is cheaper."""
    if args.max_steps > 0:
        return args.max_steps * args.train_batch_size * args.gradient_accumulation_steps * args.world_size > rows
    return args.num_train_epochs > 1


class _DistillationCollator(DataCollatorForTokenClassification):
    """Pads the inputs. Validation rows keep their gold labels (padded with -100), for the entity F1 that stops
    training. Distillation rows (no ``labels``) get attended tokens marked as ``labels`` 0 (padding -100), so that
    `Trainer` counts the step's tokens (``num_items_in_batch``) across accumulation steps and processes; their
    precomputed ``teacher_target`` rows, if any, are padded with zeros on the tokenizer's padding side."""

    def __call__(self, features):
        if all("labels" in f for f in features):
            return super().__call__([{k: f[k] for k in (*_INPUTS, "labels") if k in f} for f in features])
        batch = super().__call__([{k: f[k] for k in _INPUTS if k in f} for f in features])
        batch["labels"] = torch.where(batch["attention_mask"].bool(), 0, IGNORE_INDEX)
        if TEACHER_TARGET in features[0]:
            length = batch["input_ids"].size(1)
            left = self.tokenizer.padding_side == "left"
            rows = [torch.as_tensor(f[TEACHER_TARGET], dtype=torch.float32) for f in features]
            batch[TEACHER_TARGET] = torch.stack([
                F.pad(row, (0, 0, length - len(row), 0) if left else (0, 0, 0, length - len(row))) for row in rows])
        return batch


def invalid_transition_mass(probs: torch.Tensor, mask: torch.Tensor, forbidden: torch.Tensor) -> torch.Tensor:
    """[B, T] per-token probability that a token-by-token (argmax) tagger breaks BIO at this token: the chance,
    under the student's own independent per-token distributions ``probs`` [B, T, L], that this token's tag may not
    follow the previous token's (``forbidden`` [L, L], from → to); 0 at the first token and at padding."""
    mass = ((probs[:, :-1] @ forbidden) * probs[:, 1:]).sum(-1) * (mask[:, 1:] & mask[:, :-1])
    return F.pad(mass, (1, 0))


class _DistillationTrainer(Trainer):
    def __init__(self, teacher, path_weight: float, transition_weight: float = 0.0,
                 early_stopping_patience: int = EARLY_STOPPING_PATIENCE, **kwargs):
        super().__init__(**kwargs)
        self.teacher = teacher.to(self.args.device).eval()
        self.path_weight, self.transition_weight = path_weight, transition_weight
        labels = [teacher.config.id2label[i] for i in range(len(teacher.config.id2label))]
        allowed, _ = bio_allowed_transitions(labels)
        self.forbidden = torch.from_numpy(~allowed).float().to(self.args.device)
        add_stopping_callbacks(self, early_stopping_patience)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        target = inputs.get(TEACHER_TARGET)  # precomputed by `with_teacher_targets`, or computed here
        inputs = {k: v for k, v in inputs.items() if k in _INPUTS}
        mask = inputs["attention_mask"].bool()
        if target is None:
            target = teacher_distribution(self.teacher, inputs, self.path_weight)
        outputs = model(**inputs)
        log_p = F.log_softmax(outputs.logits.float(), dim=-1)
        per_token = -(target * log_p).sum(-1)
        if self.transition_weight:  # teach valid transitions: the plain model has no CRF to forbid them
            per_token = per_token + self.transition_weight * invalid_transition_mass(log_p.exp(), mask, self.forbidden)
        loss = per_token[mask].sum()
        if num_items_in_batch is None:
            loss = loss / mask.sum().clamp(min=1)
        else:
            loss = loss / num_items_in_batch
            if self.args.average_tokens_across_devices and self.accelerator.num_processes > 1:
                loss = loss * self.accelerator.num_processes  # DDP averages gradients; the sum is what is wanted
        return (loss, outputs) if return_outputs else loss


def consolidation_training_defaults(validated: bool) -> dict:
    """The `TrainingArguments` settings a distillation runs with when ``consolidate`` is given none: a budget of
    ``MAX_STEPS`` steps at lr 5e-5, batch 16. With a labelled ``eval_dataset`` (``validated``) the student's entity
    F1 is measured every ``EVAL_STEPS`` steps, the best step is kept, and training stops after
    ``EARLY_STOPPING_PATIENCE`` evaluations without gain, as an extension trains (`extension_training_defaults`)."""
    return {**step_budget(learning_rate=5e-5, validated=validated), "report_to": "none", "logging_steps": EVAL_STEPS}


def distillation_data(train_dataset: Dataset, unlabelled: Sequence[str] | Dataset | None, tokenizer) -> Dataset:
    """The model inputs of the tokenized target data, plus unlabelled text (raw strings are tokenized here)."""
    parts = [train_dataset.select_columns([c for c in _INPUTS if c in train_dataset.column_names])]
    if unlabelled is not None:
        if isinstance(unlabelled, Dataset) and "input_ids" not in unlabelled.column_names:
            unlabelled = check_columns(unlabelled, ["text"], "consolidate's unlabelled Dataset", "give it a 'text' "
                                       "column of raw sentences, or tokenize it (input_ids) with the source's "
                                       "tokenizer")["text"]
        if isinstance(unlabelled, Dataset):
            check_encoded_by(unlabelled, tokenizer, "consolidate's unlabelled Dataset")
            extra = unlabelled
        else:
            texts = check_texts(unlabelled, "consolidate's unlabelled text", drop_blank=True)
            refuse_conll_columns(texts, "consolidate's unlabelled text")
            extra = Dataset.from_dict({"text": texts}).map(
                lambda b: tokenizer(b["text"], truncation=True), batched=True, remove_columns=["text"],
                desc="Tokenizing unlabelled text")
        parts.append(extra.select_columns([c for c in parts[0].column_names if c in extra.column_names]))
    return concatenate_datasets(parts) if len(parts) > 1 else parts[0]


def consolidate(model, train_dataset: Dataset, tokenizer, unlabelled=None, args: TrainingArguments | None = None,
                eval_dataset: Dataset | None = None, path_weight: float = 0.5,
                transition_weight: float = 0.0) -> PreTrainedModel:
    """See :meth:`NeuralAdapterModel.consolidate`."""
    check_number("consolidate", "path_weight", path_weight, Number(
        float, 0, 1, example="0.5", why="the share of the distillation target that is the teacher's decoded path"))
    check_number("consolidate", "transition_weight", transition_weight, Number(
        float, 0, 100, example="1.0", why="how much the BIO-breaking probability of each token adds to its loss"))
    check_consolidable(model)
    check_tokenizer_matches(model.source.config, tokenizer, "consolidate", model.source.name_or_path)
    train_dataset = check_columns(train_dataset, ["input_ids"], "consolidate's train_dataset",
                                  "pass the tokenized training set, as for training the adapter")
    check_encoded_by(train_dataset, tokenizer, "consolidate's train_dataset")
    if eval_dataset is not None:
        eval_dataset = check_columns(eval_dataset, ["input_ids", "labels"], "consolidate's eval_dataset",
                                     "pass a tokenized, labelled set (tokenize_and_align_labels)")
    if args is not None:
        if not isinstance(args, TrainingArguments):
            raise TypeError(f"consolidate's args must be transformers.TrainingArguments; got {type(args).__name__}.")
        check_training_arguments(args)
        if args.label_smoothing_factor:  # the loss is the distillation's own: Trainer's label smoother never runs
            raise ValueError(f"consolidate's args: label_smoothing_factor={args.label_smoothing_factor:g} would be "
                             "ignored: the plain model learns the extended model's distributions (soft targets "
                             "already), not Trainer's cross-entropy on labels. Leave it at 0.")
    student = initial_student(model)
    if args is not None:
        check_label_names(student, args)
    config = model.peft_config
    report = {"source": config.base_model_name_or_path, "old_labels": config.old_labels,
              "new_labels": config.new_labels, "target": config.target, "adapter": config.adapter,
              "head": config.head, "path_weight": path_weight, "transition_weight": transition_weight}
    if config.adapter == "none" and config.head == "linear":  # the target alone predicts: the copy is exact
        report.update(exact=True, distillation_examples=0, unlabelled_examples=0, steps=0)
    else:
        data = distillation_data(train_dataset, unlabelled, tokenizer)
        if args is None:
            args = CheckedTrainingArguments(output_dir=tempfile.mkdtemp(prefix="consolidate_"),
                                            **consolidation_training_defaults(validated=eval_dataset is not None))
        args = dataclasses.replace(args, remove_unused_columns=False)  # the caller's arguments stay as they were
        report["teacher_targets_precomputed"] = visits_rows_more_than_once(args, len(data))
        if report["teacher_targets_precomputed"]:
            data = with_teacher_targets(data, model.to(args.device), tokenizer, path_weight)
        validation = None
        if args.eval_strategy != "no":
            if eval_dataset is None:
                raise ValueError("consolidate's args evaluate (eval_strategy is not 'no'), but no eval_dataset was "
                                 "given: pass a tokenized, labelled eval_dataset, or set eval_strategy='no'.")
            validation = eval_dataset.select_columns([c for c in (*_INPUTS, "labels") if c in eval_dataset.column_names])
        id2label = model.config.id2label
        trainer = _DistillationTrainer(
            teacher=model, path_weight=path_weight, transition_weight=transition_weight, model=student, args=args,
            train_dataset=data,
            eval_dataset=validation, data_collator=_DistillationCollator(tokenizer),
            compute_metrics=entity_f1_compute_metrics(id2label, config.new_types, config.label_parents or {}),
            preprocess_logits_for_metrics=predicted_label_ids)
        result = trainer.train()
        report.update(distillation_examples=len(data), unlabelled_examples=len(data) - len(train_dataset),
                      steps=trainer.state.global_step, best_step=trainer.state.best_global_step,
                      train_seconds=result.metrics["train_runtime"])
    student.eval()
    if eval_dataset is not None:
        report["evaluation"] = compare_with_teacher(model, student, eval_dataset, tokenizer)
    student.consolidation_report = report
    return student


def compare_with_teacher(teacher, student, dataset: Dataset, tokenizer) -> dict:
    """Entity F1 of the extended model and of the consolidated one on a labelled dataset, and how many predicted
    spans break BIO (an I- tag that continues nothing): what losing the CRF costs. The consolidated model is scored
    twice: token by token, as ``pipeline`` tags (``consolidated_*``), and with BIO-constrained decoding
    (``consolidated_constrained_*``, ``predict_tags(decoding="bio")``), which breaks no span."""
    id2label = teacher.config.id2label
    new_types = teacher.peft_config.new_types
    scores = {}
    for name, model, decoding in (("extended", teacher, "argmax"), ("consolidated", student, "argmax"),
                                  ("consolidated_constrained", student, "bio")):
        result = evaluate_tagger(model, dataset, tokenizer, id2label, new_types, decoding=decoding)
        scores.update({f"{name}_{k}": result[k] for k in ("overall_f1", "old_f1", "new_f1", "bio_invalid_spans")})
    return scores
