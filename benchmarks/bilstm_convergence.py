"""How far the paper's BiLSTM-CRF gets with 50-d GloVe, and whether the adapter's gap to retraining closes with
longer training: learning curves of the source, the adapter (all weights, CRF), the joint model, and a model
trained from scratch on the adapter's data alone.

The grid (``python -m benchmarks.paper_grid``) trains every model for 4 epochs, so that 3 seeds of 11-13 models
fit in 45 minutes on 2 cores. Here one seed trains each of these four models longer. Epochs are still chosen on
validation, exactly as in the grid; the test set is also scored after every epoch, for the curves only. The
table sets the chosen epoch's scores beside the same seed's 4-epoch grid scores.

    python -m benchmarks.bilstm_convergence --new_type ORG --epochs 15
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from transformers import TrainerCallback

from benchmarks.common import RESULTS, target, write_results
from benchmarks.paper_grid import PAPER, AdapterArguments, Experiment, bilstm_experiment

SCORES = ("old_f1", "new_f1", "overall_f1")


class TestCurve(TrainerCallback):
    """After every validation pass, the test scores of the model as it is at that epoch."""

    def __init__(self, experiment: Experiment, part: str):
        self.experiment, self.part, self.points = experiment, part, []

    def on_evaluate(self, args, state, control, model=None, metrics=None, **kwargs):
        test = self.experiment.score(model, self.part)
        self.points.append({"epoch": state.epoch, "validation_f1": 100 * metrics["eval_overall_f1"],
                            **{f"test_{k}": test[k] for k in SCORES}})


def chosen_point(curve: list[dict]) -> dict:
    """The curve's point at the epoch chosen on validation (the first best, as ``KeepBestCallback`` keeps it)."""
    return max(curve, key=lambda p: p["validation_f1"])


def learning_curves(experiment: Experiment, seed: int) -> dict:
    """Train each model with a test curve; the test scores of the epochs chosen on validation."""
    results: dict = {}

    def trained(name: str, part: str, train):
        curve = TestCurve(experiment, part)
        experiment.callbacks = [curve]
        model = train()
        experiment.callbacks = []
        chosen = chosen_point(curve.points)
        results[name] = {"curve": curve.points, "chosen": {k: chosen[f"test_{k}"] for k in SCORES}}
        return model

    source = trained("source/crf", "old", lambda: experiment.train_source("crf", seed))
    trained("adapter/all/crf", "all", lambda: experiment.extend(source, AdapterArguments(), seed)[0])
    trained("joint/crf", "all", lambda: experiment.train_joint("crf", seed))
    # The adapter's data alone (target split, every label, from scratch): how much of the joint model's lead on the
    # new type comes from seeing five times as many of its mentions.
    trained("target-only/crf", "all", lambda: experiment.train_from_scratch("target_train", "crf", seed))
    results["adapter/all/crf"]["chosen"]["forgetting"] = (results["adapter/all/crf"]["chosen"]["old_f1"]
                                                          - results["source/crf"]["chosen"]["old_f1"])
    return results


def grid_scores(new_type: str, seed: int, results_dir: Path) -> dict:
    """The same seed's scores in the 4-epoch grid, where that results file exists."""
    path = results_dir / f"neural_adapter_bilstm-crf_{new_type}.json"
    if not path.is_file():
        return {}
    payload = json.loads(path.read_text())
    if seed not in payload["seeds"]:
        return {}
    index = payload["seeds"].index(seed)
    return {name: runs[index] for name, runs in payload["runs"].items()}


def plot(results: dict, new_type: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (old_ax, new_ax) = plt.subplots(1, 2, figsize=(10, 4))
    for color, (name, result) in zip(("C0", "C1", "C2", "C3"), results.items()):
        curve, chosen = result["curve"], chosen_point(result["curve"])
        for ax, key in ((old_ax, "test_old_f1"), (new_ax, "test_new_f1")):
            if key == "test_new_f1" and name.startswith("source"):
                continue
            ax.plot([p["epoch"] for p in curve], [p[key] for p in curve], marker=".", color=color, label=name)
            ax.plot(chosen["epoch"], chosen[key], marker="o", ms=9, mfc="none", color=color)
    old_ax.axhline(PAPER["source_crf"], color="grey", ls="--", lw=0.8, label="paper source (300-d GloVe)")
    old_ax.set(title="old types", xlabel="epoch", ylabel="test entity F1 (%)")
    new_ax.set(title=f"new type ({new_type})", xlabel="epoch", ylabel="test entity F1 (%)")
    for ax in (old_ax, new_ax):
        ax.legend(fontsize=7)
    fig.suptitle(f"BiLSTM-CRF learning curves, adding {new_type} (circled: the epoch chosen on validation)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def report(results: dict, grid: dict, new_type: str, seed: int, epochs: dict, results_dir: Path) -> None:
    rows = [f"| model | epochs trained / chosen on validation | old-type F1 | new-type F1 | 4-epoch grid, seed {seed} "
            "(old / new) |", "|---|---|---|---|---|"]
    for name, result in results.items():
        chosen, best = result["chosen"], chosen_point(result["curve"])
        new = "—" if name.startswith("source") else f"{chosen['new_f1']:.2f}"
        before = grid.get(name)
        grid_text = f"{before['old_f1']:.2f} / {before['new_f1']:.2f}" if before else "—"
        rows.append(f"| {name} | {epochs[name]:g} / {best['epoch']:g} | {chosen['old_f1']:.2f} | {new} | {grid_text} |")
    source, adapter, joint = (results[k]["chosen"] for k in ("source/crf", "adapter/all/crf", "joint/crf"))
    label = f"{new_type}, longer training, seed {seed}"
    targets = [target(f"{label}: paper source CRF F1 (91.35) - ours", PAPER["source_crf"] - source["old_f1"], 0, "<="),
               target(f"{label}: adapter+CRF |forgetting|", abs(adapter["forgetting"]), 0.3, "<="),
               target(f"{label}: joint new F1 - adapter+CRF new F1", joint["new_f1"] - adapter["new_f1"], 1, "<=")]
    name = f"bilstm_convergence_{new_type}"
    results_dir.mkdir(parents=True, exist_ok=True)
    plot(results, new_type, results_dir / f"{name}.png")
    table = (f"Adding **{new_type}** (CoNLL-2003 test, entity F1 %, one seed). Forgetting of the adapter: "
             f"{adapter['forgetting']:+.2f}.\n\n" + "\n".join(rows) + f"\n\n![learning curves]({name}.png)")
    write_results(name, {"new_type": new_type, "seed": seed, "epochs": epochs, "results": results,
                         "grid_same_seed": grid, "targets": targets}, table, results_dir=results_dir)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--new_type", default="ORG", choices=["LOC", "MISC", "ORG", "PER"])
    parser.add_argument("--epochs", type=float, default=15, help="Epochs of the source, joint and target-only models.")
    parser.add_argument("--target_epochs", type=float, default=None, help="Epochs of the adapter (default: --epochs).")
    parser.add_argument("--learning_rate", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data_dir", default=None, help="shared/data folder (default: ../shared/data).")
    parser.add_argument("--limit", type=int, default=None, help="Use only this many sentences of each split (smoke runs).")
    parser.add_argument("--results_dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    target_epochs, limit = args.target_epochs or args.epochs, args.limit
    with tempfile.TemporaryDirectory() as scratch:
        experiment = bilstm_experiment(args.new_type, scratch, args.epochs, target_epochs, args.learning_rate,
                                       args.seed, args.data_dir, limit)
        results = learning_curves(experiment, args.seed)
    epochs = {"source/crf": args.epochs, "adapter/all/crf": target_epochs, "joint/crf": args.epochs,
              "target-only/crf": args.epochs}
    grid = {} if limit else grid_scores(args.new_type, args.seed, RESULTS)
    report(results, grid, args.new_type, args.seed, epochs, args.results_dir)
    return results


if __name__ == "__main__":
    main()
