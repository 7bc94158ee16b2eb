"""Model cards rendered from `model_cards/` templates, and uploads through `huggingface_hub`."""

from __future__ import annotations

import os
import re
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from huggingface_hub import HfApi, ModelCard, ModelCardData
from transformers.dynamic_module_utils import custom_object_save

from .bio import bio_decoding_problem
from .modeling.tags import entity_types
from .pipelines import BIOTokenClassificationPipeline
from .validation import WrongKindError, check_flag, check_model, check_save_directory, check_tokenizer_matches

_TEMPLATE_DIRS = (
    Path(__file__).resolve().parent.parent / "model_cards",  # source checkout / editable install
    Path(sys.prefix) / "share" / "hf_adapter_ext" / "model_cards",  # wheel install (data-files)
)


# The task name under which a consolidated model carries `BIOTokenClassificationPipeline` (config.json's
# ``custom_pipelines``, as transformers' `Pipeline.save_pretrained` writes it for a registered pipeline).
BIO_PIPELINE_TASK = "bio-token-classification"
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")  # "name" or "namespace/name"


def hub_model_id(name_or_path: str | os.PathLike | None) -> str | None:
    """``name_or_path`` when others could load it from the Hub, else None: a card's ``base_model`` must never be
    a path on the machine that saved it (an existing local folder, an absolute path, ``./x``)."""
    if not name_or_path:
        return None
    text = str(name_or_path)
    if not HUB_ID.match(text) or Path(text).exists():
        return None
    return text


def check_folder_or_hub_id(dir_or_repo: str | os.PathLike, what: str = "") -> str:
    """``dir_or_repo`` as text if it is an existing folder or could be a Hub repo id; a path that is neither is
    refused here, before the Hub client reads it as a malformed repo id."""
    if not isinstance(dir_or_repo, (str, os.PathLike)):
        raise WrongKindError(f"{what}must be a folder path or a Hub repo id ('user/name'); got "
                             f"{type(dir_or_repo).__name__} {dir_or_repo!r:.60}.")
    text = str(dir_or_repo)
    if not Path(text).is_dir() and (isinstance(dir_or_repo, os.PathLike) or not HUB_ID.match(text)):
        raise ValueError(
            f"{what}{text} is not an existing folder (and not a Hub repo id like 'user/name'). Check the path: "
            f"relative paths start at {Path.cwd()}."
        )
    return text


# what a folder written by save_pretrained (a model's, or a tokenizer's alone) holds at least one of
_MODEL_OR_TOKENIZER_FILES = ("config.json", "tokenizer_config.json", "tokenizer.json")


def check_model_location(dir_or_repo: str | os.PathLike, what: str, fix: str) -> str:
    """:func:`check_folder_or_hub_id`, and a folder that holds only a neural adapter (``adapter_config.json``
    without ``config.json``) is refused where a model is expected: transformers would read it as a PEFT adapter
    and fail on its empty base model id ("Repo id must use alphanumeric chars ... ''")."""
    text = check_folder_or_hub_id(dir_or_repo, what)
    folder = Path(text)
    if folder.is_dir() and (folder / "adapter_config.json").is_file() and not (folder / "config.json").is_file():
        raise ValueError(f"{what}{text} holds a neural adapter (adapter_config.json), not a model. {fix}")
    if folder.is_dir() and not any((folder / name).is_file() for name in _MODEL_OR_TOKENIZER_FILES):
        # transformers' tokenizer would fail with "Couldn't instantiate the backend tokenizer from one of: ..."
        raise ValueError(f"{what}{text} is a folder without a model or a tokenizer in it (none of "
                         f"{list(_MODEL_OR_TOKENIZER_FILES)}): pass a folder that save_pretrained wrote. {fix}")
    return text


def template_path(name: str) -> Path:
    for folder in _TEMPLATE_DIRS:
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"Model card template {name!r} not found in {[str(d) for d in _TEMPLATE_DIRS]}.")


def render_card(template: str, card_data: ModelCardData, **context) -> str:
    """A model card from a template in ``model_cards/`` (Jinja, as `huggingface_hub.ModelCard` renders it)."""
    return str(ModelCard.from_template(card_data, template_path=str(template_path(template)), **context))


def _with_tags(own: list[str], extra: list[str] | str | None) -> list[str]:
    """A card's own tags, then the caller's (one tag or a list) that are not among them."""
    extra = [extra] if isinstance(extra, str) else extra or []
    return [*own, *[tag for tag in extra if tag not in own]]


def render_adapter_card(config, tags: list[str] | None = None) -> str:
    """The README.md of a saved NeuralAdapterModel: base model, old and new labels, mode and metrics; ``tags`` are
    added to its own."""
    data = ModelCardData(
        library_name="hf_adapter_ext",
        base_model=hub_model_id(config.base_model_name_or_path),
        pipeline_tag="token-classification",
        tags=_with_tags(["hf_adapter_ext", "neural-adapter", "token-classification", "ner"], tags),
    )
    return render_card(
        "neural_adapter.md", data, config=config, base_model=data.base_model, old_types=config.old_types,
        new_types=config.new_types, metrics=config.metrics or {},
    )


def render_sib_card(config, metrics: dict | None, tags: list[str] | None = None,
                    learned_inner_lr: float | None = None) -> str:
    """The README.md of a saved SIBForFewShotClassification; ``tags`` are added to its own, and
    ``learned_inner_lr`` is the step size the model ended with (the config holds its starting value)."""
    data = ModelCardData(
        library_name="hf_adapter_ext",
        base_model=hub_model_id(config.backbone_name_or_path),
        pipeline_tag="token-classification" if config.level == "token" else "text-classification",
        tags=_with_tags(["hf_adapter_ext", "few-shot", "meta-learning", "sib", "transductive"], tags),
    )
    return render_card("sib.md", data, config=config, base_model=data.base_model, metrics=metrics or {},
                       learned_inner_lr=config.inner_lr if learned_inner_lr is None else learned_inner_lr)


def render_consolidated_card(model) -> str:
    """The README.md of a consolidated model: how it was made, and what consolidation cost if measured."""
    report = getattr(model, "consolidation_report", None)
    if report is None:
        raise ValueError("This model has no consolidation report: save models made by NeuralAdapterModel.consolidate().")
    data = ModelCardData(
        library_name="transformers", base_model=hub_model_id(report.get("source")), pipeline_tag="token-classification",
        tags=["token-classification", "ner", "hf_adapter_ext", "neural-adapter", "consolidated"],
    )
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    return render_card("consolidated.md", data, report=report, architecture=type(model).__name__, labels=labels,
                       old_types=entity_types(report["old_labels"] or []), new_types=entity_types(report["new_labels"]),
                       bio_task=BIO_PIPELINE_TASK if bio_decoding_problem(labels) is None else None)


def ship_bio_pipeline(model, save_directory) -> None:
    """Put `BIOTokenClassificationPipeline`'s code (``pipelines.py`` and ``bio.py``) in a consolidated model's folder
    and name it in its config's ``custom_pipelines``, as transformers' `Pipeline.save_pretrained` does for a
    registered pipeline: ``pipeline(model=<folder or repo>, trust_remote_code=True)`` then decodes under BIO without
    hf_adapter_ext. ``pipeline("token-classification", model=...)`` stays transformers' own, token by token. Models
    whose labels BIO cannot decode carry nothing."""
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    if bio_decoding_problem(labels) is not None:
        return
    cls = BIOTokenClassificationPipeline
    model.config.custom_pipelines = {BIO_PIPELINE_TASK: {
        "impl": f"{cls.__module__.rsplit('.', 1)[-1]}.{cls.__name__}", "pt": ["AutoModelForTokenClassification"],
        "tf": [], "type": "text"}}
    custom_object_save(cls, save_directory)


def save_consolidated(model, save_directory, tokenizer=None) -> None:
    """Write a consolidated model as plain transformers files: config.json (extended labels), model.safetensors,
    the tokenizer's files when given, a README.md model card that says how it was made, and the code of its BIO
    decoding (`ship_bio_pipeline`)."""
    check_model(model, "save_consolidated")
    check_save_directory(save_directory, "save_consolidated")
    if tokenizer is not None and not callable(getattr(tokenizer, "save_pretrained", None)):
        raise TypeError(f"save_consolidated's tokenizer is the tokenizer itself (AutoTokenizer.from_pretrained(...)), "
                        f"saved beside the model; got {type(tokenizer).__name__}.")
    if tokenizer is not None:  # saved beside the model, another vocabulary's would read every text as other words
        check_tokenizer_matches(model.config, tokenizer, "save_consolidated")
    card = render_consolidated_card(model)
    Path(save_directory).mkdir(parents=True, exist_ok=True)
    ship_bio_pipeline(model, save_directory)
    model.save_pretrained(save_directory)
    if tokenizer is not None:
        tokenizer.save_pretrained(save_directory)
    (Path(save_directory) / "README.md").write_text(card)


def push_consolidated_to_hub(model, repo_id: str, tokenizer=None, **hub_kwargs) -> str:
    """:func:`save_consolidated` to a Hub repo, with :func:`push_folder_to_hub`'s arguments (create_pr, ...)."""
    check_model(model, "push_consolidated_to_hub")  # before any connection to the Hub
    return push_folder_to_hub(lambda folder: save_consolidated(model, folder, tokenizer), repo_id, **hub_kwargs)


# The arguments transformers' save_pretrained(..., push_to_hub=True) hands on to the upload.
PUSH_ARGUMENTS = ("repo_id", "commit_message", "commit_description", "private", "token", "revision", "create_pr")


def split_push_arguments(save_directory: str | os.PathLike, kwargs: dict) -> tuple[dict | None, dict]:
    """transformers' ``save_pretrained(folder, push_to_hub=True, repo_id=..., commit_message=...)`` as (the
    ``push_to_hub`` arguments, or None when not pushing; the other ``save_pretrained`` arguments). The repo id
    defaults to the folder's name, as in transformers. A model saves its folder, model card included, and then
    pushes: pushing first would upload the folder without its card."""
    kwargs = dict(kwargs)
    if not kwargs.pop("push_to_hub", False):
        return None, kwargs
    push = {name: kwargs.pop(name) for name in PUSH_ARGUMENTS if name in kwargs}
    push.setdefault("repo_id", Path(save_directory).name)
    return push, kwargs


def push_folder_to_hub(
    save: Callable[[str], None], repo_id: str, *, commit_message: str | None = None,
    commit_description: str | None = None, private: bool | None = None, token: str | bool | None = None,
    revision: str | None = None, create_pr: bool = False, repo_type: str = "model",
) -> str:
    """Create ``repo_id`` if needed and upload what ``save(folder)`` writes, with the arguments of transformers'
    ``push_to_hub`` (``create_pr=True`` opens a pull request instead of committing). Returns the commit (or PR)
    URL."""
    if not isinstance(repo_id, str) or not repo_id:
        raise ValueError(f"repo_id must be a Hub repo id like 'user/name'; got {repo_id!r}.")
    check_flag("push_to_hub", "create_pr", create_pr)
    if private is not None:
        check_flag("push_to_hub", "private", private)
    api = HfApi(token=token)
    repo = api.create_repo(repo_id, private=private, exist_ok=True, repo_type=repo_type)
    if revision is not None and not create_pr:
        api.create_branch(repo.repo_id, branch=revision, exist_ok=True, repo_type=repo_type)
    with tempfile.TemporaryDirectory() as folder:
        save(folder)
        commit = api.upload_folder(
            repo_id=repo.repo_id, folder_path=folder, commit_message=commit_message or "Upload with hf_adapter_ext",
            commit_description=commit_description, revision=revision, create_pr=create_pr, repo_type=repo_type,
        )
    return getattr(commit, "pr_url", None) or getattr(commit, "commit_url", str(commit))


class OwnModelCardMixin:
    """For a `transformers.Trainer` of a model with its own card: ``Trainer.push_to_hub`` (``push_to_hub=True``)
    writes a generic card ("fine-tuned version of ... on the None dataset") over the one the model's
    ``save_pretrained`` wrote. Here the model's card is written instead, with Trainer's ``tags`` added; Trainer's
    other card arguments (language, license, datasets) are not used by these cards."""

    def create_model_card(self, *args, tags: list[str] | str | None = None, **kwargs) -> None:
        if not self.is_world_process_zero():
            return
        model = self.accelerator.unwrap_model(self.model)
        (Path(self.args.output_dir) / "README.md").write_text(model.model_card(tags=tags))
