from .arguments import MetaTrainingArguments
from .config import SIBConfig
from .episodes import (
    Episode,
    EpisodeSampler,
    SequenceEpisodes,
    TextEpisodes,
    TokenEpisodes,
    TokenEpisodeSampler,
    collate_episodes,
    read_fewnerd_episodes,
)
from .features import encode_texts, encode_words
from .modeling import SIBForFewShotClassification, SIBOutput
from .trainer import SemiSupervisedMetaTrainer

__all__ = [
    "Episode", "EpisodeSampler", "MetaTrainingArguments", "SIBConfig", "SIBForFewShotClassification", "SIBOutput",
    "SemiSupervisedMetaTrainer", "SequenceEpisodes", "TextEpisodes", "TokenEpisodeSampler", "TokenEpisodes",
    "collate_episodes", "encode_texts", "encode_words", "read_fewnerd_episodes",
]
