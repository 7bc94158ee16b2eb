"""examples/meta.py: the benchmark's settings by default, your own CSV/JSON intents, and the class split you ask."""

import json
import runpy
from pathlib import Path

import pytest
from transformers import AutoModel

from hf_adapter_ext import SIBConfig, SIBForFewShotClassification

from .test_meta import intent_data, tiny_backbone

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def meta():
    return runpy.run_path(str(ROOT / "examples" / "meta.py"), run_name="meta_module")


def test_defaults_are_the_settings_the_benchmark_trains_with(meta):
    from benchmarks.sib_fewshot import arguments

    bench = arguments().parse_args([])
    defaults, data_args, sib_args = meta["DEFAULTS"], meta["MetaDataArguments"](), meta["SIBArguments"]()
    from benchmarks import fewshot_intents

    assert defaults["max_steps"] == fewshot_intents.arguments().parse_args([]).steps  # meta_budget.md chose it
    assert defaults["per_device_train_batch_size"] == bench.batch_size
    assert defaults["learning_rate"] == 1e-3 and defaults["lr_scheduler_type"] == "constant"
    assert sib_args.inner_lr in bench.inner_lrs and sib_args.inner_steps == 3 and sib_args.n_way == 5
    assert sib_args.learn_inner_lr is True and sib_args.support_gradient is bench.support_gradient
    assert sib_args.transductive_init is bench.transductive_init is SIBConfig().transductive_init
    # the training pools: the library's defaults, which benchmarks/fewshot_intents.py trains with (query_pools.md)
    from benchmarks.fewshot_intents import TRAIN_POOLS

    training = meta["MetaTrainingArguments"](output_dir="x")
    assert (training.uneven_train_queries, training.natural_train_queries) == (TRAIN_POOLS["uneven"],
                                                                               TRAIN_POOLS["natural"])
    assert not {"uneven_train_queries", "natural_train_queries"} & set(defaults)  # examples/meta.py keeps them
    assert data_args.dataset == "clinc150"
    # the step kept is the one that scores best on the meta-validation classes, as the benchmark keeps it
    assert defaults["load_best_model_at_end"] and defaults["metric_for_best_model"] == "sib_accuracy"
    assert defaults["eval_steps"] == defaults["save_steps"] == 200


def write_intents(tmp_path, tokenizer, kind):
    data = intent_data(tokenizer, classes=10, per_class=6)
    names = data.features["label"].names
    rows = [{"utterance": t, "intent": names[y]} for t, y in zip(data["text"], data["label"])]
    path = tmp_path / f"intents.{kind}"
    if kind == "csv":
        path.write_text("utterance;intent\n" + "".join(f"{r['utterance']};{r['intent']}\n" for r in rows))
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path, names


@pytest.mark.parametrize("kind", ["csv", "jsonl"])
def test_own_file_trains_and_evaluates_end_to_end(meta, tmp_path, tokenizer, kind):
    path, names = write_intents(tmp_path, tokenizer, kind)
    backbone = tmp_path / "backbone"
    tiny_backbone(tokenizer.vocab_size).save_pretrained(backbone)
    tokenizer.save_pretrained(backbone)
    metrics = meta["main"]([
        "--train_file", str(path), "--text_column", "utterance", "--label_column", "intent", "--delimiter", ";",
        "--backbone", str(backbone), "--output_dir", str(tmp_path / "out"), "--n_way", "2", "--k_shot", "1",
        "--n_query", "2", "--max_steps", "3", "--per_device_train_batch_size", "2", "--train_episodes", "12",
        "--num_eval_episodes", "6", "--disable_tqdm", "true", "--use_cpu", "true",
        "--train_classes", ",".join(names[:6]), "--validation_classes", ",".join(names[6:8]),
        "--test_classes", ",".join(names[8:])])
    assert metrics["test_episodes"] == 6 and 0 <= metrics["test_sib_accuracy"] <= 100
    out = tmp_path / "out"
    results = json.loads((out / "results.json").read_text())
    assert results["dataset"] == str(path)  # the data it came from
    assert results["test_ways"] == min(2, len(names[8:]))  # classes per test episode
    # 2 validation classes: the refinement was checked on 2-way tasks, and the saved model keeps the outcome
    assert results["max_refined_classes"] in (None, 0)
    split = json.loads((out / "model" / "class_split.json").read_text())
    assert split == {"train": sorted(names[:6]), "validation": sorted(names[6:8]), "test": sorted(names[8:])}
    saved = SIBForFewShotClassification.from_pretrained(out / "model")  # shaped by default: the encoder is stored
    assert saved.config.max_refined_classes == results["max_refined_classes"]
    assert saved.config.shaped_layers == 1  # the tiny backbone's one layer
    learned = float(saved.head.log_inner_lr.exp())
    card = (out / "model" / "README.md").read_text()
    assert f"inner step size {learned:.4g} (learned; it started at 0.03)" in card  # the value it ended with
    assert "test_uneven_sib_accuracy" in metrics  # the same model where unlabelled sets are uneven
    again = meta["main"]([
        "--train_file", str(path), "--text_column", "utterance", "--label_column", "intent", "--delimiter", ";",
        "--evaluate_model", str(out / "model"), "--output_dir", str(tmp_path / "eval"), "--n_query", "2",
        "--k_shot", "1", "--num_eval_episodes", "6", "--disable_tqdm", "true", "--use_cpu", "true",
        "--backbone", str(backbone)])
    # evaluate-only: no training, the saved split's test classes, the same episodes and so the same score
    assert again["test_sib_accuracy"] == metrics["test_sib_accuracy"]
    assert again["test_uneven_sib_accuracy"] == metrics["test_uneven_sib_accuracy"]
    assert not (tmp_path / "eval" / "model").exists()
    # the model's own SIB settings, asked otherwise, are refused (they were ignored: the saved model's scores came
    # back under --n_way 3 / --inner_steps 0); asked as trained, they pass
    evaluate = ["--train_file", str(path), "--text_column", "utterance", "--label_column", "intent", "--delimiter", ";",
                "--evaluate_model", str(out / "model"), "--n_query", "2", "--k_shot", "1", "--num_eval_episodes", "6",
                "--disable_tqdm", "true", "--use_cpu", "true", "--backbone", str(backbone)]
    for option, value in (("--n_way", "3"), ("--inner_steps", "0")):
        with pytest.raises(ValueError, match=rf"saved model as it was trained .*\['{option}'\] on the command line"):
            meta["main"]([*evaluate, option, value, "--output_dir", str(tmp_path / "refused")])
    same = meta["main"]([*evaluate, "--n_way", str(saved.config.n_way), "--output_dir", str(tmp_path / "same")])
    assert same["test_sib_accuracy"] == metrics["test_sib_accuracy"]


def test_class_split_by_fractions_seed_or_lists(meta):
    args = meta["MetaDataArguments"]
    names = [f"c{i}" for i in range(10)]
    in_order = meta["split_classes"](names, args())
    assert (in_order["train"], in_order["validation"], in_order["test"]) == (names[:6], names[6:8], names[8:])
    shuffled = meta["split_classes"](names, args(class_split_seed=3, split_fractions="0.5,0.25,0.25"))
    assert sorted(sum(shuffled.values(), [])) == names and len(shuffled["train"]) == 5
    assert shuffled == meta["split_classes"](names, args(class_split_seed=3, split_fractions="0.5,0.25,0.25"))
    assert shuffled["train"] != names[:5]
    with pytest.raises(ValueError, match="split_fractions"):
        meta["split_classes"](names, args(split_fractions="0.5,0.5"))
    with pytest.raises(ValueError, match="all three"):
        meta["split_classes"](names, args(train_classes="c0,c1"))
    with pytest.raises(ValueError, match=r"unknown classes \['zz'\]"):
        meta["split_classes"](names, args(train_classes="c0,zz", validation_classes="c1,c3", test_classes="c2,c4"))
    with pytest.raises(ValueError, match=r"name \['c2'\] more than once"):
        meta["split_classes"](names, args(train_classes="c0,c1,c2", validation_classes="c2,c3", test_classes="c4,c5"))
    # a split of fewer than 2 classes holds no task: refused by name, not later as an empty sampler
    with pytest.raises(ValueError, match=r"leaves \{'validation': 1, 'test': 0\} classes \(of 3"):
        meta["split_classes"](names[:3], args())


def test_named_corpus_without_data_dir_and_bad_files_are_refused(meta, tmp_path):
    args = meta["MetaDataArguments"]
    with pytest.raises(ValueError, match="--data_dir"):
        meta["class_splits"](args(dataset="banking77"))
    with pytest.raises(FileNotFoundError, match="missing.csv does not exist"):
        meta["class_splits"](args(train_file=str(tmp_path / "missing.csv")))
    bad = tmp_path / "x.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match=r"no column\(s\) \['text', 'label'\]"):
        meta["class_splits"](args(train_file=str(bad)))
    bad.write_text("text\tlabel\nhello\tgreet\n")  # tab-separated, read at the default comma
    with pytest.raises(ValueError, match=r"splits into \['text', 'label'\] at '\\t': set --delimiter to it"):
        meta["class_splits"](args(train_file=str(bad)))


def test_the_readmes_sib_snippet_runs_on_tiny_data(tmp_path, tokenizer, monkeypatch):
    """The snippet's calls work as written (steps shortened; benchmarks/meta_defaults.py runs it unchanged)."""
    from benchmarks.meta_defaults import readme_snippet

    tiny_backbone(tokenizer.vocab_size).save_pretrained(tmp_path / "enc")
    tokenizer.save_pretrained(tmp_path / "enc")
    data = intent_data(tokenizer, classes=12, per_class=16)
    code = readme_snippet().replace("max_steps=3000", "max_steps=4").replace("eval_steps=200", "eval_steps=2") \
        .replace("save_steps=200", "save_steps=2")
    assert code != readme_snippet(), "the snippet's settings changed: update this test"
    monkeypatch.chdir(tmp_path)
    names = {"enc": str(tmp_path / "enc"), "train_ds": data.filter(lambda r: r["label"] < 6),
             "val_ds": data.filter(lambda r: r["label"] >= 6)}
    exec(compile(code, "README.md", "exec"), names)
    trainer = names["trainer"]
    assert trainer.state.global_step == 4 and trainer.state.best_metric is not None
    assert "eval_sib_accuracy" in trainer.evaluate()


def test_a_shaped_run_saves_its_encoder_and_evaluates_again_from_the_folder_alone(meta, tmp_path, tokenizer):
    path, names = write_intents(tmp_path, tokenizer, "jsonl")
    backbone = tmp_path / "backbone"
    tiny_backbone(tokenizer.vocab_size).save_pretrained(backbone)
    tokenizer.save_pretrained(backbone)
    common = ["--train_file", str(path), "--text_column", "utterance", "--label_column", "intent", "--n_query", "2",
              "--k_shot", "1", "--num_eval_episodes", "6", "--disable_tqdm", "true", "--use_cpu", "true",
              "--backbone", str(backbone)]
    metrics = meta["main"]([*common, "--output_dir", str(tmp_path / "out"), "--n_way", "2", "--max_steps", "2",
                            "--per_device_train_batch_size", "2", "--train_episodes", "8", "--shape_top_layers", "1",
                            "--shape_epochs", "1", "--train_classes", ",".join(names[:6]),
                            "--validation_classes", ",".join(names[6:8]), "--test_classes", ",".join(names[8:])])
    saved = tmp_path / "out" / "model"
    assert SIBConfig.from_pretrained(saved).shaped_layers == 1
    shaped = SIBForFewShotClassification.from_pretrained(saved).backbone.state_dict()
    pretrained = AutoModel.from_pretrained(backbone).state_dict()
    assert any(not (shaped[k] == v).all() for k, v in pretrained.items() if k.startswith("encoder.layer.0"))
    again = meta["main"]([*common, "--evaluate_model", str(saved), "--output_dir", str(tmp_path / "eval")])
    assert again["test_sib_accuracy"] == metrics["test_sib_accuracy"]
