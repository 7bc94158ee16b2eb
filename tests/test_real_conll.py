"""On real CoNLL-2003 data (../shared/data): a tiny adapted model learns LOC without forgetting old types."""

import pytest
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import (
    BertConfig,
    BertForTokenClassification,
    DataCollatorForTokenClassification,
    PreTrainedTokenizerFast,
    Trainer,
    TrainingArguments,
)

from hf_adapter_ext import AdapterDataCollator, NeuralAdapterConfig, add_source_logits, get_adapter_model
from hf_adapter_ext.data import load_conll, load_transfer_task, read_conll
from hf_adapter_ext.metrics import evaluate_tagger

pytestmark = pytest.mark.real_data


def word_tokenizer(sentences) -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=False)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
    tok.train_from_iterator((" ".join(s) for s in sentences), trainers.WordPieceTrainer(vocab_size=4000,
                                                                                       special_tokens=specials))
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))]
    )
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]")


def fit(model, data, collator, epochs, lr, tmp_path):
    args = TrainingArguments(output_dir=str(tmp_path), num_train_epochs=epochs, learning_rate=lr, report_to="none",
                             per_device_train_batch_size=32, save_strategy="no", use_cpu=True, seed=0,
                             disable_tqdm=True, logging_strategy="no", warmup_steps=10)
    Trainer(model=model, args=args, train_dataset=data, data_collator=collator).train()
    return model.eval()


def test_read_conll_matches_the_hub_schema(shared_data):
    ds = load_conll({"validation": shared_data / "conll2003" / "validation.txt"})
    names = ds["validation"].features["ner_tags"].feature.names
    assert names[:3] == ["O", "B-PER", "I-PER"] and len(ds["validation"]) == 3250
    assert len(read_conll(shared_data / "conll2003" / "test.txt")) == 3453


def test_adapted_tiny_model_learns_the_new_type_and_keeps_the_old(shared_data, tmp_path):
    task = load_transfer_task("LOC", shared_data, limits={"source_train": 3000, "target_train": 1200, "test": 800})
    tokenizer = word_tokenizer(list(task.datasets["source_train"]["tokens"]) + list(task.datasets["target_train"]["tokens"]))
    old = dict(enumerate(task.old_labels))
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=96, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=192, id2label=old, label2id={v: k for k, v in old.items()})
    source = fit(BertForTokenClassification(config), task.encode(tokenizer, "source_train", [task.new_type]),
                 DataCollatorForTokenClassification(tokenizer), epochs=4, lr=2e-3, tmp_path=tmp_path / "s")
    before = evaluate_tagger(source, task.encode(tokenizer, "test", [task.new_type]), tokenizer, old, ["LOC"])

    model = get_adapter_model(source, NeuralAdapterConfig(new_labels=task.new_labels))
    target = add_source_logits(task.encode(tokenizer, "target_train"), model, tokenizer)
    fit(model, target, AdapterDataCollator(tokenizer), epochs=4, lr=1e-3, tmp_path=tmp_path / "t")
    after = evaluate_tagger(model, task.encode(tokenizer, "test"), tokenizer, model.config.id2label, ["LOC"])
    print(f"source old F1 {before['old_f1']:.3f}; extended old F1 {after['old_f1']:.3f}, LOC F1 {after['new_f1']:.3f}")
    assert before["old_f1"] > 0.3, "the tiny source model should have learnt something"
    assert after["new_f1"] > 0.3, after
    assert after["old_f1"] >= before["old_f1"] - 0.05, (before["old_f1"], after["old_f1"])
