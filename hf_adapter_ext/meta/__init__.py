from .arguments import MetaTrainingArguments
from .config import SIBConfig, sib_arguments_dataclass
from .episode_data import EpisodeColumns, build_episodes
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
from .evaluation import episode_compute_metrics
from .features import encode_texts, encode_words
from .modeling import SIBForFewShotClassification, SIBOutput
from .trainer import SemiSupervisedMetaTrainer

__all__ = [
    "Episode", "EpisodeColumns", "EpisodeSampler", "MetaTrainingArguments", "SIBConfig", "SIBForFewShotClassification", "SIBOutput",
    "SemiSupervisedMetaTrainer", "SequenceEpisodes", "TextEpisodes", "TokenEpisodeSampler", "TokenEpisodes",
    "build_episodes", "collate_episodes", "encode_texts", "encode_words", "episode_compute_metrics",
    "read_fewnerd_episodes", "sib_arguments_dataclass",
]
