"""Tiny smoke runs of the benchmarks built on the paper's grid: benchmarks/paper_grid.py (the sweep: resumable, seeds
as processes), bilstm_convergence.py and ner_errors.py."""

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--max_source_train", "48", "--max_target_train", "32", "--max_validation", "16", "--max_eval", "24",
        "--source_epochs", "1", "--num_train_epochs", "1", "--learning_rate", "5e-3", "--disable_tqdm", "true",
        "--use_cpu", "true"]


@pytest.fixture
def grid(monkeypatch):
    """benchmarks.paper_grid, with ``Experiment`` patchable per test."""
    import benchmarks.paper_grid as module

    monkeypatch.setattr(module, "Experiment", module.Experiment)
    return module


def test_sweep_writes_results_table_and_targets(shared_data, tmp_path, grid):
    main = grid.main
    payload = main(["--backbone", "bilstm-crf", "--new_type", "PER", "--seeds", "0",
                    "--results_dir", str(tmp_path / "results"), "--output_dir", str(tmp_path / "out"), *TINY])
    assert {"source/crf", "source/linear", "expand/all/crf", "adapter/all/crf", "adapter/top/linear",
            "joint/crf"} <= payload["summary"].keys()
    saved = json.loads((tmp_path / "results" / "neural_adapter_bilstm-crf_PER.json").read_text())
    assert saved["targets"] and {"metric", "value", "target", "op", "met"} <= saved["targets"][0].keys()
    assert "expand/top/crf" in (tmp_path / "results" / "neural_adapter_bilstm-crf_PER.md").read_text()
    main(["--assemble", "--results_dir", str(tmp_path / "results")])
    assert (tmp_path / "results" / "neural_adapter_table.png").stat().st_size > 1000


def test_sweep_reuses_finished_seeds_so_seeds_can_run_in_separate_processes(shared_data, tmp_path, grid):
    main = grid.main
    args = ["--backbone", "bilstm-crf", "--new_type", "PER", "--results_dir", str(tmp_path / "results"),
            "--output_dir", str(tmp_path / "out"), *TINY]
    first = main([*args, "--seeds", "1"])
    assert (tmp_path / "out" / "bilstm-crf_PER_seed1.json").is_file()

    def no_training(*_, **__):
        raise AssertionError("a finished seed was trained again")

    grid.Experiment = no_training
    combined = main([*args, "--seeds", "1"])
    assert combined["runs"] == first["runs"] and combined["seconds_per_seed"] == first["seconds_per_seed"]
    with pytest.raises(AssertionError, match="trained again"):  # other settings: the seed is not reused
        main([*args, "--seeds", "1", "--source_epochs", "2"])


def test_interrupted_seed_resumes_from_its_last_finished_configuration(shared_data, tmp_path, grid):
    main = grid.main
    args = ["--backbone", "bilstm-crf", "--new_type", "PER", "--results_dir", str(tmp_path / "results"),
            "--output_dir", str(tmp_path / "out"), "--seeds", "0", *TINY]
    experiment_cls = grid.Experiment
    seed_file = tmp_path / "out" / "bilstm-crf_PER_seed0.json"

    class Interrupted(experiment_cls):
        def extend(self, *a, **kw):
            if len(json.loads(seed_file.read_text())["runs"]) == 3:  # two sources and one configuration kept
                raise KeyboardInterrupt
            return super().extend(*a, **kw)

    grid.Experiment = Interrupted
    with pytest.raises(KeyboardInterrupt):
        main(args)
    kept = json.loads(seed_file.read_text())
    assert list(kept["runs"]) == ["source/crf", "source/linear", "expand/top/crf"] and kept["seconds"] > 0

    class Resumed(experiment_cls):
        def train_source(self, *a, **kw):
            raise AssertionError("a kept source model was trained again")

    grid.Experiment = Resumed
    payload = main(args)
    assert {name: runs[0] for name, runs in payload["runs"].items() if name in kept["runs"]} == kept["runs"]
    assert list(payload["runs"]) == grid.seed_configurations("bilstm-crf", "PER")


def test_sweep_runs_seeds_as_processes_side_by_side_and_records_wall_time(shared_data, tmp_path, grid):
    results = tmp_path / "results"
    args = ["--backbone", "bilstm-crf", "--new_type", "PER", "--results_dir", str(results),
            "--output_dir", str(tmp_path / "out"), "--seeds", "0", "1", "--seed_processes", "2", *TINY]
    payload = grid.main(args)
    assert payload["seeds"] == [0, 1] and all(len(runs) == 2 for runs in payload["runs"].values())
    assert (tmp_path / "out" / "bilstm-crf_PER_seed1.log").is_file()
    assert payload["wall"]["seed_processes"] == 2 and payload["wall"]["seconds"] > 0
    saved = json.loads((results / "neural_adapter_bilstm-crf_PER.json").read_text())
    assert any(t["metric"].startswith("PER: grid wall minutes") for t in saved["targets"])


def test_consolidation_check_scores_the_plain_model_beside_the_extension_it_came_from(shared_data, tmp_path, grid,
                                                                                     tokenizer):
    from .conftest import tiny_source

    encoder = tmp_path / "encoder"  # a bare encoder, as a user's --backbone path: the grid adds each head
    tiny_source("bert", tokenizer.vocab_size).bert.save_pretrained(encoder)
    tokenizer.save_pretrained(encoder)
    args = ["--backbone", str(encoder), "--new_type", "PER", "--results_dir", str(tmp_path / "results"),
            "--output_dir", str(tmp_path / "out"), "--seeds", "0", "1", "--consolidate", "--only", "adapter/all/crf",
            "--results_name", "consolidation_tiny_PER", *TINY]
    payload = grid.main(args)
    assert list(payload["runs"]) == ["source/linear", "adapter/all/crf", grid.CONSOLIDATED]
    saved = json.loads((tmp_path / "results" / "consolidation_tiny_PER.json").read_text())
    gaps = [t for t in saved["targets"] if "consolidated - extended" in t["metric"]]
    extended, plain = payload["runs"]["adapter/all/crf"], payload["runs"][grid.CONSOLIDATED]
    expected = abs(sum(p["old_f1"] - e["old_f1"] for e, p in zip(extended, plain)) / 2)
    assert len(gaps) == 2 and gaps[0]["value"] == pytest.approx(expected)
    assert not any("grid" in t["metric"] for t in saved["targets"])  # part of the grid: no grid time
    assert plain[0]["consolidated_bio_invalid_spans"] >= 0 and "BIO-invalid" in (
        tmp_path / "results" / "consolidation_tiny_PER.md").read_text()
    with pytest.raises(ValueError, match="not configurations of this grid"):
        grid.main([*args, "--only", "adapter/al/crf"])
    with pytest.raises(ValueError, match="BiLSTM-CRF"):
        grid.main([*args[2:], "--backbone", "bilstm-crf"])


def test_convergence_benchmark_records_a_test_curve_per_model_and_the_targets(shared_data, tmp_path):
    from benchmarks.bilstm_convergence import main

    results = main(["--new_type", "PER", "--epochs", "2", "--target_epochs", "1", "--limit", "24",
                    "--results_dir", str(tmp_path)])
    models = ("source/crf", "adapter/all/crf", "joint/crf", "target-only/crf")
    assert [len(results[name]["curve"]) for name in models] == [2, 1, 2, 2]
    assert "forgetting" in results["adapter/all/crf"]["chosen"]
    saved = json.loads((tmp_path / "bilstm_convergence_PER.json").read_text())
    assert len(saved["targets"]) == 3 and all(isinstance(t["met"], bool) for t in saved["targets"])
    assert (tmp_path / "bilstm_convergence_PER.png").stat().st_size > 1000


def ner_errors() -> dict:
    import benchmarks.ner_errors as module

    return vars(module)


@pytest.mark.parametrize(("predicted", "expected"), [
    ([("LOC", 0, 2)], ("correct", "LOC")),
    ([("ORG", 0, 2)], ("wrong type", "ORG")),
    ([("LOC", 1, 2)], ("boundary", "LOC")),
    ([("ORG", 1, 3)], ("boundary and type", "ORG")),
    ([("PER", 2, 3)], ("missed", None)),
    ([], ("missed", None)),
])
def test_error_analysis_sorts_a_gold_mention_by_what_the_tagger_did(predicted, expected):
    assert ner_errors()["outcome"](("LOC", 0, 2), predicted) == expected


def test_error_analysis_counts_spurious_entities_and_the_mentions_the_adapter_lost():
    module = ner_errors()
    gold = [["B-PER", "I-PER", "O", "B-ORG"], ["O", "B-LOC"]]
    source = [["B-PER", "I-PER", "O", "B-ORG"], ["O", "O"]]
    adapter = [["B-PER", "I-PER", "B-MISC", "B-LOC"], ["O", "B-LOC"]]
    tokens = [["Ada", "Lovelace", "in", "Ford"], ["in", "Paris"]]
    assert module["spurious"](gold, adapter) == {"MISC": 1}
    seen = {"Paris": module["SEEN"][0]}
    analysis = {name: {"mentions": module["mentions"](tokens, gold, tags, seen)}
                for name, tags in (("source/crf", source), ("adapter/all/crf", adapter))}
    assert [(m["text"], m["seen"], m["outcome"]) for m in analysis["adapter/all/crf"]["mentions"]] == [
        ("Ada Lovelace", module["SEEN"][2], "correct"), ("Ford", module["SEEN"][2], "wrong type"),
        ("Paris", module["SEEN"][0], "correct")]
    breakdown = module["forgetting_breakdown"](analysis, "LOC", "adapter/all/crf")
    assert breakdown == {"lost": {"wrong type (LOC)": 1}, "gained": {}, "net": -1}


def test_error_analysis_benchmark_writes_its_tables_plot_and_targets(shared_data, tmp_path):
    payload = ner_errors()["main"](["--new_type", "ORG", "--source_epochs", "1", "--epochs", "1", "--limit", "24",
                                    "--results_dir", str(tmp_path)])
    assert set(payload["scores"]) == {"source/crf", "expand/all/crf", "adapter/all/crf", "joint/crf"}
    labelled = payload["labelled_new_type_mentions"]
    assert labelled["source/crf"] == 0 and 0 < labelled["adapter/all/crf"] < labelled["joint/crf"]
    saved = json.loads((tmp_path / "ner_errors_ORG.json").read_text())
    assert len(saved["targets"]) == 2 and all(isinstance(t["met"], bool) for t in saved["targets"])
    totals = {name: sum(o["new"].values()) + sum(o["old"].values()) for name, o in saved["outcomes"].items()}
    assert len(set(totals.values())) == 1 and min(totals.values()) > 0  # every model is judged on every mention
    assert (tmp_path / "ner_errors_ORG.png").stat().st_size > 1000
