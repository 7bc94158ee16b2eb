"""Saving and loading extended models in PEFT's layout: JSON + safetensors only, nothing unpickled."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path

import torch
from huggingface_hub import snapshot_download
from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError, RepositoryNotFoundError
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoModelForTokenClassification

from ..hub import check_folder_or_hub_id, check_model_location, render_adapter_card
from ..modeling.fingerprint import check_weights_digest
from ..modeling.tags import source_labels
from ..validation import check_flag
from . import anatomy
from .config import PEFT_TYPE, NeuralAdapterConfig

CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "adapter_model.safetensors"
CARD_NAME = "README.md"
# The name Trainer loads for load_best_model_at_end / resume_from_checkpoint: a hard link to WEIGHTS_NAME. Folders
# of hf_adapter_ext 0.1 Trainer checkpoints hold the whole model under this name, and no CONFIG_NAME.
TRAINER_WEIGHTS_NAME = "model.safetensors"
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


def save_adapter(config: NeuralAdapterConfig, state: dict[str, torch.Tensor], directory: Path,
                 metrics: dict | None = None, trainer_link: bool = True) -> None:
    """Write ``config``, the trained ``state`` and a model card to ``directory``.

    Args:
        config: the extended model's config; only read (``metrics`` go into the saved copy).
        state: what trains (``NeuralAdapterModel.state_dict()``).
        directory: the folder, created if missing.
        metrics: evaluation results for the card.
        trainer_link: also expose the weights under Trainer's file name (a hard link: no extra bytes). Off for
            Hub uploads, which would send the bytes twice.
    """
    directory.mkdir(parents=True, exist_ok=True)
    if metrics is not None:  # recorded in the saved copy; the model's own config is only read
        config = dataclasses.replace(config, metrics=metrics)
    config.save_pretrained(str(directory))
    weights = directory / WEIGHTS_NAME
    save_file(state, str(weights), metadata={"format": "pt"})
    (directory / CARD_NAME).write_text(render_adapter_card(config))
    if trainer_link:
        link = directory / TRAINER_WEIGHTS_NAME
        link.unlink(missing_ok=True)
        try:
            os.link(weights, link)
        except OSError:  # a file system without hard links
            shutil.copyfile(weights, link)


def resolve_folder(dir_or_repo, files: list[str], **hub_kwargs) -> Path:
    """A local folder as is; otherwise those ``files`` of the Hub repo (never a pickle)."""
    if not isinstance(dir_or_repo, (str, os.PathLike)):
        raise TypeError(f"Expected a folder path or a Hub repo id, got {type(dir_or_repo).__name__}.")
    path = Path(dir_or_repo)
    if path.is_dir():
        return path
    if path.exists():
        raise ValueError(f"{path} is a file; pass the folder that holds {files}.")
    text = check_folder_or_hub_id(dir_or_repo)
    try:
        return Path(snapshot_download(text, allow_patterns=files, **hub_kwargs))
    except (HFValidationError, LocalEntryNotFoundError, RepositoryNotFoundError) as err:
        raise ValueError(
            f"{text!r} is neither a local folder nor a Hub repo that could be downloaded ({type(err).__name__}). "
            "Check the folder path, or the repo id, your login (`hf auth login`) and network (HF_HUB_OFFLINE)."
        ) from err


def _trainer_state(name: str) -> bool:
    """Trainer's own pickles in a checkpoint (optimizer, scheduler, RNG, arguments): never opened here."""
    return name in {"optimizer.pt", "scheduler.pt", "scaler.pt", "training_args.bin"} or (
        name.startswith("rng_state") and name.endswith(".pth"))


def refuse_pickles(directory: Path) -> None:
    """Refuse a folder that holds pickled weights: hf_adapter_ext reads safetensors only, and a pickle beside them
    means the folder is not what it seems."""
    pickles = sorted(p.name for p in directory.iterdir() if p.suffix in _PICKLE_SUFFIXES and not _trainer_state(p.name))
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
        model_there = (directory / "config.json").is_file()
        raise ValueError(f"{config_path} is missing: {directory} is not a saved NeuralAdapterModel" + (
            " but a model (config.json). The source comes first, then the adapter's folder: "
            "NeuralAdapterModel.from_pretrained(source, adapter_dir)." if model_there else "."))
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


def is_legacy_checkpoint(directory: Path) -> bool:
    """A Trainer checkpoint of hf_adapter_ext 0.1: no adapter_config.json, and the whole model, source included,
    in model.safetensors."""
    weights = directory / TRAINER_WEIGHTS_NAME
    if (directory / CONFIG_NAME).is_file() or not weights.is_file():
        return False
    try:
        with safe_open(str(weights), framework="pt") as f:
            return any(key.startswith("source.") for key in f.keys())
    except (SafetensorError, OSError):
        return False


# The huggingface_hub download arguments from_pretrained passes on for a Hub repo (a local folder needs none).
HUB_DOWNLOAD_ARGUMENTS = frozenset({"revision", "token", "cache_dir", "force_download", "local_files_only", "proxies",
                                    "etag_timeout", "endpoint"})


def check_load_arguments(hub_kwargs: dict) -> None:
    """Refuse ``from_pretrained`` keywords that are not download arguments: they used to be dropped without a word
    for a local folder (``dtype=torch.bfloat16`` loaded float32) and to fail inside ``snapshot_download`` for a
    Hub repo."""
    unknown = sorted(set(hub_kwargs) - HUB_DOWNLOAD_ARGUMENTS)
    if not unknown:
        return
    loading = [name for name in unknown if name in ("dtype", "torch_dtype", "device_map", "low_cpu_mem_usage",
                                                     "attn_implementation", "quantization_config", "trust_remote_code")]
    if loading:
        raise TypeError(f"NeuralAdapterModel.from_pretrained does not take {loading}: they are the source's loading "
                        f"options. Load the source with them (AutoModelForTokenClassification.from_pretrained(id, "
                        f"{loading[0]}=...)), pass it as the first argument, and move the loaded model with "
                        "model.to(...).")
    raise TypeError(f"NeuralAdapterModel.from_pretrained got unexpected arguments {unknown}; besides config= and "
                    f"is_trainable=, it takes the Hub download arguments {sorted(HUB_DOWNLOAD_ARGUMENTS)}.")


def load_adapter(cls, source, dir_or_repo, config: NeuralAdapterConfig | None = None, is_trainable: bool = False,
                 **hub_kwargs):
    """See ``NeuralAdapterModel.from_pretrained``."""
    check_load_arguments(hub_kwargs)
    check_flag("from_pretrained", "is_trainable", is_trainable)
    adapter_alone = dir_or_repo is None  # from_pretrained(adapter): the source is the one the adapter names
    if adapter_alone and isinstance(source, torch.nn.Module):
        raise TypeError("NeuralAdapterModel.from_pretrained got a source model but no adapter: pass the folder (or "
                        "Hub repo) that save_pretrained wrote as the second argument: from_pretrained(source, "
                        "adapter_dir).")
    if adapter_alone:
        dir_or_repo, source = source, None
    directory = resolve_folder(dir_or_repo, [CONFIG_NAME, WEIGHTS_NAME, CARD_NAME], **hub_kwargs)
    if config is not None and not isinstance(config, NeuralAdapterConfig):
        raise TypeError(f"config must be a NeuralAdapterConfig, got {type(config).__name__}.")
    legacy = is_legacy_checkpoint(directory)
    if legacy and config is None:
        raise ValueError(
            f"{directory} is a Trainer checkpoint written by hf_adapter_ext 0.1 (its {TRAINER_WEIGHTS_NAME} holds the "
            "whole model, source included, and there is no adapter_config.json). Convert it once: "
            "NeuralAdapterModel.from_pretrained(source, folder, config=<the NeuralAdapterConfig you trained with>)"
            ".save_pretrained(new_folder)."
        )
    if config is not None and (directory / CONFIG_NAME).is_file():
        raise ValueError(f"{directory} has its own {CONFIG_NAME}; drop config=, which only converts hf_adapter_ext "
                         "0.1 checkpoints that lack one.")
    config = config if legacy else read_adapter_config(directory)
    if adapter_alone:
        source = config.base_model_name_or_path if config is not None else None
        if not source:
            raise ValueError(f"{directory} does not name its source model (no base_model_name_or_path in "
                             f"{CONFIG_NAME}); pass it first: NeuralAdapterModel.from_pretrained(source, "
                             f"{str(dir_or_repo)!r}).")
    if isinstance(source, (str, os.PathLike)):  # ``revision`` names a revision of the adapter's repo, not the source's
        check_model_location(source, "The source model: " if not adapter_alone else
                             f"The source model that {CONFIG_NAME} names (base_model_name_or_path): ",
                             "Pass the source model (or its folder or Hub id) first, then the adapter's folder: "
                             "NeuralAdapterModel.from_pretrained(source, adapter_dir).")
        source = AutoModelForTokenClassification.from_pretrained(
            source, **{k: v for k, v in hub_kwargs.items() if k != "revision"})
    if not isinstance(source, nn.Module) or not hasattr(source, "config"):
        raise TypeError(f"from_pretrained's first argument is the source model (AutoModelForTokenClassification."
                        f"from_pretrained(...)) or its folder or Hub id; got {type(source).__name__}.")
    if not legacy:
        check_source_matches(source, config)
    state = read_weights(directory / (TRAINER_WEIGHTS_NAME if legacy else WEIGHTS_NAME))
    model = cls(source, config)  # computes the source's digest
    if not legacy:
        check_weights_digest(config.source_digest, model.peft_config.source_digest, "the source model",
                             "Load the adapter onto the source it was trained from" + (
                                 f" ({config.base_model_name_or_path}, at the same revision)."
                                 if config.base_model_name_or_path else "."))
    expected = model.state_dict()
    if legacy:  # the whole model was saved: keep what the adapter owns (the source is the one given)
        state = {k: v for k, v in state.items() if k in expected}
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    wrong_shape = [k for k in set(expected) & set(state) if expected[k].shape != state[k].shape]
    if missing or unexpected or wrong_shape:
        raise ValueError(
            f"{directory / WEIGHTS_NAME} does not fit this adapter config (missing {missing[:5]}, unexpected "
            f"{unexpected[:5]}, wrong shape {wrong_shape[:5]}); the files are corrupt or from another model."
        )
    model.load_state_dict(state)
    model.has_trained = True
    return model.train(is_trainable)
