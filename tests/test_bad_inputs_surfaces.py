"""Bad inputs on the newer surfaces, table-driven: the label hierarchy, rehearsal, consolidation, the readers, the
metric, SIB's run time and configs, and the three scripts' options. Each case asserts a correct result or a refusal
(ValueError / TypeError / FileNotFoundError) whose message names the argument, file or row. The scripts' cases
stop at their validation: an accepted option reaches the next step (loading a model that does not exist), which
the case tells apart from a refusal."""

from __future__ import annotations

import importlib
import inspect
import json
import logging
import re
import runpy
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import ClassLabel, Dataset, DatasetDict
from datasets import Sequence as SequenceFeature
from transformers import AutoModelForSequenceClassification, EvalPrediction, TrainingArguments, pipeline

from hf_adapter_ext import (
    CRF,
    AdapterDataCollator,
    BiLSTMCRFConfig,
    BiLSTMCRFForTokenClassification,
    BIOTokenClassificationPipeline,
    ExtensionTrainer,
    MetaTrainingArguments,
    NeuralAdapterConfig,
    NeuralAdapterModel,
    SIBConfig,
    SIBForFewShotClassification,
    adapter_optimizer,
    add_pseudo_labels,
    add_rehearsal,
    entity_types,
    extension_training_defaults,
    get_adapter_model,
    parse_pairs,
    save_consolidated,
    source_labels,
)
from hf_adapter_ext.adapter import add_source_logits
from hf_adapter_ext.adapter.self_training import pseudo_label
from hf_adapter_ext.data import (
    align_word_labels,
    conll_dataset,
    first_rows,
    load_conll,
    load_ner_files,
    read_conll,
    read_csv_rows,
    read_json_records,
    read_sentences,
    relabel_to_outside,
    rename_types,
    tokenize_and_align_labels,
    warn_unlabelled_in_evaluation,
    with_label_order,
    word_tokenizer,
)
from hf_adapter_ext.data.conll import from_iobes, to_iob2
from hf_adapter_ext.meta import (
    EpisodeSampler,
    SequenceEpisodes,
    TextEpisodes,
    TokenEpisodes,
    TokenEpisodeSampler,
    collate_episodes,
    encode_texts,
    encode_words,
    episode_compute_metrics,
    read_fewnerd_episodes,
)
from hf_adapter_ext.meta.shaping import shape_encoder
from hf_adapter_ext.metrics import (
    bio_decoder,
    bio_invalid_spans,
    entity_f1_compute_metrics,
    evaluate_tagger,
    forgotten_types,
    ids_to_tags,
    load_entity_f1,
    predict_tags,
    predicted_label_ids,
    source_agreement,
)
from hf_adapter_ext.validation import check_training_arguments

from .conftest import NEW_LABELS, OLD_LABELS, build_byte_level_tokenizer, build_tokenizer, tiny_source
from .helpers import toy_dataset
from .test_bad_inputs import episode, meta_args, model, parents_model, sib, source

ROOT = Path(__file__).resolve().parents[1]
TOKENIZER = build_tokenizer()
SCRIPT_MODULES = {name: runpy.run_path(str(ROOT / "examples" / f"{name}.py"), run_name=name)
                  for name in ("extend_ner", "train_tagger", "meta")}
SCRIPTS = {name: module["main"] for name, module in SCRIPT_MODULES.items()}
NO_MODEL = "/nonexistent/tagger"


def write(content: str | bytes, name: str = "data.txt") -> Path:
    path = Path(tempfile.mkdtemp(prefix="bad_surfaces_")) / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def adapter_folder() -> Path:
    """A saved extension in a folder of this module's own (test_bad_inputs' folder goes when that module ends,
    which under xdist may come first)."""
    folder = Path(tempfile.mkdtemp(prefix="bad_surfaces_adapter_"))
    model().save_pretrained(folder)
    return folder


def few_tk_folder() -> Path:
    """A Few-TK layout with one setting, inter/."""
    root = Path(tempfile.mkdtemp(prefix="few_tk_"))
    (root / "inter").mkdir()
    (root / "inter" / "train.txt").write_text("John B-person\n")
    return root


def types_data(names=("O", "B-PER", "I-PER", "B-ORG", "I-ORG")):
    return Dataset.from_dict({"tokens": [["John", "Acme"]], "ner_tags": [[1, 3]]}).cast_column(
        "ner_tags", SequenceFeature(ClassLabel(names=list(names))))


def trained(**config):
    m = model(**config)
    m.has_trained = True
    return m


def self_trainer(m, with_validation=True):
    return ExtensionTrainer(model=m, args=TrainingArguments(tempfile.mkdtemp(), report_to=[], use_cpu=True),
                            train_dataset=toy_dataset(TOKENIZER),
                            eval_dataset=toy_dataset(TOKENIZER) if with_validation else None,
                            data_collator=AdapterDataCollator(TOKENIZER))


def consolidate(m=None, **kwargs):
    m = m or trained(adapter="none", head="crf")
    return m.consolidate(kwargs.pop("train", toy_dataset(TOKENIZER)), kwargs.pop("tokenizer", TOKENIZER), **kwargs)


def rehearse(texts, train=None, tokenizer=TOKENIZER):
    return add_rehearsal(toy_dataset(TOKENIZER) if train is None else train, texts, model(), tokenizer)


def other_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {f"w{i}": i for i in range(500)} | {"[UNK]": 500, "[PAD]": 501}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]")


def score(predictions, references, **kwargs):
    return load_entity_f1().compute(predictions=predictions, references=references, **kwargs)


def predict(examples=None, queries=None, tokenizer=TOKENIZER, grad_net="equivariant", **kwargs):
    examples = {"a": ["john"], "b": ["paris"], "c": ["acme"]} if examples is None else examples
    return sib(grad_net=grad_net).predict_labels(examples, ["london"] if queries is None else queries, tokenizer,
                                                 **kwargs)


def run(script: str, *options: str):
    """A script's main with a model that does not exist: a refusal of ``options`` comes first, else the load fails."""
    args = {"extend_ner": ["--model_name_or_path", NO_MODEL, "--train_file", NO_MODEL + ".txt"],
            "train_tagger": ["--model_name_or_path", NO_MODEL, "--train_file", NO_MODEL + ".txt"],
            "meta": ["--dataset", "banking77"]}[script]
    return SCRIPTS[script]([*args, "--output_dir", tempfile.mkdtemp(prefix="bad_cli_"), *options])


# Where an accepted option leads next: past validation, each script stops on its missing model, file or data.
REACHED_NEXT_STEP = r"Repo id must be in the form|--data_dir|does not exist|is not an existing folder"


def conll_file(text: str):
    return write(text, "data.conll")


def nan_tagger():
    tagger = model(head="linear")  # a CRF head refuses NaN scores itself
    with torch.no_grad():
        tagger.classifier.weight.fill_(float("nan"))
    return tagger


def bilstm():
    labels = dict(enumerate(["O", "B-PER", "I-PER"]))
    return BiLSTMCRFForTokenClassification(BiLSTMCRFConfig(vocab_size=10, id2label=labels,
                                                           label2id={v: k for k, v in labels.items()})).eval()


# ---------------------------------------------------------------- correct results
def long_text_warns_where_transformers_truncates():
    tokenizer = build_tokenizer()
    tokenizer.model_max_length = 32
    tagger = BIOTokenClassificationPipeline(model=model(), tokenizer=tokenizer)
    logger = logging.getLogger("hf_adapter_ext.pipelines")
    with _captured(logger) as records:
        tagger("john lives in paris . " * 20)
    assert any("not tagged; pass stride=8" in r.getMessage() for r in records), [r.getMessage() for r in records]
    with _captured(logger) as records:
        tagger("john lives in paris . " * 20, stride=8, aggregation_strategy="first")
    assert not records


def validation_file_that_repeats_the_training_file_is_warned():
    train, dev = conll_file("John B-PER\nlives O\n\nMary B-PER\n\n"), conll_file("Paris B-LOC\n\n")
    with _captured(logging.getLogger("hf_adapter_ext.data.conll")) as records:
        load_ner_files({"train": train, "validation": train})
    assert any("2 of the validation split's 2 sentences are also in the training file" in r.getMessage()
               for r in records), [r.getMessage() for r in records]
    with _captured(logging.getLogger("hf_adapter_ext.data.conll")) as records:
        load_ner_files({"train": train, "validation": dev})
    assert not records


def unlabelled_text_that_repeats_test_sentences_is_warned():
    """Self-training on test or validation sentences scores the model on text it learned its own tags from: the
    user is told which split and how many (extend_ner.py calls this before training)."""
    data = load_ner_files({"train": conll_file("John B-PER\nlives O\n\n"),
                           "test": conll_file("Mary B-PER\nsings O\n\nParis B-LOC\n\n")})
    with _captured(logging.getLogger("hf_adapter_ext.data.conll")) as records:
        warn_unlabelled_in_evaluation(["Mary sings", "a new sentence"], {"test": data["test"]})
    assert any("repeats 1 of the test split's 2 sentences" in r.getMessage() for r in records), records
    with _captured(logging.getLogger("hf_adapter_ext.data.conll")) as records:
        warn_unlabelled_in_evaluation(["a new sentence"], {"test": data["test"]})
    assert not records


class _captured:
    """The records ``logger`` emits inside the block (transformers' loggers do not propagate to caplog)."""

    def __init__(self, logger):
        self.logger, self.records = logger, []
        self.handler = logging.Handler()
        self.handler.emit = self.records.append

    def __enter__(self):
        self.logger.addHandler(self.handler)
        return self.records

    def __exit__(self, *exc):
        self.logger.removeHandler(self.handler)


def rehearsal_text_as_a_dataset_column_or_a_stream_is_read_as_sentences():
    """A Dataset with a 'text' column (as consolidate takes its unlabelled text) or a streaming IterableDataset of
    sentences gives the same rehearsal rows as the list of strings (a 'text' column was refused; a stream was read as
    dicts)."""
    sentences = ["John lives in Paris .", "Mary rose ."]
    expected = rehearse(sentences)["input_ids"]
    for texts in (Dataset.from_dict({"text": sentences}), Dataset.from_dict({"text": sentences}).to_iterable_dataset(),
                  Dataset.from_dict({"tokens": [s.split() for s in sentences]}).to_iterable_dataset()):
        assert rehearse(texts)["input_ids"] == expected


def a_data_set_in_any_format_gives_what_its_python_rows_give():
    """with_format("torch" / "numpy" / "pandas") gives tensors / arrays per cell: add_rehearsal failed on their
    truth value, evaluate_tagger on pandas' Series. Every function that takes a tokenized data set (they share
    check_columns) now reads it as Python rows, so the answer is the same in any format."""
    data, extended = toy_dataset(TOKENIZER), model().eval()
    expected = (rehearse(["Mary rose ."], train=data)["input_ids"],
                evaluate_tagger(extended, data, TOKENIZER, extended.config.id2label)["overall_f1"],
                add_source_logits(data, extended, TOKENIZER)["source_logits"])
    for kind in ("torch", "numpy", "pandas"):
        formatted = data.with_format(kind)
        assert rehearse(["Mary rose ."], train=formatted)["input_ids"] == expected[0], kind
        assert evaluate_tagger(extended, formatted, TOKENIZER, extended.config.id2label)["overall_f1"] == expected[1]
        assert add_source_logits(formatted, extended, TOKENIZER)["source_logits"] == expected[2], kind


def json_array_file_is_read():
    path = write(json.dumps([{"tokens": ["John"], "ner_tags": ["B-PER"]}]), "a.json")
    assert load_ner_files({"train": path})["train"][0]["tokens"] == ["John"]


def a_data_set_written_by_to_json_reads_back_with_its_label_names():
    """Dataset.to_json writes a ClassLabel column as ids; given the names, the reader maps them back."""
    names = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    original = Dataset.from_dict({"tokens": [["John", "Smith", "in", "Paris"]], "ner_tags": [[1, 2, 0, 3]]},
                                 features=types_data(names).features)
    path = Path(tempfile.mkdtemp()) / "train.jsonl"
    original.to_json(path)
    read = load_ner_files({"train": path}, labels=names)["train"]
    assert read.features["ner_tags"].feature.names == names and read[0]["ner_tags"] == [1, 2, 0, 3]


def scripts_load_a_byte_level_tokenizer_with_the_word_start_marks_words_need():
    """A RoBERTa-style tokenizer saved without add_prefix_space gave words passed one by one other subwords than
    the same words in running text (what run_ner.py sets add_prefix_space for)."""
    folder = Path(tempfile.mkdtemp())
    build_byte_level_tokenizer(add_prefix_space=False).save_pretrained(folder)
    words = ["John", "lives", "in", "Paris"]
    loaded = word_tokenizer(str(folder))
    assert loaded(words, is_split_into_words=True)["input_ids"] == loaded(" ".join(words))["input_ids"]
    wordpiece = Path(tempfile.mkdtemp())
    TOKENIZER.save_pretrained(wordpiece)
    assert not getattr(word_tokenizer(str(wordpiece)), "add_prefix_space", False)  # left as it was


def json_numbers_as_text_survive_when_quoted():
    path = write('{"tokens": ["007", "1e5", "NA"], "ner_tags": ["O", "O", "O"]}\n', "q.jsonl")
    assert load_ner_files({"train": path})["train"][0]["tokens"] == ["007", "1e5", "NA"]


def tsv_is_read_with_tabs():
    path = write("tokens\tner_tags\nJohn lives\tB-PER O\n", "t.tsv")
    assert load_ner_files({"train": path})["train"][0]["tokens"] == ["John", "lives"]


def csv_quoted_comma_word():
    path = write('tokens,ner_tags\n"a,b c",O O\n', "c.csv")
    assert load_ner_files({"train": path})["train"][0]["tokens"] == ["a,b", "c"]


def docstart_inside_a_sentence_is_warned():
    path = conll_file("John B-PER\n-DOCSTART- O\nMary B-PER\n")
    logger = logging.getLogger("hf_adapter_ext.data.conll")
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger.addHandler(handler)
    try:
        sentences = read_conll(path)
    finally:
        logger.removeHandler(handler)
    assert [s["tokens"] for s in sentences] == [["John"], ["Mary"]]
    assert any("data.conll:2" in r.getMessage() and "-DOCSTART-" in r.getMessage() for r in records)


def rename_merges_two_types():
    renamed = rename_types(types_data(), {"PER": "X", "ORG": "X"})
    assert renamed.features["ner_tags"].feature.names == ["O", "B-X", "I-X"]


def rename_on_a_dataset_dict():
    renamed = rename_types(DatasetDict(train=types_data(), test=types_data()), {"PER": "person"})
    assert "B-person" in renamed["test"].features["ner_tags"].feature.names


def relabel_keeps_other_types():
    out = relabel_to_outside(types_data(), "PER")
    assert out[0]["ner_tags"] == [0, 3]


def parents_two_subtypes_of_one_parent():
    m = get_adapter_model(source(), NeuralAdapterConfig(
        new_labels=["B-politician", "I-politician", "B-writer", "I-writer"],
        label_parents={"politician": "PER", "writer": "PER"}))
    assert m.peft_config.label_parents == {"politician": "PER", "writer": "PER"}


def parents_as_command_line_string():
    assert NeuralAdapterConfig(new_labels=NEW_LABELS, label_parents=" LOC = PER ").label_parents == {"LOC": "PER"}


def rehearsal_word_lists():
    mixed = rehearse([["John", "lives", "here"], "Mary too ."])
    assert sum(mixed["rehearsal"]) == 2


def rehearsal_generator():
    mixed = rehearse(s for s in ["John lives here .", "Mary too ."])
    assert sum(mixed["rehearsal"]) == 2


def rehearsal_blank_lines_dropped():
    assert sum(rehearse(["John lives here .", "   "])["rehearsal"]) == 1


def metric_new_types_tuple():
    assert score([["B-LOC"]], [["B-LOC"]], new_types=("LOC",))["new_f1"] == 1.0


def metric_new_types_found_nowhere_are_warned():
    """A misspelt new type ('loc' for 'LOC') scored new_f1 = 0 without a word."""
    with pytest.warns(UserWarning, match=r"none of new_types \['loc'\] is in the predictions or references"):
        assert score([["B-LOC"]], [["B-LOC"]], new_types=["loc"])["new_f1"] == 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        score([["O"]], [["B-LOC"]], new_types=["LOC"])  # in the references only: a real miss, not a spelling


def sib_output_loading_info_returns_the_pair_transformers_returns():
    """``output_loading_info=True`` returned the model alone: ``model, info = ...`` failed to unpack."""
    model = sib()
    folder = tempfile.mkdtemp()
    model.save_pretrained(folder)
    loaded, info = SIBForFewShotClassification.from_pretrained(folder, backbone=model.backbone,
                                                               output_loading_info=True)
    assert isinstance(loaded, SIBForFewShotClassification) and "missing_keys" in info


def read_sentences_takes_datasets_text_files():
    """A .jsonl / .csv file of sentences was read line by line: the JSON objects and the header became sentences."""
    assert read_sentences(write('{"text": "John lives in Paris ."}\n{"tokens": ["Mary", "sings"]}\n', "t.jsonl")) == [
        "John lives in Paris .", "Mary sings"]
    assert read_sentences(write('[{"text": "John lives ."}]', "t.json")) == ["John lives ."]
    assert read_sentences(write('id,text\n1,"John lives, Mary sings ."\n', "t.csv")) == ["John lives, Mary sings ."]
    assert read_sentences(write("text\tid\nJohn lives .\t1\n", "t.tsv")) == ["John lives ."]


def metric_parents_score_subtypes_as_parent():
    out = score([["B-PER"]], [["B-politician"]], new_types=["politician"], type_parents={"politician": "PER"})
    assert out["old_f1_with_subtypes"] == 1.0


def sib_predict_any_order_of_labels():
    out = predict({"c": ["acme"], "a": ["john"], "b": ["paris"]}, ["john", "acme"])
    assert len(out) == 2 and all(o["label"] in "abc" for o in out)


def sib_predict_tuples_of_examples():
    assert len(predict({"a": ("john",), "b": ("paris",), "c": ("acme",)})) == 1


def sib_inner_steps_zero():
    assert len(predict(inner_steps=0)) == 1


def meta_args_uneven_one():
    args = MetaTrainingArguments(output_dir=tempfile.mkdtemp(), uneven_eval_queries=1.0, report_to="none")
    assert args.uneven_eval_queries == 1.0


def training_args_max_steps_with_zero_epochs():
    check_training_arguments(TrainingArguments(output_dir=tempfile.mkdtemp(), max_steps=5, num_train_epochs=3,
                                               report_to="none"))


def read_sentences_limit_keeps_first():
    assert read_sentences(write("a b\nc d\ne f\n"), 2) == ["a b", "c d"]


def read_sentences_plain_text_ending_in_o():
    text = "I like the letter O\nJohn met Mary in Paris yesterday\nShe said it was fine\nWe left early\n"
    assert len(read_sentences(write(text))) == 4


def with_label_order_more_labels():
    out = with_label_order(types_data(), ["O", "B-ORG", "I-ORG", "B-PER", "I-PER", "B-LOC", "I-LOC"])
    assert out[0]["ner_tags"] == [3, 1]


def csv_rows_keep_cells():
    rows = read_csv_rows(write("text;label\nNA;007\n", "x.csv"), ("text", "label"), ";", "fix", "")
    assert rows == [("row 0", ["NA", "007"])]


def meta_file_labels_as_written():
    path = write("text,label\nhello there,007\nhi,7\nyo,NA\n", "intents.csv")
    meta = runpy.run_path(str(ROOT / "examples" / "meta.py"), run_name="m")
    pool = meta["texts_file"](meta["MetaDataArguments"](train_file=str(path)))
    assert sorted(pool.features["label"].names) == ["007", "7", "NA"] and pool["text"][2] == "yo"


def from_iobes_opens_an_end_without_a_start():
    """'S-PER E-ORG': the E- has no start; read as it was, it gave 'B-PER I-ORG', a span IOB2 scoring drops."""
    assert from_iobes(["S-PER", "E-ORG"]) == ["B-PER", "B-ORG"]


def io_source_takes_label_parents():
    """A source with one label per type (IO: 'PER', no B-/I-) names its subtypes the same way; the parents check read
    new types as BIO only and refused 'politician' as "not one of the new types []"."""
    io_source = tiny_source("bert", TOKENIZER.vocab_size, labels=["O", "PER", "ORG"])
    m = get_adapter_model(io_source, C(new_labels=["politician", "LOC"], label_parents={"politician": "PER"})).train()
    ids = m.config.label2id
    assert m._subtype_ids.tolist() == [ids["politician"]]
    loss = m(input_ids=torch.tensor([[2, 10, 11, 3]]), attention_mask=torch.ones(1, 4, dtype=torch.long),
             labels=torch.tensor([[-100, ids["politician"], ids["O"], -100]]),
             rehearsal=torch.tensor([1]), source_logits=torch.randn(1, 4, 3)).loss
    assert torch.isfinite(loss)


def extension_trainer_says_which_of_its_settings_do_nothing():
    """rehearsal_ratio without rehearsal rows, early_stopping_patience without validation: they were ignored without
    a word; the defaults stay silent."""

    def build(**kwargs):
        return ExtensionTrainer(model=model().train(), args=TrainingArguments(tempfile.mkdtemp(), report_to=[]),
                                train_dataset=toy_dataset(TOKENIZER), processing_class=TOKENIZER, **kwargs)

    with pytest.warns(UserWarning, match=r"rehearsal_ratio=2.0 does nothing: the training set has no 'rehearsal'"):
        build(rehearsal_ratio=2.0)
    with pytest.warns(UserWarning, match=r"early_stopping_patience=3 does nothing without an eval_dataset"):
        build(early_stopping_patience=3)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*does nothing")
        build()


def extension_trainer_pads_labels_without_a_collator():
    """Trainer's own default (DataCollatorWithPadding) pads no labels: 'Unable to create tensor ... excessive
    nesting'. ExtensionTrainer pads token-classification rows itself."""

    trainer = ExtensionTrainer(model=model().train(), args=TrainingArguments(
        tempfile.mkdtemp(), max_steps=1, per_device_train_batch_size=5, report_to=[], use_cpu=True),
        train_dataset=toy_dataset(TOKENIZER), processing_class=TOKENIZER, early_stopping_patience=0)
    assert isinstance(trainer.data_collator, AdapterDataCollator)
    assert np.isfinite(trainer.train().training_loss)


def compute_metrics_takes_scores_among_extra_outputs():
    """A model with extra outputs hands Trainer a tuple, scores first (transformers' convention)."""
    m = model()
    labels = np.array([[0, 1, 2, -100]])
    scores = np.eye(len(m.config.id2label))[[[0, 1, 2, 0]]]
    metrics = entity_f1_compute_metrics(m.config.id2label)(((scores, np.zeros((1, 4, 3))), labels))
    assert metrics["overall_f1"] == 1.0
    assert "new_f1" not in metrics  # no new types given: no new-type F1 of 0.0 to misread
    named = entity_f1_compute_metrics(m.config.id2label, new_types=["LOC"])(((scores, np.zeros((1, 4, 3))), labels))
    assert named["new_f1"] == 0.0 and named["overall_f1"] == 1.0


def source_agreement_reads_the_models_own_parents():
    """label_parents left out: the extended model's own count; a politician tag on a person is then agreement."""
    m = parents_model({"politician": "PER"}).eval()
    person, politician = m.config.label2id["B-PER"], m.config.label2id["B-politician"]
    with torch.no_grad():  # every word a one-word person to the source, and a politician to the extension
        m.source.classifier.bias[person] = m.classifier.bias[politician] = 100.0
    text = ["john smith lives in paris ."]
    assert source_agreement(m.source, m, text, TOKENIZER) == {"PER": 1.0}
    assert source_agreement(m.source, m, text, TOKENIZER, {}) == {"PER": 0.0}  # {}: every subtype disagrees


def poisoned(module):
    """``module`` with its first trainable matrix set to NaN: the weights of a run that diverged."""
    with torch.no_grad():
        next(p for p in module.parameters() if p.requires_grad and p.dim() == 2).fill_(float("nan"))
    return module


def predict_labels_takes_any_list_like_of_texts():
    """numpy arrays, pandas Series, generators and datasets columns hold texts as lists do; only Sequence was
    accepted for the queries, and a numpy array of examples failed on its truth value."""
    import pandas as pd

    m, examples = sib(), {"a": ["john"], "b": ["paris"], "c": ["acme"]}
    expected = m.predict_labels(examples, ["london", "acme"], TOKENIZER)
    for queries in (np.array(["london", "acme"]), pd.Series(["london", "acme"]), (q for q in ["london", "acme"]),
                    Dataset.from_dict({"text": ["london", "acme"]})["text"]):
        assert m.predict_labels(examples, queries, TOKENIZER) == expected
    assert m.predict_labels({"a": np.array(["john"]), "b": pd.Series(["paris"]), "c": ("acme",)},
                            ["london", "acme"], TOKENIZER) == expected


def adapt_takes_numpy_feature_rows():
    """A numeric numpy array is feature rows, as a tensor is (it was read as texts: "pass the tokenizer")."""
    m, g = sib(), torch.Generator().manual_seed(0)
    support, query = torch.randn(4, 16, generator=g), torch.randn(6, 16, generator=g)
    assert m.adapt(support.numpy(), [0, 0, 1, 1], query.numpy()).tolist() == m.adapt(support, [0, 0, 1, 1],
                                                                                       query).tolist()


def peft_unload_returns_the_source_unchanged():
    """PEFT's unload() gives back the base model without its adapters; for an extension, the frozen source."""
    m = model()
    assert m.unload() is m.source and m.unload().config.id2label == source().config.id2label


def settings_that_nothing_reads_are_warned():
    """lora_r with target='copy', num_top_layers without trainable='top', ...: taken and never read, so a user's
    change did nothing without a word. Settings that their choice reads, and the defaults, stay silent."""
    idle = [(dict(lora_r=4), "lora_r=4 \\(read only with target='lora'\\)"),
            (dict(lora_target_modules=["query"]), "lora_target_modules"),
            (dict(num_top_layers=2), "num_top_layers=2 \\(read only with trainable='top'\\)"),
            (dict(target="frozen", trainable="top"), "trainable='top' \\(read only with target='copy' or 'lora'"),
            (dict(adapter="none", adapter_hidden_size=32), "adapter_hidden_size=32"),
            (dict(head="linear", bio_constraints=False), "bio_constraints=False \\(read only with head='crf'\\)"),
            (dict(subtype_init="sampled"), "subtype_init='sampled' \\(read only with label_parents\\)")]
    for settings, pattern in idle:
        with pytest.warns(UserWarning, match=f"nothing reads {pattern}"):
            get_adapter_model(source(), C(new_labels=NEW_LABELS, **settings))
    for settings in ({}, dict(target="lora", lora_r=4, trainable="top", num_top_layers=1), dict(head="crf",
                     bio_constraints=False), dict(adapter="mlp", adapter_hidden_size=32)):
        with warnings.catch_warnings():
            warnings.filterwarnings("error", message=".*nothing reads")
            get_adapter_model(source(), C(new_labels=NEW_LABELS, **settings))
    for settings, pattern in ((dict(min_train_ways=3), "min_train_ways=3 \\(read only with max_train_ways\\)"),
                              (dict(shape_top_layers=0, shape_learning_rate=1e-4), "shape_learning_rate=0.0001")):
        with pytest.warns(UserWarning, match=f"MetaTrainingArguments: .*nothing reads {pattern}") as caught:
            MetaTrainingArguments(output_dir=tempfile.mkdtemp(), **settings)
        assert caught[0].filename == __file__  # the warning points at the caller's line
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*nothing reads")
        MetaTrainingArguments(output_dir=tempfile.mkdtemp(), max_train_ways=6, min_train_ways=3, shape_epochs=5)


def warmup_under_a_schedule_that_never_warms_up_is_warned():
    """MetaTrainingArguments' schedule is constant, which ignores warmup_steps without a word (the rate stayed at its
    peak from the first step); a schedule that warms up takes it quietly."""
    with pytest.warns(UserWarning, match=r"--warmup_steps 100 does nothing under --lr_scheduler_type constant"):
        MetaTrainingArguments(output_dir=tempfile.mkdtemp(), warmup_steps=100)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        MetaTrainingArguments(output_dir=tempfile.mkdtemp(), warmup_steps=100, lr_scheduler_type="constant_with_warmup")


def forgotten_types_takes_no_new_types_as_none():
    """``new_types=None`` (no type added, as elsewhere) was "'NoneType' object is not iterable"."""
    assert forgotten_types({"PER_f1": 0.9, "PER_support": 3}, {"PER_f1": 0.5}, new_types=None) == {"PER": (0.9, 0.5)}


def source_labels_reads_a_model_its_config_or_its_config_json():
    """``source_labels(source)`` answered "no real id2label (found nothing)" for a model that has one; a config.json
    read as a dict keys its ids as strings."""
    tagger = source()
    as_json = json.loads(tagger.config.to_json_string())
    assert source_labels(tagger) == source_labels(tagger.config) == source_labels(as_json) == OLD_LABELS


def metric_takes_seqeval_options_that_ask_for_what_it_does():
    """evaluate.load("seqeval") users pass mode="strict", scheme="IOB2", zero_division=0: those are what entity_f1
    does, so they are accepted (they were "unexpected keyword argument")."""
    tags = [["B-PER", "I-PER", "O"]]
    for options in (dict(mode="strict"), dict(scheme="IOB2"), dict(zero_division=0), dict(suffix=False)):
        assert score(tags, tags, **options)["overall_f1"] == 1.0


HANDLED = [a_data_set_written_by_to_json_reads_back_with_its_label_names, warmup_under_a_schedule_that_never_warms_up_is_warned, forgotten_types_takes_no_new_types_as_none, source_labels_reads_a_model_its_config_or_its_config_json, scripts_load_a_byte_level_tokenizer_with_the_word_start_marks_words_need, adapt_takes_numpy_feature_rows, peft_unload_returns_the_source_unchanged, metric_takes_seqeval_options_that_ask_for_what_it_does, predict_labels_takes_any_list_like_of_texts, settings_that_nothing_reads_are_warned, long_text_warns_where_transformers_truncates, validation_file_that_repeats_the_training_file_is_warned, unlabelled_text_that_repeats_test_sentences_is_warned, json_array_file_is_read, json_numbers_as_text_survive_when_quoted, tsv_is_read_with_tabs,
           csv_quoted_comma_word, docstart_inside_a_sentence_is_warned, rename_merges_two_types, rename_on_a_dataset_dict,
           relabel_keeps_other_types, parents_two_subtypes_of_one_parent, parents_as_command_line_string,
           rehearsal_word_lists, rehearsal_generator, rehearsal_blank_lines_dropped, metric_new_types_tuple, metric_new_types_found_nowhere_are_warned, sib_output_loading_info_returns_the_pair_transformers_returns, read_sentences_takes_datasets_text_files,
           metric_parents_score_subtypes_as_parent, sib_predict_any_order_of_labels, sib_predict_tuples_of_examples,
           sib_inner_steps_zero, meta_args_uneven_one, training_args_max_steps_with_zero_epochs,
           read_sentences_limit_keeps_first, read_sentences_plain_text_ending_in_o, with_label_order_more_labels,
           csv_rows_keep_cells, meta_file_labels_as_written, extension_trainer_pads_labels_without_a_collator,
           compute_metrics_takes_scores_among_extra_outputs, extension_trainer_says_which_of_its_settings_do_nothing, io_source_takes_label_parents, from_iobes_opens_an_end_without_a_start, source_agreement_reads_the_models_own_parents,
           rehearsal_text_as_a_dataset_column_or_a_stream_is_read_as_sentences,
           a_data_set_in_any_format_gives_what_its_python_rows_give]

C = NeuralAdapterConfig
V, T, F = ValueError, TypeError, FileNotFoundError
REFUSED = [
    # ---- a CoNLL file with its tags in the first column (its words were refused as "IO tags")
    ("conll tags first", lambda: load_conll({"train": conll_file("B-PER John\nO lives\n")}), V,
     r"data.conll: sentence 0: the first column holds tags.*swap the columns"),
    # ---- new labels and the label hierarchy
    ("new label B-O", lambda: get_adapter_model(source(), C(new_labels=["B-O", "I-O"])), V, r"'O' is the outside tag"),
    ("new label B-B-X", lambda: get_adapter_model(source(), C(new_labels=["B-B-X"])), V, r"is a BIO label"),
    ("new label empty string", lambda: C(new_labels=[""]), V, r"new_labels\[0\]"),
    ("new label spaced", lambda: C(new_labels=["B-LOC "]), V, r"surrounding spaces"),
    ("new label lowercase prefix", lambda: get_adapter_model(source(), C(new_labels=["b-loc"])), V, r"BIO"),
    ("new labels IOBES", lambda: get_adapter_model(source(), C(new_labels=["B-LOC", "I-LOC", "E-LOC", "S-LOC"])), V,
     r"\['B-LOC', 'I-LOC'\]"),
    ("source IOBES", lambda: get_adapter_model(tiny_source("bert", TOKENIZER.vocab_size, labels=[
        "O", "B-PER", "I-PER", "E-PER", "S-PER"]), C(new_labels=NEW_LABELS)), V, r"IOBES / BILOU tags: \['E-PER'"),
    ("source labels listing O twice", lambda: get_adapter_model(tiny_source("bert", TOKENIZER.vocab_size, labels=[
        "O", "B-PER", "I-PER", "O"]), C(new_labels=NEW_LABELS, head="linear")), V,
     r"id2label names 'O' for several outputs \(ids \[0, 3\]\)"),  # linear head: accepted; CRF: "CRF.for_labels"
    ("source outside not O", lambda: get_adapter_model(tiny_source("bert", TOKENIZER.vocab_size, labels=[
        "OUT", "B-PER", "I-PER"]), C(new_labels=NEW_LABELS)), V, r"no 'O'.*rename it 'O'"),
    ("source plain labels without O, new_only", lambda: get_adapter_model(tiny_source("bert", TOKENIZER.vocab_size,
        labels=["NONE", "PER"]), C(new_labels=["LOC"], annotation="new_only")), V, r"no 'O'.*'NONE'"),
    ("entity_types IOBES", lambda: entity_types(["O", "B-PER", "E-PER", "S-PER"]), V, r"from_iobes"),
    ("entity_types lower case", lambda: entity_types(["o", "b-per", "i-per"]), V, r"capital"),
    ("new labels a set", lambda: C(new_labels={"B-LOC", "I-LOC"}), T, r"new_labels must be a list"),
    ("new labels bytes", lambda: C(new_labels=[b"B-LOC"]), T, r"new_labels"),
    ("parents child O", lambda: parents_model({"O": "PER"}), V, r"'O' is the outside tag"),
    ("parents parent O", lambda: parents_model({"politician": "O"}), V, r"'O' is the outside tag"),
    ("parents parent empty", lambda: parents_model({"politician": ""}), V, r"not an entity type name"),
    ("parents spaced name", lambda: parents_model({"politi cian": "PER"}), V, r"no spaces"),
    ("parents I- parent", lambda: parents_model({"politician": "I-PER"}), V, r"is a BIO label"),
    ("parents self", lambda: parents_model({"politician": "politician"}), V, r"cycle"),
    ("parents list", lambda: C(new_labels=NEW_LABELS, label_parents=[("LOC", "PER")]), T, r"label_parents"),
    ("parents int key", lambda: C(new_labels=NEW_LABELS, label_parents={1: "PER"}), T, r"label_parents"),
    ("parents string a=b=c", lambda: C(new_labels=NEW_LABELS, label_parents="LOC=PER=ORG"), V, r"subtype=parent"),
    ("parents string empty pair", lambda: C(new_labels=NEW_LABELS, label_parents="LOC="), V, r"subtype=parent"),
    ("parents lowercase parent", lambda: parents_model({"politician": "per"}), V, r"not a type of the source"),
    ("parents unknown child", lambda: parents_model({"writer": "PER"}), V, r"not one of the new types"),
    # ---- NeuralAdapterConfig values at their bounds
    ("config task_type", lambda: C(new_labels=NEW_LABELS, task_type="SEQ_CLS"), V, r"task_type"),
    ("config base model int", lambda: C(new_labels=NEW_LABELS, base_model_name_or_path=3), T, r"base_model_name"),
    ("config hidden huge", lambda: C(new_labels=NEW_LABELS, adapter_hidden_size=10**9), V, r"adapter_hidden_size"),
    ("config hidden negative", lambda: C(new_labels=NEW_LABELS, adapter_hidden_size=-4), V, r"adapter_hidden_size"),
    ("config lora_r huge", lambda: C(new_labels=NEW_LABELS, lora_r=10**6), V, r"lora_r"),
    ("config lora_r float", lambda: C(new_labels=NEW_LABELS, lora_r=8.0), T, r"lora_r"),
    ("config lora_alpha negative", lambda: C(new_labels=NEW_LABELS, lora_alpha=-16), V, r"lora_alpha"),
    ("config dropout 1", lambda: C(new_labels=NEW_LABELS, lora_dropout=1.0), V, r"lora_dropout"),
    ("config dropout negative", lambda: C(new_labels=NEW_LABELS, lora_dropout=-0.1), V, r"lora_dropout"),
    ("config dropout nan", lambda: C(new_labels=NEW_LABELS, lora_dropout=float("nan")), V, r"lora_dropout"),
    ("config temperature huge", lambda: C(new_labels=NEW_LABELS, distill_temperature=1e12), V, r"distill_temperature"),
    ("config temperature tiny", lambda: C(new_labels=NEW_LABELS, distill_temperature=1e-9), V, r"distill_temperature"),
    ("config temperature negative", lambda: C(new_labels=NEW_LABELS, distill_temperature=-2.0), V,
     r"distill_temperature"),
    ("config weight huge", lambda: C(new_labels=NEW_LABELS, distill_weight=1e300), V, r"distill_weight"),
    ("config weight nan", lambda: C(new_labels=NEW_LABELS, distill_weight=float("nan")), V, r"distill_weight"),
    ("config weight bool", lambda: C(new_labels=NEW_LABELS, distill_weight=True), T, r"distill_weight"),
    ("config top layers huge", lambda: get_adapter_model(source(), C(new_labels=NEW_LABELS, trainable="top",
                                                                     num_top_layers=10**6)), V, r"num_top_layers"),
    ("config top layers str", lambda: C(new_labels=NEW_LABELS, num_top_layers="1"), T, r"num_top_layers"),
    ("config bio None", lambda: C(new_labels=NEW_LABELS, bio_constraints=None), T, r"bio_constraints"),
    ("config target None", lambda: C(new_labels=NEW_LABELS, target=None), V, r"target"),
    ("config head upper", lambda: C(new_labels=NEW_LABELS, head="CRF"), V, r"head"),
    ("config old_labels tuple of ints", lambda: C(new_labels=NEW_LABELS, old_labels=[0, 1]), T, r"old_labels"),
    ("config metrics str", lambda: C(new_labels=NEW_LABELS, metrics="f1=0.9"), T, r"metrics"),
    # ---- rename_types / relabel_to_outside / with_label_order
    ("rename to O-prefixed", lambda: rename_types(types_data(), {"PER": "I-X"}), V, r"without B-/I-"),
    ("rename mapping list", lambda: rename_types(types_data(), [("PER", "X")]), T, r"mapping must be a dict"),
    ("rename unknown lowercase", lambda: rename_types(types_data(), {"per": "X"}), V, r"\['per'\]"),
    ("rename None target", lambda: rename_types(types_data(), {"PER": None}), V, r"not an entity type name"),
    ("rename tab in name", lambda: rename_types(types_data(), {"PER": "a\tb"}), V, r"no spaces"),
    ("rename plain list", lambda: rename_types([{"tokens": ["a"]}], {"PER": "X"}), T, r"datasets.Dataset"),
    ("rename int tags", lambda: rename_types(Dataset.from_dict({"tokens": [["a"]], "ner_tags": [[0]]}), {"A": "B"}),
     V, r"not a sequence of ClassLabel"),
    ("rename other column", lambda: rename_types(types_data(), {"PER": "X"}, column="tags"), V, r"'tags' column"),
    ("relabel O", lambda: relabel_to_outside(types_data(), "O"), V, r"outside tag"),
    ("relabel BIO label", lambda: relabel_to_outside(types_data(), "B-PER"), V, r"BIO label"),
    ("relabel without O", lambda: relabel_to_outside(types_data(("X", "B-PER", "I-PER", "B-ORG", "I-ORG")), "PER"),
     V, r"no 'O' tag"),
    ("label order duplicates", lambda: with_label_order(types_data(), ["O", "O", "B-PER", "I-PER", "B-ORG", "I-ORG"]),
     V, r"more than once"),
    ("label order a string", lambda: with_label_order(types_data(), "O B-PER"), T, r"labels must be a list"),
    ("label order dict data", lambda: with_label_order({"train": types_data()}, ["O"]), T, r"datasets.Dataset"),
    # ---- readers: CoNLL, JSON lines, CSV, plain text
    ("conll tags differ in case", lambda: conll_dataset(conll_file("John B-PER\n\nMary B-per\n")), V,
     r"differs only in case"),
    ("files tags differ in case", lambda: load_ner_files({"train": write("John B-PER\n", "a.txt"),
                                                         "test": write("Mary B-Per\n", "b.txt")}), V,
     r"b.txt: sentence 0.*differs only in case"),
    ("jsonl tags differ in case", lambda: load_ner_files({"train": write(
        '{"tokens": ["a"], "ner_tags": ["B-LOC"]}\n{"tokens": ["b"], "ner_tags": ["B-loc"]}\n', "c.jsonl")}), V,
     r"differs only in case"),
    ("jsonl types differ in case across prefixes", lambda: load_ner_files({"train": write(
        '{"tokens": ["John", "Smith"], "ner_tags": ["B-PER", "I-per"]}\n', "d.jsonl")}), V,
     r"'I-per' differs only in case from 'B-PER'.*two types"),  # was read as two types, PER and per
    ("jsonl number word", lambda: load_ner_files({"train": write('{"tokens": [7], "ner_tags": ["O"]}\n', "n.jsonl")}),
     V, r"line 1 has the word 7"),
    ("jsonl null word", lambda: load_ner_files({"train": write('{"tokens": [null], "ner_tags": ["O"]}\n', "z.jsonl")}),
     V, r"has the word None"),
    ("jsonl empty word", lambda: load_ner_files({"train": write('{"tokens": [""], "ner_tags": ["O"]}\n', "e.jsonl")}),
     V, r"has the word ''"),
    ("jsonl spaced word", lambda: load_ner_files({"train": write('{"tokens": [" a"], "ner_tags": ["O"]}\n', "s.jsonl")}),
     V, r"surrounding spaces"),
    ("jsonl bad line", lambda: load_ner_files({"train": write('{"tokens": ["a"], "ner_tags": ["O"]}\n{oops\n', "b.jsonl")}),
     V, r"b.jsonl:2: not valid JSON"),
    ("jsonl a list line", lambda: load_ner_files({"train": write('["a", "O"]\n', "l.jsonl")}), V, r"item 0 is a str, not an object"),
    ("jsonl tokens a string", lambda: load_ner_files({"train": write('{"tokens": "a b", "ner_tags": ["O", "O"]}\n',
                                                                     "t.jsonl")}), V, r"a str words"),
    ("jsonl only blank lines", lambda: load_ner_files({"train": write("\n\n", "blank.jsonl")}), V, r"holds no rows"),
    ("jsonl missing tags column", lambda: load_ner_files({"train": write('{"tokens": ["a"]}\n', "m.jsonl")}), V,
     r"line 1 has no column\(s\) \['ner_tags'\]"),
    ("json array broken", lambda: load_ner_files({"train": write('[{"tokens": ["a"]', "a.json")}), V, r"not valid JSON"),
    ("jsonl not utf-8", lambda: load_ner_files({"train": write(b'{"tokens": ["caf\xe9"]}\n', "u.jsonl")}), V,
     r"u.jsonl:1.*UTF-8"),
    ("csv no rows", lambda: load_ner_files({"train": write("tokens,ner_tags\n", "h.csv")}), V, r"no rows"),
    ("csv wrong header", lambda: load_ner_files({"train": write("words,tags\na,O\n", "w.csv")}), V,
     r"no column\(s\) \['tokens', 'ner_tags'\]"),
    ("csv extra cell", lambda: load_ner_files({"train": write("tokens,ner_tags\na,O,x\n", "x.csv")}), V,
     r"row 0 has 3 cells"),
    ("csv not utf-8", lambda: load_ner_files({"train": write(b"tokens,ner_tags\ncaf\xe9,O\n", "u.csv")}), V,
     r"u.csv:2.*UTF-8"),
    ("csv tags differ in case", lambda: load_ner_files({"train": write("tokens,ner_tags\na b,B-X B-x\n", "k.csv")}), V,
     r"differs only in case"),
    ("csv tag count", lambda: load_ner_files({"train": write("tokens,ner_tags\na b,O\n", "f.csv")}), V,
     r"row 0 has 2 words but 1 tags"),
    ("files a string", lambda: load_ner_files("train.txt"), T, r"dict of split -> path"),
    ("files a folder", lambda: load_ner_files({"train": Path(tempfile.mkdtemp())}), V, r"is a folder"),
    ("files csv and tsv mixed with json", lambda: load_ner_files({"train": write("a O\n", "a.csv"),
                                                                  "test": write("{}", "b.json")}), V, r"mix formats"),
    ("conll one column", lambda: read_conll(conll_file("John\n")), V, r"data.conll:1"),
    ("conll ragged", lambda: read_conll(conll_file("John NNP B-PER\nlives O\n")), V, r"data.conll:2"),
    ("conll missing file", lambda: read_conll("/no/such/file.conll"), F, r"does not exist"),
    ("conll a folder", lambda: read_conll(tempfile.mkdtemp()), V, r"is a folder"),
    ("conll tag column past the last", lambda: read_conll(conll_file("John B-PER\n"), tag_column=5), V,
     r"tag_column=5.*2 columns"),
    ("conll tags not BIO", lambda: conll_dataset(conll_file("John PER\n")), V, r"neither .O. nor .B-<type>."),
    ("conll labels lack a tag", lambda: conll_dataset(conll_file("John B-PER\n"), labels=["O"]), V, r"B-PER"),
    ("sentences CoNLL columns", lambda: read_sentences(write("John B-PER\nlives O\nin O\nParis B-LOC\n")), V,
     r"looks like labelled CoNLL columns"),
    ("sentences 4-column CoNLL", lambda: read_sentences(write("EU NNP B-NP B-ORG\nrejects VBZ B-VP O\n")), V,
     r"CoNLL columns"),
    ("sentences limit str", lambda: read_sentences(write("a b\n"), "5"), T, r"limit must be a whole number"),
    ("sentences limit negative", lambda: read_sentences(write("a b\n"), -1), V, r"limit=-1"),
    ("sentences a folder", lambda: read_sentences(tempfile.mkdtemp()), V, r"is a folder"),
    ("sentences missing", lambda: read_sentences("/no/such.txt"), F, r"does not exist"),
    ("sentences not utf-8", lambda: read_sentences(write(b"caf\xe9\n")), V, r"data.txt:1.*UTF-8"),
    ("csv rows delimiter long", lambda: read_csv_rows(write("a,b\n1,2\n"), ("a",), ",,", "fix", ""), V, r"one character"),
    ("csv rows tab-separated, read at commas", lambda: read_csv_rows(write("text\tlabel\na\tb\n", "x.csv"),
                                                                     ("text", "label"), ",", "fix", "use a tab"), V,
     r"no column\(s\) \['text', 'label'\] at delimiter ',', but its header splits into \['text', 'label'\] at '\\t': "
     r"use a tab"),  # was "its header is ['text\tlabel']; set --text_column / --label_column"
    ("NER csv that is tab-separated", lambda: load_ner_files({"train": write("tokens\tner_tags\nParis\tB-LOC\n",
                                                                             "train.csv")}), V,
     r"at '\\t': a file named .tsv is read tab-separated"),
    ("json records missing", lambda: read_json_records(write('{"a": 1}\n'), ("text",), "set --text_column"), V,
     r"set --text_column"),
    # ---- rehearsal
    ("rehearsal None", lambda: rehearse(None), T, r"list of sentences"),
    ("rehearsal bytes", lambda: rehearse(b"John lives here"), T, r"list of sentences"),
    ("rehearsal a dict", lambda: rehearse({"text": ["John lives here ."]}), T, r"list of sentences"),
    ("rehearsal a number", lambda: rehearse(5), T, r"list of sentences"),
    ("rehearsal words with ints", lambda: rehearse([["John", 3]]), T, r"sentence 0.*non-string"),
    ("rehearsal words with blank", lambda: rehearse([["John", ""]]), T, r"blank words"),
    ("rehearsal None sentence", lambda: rehearse(["John lives", None]), T, r"sentence 1 is a NoneType"),
    ("rehearsal other tokenizer", lambda: rehearse(["John lives here ."], tokenizer=other_tokenizer()), V,
     r"add_rehearsal: the tokenizer has 502 tokens"),
    ("rehearsal tokenizer None", lambda: rehearse(["John lives here ."], tokenizer=None), T, r"needs the model's tokenizer"),
    ("rehearsal twice", lambda: rehearse(["Mary too ."], train=rehearse(["John lives here ."])), V,
     r"already holds rehearsal rows"),
    ("rehearsal train a dict", lambda: rehearse(["John"], train={"input_ids": [[1]]}), T, r"datasets.Dataset"),
    ("rehearsal train empty", lambda: rehearse(["John"], train=toy_dataset(TOKENIZER).select([])), V, r"empty"),
    ("rehearsal train other ids", lambda: rehearse(["John"], train=toy_dataset(TOKENIZER).map(
        lambda r: {"input_ids": [10_000] * len(r["input_ids"])})), V, r"beyond this tokenizer"),
    ("rehearsal text in CoNLL columns", lambda: rehearse(["John B-PER", "lives O", "here O"]), V,
     r"rehearsal text looks like labelled CoNLL columns .*'John B-PER'"),
    ("unlabelled domain text in CoNLL columns", lambda: add_pseudo_labels(toy_dataset(TOKENIZER), [
        "Paris NNP B-LOC", "is VBZ O"], trained(), TOKENIZER), V, r"unlabelled domain text looks like labelled CoNLL"),
    ("pseudo-labelling batch 0", lambda: pseudo_label(trained(), ["John lives here ."], TOKENIZER, batch_size=0), V,
     r"batch_size=0"),
    ("BIO decoding of IO labels", lambda: bio_decoder({0: "O", 1: "I-PER", 2: "B-LOC", 3: "I-LOC"}), V,
     r"labels \['I-PER'\] have no B- tag"),
    ("new labels in lower-case BIO", lambda: get_adapter_model(source(), NeuralAdapterConfig(
        new_labels=["b-city", "i-city"])), V, r"e.g. \['B-city', 'I-city'\]"),
    # ---- consolidation
    ("consolidate with label smoothing", lambda: consolidate(args=TrainingArguments(
        tempfile.mkdtemp(), report_to=[], label_smoothing_factor=0.1)), V, r"label_smoothing_factor=0.1 would be "
     r"ignored"),  # was ignored without a word
    ("consolidate unlabelled bare string", lambda: consolidate(unlabelled="John met Mary ."), T,
     r"unlabelled text must be a list of sentences"),
    ("consolidate unlabelled ints", lambda: consolidate(unlabelled=[1, 2]), T, r"sentence 0 is a int"),
    ("consolidate unlabelled empty", lambda: consolidate(unlabelled=[]), V, r"unlabelled text is empty"),
    ("consolidate unlabelled blank", lambda: consolidate(unlabelled=["", " "]), V, r"unlabelled text is empty"),
    ("consolidate unlabelled CoNLL columns", lambda: consolidate(unlabelled=["John B-PER", "met O", "Mary B-PER"]), V,
     r"unlabelled text looks like labelled CoNLL columns"),
    ("consolidate unlabelled other ids", lambda: consolidate(unlabelled=Dataset.from_dict(
        {"input_ids": [[10_000, 5]], "attention_mask": [[1, 1]]})), V, r"beyond this tokenizer"),
    ("consolidate path weight str", lambda: consolidate(path_weight="0.5"), T, r"path_weight"),
    ("consolidate path weight nan", lambda: consolidate(path_weight=float("nan")), V, r"path_weight"),
    ("consolidate path weight 2", lambda: consolidate(path_weight=2.0), V, r"path_weight=2.0"),
    ("consolidate transition weight negative", lambda: consolidate(transition_weight=-1.0), V, r"transition_weight=-1.0"),
    ("consolidate transition weight str", lambda: consolidate(transition_weight="1"), T, r"transition_weight"),
    ("consolidate transition weight inf", lambda: consolidate(transition_weight=float("inf")), V, r"transition_weight"),
    ("consolidate args dict", lambda: consolidate(args={"num_train_epochs": 1}), T, r"TrainingArguments"),
    ("consolidate args lr 0", lambda: consolidate(args=TrainingArguments(
        output_dir=tempfile.mkdtemp(), learning_rate=0.0, report_to="none")), V, r"--learning_rate=0.0"),
    ("consolidate args label_names", lambda: consolidate(args=TrainingArguments(
        output_dir=tempfile.mkdtemp(), label_names=["tags"], report_to="none")), V,
     r"BertForTokenClassification reads its labels from \['labels'\]"),
    ("consolidate train untokenized", lambda: consolidate(train=Dataset.from_dict({"tokens": [["a"]]})), V,
     r"train_dataset lacks columns \['input_ids'\]"),
    ("consolidate train a list", lambda: consolidate(train=[{"input_ids": [1, 2]}]), T, r"datasets.Dataset"),
    ("consolidate other tokenizer", lambda: consolidate(tokenizer=other_tokenizer()), V,
     r"consolidate: the tokenizer has 502"),
    ("consolidate eval unlabelled", lambda: consolidate(eval_dataset=toy_dataset(TOKENIZER).remove_columns("labels")),
     V, r"eval_dataset lacks columns \['labels'\]"),
    ("consolidate untrained", lambda: consolidate(model(adapter="none")), V, r"has not been trained"),
    # ---- the metric
    ("metric new_types string", lambda: score([["B-LOC"]], [["B-LOC"]], new_types="LOC"), T, r"new_types must be a list"),
    ("metric new_types BIO", lambda: score([["B-LOC"]], [["B-LOC"]], new_types=["B-LOC"]), V, r"is a BIO label"),
    ("metric parents BIO", lambda: score([["B-PER"]], [["B-PER"]], type_parents={"politician": "B-PER"}), V,
     r"'B-PER' is a BIO label"),
    ("metric parents list", lambda: score([["B-PER"]], [["B-PER"]], type_parents=[("a", "PER")]), T, r"type_parents"),
    # {subtype: parent} wherever it enters (was "dictionary update sequence element #0 ...", at evaluation for Trainer)
    ("evaluate_tagger parents a string", lambda: evaluate_tagger(model(), toy_dataset(TOKENIZER), TOKENIZER,
        model().config.id2label, type_parents="politician=PER"), T, r"evaluate_tagger: type_parents must be a dict"),
    ("compute_metrics parents a list", lambda: entity_f1_compute_metrics(model().config.id2label, type_parents=[
        "politician", "PER"]), T, r"entity_f1_compute_metrics: type_parents must be a dict"),
    ("source_agreement parents a string", lambda: source_agreement(source(), model(), ["john lives"], TOKENIZER,
        label_parents="politician"), T, r"source_agreement: label_parents must be a dict"),
    ("read_conll tag column a string", lambda: read_conll(conll_file("John B-PER\n"), tag_column="1"), T,
     r"read_conll.tag_column must be a whole number"),
    # a model or tokenizer given as its name, or left out (was "'str' object has no attribute 'training'", "... 'pad'")
    ("evaluate_tagger model by name", lambda: evaluate_tagger("me/tagger", toy_dataset(TOKENIZER), TOKENIZER,
        model().config.id2label), T, r"predict_tags needs a loaded model; got str 'me/tagger'. Load it first"),
    ("predict_tags without tokenizer", lambda: predict_tags(model(), toy_dataset(TOKENIZER), None,
        model().config.id2label), T, r"predict_tags needs the model's tokenizer"),
    ("source_agreement source by name", lambda: source_agreement("me/tagger", model(), ["john"], TOKENIZER), T,
     r"source_agreement's source needs a loaded model"),
    ("add_pseudo_labels without tokenizer", lambda: add_pseudo_labels(toy_dataset(TOKENIZER), ["john"], trained(),
                                                                      None), T, r"add_pseudo_labels needs"),
    ("encode_texts tokenizer by name", lambda: encode_texts(sib(), "bert-base-uncased", ["john"]), T,
     r"encode_texts needs the model's tokenizer.*Load it first"),
    ("adapter from_pretrained with the source alone", lambda: NeuralAdapterModel.from_pretrained(source()), T,
     r"got a source model but no adapter"),  # was "Expected a folder path or a Hub repo id"
    ("sib backbone None", lambda: SIBForFewShotClassification.from_backbone_pretrained(None), T,
     r"the encoder must be a folder path or a Hub repo id"),  # was the Hub client's "couldn't connect"
    ("adapter_optimizer model by name", lambda: adapter_optimizer("me/tagger", 1e-3), T,
     r"adapter_optimizer needs a loaded model"),  # was "'str' object has no attribute 'named_parameters'"
    ("collator without tokenizer", lambda: AdapterDataCollator(None), T,
     r"AdapterDataCollator needs the model's tokenizer"),  # was accepted, and failed at the first batch
    ("word_tokenizer of None", lambda: word_tokenizer(None), T, r"word_tokenizer takes the tokenizer's folder"),
    ("sib from_pretrained None", lambda: SIBForFewShotClassification.from_pretrained(None), T,
     r"from_pretrained: must be a folder path or a Hub repo id"),  # was the Hub client's "couldn't connect"
    ("encode_texts model by name", lambda: encode_texts("me/sib", TOKENIZER, ["john"]), T,
     r"encode_texts needs a SIBForFewShotClassification"),  # a str has .encode: was "no attribute 'config'"
    ("warn_unlabelled_in_evaluation splits a list", lambda: warn_unlabelled_in_evaluation(["john"], [
        toy_dataset(TOKENIZER)]), T, r"splits must be a dict of split name"),
    ("meta-training grouped by length", lambda: MetaTrainingArguments(output_dir=tempfile.mkdtemp(),
        train_sampling_strategy="group_by_length"), V, r"meta-training draws whole episodes"),  # was "Can only
    # automatically infer lengths for datasets whose items are dictionaries with an 'input_ids' key" at train()
    ("rehearsal rows grouped by length", lambda: ExtensionTrainer(model=model(), args=TrainingArguments(
        tempfile.mkdtemp(), report_to=[], use_cpu=True, train_sampling_strategy="group_by_length"),
        train_dataset=rehearse(["mary visited acme"]), data_collator=AdapterDataCollator(TOKENIZER)), V,
     r"train_sampling_strategy='group_by_length' cannot order these rows"),  # its own sampler ignored it
    ("lora_target_modules empty", lambda: C(new_labels=NEW_LABELS, target="lora", lora_target_modules=[]), V,
     r"lora_target_modules=\[\] names no module"),  # fell back to the defaults, as if None
    ("align labels mapped row by row", lambda: Dataset.from_dict({"tokens": [["John", "lives"]], "ner_tags": [[1, 0]]}
        ).map(tokenize_and_align_labels, fn_kwargs={"tokenizer": TOKENIZER}), V,
     r"got one row .*batched=True"),  # was "'tokens' holds a sentence as one string ('John')"
    ("sib backbone loading option", lambda: SIBForFewShotClassification.from_backbone_pretrained(
        "sentence-transformers/all-MiniLM-L6-v2", dtype=torch.bfloat16), T,
     r"\['dtype'\], which are options of loading the encoder: load it yourself"),  # was "not SIBConfig settings"
    ("collator numpy batches", lambda: AdapterDataCollator(TOKENIZER, return_tensors="np"), V,
     r"AdapterDataCollator.return_tensors='np' is not supported"),  # numpy batches left source_logits unpadded
    ("collator padding typo", lambda: AdapterDataCollator(TOKENIZER, padding="longst"), V,
     r"AdapterDataCollator.padding='longst'"),  # was refused only at the first batch
    ("metric sample_weight", lambda: score([["B-PER"]], [["B-PER"]], sample_weight=[2.0]), V,
     r"sample_weight=\[2.0\]"),  # was "unexpected keyword argument 'sample_weight'" (seqeval's metric takes it)
    ("metric lengths differ", lambda: score([["O", "O"]], [["O"]]), V, r"2 predicted tags for 1 gold"),
    ("metric no sentences", lambda: score([], []), V, r"no sentences to score"),
    ("compute_metrics new_types string", lambda: entity_f1_compute_metrics({0: "O"}, "LOC"), T, r"new_types"),
    # ---- SIB at run time
    ("predict examples a list", lambda: predict([["john"], ["paris"], ["acme"]]), V, r"dict of label name"),
    ("predict one label", lambda: predict({"a": ["john"]}), V, r"at least 2 labels"),
    ("predict two labels on a fixed 3-way", lambda: predict({"a": ["john"], "b": ["paris"]}, grad_net="fixed"), V,
     r"exactly n_way=3 labels; got 2"),
    ("predict empty example list", lambda: predict({"a": [], "b": ["paris"], "c": ["acme"]}), V, r"\['a'\] have no"),
    ("predict bare string example", lambda: predict({"a": "john", "b": ["paris"], "c": ["acme"]}), V, r"\['a'\]"),
    ("predict int example", lambda: predict({"a": [3], "b": ["paris"], "c": ["acme"]}), T, r"examples of 'a'"),
    ("predict blank example", lambda: predict({"a": ["  "], "b": ["paris"], "c": ["acme"]}), V, r"examples of 'a'"),
    ("predict int label name", lambda: predict({1: ["john"], "b": ["paris"], "c": ["acme"]}), V, r"label 1"),
    ("predict labels differing only in case", lambda: predict({"Refund": ["john"], "refund ": ["paris"],
                                                               "c": ["acme"]}), V, r"'Refund' and 'refund ' differ only"),
    ("predict queries empty", lambda: predict(queries=[]), V, r"queries is empty"),
    ("predict query None", lambda: predict(queries=["london", None]), T, r"sentence 1 is a NoneType"),
    ("predict query blank", lambda: predict(queries=["london", ""]), V, r"sentence 1 is blank"),
    ("predict queries a set", lambda: predict(queries={"london"}), V, r"queries is a set, whose order is arbitrary"),
    ("predict queries dict keys", lambda: predict(queries={"london": 1}.keys()), V, r"queries is a set"),
    ("predict no tokenizer", lambda: predict(tokenizer=None), T, r"tokenizer"),
    ("predict with another model's tokenizer", lambda: predict(tokenizer=other_tokenizer()), V,
     r"outside the backbone's vocabulary"),
    ("predict steps str", lambda: predict(inner_steps="3"), T, r"inner_steps"),
    ("predict steps huge", lambda: predict(inner_steps=10**9), V, r"inner_steps"),
    ("forward steps negative", lambda: sib()(**episode(), inner_steps=-5), V, r"inner_steps=-5"),
    ("adapt labels floats", lambda: sib().adapt(torch.randn(3, 16), [0.0, 1.0, 2.0], torch.randn(2, 16)), V,
     r"support_labels"),
    # ---- SIBConfig and MetaTrainingArguments
    ("sib n_way huge", lambda: SIBConfig(n_way=10**6), V, r"n_way"),
    ("sib n_way negative", lambda: SIBConfig(n_way=-3), V, r"n_way"),
    ("sib steps huge", lambda: SIBConfig(inner_steps=10**6), V, r"inner_steps"),
    ("sib lr huge", lambda: SIBConfig(inner_lr=1e9), V, r"inner_lr"),
    ("sib lr negative", lambda: SIBConfig(inner_lr=-0.1), V, r"inner_lr"),
    ("sib scale 0", lambda: SIBConfig(init_scale=0.0), V, r"init_scale"),
    ("sib scale negative", lambda: SIBConfig(init_scale=-10.0), V, r"init_scale"),
    ("sib scale inf", lambda: SIBConfig(init_scale=float("inf")), V, r"init_scale"),
    ("sib multiplier huge", lambda: SIBConfig(grad_net_multiplier=10**5), V, r"grad_net_multiplier"),
    ("sib multiplier float", lambda: SIBConfig(grad_net_multiplier=8.0), T, r"grad_net_multiplier"),
    ("sib feature_dim 0", lambda: SIBConfig(feature_dim=0), V, r"feature_dim"),
    ("sib feature_dim str", lambda: SIBConfig(feature_dim="384"), T, r"feature_dim"),
    ("sib backbone path int", lambda: SIBConfig(backbone_name_or_path=3), T, r"backbone_name_or_path"),
    ("sib flag int", lambda: SIBConfig(freeze_backbone=1), T, r"freeze_backbone"),
    ("sib pooling None", lambda: SIBConfig(pooling=None), V, r"pooling"),
    ("sib given an episode setting", lambda: SIBConfig(k_shot=5), V, r"\['k_shot'\].*MetaTrainingArguments"),
    ("meta k_shot negative", lambda: MetaTrainingArguments(output_dir="o", k_shot=-1, report_to="none"), V, r"k_shot"),
    ("meta n_query str", lambda: MetaTrainingArguments(output_dir="o", n_query="15", report_to="none"), T, r"n_query"),
    ("meta train_episodes 0", lambda: MetaTrainingArguments(output_dir="o", train_episodes=0, report_to="none"), V,
     r"train_episodes"),
    ("meta eval episodes 0", lambda: MetaTrainingArguments(output_dir="o", num_eval_episodes=0, report_to="none"), V,
     r"num_eval_episodes"),
    ("meta eval seed negative", lambda: MetaTrainingArguments(output_dir="o", eval_seed=-1, report_to="none"), V,
     r"eval_seed"),
    ("meta temperature 0", lambda: MetaTrainingArguments(output_dir="o", soft_kmeans_temperature=0.0,
                                                         report_to="none"), V, r"soft_kmeans_temperature"),
    ("meta iterations negative", lambda: MetaTrainingArguments(output_dir="o", soft_kmeans_iterations=-1,
                                                              report_to="none"), V, r"soft_kmeans_iterations"),
    ("meta uneven nan", lambda: MetaTrainingArguments(output_dir="o", uneven_train_queries=float("nan"),
                                                      report_to="none"), V, r"uneven_train_queries"),
    ("meta lr 0", lambda: MetaTrainingArguments(output_dir="o", learning_rate=0.0, report_to="none"), V,
     r"--learning_rate"),
    ("meta batch 0", lambda: MetaTrainingArguments(output_dir="o", per_device_train_batch_size=0, report_to="none"),
     V, r"--per_device_train_batch_size"),
    # ---- samplers, alignment, caching, optimiser, scoring helpers
    ("sampler k_shot 0", lambda: EpisodeSampler([0, 0, 1, 1, 2, 2], [0, 1, 2], 3, 0, 1), V, r"k_shot=0"),
    ("sampler n_way str", lambda: EpisodeSampler([0, 0, 1, 1, 2, 2], [0, 1, 2], "3", 1, 1), T, r"n_way"),
    ("sampler labels str", lambda: EpisodeSampler("001122", [0, 1, 2], 3, 1, 1), T, r"not a string"),
    ("sampler seed negative", lambda: EpisodeSampler([0, 0, 1, 1, 2, 2], [0, 1, 2], 3, 1, 1, seed=-1), V, r"seed"),
    ("sampler labels as names", lambda: EpisodeSampler(["a", "a", "b", "b"], ["a", "b"], 2, 1, 1), V,
     r"integer class ids.*class_encode_column"),  # was "invalid literal for int()"
    ("sampler labels as floats", lambda: EpisodeSampler([0.0, 0.0, 1.0, 1.0], [0, 1], 2, 1, 1), V,
     r"integer class ids.*got float64"),
    ("episodes over NaN features", lambda: SequenceEpisodes(torch.full((6, 4), float("nan")), EpisodeSampler(
        [0, 0, 1, 1, 2, 2], [0, 1, 2], 3, 1, 1), 5), V, r"features hold NaN"),  # were NaN scores, argmax class 0
    ("token episodes over infinite features", lambda: TokenEpisodes([torch.randn(2, 4), torch.full((1, 4), float(
        "inf"))], []), V, r"features of sentence 1 hold NaN or infinite"),
    ("episode metrics of NaN scores", lambda: episode_compute_metrics("sequence")(EvalPrediction(
        predictions=np.full((2, 3, 2), np.nan), label_ids=np.zeros((2, 3), dtype=int))), V,
     r"query scores hold NaN"),  # were scored as class-0 guesses
    ("token ids from NaN scores", lambda: predicted_label_ids(torch.full((1, 4, 3), float("nan"))), V,
     r"scores hold NaN"),  # were all label 0 ('O'), scored as a tagger that finds nothing
    ("episode metrics of another level", lambda: episode_compute_metrics("word"), V, r"level='word'"),
    ("json tag ids without their names", lambda: load_ner_files({"train": write('{"tokens": ["John"], "ner_tags": [1]}',
                                                                               "ids.jsonl")}), V,
     r"non-string tags \[1\].*labels="),
    ("json tag id beyond the names", lambda: load_ner_files({"train": write('{"tokens": ["John"], "ner_tags": [7]}',
                                                                            "ids.jsonl")}, labels=["O", "B-PER"]), V,
     r"tag id 7, but labels has 2 names"),
    ("load_conll given a file path as a string", lambda: load_conll(str(conll_file("John B-PER\n"))), V,
     r"is a file, but a string is read as a Hub dataset id.*\{'train'"),  # was "Couldn't find any data file at"
    ("token sampler of a type the data lacks", lambda: TokenEpisodeSampler([["person", "O"], ["location"]],
                                                                           ["person", "location", "weapon"], 2, 1),
     V, r"types \['weapon'\] occur in none"),  # its episodes were never drawn, or every draw failed
    ("token sampler of a type listed twice", lambda: TokenEpisodeSampler([["person", "O"], ["location"]],
                                                                         ["person", "person", "location"], 2, 1),
     V, r"types \['person'\] are listed more than once"),
    ("token sampler of tags as strings", lambda: TokenEpisodeSampler(["person O", "location"], ["person", "location"],
                                                                     2, 1), V, r"sentence 0 is 'person O'"),
    ("few-nerd episode listing a type twice", lambda: read_fewnerd_episodes(write(json.dumps({
        "support": {"word": [["John"]], "label": [["person"]]}, "query": {"word": [["Paris"]], "label": [["O"]]},
        "types": ["person", "person"]}), "twice.jsonl")), V, r"lists the types \['person'\] more than once"),
    ("few-nerd episode without support", lambda: read_fewnerd_episodes(write(json.dumps({
        "support": {"word": [], "label": []}, "query": {"word": [["Paris"]], "label": [["person"]]},
        "types": ["person"]}), "empty.jsonl")), V, r"support set holds no sentence"),
    ("top layers of an encoder without a layer stack", lambda: get_adapter_model(bilstm(), C(
        new_labels=NEW_LABELS, trainable="top")), V, r"has no stack of layers"),  # its encoder silently trained nothing
    ("words tokenized unlike running text", lambda: tokenize_and_align_labels(
        {"tokens": [["John", "lives"]], "ner_tags": [[1, 0]]}, build_byte_level_tokenizer()), V,
     r"encodes words given one by one unlike .*add_prefix_space=True"),  # trained on subwords the pipeline never gives
    ("word features of words tokenized unlike running text", lambda: encode_words(
        sib(level="token"), build_byte_level_tokenizer(), [["John", "lives"]]), V, r"encode_words: the tokenizer"),
    ("json words and tags from one column", lambda: load_ner_files({"train": write(
        '{"tokens": ["John"], "ner_tags": ["B-PER"]}', "one.jsonl")}, tokens_column="ner_tags"), V,
     r"'ner_tags' is named for two roles"),  # the tags were read as the sentence's words
    ("trainer with neither a collator nor a tokenizer", lambda: ExtensionTrainer(
        model=trained(), args=TrainingArguments(output_dir=tempfile.mkdtemp(), report_to="none"),
        train_dataset=toy_dataset(TOKENIZER)), V, r"nothing pads them"),  # was "expected sequence of length 12"
    ("trainer with streamed rehearsal rows", lambda: ExtensionTrainer(
        model=trained(), args=TrainingArguments(output_dir=tempfile.mkdtemp(), report_to="none", max_steps=2),
        train_dataset=rehearse(["john lives in paris"]).to_iterable_dataset(), processing_class=TOKENIZER), V,
     r"needs a map-style training set"),  # its rehearsal rows passed once per epoch, rehearsal_ratio unread
    ("align fewer word labels than words", lambda: align_word_labels([None, 0, 1, 2, None], [1, 2]), V,
     r"found word 2, but there are only 2 word labels"),  # was an IndexError
    ("first rows one number for every split", lambda: first_rows(DatasetDict(train=toy_dataset(TOKENIZER)), 100), T,
     r"limits must be a dict of split -> row count"),  # was "'int' object has no attribute 'items'"
    ("source_labels of a model id", lambda: source_labels("dslim/bert-base-NER"), T,
     r"source_labels takes a token classifier, its config"),
    ("first rows limit 0", lambda: first_rows(DatasetDict(train=toy_dataset(TOKENIZER)), {"train": 0}), V,
     r"limits\['train'\]=0"),  # kept every row
    ("first rows limit negative", lambda: first_rows(DatasetDict(train=toy_dataset(TOKENIZER)), {"train": -1}), V,
     r"limits\['train'\]=-1"),  # kept no row
    ("sampler class listed twice", lambda: EpisodeSampler([0, 0, 1, 1, 2, 2], [0, 1, 1], 2, 1, 1), V,
     r"classes \[1\] are listed more than once"),
    ("episodes count negative", lambda: SequenceEpisodes(torch.randn(6, 4), EpisodeSampler([0, 0, 1, 1, 2, 2], [0, 1, 2],
                                                                                           3, 1, 1), -5), V,
     r"num_episodes=-5"),
    ("episodes fewer features than labels", lambda: SequenceEpisodes(torch.randn(3, 4), EpisodeSampler(
        [0, 0, 1, 1, 2, 2], [0, 1, 2], 3, 1, 1), 5), V, r"draws example 5, but there are only 3 examples"),
    ("episodes features not a matrix", lambda: SequenceEpisodes(torch.randn(6), EpisodeSampler(
        [0, 0, 1, 1, 2, 2], [0, 1, 2], 3, 1, 1), 5), V, r"\[examples, dim\] tensor"),
    ("text episodes fewer texts than labels", lambda: TextEpisodes(["a", "b"], TOKENIZER, EpisodeSampler(
        [0, 0, 1, 1, 2, 2], [0, 1, 2], 3, 1, 1), 5), V, r"only 2 examples"),
    ("re-sampled episodes over too few examples", lambda: SequenceEpisodes(torch.randn(6, 4), EpisodeSampler(
        [0, 0, 1, 1, 2, 2], [0, 1, 2], 3, 1, 1), 5).with_sampler(EpisodeSampler([0, 0, 1, 1, 2, 2, 3, 3], [0, 1, 2, 3],
                                                                                 3, 1, 1), 5), V, r"only 6 examples"),
    ("collate no episodes", lambda: collate_episodes([]), V, r"no episodes"),
    ("collate mixed feature sizes", lambda: collate_episodes([episode(), episode(
        support_features=torch.randn(1, 3, 8), query_features=torch.randn(1, 6, 8))]), V, r"same encoder"),
    ("collate a part missing", lambda: collate_episodes([episode(), {k: v for k, v in episode().items()
                                                                    if k != "query_labels"}]), V, r"'query_labels'"),
    ("sib all-zero query features", lambda: sib().eval()(**episode(query_features=torch.zeros(1, 6, 16))), V,
     r"6 query example\(s\) have all-zero features"),
    ("sib all-zero support row", lambda: sib().eval()(**episode(support_features=torch.cat(
        [torch.randn(1, 2, 16), torch.zeros(1, 1, 16)], 1))), V, r"1 support example\(s\) .*episode 0, row 2"),
    ("predict one text under two labels", lambda: predict({"a": ["john"], "b": ["paris", " john"], "c": ["acme"]}), V,
     r"'john' for \['a', 'b'\]"),
    ("token sampler k 0", lambda: TokenEpisodeSampler([["x", "y"]] * 5, ["x", "y"], 2, 0), V, r"k_shot=0"),
    ("token sampler types str", lambda: TokenEpisodeSampler([["x"]], "xy", 2, 1), T, r"types must be a list"),
    ("align max_length 0", lambda: tokenize_and_align_labels({"tokens": [["a"]], "ner_tags": [[0]]}, TOKENIZER,
                                                             max_length=0), V, r"max_length=0"),
    ("align max_length only specials", lambda: tokenize_and_align_labels({"tokens": [["a"]], "ner_tags": [[0]]},
                                                                         TOKENIZER, max_length=2), V, r"max_length=2"),
    ("align max_length float", lambda: tokenize_and_align_labels({"tokens": [["a"]], "ner_tags": [[0]]}, TOKENIZER,
                                                                 max_length=12.5), T, r"max_length"),
    ("cache batch 0", lambda: add_source_logits(toy_dataset(TOKENIZER), model(), TOKENIZER, batch_size=0), V,
     r"batch_size=0"),
    ("cache untokenized", lambda: add_source_logits(Dataset.from_dict({"tokens": [["a"]]}), model(), TOKENIZER), V,
     r"lacks columns \['input_ids'\]"),
    ("cache other tokenizer", lambda: add_source_logits(toy_dataset(TOKENIZER), model(), other_tokenizer()), V,
     r"add_source_logits: the tokenizer has 502"),
    ("optimizer lr negative", lambda: adapter_optimizer(model(), -1.0, 1e-3), V, r"learning_rate=-1.0"),
    ("optimizer head lr nan", lambda: adapter_optimizer(model(), 1e-4, float("nan")), V, r"head_learning_rate=nan"),
    ("optimizer weight decay negative", lambda: adapter_optimizer(model(), 1e-4, weight_decay=-0.1), V,
     r"weight_decay"),
    ("forgotten max_drop negative", lambda: forgotten_types({"PER_f1": 1.0, "PER_support": 3}, {"PER_f1": 1.0},
                                                            max_drop=-1), V, r"max_drop=-1"),
    ("forgotten list", lambda: forgotten_types([1], {}), T, r"dicts of scores"),
    ("predict_tags batch 0", lambda: predict_tags(model(), toy_dataset(TOKENIZER), TOKENIZER,
                                                  model().config.id2label, batch_size=0), V, r"batch_size=0"),
    ("predict_tags unknown decoding", lambda: predict_tags(model(), toy_dataset(TOKENIZER), TOKENIZER,
                                                           model().config.id2label, decoding="viterbi"), V,
     r"decoding='viterbi' is not supported; choose one of \('argmax', 'bio'\)"),
    ("bio decoding of non-BIO labels", lambda: bio_decoder({0: "positive", 1: "negative"}), V,
     r"BIO decoding needs BIO labels.*decoding='argmax', or the plain pipeline"),
    ("evaluate without labels", lambda: evaluate_tagger(model(), toy_dataset(TOKENIZER).remove_columns("labels"),
                                                        TOKENIZER, model().config.id2label), V, r"lacks columns"),
    ("compute_metrics id2label list", lambda: entity_f1_compute_metrics(["O"]), T, r"id2label"),
    ("conll labels a string", lambda: conll_dataset(conll_file("John B-PER\n"), labels="O B-PER"), T,
     r"labels must be a list"),
    ("load_conll only None", lambda: load_conll({"train": None}), V, r"no files given"),
    ("load_conll a list", lambda: load_conll(["a.txt"]), T, r"dict of split"),
    ("source a sequence classifier", lambda: get_adapter_model(
        AutoModelForSequenceClassification.from_config(source().config), C(new_labels=NEW_LABELS)), T,
     r"not a token classifier"),
    ("sib NaN support at eval", lambda: sib().eval()(**episode(support_features=torch.full((1, 3, 16), float("nan")))),
     V, r"NaN"),
    ("sib inf query at eval", lambda: sib().eval()(**episode(query_features=torch.full((1, 6, 16), float("inf")))),
     V, r"NaN or infinite"),
    ("sib adapt NaN", lambda: sib().adapt(torch.full((3, 16), float("nan")), [0, 1, 2], torch.randn(2, 16)), V,
     r"NaN"),
    # ---- alignment
    ("align tokens tags differ", lambda: tokenize_and_align_labels({"tokens": [["a", "b"]], "ner_tags": [[0]]},
                                                                   TOKENIZER), V, r"2 tokens but 1 tags"),
    # ---- session 29 probe: model inputs, collation, metrics, CRF, pipeline, saving (silent or obscure before)
    ("adapter NaN inputs_embeds", lambda: model()(inputs_embeds=torch.full((1, 3, 32), float("nan"))), V,
     r"inputs_embeds hold NaN"),
    ("adapter NaN source_logits", lambda: model()(input_ids=torch.tensor([[2, 5, 3]]),
                                                  source_logits=torch.full((1, 3, 7), float("nan"))), V,
     r"source_logits hold NaN"),
    ("adapter inputs_embeds of another width", lambda: model()(inputs_embeds=torch.randn(1, 3, 16)), V,
     r"inputs_embeds must be a float tensor \[batch, length, 32\]"),
    ("adapter empty batch", lambda: model()(input_ids=torch.zeros(0, 4, dtype=torch.long)), V, r"batch size 0"),
    ("adapter token_type_ids beyond", lambda: model()(input_ids=torch.tensor([[2, 5, 3]]),
                                                      token_type_ids=torch.full((1, 3), 5)), V,
     r"token_type_ids must lie in \[0, 2\)"),
    ("collator empty batch", lambda: AdapterDataCollator(TOKENIZER)([]), V, r"empty batch"),
    ("collator labels on some rows", lambda: AdapterDataCollator(TOKENIZER)(
        [{"input_ids": [2, 5, 3], "labels": [-100, 1, -100]}, {"input_ids": [2, 3]}]), V, r"Example 1 .* no 'labels'"),
    ("collator labels shorter than tokens", lambda: AdapterDataCollator(TOKENIZER)(
        [{"input_ids": [2, 5, 3], "labels": [1]}]), V, r"1 labels for 3 input_ids"),
    ("metric non-IOB2 tag", lambda: score([["S-PER"]], [["B-PER"]]), V, r"'S-PER' is not an IOB2 tag"),
    ("metric lower-case prefix", lambda: score([["O"]], [["b-per"]]), V, r"references, sentence 0: 'b-per'"),
    ("compute_metrics NaN scores", lambda: entity_f1_compute_metrics(model().config.id2label)(
        (np.full((1, 2, 9), np.nan), np.array([[0, 1]]))), V, r"NaN or infinite"),
    ("compute_metrics scores of another label count", lambda: entity_f1_compute_metrics(model().config.id2label)(
        (np.zeros((1, 2, 7)), np.array([[0, 1]]))), V, r"scores 7 labels but id2label names 9"),
    ("compute_metrics ids beyond id2label", lambda: entity_f1_compute_metrics(model().config.id2label)(
        (np.array([[0, 12]]), np.array([[0, 1]]))), V, r"label ids \[12\]"),
    ("compute_metrics misaligned", lambda: entity_f1_compute_metrics(model().config.id2label)(
        (np.zeros((1, 3, 9)), np.array([[0, 1]]))), V, r"do not line up"),
    ("bio_invalid_spans a flat list", lambda: bio_invalid_spans(["B-PER", "I-PER"]), T, r"sentence 0 is 'B-PER'"),
    ("forgotten_types NaN after", lambda: forgotten_types({"PER_f1": 0.9, "PER_support": 3}, {"PER_f1": float("nan")}),
     V, r"after\['PER_f1'\] is nan"),
    ("crf marginals of NaN", lambda: CRF(3).marginals(torch.full((1, 2, 3), float("nan"))), V, r"NaN or inf"),
    ("crf labels listed twice", lambda: CRF.for_labels(["O", "B-X", "B-X"]), V, r"\['B-X'\] appear more than once"),
    ("entity_types of a string", lambda: entity_types("B-LOC"), T, r"takes the labels as a list of strings"),
    ("entity_types of None", lambda: entity_types(None), T, r"takes the labels as a list of strings"),
    ("bilstm config dropout 1", lambda: BiLSTMCRFConfig(vocab_size=10, dropout=1.0), V, r"dropout=1.0"),
    ("bilstm word id beyond vocabulary", lambda: bilstm()(input_ids=torch.tensor([[1, 50]])), V,
     r"outside the word tokenizer's vocabulary \[0, 10\)"),
    ("pipeline unknown aggregation", lambda: BIOTokenClassificationPipeline(
        model=model(), tokenizer=TOKENIZER, aggregation_strategy="firstt"), V, r"'firstt' is not one of"),
    ("pipeline text beyond the model's positions", lambda: BIOTokenClassificationPipeline(
        model=model(), tokenizer=TOKENIZER)("john lives in paris . " * 120), V, r"set tokenizer.model_max_length = 512"),
    ("save_pretrained onto a file", lambda: model().save_pretrained(write("x", "weights.bin")), V,
     r"is a file, not a folder"),
    ("sib save_pretrained onto a file", lambda: sib().save_pretrained(write("x", "sib.bin")), V,
     r"is a file, not a folder"),
    ("push_to_hub private as a string", lambda: model().push_to_hub("me/x", private="yes"), T,
     r"private must be true or false"),
    ("linear-head extension with NaN weights", lambda: nan_tagger()(input_ids=torch.tensor([[2, 5, 3]])), V,
     r"extended model's scores hold NaN"),
    ("predict_tags with NaN weights", lambda: predict_tags(nan_tagger(), toy_dataset(TOKENIZER), TOKENIZER,
                                                           model().config.id2label), V, r"extended model's scores hold NaN"),
    ("predict_tags with another model's labels", lambda: predict_tags(model(), toy_dataset(TOKENIZER), TOKENIZER,
                                                                      {0: "O", 1: "B-PER", 2: "I-PER"}), V,
     r"scores 9 labels but id2label names 3"),
    ("predict_tags of data in another label order", lambda: predict_tags(source(), toy_dataset(TOKENIZER), TOKENIZER,
                                                                         source().config.id2label), V,
     r"gold label ids \[7, 8\] are not in id2label"),
    ("meta --train_file labels differing in case", lambda: SCRIPTS["meta"](
        ["--train_file", str(write("text,label\nI want a refund,refund\nmoney back,Refund \nmy card,card\n", "t.csv")),
         "--output_dir", tempfile.mkdtemp(prefix="bad_cli_")]), V, r"'Refund ' and row 0 'refund': they differ only"),
    ("add_source_logits with the plain source", lambda: add_source_logits(toy_dataset(TOKENIZER), source(), TOKENIZER),
     T, r"add_source_logits needs the extended model"),  # was AttributeError: no attribute 'source'
    ("adapter_optimizer over a frozen model", lambda: adapter_optimizer(source().requires_grad_(False), 1e-3), V,
     r"has no trainable parameters"),  # was "optimizer got an empty parameter list"
    ("parse_pairs with a key twice", lambda: parse_pairs("person=PER,person=LOC", "--label_map", "from=to", "a=B"), V,
     r"\['person'\] given more than once"),  # the last value won without a word
    ("parse_pairs of None", lambda: parse_pairs(None, "--label_map", "from=to", "a=B"), T,
     r"--label_map takes from=to pairs as one string"),
    ("label_parents with a subtype twice", lambda: C(new_labels=NEW_LABELS, label_parents="LOC=PER,LOC=ORG"), V,
     r"\['LOC'\] given more than once"),
    ("entity_types of label ids", lambda: entity_types([0, 1, 2]), T, r"entity_types takes label names"),
    ("CRF called as pytorch-crf's", lambda: CRF(3)(torch.zeros(1, 2, 3), torch.zeros(1, 2, dtype=torch.long)), T,
     r"use crf.neg_log_likelihood"),  # was NotImplementedError: missing the required "forward" function
    ("CRF loss of IOB1 gold", lambda: CRF.for_labels(["O", "B-PER", "I-PER"]).neg_log_likelihood(
        torch.zeros(1, 3, 3), torch.tensor([[0, 2, 2]])), V, r"'O' 'I-PER' at token 1"),  # was a loss of ~1e4
    ("extended model trained on IOB1 gold", lambda: model().train()(
        input_ids=torch.tensor([[2, 10, 11, 3]]), attention_mask=torch.ones(1, 4, dtype=torch.long),
        labels=torch.tensor([[-100, 0, 2, -100]])), V, r"fit no path the CRF allows"),
    ("ids_to_tags of scores", lambda: ids_to_tags(np.zeros((1, 2, 3)), np.array([[0, 0]]), {0: "O"}), V,
     r"do not line up"),  # was "only 0-dimensional arrays can be converted"
    ("ids_to_tags of another batch's labels", lambda: ids_to_tags(np.zeros((2, 3), int), np.zeros((2, 4), int),
                                                                  {0: "O"}), V, r"do not line up"),  # was IndexError
    ("source_agreement with the models swapped", lambda: source_agreement(model(), source(), ["john lives"],
                                                                           TOKENIZER), V,
     r"not an extension of this source"),  # scored the source against the extension, without a word
    ("sib adapt with label names", lambda: sib().adapt(["john", "paris"], ["a", "b"], ["london"], tokenizer=TOKENIZER),
     V, r"got the name 'a'.*predict_labels"),  # was "too many dimensions 'str'"
    ("sib adapt with one class", lambda: sib().adapt(["john", "paris"], [0, 0], ["london"], tokenizer=TOKENIZER), V,
     r"one class only"),  # every query got class 0
    ("to_iob2 of one string", lambda: to_iob2("I-PER I-PER"), T, r"to_iob2.tags must be a list"),  # was characters
    ("to_iob2 of IOBES tags", lambda: to_iob2(["S-PER", "O"]), V, r"\['S-PER'\].*convert them with from_iobes"),
    ("from_iobes of lower-case tags", lambda: from_iobes(["s-per", "O"]), V, r"in capitals"),  # returned unchanged
    ("meta args label smoothing", lambda: MetaTrainingArguments(output_dir=tempfile.mkdtemp(), report_to="none",
                                                                 label_smoothing_factor=0.1), V,
     r"label_smoothing_factor=0.1 would be ignored"),  # the episode loss never used it
    ("meta args batch_eval_metrics", lambda: MetaTrainingArguments(output_dir=tempfile.mkdtemp(), report_to="none",
                                                                   batch_eval_metrics=True), V,
     r"batch_eval_metrics=True is not supported"),  # was transformers' "must take a compute_result argument"
    ("BIO new labels on an IO source", lambda: get_adapter_model(
        tiny_source("bert", TOKENIZER.vocab_size, labels=["O", "PER", "ORG"]), C(new_labels=["B-LOC", "I-LOC"])), V,
     r"are BIO tags, but the source's labels are not.*\['LOC'\]"),  # mixed one label set's schemes
    ("a new type that is an old one in other case", lambda: get_adapter_model(source(), C(new_labels=["B-per", "I-per"])),
     V, r"\['per'\] differ from the source's \['PER'\] only in case"),
    ("a label on a padded position", lambda: model(head="linear").train()(
        input_ids=torch.tensor([[2, 10, 11, 3]]), attention_mask=torch.tensor([[1, 1, 1, 0]]),
        labels=torch.tensor([[-100, 1, 2, 0]])), V, r"position 3, which its attention_mask marks as padding"),
    # the linear head counted it and the CRF left it out: the heads learned from different data
    ("save_consolidated with a tokenizer name", lambda: __import__("hf_adapter_ext").save_consolidated(
        consolidate(), tempfile.mkdtemp(), tokenizer="bert-base-cased"), T, r"tokenizer is the tokenizer itself"),
    ("token-level sib given texts", lambda: sib(level="token").predict_labels({"a": ["john"], "b": ["paris"]},
                                                                              ["london"], TOKENIZER), V,
     r"token-level .* whole texts cannot be classified"),  # texts were mean-pooled: sentences, not words
    ("meta-training on label names", lambda: __import__("hf_adapter_ext").SemiSupervisedMetaTrainer(
        model=sib(), args=meta_args(shape_top_layers=0), processing_class=TOKENIZER, train_dataset=Dataset.from_dict(
            {"text": ["john", "mary", "paris", "london", "acme", "union"], "label": ["p", "p", "c", "c", "o", "o"]})
    ).train(), V, r"holds label names \('p'\).*class_encode_column\('label'\)"),  # was "invalid literal for int()"
    ("meta-training on rows without a label", lambda: __import__("hf_adapter_ext").SemiSupervisedMetaTrainer(
        model=sib(), args=meta_args(shape_top_layers=0), processing_class=TOKENIZER, train_dataset=Dataset.from_dict(
            {"text": ["john", "mary", "paris", "london", "acme", "union"], "label": [0, 0, 1, None, 2, 2]})
    ).train(), V, r"no label in row 3"),  # was "'<' not supported between 'NoneType' and 'int'"
    ("few_tk_paths with an unknown setting", lambda: __import__("hf_adapter_ext.data", fromlist=["x"]).few_tk_paths(
        few_tk_folder(), "inner"), V, r"no inner/train.txt in .*\['inter'\]"),  # its paths went on to fail one by one
    ("encode_texts with a bare backbone", lambda: encode_texts(source().bert, TOKENIZER, ["a"]), T,
     r"needs a SIBForFewShotClassification"),
    ("encode_texts batch_size 0", lambda: encode_texts(sib(), TOKENIZER, ["a"], batch_size=0), V,
     r"encode_texts.batch_size=0 is out of range"),  # was "range() arg 3 must not be zero"
    ("encode_texts max_length 1", lambda: encode_texts(sib(), TOKENIZER, ["a b"], max_length=1), V,
     r"max_length=1 is out of range: it must be >= 3 \(the special tokens"),  # every text read as [CLS] alone
    ("encode_words max_length 2", lambda: encode_words(sib(level="token"), TOKENIZER, [["a"]], max_length=2), V,
     r"encode_words.max_length=2 is out of range"),
    ("a gzipped CoNLL file", lambda: read_conll(write(__import__("gzip").compress(b"EU B-ORG\n"), "train.txt.gz")), V,
     r"train.txt.gz is a gzip archive, not text; unpack it first"),  # was "not valid UTF-8 ... iconv -f latin1"
    ("metric mode lenient", lambda: score([["B-PER"]], [["B-PER"]], mode="lenient"), V,
     r"mode='lenient': this metric scores exact spans under strict IOB2"),
    ("metric scheme IOBES", lambda: score([["S-PER"]], [["S-PER"]], scheme="IOBES"), V, r"from_iobes"),
    ("metric zero_division 1", lambda: score([["O"]], [["O"]], zero_division=1), V, r"zero_division=1"),
    ("metric references with -100", lambda: score([["B-PER", "O"]], [["B-PER", -100]]), V,
     r"mixes tags with other values.*drop the positions labelled -100"),  # was '"B-PER"' is not an IOB2 tag
    # ---- a model expected, something else given: refused naming what the folder holds (was the Hub client's
    # "Repo id must use alphanumeric chars ... ''", from transformers reading the folder as a PEFT adapter)
    ("SIB in transformers' text-classification pipeline", lambda: pipeline(
        "text-classification", model=sib(), tokenizer=build_tokenizer())("John lives in Paris"), V,
     r"not a plain batch of input_ids.*Call model.predict_labels"),  # was "forward() got an unexpected 'input_ids'"
    ("SIB called without support_labels", lambda: sib()(query_features=torch.ones(1, 2, 16)), V,
     r"SIB's forward needs support_labels"),
    ("SIB from_pretrained a missing folder", lambda: SIBForFewShotClassification.from_pretrained("./no/such/sib"), V,
     r"from_pretrained: ./no/such/sib is not an existing folder"),
    ("SIB from_pretrained an adapter folder", lambda: SIBForFewShotClassification.from_pretrained(adapter_folder()), V,
     r"holds a neural adapter \(adapter_config.json\), not a model. An extended tagger loads with"),
    ("SIB from_backbone_pretrained a missing folder", lambda: SIBForFewShotClassification.from_backbone_pretrained(
        "./no/such/encoder"), V, r"the encoder ./no/such/encoder is not an existing folder"),
    ("extension loaded with its own folder as the source", lambda: (lambda folder: NeuralAdapterModel.from_pretrained(
        str(folder), folder))(adapter_folder()), V, r"The source model: .* holds a neural adapter.*source model .* first"),
    ("extend_ner given an extension's folder to extend", lambda: run("extend_ner", "--model_name_or_path",
                                                                     str(adapter_folder())), V,
     r"--model_name_or_path .* holds a neural adapter"),
    ("adapt with a batch of episodes", lambda: sib().adapt(torch.randn(1, 4, 16), [0, 0, 1, 1], torch.randn(1, 6, 16)),
     V, r"adapt\(\) takes one task: support feature rows \[examples, 16\]; got a tensor of shape \(1, 4, 16\)"),
    ("ExtensionTrainer choosing on F1 without a metric", lambda: ExtensionTrainer(
        model=model().train(), args=TrainingArguments(tempfile.mkdtemp(), report_to=[], **extension_training_defaults()),
        train_dataset=toy_dataset(TOKENIZER), eval_dataset=toy_dataset(TOKENIZER), processing_class=TOKENIZER), V,
     r"metric_for_best_model='overall_f1' needs a compute_metrics.*entity_f1_compute_metrics"),  # was a KeyError
    # at the first evaluation
    ("self_train before any training", lambda: self_trainer(model()).self_train(["John lives in Paris ."], TOKENIZER),
     V, r"continues a trained run.*trainer.train\(\) first"),  # tagged with the untrained model's noise
    ("self_train without validation data", lambda: self_trainer(trained(), with_validation=False).self_train(
        ["John lives in Paris ."], TOKENIZER), V, r"give the ExtensionTrainer an eval_dataset"),  # was Trainer's
    # "evaluation requires an eval_dataset"
    ("self_train without a tokenizer", lambda: self_trainer(trained()).self_train(["John lives in Paris ."], None), T,
     r"self_train needs the model's tokenizer"),  # was "object of type 'NoneType' has no len()"
    ("shape_encoder pooling 'max'", lambda: shape_encoder(sib().backbone, TOKENIZER, ["john", "paris"], [0, 1],
                                                          pooling="max"), V, r"pooling"),  # was mean pooling
    ("NEFTune with a frozen target", lambda: ExtensionTrainer(model=model(target="frozen"), args=TrainingArguments(
        tempfile.mkdtemp(), report_to=[], neftune_noise_alpha=5.0), train_dataset=toy_dataset(TOKENIZER),
        data_collator=AdapterDataCollator(TOKENIZER)), V, r"target='frozen'.*NEFTune adds no noise"),  # did nothing
    # run_ner.py's single .json / .yaml argument of options
    ("CoNLL file whose first word holds a space", lambda: conll_dataset(write("New York\tB-LOC\nis\tO\n")), V,
     r"line 1 \('New York\\tB-LOC'\) set the count wrongly"),  # the error blamed line 2 alone
    ("sentences one word per line", lambda: read_sentences(write("\n".join(["John", "lives", "in", "Paris", ".", "",
                                                                               "Mary", "sings", "songs", ".", "Now"]))),
     V, r"lines are a single word.*one sentence per line"),  # CoNLL words without tags: each word was a sentence
    ("sentences jsonl without text", lambda: read_sentences(write('{"sentence": "John lives ."}\n', "t.jsonl")), V,
     r"no 'text' string or 'tokens' list.*\['sentence'\]"),
    ("sentences csv without text column", lambda: read_sentences(write("sentence\nJohn lives .\n", "t.csv")), V,
     r"no column\(s\) \['text'\].*name the column of sentences 'text'"),
    ("source_agreement with another tagger of the same labels", lambda: source_agreement(
        tiny_source("bert", TOKENIZER.vocab_size, seed=1), model(), ["John lives in Paris ."], TOKENIZER), V, r"weights of source_agreement's source differ"),
    # was the agreement with that other tagger, reported as the extension's forgetting
    ("save_consolidated with another model's tokenizer", lambda: save_consolidated(
        consolidate(args=TrainingArguments(tempfile.mkdtemp(), max_steps=1, report_to=[], save_strategy="no")),
        tempfile.mkdtemp(), other_tokenizer()), V, r"save_consolidated: the tokenizer has 502 tokens"),
    # was saved beside the model: the folder loaded with a tokenizer that reads every text as other words
    ("options file missing", lambda: SCRIPTS["extend_ner"]([NO_MODEL + ".json"]), F, r"names a file of options"),
    ("options file a list", lambda: SCRIPTS["meta"]([str(write('["--n_way", "5"]', "options.json"))]), V,
     r"must hold one object of options.*holds a list"),
    ("options file not JSON", lambda: SCRIPTS["train_tagger"]([str(write("{n_way: 5", "options.json"))]), V,
     r"options.json is not valid JSON"),
    ("options file beside other options", lambda: SCRIPTS["meta"]([str(write("{}", "options.json")), "--n_way", "5"]),
     V, r"options.json: a file of options is read when it is the only argument"),
    ("options file with an option the script lacks", lambda: SCRIPTS["extend_ner"]([str(write(
        '{"model_name_or_path": "x", "max_seq_length": 128}', "options.json"))]), V, r"never truncated"),
    ("PEFT's merge_adapter on an extension", lambda: model().merge_adapter(), V, r"cannot be merged.*consolidate"),
    # ---- NaN weights and scores: refused where they would become a clean-looking answer
    ("predict_labels with NaN weights", lambda: poisoned(sib()).predict_labels({"a": ["john"], "b": ["paris"]},
                                                                                ["london"], TOKENIZER), V,
     r"SIB's query scores hold NaN"),  # was {'label': 'a', 'score': nan}
    # a streaming IterableDataset where the rows are read whole or one by one: was "object of type
    # 'IterableDataset' has no len()" (every function that takes a tokenized data set, through check_columns)
    ("add_source_logits on a stream", lambda: add_source_logits(toy_dataset(TOKENIZER).to_iterable_dataset(), model(),
                                                                TOKENIZER), T,
     r"add_source_logits' dataset is a streaming datasets.IterableDataset.*without streaming=True"),
    ("consolidate on a stream", lambda: consolidate(train=toy_dataset(TOKENIZER).to_iterable_dataset()), T,
     r"consolidate's train_dataset is a streaming datasets.IterableDataset"),
    ("rehearsal text as a Dataset of ids", lambda: rehearse(Dataset.from_dict({"input_ids": [[1, 2]]})), V,
     r"needs a 'tokens' column \(word lists\) or a 'text' column \(sentences\); it has \['input_ids'\]"),
    ("rehearsal from a source with NaN weights", lambda: add_rehearsal(
        toy_dataset(TOKENIZER), ["john lives in paris"], get_adapter_model(poisoned(source()), C(new_labels=NEW_LABELS)),
        TOKENIZER), V, r"frozen source model's scores hold NaN"),  # was cached: rehearsal rows all 'O', NaN targets
    # ---- AdapterDataCollator settings, checked when it is made (transformers' fail at the first batch, or never)
    ("collator pad_to_multiple_of 0", lambda: AdapterDataCollator(TOKENIZER, pad_to_multiple_of=0), V,
     r"pad_to_multiple_of=0 is out of range"),  # was ZeroDivisionError at the first batch
    ("collator pad_to_multiple_of 1.5", lambda: AdapterDataCollator(TOKENIZER, pad_to_multiple_of=1.5), T,
     r"pad_to_multiple_of must be a whole number"),
    ("collator label_pad_token_id a string", lambda: AdapterDataCollator(TOKENIZER, label_pad_token_id="-100"), T,
     r"label_pad_token_id must be a whole number.*without quotes"),  # was padded with '-100' strings
    ("collator max_length 0", lambda: AdapterDataCollator(TOKENIZER, max_length=0), V, r"max_length=0 is out of range"),
    # ---- numpy / torch scalars where a config takes a Python number: it would not save as JSON
    ("SIBConfig inner_steps numpy int", lambda: SIBConfig(inner_steps=np.int64(3)), T,
     r"inner_steps must be a Python int, got .*int64; pass inner_steps=int\(value\)"),
    ("SIBConfig inner_lr numpy float32", lambda: SIBConfig(inner_lr=np.float32(0.1)), T,
     r"inner_lr must be a Python float.*pass inner_lr=float\(value\)"),
    ("SIBConfig inner_steps a tensor", lambda: SIBConfig(inner_steps=torch.tensor(3)), T,
     r"inner_steps must be a whole number, got tensor\(3\) \(Tensor\); pass, e.g."),
]

# ---- the scripts' options: numeric options at 0, negative and huge values, and malformed strings
CLI = [
    *[(f"extend_ner {option} {value}", "extend_ner", option, value, rf"\b{option[2:]}=")
      for option, value in [("--learning_rate", "0"), ("--learning_rate", "-1e-4"), ("--learning_rate", "nan"),
                            ("--num_train_epochs", "0"), ("--num_train_epochs", "-2"), ("--max_steps", "0"),
                            ("--max_steps", "-5"), ("--per_device_train_batch_size", "0"),
                            ("--per_device_train_batch_size", "-16"), ("--per_device_eval_batch_size", "0"),
                            ("--gradient_accumulation_steps", "0"), ("--gradient_accumulation_steps", "-1"),
                            ("--weight_decay", "-0.1"), ("--max_grad_norm", "-1"), ("--adam_epsilon", "0"),
                            ("--adam_beta1", "1"), ("--adam_beta2", "1.5"), ("--label_smoothing_factor", "1"),
                            ("--seed", "-1"), ("--seed", "99999999999"), ("--save_total_limit", "0"),
                            ("--dataloader_num_workers", "-1"), ("--head_learning_rate", "0"),
                            ("--head_learning_rate", "-1"), ("--max_train_samples", "0"),
                            ("--max_eval_samples", "-1"), ("--max_predict_samples", "0"),
                            ("--adapter_hidden_size", "0"), ("--adapter_hidden_size", "100000000"),
                            ("--num_top_layers", "-1"), ("--lora_r", "0"), ("--lora_dropout", "1"),
                            ("--distill_temperature", "0"), ("--distill_weight", "-1"),
                            ("--distill_weight", "1e300")]],
    # transformers reads eval_steps 0 as unset (it falls back to logging_steps): accepted where the saves still fall
    # on evaluations, refused by name where they do not (the defaults save every 50 steps, log every 500)
    ("extend_ner --eval_steps 0", "extend_ner", "--save_steps 500 --eval_steps", "0", None),
    ("extend_ner --eval_steps 0, saves off the evaluations", "extend_ner", "--eval_steps", "0",
     r"--eval_steps \(unset, so --logging_steps: 500\)"),
    ("extend_ner --num_train_epochs inf", "extend_ner", "--num_train_epochs", "inf", r"--num_train_epochs=inf"),
    ("extend_ner --max_rehearsal_sentences alone", "extend_ner", "--max_rehearsal_sentences", "10",
     r"--max_rehearsal_sentences limits --rehearsal_file"),
    ("extend_ner --max_rehearsal_sentences 0", "extend_ner", "--max_rehearsal_sentences", "0",
     r"--max_rehearsal_sentences=0"),
    ("extend_ner --tag_text blank", "extend_ner", "--tag_text", " ", r"--tag_text is empty"),
    ("extend_ner --label_map malformed", "extend_ner", "--label_map", "person", r"--label_map='person'"),
    ("extend_ner --label_map to BIO", "extend_ner", "--label_map", "person=B-PER", None),  # refused once data is read
    ("extend_ner --label_parents malformed", "extend_ner", "--label_parents", "a:b", r"subtype=parent"),
    ("extend_ner --adapter bad", "extend_ner", "--adapter", "gru", r"invalid choice|adapter"),
    *[(f"train_tagger {option} {value}", "train_tagger", option, value, rf"\b{option[2:]}=")
      for option, value in [("--learning_rate", "0"), ("--num_train_epochs", "0"), ("--per_device_train_batch_size", "0"),
                            ("--gradient_accumulation_steps", "0"), ("--head_learning_rate", "-1"),
                            ("--max_train_samples", "0"), ("--max_eval_samples", "-2"), ("--seed", "-3"),
                            ("--adam_epsilon", "-1")]],
    *[(f"meta {option} {value}", "meta", option, value, rf"\b{option[2:]}=")
      for option, value in [("--k_shot", "0"), ("--n_query", "0"), ("--n_way", "1"), ("--n_way", "100000"),
                            ("--inner_steps", "-1"), ("--inner_steps", "100000"), ("--inner_lr", "0"),
                            ("--init_scale", "-1"), ("--grad_net_multiplier", "0"), ("--train_episodes", "0"),
                            ("--num_eval_episodes", "0"), ("--uneven_train_queries", "2"),
                            ("--uneven_eval_queries", "-0.5"), ("--soft_kmeans_temperature", "0"),
                            ("--class_split_seed", "-1"), ("--max_test_episodes_file", "0"), ("--max_steps", "0"),
                            ("--learning_rate", "-1")]],
    ("meta --split_fractions two", "meta", "--split_fractions", "0.5,0.5", r"--split_fractions '0.5,0.5'"),
    ("meta --split_fractions negative", "meta", "--split_fractions", "1.2,-0.1,-0.1", r"--split_fractions"),
    ("meta --split_fractions words", "meta", "--split_fractions", "a,b,c", r"--split_fractions"),
    ("meta --split_fractions zero part", "meta", "--split_fractions", "1,0,0", r"--split_fractions"),
    ("meta --delimiter long", "meta", "--delimiter", ";;", r"--delimiter"),
    ("meta --text_column the label column", "meta", "--text_column", "label", r"'label' is named for two roles"),
    ("extend_ner --tokens_column the tag column", "extend_ner", "--tokens_column", "ner_tags",
     r"'ner_tags' is named for two roles"),  # the tags were read as the words
    ("meta --evaluate_model missing", "meta", "--evaluate_model", "/no/such/model", r"not a saved SIB model folder"),
    ("extend_ner --rehearsal_ratio alone", "extend_ner", "--rehearsal_ratio", "2",
     r"--rehearsal_ratio 2 sets how many --rehearsal_file sentences"),  # was ignored without a word
    # run_ner.py's stage flags: accepted with the training they name; refused where they would do something else
    # silently (they were ignored: --do_eval alone trained for minutes, as if --do_train had been given)
    ("extend_ner run_ner's --do_eval alone", "extend_ner", "--do_eval", "true",
     r"--do_eval without --do_train: run_ner.py would only evaluate, but this script always trains first.*"
     r"NeuralAdapterModel.from_pretrained"),
    ("train_tagger run_ner's --do_predict alone", "train_tagger", "--do_predict", "true",
     r"--do_predict without --do_train.*AutoModelForTokenClassification.from_pretrained"),
    ("extend_ner --do_predict without --test_file", "extend_ner", "--do_train true --do_predict", "true",
     r"--do_predict scores a test set, and no --test_file is given"),
    ("meta run_ner's --do_eval alone", "meta", "--do_eval", "true", r"--do_eval without --do_train.*--evaluate_model"),
    ("extend_ner run_ner's three stage flags", "extend_ner", "--do_train true --do_eval true --do_predict true "
     "--test_file", NO_MODEL + ".txt", None),
    # run_ner.py users turn evaluation or saving off; the scripts' default of keeping the best step gave way to it
    # (was transformers' "--load_best_model_at_end requires the save and eval strategy to match")
    ("extend_ner --eval_strategy no", "extend_ner", "--eval_strategy", "no", None),
    ("extend_ner --save-strategy=no", "extend_ner", "--max_steps 10", "--save-strategy=no", None),
    ("meta --eval_strategy no", "meta", "--eval_strategy", "no", None),
    ("extend_ner --eval_strategy no with --load_best_model_at_end asked", "extend_ner",
     "--load_best_model_at_end true --eval_strategy", "no", r"load_best_model_at_end requires"),
    ("meta --prediction_loss_only", "meta", "--prediction_loss_only", "true",
     r"--prediction_loss_only computes no metric.*sib_accuracy"),  # was transformers' KeyError after training began
    ("extend_ner --prediction_loss_only", "extend_ner", "--prediction_loss_only", "true",
     r"--prediction_loss_only computes no metric.*overall_f1"),
    ("extend_ner --prediction_loss_only choosing on loss", "extend_ner", "--metric_for_best_model loss "
     "--prediction_loss_only", "true", r"--prediction_loss_only makes evaluation return the loss alone"),
    ("train_tagger --prediction_loss_only", "train_tagger", "--prediction_loss_only", "true",
     r"--prediction_loss_only makes evaluation return the loss alone"),  # was KeyError 'test_overall_f1' at the end
    ("meta --neftune_noise_alpha", "meta", "--neftune_noise_alpha", "5", r"neftune_noise_alpha=5 has nothing"),
    # was "get_input_embeddings not auto-handled for SIBForFewShotClassification"
    ("meta --backbone a folder without a model", "meta", "--backbone", tempfile.mkdtemp(),
     r"a folder without a model or a tokenizer in it"),  # was "Couldn't instantiate the backend tokenizer"
    # run_ner.py's options: refused with what to do instead (HfArgumentParser named them only)
    ("extend_ner run_ner's --text_column_name", "extend_ner", "--text_column_name", "words", r"use --tokens_column"),
    ("extend_ner run_ner's --max_seq_length", "extend_ner", "--max_seq_length", "128", r"never truncated"),
    ("train_tagger run_ner's --label_column_name", "train_tagger", "--label_column_name", "tags",
     r"'tokens' and 'ner_tags' columns"),
    ("train_tagger run_ner's --preprocessing_num_workers", "train_tagger", "--preprocessing_num_workers", "4",
     r"tokenizing runs in the main process"),
    ("meta unknown option", "meta", "--max_seq_lenght", "64", r"does not take \['--max_seq_lenght', '64'\]"),
]


@pytest.mark.parametrize("case", HANDLED, ids=lambda f: f.__name__)
def test_handled(case):
    case()


@pytest.mark.parametrize("name,fn,error,pattern", REFUSED, ids=[c[0] for c in REFUSED])
def test_refused_with_a_clear_message(name, fn, error, pattern):
    with pytest.raises(error, match=pattern):
        fn()


@pytest.mark.parametrize("name,script,option,value,pattern", CLI, ids=[c[0] for c in CLI])
def test_script_option_refused_at_parse_time(name, script, option, value, pattern):
    """Refused before any model or data is read, naming the option; an option refused later (once the data is there)
    passes the parse and reaches the next step."""
    with pytest.raises((ValueError, TypeError, FileNotFoundError, OSError, SystemExit)) as caught:
        run(script, *option.split(), value)
    message = str(caught.value)
    if pattern is None:
        assert re.search(REACHED_NEXT_STEP, message), message
    elif isinstance(caught.value, SystemExit):  # argparse's own refusal of a choice, printed to stderr
        assert caught.value.code == 2
    else:
        assert re.search(pattern, message), message


def test_at_least_150_new_cases():
    assert len(HANDLED) + len(REFUSED) + len(CLI) >= 150


def public_callables() -> dict[str, object]:
    """Every function and class the package exports (its and its subpackages' ``__all__``), and the loaders of its
    models."""
    found = {}
    for name in ("hf_adapter_ext", "hf_adapter_ext.data", "hf_adapter_ext.meta", "hf_adapter_ext.adapter",
                 "hf_adapter_ext.metrics"):
        module = importlib.import_module(name)
        for attr in module.__all__:
            value = getattr(module, attr)
            if (inspect.isfunction(value) or inspect.isclass(value)) and value.__module__.startswith("hf_adapter_ext"):
                found[f"{value.__module__}.{value.__qualname__}"] = value
    for cls, method in ((NeuralAdapterModel, "from_pretrained"), (SIBForFewShotClassification, "from_pretrained"),
                        (SIBForFewShotClassification, "from_backbone_pretrained"), (CRF, "for_labels")):
        found[f"{cls.__qualname__}.{method}"] = getattr(cls, method)
    return found


def obscure_failures(callables: dict[str, object], value) -> dict[str, str]:
    """Each callable given ``value`` for every argument it requires: the ones that fail with anything but a
    ValueError / TypeError (or the FileNotFoundError / OSError of a file or Hub lookup), by name."""
    obscure = {}
    for name, target in callables.items():
        required = [p for p in inspect.signature(target).parameters.values()
                    if p.default is inspect.Parameter.empty and p.name not in ("self", "cls")
                    and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        if not required:
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                target(*[value] * len(required))
        except (ValueError, TypeError, OSError):
            continue
        except Exception as err:  # noqa: BLE001 - the kind of failure is what is tested
            obscure[name] = f"{type(err).__name__}: {err}"[:200]
    return obscure


NAME_NONE_NUMBER = pytest.mark.parametrize("value", ["/no/such/model", None, 7], ids=["a path", "None", "a number"])


@NAME_NONE_NUMBER
def test_every_public_callable_refuses_a_name_none_or_a_number_by_kind(value):
    """The class behind "'str' object has no attribute 'training'": any exported function, class or loader given a
    name (a path that does not exist: a Hub id would wait on the network), None or a number for every argument it
    requires refuses by kind, never with an AttributeError, IndexError or KeyError from deep inside. A new export is
    covered without a new case."""
    assert not obscure_failures(public_callables(), value)


@NAME_NONE_NUMBER
def test_the_models_run_time_methods_refuse_a_name_none_or_a_number_by_kind(value):
    """The same for what a user calls on a built model or trainer (was, e.g., "'NoneType' object has no attribute
    'num_special_tokens_to_add'" from shape_backbone, "Could not infer dtype of NoneType" from adapt)."""
    extended, few_shot = trained(), sib(grad_net="equivariant")
    methods = {"consolidate": extended.consolidate, "source_outputs": extended.source_outputs,
               "self_train": self_trainer(trained()).self_train, "predict_labels": few_shot.predict_labels,
               "adapt": few_shot.adapt, "encode": few_shot.encode, "shape_backbone": few_shot.shape_backbone}
    assert not obscure_failures(methods, value)
