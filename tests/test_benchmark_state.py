"""Resumable benchmarks run one process per seed or domain side by side on one state file: saving must not drop
the runs another process kept meanwhile (a consolidation_domain record was lost that way)."""

import json

from benchmarks.common import save_runs


def test_saving_takes_in_the_runs_another_process_kept_meanwhile(tmp_path):
    state_file = tmp_path / "runs.json"
    settings = {"dev_sentences": 200}
    first = {"settings": settings, "runs": {"politics/seed2/extended": {"f1": 69.0}}}
    second = {"settings": settings, "runs": {"music/seed2/extended": {"f1": 60.0}}}  # loaded before first saved
    save_runs(first, state_file)
    second["runs"]["music/seed2/consolidated"] = {"f1": 61.0}
    save_runs(second, state_file)
    first["runs"]["politics/seed2/consolidated"] = {"f1": 68.0}
    save_runs(first, state_file)
    kept = json.loads(state_file.read_text())["runs"]
    assert set(kept) == {"politics/seed2/extended", "politics/seed2/consolidated", "music/seed2/extended",
                         "music/seed2/consolidated"}
    assert not list(tmp_path.glob("*.tmp"))


def test_a_run_in_both_keeps_the_fields_only_the_disk_has_and_other_settings_are_not_mixed_in(tmp_path):
    state_file = tmp_path / "runs.json"
    save_runs({"settings": {"a": 1}, "runs": {"x": {"f1": 1.0, "constrained": {"f1": 2.0}}}}, state_file)
    mine = {"settings": {"a": 1}, "runs": {"x": {"f1": 1.5}}}
    save_runs(mine, state_file)
    assert mine["runs"]["x"] == {"f1": 1.5, "constrained": {"f1": 2.0}}
    other = {"settings": {"a": 2}, "runs": {"y": {"f1": 3.0}}}
    save_runs(other, state_file)
    assert json.loads(state_file.read_text())["runs"] == {"y": {"f1": 3.0}}
