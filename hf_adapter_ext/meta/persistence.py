"""Saving and loading SIB models: config.json + model.safetensors (+ README.md), nothing unpickled."""

from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import save_file

from ..adapter.persistence import read_weights, refuse_pickles, resolve_folder
from .config import SIBConfig

WEIGHTS_NAME = "model.safetensors"


def save_sib(model, directory: Path, metrics: dict | None = None) -> None:
    from ..hub import render_sib_card

    directory.mkdir(parents=True, exist_ok=True)
    model.config.save_pretrained(directory)
    prefixes = ("head.",) if model.config.freeze_backbone else ("head.", "backbone.")
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items() if k.startswith(prefixes)}
    save_file(state, str(directory / WEIGHTS_NAME), metadata={"format": "pt"})
    (directory / "README.md").write_text(render_sib_card(model.config, metrics))


def load_sib(cls, directory_or_repo, backbone=None, **hub_kwargs):
    directory = resolve_folder(directory_or_repo, ["config.json", WEIGHTS_NAME, "README.md"], **hub_kwargs)
    refuse_pickles(directory)
    if not (directory / "config.json").is_file():
        raise ValueError(f"{directory / 'config.json'} is missing: not a saved SIBForFewShotClassification.")
    config = SIBConfig.from_pretrained(directory)
    if "support_gradient" not in json.loads((directory / "config.json").read_text()):
        config.support_gradient = False  # saved before the option existed: the reference refinement
    if backbone is None:
        if not config.backbone_name_or_path:
            raise ValueError("The saved config names no backbone; pass backbone=AutoModel.from_pretrained(...).")
        from transformers import AutoModel

        backbone = AutoModel.from_pretrained(config.backbone_name_or_path, **hub_kwargs)
    model = cls(backbone, config)
    state = read_weights(directory / WEIGHTS_NAME)
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if k.startswith("head.")]
    if missing or result.unexpected_keys:
        raise ValueError(f"{directory / WEIGHTS_NAME} does not fit this SIB config (missing {missing[:5]}, "
                         f"unexpected {result.unexpected_keys[:5]}).")
    return model.eval()
