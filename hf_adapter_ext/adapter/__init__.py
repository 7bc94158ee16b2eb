from .config import NeuralAdapterConfig, parse_pairs
from .model import NeuralAdapterModel, get_adapter_model
from .optim import adapter_optimizer
from .rehearsal import add_rehearsal
from .self_training import add_pseudo_labels, pseudo_label
from .source_cache import AdapterDataCollator, add_source_logits
from .training import ExtensionTrainer, RehearsalSampler, extension_training_defaults

__all__ = ["AdapterDataCollator", "ExtensionTrainer", "NeuralAdapterConfig", "NeuralAdapterModel", "RehearsalSampler",
           "adapter_optimizer", "add_pseudo_labels", "add_rehearsal", "add_source_logits", "extension_training_defaults",
           "get_adapter_model", "parse_pairs", "pseudo_label"]
