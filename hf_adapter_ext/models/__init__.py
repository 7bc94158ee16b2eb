from .bilstm_crf import BiLSTMCRFConfig, BiLSTMCRFForTokenClassification
from .glove import bilstm_crf_with_vocabulary, load_glove, word_tokenizer

__all__ = ["BiLSTMCRFConfig", "BiLSTMCRFForTokenClassification", "bilstm_crf_with_vocabulary", "load_glove",
           "word_tokenizer"]
