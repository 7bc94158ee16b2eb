"""The README's Python recipes run as written: the first code a user copies must work.

Hub ids become local folders (the tests are offline) and the Hub uploads are recorded instead of sent; the rest of
each block runs unchanged, on the toy corpus and a tiny random-weight source. (Recipe 3, SIB, runs in
test_meta_script.py; the command line in test_extend_ner.py.)
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from huggingface_hub import HfApi
from transformers import TrainingArguments

from .conftest import tiny_source
from .helpers import toy_dataset

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def recipe(title: str) -> str:
    """The Python blocks under a README section, in order, as one program."""
    section = README[README.index(title):]
    section = section[: section.index("\n## ", 1)]
    return "\n".join(re.findall(r"```python\n(.*?)```", section, flags=re.S))


@pytest.fixture
def uploads(monkeypatch) -> list[tuple[str, list[str]]]:
    """Every upload the recipes make: (repo id, files), instead of sending them."""
    sent = []

    def create_repo(self, repo_id, **kwargs):
        return type("RepoUrl", (), {"repo_id": repo_id})()

    def upload_folder(self, repo_id, folder_path, **kwargs):
        sent.append((repo_id, sorted(p.name for p in Path(folder_path).iterdir())))
        return type("Commit", (), {"commit_url": f"https://hub/{repo_id}/commit/1",
                                   "pr_url": f"https://hub/{repo_id}/discussions/1"})()

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    return sent


def test_recipes_1_and_2_run_as_written(tmp_path, tokenizer, uploads, monkeypatch):
    source_dir = tmp_path / "conll-tagger"
    tiny_source("bert", tokenizer.vocab_size).save_pretrained(source_dir)
    tokenizer.save_pretrained(source_dir)
    program = recipe("## Recipe 1: extend a tagger") + recipe("## Recipe 2: consolidate, then extend again")
    program = program.replace('"me/conll-tagger"', repr(str(source_dir)))
    program = program.replace('pipeline("token-classification", model="me/ner-plus-loc-plain"',
                              'pipeline("token-classification", model="ner-plus-loc-plain"')
    program = program.replace('pipeline(model="me/ner-plus-loc-plain"', 'pipeline(model="ner-plus-loc-plain"')
    data = toy_dataset(tokenizer)
    names = {"tok": tokenizer, "train": data, "dev": data,
             "news_sentences": ["John flew to Paris .", "Mary rose ."],
             "args": TrainingArguments(output_dir=str(tmp_path / "out"), max_steps=3, report_to="none",
                                       use_cpu=True, disable_tqdm=True)}
    monkeypatch.chdir(tmp_path)
    exec(compile(program, "README.md", "exec"), names)  # our own README
    assert [repo for repo, _ in uploads] == ["me/ner-plus-loc", "me/ner-plus-loc-plain"]
    assert "adapter_config.json" in uploads[0][1] and "config.json" in uploads[1][1]
    labels = set(names["next_step"].config.id2label.values())
    assert {"B-LOC", "B-PRODUCT", "I-PRODUCT"} <= labels
    assert names["tagger"]("John lives in Paris") is not None
    assert os.path.isdir(tmp_path / "ner-plus-loc") and os.path.isdir(tmp_path / "ner-plus-loc-plain")
