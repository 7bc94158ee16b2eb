"""BIO's constraints and the most probable tag sequence they allow, with nothing beyond numpy.

This module and `pipelines.py` are the code a consolidated model carries (`save_consolidated` copies both into its
folder), so that ``pipeline(model=<its folder or repo>, trust_remote_code=True)`` decodes under BIO where
hf_adapter_ext is not installed. They import nothing else from the package.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

_BIO_LABEL = re.compile(r"^[BI]-\S+$")


def is_bio_label(label: str) -> bool:
    """``B-<type>`` or ``I-<type>`` (capital prefix, a type with no spaces)."""
    return bool(_BIO_LABEL.match(label))


def bio_allowed_transitions(labels: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks of allowed ``(from, to)`` transitions and allowed start labels for BIO tags.

    ``I-X`` may only follow ``B-X`` or ``I-X`` and may not start a sequence.
    """
    n = len(labels)
    allowed = np.ones((n, n), dtype=bool)
    start = np.ones(n, dtype=bool)
    for j, to in enumerate(labels):
        if not to.startswith("I-"):
            continue
        entity = to[2:]
        start[j] = False
        for i, frm in enumerate(labels):
            allowed[i, j] = frm in (f"B-{entity}", f"I-{entity}")
    return allowed, start


def bio_decoding_problem(labels: Sequence[str]) -> str | None:
    """Why BIO decoding cannot serve these labels (not BIO at all, or an ``I-`` tag with no ``B-`` to open it), with
    the fix; None when it can."""
    if not any(is_bio_label(label) for label in labels):
        return (f"BIO decoding needs BIO labels ('B-PER', 'I-PER', 'O'); these are {list(labels)[:6]}. Tag token by "
                "token instead: decoding='argmax', or the plain pipeline('token-classification').")
    unopened = sorted(label for label in labels if label.startswith("I-") and f"B-{label[2:]}" not in labels)
    if unopened:
        return (f"BIO decoding: labels {unopened} have no B- tag to open them, so no entity of theirs could ever be "
                "predicted (IO tagging?). Decode such a model token by token: decoding='argmax', or the plain "
                "pipeline('token-classification').")
    return None


def check_bio_decodable(labels: Sequence[str]) -> None:
    """Refuse labels that BIO decoding cannot serve (`bio_decoding_problem`)."""
    problem = bio_decoding_problem(labels)
    if problem:
        raise ValueError(problem)


def bio_viterbi(log_probs: np.ndarray, allowed: np.ndarray, start: np.ndarray) -> list[int]:
    """The label ids of the most probable sequence that the masks allow, for one sentence's ``[length, labels]``
    log-probabilities (ties go to the lower id, as ``argmax`` does).

    Args:
        log_probs: each position's log-probabilities over the labels.
        allowed, start: `bio_allowed_transitions`' masks.
    """
    transitions = np.where(allowed, 0.0, -np.inf)
    score = np.where(start, log_probs[0], -np.inf)
    back = []
    for row in log_probs[1:]:
        total = score[:, None] + transitions  # [from, to]
        best = total.argmax(axis=0)
        back.append(best)
        score = total[best, np.arange(len(score))] + row
    path = [int(score.argmax())]
    for best in reversed(back):
        path.append(int(best[path[-1]]))
    return path[::-1]
