"""benchmarks/incremental_ner.py: each step's data keeps only that step's types; runs kept side by side merge."""

import json

import pytest
from datasets import ClassLabel, Dataset, Features, Sequence, Value

from benchmarks.incremental_ner import SETTINGS, bio, borrow_runs, merge_kept_runs, only_types, same_settings


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


def test_merge_kept_runs_takes_in_another_process_runs_and_keeps_the_longer_record(tmp_path):
    state_file = tmp_path / "runs.json"
    settings = {"learning_rate": 1e-4}
    state_file.write_text(json.dumps({"settings": settings, "runs": {
        "fg1pg1/ours/seed2": {"steps": [{"micro_f1": 1.0}]},
        "fg1pg1/ours/seed1": {"steps": [{"micro_f1": 2.0}]}}}))
    state = {"settings": settings, "runs": {"fg1pg1/ours/seed1": {"steps": [{"micro_f1": 2.0}, {"micro_f1": 3.0}]}}}
    merge_kept_runs(state, state_file)
    assert state["runs"] == {"fg1pg1/ours/seed1": {"steps": [{"micro_f1": 2.0}, {"micro_f1": 3.0}]},
                             "fg1pg1/ours/seed2": {"steps": [{"micro_f1": 1.0}]}}
    state_file.write_text(json.dumps({"settings": {"learning_rate": 1.0}, "runs": {"x/y/seed0": {"steps": [{}]}}}))
    merge_kept_runs(state, state_file)
    assert "x/y/seed0" not in state["runs"]  # runs kept under other settings are not mixed in


def test_runs_kept_before_the_consolidation_options_existed_count_as_their_previous_defaults():
    kept = {"learning_rate": 1e-4}  # a runs.json written before --consolidation_epochs / --path_weight
    assert same_settings(kept, {"learning_rate": 1e-4, "consolidation_epochs": 1.0, "path_weight": 0.0})
    assert not same_settings(kept, {"learning_rate": 1e-4, "consolidation_epochs": 3.0, "path_weight": 0.5})
    assert not same_settings(None, {"learning_rate": 1e-4})
    assert same_settings(kept, {"learning_rate": 1e-4, "extension_epochs": 1.0})
    assert not same_settings(kept, {"learning_rate": 1e-4, "extension_epochs": 4.0})


def test_where_runs_are_kept_or_written_does_not_make_them_stale():
    kept = {"learning_rate": 1e-4, "state": "a", "results_dir": "/x"}  # states kept before NOT_SETTINGS held these
    assert same_settings(kept, {"learning_rate": 1e-4})
    assert same_settings(kept, {"learning_rate": 1e-4, "state": "b", "results_dir": "/y"})
    assert not same_settings(kept, {"learning_rate": 1e-3, "results_dir": "/x"})


def test_borrowed_runs_are_only_those_the_consolidation_options_cannot_change(tmp_path):
    other = tmp_path / "runs.json"
    other.write_text(json.dumps({"settings": {"learning_rate": 1e-4, "state": "a"}, "runs": {
        "fg1pg1/extendner/seed0": {"steps": [{"micro_f1": 1.0}]}, "fg1pg1/joint/seed0": {"steps": [{}]},
        "fg1pg1/ours/seed0": {"steps": [{"micro_f1": 9.0}]}}}))
    state = {"settings": {"learning_rate": 1e-4, "state": "b", "consolidation_epochs": 3.0, "path_weight": 0.5},
             "runs": {"fg1pg1/joint/seed0": {"steps": [{}, {}]}, "fg1pg1/extendner/seed0": {"steps": []}}}
    borrow_runs(state, other)
    assert sorted(state["runs"]) == ["fg1pg1/extendner/seed0", "fg1pg1/joint/seed0"]
    assert state["runs"]["fg1pg1/extendner/seed0"]["steps"] == [{"micro_f1": 1.0}]  # the longer record wins
    assert len(state["runs"]["fg1pg1/joint/seed0"]["steps"]) == 2
    state["settings"]["extension_epochs"] = 4.0  # ExtendNER-style itself would change: refused
    with pytest.raises(ValueError, match="other settings"):
        borrow_runs(state, other)
