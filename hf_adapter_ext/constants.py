"""Constants shared across the package."""

IGNORE_INDEX = -100  # label id of positions the loss skips (transformers' and torch's cross-entropy convention)
