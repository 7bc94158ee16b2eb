"""Command-line helpers shared by the example scripts."""

from __future__ import annotations

import sys


def parse_with_defaults(parser, defaults: dict[str, str], argv: list[str] | None = None):
    """``HfArgumentParser.parse_args_into_dataclasses`` with script-level defaults the user can override."""
    argv = list(sys.argv[1:] if argv is None else argv)
    given = {a.split("=", 1)[0] for a in argv if a.startswith("--")}
    for flag, value in defaults.items():
        if flag not in given:
            argv += [flag, value]
    return parser.parse_args_into_dataclasses(argv)
