"""An encoder's stack of layers, found in any architecture, for the features that train only its top layers: the
extension's ``trainable="top"`` and the shaping of SIB's encoder."""

from __future__ import annotations

from torch import nn


def layer_stack(encoder: nn.Module) -> nn.ModuleList | None:
    """The encoder's list of layers (the longest ``nn.ModuleList``: ``encoder.layer`` in BERT, ``transformer.layer``
    in DistilBERT, ``layers`` in ModernBERT), or None."""
    stacks = [m for m in encoder.modules() if isinstance(m, nn.ModuleList) and len(m) > 0]
    return max(stacks, key=len) if stacks else None


def own_layer_stack(encoder: nn.Module, owner: str, fix: str) -> nn.ModuleList:
    """The encoder's stack of layers, refused where training its top layers would not train just the top: an
    encoder without one (a BiLSTM) would train nothing, and one whose passes share a layer (ALBERT) every pass.

    Args:
        owner: the feature that asks, first in the message (``"trainable='top'"``).
        fix: what to do instead, ending the message.
    """
    stack = layer_stack(encoder)
    name = type(encoder).__name__
    if stack is None:
        raise ValueError(f"{owner}: the encoder ({name}) has no stack of layers to train the top of; {fix}.")
    passes = getattr(getattr(encoder, "config", None), "num_hidden_layers", None)
    if isinstance(passes, int) and len(stack) < passes:
        raise ValueError(f"{owner}: the encoder ({name}) runs {passes} layer passes through {len(stack)} shared "
                         f"layer(s), so training the top one trains every pass; {fix}.")
    return stack


def top_layers(encoder: nn.Module, count: int, owner: str, fix: str) -> list[nn.Module]:
    """The top ``count`` layers of the encoder's own stack (`own_layer_stack`); none for ``count`` 0, whatever the
    encoder (a BiLSTM-CRF's "top" is then its output layer alone, as in the paper's grid)."""
    if count == 0:
        return []
    stack = own_layer_stack(encoder, owner, fix)
    if count > len(stack):
        raise ValueError(f"{owner}: num_top_layers={count}, but the encoder has {len(stack)} layers; use at most "
                         f"{len(stack)}, or {fix}.")
    return list(stack[len(stack) - count :])
