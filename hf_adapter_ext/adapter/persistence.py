"""Saving and loading extended models in PEFT's layout: JSON + safetensors only, nothing unpickled."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from . import anatomy
from .config import PEFT_TYPE, NeuralAdapterConfig
from .labels import source_labels

CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "adapter_model.safetensors"
CARD_NAME = "README.md"
TRAINER_WEIGHTS_NAME = "model.safetensors"  # what Trainer writes for a model that is not a PreTrainedModel
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")  # "name" or "namespace/name"
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


def save_adapter(model, directory: Path, metrics: dict | None = None) -> None:
    from ..hub import render_adapter_card

    directory.mkdir(parents=True, exist_ok=True)
    config = model.peft_config
    if metrics is not None:
        config.metrics = metrics
    config.save_pretrained(str(directory))
    save_file(model.adapter_state_dict(), str(directory / WEIGHTS_NAME), metadata={"format": "pt"})
    (directory / CARD_NAME).write_text(render_adapter_card(config))


def resolve_folder(dir_or_repo, files: list[str], **hub_kwargs) -> Path:
    """A local folder as is; otherwise those ``files`` of the Hub repo (never a pickle)."""
    if not isinstance(dir_or_repo, (str, os.PathLike)):
        raise TypeError(f"Expected a folder path or a Hub repo id, got {type(dir_or_repo).__name__}.")
    path = Path(dir_or_repo)
    if path.is_dir():
        return path
    if path.exists():
        raise ValueError(f"{path} is a file; pass the folder that holds {files}.")
    text = str(dir_or_repo)
    if isinstance(dir_or_repo, os.PathLike) or not _HUB_ID.match(text):
        raise ValueError(
            f"{text} is not an existing folder (and not a Hub repo id like 'user/name'). Check the path: relative "
            f"paths start at {Path.cwd()}."
        )
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError, RepositoryNotFoundError

    try:
        return Path(snapshot_download(text, allow_patterns=files, **hub_kwargs))
    except (HFValidationError, LocalEntryNotFoundError, RepositoryNotFoundError) as err:
        raise ValueError(
            f"{text!r} is neither a local folder nor a Hub repo that could be downloaded ({type(err).__name__}). "
            "Check the folder path, or the repo id, your login (`hf auth login`) and network (HF_HUB_OFFLINE)."
        ) from err


def refuse_pickles(directory: Path) -> None:
    pickles = sorted(p.name for p in directory.iterdir() if p.suffix in _PICKLE_SUFFIXES)
    if pickles:
        raise ValueError(
            f"{directory} holds pickle files {pickles}; hf_adapter_ext never unpickles (it can run code). "
            "Remove them and keep only the JSON and safetensors files."
        )


def read_adapter_config(directory: Path) -> NeuralAdapterConfig:
    """Parse ``adapter_config.json`` strictly: right ``peft_type``, no unknown fields."""
    refuse_pickles(directory)
    config_path = directory / CONFIG_NAME
    if not config_path.is_file():
        raise ValueError(f"{config_path} is missing: {directory} is not a saved NeuralAdapterModel.")
    try:
        values = json.loads(config_path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{config_path} is not valid JSON ({err}); the adapter folder is corrupt.") from err
    if not isinstance(values, dict) or values.get("peft_type") != PEFT_TYPE:
        found = values.get("peft_type") if isinstance(values, dict) else type(values).__name__
        raise ValueError(f"{config_path} has peft_type={found!r}; expected {PEFT_TYPE!r} (a neural adapter).")
    unknown = sorted(set(values) - NeuralAdapterConfig.field_names())
    if unknown:
        raise ValueError(
            f"{config_path} has unknown fields {unknown}; it was written by another tool or a newer "
            "hf_adapter_ext. Upgrade hf_adapter_ext or remove those fields."
        )
    try:
        return NeuralAdapterConfig(**values)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{config_path}: {err} Fix that field in the file.") from None


def check_source_matches(source, config: NeuralAdapterConfig) -> None:
    """Refuse a source other than the one the adapter was trained on, before any weight is touched."""
    labels = source_labels(source.config)
    if labels != config.old_labels:
        raise ValueError(
            f"This adapter was trained on a source with labels {config.old_labels}, but the given source has "
            f"{labels}. Load it onto the same source model it was trained from."
        )
    expected, found = config.source_signature or {}, anatomy.signature(source)
    different = {k: (v, found.get(k)) for k, v in expected.items() if found.get(k) != v}
    if different:
        details = ", ".join(f"{k}: adapter expects {a!r}, source has {b!r}" for k, (a, b) in different.items())
        raise ValueError(f"The source model does not match the adapter's ({details}). Use the original source.")


def read_weights(path: Path) -> dict:
    if not path.is_file():
        raise ValueError(f"{path} is missing: save the model again with save_pretrained().")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise ValueError(f"{path} is not a readable safetensors file ({err}); the adapter folder is corrupt.") from err


def load_adapter(cls, source, dir_or_repo, config: NeuralAdapterConfig | None = None, **hub_kwargs):
    directory = resolve_folder(dir_or_repo, [CONFIG_NAME, WEIGHTS_NAME, CARD_NAME], **hub_kwargs)
    checkpoint = not (directory / CONFIG_NAME).is_file() and (directory / TRAINER_WEIGHTS_NAME).is_file()
    if checkpoint and config is None:
        raise ValueError(
            f"{directory} is a Trainer checkpoint (its {TRAINER_WEIGHTS_NAME} holds the whole model's weights, with "
            "no adapter_config.json). Load it with NeuralAdapterModel.from_pretrained(source, folder, "
            "config=<the NeuralAdapterConfig you trained with>), or call model.save_pretrained(...) after training."
        )
    if config is not None and not isinstance(config, NeuralAdapterConfig):
        raise TypeError(f"config must be a NeuralAdapterConfig, got {type(config).__name__}.")
    config = config if checkpoint else read_adapter_config(directory)
    if isinstance(source, str):
        from transformers import AutoModelForTokenClassification

        source = AutoModelForTokenClassification.from_pretrained(source, **hub_kwargs)
    if not checkpoint:
        check_source_matches(source, config)
    state = read_weights(directory / (TRAINER_WEIGHTS_NAME if checkpoint else WEIGHTS_NAME))
    model = cls(source, config)
    if checkpoint:  # the whole model was saved: keep what the adapter owns (the source is the one given)
        state = {k: v for k, v in state.items() if k in model.adapter_state_dict()}
    expected = model.adapter_state_dict()
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    wrong_shape = [k for k in set(expected) & set(state) if expected[k].shape != state[k].shape]
    if missing or unexpected or wrong_shape:
        raise ValueError(
            f"{directory / WEIGHTS_NAME} does not fit this adapter config (missing {missing[:5]}, unexpected "
            f"{unexpected[:5]}, wrong shape {wrong_shape[:5]}); the files are corrupt or from another model."
        )
    model.load_state_dict(state, strict=False)
    model.has_trained = True
    return model.eval()
