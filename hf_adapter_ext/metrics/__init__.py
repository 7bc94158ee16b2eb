"""`evaluate` metric modules shipped with the package (they load offline), and Trainer glue."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import evaluate
import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import DataCollatorForTokenClassification

from ..bio import check_bio_decodable
from ..constants import IGNORE_INDEX
from ..data.alignment import encode_unlabelled, join_windows
from ..data.conll import to_iob2
from ..modeling.crf import CRF
from ..modeling.fingerprint import check_weights_digest, weights_digest
from ..validation import (
    POSITIVE_INT,
    SHARE,
    WrongKindError,
    check_choice,
    check_columns,
    check_finite_tensor,
    check_model,
    check_number,
    check_score,
    check_string_list,
    check_tag_sequences,
    check_texts,
    check_tokenizer,
    check_type_parents,
)

__all__ = [
    "ENTITY_F1",
    "MIN_SOURCE_AGREEMENT",
    "bio_decoder",
    "bio_invalid_spans",
    "entity_f1_compute_metrics",
    "evaluate_tagger",
    "forgotten_types",
    "ids_to_tags",
    "load_entity_f1",
    "predict_tags",
    "predicted_label_ids",
    "source_agreement",
    "type_f1",
    "write_predictions",
]

ENTITY_F1 = str(Path(__file__).resolve().parent / "entity_f1")


def load_entity_f1():
    return evaluate.load(ENTITY_F1)


def ids_to_tags(predictions: np.ndarray, label_ids: np.ndarray, id2label: Mapping[int, str]):
    """Drop ``-100`` positions and map ids to tag strings, sentence by sentence."""
    predictions, label_ids = np.asarray(predictions), np.asarray(label_ids)
    if predictions.shape != label_ids.shape:
        raise ValueError(f"predictions {predictions.shape} and label_ids {label_ids.shape} do not line up (one label "
                         "id per token; scores go through argmax first); pass the model's outputs and the labels of "
                         "the same batches.")
    scored = label_ids != IGNORE_INDEX
    for name, ids in (("predicted", predictions[scored]), ("gold", label_ids[scored])):
        unknown = sorted(set(np.unique(ids).tolist()) - set(id2label))
        if unknown:
            raise ValueError(f"{name} label ids {unknown[:5]} are not in id2label ({len(id2label)} labels): use the "
                             "evaluated model's own config.id2label, and data labelled in its label order "
                             "(with_label_order).")
    preds, refs = [], []
    for pred_row, label_row in zip(predictions, label_ids):
        keep = label_row != IGNORE_INDEX
        preds.append([id2label[int(p)] for p in pred_row[keep]])
        refs.append([id2label[int(label)] for label in label_row[keep]])
    return preds, refs


def label_names_by_id(id2label, owner: str) -> dict[int, str]:
    """``model.config.id2label`` as {int id: name}; a config read as plain JSON keys its ids "0", "1", ..."""
    if not isinstance(id2label, Mapping) or not all(isinstance(v, str) for v in id2label.values()):
        raise TypeError(f"{owner}: id2label must map label ids to label names (model.config.id2label); got "
                        f"{type(id2label).__name__}.")
    return {int(k): v for k, v in id2label.items()}


def check_new_types(new_types, id2label: Mapping[int, str], owner: str, absent_allowed: bool = False) -> list[str]:
    """``new_types`` as a list, checked against the types of ``id2label``'s labels: a type the labels lack scores a
    new-type F1 of 0, as if the model had failed it, and leaves the real new type among the old ones.

    Args:
        absent_allowed: accept types the labels lack, as when a source model is scored with its extension's new
            types (``evaluate_tagger``); a name that differs from one of the labels' types only in case is still
            refused as the misspelling it is.
    """
    new_types = check_string_list(owner, "new_types", new_types, "['LOC']")
    types = {label.partition("-")[2] or label for label in id2label.values() if label != "O"}
    absent = sorted(set(new_types) - types)
    by_case = {t.casefold(): t for t in types}
    misspelt = {name: by_case[name.casefold()] for name in absent if name.casefold() in by_case}
    if misspelt:
        raise ValueError(f"{owner}: new_types {sorted(misspelt)} are not types of the evaluated labels, which have "
                         f"{sorted(set(misspelt.values()))}; types are matched as written.")
    if absent and not absent_allowed:
        raise ValueError(f"{owner}: new_types {absent} are not types of the evaluated labels ({sorted(types)}); "
                         "name the types the extension added, e.g. new_types=model.peft_config.new_types.")
    return new_types


def entity_f1_compute_metrics(id2label: Mapping[int, str], new_types: Sequence[str] = (),
                              type_parents: Mapping[str, str] | None = None):
    """A ``compute_metrics`` for `transformers.Trainer` (with scores, or label ids from
    :func:`predicted_label_ids` as ``preprocess_logits_for_metrics``) reporting entity F1 overall, old/new and per type (and
    old types with subtypes counted as their parent, given ``type_parents``)."""
    id2label = label_names_by_id(id2label, "entity_f1_compute_metrics")
    type_parents = check_type_parents("entity_f1_compute_metrics", type_parents)
    new_types = check_new_types(new_types, id2label, "entity_f1_compute_metrics")
    metric = load_entity_f1()

    def batch_tags(predictions, label_ids) -> tuple[list, list]:
        predictions, label_ids = np.asarray(predictions), np.asarray(label_ids)
        if predictions.ndim == label_ids.ndim + 1:  # scores, not yet label ids
            if predictions.shape[-1] != len(id2label):
                raise ValueError(f"compute_metrics: the model scores {predictions.shape[-1]} labels but id2label names "
                                 f"{len(id2label)}; build it with the evaluated model's own config.id2label.")
            if not np.isfinite(predictions).all():
                refuse_non_finite_scores(repr(id2label.get(0)))
            predictions = predictions.argmax(-1)
        return ids_to_tags(predictions, label_ids, id2label)

    gathered: dict[str, list] = {"preds": [], "refs": []}  # batch_eval_metrics: the batches' tags so far

    def compute_metrics(eval_prediction, compute_result: bool | None = None) -> dict:
        """``eval_prediction``: Trainer's `EvalPrediction`, or a (predictions, label_ids) pair; with
        ``eval_do_concat_batches=False`` each is a list of per-batch arrays (padded to each batch's own length).
        ``compute_result``: given by Trainer under ``batch_eval_metrics=True``, one batch at a time (tensors): the
        batches' tags are kept until it is True, then scored together, so the scores are the whole set's."""
        predictions, label_ids = eval_prediction[0], eval_prediction[1]
        if isinstance(predictions, tuple):  # a model with extra outputs: Trainer passes them all, scores first
            predictions = predictions[0]
        predictions, label_ids = (x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else x
                                  for x in (predictions, label_ids))
        per_batch = isinstance(predictions, list) and isinstance(label_ids, list) and len(predictions) == len(
            label_ids) and all(np.ndim(ids) == 2 for ids in label_ids)  # not one nested list of sentences
        if per_batch:
            batches = [batch_tags(p, ids) for p, ids in zip(predictions, label_ids)]
            preds = [tags for batch_preds, _ in batches for tags in batch_preds]
            refs = [tags for _, batch_refs in batches for tags in batch_refs]
        else:
            preds, refs = batch_tags(predictions, label_ids)
        if compute_result is not None:
            gathered["preds"] += preds
            gathered["refs"] += refs
            if not compute_result:
                return {}
            preds, refs = gathered["preds"], gathered["refs"]
            gathered.update(preds=[], refs=[])  # the next evaluation starts afresh
        scores = metric.compute(predictions=preds, references=refs, new_types=new_types, type_parents=type_parents)
        if not new_types:  # a tagger with nothing new: a new-type F1 of 0.0 would read as a type it fails on
            scores = {k: v for k, v in scores.items() if k not in ("new_precision", "new_recall", "new_f1")}
        return scores

    return compute_metrics


def predicted_label_ids(logits, labels=None) -> torch.Tensor:
    """A ``preprocess_logits_for_metrics`` for `transformers.Trainer`: each token's predicted label id (the
    Viterbi path for a CRF model in eval mode), so evaluation gathers [N, T] ids instead of [N, T, L] scores."""
    logits = logits[0] if isinstance(logits, tuple) else logits
    if not bool(torch.isfinite(logits).all()):
        refuse_non_finite_scores("label 0")
    return logits.argmax(-1)


def refuse_non_finite_scores(label_zero: str) -> None:
    """NaN scores must not be scored: their argmax is label 0, usually 'O', a clean-looking "found nothing"."""
    raise ValueError(f"The model's scores hold NaN or infinite values; every token's argmax would read as {label_zero}. "
                     "Check the model (a diverged run, corrupt weights).")


# How a token classifier's scores become tags: "argmax" each token on its own (what `pipeline` does), or "bio", the most
# probable sequence of tags that BIO allows (see `bio_decoder`).
DECODINGS = ("argmax", "bio")


def bio_decoder(id2label: Mapping[int, str]) -> CRF:
    """A CRF with no learned scores, only BIO's constraints (``I-X`` continues ``B-X`` or ``I-X``, never starts):
    its Viterbi path over a plain tagger's log-probabilities is the most probable tag sequence that BIO allows, so
    a model without a CRF (a consolidated one) predicts no broken span. Decode the scored (word-start) positions
    only: ``decoder.decode(logits.log_softmax(-1), labels != -100)``."""
    labels = [id2label[i] for i in range(len(id2label))]
    check_bio_decodable(labels)
    return CRF.for_labels(labels).requires_grad_(False)


@torch.no_grad()
def predict_tags(model, dataset, tokenizer, id2label: Mapping[int, str], batch_size: int = 64, desc: str = "Predicting",
                 decoding: str = "argmax"):
    """Word-level predicted and gold tags of a tokenized dataset (with ``labels``), batched by length.

    Args:
        decoding: ``"argmax"`` tags each word on its own, as ``pipeline("token-classification")`` does (a CRF
            model's scores already carry its Viterbi path); ``"bio"`` takes the most probable tag sequence that BIO
            allows over the scored words of each row (:func:`bio_decoder`): what a plain model (a consolidated one)
            needs to predict no broken span. A long sentence encoded in windows is decoded window by window.
    """
    check_model(model, "predict_tags")
    check_tokenizer(tokenizer, "predict_tags")
    check_number("predict_tags", "batch_size", batch_size, POSITIVE_INT)
    check_choice("predict_tags", "decoding", decoding, DECODINGS)
    id2label = label_names_by_id(id2label, "predict_tags")
    decoder = bio_decoder(id2label).to(model.device) if decoding == "bio" else None
    dataset = check_columns(dataset, ["input_ids", "labels"], "the scored dataset", "tokenize it with labels "
                            "(tokenize_and_align_labels)")
    collator = DataCollatorForTokenClassification(tokenizer)
    columns = [c for c in ("input_ids", "attention_mask", "token_type_ids", "labels") if c in dataset.column_names]
    order = np.argsort([len(ids) for ids in dataset["input_ids"]])
    was_training = model.training
    model.eval()
    preds, refs = [], []
    for start in tqdm(range(0, len(order), batch_size), desc=desc, leave=False):
        rows = [{c: dataset[int(i)][c] for c in columns} for i in order[start : start + batch_size]]
        batch = collator(rows)
        labels = batch.pop("labels")
        logits = model(**{k: v.to(model.device) for k, v in batch.items()}).logits
        if logits.size(-1) != len(id2label):
            raise ValueError(f"predict_tags: the model scores {logits.size(-1)} labels but id2label names "
                             f"{len(id2label)}; pass the tagged model's own config.id2label.")
        check_finite_tensor(logits, "predict_tags: the model's scores")
        if decoder is None:
            ids = logits.argmax(-1)
        else:
            ids = decoder.decode(torch.log_softmax(logits.float(), dim=-1), (labels != IGNORE_INDEX).to(logits.device))
        p, r = ids_to_tags(ids.cpu().numpy(), labels.numpy(), id2label)
        preds += p
        refs += r
    model.train(was_training)
    restore = np.argsort(order)
    preds, refs = [preds[i] for i in restore], [refs[i] for i in restore]
    if "word_offset" in dataset.column_names:  # long sentences were encoded in windows

        offsets = dataset["word_offset"]
        preds, refs = join_windows(preds, offsets), join_windows(refs, offsets)
    return preds, refs


def write_predictions(model, dataset, tokenizer, path: str | os.PathLike) -> list[list[str]]:
    """``model``'s predicted tags for ``dataset`` (tokenized, with labels) written as run_ner.py's
    ``predictions.txt``: one line per sentence, its words' tags separated by spaces (a long sentence's windows
    joined). Returns the tags."""
    check_model(model, "write_predictions")
    tags, _ = predict_tags(model, dataset, tokenizer, model.config.id2label, desc="Writing the predictions")
    Path(path).write_text("".join(" ".join(sentence) + "\n" for sentence in tags), encoding="utf-8")
    return tags


def evaluate_tagger(model, dataset, tokenizer, id2label, new_types: Sequence[str] = (),
                    type_parents: Mapping[str, str] | None = None, **kwargs) -> dict:
    """Entity F1 (overall, old/new, per type; old with subtypes as parents) of ``model`` on a tokenized,
    labelled dataset, and its ``bio_invalid_spans``."""
    new_types = check_new_types(new_types, label_names_by_id(id2label, "evaluate_tagger"), "evaluate_tagger",
                                absent_allowed=True)  # a source scored with its extension's new types
    type_parents = check_type_parents("evaluate_tagger", type_parents)
    preds, refs = predict_tags(model, dataset, tokenizer, id2label, **kwargs)
    scores = load_entity_f1().compute(predictions=preds, references=refs, new_types=new_types,
                                      type_parents=type_parents)
    return {**{k: float(v) if isinstance(v, float) else v for k, v in scores.items()},
            "bio_invalid_spans": bio_invalid_spans(preds)}


def bio_invalid_spans(predictions: Sequence[Sequence[str]]) -> int:
    """Predicted I- tags that open an entity (continue nothing), which IOB2 repair rewrites: a CRF under BIO
    constraints predicts none, a linear head can; what dropping the CRF costs beyond F1."""

    predictions = check_tag_sequences("bio_invalid_spans", predictions)
    return sum(a != b for tags in predictions for a, b in zip(tags, to_iob2(tags)))


def type_f1(scores: Mapping[str, float], prefix: str = "") -> dict[str, float]:
    """``{type: F1}`` of the entity types in an :func:`evaluate_tagger` (or Trainer metrics) result, told from the
    group scores (``overall_f1``, ``old_f1``, ...) by their ``<type>_support``; ``prefix`` is Trainer's metric key
    prefix, e.g. ``"test_"``."""
    if not isinstance(scores, Mapping):
        raise WrongKindError(f"type_f1 takes an evaluate_tagger (or Trainer metrics) result, a dict of scores; got "
                             f"{type(scores).__name__}.")
    return {key[len(prefix):-len("_f1")]: value for key, value in scores.items()
            if key.startswith(prefix) and key.endswith("_f1") and f"{key[:-len('_f1')]}_support" in scores}


def forgotten_types(before: Mapping[str, float], after: Mapping[str, float], new_types: Sequence[str] = (),
                    max_drop: float = 0.05) -> dict[str, tuple[float, float]]:
    """Old types whose F1 fell by more than ``max_drop`` between two :func:`evaluate_tagger` results (the
    source's and the extended model's, on the same held-out data): ``{type: (before, after)}``. A new type that
    refines an old one (politician ⊂ PER) shows up here when it swallowed its parent."""
    if not isinstance(before, Mapping) or not isinstance(after, Mapping):
        raise TypeError("forgotten_types compares two evaluate_tagger results (dicts of scores); got "
                        f"{type(before).__name__} and {type(after).__name__}.")
    check_number("forgotten_types", "max_drop", max_drop, SHARE)
    new_types = check_string_list("forgotten_types", "new_types", [] if new_types is None else new_types, "['LOC']")
    if not type_f1(before):  # nothing to compare: every type would pass as "not forgotten"
        raise ValueError(f"forgotten_types: `before` holds no per-type scores (keys like 'PER_f1' beside "
                         f"'PER_support'; got {sorted(before)[:6]}); pass two evaluate_tagger results.")
    old = {t: check_score("forgotten_types", f"before[{t + '_f1'!r}]", f1) for t, f1 in type_f1(before).items()
           if t not in set(new_types)}
    scores = {t: (f1, check_score("forgotten_types", f"after[{t + '_f1'!r}]", after.get(f"{t}_f1", 0.0)))
              for t, f1 in sorted(old.items())}
    return {t: pair for t, pair in scores.items() if pair[0] - pair[1] > max_drop}


# Below this agreement with the source, on text of the source's kind, an old type is reported as drifting.
MIN_SOURCE_AGREEMENT = 0.9


def as_old_types(tags: Sequence[str], old_types: set[str], parents: Mapping[str, str]) -> list[str]:
    """An extended model's tags in the source's terms: a new type that refines an old one (``politician`` with
    parent ``PER``) becomes its parent, any other new type becomes ``O``."""
    out = []
    for tag in tags:
        prefix, _, entity = tag.partition("-")
        entity = parents.get(entity, entity)
        out.append(f"{prefix}-{entity}" if entity in old_types else "O")
    return out


def without_unopened_entities(tags: Sequence[str]) -> list[str]:
    """``tags`` with every ``I-`` tag that continues no entity set to ``O``: the spans strict IOB2 reads in them,
    written as valid gold tags (a model's predictions, scored as the reference another model is compared with)."""
    out, previous = [], "O"
    for tag in tags:
        previous = "O" if tag.startswith("I-") and previous[2:] != tag[2:] else tag
        out.append(previous)
    return out


def source_agreement(source, model, sentences: Sequence[str], tokenizer, label_parents: Mapping[str, str] | None = None,
                     max_sentences: int = 500, batch_size: int = 64) -> dict[str, float]:
    """Per old type, the entity F1 of the extended ``model``'s tags against the ``source``'s own, on text of the
    source's kind: ``{type: F1}`` for each type the source finds there (1.0 = the extension tags it as the source
    did). Scored on the domain's test set, a source that was poor there hides what the extension forgot; on the
    source's own kind of text (rehearsal text, or held-out text from its world) the loss shows.

    Args:
        sentences: plain sentences, one per item, split into words on whitespace (no labels needed).
        label_parents: the extension's ``{new type: old type}``; a refining type counts as its parent. None: the
            extended model's own ``label_parents``, if it has any; ``{}`` scores every subtype as a disagreement.
        max_sentences: the first this many are tagged (both models run over them).
    """
    check_model(source, "source_agreement's source")
    check_model(model, "source_agreement's model")
    check_tokenizer(tokenizer, "source_agreement")
    missing = sorted(set(source.config.id2label.values()) - set(model.config.id2label.values()))
    if missing:
        raise ValueError(f"source_agreement: the model lacks the source's labels {missing[:5]}, so it is not an "
                         "extension of this source. Pass the source first, then the model extended from it "
                         "(source_agreement(source, model, ...)).")
    own_source = getattr(model, "source", None)  # an extended model knows its source; a plain one cannot tell
    if own_source is not None and own_source is not source:  # another tagger would measure agreement with it
        check_weights_digest(weights_digest(own_source, ("lora_",)), weights_digest(source, ("lora_",)),
                             "source_agreement's source", "Pass the source the model was extended from "
                             "(model.source).")
    if label_parents is None:
        label_parents = getattr(getattr(model, "peft_config", None), "label_parents", None)
    label_parents = check_type_parents("source_agreement", label_parents, "label_parents")
    sentences = check_texts(sentences, "source_agreement: sentences")[:check_number(
        "source_agreement", "max_sentences", max_sentences, POSITIVE_INT)]
    encoded = encode_unlabelled([sentence.split() for sentence in sentences], tokenizer, desc="Encoding text")
    source_tags, _ = predict_tags(source, encoded, tokenizer, source.config.id2label, batch_size,
                                  desc="Tagging with the source")
    model_tags, _ = predict_tags(model, encoded, tokenizer, model.config.id2label, batch_size,
                                 desc="Tagging with the extension")
    old_types = {label.partition("-")[2] for label in source.config.id2label.values() if label != "O"}
    mapped = [as_old_types(tags, old_types, dict(label_parents or {})) for tags in model_tags]
    scores = load_entity_f1().compute(predictions=mapped,
                                      references=[without_unopened_entities(tags) for tags in source_tags])
    return {entity: float(f1) for entity, f1 in type_f1(scores).items()
            if entity in old_types and scores.get(f"{entity}_support", 0) > 0}
