"""Write benchmarks/README.md: every benchmark script, what it measures, and its latest results files with the
command that produced them, their date and how many of their targets were met.

    python -m benchmarks.index
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

from .common import RESULTS

HERE = Path(__file__).resolve().parent
NOT_BENCHMARKS = {"__init__", "common", "index"}


def summary(script: Path) -> str:
    """The first sentence of a script's docstring."""
    doc = ast.get_docstring(ast.parse(script.read_text())) or ""
    first = " ".join(doc.split("\n\n")[0].split())
    return first.split(". ")[0].rstrip(".") + "."


def results_of(name: str) -> list[tuple[Path, dict]]:
    """The results JSON files a script wrote (their recorded command names the script), newest first."""
    found = []
    for path in sorted(RESULTS.glob("*.json")):
        try:
            payload = json.loads(path.read_text())
        except json.JSONDecodeError:
            continue
        facts = payload.get("machine", payload)
        command = facts.get("command", "") if isinstance(facts, dict) else ""
        if f"benchmarks/{name}.py" in command or f"benchmarks.{name}" in command:
            found.append((path, facts))
    return sorted(found, key=lambda item: item[1].get("date", ""), reverse=True)


def targets_met(path: Path) -> str:
    targets = json.loads(path.read_text()).get("targets") or []
    if not targets:
        return "no targets"
    met = sum(bool(t.get("met")) for t in targets)
    return f"{met} of {len(targets)} met"


def main() -> None:
    lines = ["# Benchmarks", "",
             "Run them from the repository root as modules (`python -m benchmarks.<name>`), in the background for the",
             "long ones (`nohup`, `OMP_NUM_THREADS=1` beside other work). Each writes `results/<name>.json` (machine,",
             "command, date, a `targets` list) and `results/<name>.md`. This page is written by",
             "`python -m benchmarks.index` from those files.", ""]
    for script in sorted(HERE.glob("*.py")):
        name = script.stem
        if name in NOT_BENCHMARKS:
            continue
        lines += [f"## `{name}`", "", summary(script), ""]
        runs = results_of(name)
        if not runs:
            lines += ["No results recorded yet.", ""]
            continue
        lines += ["| results | date | command | targets |", "|---|---|---|---|"]
        for path, facts in runs:
            markdown = path.with_suffix(".md").name
            command = facts.get("command", "").replace("|", "\\|")
            lines.append(f"| [{markdown}](results/{markdown}) | {facts.get('date', '')[:10]} | `{command}` | "
                         f"{targets_met(path)} |")
        lines.append("")
    (HERE / "README.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
