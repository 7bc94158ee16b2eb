"""Messy CoNLL files, label alignment round trips, long sentences in windows."""

import logging

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hf_adapter_ext.data import CONLL2003_LABELS, conll_dataset, read_conll, tokenize_and_align_labels
from hf_adapter_ext.data.alignment import join_windows, word_predictions, word_windows
from hf_adapter_ext.data.transfer import TransferTask

from .conftest import build_tokenizer

TOKENIZER = build_tokenizer()


def write(tmp_path, text, name="data.txt"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_tabs_spaces_docstart_and_odd_blank_lines_are_read_correctly(tmp_path):
    path = write(tmp_path, "-DOCSTART- -X- -X- O\n\n\n\nJohn\tNNP B-NP\tB-PER\nlives VBZ B-VP O\n   \n\n"
                           "-DOCSTART- -X- -X- O\nParis NNP B-NP B-LOC\n\n\n")
    sentences = read_conll(path)
    assert sentences == [{"tokens": ["John", "lives"], "tags": ["B-PER", "O"]},
                         {"tokens": ["Paris"], "tags": ["B-LOC"]}]


def test_mixed_column_counts_name_the_file_and_line(tmp_path):
    path = write(tmp_path, "John NNP B-NP B-PER\nlives O\n")
    with pytest.raises(ValueError, match=r"data.txt:2: expected 4 .* found 2"):
        read_conll(path)


def test_unknown_tags_name_the_sentence_and_the_fix(tmp_path):
    path = write(tmp_path, "John B-PERSON\n\n")
    with pytest.raises(ValueError, match=r"\['B-PERSON'\] that are not in the label set"):
        conll_dataset(path, labels=CONLL2003_LABELS)  # an explicit label set is enforced; without one it is inferred


def test_empty_file_is_refused(tmp_path):
    with pytest.raises(ValueError, match="holds no sentences"):
        conll_dataset(write(tmp_path, "\n\n-DOCSTART- -X- -X- O\n\n"))


def test_iob1_is_converted_with_a_warning_or_refused_on_request(tmp_path, caplog):
    path = write(tmp_path, "John I-PER\nSmith I-PER\nlives O\nin O\nNew I-LOC\nYork I-LOC\nParis B-LOC\n\n")
    with caplog.at_level(logging.WARNING):
        ds = conll_dataset(path)
    names = ds.features["ner_tags"].feature.names
    assert [names[t] for t in ds[0]["ner_tags"]] == ["B-PER", "I-PER", "O", "O", "B-LOC", "I-LOC", "B-LOC"]
    assert "IOB1 to IOB2" in caplog.text
    with pytest.raises(ValueError, match="looks like IOB1"):
        conll_dataset(path, scheme="iob2")


SPANS = st.lists(st.tuples(st.integers(0, 11), st.integers(1, 3), st.sampled_from(["PER", "LOC"])), max_size=4)


def encode_spans(length: int, spans, scheme: str) -> list[str]:
    """Tags of non-overlapping ``(start, size, type)`` spans in IOB2, IOBES or BILOU (adjacent spans of one type
    are kept apart by each scheme's opening tag)."""
    single, last = {"iob2": ("B-", "I-"), "iobes": ("S-", "E-"), "bilou": ("U-", "L-")}[scheme]
    tags, taken = ["O"] * length, set()
    for start, size, kind in spans:
        cells = range(start, min(start + size, length))
        if not cells or taken & set(cells):
            continue
        taken |= set(cells)
        for i in cells:
            tags[i] = ("B-" if i == start else "I-") + kind
        if len(cells) == 1:
            tags[start] = single + kind
        elif scheme != "iob2":
            tags[cells[-1]] = last + kind
    return tags


@settings(max_examples=60, deadline=None)
@given(SPANS, st.sampled_from(["iobes", "bilou"]))
def test_iobes_and_bilou_files_read_as_the_same_iob2_spans(tmp_path_factory, spans, scheme):
    tmp_path = tmp_path_factory.mktemp("scheme")
    words = [f"w{i}" for i in range(12)]
    tags = encode_spans(12, spans, scheme)
    ds = conll_dataset(write(tmp_path, "".join(f"{w} {t}\n" for w, t in zip(words, tags)) + "\n"))
    names = ds.features["ner_tags"].feature.names
    assert [names[t] for t in ds[0]["ner_tags"]] == encode_spans(12, spans, "iob2")


def test_iobes_is_refused_when_another_scheme_is_named(tmp_path):
    with pytest.raises(ValueError, match="IOBES/BILOU tags .* pass scheme='auto'"):
        conll_dataset(write(tmp_path, "John S-PER\nsaid O\n\n"), scheme="iob2")


@pytest.mark.parametrize("tag, message", [
    ("PER", "look like IO tags"), ("b-per", "prefixes .* in capitals"), ("1", "not label ids"),
    ("B-", "'' is not an entity type name"),
])
def test_tags_in_no_known_scheme_are_refused_with_the_fix(tmp_path, tag, message):
    with pytest.raises(ValueError, match=message):
        conll_dataset(write(tmp_path, f"John {tag}\nsaid O\n\n"))


@pytest.mark.parametrize("labels, message", [
    (["B-PER", "I-PER"], "lacks 'O'"), (["O", "B-PER", "B-PER", "I-PER"], "names \\['B-PER'\\] more than once"),
    (["O", "S-PER", "B-PER"], "'S-PER' is not a BIO label"),
])
def test_a_given_label_set_must_be_iob2_with_o(tmp_path, labels, message):
    with pytest.raises(ValueError, match=message):
        conll_dataset(write(tmp_path, "John B-PER\nsaid O\n\n"), labels=labels)


def test_a_file_without_a_tag_column_says_so(tmp_path):
    with pytest.raises(ValueError, match="data.txt:1: 'John' has one column.*read_sentences"):
        read_conll(write(tmp_path, "John\nsaid\n\n"))


def test_a_utf16_file_is_named_as_such(tmp_path):
    path = tmp_path / "data.txt"
    path.write_text("John B-PER\n", encoding="utf-16")
    with pytest.raises(ValueError, match="iconv -f utf-16"):
        read_conll(path)


def test_tags_outside_the_models_labels_are_refused_clearly(tmp_path):
    path = write(tmp_path, "John B-PER\nParis B-LOC\n\n")
    from datasets import DatasetDict

    task = TransferTask("LOC", ["O", "B-PER", "I-PER"], ["B-LOC", "I-LOC"], DatasetDict({"x": conll_dataset(path)}))
    task.encode(TOKENIZER, "x")  # fine: every tag known
    task.old_labels = ["O", "B-ORG", "I-ORG"]
    with pytest.raises(ValueError, match=r"uses tags \['B-PER'\]"):
        task.encode(TOKENIZER, "x")


WORDS = st.lists(st.text(alphabet="abcdefghijklmnopqrstuvwxyzJPL.,-'", min_size=1, max_size=12).filter(str.strip),
                 min_size=1, max_size=30)


@settings(max_examples=60, deadline=None)
@given(words=WORDS, data=st.data())
def test_alignment_round_trips_word_labels(words, data):
    words = [w.replace(" ", "") or "x" for w in words]
    tags = data.draw(st.lists(st.integers(0, 8), min_size=len(words), max_size=len(words)))
    encoded = tokenize_and_align_labels({"tokens": [words], "ner_tags": [tags]}, TOKENIZER)
    labels = encoded["labels"][0]
    assert word_predictions(labels, labels) == tags
    assert labels[0] == -100 and labels[-1] == -100, "special tokens carry no label"


@settings(max_examples=60, deadline=None)
@given(words=WORDS, max_length=st.integers(8, 40), data=st.data())
def test_long_sentences_are_split_into_windows_and_rejoined_never_truncated(words, max_length, data):
    words = [w.replace(" ", "") or "x" for w in words]
    words = [w[: max_length - 3] for w in words]  # every single word fits in a window
    tags = data.draw(st.lists(st.integers(0, 8), min_size=len(words), max_size=len(words)))
    encoded = tokenize_and_align_labels({"tokens": [words], "ner_tags": [tags]}, TOKENIZER, max_length=max_length)
    assert all(len(ids) <= max_length for ids in encoded["input_ids"])
    per_window = [word_predictions(labels, labels) for labels in encoded["labels"]]
    assert join_windows(per_window, encoded["word_offset"]) == [tags]


def test_a_word_too_long_for_any_window_is_an_error():
    with pytest.raises(ValueError, match="alone has"):
        word_windows(["a" * 50], TOKENIZER, max_length=10)


def test_label_set_is_inferred_and_types_can_be_renamed_and_merged(tmp_path):
    from hf_adapter_ext.data import infer_labels, load_conll, rename_types

    (tmp_path / "a.txt").write_text("Obama\tB-politician\nvisited\tO\nFrance\tB-country\n\nParis\tB-location\n")
    (tmp_path / "b.txt").write_text("Merkel\tB-person\n")
    data = load_conll({"train": tmp_path / "a.txt", "test": tmp_path / "b.txt"})
    names = data["train"].features["ner_tags"].feature.names
    assert names == data["test"].features["ner_tags"].feature.names  # one label set for all splits
    assert names == ["O", "B-country", "I-country", "B-location", "I-location", "B-person", "I-person",
                     "B-politician", "I-politician"]
    renamed = rename_types(data, {"person": "PER", "location": "LOC", "country": "LOC"})
    new_names = renamed["train"].features["ner_tags"].feature.names
    assert new_names == ["O", "B-LOC", "I-LOC", "B-PER", "I-PER", "B-politician", "I-politician"]
    assert [new_names[t] for t in renamed["train"][0]["ner_tags"]] == ["B-politician", "O", "B-LOC"]
    assert infer_labels([["O", "B-PER"], ["B-LOC"]]) == ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC",
                                                         "B-MISC", "I-MISC"]  # CoNLL files keep CoNLL's ids


@pytest.mark.real_data
def test_crossner_politics_reads_without_a_hand_listed_label_set(shared_data):
    from hf_adapter_ext.data import load_conll

    folder = shared_data / "crossner" / "politics"
    data = load_conll({split: folder / f"{split}.txt" for split in ("train", "dev", "test")})
    names = data["train"].features["ner_tags"].feature.names
    assert {"B-politician", "B-person", "B-politicalparty"} <= set(names) and len(data["train"]) == 200
