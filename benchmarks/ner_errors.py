"""Why the grid misses its targets: the errors behind the adapter's forgetting and its gap to the joint model.

Trains one seed of the grid's source, expand-and-fine-tune, adapter (all weights, CRF each) and joint models with
the grid's settings, tags the CoNLL-2003 test set with each, and sorts every gold mention by what the model did
with it: found exactly, found with the wrong type, found with wrong boundaries, or missed. New-type mentions are
also split by where their surface form occurs in CoNLL train: in the target split the adapter trains on, only in
the source split (where the source and the adapter see it labelled O, and the joint model sees it labelled), or
nowhere. Old-type mentions are compared with the source: which ones the adapter loses and gains.

    python -m benchmarks.ner_errors --new_type LOC
"""

from __future__ import annotations

import argparse
import tempfile
from collections import Counter
from pathlib import Path

from seqeval.scheme import IOB2, Entities

from benchmarks.common import RESULTS, shared_data_dir, target, write_results
from benchmarks.paper_grid import AdapterArguments, Experiment, bilstm_experiment
from hf_adapter_ext.data import conll_dataset
from hf_adapter_ext.metrics import load_entity_f1, predict_tags

OUTCOMES = ("correct", "wrong type", "boundary", "boundary and type", "missed")
SEEN = ("in the target split", "only in the source split", "not in train")


def spans(sentences: list[list[str]]) -> list[list[tuple[str, int, int]]]:
    """``(type, start, end)`` of each sentence's entities under strict IOB2, as the entity-F1 metric reads them."""
    return [[(e.tag, e.start, e.end) for e in entities] for entities in Entities(sentences, IOB2).entities]


def outcome(gold: tuple[str, int, int], predicted: list[tuple[str, int, int]]) -> tuple[str, str | None]:
    """What a tagger did with one gold mention, and the type it gave it (None where it found nothing there)."""
    kind, start, end = gold
    same_span = [t for t, s, e in predicted if (s, e) == (start, end)]
    if same_span:
        return ("correct" if same_span[0] == kind else "wrong type"), same_span[0]
    overlapping = [t for t, s, e in predicted if s < end and start < e]
    if not overlapping:
        return "missed", None
    return ("boundary" if kind in overlapping else "boundary and type"), overlapping[0]


def surface(tokens: list[str], span: tuple[str, int, int]) -> str:
    return " ".join(tokens[span[1] : span[2]])


def labelled_mentions(dataset, new_type: str) -> list[str]:
    """The surface string of every mention the dataset labels ``new_type``, repeats included."""
    return [surface(tokens, span) for tokens, sentence in zip(dataset["tokens"], spans(tags(dataset)))
            for span in sentence if span[0] == new_type]


def mentions(tokens: list[list[str]], gold: list[list[str]], predicted: list[list[str]], seen: dict[str, str]):
    """One record per gold mention: its type, surface, where it was seen in train, and the model's outcome."""
    records = []
    for i, (gold_spans, predicted_spans) in enumerate(zip(spans(gold), spans(predicted))):
        for span in gold_spans:
            result, given = outcome(span, predicted_spans)
            text = surface(tokens[i], span)
            records.append({"id": (i, span), "type": span[0], "text": text, "seen": seen.get(text, SEEN[2]),
                            "outcome": result, "predicted_type": given})
    return records


def spurious(gold: list[list[str]], predicted: list[list[str]]) -> Counter:
    """Predicted entities that overlap no gold mention, by predicted type."""
    found = Counter()
    for gold_spans, predicted_spans in zip(spans(gold), spans(predicted)):
        for t, s, e in predicted_spans:
            if not any(gs < e and s < ge for _, gs, ge in gold_spans):
                found[t] += 1
    return found


def train_models(experiment: Experiment, seed: int) -> dict:
    """The grid's models for one seed (same settings, so the same scores as the grid's seed)."""
    source = experiment.train_source("crf", seed)
    return {"source/crf": source,
            "expand/all/crf": experiment.extend(source, AdapterArguments(adapter="none"), seed)[0],
            "adapter/all/crf": experiment.extend(source, AdapterArguments(), seed)[0],
            "joint/crf": experiment.train_joint("crf", seed)}


def tags(dataset) -> list[list[str]]:
    names = dataset.features["ner_tags"].feature.names
    return [[names[t] for t in row] for row in dataset["ner_tags"]]


def labelled_counts(task) -> dict[str, int]:
    """How many new-type mentions each model saw labelled in training (the source saw them as O)."""
    target, joint = (len(labelled_mentions(task.datasets[split], task.new_type))
                     for split in ("target_train", "joint_train"))  # joint_train: what train_joint read
    return {"source/crf": 0, "expand/all/crf": target, "adapter/all/crf": target, "joint/crf": joint}


def analyse(experiment: Experiment, models: dict, data_dir: Path) -> dict:
    """Each model's entity scores (the shipped metric), mention outcomes and spurious entities on the test set."""
    task, new_type = experiment.task, experiment.task.new_type
    in_target = set(labelled_mentions(task.datasets["target_train"], new_type))
    in_train = set(labelled_mentions(conll_dataset(data_dir / "conll2003" / "train.txt"), new_type))
    seen = {**{text: SEEN[1] for text in in_train - in_target}, **{text: SEEN[0] for text in in_target}}
    test, metric = task.datasets["test"], load_entity_f1()
    gold = tags(test)
    analysis = {}
    for name, model in models.items():
        part = "old" if name.startswith("source") else "all"  # the source is given the sentences as it was trained
        predicted, _ = predict_tags(model, experiment.test[part], experiment.tokenizer, model.config.id2label)
        scores = metric.compute(predictions=predicted, references=gold, new_types=[new_type])
        analysis[name] = {"scores": {f"{group}_{k}": 100 * scores[f"{group}_{k}"] for group in ("old", "new")
                                     for k in ("precision", "recall", "f1")},
                          "mentions": mentions(test["tokens"], gold, predicted, seen),
                          "spurious": spurious(gold, predicted)}
    return analysis


def outcome_rows(analysis: dict, new_type: str) -> list[str]:
    rows = ["| model | mentions | " + " | ".join(OUTCOMES) + " | given which type instead | spurious |",
            "|---|---|" + "---|" * (len(OUTCOMES) + 2)]
    for group, keep in ((f"new type ({new_type})", lambda t: t == new_type), ("old types", lambda t: t != new_type)):
        for name, result in analysis.items():
            records = [r for r in result["mentions"] if keep(r["type"])]
            counts = Counter(r["outcome"] for r in records)
            instead = Counter(r["predicted_type"] for r in records if r["outcome"] in ("wrong type", "boundary and type"))
            fake = sum(n for t, n in result["spurious"].items() if keep(t))
            cells = " | ".join(f"{counts[o]} ({100 * counts[o] / len(records):.1f} %)" for o in OUTCOMES)
            others = ", ".join(f"{t} {n}" for t, n in instead.most_common()) or "—"
            rows.append(f"| {name}, {group} | {len(records)} | {cells} | {others} | {fake} |")
    return rows


def recall_by_seen(analysis: dict, new_type: str) -> dict:
    table = {}
    for name, result in analysis.items():
        records = [r for r in result["mentions"] if r["type"] == new_type]
        table[name] = {}
        for where in SEEN:
            group = [r for r in records if r["seen"] == where]
            hits = sum(r["outcome"] == "correct" for r in group)
            table[name][where] = {"mentions": len(group), "recall": 100 * hits / len(group) if group else 0.0}
    return table


def forgetting_breakdown(analysis: dict, new_type: str, model: str) -> dict:
    """Old-type mentions the source got right and ``model`` gets wrong (and the reverse), by what it did instead."""
    source = {r["id"]: r for r in analysis["source/crf"]["mentions"] if r["type"] != new_type}
    lost, gained = Counter(), Counter()
    for r in analysis[model]["mentions"]:
        if r["type"] == new_type:
            continue
        before = source[r["id"]]["outcome"] == "correct"
        if before and r["outcome"] != "correct":
            lost[f"{r['outcome']} ({r['predicted_type']})" if r["predicted_type"] else r["outcome"]] += 1
        elif r["outcome"] == "correct" and not before:
            gained[source[r["id"]]["outcome"]] += 1
    return {"lost": dict(lost.most_common()), "gained": dict(gained.most_common()),
            "net": sum(gained.values()) - sum(lost.values())}


def missed_by_adapter(analysis: dict, new_type: str, top: int = 12) -> list[tuple[str, str, int]]:
    """The new-type surface forms the adapter gets wrong most often where the joint model gets them right."""
    joint = {r["id"]: r["outcome"] for r in analysis["joint/crf"]["mentions"]}
    counts = Counter((r["text"], r["seen"]) for r in analysis["adapter/all/crf"]["mentions"]
                     if r["type"] == new_type and r["outcome"] != "correct" and joint[r["id"]] == "correct")
    return [(text, where, n) for (text, where), n in counts.most_common(top)]


def plot(analysis: dict, by_seen: dict, new_type: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n in analysis if not n.startswith("source")]
    fig, (outcomes_ax, seen_ax) = plt.subplots(1, 2, figsize=(11, 4))
    counts = {name: Counter(r["outcome"] for r in analysis[name]["mentions"] if r["type"] == new_type)
              for name in names}
    bottom = [0.0] * len(names)
    for o in OUTCOMES[1:]:
        shares = [100 * counts[name][o] / counts[name].total() for name in names]
        outcomes_ax.bar(names, shares, bottom=bottom, label=o)
        bottom = [b + s for b, s in zip(bottom, shares)]
    outcomes_ax.set(title=f"{new_type} test mentions not found exactly", ylabel="% of gold mentions")
    outcomes_ax.legend(fontsize=7)
    width = 0.8 / len(names)
    for k, name in enumerate(names):
        xs = [i + k * width for i in range(len(SEEN))]
        seen_ax.bar(xs, [by_seen[name][w]["recall"] for w in SEEN], width=width, label=name)
    seen_ax.set_xticks([i + width * (len(names) - 1) / 2 for i in range(len(SEEN))],
                       [f"{w}\n({by_seen[names[0]][w]['mentions']} mentions)" for w in SEEN], fontsize=7)
    seen_ax.set(title=f"{new_type} recall by where the mention's text occurs in train", ylabel="exact-match recall (%)",
                ylim=(0, 100))
    seen_ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def seen_table(by_seen: dict) -> list[str]:
    rows = ["| model | " + " | ".join(f"{w} ({by_seen['joint/crf'][w]['mentions']})" for w in SEEN) + " |",
            "|---|" + "---|" * len(SEEN)]
    return rows + [f"| {name} | " + " | ".join(f"{by_seen[name][w]['recall']:.1f}" for w in SEEN) + " |"
                   for name in by_seen if name != "source/crf"]


def forgetting_table(forgetting: dict, scores: dict) -> list[str]:
    rows = ["| model | old-type F1 change | mentions lost (source right, now wrong) | mentions gained |",
            "|---|---|---|---|"]
    for name, f in forgetting.items():
        change = scores[name]["old_f1"] - scores["source/crf"]["old_f1"]
        lost = ", ".join(f"{k} {n}" for k, n in f["lost"].items())
        gained = ", ".join(f"{k} {n}" for k, n in f["gained"].items())
        rows.append(f"| {name} | {change:+.2f} | {sum(f['lost'].values())}: {lost} | "
                    f"{sum(f['gained'].values())}: {gained} |")
    return rows


def report(analysis: dict, labelled: dict, new_type: str, seed: int, results_dir: Path) -> dict:
    by_seen = recall_by_seen(analysis, new_type)
    forgetting = {m: forgetting_breakdown(analysis, new_type, m) for m in ("expand/all/crf", "adapter/all/crf")}
    missed = missed_by_adapter(analysis, new_type)
    scores = {name: result["scores"] for name, result in analysis.items()}
    adapter, joint, source = scores["adapter/all/crf"], scores["joint/crf"], scores["source/crf"]
    label = f"{new_type}, seed {seed}"
    targets = [target(f"{label}: adapter+CRF |forgetting|", abs(adapter["old_f1"] - source["old_f1"]), 0.3, "<="),
               target(f"{label}: joint new F1 - adapter+CRF new F1", joint["new_f1"] - adapter["new_f1"], 1, "<=")]
    name = f"ner_errors_{new_type}"
    results_dir.mkdir(parents=True, exist_ok=True)
    plot(analysis, by_seen, new_type, results_dir / f"{name}.png")
    f1_rows = ["| model | new-type mentions labelled in its training data | old types P / R / F1 | "
               "new type P / R / F1 |", "|---|---|---|---|"]
    f1_rows += [f"| {m} | {labelled[m]} | " + " | ".join(
        " / ".join(f"{s[f'{group}_{k}']:.2f}" for k in ("precision", "recall", "f1")) for group in ("old", "new"))
        + " |" for m, s in scores.items()]
    missed_rows = ["| mention | where its text occurs in train | times |", "|---|---|---|"]
    missed_rows += [f"| {text} | {where} | {n} |" for text, where, n in missed]
    table = "\n\n".join([
        f"Adding **{new_type}**, seed {seed}, the grid's settings; CoNLL-2003 test, entity precision / recall / "
        "F1 % (the same models as the grid's seed when its settings are used):", "\n".join(f1_rows),
        "**What each model did with every gold mention** (exact span and type = correct; spurious = predicted "
        "entities overlapping no gold mention). The source has no new-type label: its row says what it calls them.",
        "\n".join(outcome_rows(analysis, new_type)),
        f"**{new_type} recall by where the mention's text occurs in CoNLL train** (mentions in brackets). The adapter "
        "and expand train on the target split only; the source split labels these mentions O for them.",
        "\n".join(seen_table(by_seen)),
        "**Forgetting, mention by mention** (old types; what the model did instead with the mentions it lost, "
        "and what the source had done with those it gained).",
        "\n".join(forgetting_table(forgetting, scores)),
        f"**{new_type} mentions the adapter gets wrong and the joint model gets right**, most frequent first.",
        "\n".join(missed_rows), f"![errors]({name}.png)"])
    payload = {"new_type": new_type, "seed": seed, "scores": scores, "labelled_new_type_mentions": labelled,
               "recall_by_seen": by_seen, "forgetting": forgetting, "missed_by_adapter": missed, "targets": targets,
               "outcomes": {m: {"new": Counter(r["outcome"] for r in a["mentions"] if r["type"] == new_type),
                                "old": Counter(r["outcome"] for r in a["mentions"] if r["type"] != new_type),
                                "spurious": a["spurious"]} for m, a in analysis.items()}}
    write_results(name, payload, table, results_dir=results_dir)
    return payload


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--new_type", default="LOC", choices=["LOC", "MISC", "ORG", "PER"])
    parser.add_argument("--source_epochs", type=float, default=4, help="Epochs of the source and joint models (grid: 4).")
    parser.add_argument("--epochs", type=float, default=4, help="Epochs of the adapter and expand (grid: 4).")
    parser.add_argument("--learning_rate", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data_dir", type=Path, default=None, help="shared/data folder (default: ../shared/data).")
    parser.add_argument("--limit", type=int, default=None, help="Use only this many sentences of each split (smoke runs).")
    parser.add_argument("--results_dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    data_dir = args.data_dir or shared_data_dir()
    with tempfile.TemporaryDirectory() as scratch:
        experiment = bilstm_experiment(args.new_type, scratch, args.source_epochs, args.epochs, args.learning_rate,
                                       args.seed, str(data_dir), args.limit)
        analysis = analyse(experiment, train_models(experiment, args.seed), data_dir)
        labelled = labelled_counts(experiment.task)
    return report(analysis, labelled, args.new_type, args.seed, args.results_dir)


if __name__ == "__main__":
    main()
