"""`MetaTrainingArguments`: episode settings on top of `transformers.TrainingArguments`."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..launch import check_one_job
from ..validation import SEED, CheckedTrainingArguments, Number, check_settings, warn_idle_settings
from .shaping import EPOCHS, SHAPING_DEFAULTS


@dataclass
class MetaTrainingArguments(CheckedTrainingArguments):
    """How episodes are drawn and trained on, on top of `TrainingArguments`. The model's own settings (``n_way``,
    the inner loop) live in `SIBConfig` only.

    ``per_device_train_batch_size`` / ``per_device_eval_batch_size`` count *episodes* per step: B episodes
    are processed as one batched computation.
    """

    # The benchmark's optimiser settings (benchmarks/sib_fewshot.py), not TrainingArguments' fine-tuning ones:
    # at 5e-5 with a decaying rate the small SIB head barely trains.
    learning_rate: float = field(default=1e-3, metadata={"help": "Adam learning rate of the SIB head."})
    lr_scheduler_type: str = field(default="constant", metadata={"help": "Learning-rate schedule."})
    k_shot: int = field(default=1, metadata={"help": "Labelled examples per class (token level: K~2K mentions)."})
    n_query: int = field(default=15, metadata={"help": "Unlabelled queries per class (sequence level)."})
    train_episodes: int = field(default=20000, metadata={"help": "Distinct training episodes per epoch."})
    uneven_train_queries: float = field(default=0.25, metadata={
        "help": "Share of training episodes (sequence level) whose classes each keep a random 1..n_query queries. "
                "Trained on even query sets only, SIB learns to expect them and falls below soft k-means on "
                "uneven ones (benchmarks/results/sib_fewshot_explore_uneven_train_half.md). 0 (with "
                "natural_train_queries=0) trains as the reference does."})
    natural_train_queries: float = field(default=0.5, metadata={
        "help": "Share of training episodes (sequence level) whose unlabelled queries are drawn at once from their "
                "classes' remaining examples, as often as the data holds each class (a class may get none): the pool "
                "a user has. The rest are uneven (uneven_train_queries) or even, so the two shares sum to at most 1. "
                "Half natural, a quarter uneven was at least as good as half uneven on meta-validation and lost less "
                "to the K = 0 start on natural pools (benchmarks/results/query_pools.md)."})
    uneven_eval_queries: float = field(default=0.0, metadata={
        "help": "The same for evaluation episodes: 1.0 scores on uneven query sets only."})
    max_train_ways: int | None = field(default=None, metadata={
        "help": "Draw each training episode's class count uniformly from min_train_ways..max_train_ways (capped at "
                "the training classes; sequence level, grad_net='equivariant'). None (default): every training "
                "episode is n_way-way. An equivariant model trained on 5-way episodes already serves any number of "
                "labels; mixing 2..10 ways was not better on meta-validation (benchmarks/results/fewshot_intents.md)."})
    min_train_ways: int = field(default=2, metadata={"help": "The fewest classes of a training episode when "
                                                             "max_train_ways is set."})
    num_eval_episodes: int = field(default=600, metadata={"help": "Episodes drawn for evaluation."})
    refinement_check_episodes: int = field(default=200, metadata={
        "help": "After training, check on this many validation tasks per size (n_way, doubling, up to every "
                "validation class at once; natural unlabelled pools) whether the refinement loses to its K = 0 start, "
                "and refine only tasks below the first size where it clearly did (SIBConfig.max_refined_classes); "
                "for a model that reads label names, check on as many n_way tasks whether they help, and turn them "
                "off where they clearly cost accuracy. 0 skips both checks."})
    eval_seed: int = field(default=1234, metadata={"help": "Seed of the evaluation episodes (same for every method)."})
    soft_kmeans_temperature: float = field(default=0.1, metadata={"help": "Soft k-means baseline temperature."})
    soft_kmeans_iterations: int = field(default=3, metadata={"help": "Soft k-means baseline iterations."})
    shape_top_layers: int | None = field(default=None, metadata={
        "help": "Before meta-training, fine-tune this many of the encoder's top layers on the meta-training "
                "classes (SIBForFewShotClassification.shape_backbone; sequence level, cached lower layers). None "
                f"(default): {SHAPING_DEFAULTS.top_layers} wherever shaping applies (a sequence-level model over a frozen "
                "BERT-family encoder, trained from labelled texts), none elsewhere. 0 meta-trains on the pretrained "
                "encoder's features."})
    shape_epochs: int = field(default=SHAPING_DEFAULTS.epochs, metadata={
        "help": "Passes over the meta-training texts when shaping."})
    shape_learning_rate: float = field(default=SHAPING_DEFAULTS.learning_rate, metadata={
        "help": "AdamW rate of the shaped layers."})
    shape_with_label_names: bool = field(default=True, metadata={
        "help": "For a model that reads label names (SIBConfig.use_label_names), shape the encoder with the training "
                "dataset's ClassLabel names too, so that each name comes to lie where its class's examples do "
                "(shape_encoder's class_names; only where most names point to their own class on the pretrained "
                "encoder). Chosen on meta-validation classes: benchmarks/results/shaping_names.md."})

    def __post_init__(self):
        check_settings("MetaTrainingArguments", self, _RULES)
        if self.uneven_train_queries + self.natural_train_queries > 1.0 + 1e-9:  # rounding of e.g. 0.7 + 0.3
            raise ValueError(f"MetaTrainingArguments: uneven_train_queries={self.uneven_train_queries} and "
                             f"natural_train_queries={self.natural_train_queries} are shares of the same training "
                             "episodes (the rest are even), so they sum to at most 1; lower one of them (e.g. "
                             "natural_train_queries=0 with uneven_train_queries=1 for uneven pools only).")
        if self.max_train_ways is not None and self.max_train_ways < self.min_train_ways:
            raise ValueError(f"MetaTrainingArguments: max_train_ways={self.max_train_ways} is below min_train_ways="
                             f"{self.min_train_ways}; give max_train_ways >= min_train_ways, or None for n_way-way "
                             "episodes only.")
        # Trainer settings that meta-training has no place for: refused rather than left idle.
        if self.label_smoothing_factor:  # the episode loss is SIB's own; Trainer's label smoother never runs
            raise ValueError(f"MetaTrainingArguments: label_smoothing_factor={self.label_smoothing_factor} would be "
                             "ignored: the meta-training loss is SIB's episode loss, not Trainer's cross-entropy. "
                             "Leave it at 0.")
        if self.neftune_noise_alpha:  # NEFTune perturbs token embeddings; SIB's classes are fit on pooled features
            raise ValueError(f"MetaTrainingArguments: neftune_noise_alpha={self.neftune_noise_alpha:g} has nothing to "
                             "perturb: SIB meta-learns on the encoder's pooled sentence features (frozen, or shaped "
                             "once before meta-training), not on token embeddings it trains. Leave it unset.")
        if self.train_sampling_strategy not in ("random", "sequential"):  # an episode has no length to group by
            raise ValueError(f"MetaTrainingArguments: train_sampling_strategy={self.train_sampling_strategy!r} groups "
                             "training rows by length or label, but meta-training draws whole episodes (each a random "
                             "N-way task): leave it 'random'.")
        if self.batch_eval_metrics:  # accuracies and their CIs are over all evaluation episodes at once
            raise ValueError("MetaTrainingArguments: batch_eval_metrics=True is not supported: SIB's evaluation "
                             "reports each method's mean and 95% CI over all evaluation episodes at once. Lower "
                             "num_eval_episodes or per_device_eval_batch_size if evaluation memory is the concern.")
        warn_idle_settings("MetaTrainingArguments", self, _READ_ONLY_WITH, stacklevel=4)  # past the dataclass __init__
        super().__post_init__()
        check_one_job(self)


_SHAPES = "shape_top_layers > 0 or None (shaping)"
_READ_ONLY_WITH = (  # settings that only some choices read (`warn_idle_settings`)
    ("min_train_ways", lambda a: a.max_train_ways is not None, "max_train_ways"),
    *((name, lambda a: a.shape_top_layers != 0, _SHAPES)
      for name in ("shape_epochs", "shape_learning_rate", "shape_with_label_names")),
)
_RULES = {
    "k_shot": Number(int, 1, 1000, example="1"),
    "n_query": Number(int, 1, 10000, example="15"),
    "train_episodes": Number(int, 1, example="20000"),
    "uneven_train_queries": Number(float, 0, 1, example="0.5", why="a share of episodes"),
    "natural_train_queries": Number(float, 0, 1, example="0.5", why="a share of episodes"),
    "uneven_eval_queries": Number(float, 0, 1, example="0.0", why="a share of episodes"),
    "max_train_ways": Number(int, 2, 10000, optional=True, example="20", why="classes per training episode"),
    "min_train_ways": Number(int, 2, 10000, example="2", why="classes per training episode"),
    "num_eval_episodes": Number(int, 1, example="600"),
    "refinement_check_episodes": Number(int, 0, example="200", why="0 skips the check"),
    "eval_seed": SEED,
    "soft_kmeans_temperature": Number(float, 0, low_open=True, example="0.1"),
    "soft_kmeans_iterations": Number(int, 0, 100, example="3"),
    "shape_top_layers": Number(int, 0, 1000, optional=True, example="2", why="0 keeps the pretrained encoder"),
    "shape_epochs": EPOCHS,
    "shape_learning_rate": Number(float, 0, 1, low_open=True, example="2e-5"),
    "shape_with_label_names": bool,
}
