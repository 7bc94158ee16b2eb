"""Building blocks every feature shares: the CRF, model outputs, the token-classification losses and the BIO
label utilities. Nothing here imports from the features (``adapter``, ``meta``, ``models``)."""

from .crf import CRF
from .outputs import CRFTokenClassifierOutput, label_scores, viterbi_logits
from .tags import entity_types, source_labels

__all__ = ["CRF", "CRFTokenClassifierOutput", "entity_types", "label_scores", "source_labels", "viterbi_logits"]
