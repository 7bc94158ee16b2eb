"""Entity-level F1 (seqeval, exact spans) with an old-type / new-type split and per-type scores.

Shipped inside hf_adapter_ext so it loads offline: ``evaluate.load(hf_adapter_ext.metrics.ENTITY_F1)``.
"""

import warnings

import datasets
import evaluate
from seqeval.scheme import IOB2, Entities

from hf_adapter_ext.bio import is_bio_label
from hf_adapter_ext.data.conll import to_iob2
from hf_adapter_ext.validation import check_string_list, check_type_parents, entity_type_name

_DESCRIPTION = """Entity-level precision, recall and F1 over exact spans (seqeval, strict IOB2), overall,
per entity type, and for two groups of types: the `new_types` a model was extended with and the old ones."""

_KWARGS_DESCRIPTION = """
Args:
    predictions: list of tag sequences (strings, IOB2), one per sentence.
    references: list of gold tag sequences, aligned with predictions.
    new_types: entity types added by the extension (e.g. ["LOC"]); the others count as old.
    type_parents: new subtypes and the old type each refines (e.g. {"politician": "PER"}); adds
        old_{precision,recall,f1}_with_subtypes, the old-type scores with each subtype counted as its parent.
    scheme, mode, suffix, zero_division, sample_weight: seqeval's options, as `evaluate.load("seqeval")` takes them;
        accepted where they ask for what this metric does (scheme "IOB2", mode "strict", suffix False, zero_division
        0 or "warn", no sample weights: every span counts once), refused otherwise.
Returns:
    {overall,old,new}_{precision,recall,f1} (micro-averaged over the group's spans),
    and for each type T: T_precision, T_recall, T_f1, T_support.
"""



def _spans(sequences) -> set:
    """Exact entity spans ``(sentence, type, start, end)`` under strict IOB2."""
    return {e.to_tuple() for sentence in Entities(sequences, IOB2).entities for e in sentence}


def _check_gold_opens_with_b(tags, sentence: int) -> None:
    """Refuse gold tags where an ``I-`` tag opens an entity (after ``O``, first, or after another type). Strict
    IOB2 drops such an entity, so gold data in IOB1 (the raw CoNLL-2003 files) would lose most of its entities and
    score every model low without a word; a prediction that does this is the model's error and is scored as one."""
    position = next((i for i, (tag, valid) in enumerate(zip(tags, to_iob2(tags))) if tag != valid), None)
    if position is not None:
        previous = tags[position - 1] if position else "O"
        raise ValueError(f"entity_f1 references, sentence {sentence}, position {position}: {tags[position]!r} follows "
                         f"{previous!r}, so it opens an entity, which IOB2 gold tags never do (the entity would not be "
                         "counted). The gold data looks like IOB1: convert it with hf_adapter_ext.data.conll.to_iob2 "
                         "(load_conll does this for CoNLL files).")


def _scores(gold: set, predicted: set) -> tuple:
    correct = len(gold & predicted)
    precision = correct / len(predicted) if predicted else 0.0
    recall = correct / len(gold) if gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if correct else 0.0
    return precision, recall, f1


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class EntityF1(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({
                "predictions": datasets.Sequence(datasets.Value("string")),
                "references": datasets.Sequence(datasets.Value("string")),
            }),
        )

    def _compute(self, predictions, references, new_types=None, type_parents=None, scheme=None, mode=None,
                 suffix=False, zero_division=0, sample_weight=None):
        # seqeval's own options, as evaluate.load("seqeval") takes them: accepted where they ask for what this
        # metric does (strict IOB2 spans, prefixes first, 0 for an undefined score), refused otherwise
        for option, value, meant in (("scheme", scheme, (None, "IOB2", IOB2)), ("mode", mode, (None, "strict")),
                                     ("suffix", suffix, (False,)), ("zero_division", zero_division, (0, 0.0, "warn")),
                                     ("sample_weight", sample_weight, (None,))):
            if not any(value is m or (type(value) is type(m) and value == m) for m in meant):
                raise ValueError(f"entity_f1 {option}={value!r}: this metric scores exact spans under strict IOB2 "
                                 "(seqeval's mode='strict', scheme=IOB2, tag prefixes first, 0 where a score is "
                                 "undefined) and takes no other setting. Convert IOBES / BILOU tags with "
                                 "hf_adapter_ext.data.conll.from_iobes, or use seqeval itself for other modes.")
        new_types = check_string_list("entity_f1", "new_types", [] if new_types is None else new_types, "['LOC']")
        for name in new_types:
            entity_type_name(name, "entity_f1 new_types")
        type_parents = check_type_parents("entity_f1", type_parents)
        if not references:  # no sentence scored: a 0.0 here would read as a model that finds nothing
            raise ValueError("entity_f1: no sentences to score (predictions and references are empty); pass one list "
                             "of tags per sentence.")
        for i, (pred, ref) in enumerate(zip(predictions, references)):
            if len(pred) != len(ref):
                raise ValueError(f"Sentence {i}: {len(pred)} predicted tags for {len(ref)} gold tags.")
            for name, tags in (("predictions", pred), ("references", ref)):
                bad = [tag for tag in tags if tag != "O" and not (isinstance(tag, str) and is_bio_label(tag))][:1]
                if bad and str(bad[0]).startswith('"'):  # datasets JSON-quotes a list that mixes strings with numbers
                    raise ValueError(f"entity_f1 {name}, sentence {i} mixes tags with other values (it arrived as "
                                     f"{list(tags)[:4]}): pass tag strings only; drop the positions labelled -100 "
                                     "(subword continuations, padding) before scoring, as run_ner.py's "
                                     "compute_metrics does.")
                if bad:
                    raise ValueError(f"entity_f1 {name}, sentence {i}: {bad[0]!r} is not an IOB2 tag ('O', 'B-<type>', "
                                     "'I-<type>', prefixes in capitals). Map the tags to IOB2 first (e.g. 'b-per' -> "
                                     "'B-per', IOBES 'S-PER' -> 'B-PER').")
            _check_gold_opens_with_b(ref, i)
        gold, predicted = _spans(references), _spans(predictions)
        types = sorted({span[1] for span in gold | predicted})
        absent = sorted(set(new_types) - set(types))
        if absent and len(absent) == len(set(new_types)):  # a misspelt name would score 0 without a word
            warnings.warn(f"entity_f1: none of new_types {absent} is in the predictions or references, so new_f1 is "
                          f"0 by definition; the types scored are {types}. Check their spelling.", stacklevel=2)
        new_types = set(new_types or [])

        def restricted(spans, keep):
            return {span for span in spans if keep(span[1])}

        result = {}
        groups = {"overall": lambda t: True, "old": lambda t: t not in new_types, "new": lambda t: t in new_types}
        for name, keep in groups.items():
            p, r, f = _scores(restricted(gold, keep), restricted(predicted, keep))
            result.update({f"{name}_precision": p, f"{name}_recall": r, f"{name}_f1": f})
        for t in types:
            type_gold = restricted(gold, lambda x, t=t: x == t)
            p, r, f = _scores(type_gold, restricted(predicted, lambda x, t=t: x == t))
            result.update({f"{t}_precision": p, f"{t}_recall": r, f"{t}_f1": f, f"{t}_support": len(type_gold)})
        if type_parents:
            def as_parent(spans):
                return {(s[0], type_parents.get(s[1], s[1]), *s[2:]) for s in spans}

            p, r, f = _scores(restricted(as_parent(gold), groups["old"]), restricted(as_parent(predicted), groups["old"]))
            result.update({"old_precision_with_subtypes": p, "old_recall_with_subtypes": r,
                           "old_f1_with_subtypes": f})
        return result
