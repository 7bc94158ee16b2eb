"""A digest of a model's weights, so that a saved part refuses a base model other than the one it was trained on.

An adapter folder references its frozen source model, and a SIB head its frozen encoder, by name only: neither is
copied. Architecture, labels and sizes can all match while the weights do not (a source fine-tuned once more and
saved under the same name, another seed's checkpoint, an updated Hub repo). The saved part would then load cleanly
and answer wrongly, so the digest of the weights it was trained on is saved with it and compared on loading.
"""

from __future__ import annotations

import hashlib
import logging

import torch
from torch import nn

logger = logging.getLogger(__name__)


def weights_digest(model: nn.Module, skip: tuple[str, ...] = ()) -> str | None:
    """``"<dtypes>:<sha256>"`` of ``model``'s parameter values and shapes, in their registration order (names are
    left out: PEFT renames wrapped layers). None when a parameter has no data to read (the ``meta`` device).

    Args:
        model: the model whose weights the saved part depends on.
        skip: parameters whose name contains one of these are left out: weights the saved part never reads and
            that may differ between loads (an encoder's pooler, which ``AutoModel`` initialises at random when the
            checkpoint has none; LoRA weights injected into a shared source).
    """
    digest, dtypes = hashlib.sha256(), set()
    for name, parameter in model.named_parameters():
        if any(part in name for part in skip):
            continue
        if parameter.device.type == "meta":
            return None
        values = parameter.detach().cpu().contiguous()
        dtypes.add(str(values.dtype).removeprefix("torch."))
        digest.update(repr(tuple(values.shape)).encode())
        digest.update(values.view(-1).view(torch.uint8).numpy())
    return f"{'+'.join(sorted(dtypes))}:{digest.hexdigest()}"


def check_weights_digest(expected: str | None, found: str | None, what: str, fix: str) -> None:
    """Refuse weights whose digest differs from ``expected`` (the one saved with the part trained on them).

    Args:
        expected: the saved digest; None for folders saved before digests were kept (not checked).
        found: `weights_digest` of the weights given now; None when they could not be read (not checked).
        what: the model they belong to, as the message names it (e.g. "the source model").
        fix: what to load instead, for the message.
    """
    if expected is None or found is None or expected == found:
        return
    expected_dtype, found_dtype = expected.split(":", 1)[0], found.split(":", 1)[0]
    if expected_dtype != found_dtype:  # another precision of the same weights: the digest cannot tell
        logger.warning("%s is loaded in %s but was %s when this was trained, so its weights cannot be checked "
                       "against the ones it was trained on.", what[0].upper() + what[1:], found_dtype, expected_dtype)
        return
    raise ValueError(f"The weights of {what} differ from those this was trained on (another checkpoint, a further "
                     f"fine-tuned copy, an updated repo, or another model of the same sizes), so its predictions "
                     f"would be wrong without any error. {fix}")
