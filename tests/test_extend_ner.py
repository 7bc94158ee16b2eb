"""examples/extend_ner.py end to end: a stranger's tiny tagger and tiny files (CoNLL, JSON lines, CSV) extended in
one command, with metrics before/after, a reloadable adapter with its card, consolidation and a Hub push."""

import csv
import json
import logging
import re
import runpy
from pathlib import Path

import pytest
import torch
from transformers import AutoModel, AutoModelForTokenClassification

from hf_adapter_ext import NeuralAdapterModel
from hf_adapter_ext.cli import budget_defaults
from hf_adapter_ext.data import read_conll

from .conftest import OLD_LABELS, build_tokenizer, tiny_config
from .helpers import free_port

ROOT = Path(__file__).resolve().parents[1]
# The data's own names: person/organisation are the source's PER/ORG; politician is new and refines PER.
SENTENCES = [
    (["John", "Smith", "lives", "in", "Paris", "."], ["B-person", "I-person", "O", "O", "O", "O"]),
    (["Peter", "Blackburn", "flew", "to", "Washington", "."], ["B-politician", "I-politician", "O", "O", "O", "O"]),
    (["Mary", "visited", "the", "United", "Nations", "."], ["B-politician", "O", "O", "B-organisation",
                                                            "I-organisation", "O"]),
    (["Shares", "of", "Acme", "Corporation", "rose", "."], ["O", "O", "B-organisation", "I-organisation", "O", "O"]),
]
COMMON = ["--label_map", "person=PER,organisation=ORG", "--num_train_epochs", "2", "--learning_rate", "5e-3",
          "--head_learning_rate", "5e-3", "--per_device_train_batch_size", "4", "--use_cpu", "true",
          "--disable_tqdm", "true", "--save_strategy", "epoch", "--logging_steps", "1"]


@pytest.fixture(scope="module")
def main():
    return runpy.run_path(str(ROOT / "examples" / "extend_ner.py"), run_name="extend_ner")["main"]


@pytest.fixture
def tagger(tmp_path) -> Path:
    """A stranger's trained tagger: a tiny BERT token classifier (PER/ORG/MISC) and its tokenizer in a folder."""
    tokenizer = build_tokenizer()
    torch.manual_seed(0)
    path = tmp_path / "tagger"
    AutoModelForTokenClassification.from_config(tiny_config("bert", tokenizer.vocab_size, OLD_LABELS)).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def write_files(folder: Path, kind: str) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for split in ("train", "dev", "test"):
        rows = SENTENCES * (3 if split == "train" else 1)
        path = folder / f"{split}.{ {'conll': 'txt', 'json': 'jsonl', 'csv': 'csv'}[kind] }"
        if kind == "conll":
            path.write_text("\n\n".join("\n".join(f"{w}\t{t}" for w, t in zip(*row)) for row in rows) + "\n")
        elif kind == "json":
            path.write_text("".join(json.dumps({"words": w, "labels": t}) + "\n" for w, t in rows))
        else:
            with path.open("w", newline="") as f:
                writer = csv.writer(f)
                writer.writerow(["words", "labels"])
                writer.writerows([" ".join(w), " ".join(t)] for w, t in rows)
        paths[split] = path
    return paths


def files_args(paths: dict[str, Path], kind: str) -> list[str]:
    columns = [] if kind == "conll" else ["--tokens_column", "words", "--tags_column", "labels"]
    return ["--train_file", str(paths["train"]), "--validation_file", str(paths["dev"]), "--test_file",
            str(paths["test"]), *columns]


@pytest.mark.parametrize("kind", ["conll", "json", "csv"])
def test_a_strangers_tagger_and_files_extend_in_one_command(main, tagger, tmp_path, kind):
    out = tmp_path / "out"
    results = main(["--model_name_or_path", str(tagger), *files_args(write_files(tmp_path / "data", kind), kind),
                    "--output_dir", str(out), *COMMON])
    assert results["new_labels"] == ["B-politician", "I-politician"]  # the data's labels the source lacks
    assert results["best_checkpoint"].startswith("checkpoint-") and results["scored_on"] == "test"
    assert not list(out.glob("checkpoint-*"))  # stale once the best model is saved: removed unless kept
    saved = json.loads((out / "all_results.json").read_text())
    for when in ("before", "after"):
        assert {"overall_f1", "old_f1", "new_f1", "PER_f1", "ORG_f1"} <= saved[when].keys()
    assert saved["before"]["new_f1"] == 0.0  # the source cannot predict a type it never had
    assert isinstance(saved["forgotten_types"], dict)  # old types that fell by > 5 F1 (a warning is logged)
    assert saved["data"]["train"]["sentences"] == 12 and saved["data"]["test"]["source"].endswith(
        paths_suffix(kind))
    reloaded = NeuralAdapterModel.from_pretrained(AutoModelForTokenClassification.from_pretrained(tagger), out)
    assert reloaded.config.id2label[len(OLD_LABELS)] == "B-politician"
    predictions = (out / "predictions.txt").read_text().splitlines()  # run_ner.py's file: one sentence per line
    assert len(predictions) == saved["data"]["test"]["sentences"]
    assert {tag for line in predictions for tag in line.split()} <= set(reloaded.config.id2label.values())
    card = (out / "README.md").read_text()
    assert "trained_on" in card and "test_new_f1" in card


def paths_suffix(kind: str) -> str:
    return {"conll": "test.txt", "json": "test.jsonl", "csv": "test.csv"}[kind]


def test_parents_rehearsal_and_consolidation_through_the_script(main, tagger, tmp_path):
    paths = write_files(tmp_path / "data", "conll")
    rehearsal = tmp_path / "news.txt"
    rehearsal.write_text("John Smith works for Acme Corporation .\n\nThe European Union met in Brussels .\n")
    out = tmp_path / "out"
    domain = tmp_path / "domain.txt"
    domain.write_text("Peter Smith flew to Paris .\nMary Blackburn joined Acme Corporation .\nJohn visited Nations .\n")
    results = main(["--model_name_or_path", str(tagger), *files_args(paths, "conll"), "--output_dir", str(out),
                    "--label_parents", "politician=PER", "--rehearsal_file", str(rehearsal), "--consolidate",
                    "--unlabelled_file", str(domain), *COMMON])
    assert results["label_parents"] == {"politician": "PER"} and results["rehearsal_sentences"] == 2
    assert results["consolidated"]["unlabelled_sentences"] == 2 + 3  # rehearsal and domain text both distilled on
    assert "old_f1_with_subtypes" in results["after"]
    # old types compared with the source's own tags on the rehearsal text (a warning below 0.9)
    assert set(results["source_agreement"]) <= {"PER", "ORG", "MISC"}
    assert all(0 <= f1 <= 1 for f1 in results["source_agreement"].values())
    assert json.loads((out / "adapter_config.json").read_text())["label_parents"] == {"politician": "PER"}
    assert {"config.json", "model.safetensors", "README.md"} <= {p.name for p in (out / "consolidated").iterdir()}
    plain = AutoModelForTokenClassification.from_pretrained(out / "consolidated")
    assert plain.config.id2label[len(OLD_LABELS) + 1] == "I-politician"
    assert "consolidated_old_f1" in results["consolidated"]


def test_push_to_hub_sends_the_adapter_with_its_card(main, tagger, tmp_path, monkeypatch):
    pushed = {}
    monkeypatch.setattr(NeuralAdapterModel, "push_to_hub",
                        lambda self, repo, **kw: pushed.update(repo=repo, **kw) or f"https://hf.co/{repo}")
    results = main(["--model_name_or_path", str(tagger), *files_args(write_files(tmp_path / "d", "conll"), "conll"),
                    "--output_dir", str(tmp_path / "out"), "--push_to_hub", "true", "--hub_model_id", "me/politics",
                    "--hub_private_repo", "true", *COMMON, "--num_train_epochs", "1"])
    assert pushed["repo"] == "me/politics" and pushed["private"] is True
    assert results["hub_url"] == "https://hf.co/me/politics"
    saved = json.loads((tmp_path / "out" / "all_results.json").read_text())
    assert saved["hub_url"] == "https://hf.co/me/politics"  # written after the push, not before


def test_data_with_nothing_new_is_refused(main, tagger, tmp_path):
    paths = write_files(tmp_path / "data", "conll")
    with pytest.raises(ValueError, match="nothing new"):
        main(["--model_name_or_path", str(tagger), *files_args(paths, "conll"), "--output_dir", str(tmp_path / "o"),
              *COMMON, "--label_map", "person=PER,organisation=ORG,politician=PER"])
    with pytest.raises(ValueError, match="from=to pairs"):
        main(["--model_name_or_path", str(tagger), *files_args(paths, "conll"), "--output_dir", str(tmp_path / "o"),
              *COMMON, "--label_map", "person"])


def test_tagged_entities_are_the_inputs_own_characters(main, tagger, tmp_path):
    text = "JOHN Smith flew to Washington."  # an uncased tokenizer would say "john smith"
    results = main(["--model_name_or_path", str(tagger), *files_args(write_files(tmp_path / "d", "conll"), "conll"),
                    "--output_dir", str(tmp_path / "out"), *COMMON, "--num_train_epochs", "1", "--tag_text", text])
    assert all(word in text for word, _ in results["tagged"])


@pytest.mark.xdist_group("distributed")  # one launch at a time: each takes both cores
def test_runs_under_accelerate_on_two_processes(tagger, tmp_path):
    import os
    import subprocess
    import sys

    paths = write_files(tmp_path / "data", "conll")
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "--main_process_port", str(free_port()), str(ROOT / "examples" / "extend_ner.py"), "--model_name_or_path", str(tagger),
               *files_args(paths, "conll"), "--output_dir", str(tmp_path / "out"), *COMMON]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=900, env=env, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-4000:]
    saved = json.loads((tmp_path / "out" / "all_results.json").read_text())
    assert saved["new_labels"] == ["B-politician", "I-politician"] and "old_f1" in saved["after"]
    assert saved["world_size"] == 2  # one job over two processes, not two copies of a one-process run


def test_a_dataset_folder_without_tag_names_is_refused_with_the_file_route(main, tagger, tmp_path):
    folder = tmp_path / "hub_like"
    folder.mkdir()
    (folder / "train.jsonl").write_text(json.dumps({"tokens": ["John"], "ner_tags": [1]}) + "\n")
    with pytest.raises(ValueError, match="--train_file"):
        main(["--model_name_or_path", str(tagger), "--dataset_name", str(folder), "--output_dir", str(tmp_path / "o"),
              *COMMON])


def test_a_type_only_the_test_file_has_is_refused_with_the_label_map_fix(main, tagger, tmp_path):
    paths = write_files(tmp_path / "data", "conll")
    with paths["test"].open("a") as f:
        f.write("\nGreenpeace\tB-charity\nprotested\tO\n")
    with pytest.raises(ValueError, match=r"\['charity'\].*never in the training file.*--label_map charity=O"):
        main(["--model_name_or_path", str(tagger), *files_args(paths, "conll"), "--output_dir", str(tmp_path / "o"),
              *COMMON])


@pytest.mark.parametrize("option", ["--max_train_samples", "--max_eval_samples", "--max_predict_samples"])
@pytest.mark.parametrize("value", ["0", "-3"])
def test_sample_limits_below_one_are_refused(main, tagger, tmp_path, option, value):
    paths = write_files(tmp_path / "data", "conll")
    with pytest.raises(ValueError, match=rf"{option}={value} is out of range"):
        main(["--model_name_or_path", str(tagger), *files_args(paths, "conll"), "--output_dir", str(tmp_path / "o"),
              *COMMON, option, value])


def test_a_sample_limit_beyond_the_data_is_said(main, tagger, tmp_path, caplog):
    paths = write_files(tmp_path / "data", "conll")
    with caplog.at_level(logging.WARNING):
        main(["--model_name_or_path", str(tagger), *files_args(paths, "conll"), "--output_dir", str(tmp_path / "o"),
              *COMMON, "--max_train_samples", "100000"])
    assert re.search(r"The train limit \(100000\) is more than the \d+ sentences there: all of them are used",
                     caplog.text)


def test_seed_and_resume_from_checkpoint_are_honoured(main, tagger, tmp_path):
    """--seed sets the new layers' first weights (set before the model is built, as run_ner does), so the same
    command run twice in one process gives the same model; --resume_from_checkpoint continues a run (it was
    ignored: training restarted from scratch), and a path with no checkpoint is refused."""
    args = ["--model_name_or_path", str(tagger), *files_args(write_files(tmp_path / "data", "conll"), "conll"), *COMMON]
    first = main([*args, "--output_dir", str(tmp_path / "a"), "--keep_checkpoints", "true", "--save_total_limit", "3"])
    torch.rand(100)  # a process whose random state has moved on since
    again = main([*args, "--output_dir", str(tmp_path / "b")])
    resumed = main([*args, "--output_dir", str(tmp_path / "c"), "--resume_from_checkpoint",
                    str(tmp_path / "a" / "checkpoint-3")])
    for run in (again, resumed):
        assert run["after"] == first["after"]
    # Ignoring the checkpoint would retrain all 6 steps and, seeded, repeat the first run exactly; resumed, Trainer
    # sums the loss of steps 4-6 only.
    assert again["train"]["train_loss"] == first["train"]["train_loss"] != resumed["train"]["train_loss"]
    with pytest.raises(ValueError, match="Can't find a valid checkpoint"):
        main([*args, "--output_dir", str(tmp_path / "d"), "--resume_from_checkpoint", str(tmp_path / "none")])


@pytest.mark.parametrize("flags, match", [
    (["--label_names", "tags"], r"reads its labels from \['labels'\]; leave --label_names unset"),
    (["--remove_unused_columns", "false"], r"columns \['word_offset'\] that NeuralAdapterModel.forward does not take"),
])
def test_trainer_flags_that_starve_the_model_of_its_columns_are_refused(main, tagger, tmp_path, flags, match):
    with pytest.raises(ValueError, match=match):
        main(["--model_name_or_path", str(tagger), *files_args(write_files(tmp_path / "data", "conll"), "conll"),
              "--output_dir", str(tmp_path / "o"), *COMMON, *flags])


def test_train_tagger_scores_its_test_file_per_type(tmp_path):
    """The tagger an extension starts from: trained on a file, scored on --test_file overall and per type."""
    tokenizer = build_tokenizer()
    torch.manual_seed(0)
    encoder = tmp_path / "encoder"
    AutoModel.from_config(tiny_config("bert", tokenizer.vocab_size, OLD_LABELS)).save_pretrained(encoder)
    tokenizer.save_pretrained(encoder)
    paths = write_files(tmp_path / "data", "conll")
    train_tagger = runpy.run_path(str(ROOT / "examples" / "train_tagger.py"), run_name="train_tagger")["main"]
    out = tmp_path / "tagger"
    metrics = train_tagger(["--model_name_or_path", str(encoder), "--train_file", str(paths["train"]),
                            "--test_file", str(paths["test"]), "--output_dir", str(out), "--num_train_epochs", "1",
                            "--per_device_train_batch_size", "4", "--use_cpu", "true", "--disable_tqdm", "true",
                            "--eval_strategy", "no"])
    types = {k[len("test_"):-len("_support")] for k in metrics if k.startswith("test_") and k.endswith("_support")}
    assert types and all(0.0 <= metrics[f"test_{t}_f1"] <= 1.0 for t in types)
    assert json.loads((out / "all_results.json").read_text())["test_overall_f1"] == metrics["test_overall_f1"]
    sentences = read_conll(paths["test"])
    predictions = (out / "predictions.txt").read_text().splitlines()  # run_ner.py's file: one sentence per line
    assert [len(line.split()) for line in predictions] == [len(s["tokens"]) for s in sentences]


@pytest.mark.parametrize(("script", "base", "steps"), [
    ("extend_ner", ["--model_name_or_path", "x"], 1500), ("meta", [], 3000)])
def test_the_default_budget_is_steps_and_epochs_are_honoured_when_asked(script, base, steps):
    """meta.py kept its 3000 steps when --num_train_epochs was given (transformers lets max_steps win)."""
    namespace = runpy.run_path(str(ROOT / "examples" / f"{script}.py"), run_name=script)
    base = [*base, "--output_dir", "o", "--use_cpu", "true"]
    for argv, expected, strategy in ((base, steps, "steps"), (base + ["--num_train_epochs", "3"], -1, "epoch"),
                                     (base + ["--num_train_epochs=3", "--max_steps", "40"], 40, "steps")):
        parser = namespace["HfArgumentParser"](namespace["ARGUMENTS"])
        parser.set_defaults(**budget_defaults(namespace["DEFAULTS"], argv))
        args = parser.parse_args_into_dataclasses(argv)[-1]
        assert (args.max_steps, args.eval_strategy.value, args.save_strategy.value) == (expected, strategy, strategy)


def test_a_step_budget_stops_early_and_reports_cost(main, tagger, tmp_path):
    paths = write_files(tmp_path / "data", "conll")
    results = main(["--model_name_or_path", str(tagger), *files_args(paths, "conll"), "--output_dir",
                    str(tmp_path / "out"), *[a for a in COMMON if a not in ("--num_train_epochs", "2", "--save_strategy",
                                                                           "epoch")],
                    "--max_steps", "60", "--eval_steps", "3", "--save_steps", "3", "--early_stopping_patience", "1",
                    "--learning_rate", "1e-7", "--head_learning_rate", "1e-7"])  # nothing moves: stops at once
    assert results["steps"] == 6 and results["best_step"] == 3
    assert results["train_seconds"] > 0 and results["peak_memory_gib"]["host_rss"] > 0


def test_unlabelled_domain_text_trains_a_second_run_kept_on_validation(main, tagger, tmp_path):
    paths = write_files(tmp_path / "data", "conll")
    text = tmp_path / "domain.txt"
    text.write_text("Peter Smith flew to Paris .\n\nMary Blackburn joined Acme Corporation .\nJohn visited Nations .\n")
    results = main(["--model_name_or_path", str(tagger), *files_args(paths, "conll"), "--output_dir",
                    str(tmp_path / "out"), *COMMON, "--unlabelled_file", str(text), "--pseudo_label_threshold", "0.0",
                    "--max_unlabelled_sentences", "2"])
    report = results["self_training"]
    assert report["unlabelled_sentences"] == 2 and report["pseudo_labelled_sentences"] == 2
    assert report["kept"] == ("second" if report["second_run_validation"] > report["first_run_validation"] else "first")
    assert not (tmp_path / "out" / "self-training").exists()  # the second run's checkpoints are removed too


def test_the_self_training_run_stops_on_its_own_patience(main, tagger, tmp_path):
    paths = write_files(tmp_path / "data", "conll")
    text = tmp_path / "domain.txt"
    text.write_text("Peter Smith flew to Paris .\nMary Blackburn joined Acme Corporation .\n")
    budget = [a for a in COMMON if a not in ("--num_train_epochs", "2", "--save_strategy", "epoch")]
    results = main(["--model_name_or_path", str(tagger), *files_args(paths, "conll"), "--output_dir",
                    str(tmp_path / "out"), *budget, "--max_steps", "60", "--eval_steps", "3", "--save_steps", "3",
                    "--early_stopping_patience", "2", "--self_training_patience", "1", "--unlabelled_file", str(text),
                    "--pseudo_label_threshold", "0.0", "--learning_rate", "1e-7", "--head_learning_rate", "1e-7"])
    assert results["steps"] == 9  # nothing moves: the first run stops after 2 evaluations without gain
    assert results["self_training"]["second_run_steps"] == 6  # the second after 1


@pytest.mark.parametrize("content, extra, match", [
    ("", [], "holds no text"),
    ("John\tB-PER\nSmith\tI-PER\nflew\tO\n", [], "looks like labelled CoNLL columns"),
    ("John flew .\n", ["--validation_file", None], "pass --validation_file"),
    ("John flew .\n", ["--pseudo_label_threshold", "1.5"], "--pseudo_label_threshold=1.5 is out of range"),
])
def test_bad_unlabelled_text_is_refused_before_training(main, tagger, tmp_path, content, extra, match):
    paths = write_files(tmp_path / "data", "conll")
    text = tmp_path / "domain.txt"
    text.write_text(content)
    argv = ["--model_name_or_path", str(tagger), *files_args(paths, "conll"), "--output_dir", str(tmp_path / "o"),
            *COMMON, "--unlabelled_file", str(text)]
    if extra[-1:] == [None]:  # drop an option
        at = argv.index(extra[0])
        del argv[at:at + 2]
    else:
        argv += extra
    with pytest.raises(ValueError, match=match):
        main(argv)


def test_an_unlabelled_limit_without_the_file_is_refused(main, tagger, tmp_path):
    with pytest.raises(ValueError, match="--max_unlabelled_sentences limits --unlabelled_file"):
        main(["--model_name_or_path", str(tagger), *files_args(write_files(tmp_path / "d", "conll"), "conll"),
              "--output_dir", str(tmp_path / "o"), *COMMON, "--max_unlabelled_sentences", "3"])


def test_the_readme_command_is_the_one_its_recorded_run_measures():
    """benchmarks/readme_command.py runs the README's extend_ner.py command as written (paths aside, no Hub push):
    the two must keep the same options, or the recorded figure stops describing the README."""
    import re
    import shlex

    from benchmarks.readme_command import COMMAND

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = re.search(r"```bash\n(python examples/extend_ner\.py.*?)```", readme, re.S).group(1)

    def options(command: str) -> dict:
        words = shlex.split(command.replace("\\\n", " "))
        found, i = {}, 2
        while i < len(words):
            value = words[i + 1] if i + 1 < len(words) and not words[i + 1].startswith("--") else None
            found[words[i]] = value
            i += 2 if value is not None else 1
        return found

    ours, recorded = options(block), options(COMMAND)
    paths = {"--model_name_or_path", "--train_file", "--validation_file", "--test_file", "--rehearsal_file",
             "--unlabelled_file", "--output_dir"}
    hub = {"--push_to_hub", "--hub_model_id"}
    assert set(ours) - hub == set(recorded)
    assert {k: v for k, v in ours.items() if k not in paths | hub} == {k: v for k, v in recorded.items()
                                                                        if k not in paths}


def test_a_run_with_a_training_file_only_saves_the_model_and_reports_nothing_scored(main, tagger, tmp_path):
    """Without --validation_file and --test_file it trained, then failed in its report ("forgotten_types: `before`
    holds no per-type scores"), and would have reported a forgetting of 0.0 for nothing measured."""
    paths = write_files(tmp_path / "data", "conll")
    out = tmp_path / "out"
    results = main(["--model_name_or_path", str(tagger), "--train_file", str(paths["train"]), "--output_dir", str(out),
                    *[arg for arg in COMMON if arg not in ("--save_strategy", "epoch")], "--max_steps", "2"])
    assert results["scored_on"] is None and results["forgetting"] is None and results["forgotten_types"] == {}
    assert results["before"] == results["after"] == {}
    assert NeuralAdapterModel.from_pretrained(out).config.id2label[len(OLD_LABELS)] == "B-politician"
    assert "evaluated_on" not in (out / "README.md").read_text()


@pytest.mark.parametrize("options, best_kept", [
    (["--lr_scheduler_type", "reduce_lr_on_plateau"], True),  # was refused by the source's scoring Trainer
    (["--eval_strategy", "no"], False),  # run_ner.py's use: the last step is kept, nothing chosen on validation
])
def test_run_ner_training_options_work_as_in_run_ner(main, tagger, tmp_path, options, best_kept):
    paths = write_files(tmp_path / "data", "conll")
    results = main(["--model_name_or_path", str(tagger), *files_args(paths, "conll"), "--output_dir",
                    str(tmp_path / "out"), *COMMON, *options])
    assert results["new_labels"] == ["B-politician", "I-politician"] and results["scored_on"] == "test"
    assert (results["best_checkpoint"] is not None) == best_kept


def test_a_plateau_scheduler_without_validation_data_is_refused(main, tagger, tmp_path):
    paths = write_files(tmp_path / "data", "conll")
    with pytest.raises(ValueError, match="reduce_lr_on_plateau .* no validation data"):
        main(["--model_name_or_path", str(tagger), "--train_file", str(paths["train"]), "--output_dir",
              str(tmp_path / "out"), *COMMON, "--lr_scheduler_type", "reduce_lr_on_plateau"])


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_options_from_one_json_or_yaml_file_as_run_ner_takes_them(main, tagger, tmp_path, suffix):
    """run_ner.py's convention: a single .json argument holds the options; they are parsed with the script's own
    defaults and checks, as if typed (so --num_train_epochs switches to epochs, and --label_parents is read)."""
    paths = write_files(tmp_path / "data", "conll")
    options = {"model_name_or_path": str(tagger), "train_file": str(paths["train"]),
               "validation_file": str(paths["dev"]), "test_file": str(paths["test"]),
               "output_dir": str(tmp_path / "out"), "label_map": "person=PER,organisation=ORG",
               "label_parents": "politician=PER", "num_train_epochs": 2, "learning_rate": 5e-3,
               "per_device_train_batch_size": 4, "use_cpu": True, "disable_tqdm": True, "save_strategy": "epoch",
               "logging_steps": 1, "new_labels": None}
    file = tmp_path / f"options{suffix}"
    file.write_text(json.dumps(options))  # JSON is YAML too
    results = main([str(file)])
    assert results["label_parents"] == {"politician": "PER"} and results["scored_on"] == "test"
    assert json.loads((tmp_path / "out" / "adapter_config.json").read_text())["label_parents"] == {"politician": "PER"}
