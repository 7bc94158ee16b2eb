"""benchmarks/incremental_ner.py's relabelling: each step's data keeps only that step's types."""

from datasets import ClassLabel, Dataset, Features, Sequence, Value

from benchmarks.incremental_ner import SETTINGS, bio, only_types


def test_only_the_steps_types_stay_and_ids_follow_the_models_label_order():
    names = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG"]
    data = Dataset.from_dict({"tokens": [["John", "Smith", "in", "Paris", "Acme"]], "ner_tags": [[1, 2, 0, 3, 5]]},
                             features=Features({"tokens": Sequence(Value("string")),
                                                "ner_tags": Sequence(ClassLabel(names=names))}))
    labels = ["O", *bio(["ORG"]), *bio(["LOC"])]
    step = only_types(data, ["LOC"], labels)
    assert step.features["ner_tags"].feature.names == labels
    assert [labels[t] for t in step[0]["ner_tags"]] == ["O", "O", "O", "B-LOC", "O"]


def test_settings_bring_every_conll_type_once_in_alphabetical_order():
    for groups in SETTINGS.values():
        types = [t for group in groups for t in group]
        assert types == ["LOC", "MISC", "ORG", "PER"]
