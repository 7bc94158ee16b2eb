"""`SemiSupervisedMetaTrainer`: episodic meta-training of SIB with the `transformers.Trainer` machinery.

Datasets can be plain labelled `datasets.Dataset`s (``text`` + ``label`` for intents; ``tokens`` + IO
``tags`` for NER): the dataloader methods turn them into episodes (`build_episodes`: the frozen backbone
encodes each dataset once, when it is first used). Ready-made episode datasets (`SequenceEpisodes`,
`TokenEpisodes`) are used as they are. Batches of episodes flow through ``compute_loss`` /
``prediction_step`` and ``Trainer.evaluate``'s loop like any Trainer batch, so gradient accumulation,
checkpoints, logging, callbacks, ``load_best_model_at_end`` and `accelerate launch` work unchanged.
"""

from __future__ import annotations

import logging
import warnings

import torch
from torch.utils.data import Dataset as TorchDataset
from transformers import Trainer

from ..callbacks import add_stopping_callbacks
from ..constants import IGNORE_INDEX
from ..hub import OwnModelCardMixin
from .arguments import MetaTrainingArguments
from .baselines import prototype_logits, soft_kmeans_logits
from .episode_data import EpisodeColumns, build_episodes, class_names, episode_sampler, label_column_names
from .episodes import EpisodeSampler, collate_episodes
from .evaluation import episode_compute_metrics
from .label_names import check_label_names
from .refinement import check_refinement
from .shaping import SHAPING_DEFAULTS, ShapingResult, encoder_layers

logger = logging.getLogger(__name__)


class SemiSupervisedMetaTrainer(OwnModelCardMixin, Trainer):
    """A `Trainer` over episodes. ``compute_metrics`` defaults to `episode_compute_metrics`: SIB, SIB with K = 0,
    prototypes and soft k-means on the same episodes, each with a 95% CI (``eval_sib_accuracy``, ...)."""

    def __init__(self, model, args: MetaTrainingArguments, train_dataset=None, eval_dataset=None,
                 processing_class=None, columns: EpisodeColumns | None = None, **kwargs):
        if not isinstance(args, MetaTrainingArguments):
            raise ValueError("SemiSupervisedMetaTrainer needs MetaTrainingArguments (k_shot, n_query, episodes, ...).")
        kwargs.setdefault("data_collator", collate_episodes)
        kwargs.setdefault("compute_metrics", episode_compute_metrics(model.config.level))
        super().__init__(model=model, args=args, train_dataset=train_dataset, eval_dataset=eval_dataset,
                         processing_class=processing_class, **kwargs)
        if train_dataset is not None and model.config.sees_class_marginal and args.uneven_train_queries == 0 \
                and args.natural_train_queries == 0:
            warnings.warn(f"A synthetic-gradient net that sees the episode's class marginal (grad_net="
                          f"{model.config.grad_net!r}, grad_net_context={model.config.grad_net_context}), with even "
                          "training episodes only (uneven_train_queries=natural_train_queries=0): the "
                          "model will expect every class to have as many unlabelled queries as the others, and on "
                          "uneven query sets it falls several points below soft k-means (README, 'Query sets even "
                          "by construction'). Use it only where evenness is guaranteed.", UserWarning, stacklevel=2)
        add_stopping_callbacks(self, patience=0)  # warns when the best meta-validation step is the last: train longer
        token_level = model.config.level == "token"
        self.label_names = ["query_labels", "query_sentence_lengths"] if token_level else ["query_labels"]
        self.columns = columns or EpisodeColumns()
        self._episodes: list[tuple] = []  # (labelled dataset, training?, its episodes), built on first use
        named = eval_dataset.items() if isinstance(eval_dataset, dict) else [("eval", eval_dataset)]
        for name, data in [("train", train_dataset), *named]:  # refuse unusable data now, before any encoding
            if data is not None and not isinstance(data, TorchDataset):
                episode_sampler(data, model.config, args.k_shot, args.n_query, args.seed, self.columns, name,
                                ways=self.training_ways if name == "train" else None)
                if processing_class is None:
                    raise ValueError("Pass processing_class=<the backbone's tokenizer> so the trainer can encode "
                                     "the texts.")
        self._warn_shared_classes(train_dataset, named)

    def _warn_shared_classes(self, train_dataset, evaluated) -> None:
        """Meta-validation on classes the model trained (and was shaped) on selects the checkpoint, and the
        refinement limit, by how well it remembers them, not by how it meets new ones: say so, naming them."""
        if train_dataset is None or isinstance(train_dataset, TorchDataset):
            return
        trained = class_names(train_dataset, self.model.config, self.columns)
        if trained is None:
            return
        for name, data in evaluated:
            if data is None or isinstance(data, TorchDataset):
                continue
            shared = sorted(trained & (class_names(data, self.model.config, self.columns) or set()))
            if shared:
                warnings.warn(f"The {name} dataset shares {len(shared)} classes with the training dataset (e.g. "
                              f"{shared[:5]}): meta-validation then measures remembered classes, not new ones, and "
                              "picks the checkpoint by them. Split the classes (examples/meta.py's class split, "
                              "load_clinc150's) so that evaluation classes are never trained on.", UserWarning,
                              stacklevel=3)

    @property
    def training_ways(self) -> tuple[int, int] | None:
        """(fewest, most) classes of a training episode, or None for ``n_way`` each."""
        if self.args.max_train_ways is None:
            return None
        return self.args.min_train_ways, self.args.max_train_ways

    def train(self, *args, **kwargs):
        """``Trainer.train``, after shaping the encoder on the training classes when ``args.shape_top_layers``
        asks for it (before any episode is encoded, so every feature comes from the shaped encoder), and followed
        by `check_label_names` and `choose_max_refined_classes` on the validation classes when the encoder is frozen
        (its features are then cached; a fine-tuned one would re-encode every check task)."""
        self.shape_backbone()
        result = super().train(*args, **kwargs)
        if self.model.config.freeze_backbone:
            self.check_label_names()
            self.choose_max_refined_classes()
        else:
            logger.info("Not checking which task sizes the refinement helps: the backbone is fine-tuned, so every "
                        "check task would be encoded anew; call trainer.choose_max_refined_classes() to check anyway.")
        return result

    def _validation_data(self, eval_dataset, check: str):
        """The labelled validation dataset a post-training check draws its tasks from, or None (logged why not)."""
        data = eval_dataset if eval_dataset is not None else self.eval_dataset
        if isinstance(data, dict):
            data = next(iter(data.values()))
        reason = None
        if not self.args.refinement_check_episodes:
            reason = "refinement_check_episodes=0"
        elif data is None or isinstance(data, TorchDataset):
            reason = "there is no labelled validation dataset (text + label rows) to draw tasks from"
        if reason is not None:
            logger.info("Not checking %s: %s.", check, reason)
            return None
        return data

    def check_label_names(self, eval_dataset=None) -> tuple[float, float] | None:
        """For a model that reads label names (``SIBConfig(use_label_names=True)``), check on
        ``args.refinement_check_episodes`` ``n_way`` validation tasks (natural unlabelled pools) whether reading
        them helps, and turn them off where they clearly cost accuracy (`label_names.check_label_names`). Returns
        the accuracy gain with its paired 95% CI, or None where the check does not apply (logged)."""
        if not self.model.config.use_label_names:
            return None
        data = self._validation_data(eval_dataset, "whether the label names help")
        if data is None:
            return None
        episodes = self.as_episodes(data, training=False)
        if getattr(episodes, "class_features", None) is None:
            logger.info("Not checking whether the label names help: the validation dataset's labels have no names.")
            return None
        args, labels = self.args, list(data[self.columns.label])
        ways = episodes.sampler.n_way  # the validation episodes' size (all the classes of a small split)
        tasks = episodes.with_sampler(EpisodeSampler(labels, sorted(set(labels)), ways, args.k_shot, args.n_query,
                                                     args.eval_seed, natural_queries=True),
                                      args.refinement_check_episodes)
        mean, ci95 = check_label_names(self.model, tasks, args.per_device_eval_batch_size)
        logger.info("Reading the label names changes validation accuracy by %+.2f ± %.2f points; %s.", 100 * mean,
                    100 * ci95, "kept" if self.model.config.use_label_names else "turned off (use_label_names=False)")
        return mean, ci95

    def choose_max_refined_classes(self, eval_dataset=None) -> dict[int, tuple[float, float]] | None:
        """Check on validation tasks of increasing size whether the refinement loses to its K = 0 start, and set
        ``model.config.max_refined_classes`` below the first size where it clearly did
        (`refinement.max_refined_classes`).

        Tasks of ``n_way`` labels, then doubling, up to every class of ``eval_dataset`` (default: the trainer's)
        at once, ``args.refinement_check_episodes`` of each, ``k_shot`` labelled examples per class and natural
        unlabelled pools (``n_query`` per class on average, as the data's class frequencies fall). Returns the
        mean accuracy gain per size with its paired 95% CI, or None where the check does not apply (logged): no
        check asked for, no refinement, token level, or no labelled validation dataset."""
        args, model = self.args, self.model
        check = "which task sizes the refinement helps"
        reason = None
        if not model.config.inner_steps:
            reason = "the model does not refine (inner_steps=0)"
        elif model.config.level != "sequence":
            reason = "the model is token-level, whose tasks all have n_way types"
        if reason is not None:
            logger.info("Not checking %s: %s.", check, reason)
            return None
        data = self._validation_data(eval_dataset, check)
        if data is None:
            return None
        labels = list(data[self.columns.label])
        gains = check_refinement(model, self.as_episodes(data, training=False), labels, sorted(set(labels)),
                                 args.k_shot, args.n_query, args.eval_seed, args.refinement_check_episodes,
                                 args.per_device_eval_batch_size)
        logger.info("Refinement gain over its K = 0 start on validation tasks (accuracy points ± 95%% CI by labels per "
                    "task): %s; refining tasks of up to %s labels.",
                    {k: f"{100 * mean:+.2f} ± {100 * ci:.2f}" for k, (mean, ci) in gains.items()},
                    "any number of" if model.config.max_refined_classes is None else model.config.max_refined_classes)
        return gains

    def shape_backbone(self) -> ShapingResult | None:
        """Shape the model's encoder on the labelled training dataset (`SIBForFewShotClassification.shape_backbone`)
        once; returns the loss per epoch and whether the names were aligned, or None when nothing is shaped.

        ``args.shape_top_layers=None`` (the default) shapes ``SHAPING_DEFAULTS.top_layers`` top layers wherever shaping
        applies (a sequence-level model over a frozen BERT-family encoder, trained from a labelled text dataset)
        and meta-trains on the pretrained features elsewhere, saying why in the log; a number asks for exactly
        that many layers and refuses a setting where it cannot be done. A model that reads label names
        (``use_label_names``) is shaped with the dataset's ClassLabel names too (``args.shape_with_label_names``),
        so that each name comes to lie where its class's examples do (benchmarks/results/shaping_names.md)."""
        layers, model = self.args.shape_top_layers, self.model
        if layers == 0 or model.config.shaped_layers:
            return None
        if layers is None:
            layers = self._default_shaped_layers()
            if not layers:
                return None
        if isinstance(self.train_dataset, TorchDataset) or self.train_dataset is None:
            raise ValueError("shape_top_layers needs the labelled training dataset (text + label rows), not ready-made "
                             "episodes: pass train_dataset=<datasets.Dataset>, or set shape_top_layers=0.")
        data = self.train_dataset
        with_names = model.config.use_label_names and self.args.shape_with_label_names
        result = model.shape_backbone(self.processing_class, list(data[self.columns.text]),
                                      list(data[self.columns.label]), top_layers=layers, epochs=self.args.shape_epochs,
                                      learning_rate=self.args.shape_learning_rate, seed=self.args.seed,
                                      class_names=label_column_names(data, self.columns) if with_names else None)
        self._episodes.clear()  # any encoded before were the pretrained encoder's features
        logger.info("Shaped the encoder's top %d layers: training loss per epoch %s", layers,
                    [round(loss, 4) for loss in result.losses])
        return result

    def _default_shaped_layers(self) -> int:
        """How many top layers ``shape_top_layers=None`` shapes for this model and data: 0 where shaping does not
        apply, with the reason logged."""
        config, data = self.model.config, self.train_dataset
        reason = None
        if config.level != "sequence":
            reason = "the model is token-level"
        elif not config.freeze_backbone:
            reason = "the backbone is fine-tuned during meta-training (freeze_backbone=False)"
        elif data is None or isinstance(data, TorchDataset):
            reason = "train_dataset is not a labelled text dataset (ready-made episodes, or none)"
        if reason is None:
            try:
                available = len(encoder_layers(self.model.backbone))
            except ValueError as refusal:  # no layer stack of its own (ALBERT shares one layer)
                reason = str(refusal)
        if reason is not None:
            logger.info("Meta-training on the pretrained encoder's features, not shaping it: %s "
                        "(shape_top_layers=None shapes only where it applies).", reason)
            return 0
        return min(SHAPING_DEFAULTS.top_layers, available)

    # ------------------------------------------------------------------ episodes
    def as_episodes(self, data, training: bool):
        """``data`` itself if it already holds episodes, else its episodes (built once per dataset)."""
        if data is None or isinstance(data, TorchDataset):
            return data
        for source, for_training, episodes in self._episodes:
            if source is data and for_training == training:  # one dataset may serve both, with its own episodes
                return episodes
        args = self.args
        seed, count, uneven, natural, ways = (
            (args.seed, args.train_episodes, args.uneven_train_queries, args.natural_train_queries, self.training_ways)
            if training else (args.eval_seed, args.num_eval_episodes, args.uneven_eval_queries, 0.0, None))
        episodes = build_episodes(data, self.model, self.processing_class, args.k_shot, args.n_query, seed, count,
                                  self.columns, "train" if training else "eval", uneven, ways, natural)
        self._episodes.append((data, training, episodes))
        return episodes

    def get_train_dataloader(self):
        self.train_dataset = self.as_episodes(self.train_dataset, training=True)
        return super().get_train_dataloader()

    def get_eval_dataloader(self, eval_dataset=None):
        if isinstance(eval_dataset, str):
            eval_dataset = self.eval_dataset[eval_dataset]
        data = eval_dataset if eval_dataset is not None else self.eval_dataset
        if data is None:
            raise ValueError("evaluate() needs an eval_dataset.")
        return super().get_eval_dataloader(self.as_episodes(data, training=False))

    def get_test_dataloader(self, test_dataset):
        return super().get_test_dataloader(self.as_episodes(test_dataset, training=False))

    # ------------------------------------------------------------------ evaluation
    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        """SIB's query scores after K steps and with K = 0, plus, on cached features, the prototype and soft
        k-means baselines on the same episodes: ``compute_metrics`` scores them all side by side."""
        loss, logits, labels = super().prediction_step(model, inputs, prediction_loss_only, ignore_keys)
        if prediction_loss_only or "support_features" not in inputs:
            return loss, logits, labels
        support, support_labels, query = inputs["support_features"], inputs["support_labels"], inputs["query_features"]
        query_mask = inputs["query_labels"] != IGNORE_INDEX
        class_mask = self.model.head.episode_classes(support_labels)  # classes an episode lacks score lowest
        with torch.no_grad():
            baselines = (prototype_logits(support, support_labels, query, class_mask.size(-1)),
                         soft_kmeans_logits(support, support_labels, query, class_mask.size(-1), query_mask=query_mask,
                                            temperature=self.args.soft_kmeans_temperature,
                                            iterations=self.args.soft_kmeans_iterations, class_mask=class_mask))
        baselines = tuple(scores.masked_fill(~class_mask[:, None, :], -2.0) for scores in baselines)  # cosines >= -1
        return loss, (*logits, *baselines), labels
