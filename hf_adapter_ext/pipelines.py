"""`pipeline("token-classification")` with BIO-constrained decoding, for plain taggers (a consolidated model).

A plain token classifier picks each token's tag on its own, so it can open an entity with an ``I-`` tag that
continues nothing; a CRF model cannot. This pipeline keeps everything of transformers' token-classification
pipeline (aggregation strategies, offsets, chunking of long texts) and changes one thing: the tags are the most
probable sequence that BIO allows (`bio.bio_viterbi`), decoded over words with a word-level aggregation strategy
(``first``, ``average``, ``max``) and over tokens with ``none`` / ``simple``::

    from transformers import pipeline
    from hf_adapter_ext.pipelines import BIOTokenClassificationPipeline

    tagger = pipeline("token-classification", model="me/ner-plus-loc-plain", aggregation_strategy="first",
                      pipeline_class=BIOTokenClassificationPipeline)

Each entity's ``score`` stays the model's own probability of its decoded tag.

Like `bio.py`, this module imports nothing else from hf_adapter_ext: `save_consolidated` copies the two into a
consolidated model's folder, so ``pipeline(model=<folder or repo>, trust_remote_code=True)`` runs this pipeline
where hf_adapter_ext is not installed.
"""

from __future__ import annotations

import numpy as np
from transformers import TokenClassificationPipeline
from transformers.pipelines.token_classification import AggregationStrategy
from transformers.utils import logging

from .bio import bio_allowed_transitions, bio_viterbi, check_bio_decodable

_WORD_LEVEL = {AggregationStrategy.FIRST, AggregationStrategy.AVERAGE, AggregationStrategy.MAX}
_TINY = float(np.finfo(np.float32).tiny)
logger = logging.get_logger(__name__)


def _units(pre_entities: list[dict], aggregation_strategy: AggregationStrategy) -> list[list[int]]:
    """Indices of ``pre_entities`` grouped into what gets one tag: words (a start and its sub-word pieces) under a
    word-level strategy, single tokens otherwise."""
    if aggregation_strategy not in _WORD_LEVEL:
        return [[i] for i in range(len(pre_entities))]
    units: list[list[int]] = []
    for i, entity in enumerate(pre_entities):
        if entity["is_subword"] and units:
            units[-1].append(i)
        else:
            units.append([i])
    return units


def _unit_scores(members: list[np.ndarray], aggregation_strategy: AggregationStrategy) -> np.ndarray:
    """A word's label distribution as transformers aggregates it (first piece, mean, or the most confident piece)."""
    if aggregation_strategy == AggregationStrategy.AVERAGE:
        return np.mean(members, axis=0)
    if aggregation_strategy == AggregationStrategy.MAX:
        return members[int(np.argmax([m.max() for m in members]))]
    return members[0]


class BIOTokenClassificationPipeline(TokenClassificationPipeline):
    """Token classification whose tags form a valid BIO sequence: pass it as ``pipeline(...,
    pipeline_class=BIOTokenClassificationPipeline)``. The model's labels must be BIO tags (refused here otherwise)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("task", "token-classification")  # built directly, transformers would check it for task ''
        super().__init__(*args, **kwargs)
        id2label = self.model.config.id2label
        labels = [id2label[i] for i in range(len(id2label))]
        check_bio_decodable(labels)
        self.bio_masks = bio_allowed_transitions(labels)  # built once, not per text

    def _sanitize_parameters(self, *args, aggregation_strategy=None, **kwargs):
        if isinstance(aggregation_strategy, str) and aggregation_strategy.upper() not in AggregationStrategy.__members__:
            raise ValueError(f"aggregation_strategy={aggregation_strategy!r} is not one of "
                             f"{[strategy.value for strategy in AggregationStrategy]}.")
        return super()._sanitize_parameters(*args, aggregation_strategy=aggregation_strategy, **kwargs)

    def preprocess(self, sentence, offset_mapping=None, **preprocess_params):
        """transformers' preprocessing, told apart when a text is longer than the model takes: without ``stride``
        transformers tags only its first ``model_max_length`` tokens and drops the rest without a word. The text is
        counted again only when its one chunk is cut at that length."""
        chunks = super().preprocess(sentence, offset_mapping=offset_mapping, **preprocess_params)
        if "stride" in preprocess_params.get("tokenizer_params", {}):
            yield from chunks
            return
        first = next(chunks)
        tokens = first["input_ids"].size(-1)
        positions = getattr(self.model.config, "max_position_embeddings", None) or tokens
        limit = min(self.tokenizer.model_max_length or positions, positions)
        if tokens >= limit:  # maybe cut: count the whole text
            words = preprocess_params.get("is_split_into_words", False)
            tokens = len(self.tokenizer(sentence, is_split_into_words=words, truncation=False,
                                        verbose=False)["input_ids"])
        if tokens > limit:
            fix = (f"pass stride={limit // 4} (with aggregation_strategy='first', 'average', 'max' or 'simple') to "
                   f"tag it all in overlapping windows")
            if self.tokenizer.model_max_length > positions:
                raise ValueError(f"The text is {tokens} tokens long, but the model takes at most {positions} and the "
                                 f"tokenizer's model_max_length ({self.tokenizer.model_max_length}) does not cut it: "
                                 f"set tokenizer.model_max_length = {positions} and {fix}.")
            logger.warning("The text is %d tokens long and the model takes %d: the tokens after them are not "
                           "tagged; %s.", tokens, limit, fix)
        yield first
        yield from chunks

    def gather_pre_entities(self, sentence, input_ids, scores, offset_mapping, special_tokens_mask,
                            aggregation_strategy, word_ids=None, word_to_chars_map=None) -> list[dict]:
        if not np.isfinite(scores).all():  # every tag would be NaN: transformers' pipeline returns no entity
            raise ValueError("The model's scores for this text hold NaN or infinite values, so no tag can be chosen "
                             "(transformers' own pipeline would return no entity without a word). Check the model's "
                             "weights and inputs.")
        pre_entities = super().gather_pre_entities(sentence, input_ids, scores, offset_mapping, special_tokens_mask,
                                                   aggregation_strategy, word_ids=word_ids,
                                                   word_to_chars_map=word_to_chars_map)
        if not pre_entities:
            return pre_entities
        units = _units(pre_entities, aggregation_strategy)
        unit_scores = np.stack([_unit_scores([pre_entities[i]["scores"] for i in unit], aggregation_strategy)
                                for unit in units])
        path = bio_viterbi(np.log(np.maximum(unit_scores, _TINY)), *self.bio_masks)
        for unit, label, distribution in zip(units, path, unit_scores):
            kept = np.zeros_like(distribution)  # only the decoded tag keeps its probability: every aggregation's argmax
            kept[label] = max(float(distribution[label]), _TINY)
            for i in unit:
                pre_entities[i] = {**pre_entities[i], "scores": kept}
        return pre_entities
