"""Model cards rendered from `model_cards/` templates, and uploads through `huggingface_hub`."""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from huggingface_hub import HfApi, ModelCard, ModelCardData

from .adapter.labels import entity_types

_TEMPLATE_DIRS = (
    Path(__file__).resolve().parent.parent / "model_cards",  # source checkout / editable install
    Path(sys.prefix) / "share" / "hf_adapter_ext" / "model_cards",  # wheel install (data-files)
)


def template_path(name: str) -> Path:
    for folder in _TEMPLATE_DIRS:
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"Model card template {name!r} not found in {[str(d) for d in _TEMPLATE_DIRS]}.")


def render_adapter_card(config) -> str:
    """The README.md of a saved NeuralAdapterModel: base model, old/new labels, mode and metrics."""
    old_types, new_types = entity_types(config.old_labels or []), entity_types(config.new_labels)
    data = ModelCardData(
        library_name="hf_adapter_ext",
        base_model=config.base_model_name_or_path or None,
        pipeline_tag="token-classification",
        tags=["hf_adapter_ext", "neural-adapter", "token-classification", "ner"],
    )
    card = ModelCard.from_template(
        data,
        template_path=str(template_path("neural_adapter.md")),
        config=config,
        old_types=old_types,
        new_types=new_types,
        metrics=config.metrics or {},
    )
    return str(card)


def push_folder_to_hub(
    save: Callable[[str], None], repo_id: str, private: bool | None = None, token: str | None = None,
    commit_message: str = "Upload with hf_adapter_ext", revision: str | None = None,
) -> str:
    """Create ``repo_id`` if needed and upload what ``save(folder)`` writes; returns the commit URL."""
    api = HfApi(token=token)
    repo = api.create_repo(repo_id, private=private, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder:
        save(folder)
        commit = api.upload_folder(
            repo_id=repo.repo_id, folder_path=folder, commit_message=commit_message, revision=revision
        )
    return getattr(commit, "commit_url", str(commit))
