from .alignment import align_word_labels, tokenize_and_align_labels
from .conll import (
    CONLL2003_LABELS,
    conll_dataset,
    load_conll,
    read_conll,
    relabel_to_outside,
    shared_data_dir,
)
from .transfer import TransferTask, load_transfer_task

__all__ = [
    "CONLL2003_LABELS", "align_word_labels", "conll_dataset", "load_conll", "read_conll", "relabel_to_outside",
    "shared_data_dir", "tokenize_and_align_labels", "TransferTask", "load_transfer_task",
]
