"""Training episodes mix even, uneven and natural unlabelled pools in the shares asked for
(`EpisodeSampler(uneven_queries=..., natural_queries=...)`, `MetaTrainingArguments.natural_train_queries`)."""

import numpy as np
import pytest

from hf_adapter_ext import SemiSupervisedMetaTrainer, SIBConfig, SIBForFewShotClassification
from hf_adapter_ext.meta import EpisodeSampler, MetaTrainingArguments
from tests.test_meta import intent_data, meta_args, tiny_backbone

# class 0 is 50x as frequent as class 1: a natural pool of 20 queries is nearly all class 0, which an even (10 + 10)
# or uneven (1..10 of each) pool never is
LABELS = np.repeat([0, 1], [1000, 20])


def pool_kind(sampler: EpisodeSampler, index: int) -> str:
    counts = np.bincount(sampler(index).query_labels, minlength=2)
    if list(counts) == [10, 10]:
        return "even"
    return "natural" if counts.sum() == 20 and counts.min() < 5 else "uneven"


@pytest.mark.parametrize(("natural", "uneven"), [(0.5, 0.25), (0.2, 0.8), (0.7, 0.0), (1.0, 0.0), (0.0, 0.5)])
def test_each_episode_is_natural_uneven_or_even_in_the_shares_asked_for(natural, uneven):
    sampler = EpisodeSampler(LABELS, [0, 1], 2, 1, 10, seed=3, uneven_queries=uneven, natural_queries=natural)
    kinds = [pool_kind(sampler, i) for i in range(3000)]
    # an uneven pool of ten of each class (1 in 100 of them) counts as even: within the tolerance
    for kind, share in (("natural", natural), ("uneven", uneven), ("even", 1 - natural - uneven)):
        assert abs(kinds.count(kind) / len(kinds) - share) < 0.04, (kind, kinds.count(kind))
    assert [pool_kind(sampler, i) for i in range(50)] == kinds[:50]  # episode i depends only on (seed, i)


def test_true_and_false_mean_every_episode_and_none():
    everything = EpisodeSampler(LABELS, [0, 1], 2, 1, 10, seed=1, natural_queries=True)
    share_one = EpisodeSampler(LABELS, [0, 1], 2, 1, 10, seed=1, natural_queries=1.0)
    nothing = EpisodeSampler(LABELS, [0, 1], 2, 1, 10, seed=1, uneven_queries=0.5, natural_queries=False)
    default = EpisodeSampler(LABELS, [0, 1], 2, 1, 10, seed=1, uneven_queries=0.5)
    for i in range(20):
        assert list(everything(i).query) == list(share_one(i).query)
        assert list(nothing(i).query) == list(default(i).query)


@pytest.mark.parametrize(("natural", "uneven", "error", "pattern"), [
    (0.6, 0.5, ValueError, r"sum to at most 1"),
    (-0.1, 0.0, ValueError, r"natural_queries"),
    (1.5, 0.0, ValueError, r"natural_queries"),
    ("half", 0.0, TypeError, r"natural_queries"),
])
def test_bad_shares_are_refused_by_name(natural, uneven, error, pattern):
    with pytest.raises(error, match=pattern):
        EpisodeSampler(LABELS, [0, 1], 2, 1, 10, uneven_queries=uneven, natural_queries=natural)


def test_training_arguments_refuse_shares_above_one(tmp_path):
    with pytest.raises(ValueError, match=r"uneven_train_queries=0.75 and natural_train_queries=0.5.*at most 1"):
        meta_args(tmp_path, uneven_train_queries=0.75, natural_train_queries=0.5)
    with pytest.raises(ValueError, match="natural_train_queries"):
        meta_args(tmp_path, natural_train_queries=2.0)


def test_the_trainer_draws_training_episodes_with_its_shares_and_evaluates_on_even_ones(tmp_path, tokenizer):
    data = intent_data(tokenizer)
    model = SIBForFewShotClassification(SIBConfig(n_way=3), backbone=tiny_backbone(tokenizer.vocab_size))
    args = meta_args(tmp_path, uneven_train_queries=0.3, natural_train_queries=0.6)
    trainer = SemiSupervisedMetaTrainer(model=model, args=args, train_dataset=data, eval_dataset=data,
                                        processing_class=tokenizer)
    train, evaluation = trainer.as_episodes(data, training=True), trainer.as_episodes(data, training=False)
    assert (train.sampler.uneven_queries, train.sampler.natural_queries) == (0.3, 0.6)
    assert (evaluation.sampler.uneven_queries, evaluation.sampler.natural_queries) == (0.0, 0.0)


def test_the_defaults_are_shares_of_the_same_episodes():
    fields = MetaTrainingArguments.__dataclass_fields__
    assert fields["uneven_train_queries"].default + fields["natural_train_queries"].default <= 1.0
