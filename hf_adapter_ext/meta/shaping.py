"""Shape a pretrained encoder's top layers on the meta-training classes, with the lower layers run only once.

Frozen, general-purpose sentence embeddings leave a few-shot method little to learn: soft k-means already extracts
what the unlabelled queries can tell. Fine-tuning the encoder's top layers with a cosine-softmax classifier over
the meta-training classes (supervised pre-training, as SIB's own paper does before it meta-learns) moves classes
of the same kind apart. The lower layers stay frozen, so their outputs are computed once and cached: on 2 CPU
cores an epoch over CLINC150's meta-training classes takes about a minute with MiniLM's top two layers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ..constants import IGNORE_INDEX
from ..data.alignment import max_length_rule
from ..modeling.layer_stacks import own_layer_stack
from ..validation import (
    POSITIVE_FLOAT,
    POSITIVE_INT,
    SEED,
    Number,
    check_settings,
    check_texts,
    check_tokenizer,
)
from .label_names import label_text, names_say_something

logger = logging.getLogger(__name__)
# Shaping aligns label names with their examples only where most names already point to their own class on the
# pretrained encoder (nearest class mean): CLINC150's and BANKING77's names do (87% / 96% of the meta-training
# classes'), names such as "intent_17" do not (1-2%), and aligning those costs accuracy: soft k-means on the
# meta-validation classes falls by 1.06 (CLINC150) and 0.09 (BANKING77) points, mean over 6 protocols
# (benchmarks/results/shaping_names.md).
NAME_AGREEMENT = 0.5
EPOCHS = Number(int, 1, 100, example="3", why="each epoch is one pass over the meta-training texts")
# How the encoder is shaped by default (`MetaTrainingArguments`, `shape_encoder`), checked on meta-validation classes
# only (benchmarks/results/shaping_sweep.md): over top layers {2, 4} x learning rate {2e-5, 1e-4} x 1-4 epochs on
# CLINC150 and BANKING77, mean soft k-means accuracy (5-way 1- and 5-shot, all-way 1-shot), this setting is 0.11
# points below the best (4 layers, 2e-5, 3 epochs), within the episodes' noise, at about half its shaping time.
SHAPING_DEFAULTS = SimpleNamespace(top_layers=2, epochs=3, learning_rate=2e-5)
POOLINGS = ("mean", "cls")  # how token states become a sequence feature (`pool_states`)


@dataclass
class ShapingResult:
    """What `shape_encoder` did.

    Args:
        losses: the mean training loss of each epoch.
        name_agreement: the share of the readable label names that pointed to their own class on the pretrained
            encoder (`name_agreement`); None when no readable names were given.
        names_aligned: whether the names were aligned with their examples (``name_agreement`` reached the
            threshold), as a model card reports it.
    """

    losses: list[float]
    name_agreement: float | None = None
    names_aligned: bool = False


def pool_states(states: torch.Tensor, attention_mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """[N, L, D] token states → [N, D] sequence features: the first token's (``"cls"``) or the mean over real
    tokens (``"mean"``, sentence-transformers' pooling)."""
    if pooling == "cls":
        return states[:, 0]
    mask = attention_mask.unsqueeze(-1).to(states.dtype)
    return (states * mask).sum(1) / mask.sum(1).clamp(min=1)


def encoder_layers(backbone: nn.Module) -> nn.ModuleList:
    """The backbone's own stack of transformer layers, whose top ones shaping trains (`own_layer_stack`)."""
    return own_layer_stack(backbone, "Shaping", "train without shaping (shape_top_layers=0)")


class _CachedLayer(nn.Module):
    """Stands in for a frozen lower layer: gives the states cached after the last lower layer, in the form the real
    layer returns (a tensor, or a tuple whose first item is the states). Any other attribute the encoder reads of
    its layers (ModernBERT's ``attention_type``) is the real layer's."""

    def __init__(self, layer: nn.Module, states: torch.Tensor, width: int | None):
        super().__init__()
        object.__setattr__(self, "_layer", layer)  # not a submodule: its weights are not this stand-in's
        self.states, self.width = states, width

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(object.__getattribute__(self, "_layer"), name)

    def forward(self, *args, **kwargs):
        return self.states if self.width is None else (self.states, *([None] * (self.width - 1)))


@dataclass
class TopLayers:
    """Runs only the top layers of ``backbone``: the whole encoder, its lower ``cut`` layers replaced by stand-ins
    that give their cached output. The encoder itself thus gives the top layers whatever its layers take beside
    the states (BERT's additive mask, MPNet's relative position bias, DeBERTa's relative embeddings, ModernBERT's
    rotary embeddings), and applies what follows them (ModernBERT's final norm).

    Args:
        width: what a layer returns: None for a tensor, n for a tuple of n items (`layer_output_width`).
    """

    backbone: nn.Module
    cut: int
    width: int | None

    def __post_init__(self):
        self.stack = encoder_layers(self.backbone)

    def __call__(self, inputs: Mapping[str, torch.Tensor], states: torch.Tensor) -> torch.Tensor:
        """The encoder's final token states for ``inputs`` (its tokenized batch), given the ``states`` after its
        lower ``cut`` layers."""
        lower = [self.stack[i] for i in range(self.cut)]
        try:
            for i in range(self.cut):
                self.stack[i] = _CachedLayer(lower[i], states, self.width)
            return self.backbone(**inputs).last_hidden_state
        finally:
            for i, layer in enumerate(lower):
                self.stack[i] = layer


def layer_output_width(layer: nn.Module, backbone: nn.Module, inputs: Mapping[str, torch.Tensor]) -> int | None:
    """What ``layer`` returns when ``backbone`` runs on ``inputs``: None for a tensor, n for a tuple of n items."""
    seen: list = []
    handle = layer.register_forward_hook(lambda module, args, output: seen.append(output))
    try:
        backbone(**inputs)
    finally:
        handle.remove()
    return len(seen[0]) if isinstance(seen[0], tuple) else None


@torch.no_grad()
def _cache_lower_states(backbone, tokenizer, texts, cut: int, batch_size: int, max_length: int, pooling: str):
    """Length-sorted batches of (tokenized inputs, states after layer ``cut``, row indices); the pooled features of
    every text before shaping ([N, D], on CPU); and the encoder's final states of the first batch (to check that
    running the top layers alone reproduces them)."""
    lengths = [len(ids) for ids in tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]]
    order = np.argsort(lengths, kind="stable")
    batches, features, reference = [], None, None
    device = next(backbone.parameters()).device
    for start in tqdm(range(0, len(order), batch_size), desc="Caching the lower layers", leave=False):
        rows = order[start : start + batch_size]
        encoded = tokenizer([texts[i] for i in rows], padding=True, padding_side="right", truncation=True,
                            max_length=max_length, return_tensors="pt").to(device)  # right: as encode_texts pads
        out = backbone(**encoded, output_hidden_states=True)
        batches.append((dict(encoded), out.hidden_states[cut], torch.as_tensor(rows)))
        pooled = pool_states(out.last_hidden_state, encoded["attention_mask"], pooling).float().cpu()
        if reference is None:
            reference, features = out.last_hidden_state, torch.zeros(len(texts), pooled.size(-1))
        features[torch.as_tensor(rows)] = pooled
    return batches, features, reference


def _readable_names(classes: list[int], class_names: Mapping[int, str] | Sequence[str] | None) -> dict[int, str]:
    """Each class's label name read as text (`label_text`), for the classes whose name says something; {} when no
    names are given or all are bare numbers. ``class_names`` maps class ids to names or lists them by class id."""
    if class_names is None:
        return {}
    if isinstance(class_names, (str, bytes)) or not isinstance(class_names, (Mapping, Sequence)):
        raise ValueError("shape_encoder: class_names must map each class id to its label name ({0: 'card_lost', ...})"
                         f" or list the names by class id; got {type(class_names).__name__}.")
    if not isinstance(class_names, Mapping):
        class_names = dict(enumerate(class_names))
    if not any(c in class_names for c in classes):
        raise ValueError(f"shape_encoder: class_names names none of the label ids {classes[:5]}... (its keys are "
                         f"{list(class_names)[:5]}...): key it by the same integer ids as labels, or pass "
                         "class_names=None to shape without names.")
    texts = {c: label_text(class_names[c]) for c in classes if c in class_names}
    texts = {c: text for c, text in texts.items() if text}
    return texts if texts and names_say_something(list(texts.values())) else {}


@torch.no_grad()
def _cache_name_states(backbone, tokenizer, classes: list[int], texts: dict[int, str], cut: int, max_length: int,
                       pooling: str):
    """For the label names ``texts`` (class id → name read as text): (tokenized inputs, states after layer ``cut``,
    each of ``classes``' row among them or -100 where its class has no name), and the names' pooled features
    before shaping; None without names."""
    if not texts:
        return None
    named = list(texts)
    encoded = tokenizer([texts[c] for c in named], padding=True, padding_side="right", truncation=True,
                        max_length=max_length, return_tensors="pt").to(next(backbone.parameters()).device)
    out = backbone(**encoded, output_hidden_states=True)
    rows = torch.as_tensor([named.index(c) if c in texts else IGNORE_INDEX for c in classes])
    pooled = pool_states(out.last_hidden_state, encoded["attention_mask"], pooling).float().cpu()
    return (dict(encoded), out.hidden_states[cut], rows), pooled


def class_means(features: torch.Tensor, targets: torch.Tensor, classes: int) -> torch.Tensor:
    """[classes, D]: per class, the sum of its examples' unit-length features (its mean's direction)."""
    return torch.zeros(classes, features.size(1)).index_add_(0, targets, F.normalize(features, dim=-1))


def name_agreement(name_features: torch.Tensor, rows: torch.Tensor, class_means: torch.Tensor) -> float:
    """The share of named classes whose name's nearest class mean (cosine) is its own class's: whether the names
    say, to this encoder, which class is which. ``rows``: each class's row in ``name_features`` (-100: no name)."""
    named = (rows != IGNORE_INDEX).nonzero().squeeze(1)
    cos = F.normalize(name_features[rows[named]], dim=-1) @ F.normalize(class_means, dim=-1).T
    return float((cos.argmax(1) == named).float().mean())


def shape_encoder(backbone: nn.Module, tokenizer, texts: Sequence[str], labels: Sequence[int], *,
                  class_names: Mapping[int, str] | Sequence[str] | None = None,
                  top_layers: int = SHAPING_DEFAULTS.top_layers, epochs: int = SHAPING_DEFAULTS.epochs,
                  learning_rate: float = SHAPING_DEFAULTS.learning_rate, pooling: str = "mean",
                  batch_size: int = 64, scale: float = 20.0, max_length: int = 128, seed: int = 0,
                  min_name_agreement: float = NAME_AGREEMENT,
                  on_epoch_end: Callable[[int], None] | None = None) -> ShapingResult:
    """Fine-tune ``backbone``'s top ``top_layers`` layers in place, so that its pooled features separate the
    classes of ``labels``; returns each epoch's mean training loss and whether the label names were aligned
    (`ShapingResult`).

    Args:
        backbone: a transformers `AutoModel` encoder with a stack of layers of its own (BERT, RoBERTa, MiniLM,
            MPNet, DistilBERT, DeBERTa, ModernBERT, ...; not ALBERT, whose passes share one layer); left in eval
            mode.
        tokenizer: the backbone's tokenizer.
        texts / labels: the meta-training examples and their class ids (any integers, at least two classes).
            Never the meta-validation or -test classes: shaping on them would leak the classes being evaluated.
        class_names: each class id's label name (``{3: "card_lost"}``, or a list by class id), for a model that
            reads label names (`SIBConfig.use_label_names`). Each example is then also classified among the
            *names'* features, run through the same layers, so the encoder learns to put a class's name where its
            examples lie: on new classes, the name becomes a better stand-in for a labelled example. Names that
            cannot be read (blank, or all bare numbers) are left out, and all are left out unless at least
            ``min_name_agreement`` of them point to their own class on the pretrained encoder (`name_agreement`).
        top_layers: how many of the top layers are trained; the rest are run once and cached.
        epochs: passes over the texts. The defaults (``SHAPING_DEFAULTS``) were chosen on meta-validation classes
            (benchmarks/results/shaping_sweep.md).
        learning_rate: AdamW rate of the encoder layers (the classifier's weights use 1e-3).
        pooling: how token states become a sequence feature, as the few-shot model pools (``SIBConfig.pooling``).
        min_name_agreement: the share of names that must point to their own class for names to be aligned
            (default ``NAME_AGREEMENT``; 0 aligns any readable names, as benchmarks/shaping_names.py does to
            measure what names that say nothing cost).
        scale: the cosine classifier's fixed temperature; 20 is a common choice for normalised-softmax training.
        on_epoch_end: called with the number of epochs done after each one, the encoder in eval mode: to score
            the shaped features on held-out classes epoch by epoch (benchmarks/shaping_sweep.py) without
            shaping again for every epoch count.
    """
    layers = encoder_layers(backbone)
    check_tokenizer(tokenizer, "shape_encoder")
    check_settings("shape_encoder", SimpleNamespace(top_layers=top_layers, epochs=epochs, learning_rate=learning_rate,
                                                    batch_size=batch_size, scale=scale, max_length=max_length,
                                                    seed=seed, min_name_agreement=min_name_agreement,
                                                    pooling=pooling), {
        "pooling": POOLINGS,
        "top_layers": Number(int, 1, len(layers), example="2", why=f"the encoder has {len(layers)} layers"),
        "epochs": EPOCHS, "learning_rate": POSITIVE_FLOAT, "batch_size": POSITIVE_INT, "scale": POSITIVE_FLOAT,
        "max_length": max_length_rule(tokenizer), "seed": SEED,
        "min_name_agreement": Number(float, 0, 1, example="0.5", why="a share of the names")})
    texts = check_texts(texts, "shape_encoder: texts")
    if isinstance(labels, (str, bytes)) or len(labels) != len(texts):
        raise ValueError(f"shape_encoder: labels must be one class id per text ({len(texts)}); got "
                         f"{len(labels) if not isinstance(labels, (str, bytes)) else 'a string'}.")
    classes = sorted(set(labels))
    if len(classes) < 2:
        raise ValueError(f"shape_encoder needs at least two classes to separate; the labels hold {classes}.")
    name_texts = _readable_names(classes, class_names)
    targets = torch.as_tensor([classes.index(label) for label in labels])
    cut = len(layers) - top_layers
    backbone.eval()
    batches, features, reference = _cache_lower_states(backbone, tokenizer, texts, cut, batch_size, max_length,
                                                       pooling)
    cached_names = _cache_name_states(backbone, tokenizer, classes, name_texts, cut, max_length, pooling)
    top = layers[cut:]
    first_inputs, first_states, _ = batches[0]
    with torch.no_grad():
        run_top = TopLayers(backbone, cut, layer_output_width(layers[cut - 1], backbone, first_inputs) if cut else None)
        if not torch.allclose(run_top(first_inputs, first_states), reference, atol=1e-4, rtol=1e-3):
            raise ValueError(f"Running the top {top_layers} layers of {type(backbone).__name__} on their cached inputs "
                             "does not reproduce its output (its encoder hands its layers something else between "
                             "them), so shaping would train on wrong features. Train without shaping "
                             "(shape_top_layers=0).")
    # The classifier starts at the class means, so the first steps refine the encoder instead of fitting noise.
    means = class_means(features, targets, len(classes))
    names, agreement = None, None  # (states, mask, rows) of the names that shaping aligns; their agreement
    if cached_names is not None:
        agreement = name_agreement(cached_names[1], cached_names[0][2], means)
        if agreement >= min_name_agreement:
            names = cached_names[0]
            logger.info("Shaping with the label names: %.0f%% of them point to their own class on the pretrained "
                        "encoder.", 100 * agreement)
        else:
            logger.info("Shaping without the label names: only %.0f%% of them point to their own class on the "
                        "pretrained encoder (at least %.0f%% needed), so they say little about their classes.",
                        100 * agreement, 100 * min_name_agreement)
    weights = nn.Parameter(F.normalize(means, dim=-1).to(reference.device, reference.dtype))
    trainable = list(top.parameters())
    # only the top layers train: the embeddings run again at every step (`TopLayers`), without a gradient
    shaped = {id(p) for p in trainable}
    was_trainable = [(p, p.requires_grad) for p in backbone.parameters()]
    for p, _ in was_trainable:
        p.requires_grad_(id(p) in shaped)
    optimizer = torch.optim.AdamW([{"params": trainable, "lr": learning_rate}, {"params": [weights], "lr": 1e-3}],
                                  weight_decay=0.01)
    generator = torch.Generator().manual_seed(seed)
    losses = []
    top.train()
    try:
        for _ in tqdm(range(epochs), desc="Shaping the encoder", leave=False):
            total = 0.0
            for index in torch.randperm(len(batches), generator=generator).tolist():
                inputs, states, rows = batches[index]
                pooled = pool_states(run_top(inputs, states), inputs["attention_mask"], pooling)
                logits = scale * F.normalize(pooled, dim=-1) @ F.normalize(weights, dim=-1).T
                loss = F.cross_entropy(logits, targets[rows].to(logits.device))
                if names is not None:
                    loss = loss + _name_alignment_loss(run_top, names, pooled, targets[rows], scale, pooling)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                total += loss.item()
            losses.append(total / len(batches))
            if on_epoch_end is not None:
                top.eval()
                with torch.no_grad():
                    on_epoch_end(len(losses))
                top.train()
    finally:
        top.eval()
        for p, flag in was_trainable:
            p.requires_grad_(flag)
    return ShapingResult(losses, agreement, names is not None)


def _name_alignment_loss(run_top: TopLayers, names, pooled: torch.Tensor, targets: torch.Tensor, scale: float,
                         pooling: str) -> torch.Tensor:
    """Cross-entropy of classifying each example among the label names' features (computed by the layers being
    shaped, so names move towards their examples as well); examples whose class has no name do not count."""
    inputs, states, rows = names
    named = pool_states(run_top(inputs, states), inputs["attention_mask"], pooling)
    logits = scale * F.normalize(pooled, dim=-1) @ F.normalize(named, dim=-1).T
    wanted = rows[targets].to(logits.device)
    if bool((wanted == IGNORE_INDEX).all()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits, wanted, ignore_index=IGNORE_INDEX)
