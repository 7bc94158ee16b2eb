"""hf_adapter_ext: extend trained token classifiers to new labels (neural adapter) and learn new tasks
from a few examples (SIB meta-learning), inside the Hugging Face ecosystem."""

from .adapter import (
    AdapterDataCollator,
    ExtensionTrainer,
    NeuralAdapterConfig,
    NeuralAdapterModel,
    adapter_optimizer,
    add_pseudo_labels,
    add_rehearsal,
    add_source_logits,
    extension_training_defaults,
    get_adapter_model,
    parse_pairs,
)
from .hub import push_consolidated_to_hub, save_consolidated
from .meta import MetaTrainingArguments, SemiSupervisedMetaTrainer, SIBConfig, SIBForFewShotClassification
from .modeling import CRF, entity_types, source_labels
from .models import BiLSTMCRFConfig, BiLSTMCRFForTokenClassification
from .pipelines import BIOTokenClassificationPipeline

__version__ = "0.1.0"

__all__ = [
    "BIOTokenClassificationPipeline", "BiLSTMCRFConfig", "BiLSTMCRFForTokenClassification", "CRF", "AdapterDataCollator", "ExtensionTrainer", "MetaTrainingArguments", "NeuralAdapterConfig", "NeuralAdapterModel",
    "SIBConfig", "SIBForFewShotClassification", "SemiSupervisedMetaTrainer", "adapter_optimizer", "add_pseudo_labels", "add_rehearsal", "add_source_logits",
    "entity_types", "extension_training_defaults", "get_adapter_model", "parse_pairs", "push_consolidated_to_hub", "save_consolidated", "source_labels",
]
