"""What the example scripts share on the command line, in the ways of transformers' `run_ner.py`: an options file,
the stage flags, turning evaluation off; and options they do not take, refused with what to do instead where a
run_ner.py user would reach for them."""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import yaml
from transformers import HfArgumentParser, TrainingArguments

OPTIONS_FILE_SUFFIXES = (".json", ".yaml", ".yml")  # run_ner.py's single argument: a file of options
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
        advice += [f"{word}: a file of options is read when it is the only argument, as with run_ner.py"
                   for word in left if str(word).endswith(OPTIONS_FILE_SUFFIXES)]
        raise ValueError(f"This script does not take {left}." + (" " + "; ".join(advice) + "." if advice else "") +
                         " See --help for the options it has.")
    return tuple(parsed)


def check_stages(args, argv: Sequence[str] | None, evaluate_only: str, test_file: str | None = None,
                 takes_test_file: bool = True) -> None:
    """run_ner.py runs only the stages that ``--do_train`` / ``--do_eval`` / ``--do_predict`` name; these scripts
    train, then score whatever their files allow (validation, test), so those flags are accepted but do not choose
    anything. Refuse the uses where that would silently do something else: ``--do_eval`` / ``--do_predict``
    without ``--do_train`` (run_ner.py would only evaluate; these scripts would train first), ``--do_predict``
    with no test set to predict on, and ``--prediction_loss_only``, which withholds the predictions the scripts
    score.

    Args:
        args: the parsed `TrainingArguments`.
        argv: the command line (None: ``sys.argv[1:]``); only flags written there count, since `TrainingArguments`
            turns ``do_eval`` on by itself whenever an evaluation strategy is set.
        evaluate_only: how to score a saved model without training with this script, said in the refusal.
        test_file: the ``--test_file`` given, if the script takes one (``takes_test_file``).
    """
    written = written_options(argv)
    asked = {flag for flag in ("--do_train", "--do_eval", "--do_predict")
             if flag in written and getattr(args, flag[2:])}
    if asked & {"--do_eval", "--do_predict"} and "--do_train" not in asked:
        stages = " / ".join(sorted(asked))
        raise ValueError(f"{stages} without --do_train: run_ner.py would only evaluate, but this script always trains "
                         f"first, then scores what its files allow. {evaluate_only} To train, add --do_train (or drop "
                         f"{stages}).")
    if "--do_predict" in asked and takes_test_file and not test_file:
        raise ValueError("--do_predict scores a test set, and no --test_file is given: pass one, or drop --do_predict.")
    if args.prediction_loss_only:  # the scores these scripts report come from the predictions it withholds
        raise ValueError("--prediction_loss_only makes evaluation return the loss alone, and this script reports "
                         "scores computed from the predictions (F1 / accuracy on validation and test): drop it.")


def written_options(argv: Sequence[str] | None) -> dict[str, str | None]:
    """The options written on the command line (None: ``sys.argv[1:]``), by their underscore names
    (``--eval-strategy`` is ``--eval_strategy``), each with the value written after it or after its ``=`` (None for
    a flag with no value)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    options = {}
    for i, word in enumerate(argv):
        if word.startswith("--"):
            name, has_value, value = word.partition("=")
            following = argv[i + 1] if i + 1 < len(argv) and not argv[i + 1].startswith("--") else None
            options["--" + name[2:].replace("-", "_")] = value if has_value else following
    return options


def defaults_with_user_strategies(defaults: Mapping, argv: Sequence[str] | None) -> dict:
    """The scripts' ``defaults`` keep the best validation step (``load_best_model_at_end``), which transformers
    allows only when the model is evaluated and saved at the same steps. A user who turns either off on the command
    line (``--eval_strategy no`` / ``--save_strategy no``, as with run_ner.py) keeps the last step instead, unless
    they ask for ``--load_best_model_at_end`` themselves (then transformers says what does not match)."""
    written = written_options(argv)
    turned_off = any(written.get(option) == "no" for option in ("--eval_strategy", "--save_strategy"))
    if turned_off and "--load_best_model_at_end" not in written:
        return {**defaults, "load_best_model_at_end": False}
    return dict(defaults)


def budget_defaults(defaults: Mapping, argv: Sequence[str] | None) -> dict:
    """A script's ``defaults``, which train a number of steps (``max_steps``), unless the command line asks for epochs:
    ``--num_train_epochs`` without ``--max_steps`` trains that many epochs, evaluated and saved each epoch unless the
    strategies are given too (transformers lets ``max_steps`` win, so the epochs asked for were ignored). Then
    :func:`defaults_with_user_strategies`."""
    given = written_options(argv)
    if "--num_train_epochs" in given and "--max_steps" not in given:
        defaults = {**defaults, "max_steps": -1, "eval_strategy": "epoch", "save_strategy": "epoch"}
    return defaults_with_user_strategies(defaults, argv)


def without_evaluation(args: TrainingArguments, trains: bool, **changes) -> TrainingArguments:
    """``args`` with no evaluation strategy and no best step to load: for a Trainer that only scores (``predict`` /
    ``evaluate``), or one that trains with no validation data. A scheduler that steps on validation scores
    (``reduce_lr_on_plateau``, which `TrainingArguments` refuses without evaluation) schedules nothing in a scorer,
    so a plain one takes its place; a run that ``trains`` with it is refused, since its rate would never change.

    Args:
        args: the parsed `TrainingArguments`.
        trains: whether the Trainer trains with these arguments.
        **changes: other fields to replace.
    """
    if args.lr_scheduler_type == "reduce_lr_on_plateau":
        if trains:
            raise ValueError("--lr_scheduler_type reduce_lr_on_plateau lowers the rate when the validation score "
                             "stalls, and there is no validation data: pass --validation_file, or choose another "
                             "scheduler.")
        changes = {"lr_scheduler_type": "linear", **changes}
    return dataclasses.replace(args, eval_strategy="no", load_best_model_at_end=False, **changes)


def command_line(argv: Sequence[str] | None) -> list[str]:
    """The command line (None: ``sys.argv[1:]``), with run_ner.py's convention: a single argument naming a ``.json``
    (or ``.yaml``) file of ``{"option": value}`` stands for those options. They become the words they would be on
    the command line, so that they are parsed, defaulted and checked exactly as typed options are (transformers'
    ``parse_json_file`` would skip the scripts' own defaults and checks). ``null`` leaves an option at its default;
    a list gives one word per item; a dict (``lr_scheduler_kwargs``) is passed as JSON."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) != 1 or not argv[0].endswith(OPTIONS_FILE_SUFFIXES):
        return argv
    path = Path(argv[0])
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: a single argument ending in {'/'.join(OPTIONS_FILE_SUFFIXES)} "
                                "names a file of options, as with run_ner.py.")
    text = path.read_text(encoding="utf-8")
    try:
        options = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as error:
        raise ValueError(f"{path} is not valid {path.suffix[1:].upper()}: {error}") from None
    if not isinstance(options, dict):
        raise ValueError(f"{path} must hold one object of options, e.g. {{\"output_dir\": \"out\", "
                         f"\"learning_rate\": 1e-4}}; it holds a {type(options).__name__}.")
    words = []
    for name, value in options.items():
        if value is not None:
            words += [f"--{name}", *map(_as_word, value if isinstance(value, list) else [value])]
    return words


def _as_word(value) -> str:
    """An option's value as it is typed: ``true`` / ``false``, a dict as JSON, anything else as its text."""
    if isinstance(value, bool):
        return str(value).lower()
    return json.dumps(value) if isinstance(value, dict) else str(value)
