import pytest
import torch
from transformers import (
    AutoConfig,
    AutoModelForTokenClassification,
    DataCollatorForTokenClassification,
    pipeline,
)

from hf_adapter_ext import (
    BiLSTMCRFForTokenClassification,
    NeuralAdapterConfig,
    NeuralAdapterModel,
    get_adapter_model,
)
from hf_adapter_ext.models import bilstm_crf_with_vocabulary
from hf_adapter_ext.models.glove import casing, char_ids

from .conftest import NEW_LABELS, OLD_LABELS
from .helpers import TAGGED, toy_dataset

SENTENCES = [text.split() for text, _ in TAGGED]


def tiny_bilstm(labels=OLD_LABELS, **kw):
    torch.manual_seed(0)
    glove = (["paris", "london", "the"], torch.randn(3, 8).numpy())
    return bilstm_crf_with_vocabulary(labels, SENTENCES, glove=glove, word_dim=8, char_dim=4, char_hidden_size=4,
                                      hidden_size=8, **kw)


def test_vocabulary_keeps_case_and_starts_from_glove():
    model, tokenizer = tiny_bilstm()
    vocab = tokenizer.get_vocab()
    assert "Paris" in vocab and "paris" in vocab and "The" in vocab
    paris, Paris = vocab["paris"], vocab["Paris"]
    embeddings = model.encoder.word_embeddings.weight
    assert torch.equal(embeddings[paris], embeddings[Paris]), "case variants share the GloVe vector"
    assert model.encoder.word_casing[Paris] == casing("Paris") == 5 and casing("1996") == 1
    assert model.encoder.word_chars[Paris].tolist()[:2] == char_ids("Pa", 2)
    assert tokenizer(["Paris", "xyzzy"], is_split_into_words=True)["input_ids"] == [Paris, 1]


def test_auto_classes_save_reload_and_trainer_style_training(tmp_path):
    model, tokenizer = tiny_bilstm()
    data = toy_dataset(tokenizer, labels=OLD_LABELS + NEW_LABELS, outside_types=("LOC",))
    batch = DataCollatorForTokenClassification(tokenizer)([data[i] for i in range(len(data))])
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    model.train()
    first = None
    for _ in range(30):
        loss = model(**batch).loss
        first = first if first is not None else loss.item()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    assert loss.item() < first / 2
    model.save_pretrained(tmp_path)
    assert isinstance(AutoConfig.from_pretrained(tmp_path).model_type, str)
    reloaded = AutoModelForTokenClassification.from_pretrained(tmp_path)
    assert isinstance(reloaded, BiLSTMCRFForTokenClassification)
    model.eval()
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    with torch.no_grad():
        assert torch.equal(model(**inputs).emissions, reloaded(**inputs).emissions)
        # the tags too: the CRF's BIO masks are not saved, and transformers' loading left them as uninitialised
        # memory, so the reloaded model decoded under arbitrary constraints (the emissions alone hid it)
        assert torch.equal(reloaded.crf.allowed, model.crf.allowed)
        assert torch.equal(reloaded.crf.allowed_start, model.crf.allowed_start)
        assert torch.equal(model(**inputs).logits.argmax(-1), reloaded.eval()(**inputs).logits.argmax(-1))
    tagger = pipeline("token-classification", model=reloaded, tokenizer=tokenizer, aggregation_strategy="simple")
    assert isinstance(tagger("John Smith lives in Paris ."), list)


@pytest.mark.parametrize("target", ["copy", "frozen"])
def test_the_neural_adapter_extends_a_bilstm_crf_source(tmp_path, target):
    source, tokenizer = tiny_bilstm()
    with torch.no_grad():
        source.crf.transitions.normal_()
    model = get_adapter_model(source, NeuralAdapterConfig(new_labels=NEW_LABELS, target=target))
    n = len(OLD_LABELS)
    assert torch.equal(model.crf.transitions[:n, :n], source.crf.transitions), "source CRF carried over"
    data = toy_dataset(tokenizer, labels=OLD_LABELS + NEW_LABELS)
    batch = DataCollatorForTokenClassification(tokenizer)([data[i] for i in range(len(data))])
    model.train()
    model(**batch).loss.backward()
    model.eval().save_pretrained(tmp_path)
    source_again, _ = tiny_bilstm()
    source_again.load_state_dict(source.state_dict())
    reloaded = NeuralAdapterModel.from_pretrained(source_again, tmp_path)
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    with torch.no_grad():
        assert torch.equal(model(**inputs).logits, reloaded(**inputs).logits)


def test_lora_on_a_bilstm_is_refused_with_a_hint():
    source, _ = tiny_bilstm()
    with pytest.raises(ValueError, match="lora_target_modules"):
        get_adapter_model(source, NeuralAdapterConfig(new_labels=NEW_LABELS, target="lora"))


def test_new_only_distillation_takes_a_crf_sources_viterbi_path_as_pseudo_labels():
    source, tokenizer = tiny_bilstm()
    with torch.no_grad():  # emissions favour O everywhere, but the transitions force O -> B-PER -> I-PER
        source.crf.transitions.fill_(-20.0)
        source.crf.transitions[0, 1] = source.crf.transitions[1, 2] = source.crf.transitions[2, 0] = 20.0
        source.crf.start_transitions.fill_(-20.0)
        source.crf.start_transitions[0] = 20.0
    model = get_adapter_model(source, NeuralAdapterConfig(new_labels=NEW_LABELS, annotation="new_only",
                                                          adapter="none"))
    emissions = torch.zeros(1, 4, len(OLD_LABELS) + 2)
    source_scores = torch.zeros(1, 4, len(OLD_LABELS))
    source_scores[..., 0] = 1.0
    labels, _ = model._distill(emissions, torch.zeros(1, 4, dtype=torch.long), source_scores, torch.ones(1, 4),
                               torch.ones(1, dtype=torch.bool))
    assert labels[0].tolist() == [0, 1, 2, 0], "pseudo labels follow the source's Viterbi path, not argmax"


@pytest.mark.parametrize("subtype_init", ["parent", "sampled"])
def test_a_subtypes_crf_scores_start_as_its_parents_only_when_asked(subtype_init):
    source, _ = tiny_bilstm()
    with torch.no_grad():  # a trained-looking CRF: every score distinct, so a wrong copy cannot match by chance
        for param in (source.crf.transitions, source.crf.start_transitions, source.crf.end_transitions):
            param.copy_(torch.randn(param.shape))
    new = ["B-politician", "I-politician", "B-LOC", "I-LOC"]
    model = get_adapter_model(source, NeuralAdapterConfig(new_labels=new, label_parents={"politician": "PER"},
                                                          subtype_init=subtype_init))
    labels = OLD_LABELS + new
    # each label as the old label it starts as; LOC has no parent
    as_old = [labels.index(label.replace("politician", "PER")) if "LOC" not in label else -1 for label in labels]
    old, crf = source.crf, model.crf
    for i, a in enumerate(as_old):
        for j, b in enumerate(as_old):
            if a >= 0 and b >= 0 and (i >= len(OLD_LABELS) or j >= len(OLD_LABELS)):
                assert (crf.transitions[i, j] == old.transitions[a, b]) == (subtype_init == "parent"), (i, j)
            elif a < 0 or b < 0:  # LOC's scores start at the old mean either way
                assert crf.transitions[i, j] == old.transitions.mean()
    n = len(OLD_LABELS)
    assert torch.equal(crf.transitions[:n, :n], old.transitions)
    for name in ("start_transitions", "end_transitions"):
        ours, theirs = getattr(crf, name), getattr(old, name)
        assert torch.equal(ours[n : n + 2] == theirs[1:3], torch.tensor([subtype_init == "parent"] * 2))
        assert ours[n + 2] == theirs.mean()
    # BIO's forbidden transitions stay forbidden whatever the copied values: O -> I-politician
    assert not crf.allowed[0, labels.index("I-politician")]


@pytest.mark.parametrize("labels, sentences, message", [
    ("O B-PER", [["John"]], r"labels must be a list of strings"),  # read one character per label
    (OLD_LABELS, ["John lives in Paris"], r"sentences are word lists"),  # a vocabulary of characters
    (OLD_LABELS, [], r"sentences is empty"),
])
def test_a_vocabulary_from_strings_instead_of_lists_is_refused(labels, sentences, message):
    with pytest.raises(ValueError, match=message):
        bilstm_crf_with_vocabulary(labels, sentences)
