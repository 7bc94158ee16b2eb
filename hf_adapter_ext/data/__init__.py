from .alignment import align_word_labels, tokenize_and_align_labels, word_tokenizer
from .conll import (
    CONLL2003_LABELS,
    conll_dataset,
    infer_labels,
    load_conll,
    read_conll,
    relabel_to_outside,
    rename_types,
    warn_unlabelled_in_evaluation,
    with_label_order,
)
from .fewshot import few_tk_paths, fewnerd_sentences
from .files import first_rows, load_ner_files
from .intents import load_banking77, load_clinc150
from .text_files import read_csv_rows, read_json_records, read_sentences
from .transfer import TransferTask, load_transfer_task

__all__ = [
    "CONLL2003_LABELS", "few_tk_paths", "fewnerd_sentences", "load_banking77", "load_clinc150", "align_word_labels", "conll_dataset", "load_conll", "read_conll", "relabel_to_outside", "infer_labels", "rename_types", "with_label_order", "load_ner_files", "first_rows", "read_sentences",
    "read_csv_rows", "read_json_records", "warn_unlabelled_in_evaluation",
    "tokenize_and_align_labels", "word_tokenizer", "TransferTask", "load_transfer_task",
]
