"""What the example scripts share on the command line: options they do not take are refused with what to do
instead, where a user of transformers' `run_ner.py` would reach for them."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence

from transformers import HfArgumentParser

_WINDOWS = ("not needed: a sentence longer than the model takes is split into windows of whole words and joined "
            "again for scoring, never truncated")
# run_ner.py's options that the NER scripts have no twin for, and why.
RUN_NER_OPTIONS = {
    "--max_seq_length": _WINDOWS,
    "--pad_to_max_length": "not needed: each batch is padded to its own longest row",
    "--label_all_tokens": "not offered: each word's first subword carries its tag and words are scored, as with "
                          "run_ner.py's default",
    "--return_entity_level_metrics": "not needed: per-type precision, recall and F1 are always reported",
    "--preprocessing_num_workers": "not offered: tokenizing runs in the main process",
    "--overwrite_cache": "not needed: nothing is cached between runs",
    "--overwrite_output_dir": "transformers' TrainingArguments no longer has it; pass a new --output_dir, or "
                              "--resume_from_checkpoint to continue a run",
    "--cache_dir": "not offered: set HF_HOME (or HF_HUB_CACHE) for where Hub files are kept",
    "--model_revision": "not offered: download the revision first (huggingface-cli download <id> --revision ...) "
                        "and pass its folder",
    "--trust_remote_code": "not offered: the scripts load transformers' own architectures only",
}


def parse_arguments(parser: HfArgumentParser, argv: Sequence[str] | None, known_elsewhere: Mapping[str, str]) -> tuple:
    """``parser.parse_args_into_dataclasses(argv)``, refusing options the script does not take with one message that
    names each and, where ``known_elsewhere`` knows it, says what to do instead (HfArgumentParser names them only)."""
    *parsed, left = parser.parse_args_into_dataclasses(argv, return_remaining_strings=True)
    if left:
        options = [arg.split("=", 1)[0] for arg in left if arg.startswith("-")]
        advice = [f"{option}: {known_elsewhere[option]}" for option in options if option in known_elsewhere]
        raise ValueError(f"This script does not take {left}." + (" " + "; ".join(advice) + "." if advice else "") +
                         " See --help for the options it has.")
    return tuple(parsed)


def check_stages(args, argv: Sequence[str] | None, evaluate_only: str, test_file: str | None = None,
                 takes_test_file: bool = True) -> None:
    """run_ner.py runs only the stages that ``--do_train`` / ``--do_eval`` / ``--do_predict`` name; these scripts
    train, then score whatever their files allow (validation, test), so those flags are accepted but do not choose
    anything. Refuse the two uses where that would silently do something else: ``--do_eval`` / ``--do_predict``
    without ``--do_train`` (run_ner.py would only evaluate; these scripts would train first), and ``--do_predict``
    with no test set to predict on.

    Args:
        args: the parsed `TrainingArguments`.
        argv: the command line (None: ``sys.argv[1:]``); only flags written there count, since `TrainingArguments`
            turns ``do_eval`` on by itself whenever an evaluation strategy is set.
        evaluate_only: how to score a saved model without training with this script, said in the refusal.
        test_file: the ``--test_file`` given, if the script takes one (``takes_test_file``).
    """
    written = {arg.split("=", 1)[0] for arg in (sys.argv[1:] if argv is None else argv)}
    asked = {flag for flag in ("--do_train", "--do_eval", "--do_predict")
             if flag in written and getattr(args, flag[2:])}
    if asked & {"--do_eval", "--do_predict"} and "--do_train" not in asked:
        stages = " / ".join(sorted(asked))
        raise ValueError(f"{stages} without --do_train: run_ner.py would only evaluate, but this script always trains "
                         f"first, then scores what its files allow. {evaluate_only} To train, add --do_train (or drop "
                         f"{stages}).")
    if "--do_predict" in asked and takes_test_file and not test_file:
        raise ValueError("--do_predict scores a test set, and no --test_file is given: pass one, or drop --do_predict.")
