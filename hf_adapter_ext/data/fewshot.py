"""Few-shot NER corpora in the Few-NERD layouts (sentence files with IO tags, episode jsonl files)."""

from __future__ import annotations

import os
from pathlib import Path

from datasets import Dataset, Features, Sequence, Value

from .conll import read_conll


def fewnerd_sentences(path: str | os.PathLike) -> Dataset:
    """A Few-NERD-format sentence file (``token<TAB>tag``) as ``tokens`` + string IO ``tags``."""
    sentences = read_conll(path)
    if not sentences:
        raise ValueError(f"{path} holds no sentences.")
    features = Features({"tokens": Sequence(Value("string")), "tags": Sequence(Value("string"))})
    return Dataset.from_dict({"tokens": [s["tokens"] for s in sentences], "tags": [s["tags"] for s in sentences]},
                             features=features)


def few_tk_paths(data_dir: str | os.PathLike, setting: str = "inter") -> dict[str, Path]:
    """The files of a Few-TK-layout folder (``data_dir`` is the ``few-tk`` folder itself); a ``setting`` that is
    not one of its folders is refused with the ones it has."""
    root = Path(data_dir)
    if not (root / setting / "train.txt").is_file():
        settings = sorted(p.name for p in root.iterdir() if (p / "train.txt").is_file()) if root.is_dir() else []
        raise ValueError(f"few_tk_paths: there is no {setting}/train.txt in {root}. data_dir is the few-tk folder "
                         "itself (it holds inter/, intra/, ...)"
                         + (f"; the folders there with a train.txt: {settings}." if settings else "."))
    return {
        "train": root / setting / "train.txt",
        "validation": root / setting / "dev.txt",
        "test": root / setting / "test.txt",
        "test_episodes": root / "episode-data" / setting / "test_5_1.jsonl",
        "validation_episodes": root / "episode-data" / setting / "dev_5_1.jsonl",
    }
