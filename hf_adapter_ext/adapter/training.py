"""Training an extension: a budget in optimisation steps with early stopping, and rehearsal drawn per step.

A domain brings 10–200 labelled sentences. Counted in epochs, that is a few dozen steps (4 epochs of 200 sentences
are 52 steps of 16), and rehearsal text made each epoch several times longer, so its runs trained longer just
because they had more rows. Here the budget is a number of steps, training stops once the validation score has
not risen for a while, and every batch holds a fixed share of rehearsal rows however many of them there are.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import warnings
from pathlib import Path

import torch
from torch.utils.data import IterableDataset as TorchIterableDataset
from torch.utils.data import Sampler
from transformers import PreTrainedTokenizerBase, Trainer

from ..callbacks import add_stopping_callbacks
from ..hub import OwnModelCardMixin
from ..validation import (
    COUNT,
    POSITIVE_FLOAT,
    SHARE,
    check_finite_loss,
    check_number,
    check_tokenizer_matches,
    check_trainer_columns,
)
from .budget import EARLY_STOPPING_PATIENCE, SELF_TRAINING_PATIENCE, step_budget
from .optim import adapter_optimizer
from .rehearsal import REHEARSAL
from .self_training import PSEUDO_LABEL_THRESHOLD, add_pseudo_labels
from .source_cache import AdapterDataCollator

logger = logging.getLogger(__name__)

REHEARSAL_RATIO = 1.0  # rehearsal rows drawn per labelled row: half of every batch


def extension_training_defaults() -> dict:
    """The `TrainingArguments` settings extensions train with: ``MAX_STEPS`` steps at most at lr 1e-4, evaluated
    and saved every ``EVAL_STEPS``, the best step on ``overall_f1`` kept. Pair them with ``ExtensionTrainer``, which
    stops after ``EARLY_STOPPING_PATIENCE`` evaluations without gain."""
    return step_budget(learning_rate=1e-4)


class RehearsalSampler(Sampler[int]):
    """Row order for a training set that mixes labelled rows with rehearsal rows (``rehearsal == 1``).

    Each pass holds every labelled row once and ``ratio`` rehearsal rows per labelled row, shuffled together. The
    rehearsal rows are drawn without replacement from one permutation of the pool that carries over from pass to
    pass, so every rehearsal sentence is used before any is used twice, however large the pool.

    Args:
        flags: the ``rehearsal`` column (0 = labelled row, 1 = rehearsal row).
        ratio: rehearsal rows per labelled row in each pass.
        seed: seeds the shuffles (a pass's order depends on the seed and the pass number only).
    """

    def __init__(self, flags, ratio: float = REHEARSAL_RATIO, seed: int = 0):
        check_number("RehearsalSampler", "ratio", ratio, POSITIVE_FLOAT)
        flags = torch.as_tensor(list(flags), dtype=torch.long)
        self.labelled = torch.nonzero(flags == 0).flatten()
        self.pool = torch.nonzero(flags == 1).flatten()
        if not len(self.labelled):
            raise ValueError("The training set holds only rehearsal rows: add the labelled domain sentences.")
        self.per_pass = math.ceil(ratio * len(self.labelled)) if len(self.pool) else 0
        self.seed, self.passes = seed, 0

    def __len__(self) -> int:
        return len(self.labelled) + self.per_pass

    def set_epoch(self, epoch: int) -> None:
        """Trainer (through accelerate) names the pass, so a resumed run draws the same rows."""
        self.passes = epoch

    def rehearsal_rows(self, start: int, count: int) -> torch.Tensor:
        """Rows ``start`` … ``start + count`` (``count`` > 0) of the endless sequence of pool permutations."""
        rows = []
        cycle, offset = divmod(start, len(self.pool))
        while count > 0:
            order = torch.randperm(len(self.pool), generator=torch.Generator().manual_seed(self.seed + 7919 * cycle))
            take = order[offset: offset + count]
            rows.append(self.pool[take])
            count -= len(take)
            cycle, offset = cycle + 1, 0
        return torch.cat(rows)

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed + self.passes)
        rehearsal = self.rehearsal_rows(self.passes * self.per_pass, self.per_pass) if self.per_pass else self.pool[:0]
        self.passes += 1
        rows = torch.cat([self.labelled, rehearsal])
        yield from rows[torch.randperm(len(rows), generator=generator)].tolist()


def refuse_unpadded_rows(dataset, rows: int = 64) -> None:
    """Without a collator or a tokenizer, Trainer stacks rows as they are: rows of different lengths fail at the
    first batch with "expected sequence of length 12 at dim 1 (got 13)". Said here, with the fix."""
    if dataset is None or isinstance(dataset, TorchIterableDataset) or not hasattr(dataset, "__len__"):
        return
    first = [dataset[i] for i in range(min(rows, len(dataset)))]
    lengths = {len(row["input_ids"]) for row in first if isinstance(row, dict) and "input_ids" in row}
    if len(lengths) > 1:
        raise ValueError("ExtensionTrainer: the training rows have different lengths and nothing pads them: pass "
                         "processing_class=<the tokenizer> (the trainer then pads with AdapterDataCollator) or "
                         "data_collator=AdapterDataCollator(tokenizer).")


class ExtensionTrainer(OwnModelCardMixin, Trainer):
    """`transformers.Trainer` for a :class:`NeuralAdapterModel`: its optimiser gives the fresh parts (output layer,
    CRF, adapter) ``head_learning_rate``, rehearsal rows are drawn per step (:class:`RehearsalSampler`), training
    stops early on the validation score, and a run whose best step is its last says so. After ``train()``,
    :meth:`self_train` learns from unlabelled domain text as well.

    Args:
        head_learning_rate: learning rate of the parts that start from scratch; the encoder takes
            ``args.learning_rate``.
        rehearsal_ratio: rehearsal rows per labelled row in each batch, when the training set has a
            ``rehearsal`` column (:func:`add_rehearsal`); default 1. Given without that column, a warning says it
            does nothing.
        early_stopping_patience: evaluations without a better ``metric_for_best_model`` before training stops;
            0 trains for the whole budget; default 6. Needs an ``eval_dataset`` and ``load_best_model_at_end``:
            given without them, a warning says it does nothing.
        All other arguments are Trainer's. Without a ``data_collator``, rows are padded by
        :class:`AdapterDataCollator` over ``processing_class`` (Trainer's own default pads no labels).
    """

    def __init__(self, *args, head_learning_rate: float = 1e-3, rehearsal_ratio: float | None = None,
                 early_stopping_patience: int | None = None, **kwargs):
        check_number("ExtensionTrainer", "head_learning_rate", head_learning_rate, POSITIVE_FLOAT)
        check_number("ExtensionTrainer", "rehearsal_ratio", rehearsal_ratio, dataclasses.replace(POSITIVE_FLOAT,
                                                                                                  optional=True))
        check_number("ExtensionTrainer", "early_stopping_patience", early_stopping_patience,
                     dataclasses.replace(COUNT, optional=True))
        self.head_learning_rate = head_learning_rate
        self.rehearsal_ratio = REHEARSAL_RATIO if rehearsal_ratio is None else rehearsal_ratio
        self.early_stopping_patience = EARLY_STOPPING_PATIENCE if early_stopping_patience is None \
            else early_stopping_patience
        tokenizer = kwargs.get("processing_class")
        padding = kwargs.get("data_collator") is None and len(args) < 3
        if padding and isinstance(tokenizer, PreTrainedTokenizerBase):
            kwargs["data_collator"] = AdapterDataCollator(tokenizer)
        super().__init__(*args, **kwargs)
        if padding and tokenizer is None:
            refuse_unpadded_rows(self.train_dataset)
        check_trainer_columns(self.model, self.args, {"train": self.train_dataset, "eval": self.eval_dataset})
        metric = (self.args.metric_for_best_model or "loss").removeprefix("eval_")
        if self.compute_metrics is None and metric != "loss" and self.args.load_best_model_at_end:
            # Trainer finds out at the first evaluation, a KeyError after the source caching and the first steps
            raise ValueError(f"ExtensionTrainer: metric_for_best_model={self.args.metric_for_best_model!r} needs a "
                             "compute_metrics that reports it, and none is given: pass compute_metrics="
                             "hf_adapter_ext.metrics.entity_f1_compute_metrics(model.config.id2label, new_types) "
                             "(with preprocess_logits_for_metrics=hf_adapter_ext.metrics.predicted_label_ids), or "
                             "metric_for_best_model='loss'.")
        add_stopping_callbacks(self, self.early_stopping_patience)
        if isinstance(self.train_dataset, TorchIterableDataset) and REHEARSAL in next(iter(self.train_dataset), {}):
            # a stream cannot be sampled: its rehearsal rows would pass once per epoch, whatever rehearsal_ratio says
            raise ValueError("ExtensionTrainer draws rehearsal rows per step (rehearsal_ratio per labelled row), "
                             "which needs a map-style training set; this one is streamed (an IterableDataset) and "
                             "holds rehearsal rows. Pass the Dataset that add_rehearsal returns, not streamed.")
        target = getattr(getattr(self.model, "peft_config", None), "target", "copy")
        if self.args.neftune_noise_alpha and target != "copy":  # the hook adds noise only in train mode
            raise ValueError(f"neftune_noise_alpha={self.args.neftune_noise_alpha:g} would do nothing: with "
                             f"target={target!r} the trained encoder's embeddings are the frozen source's, which stay "
                             "in eval mode, where NEFTune adds no noise. Use target='copy', or leave it unset.")
        rehearsal_rows = REHEARSAL in getattr(self.train_dataset, "column_names", ())
        strategy = self.args.train_sampling_strategy
        if strategy != "random" and rehearsal_rows:
            raise ValueError(f"train_sampling_strategy={strategy!r} cannot order these rows: rehearsal rows are drawn "
                             "at random per step (rehearsal_ratio per labelled row), by a sampler of their own. Leave "
                             "it 'random'.")
        if rehearsal_ratio is not None and not rehearsal_rows:
            warnings.warn(f"ExtensionTrainer: rehearsal_ratio={rehearsal_ratio} does nothing: the training set has no "
                          f"{REHEARSAL!r} column. Mix rehearsal text in with add_rehearsal(...).", stacklevel=2)
        if early_stopping_patience and not (self.args.load_best_model_at_end and self.eval_dataset is not None):
            warnings.warn(f"ExtensionTrainer: early_stopping_patience={early_stopping_patience} does nothing without "
                          "an eval_dataset and load_best_model_at_end=True (with metric_for_best_model): training "
                          "runs its whole budget.", stacklevel=2)

    def create_optimizer(self):
        if self.optimizer is None:
            self.optimizer = adapter_optimizer(self.model, self.args.learning_rate, self.head_learning_rate,
                                               self.args.weight_decay, args=self.args)
        return self.optimizer

    def _get_train_sampler(self, train_dataset=None):
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        if dataset is not None and REHEARSAL in getattr(dataset, "column_names", ()):
            return RehearsalSampler(dataset[REHEARSAL], self.rehearsal_ratio, self.args.seed)
        return super()._get_train_sampler(train_dataset)

    @property
    def validation_key(self) -> str:
        """The logged name of ``metric_for_best_model`` (``eval_overall_f1``)."""
        if self.eval_dataset is None or not self.args.metric_for_best_model:
            raise ValueError("Scoring on validation needs an eval_dataset and args.metric_for_best_model.")
        return f"eval_{self.args.metric_for_best_model.removeprefix('eval_')}"

    def validation_score(self) -> float:
        """``metric_for_best_model`` on the validation set, for the model as it is now (the best step's, once
        ``load_best_model_at_end`` has loaded it)."""
        return self.evaluate(metric_key_prefix="eval")[self.validation_key]

    def validation_curve(self) -> list[tuple[int, float]]:
        """(step, ``metric_for_best_model``) of every evaluation logged so far."""
        key = self.validation_key
        return [(entry["step"], entry[key]) for entry in self.state.log_history if key in entry]

    def _check_self_training(self, tokenizer, threshold: float, patience: int) -> None:
        """Refuse what would make self-training teach noise or decide on nothing, before any work: an untrained
        model, no validation data, another tokenizer, a threshold or patience out of range."""
        check_number("self_train", "patience", patience, COUNT)
        check_number("self_train", "threshold", threshold, SHARE)
        if not self.model.has_trained:
            raise ValueError("self_train continues a trained run: the untrained model's tags would teach noise. Call "
                             "trainer.train() first (or load a trained adapter with NeuralAdapterModel."
                             "from_pretrained).")
        if self.eval_dataset is None:
            raise ValueError("self_train keeps its second run only if it scores higher on validation: give the "
                             "ExtensionTrainer an eval_dataset (the domain's labelled validation sentences).")
        source = self.model.source
        check_tokenizer_matches(source.config, tokenizer, "self_train", source.name_or_path)

    def _warn_tagged_validation(self, tagged_ids) -> None:
        """Warn when self-training's pseudo-labelled sentences include validation sentences: the second run would
        be kept on a score it has learned its own tags for."""
        rows = self.eval_dataset if "input_ids" in getattr(self.eval_dataset, "column_names", ()) else {"input_ids": []}
        validation = {tuple(ids) for ids in rows["input_ids"]}
        shared = sum(tuple(ids) in validation for ids in tagged_ids)
        if shared:
            logger.warning("Self-training: %d of the unlabelled sentences are validation sentences, so the validation "
                           "score that keeps or drops the second run is optimistic. Drop them from the text.", shared)

    def self_train(self, texts, tokenizer, threshold: float = PSEUDO_LABEL_THRESHOLD,
                   patience: int = SELF_TRAINING_PATIENCE) -> dict:
        """A second run, from the trained model's weights, on the training set plus the model's confident tags on
        the unlabelled domain ``texts`` (:func:`add_pseudo_labels`). It is kept only if it scores higher on
        validation; otherwise the first run's weights come back. Returns what happened (both scores, which run
        was kept, the second run's Trainer metrics, best step, steps run and validation curve); when the model is
        sure of no word of ``texts`` there is no second run (its score is None).

        Args:
            texts: plain sentences of the target domain (strings or word lists), without labels.
            tokenizer: the source's tokenizer.
            threshold: a word keeps the model's tag when its probability reaches this.
            patience: evaluations without a better validation score before the second run stops (0: its whole
                budget). Shorter than the first run's: it starts from trained weights, and the second run is most of
                self-training's cost.
        """
        self._check_self_training(tokenizer, threshold, patience)
        model, first = self.model, self.validation_score()
        first_weights = {k: v.detach().clone() for k, v in model.state_dict().items() if not k.startswith("source.")}
        train = add_pseudo_labels(self.train_dataset, texts, model, tokenizer, threshold)
        if len(train) == len(self.train_dataset):  # nothing tagged: a second run would retrain on the same data
            return {"pseudo_labelled_sentences": 0, "first_run_validation": first, "second_run_validation": None,
                    "kept": "first", "second_run_best_step": None, "second_run_steps": 0, "second_run_curve": [],
                    "train": {"train_runtime": 0.0}}
        # the tagged sentences come after the training set's rows
        self._warn_tagged_validation(train.select(range(len(self.train_dataset), len(train)))["input_ids"])
        args = dataclasses.replace(self.args, output_dir=str(Path(self.args.output_dir) / "self-training"))
        second = ExtensionTrainer(model=model, args=args, train_dataset=train, eval_dataset=self.eval_dataset,
                                  data_collator=self.data_collator, compute_metrics=self.compute_metrics,
                                  preprocess_logits_for_metrics=self.preprocess_logits_for_metrics,
                                  head_learning_rate=self.head_learning_rate, rehearsal_ratio=self.rehearsal_ratio
                                  if REHEARSAL in train.column_names else None, early_stopping_patience=patience)
        result = second.train()
        check_finite_loss(result.training_loss, "Lower the learning rates or raise the threshold.")
        curve, score = second.validation_curve(), second.validation_score()
        kept = score > first
        if not kept:
            model.load_state_dict(first_weights, strict=False)
            logger.warning("Self-training did not raise the validation %s (%.4f -> %.4f): the first run's model is "
                           "kept.", args.metric_for_best_model, first, score)
        return {"pseudo_labelled_sentences": len(train) - len(self.train_dataset), "first_run_validation": first,
                "second_run_validation": score, "kept": "second" if kept else "first",
                "second_run_best_step": second.state.best_global_step, "second_run_steps": second.state.global_step,
                "second_run_curve": curve, "train": result.metrics}
