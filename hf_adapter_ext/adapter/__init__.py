from .config import NeuralAdapterConfig, parse_pairs
from .model import NeuralAdapterModel, get_adapter_model
from .optim import adapter_optimizer
from .rehearsal import add_rehearsal
from .source_cache import AdapterDataCollator, add_source_logits

__all__ = ["AdapterDataCollator", "NeuralAdapterConfig", "NeuralAdapterModel", "adapter_optimizer", "add_rehearsal", "add_source_logits", "parse_pairs",
           "get_adapter_model"]
