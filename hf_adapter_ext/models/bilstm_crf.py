"""The paper's BiLSTM-CRF tagger as a real Hugging Face model (Chen & Moschitti's source architecture).

Word vectors (GloVe), a character BiLSTM and a casing embedding feed a token BiLSTM, then a linear layer and a
CRF. Registered with `AutoConfig` / `AutoModelForTokenClassification` as ``"bilstm-crf"``, so
`from_pretrained`, `Trainer`, `pipeline` and `get_adapter_model` treat it like any other model. Input ids are
word ids from a word-level tokenizer (see :mod:`hf_adapter_ext.models.glove`); the characters and casing of each
vocabulary word are kept in buffers, so the model needs nothing but ``input_ids``.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import AutoConfig, AutoModelForTokenClassification, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import BaseModelOutput

from ..modeling.crf import CRF
from ..modeling.losses import check_labels, loss_denominator, token_classification_loss_sum
from ..modeling.outputs import CRFTokenClassifierOutput, viterbi_logits
from ..validation import Number, check_finite_tensor, check_input_ids, check_settings

NUM_CASINGS = 7


class BiLSTMCRFConfig(PretrainedConfig):
    model_type = "bilstm-crf"
    keys_to_ignore_at_inference = ["emissions", "hidden_states"]

    def __init__(self, vocab_size: int = 2, word_dim: int = 50, char_vocab_size: int = 258, char_dim: int = 25,
                 char_hidden_size: int = 25, casing_dim: int = 8, hidden_size: int = 100, max_word_length: int = 20,
                 dropout: float = 0.5, use_crf: bool = True, bio_constraints: bool = True, **kwargs):
        self.vocab_size, self.word_dim = vocab_size, word_dim
        self.char_vocab_size, self.char_dim, self.char_hidden_size = char_vocab_size, char_dim, char_hidden_size
        self.casing_dim, self.hidden_size, self.max_word_length = casing_dim, hidden_size, max_word_length
        self.dropout, self.use_crf, self.bio_constraints = dropout, use_crf, bio_constraints
        size = Number(int, 1, 10**7, example="100")
        check_settings("BiLSTMCRFConfig", self, {
            "vocab_size": Number(int, 2, 10**8, example="20000", why="id 0 is padding, so at least one word more"),
            "word_dim": size, "char_vocab_size": Number(int, 2, 10**7, example="258"), "char_dim": size,
            "char_hidden_size": size, "casing_dim": size, "hidden_size": size, "max_word_length": size,
            "dropout": Number(float, 0, 1, high_open=True, example="0.5", why="1 would drop every feature"),
            "use_crf": bool, "bio_constraints": bool})
        kwargs.setdefault("pad_token_id", 0)
        super().__init__(**kwargs)


class BiLSTMEncoder(nn.Module):
    """Words → contextual features [B, T, 2·hidden] (the model's ``base_model``)."""

    def __init__(self, config: BiLSTMCRFConfig):
        super().__init__()
        self.config = config
        self.word_embeddings = nn.Embedding(config.vocab_size, config.word_dim, padding_idx=0)
        self.char_embeddings = nn.Embedding(config.char_vocab_size, config.char_dim, padding_idx=0)
        self.char_lstm = nn.LSTM(config.char_dim, config.char_hidden_size, batch_first=True, bidirectional=True)
        self.casing_embeddings = nn.Embedding(NUM_CASINGS, config.casing_dim)
        width = config.word_dim + 2 * config.char_hidden_size + config.casing_dim
        self.lstm = nn.LSTM(width, config.hidden_size, batch_first=True, bidirectional=True)
        self.dropout = nn.Dropout(config.dropout)
        self.register_buffer("word_chars", torch.zeros(config.vocab_size, config.max_word_length, dtype=torch.long))
        self.register_buffer("word_casing", torch.zeros(config.vocab_size, dtype=torch.long))

    def _char_features(self, input_ids: torch.Tensor) -> torch.Tensor:
        unique, inverse = torch.unique(input_ids, return_inverse=True)
        chars = self.word_chars[unique]
        lengths = (chars != 0).sum(1).clamp(min=1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(self.char_embeddings(chars), lengths, batch_first=True,
                                                   enforce_sorted=False)
        _, (hidden, _) = self.char_lstm(packed)
        per_word = torch.cat([hidden[0], hidden[1]], dim=-1)
        return per_word[inverse]

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **kwargs):
        if attention_mask is None:
            attention_mask = (input_ids != 0).long()
        features = torch.cat([self.word_embeddings(input_ids), self._char_features(input_ids),
                              self.casing_embeddings(self.word_casing[input_ids])], dim=-1)
        lengths = attention_mask.sum(1).clamp(min=1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(self.dropout(features), lengths, batch_first=True,
                                                   enforce_sorted=False)
        out, _ = self.lstm(packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=input_ids.size(1))
        return BaseModelOutput(last_hidden_state=out, hidden_states=(out,))


class BiLSTMCRFForTokenClassification(PreTrainedModel):
    config_class = BiLSTMCRFConfig
    base_model_prefix = "encoder"
    main_input_name = "input_ids"
    accepts_loss_kwargs = True  # the loss divides by Trainer's num_items_in_batch (adapter/loss.py)

    def __init__(self, config: BiLSTMCRFConfig):
        super().__init__(config)
        self.encoder = BiLSTMEncoder(config)
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(2 * config.hidden_size, config.num_labels)
        labels = [config.id2label[i] for i in range(config.num_labels)]
        self.crf = CRF.for_labels(labels, config.bio_constraints) if config.use_crf else None
        self.post_init()

    def _init_weights(self, module):
        if isinstance(module, nn.Linear):
            nn.init.xavier_uniform_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, CRF):
            for param in (module.transitions, module.start_transitions, module.end_transitions):
                nn.init.zeros_(param)  # a CRF starts at zero (transformers skips what a checkpoint loaded)
            # The BIO masks are not saved (they follow from the labels), and transformers' from_pretrained leaves
            # buffers that are not saved as uninitialised memory: without this, a reloaded model decodes under
            # arbitrary constraints.
            fresh = CRF.for_labels([self.config.id2label[i] for i in range(self.config.num_labels)],
                                   self.config.bio_constraints)
            module.allowed.copy_(fresh.allowed)
            module.allowed_start.copy_(fresh.allowed_start)

    def get_input_embeddings(self):
        return self.encoder.word_embeddings

    def forward(self, input_ids=None, attention_mask=None, labels=None, output_hidden_states=None, return_dict=None,
                num_items_in_batch=None) -> CRFTokenClassifierOutput:
        check_input_ids(input_ids, self.config.vocab_size, "the word tokenizer's")
        if attention_mask is None:
            attention_mask = (input_ids != 0).long()
        hidden = self.encoder(input_ids, attention_mask).last_hidden_state
        emissions = self.classifier(self.dropout(hidden))
        loss = None
        if labels is not None:
            labels = check_labels(labels, emissions, self.config.num_labels, self.config.id2label, attention_mask)
            loss = token_classification_loss_sum(emissions, labels, attention_mask, self.crf)
            loss = loss / loss_denominator(labels, num_items_in_batch)
        logits = emissions
        if self.crf is not None and not self.training:  # the Viterbi decoding refuses NaN scores itself
            logits = viterbi_logits(self.crf, emissions, attention_mask)
        elif not self.training:  # NaN scores would be tagged: argmax reads them as label 0, "O"
            check_finite_tensor(emissions, "The BiLSTM-CRF's scores")
        return CRFTokenClassifierOutput(loss=loss, logits=logits, emissions=emissions,
                                        hidden_states=(hidden,) if output_hidden_states else None)


AutoConfig.register("bilstm-crf", BiLSTMCRFConfig, exist_ok=True)
AutoModelForTokenClassification.register(BiLSTMCRFConfig, BiLSTMCRFForTokenClassification, exist_ok=True)
