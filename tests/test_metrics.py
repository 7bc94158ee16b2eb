import evaluate

from hf_adapter_ext.metrics import ENTITY_F1


def test_entity_f1_module_loads_offline_and_splits_old_and_new_types():
    metric = evaluate.load(ENTITY_F1)
    scores = metric.compute(
        predictions=[["B-PER", "O", "O", "O", "B-ORG", "B-LOC", "B-LOC"]],
        references=[["B-PER", "I-PER", "O", "B-LOC", "B-ORG", "O", "B-LOC"]],
        new_types=["LOC"],
    )
    # gold: PER(0-2), LOC(3), ORG(4), LOC(6); predicted: PER(0), ORG(4), LOC(5), LOC(6)
    assert scores["ORG_f1"] == 1.0 and scores["PER_f1"] == 0.0
    assert scores["new_precision"] == 0.5 and scores["new_recall"] == 0.5
    assert scores["old_precision"] == 0.5 and scores["old_recall"] == 0.5
    assert abs(scores["overall_f1"] - 0.5) < 1e-9 and scores["LOC_support"] == 2


def test_forgotten_types_names_an_old_type_a_new_one_swallowed():
    from hf_adapter_ext.metrics import forgotten_types

    before = {"PER_f1": 0.925, "PER_support": 10, "ORG_f1": 0.8, "ORG_support": 5, "old_f1": 0.86}
    after = {"PER_f1": 0.009, "PER_support": 10, "ORG_f1": 0.79, "ORG_support": 5, "politician_f1": 0.7,
             "politician_support": 3}
    assert forgotten_types(before, after, ["politician"]) == {"PER": (0.925, 0.009)}
    assert forgotten_types(before, before) == {}


def test_bio_invalid_spans_counts_the_i_tags_that_open_an_entity():
    from hf_adapter_ext.metrics import bio_invalid_spans

    predictions = [["I-PER", "I-PER", "O", "B-LOC", "I-LOC"], ["O", "I-LOC", "B-ORG", "I-MISC"]]
    assert bio_invalid_spans(predictions) == 3  # I-PER at the start, I-LOC after O, I-MISC after ORG
    assert bio_invalid_spans([["B-PER", "I-PER", "O"]]) == 0
