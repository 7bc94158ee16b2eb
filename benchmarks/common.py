"""Shared pieces of the benchmarks: machine facts, cached MiniLM features, result files."""

from __future__ import annotations

import datetime
import json
import os
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Collection
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results"
DATA_ENV = "HF_ADAPTER_EXT_DATA"


def shared_data_dir() -> Path:
    """Where tests, benchmarks and `make demo` find the offline corpora: ``$HF_ADAPTER_EXT_DATA``, else
    ``../shared/data`` beside the checkout. The library itself takes paths and never looks here."""
    env = os.environ.get(DATA_ENV)
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"
CACHE = Path(__file__).resolve().parent / ".cache"
REPO = Path(__file__).resolve().parents[1]


def repo_relative(arg: str) -> str:
    """A command-line word as anyone can rerun it: paths inside the checkout relative to its root, the shared data
    as ``../shared/...``; never this machine's absolute paths."""
    if not arg.startswith("/"):
        return arg
    path = Path(arg).resolve()
    for root, shown in ((REPO, ""), (REPO.parent / "shared", "../shared/")):
        if path == root or root in path.parents:
            relative = path.relative_to(root).as_posix()
            return f"{shown}{relative}" if shown else (relative or ".")
    return f"<{path.name}>"


def command_line() -> str:
    """How this benchmark was run, from the repository root (``python -m benchmarks.<name> ...``)."""
    argv = [repo_relative(a) for a in sys.argv]
    if argv and argv[0].startswith("benchmarks/") and argv[0].endswith(".py"):
        argv = ["-m", argv[0][:-3].replace("/", "."), *argv[1:]]
    return " ".join(shlex.quote(a) for a in ["python", *argv])


def machine() -> dict:
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": command_line(),
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": "cuda" if torch.cuda.is_available() else "cpu",
    }


def target(metric: str, value: float, goal: float, op: str) -> dict:
    met = value >= goal if op == ">=" else value <= goal
    value = float(value)
    shown = round(value, 4) if abs(value) >= 1e-3 or value == 0 else float(f"{value:.3g}")  # keep tiny errors
    return {"metric": metric, "value": shown, "target": goal, "op": op, "met": bool(met)}


def escape_pipes(text: str) -> str:
    """A Markdown table cell: a metric like ``|forgetting|`` must not split the row."""
    return text.replace("|", "\\|")


def write_results(name: str, payload: dict, table: str, results_dir: Path = RESULTS) -> None:
    """``results/<name>.json`` (with machine facts and a top-level ``targets`` list) and ``<name>.md``."""
    results_dir.mkdir(parents=True, exist_ok=True)
    payload = {"machine": machine(), **payload}
    payload.setdefault("targets", [])
    (results_dir / f"{name}.json").write_text(json.dumps(payload, indent=2))
    facts = payload["machine"]
    header = (f"Command: `{facts['command']}`  \nDate: {facts['date']} · {facts['cpu_cores']} cores, "
              f"{facts['torch_threads']} torch threads · torch {facts['torch']} · {facts['device']}\n\n")
    rows = ["| target | value | goal | met |", "|---|---|---|---|"]
    rows += [f"| {escape_pipes(t['metric'])} | {t['value']} | {t['op']} {t['target']} | {'yes' if t['met'] else 'NO'} |"
             for t in payload["targets"]]
    (results_dir / f"{name}.md").write_text(header + table + "\n\n" + "\n".join(rows) + "\n")
    print(header + table + "\n\n" + "\n".join(rows))


def cached(name: str, compute):
    """A tensor (or list of tensors) computed once and kept under benchmarks/.cache/ (not committed)."""
    from safetensors.torch import load_file, save_file

    path = CACHE / f"{name}.safetensors"
    if path.is_file():
        data = load_file(str(path))
        return data["x"] if "x" in data else [data[str(i)] for i in range(len(data))]
    value = compute()
    CACHE.mkdir(parents=True, exist_ok=True)
    tensors = {"x": value} if isinstance(value, torch.Tensor) else {str(i): v for i, v in enumerate(value)}
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path))
    return value


def cached_json(name: str, compute: Callable[[], object]):
    """A JSON-able result computed once and kept as benchmarks/.cache/<name>.json (not committed), so an
    interrupted benchmark resumes where it stopped; returned as read back from the file."""
    path = CACHE / f"{name}.json"
    if not path.is_file():
        value = compute()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(value))
    return json.loads(path.read_text())


def save_runs(state: dict, state_file: Path, written: Collection[str]) -> None:
    """Write a resumable benchmark's ``state`` ({"settings", "runs", ...}) to ``state_file`` without losing what
    another process (another seed or domain, run side by side) kept there meanwhile. Under the same settings, runs
    only on disk are taken in. Of a run in both, the disk's copy stands unless the run is one of ``written``, the
    keys this process wrote since it loaded the state: then its fields win over the disk's and fields only the
    disk has are kept. A copy this process merely loaded may be stale and must not undo a newer one
    (`write_json_atomically`)."""
    if state_file.is_file():
        kept = json.loads(state_file.read_text())
        if kept.get("settings") == state.get("settings"):
            for key, record in kept["runs"].items():
                mine = state["runs"].get(key)
                state["runs"][key] = {**record, **mine} if key in written and mine is not None else record
    write_json_atomically(state, state_file)


def write_json_atomically(value, path: Path) -> None:
    """``value`` as indented JSON at ``path``, through a temporary file, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".tmp")
    partial.write_text(json.dumps(value, indent=2))
    partial.replace(path)


def alternate(steps: dict[str, Callable[[], float]], seconds: float, rounds: int) -> dict[str, float]:
    """Median units/s of each contender; every step returns the units it processed (tokens, episodes, ...)."""
    return {name: statistics.median(values) for name, values in alternate_rounds(steps, seconds, rounds).items()}


def alternate_rounds(steps: dict[str, Callable[[], float]], seconds: float, rounds: int) -> dict[str, list[float]]:
    """Units/s of each contender in every round.

    One warm-up call each, then the contenders take turns, ``seconds`` each, for ``rounds`` rounds, so
    machine noise hits every side alike; ratios taken within a round cancel slow drifts of the machine.
    """
    for step in steps.values():
        step()
    rates: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            units, start = 0.0, time.perf_counter()
            while time.perf_counter() - start < seconds:
                units += step()
            rates[name].append(units / (time.perf_counter() - start))
    return rates


def save_figure(fig, results_dir: Path, name: str) -> None:
    """``results_dir/<name>.png`` from a finished matplotlib figure, which is then closed."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    results_dir.mkdir(parents=True, exist_ok=True)
    fig.savefig(results_dir / f"{name}.png", dpi=120)
    plt.close(fig)


def epoch_consolidation_args(output_dir, seed: int, epochs: float = 3, batch_size: int = 16):
    """``consolidate``'s budget before it counted steps (``epochs`` passes at lr 5e-5, no validation): the
    setting the kept consolidation results were made with, pinned so that they stay comparable."""
    from transformers import TrainingArguments

    return TrainingArguments(output_dir=str(output_dir), num_train_epochs=epochs, learning_rate=5e-5,
                             per_device_train_batch_size=batch_size, save_strategy="no", report_to="none",
                             disable_tqdm=True, logging_steps=50, seed=seed)
