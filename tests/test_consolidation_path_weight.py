"""benchmarks/consolidation_path_weight.py: the weight is chosen on validation, and test gaps are reported for it."""

import argparse
import json

from benchmarks.consolidation_path_weight import summarise


def part(old, new, bio=0):
    return {"old_f1": old, "new_f1": new, "overall_f1": (old + new) / 2, "bio_invalid_spans": bio}


def test_the_weight_closest_to_the_extension_on_validation_is_chosen_and_its_test_gaps_are_the_targets(tmp_path):
    extended = {"validation": part(90, 90, 5), "test": part(80, 80, 10)}
    records = {seed: {"extended": extended, "consolidated": {
        "0.0": {"validation": part(89, 90, 50), "test": part(79.9, 80, 100)},  # best on test, worse on validation
        "0.5": {"validation": part(89.8, 90, 20), "test": part(79.0, 79.5, 30)}}} for seed in (0, 1)}
    options = argparse.Namespace(seeds=[0, 1], path_weights=[0.0, 0.5], results_dir=str(tmp_path),
                                 unlabelled_source=0)
    payload = summarise(records, options)
    assert payload["chosen_path_weight"] == 0.5
    old, new = payload["targets"]
    assert abs(old["value"] - 1.0) < 1e-9 and not old["met"]
    assert abs(new["value"] - 0.5) < 1e-9 and new["met"]
    assert json.loads((tmp_path / "consolidation_path_weight.json").read_text())["chosen_path_weight"] == 0.5
    assert "0.5 (chosen)" in (tmp_path / "consolidation_path_weight.md").read_text()


def test_a_weight_missing_on_some_seeds_is_chosen_on_the_seeds_that_hold_every_weight(tmp_path):
    extended = {"validation": part(90, 90), "test": part(80, 80)}
    records = {0: {"extended": extended, "consolidated": {"0.0": {"validation": part(89, 90), "test": part(79, 80)},
                                                          "0.5": {"validation": part(90, 90), "test": part(80, 80)}}},
               1: {"extended": extended, "consolidated": {"0.5": {"validation": part(80, 80), "test": part(79.5, 80)}}}}
    options = argparse.Namespace(seeds=[0, 1], path_weights=[0.0, 0.5], results_dir=str(tmp_path),
                                 unlabelled_source=0)
    payload = summarise(records, options)
    assert payload["chosen_path_weight"] == 0.5  # seed 0 alone decides: seed 1 has no 0.0 to compare
    assert payload["summary"]["0.5"]["seeds"] == [0, 1] and payload["summary"]["0.0"]["seeds"] == [0]
    assert abs(payload["targets"][0]["value"] - 0.25) < 1e-9  # test old gap over both seeds of the chosen weight
