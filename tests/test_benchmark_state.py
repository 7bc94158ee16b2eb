"""Resumable benchmarks run one process per seed or domain side by side on one state file: saving must not drop
the runs another process kept meanwhile (a consolidation_domain record was lost that way)."""

import json

from benchmarks.common import save_runs


def test_saving_takes_in_the_runs_another_process_kept_meanwhile(tmp_path):
    state_file = tmp_path / "runs.json"
    settings = {"dev_sentences": 200}
    first = {"settings": settings, "runs": {"politics/seed2/extended": {"f1": 69.0}}}
    second = {"settings": settings, "runs": {"music/seed2/extended": {"f1": 60.0}}}  # loaded before first saved
    save_runs(first, state_file, ["politics/seed2/extended"])
    second["runs"]["music/seed2/consolidated"] = {"f1": 61.0}
    save_runs(second, state_file, ["music/seed2/consolidated"])
    first["runs"]["politics/seed2/consolidated"] = {"f1": 68.0}
    save_runs(first, state_file, ["politics/seed2/consolidated"])
    kept = json.loads(state_file.read_text())["runs"]
    assert set(kept) == {"politics/seed2/extended", "politics/seed2/consolidated", "music/seed2/extended",
                         "music/seed2/consolidated"}
    assert not list(tmp_path.glob("*.tmp"))


def test_a_run_in_both_keeps_the_fields_only_the_disk_has_and_other_settings_are_not_mixed_in(tmp_path):
    state_file = tmp_path / "runs.json"
    save_runs({"settings": {"a": 1}, "runs": {"x": {"f1": 1.0, "constrained": {"f1": 2.0}}}}, state_file, ["x"])
    mine = {"settings": {"a": 1}, "runs": {"x": {"f1": 1.5}}}
    save_runs(mine, state_file, ["x"])
    assert mine["runs"]["x"] == {"f1": 1.5, "constrained": {"f1": 2.0}}
    other = {"settings": {"a": 2}, "runs": {"y": {"f1": 3.0}}}
    save_runs(other, state_file, ["y"])
    assert json.loads(state_file.read_text())["runs"] == {"y": {"f1": 3.0}}


def test_a_stale_copy_of_another_process_s_run_does_not_undo_its_newer_one(tmp_path):
    """Both processes load the state holding run x; one trains x again, the other only trains y. The second's
    save must keep the newer x (fewshot_extension's music run was reverted to its old timing that way)."""
    state_file = tmp_path / "runs.json"
    settings = {"a": 1}
    save_runs({"settings": settings, "runs": {"x": {"seconds": 786}}}, state_file, ["x"])
    music, politics = (json.loads(state_file.read_text()) for _ in range(2))
    music["runs"]["x"] = {"seconds": 816}
    save_runs(music, state_file, ["x"])
    politics["runs"]["y"] = {"seconds": 507}
    save_runs(politics, state_file, ["y"])
    assert json.loads(state_file.read_text())["runs"] == {"x": {"seconds": 816}, "y": {"seconds": 507}}
    assert politics["runs"]["x"] == {"seconds": 816}


def test_fewshot_extension_targets_compare_the_issue_s_pairs():
    from benchmarks.fewshot_extension import BEST, domain_targets

    def cell(new_f1, seconds, overall=60.0, conll=85.0):
        return {"seeds": 1, "domain_new_f1": new_f1, "domain_overall_f1": overall, "train_seconds": seconds,
                "conll_old_f1": conll}

    summary = {f"music/{BEST}/k25": cell(50.0, 300.0), "music/expand/k25": cell(40.0, 100.0),
               "music/expand/k100": cell(52.5, 200.0), f"music/{BEST}/k100": cell(61.0, 400.0, 69.0, 84.5),
               "politics/expand/k100": cell(99.0, 1.0)}
    runs = {f"music/{BEST}/kall/seed0": {"k": 100}}
    targets = domain_targets("music", summary, runs, source_old=86.0)
    values = sorted((t["value"], t["target"], t["met"]) for t in targets)
    # k=25 new F1 - expand k=100's; CoNLL - source; both time ratios; overall F1 against the paper's 68.30
    assert values == [(-2.5, 0.0, False), (-1.5, -1.0, False), (2.0, 2.0, True), (3.0, 2.0, False),
                      (69.0, 68.3, True)]


def test_a_self_training_run_is_also_the_adapter_rehearsal_run_of_its_seed(monkeypatch):
    import benchmarks.fewshot_extension as fewshot

    def fake_training(bench, options, method, domain, k, seed, first_run_scored=None):
        record = {"k": k}
        if method == fewshot.BEST and k < 200:  # an unlabelled rest: the first run is scored, then a second trains
            first_run_scored("first model", record, None, [], {})
            record = {**record, "self_training": {"kept": "second"}}
        return "final model", record, None, [], {}

    monkeypatch.setattr(fewshot, "train_extension", fake_training)
    monkeypatch.setattr(fewshot, "scored", lambda bench, options, model, record, *_: {**record, "model": model})
    with_rest = fewshot.run(None, None, fewshot.BEST, "politics", 25, 0)
    assert with_rest == {"politics/adapter+rehearsal/k25/seed0": {"k": 25, "model": "first model"},
                         f"politics/{fewshot.BEST}/k25/seed0": {"k": 25, "self_training": {"kept": "second"},
                                                               "model": "final model"}}
    without_rest = fewshot.run(None, None, fewshot.BEST, "politics", 200, 0)
    assert without_rest["politics/adapter+rehearsal/k200/seed0"] == {"k": 200, "model": "final model"}
    assert fewshot.run(None, None, "expand", "politics", 25, 0) == {"politics/expand/k25/seed0":
                                                                    {"k": 25, "model": "final model"}}


def test_fewshot_extension_attribution_pairs_seeds_both_methods_ran():
    from benchmarks.fewshot_extension import paired_difference

    def run(f1, k=25):
        return {"k": k, "domain": {"overall_f1": f1}}

    runs = {"music/adapter+rehearsal/k25/seed0": run(60.0), "music/adapter+rehearsal/k25/seed1": run(50.0),
            "music/adapter+rehearsal/k25/seed2": run(40.0), "music/expand+rehearsal/k25/seed1": run(49.0),
            "music/expand+rehearsal/k100/seed0": run(70.0, 100), "politics/expand+rehearsal/k25/seed0": run(10.0)}
    # only seed 1 is paired: seeds 0 and 2 of the adapter, the k=100 run and the other domain are left out
    assert paired_difference(runs, "music", 25, "adapter+rehearsal", "expand+rehearsal") == "+1.0 (1)"
    assert paired_difference(runs, "music", 100, "adapter+rehearsal", "expand+rehearsal") == "—"


def test_expand_self_training_records_its_first_run_as_expand_rehearsal(monkeypatch):
    import benchmarks.fewshot_extension as fewshot

    def fake_training(bench, options, method, domain, k, seed, first_run_scored=None):
        assert first_run_scored is not None  # every self-training method scores its first run
        first_run_scored("first model", {"k": k}, None, [], {})
        return "final model", {"k": k, "self_training": {"kept": "first"}}, None, [], {}

    monkeypatch.setattr(fewshot, "train_extension", fake_training)
    monkeypatch.setattr(fewshot, "scored", lambda bench, options, model, record, *_: {**record, "model": model})
    runs = fewshot.run(None, None, "expand+rehearsal+self-training", "music", 25, 1)
    assert runs == {"music/expand+rehearsal/k25/seed1": {"k": 25, "model": "first model"},
                    "music/expand+rehearsal+self-training/k25/seed1": {"k": 25, "self_training": {"kept": "first"},
                                                                       "model": "final model"}}


def test_the_dev_rest_given_as_unlabelled_text_holds_no_sentence_that_scores_or_chooses_the_model():
    """The music dev file repeats two of its first 200 sentences later on: they were given to self-training as
    unlabelled text while also choosing its step."""
    from benchmarks.fewshot_extension import unlabelled_dev_rest

    data = {"dev": {"tokens": [["a"], ["b"], ["c"], ["a"], ["t"], ["d"]]}, "test": {"tokens": [["t"], ["x"]]}}
    assert unlabelled_dev_rest(data, dev_sentences=2) == [["c"], ["d"]]
