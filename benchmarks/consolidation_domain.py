#!/usr/bin/env python
"""Consolidation on a small, many-type domain: the adapter + rehearsal extension of a CoNLL-2003 tagger to CrossNER
politics / music (all labelled training sentences, the library's extension defaults), distilled into a plain model
of the source's class with each consolidation budget, scored beside the extended model it came from.

Budgets (``--variants``):
- ``3 epochs``: the consolidation default before this benchmark (3 epochs, lr 5e-5, batch 16, no validation);
- ``steps``: the library's default with a labelled ``eval_dataset`` (``consolidation_training_defaults``: at most
  1500 steps, entity F1 on the first ``--dev_sentences`` domain dev sentences every 50, patience 6, best kept);
- ``steps + domain text``: the same, with the rest of the domain's dev sentences (labels dropped) as unlabelled
  domain text beside the rehearsal text;
- ``... + transition loss``: each token's loss also counts the student's probability of a BIO-breaking tag
  transition (``consolidate(transition_weight=1.0)``).
Each consolidated model is scored tagging token by token (``argmax``, what ``pipeline`` does) and with
BIO-constrained decoding (``bio``, ``predict_tags(decoding="bio")``), and kept in the state folder.
Every variant distils on the domain's training sentences plus the extension's 1000 CoNLL rehearsal sentences (labels
never read). Scored on the domain test (overall / new types / BIO-invalid spans) and CoNLL test (old types,
strict). Each extension and each consolidation is kept as soon as it finishes, so an interrupted run resumes.

    nohup python -m benchmarks.consolidation_domain --domains politics --seeds 0 > consolidation_domain.log 2>&1 &
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from transformers import AutoModelForTokenClassification, set_seed

from benchmarks.common import epoch_consolidation_args, save_runs, target, write_results
from benchmarks.domain_extension import DOMAINS, REHEARSAL, domain_parents
from benchmarks.fewshot_extension import BEST, domain_arguments, run_key, source_bench, train_extension
from hf_adapter_ext import NeuralAdapterModel
from hf_adapter_ext.data import with_label_order
from hf_adapter_ext.metrics import evaluate_tagger

METHOD = "adapter+rehearsal"
VARIANTS = ("3 epochs", "steps", "steps + domain text", "steps + transition loss",
            "steps + domain text + transition loss")
TRANSITION_WEIGHT = 1.0  # the "transition loss" variants' consolidate(transition_weight=)


def arguments(description: str = __doc__) -> argparse.ArgumentParser:
    """The domain benchmarks' options plus where the extensions to consolidate come from (also
    benchmarks/consolidation_speed.py's, which times a consolidation of one of them)."""
    parser = domain_arguments(description, "consolidation_domain")
    parser.add_argument("--extensions_from", default=None,
                        help="A benchmarks/fewshot_extension.py state folder (run with --ks 0 and the same settings) "
                             "whose all-sentence adapter + rehearsal extensions are consolidated, loaded from the best "
                             "checkpoint its Trainer kept, instead of being trained again here.")
    return parser


def scores(model, bench, data, new_types, parents, decoding: str = "argmax") -> dict:
    id2label = model.config.id2label
    conll_test = with_label_order(bench.conll["test"], list(id2label.values()))
    domain = evaluate_tagger(model, bench.encode(data["test"]), bench.tokenizer, id2label, new_types, parents,
                             decoding=decoding)
    conll = evaluate_tagger(model, bench.encode(conll_test), bench.tokenizer, id2label, new_types, parents,
                            decoding=decoding)
    return {"domain_overall_f1": 100 * domain["overall_f1"], "domain_new_f1": 100 * domain["new_f1"],
            "domain_bio_invalid_spans": domain["bio_invalid_spans"], "conll_old_f1": 100 * conll["old_f1"]}


def plain_scores(plain, bench, data, new_types, parents) -> dict:
    """A consolidated model's scores tagged token by token (as ``pipeline`` tags) and, under ``constrained``, with
    BIO-constrained decoding (``predict_tags(decoding="bio")``)."""
    return {**scores(plain, bench, data, new_types, parents),
            "constrained": scores(plain, bench, data, new_types, parents, decoding="bio")}


def extension_key(domain: str, seed: int) -> str:
    return f"{domain}/seed{seed}/extended"


def extension(bench, options, domain: str, seed: int, state: dict):
    """The extended model of ``domain`` and ``seed`` (trained once, then reloaded) and its data."""
    folder = Path(options.state) / f"{domain}_seed{seed}"
    key = extension_key(domain, seed)
    if key in state["runs"] and (folder / "adapter_config.json").is_file():
        data, new_types = bench.domain(domain)
        model = NeuralAdapterModel.from_pretrained(bench.source(seed), folder).eval()
        data = with_label_order(data, list(model.config.id2label.values()))
        parents = state["runs"][key]["parents"]
        return model, data, new_types, parents
    if options.extensions_from:
        model, record, data, new_types, parents = trained_elsewhere(bench, options, domain, seed)
    else:
        model, record, data, new_types, parents = train_extension(bench, options, METHOD, domain, 0, seed)
        record = {**record, **scores(model, bench, data, new_types, parents)}
    model.save_pretrained(folder)
    state["runs"][key] = {**record, "parents": parents}
    return model, data, new_types, parents


def trained_elsewhere(bench, options, domain: str, seed: int):
    """The all-sentence extension that benchmarks/fewshot_extension.py trained in ``--extensions_from`` with this
    benchmark's settings, as :func:`extension` records it: reloaded from the best checkpoint its Trainer kept
    (``load_best_model_at_end``), with that run's record and the reloaded model's scores. Refused where the settings
    differ, or where the reloaded model does not reproduce the domain test F1 that run recorded."""
    state = json.loads((Path(options.extensions_from) / "runs.json").read_text())
    wanted = {k: options.__dict__[k] for k in ("dev_sentences", "source_epochs", "limit", "max_steps", "subtype_init")}
    found = {k: state["settings"].get(k) for k in wanted}
    if found != wanted:
        raise ValueError(f"{options.extensions_from} was run with {found}; this benchmark runs with {wanted}.")
    method = next((m for m in (BEST, METHOD) if run_key(domain, m, 0, seed) in state["runs"]), None)
    if method is None:
        raise ValueError(f"{options.extensions_from} holds no all-sentence adapter + rehearsal run of {domain}, "
                         f"seed {seed}; run benchmarks.fewshot_extension --ks 0 there first.")
    record = state["runs"][run_key(domain, method, 0, seed)]
    # its checkpoints are kept under the labelled-sentence count, not "kall"
    best = (Path(options.extensions_from) / "checkpoints" / run_key(domain, method, record["k"], seed)
            / f"checkpoint-{record['best_step']}")
    if not best.is_dir():
        raise ValueError(f"{options.extensions_from} keeps no checkpoint of {method}'s best step {record['best_step']} "
                         f"({best}).")
    data, new_types = bench.domain(domain)
    model = NeuralAdapterModel.from_pretrained(bench.source(seed), best).eval()
    data = with_label_order(data, list(model.config.id2label.values()))
    parents = domain_parents(new_types)
    reloaded = scores(model, bench, data, new_types, parents)
    if abs(reloaded["domain_overall_f1"] - record["domain"]["overall_f1"]) > 1e-6:
        raise ValueError(f"{best} scores {reloaded['domain_overall_f1']:.4f} domain F1; its run recorded "
                         f"{record['domain']['overall_f1']:.4f}.")
    kept = ("k", "best_step", "steps", "dev_overall_f1", "train_seconds_first_run", "train_seconds")
    return model, {**{k: record[k] for k in kept}, "loaded_from": str(best), **reloaded}, data, new_types, parents


def plain_folder(options, domain: str, seed: int, variant: str) -> Path:
    """Where the consolidated plain model of a run is kept, so that it can be scored again."""
    return Path(options.state) / f"{domain}_seed{seed}_{variant.replace(' + ', '+').replace(' ', '_')}"


def consolidated_unlabelled(bench, options, variant: str, data) -> list[str]:
    """The unlabelled text a variant distils on besides the training sentences: the extension's rehearsal text,
    and for "domain text" variants the domain's dev sentences past the first ``--dev_sentences`` (labels dropped)."""
    unlabelled = [" ".join(words) for words in bench.rehearsal_pool[:REHEARSAL]]
    if "domain text" in variant:
        unlabelled += [" ".join(words) for words in data["dev"]["tokens"][options.dev_sentences:]]
    return unlabelled


def consolidated(model, bench, options, variant: str, data, seed: int) -> tuple:
    dev_count = min(options.dev_sentences, len(data["dev"]))
    dev = bench.encode(data["dev"].select(range(dev_count)))
    unlabelled = consolidated_unlabelled(bench, options, variant, data)
    args = None
    if variant == "3 epochs":
        args = epoch_consolidation_args(Path(options.state) / "distillation", seed)
    set_seed(seed)
    started = time.perf_counter()
    plain = model.consolidate(bench.encode(data["train"]), bench.tokenizer, unlabelled=unlabelled, args=args,
                              eval_dataset=dev, transition_weight=TRANSITION_WEIGHT if "transition" in variant else 0.0)
    report = {k: plain.consolidation_report.get(k) for k in ("steps", "best_step", "distillation_examples",
                                                             "unlabelled_examples", "teacher_targets_precomputed")}
    return plain, {**report, "seconds": time.perf_counter() - started}


def mean(values):
    return sum(values) / len(values) if values else float("nan")


def summarise(state: dict, options) -> None:
    runs, targets = state["runs"], []
    rows = ["| domain | model | decoding | seeds | domain overall F1 | domain new-type F1 | BIO-invalid spans (domain test) | "
            "CoNLL old-type F1 (strict) | steps (best) | seconds (extension: its Trainer run; consolidation: the call) |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for domain in DOMAINS:
        for name, decoding in (("extended", "CRF (Viterbi)"), *((v, d) for v in VARIANTS for d in ("argmax", "bio"))):
            keys = [key for key in runs if key.startswith(f"{domain}/") and key.endswith(f"/{name}")]
            pairs = [(runs[key] if decoding != "bio" else runs[key].get("constrained"),
                      runs[key.rsplit("/", 1)[0] + "/extended"], runs[key]) for key in keys]
            pairs = [(r, e, record) for r, e, record in pairs if r is not None]
            if not pairs:
                continue
            found = [r for r, _, _ in pairs]
            m = {k: mean([r[k] for r in found]) for k in ("domain_overall_f1", "domain_new_f1",
                                                            "domain_bio_invalid_spans", "conll_old_f1")}
            records = [record for _, _, record in pairs]
            steps = "" if name == "extended" else (f"{mean([r['steps'] for r in records]):.0f} "
                                                   f"({mean([r['best_step'] or r['steps'] for r in records]):.0f})")
            seconds = mean([r["train_seconds_first_run"] if name == "extended" else r["seconds"] for r in records])
            rows.append(f"| {domain} | {name} | {decoding} | {len(found)} | {m['domain_overall_f1']:.2f} | "
                        f"{m['domain_new_f1']:.2f} | {m['domain_bio_invalid_spans']:.0f} | {m['conll_old_f1']:.2f} | "
                        f"{steps} | {seconds:.0f} |")
            if name == "extended":
                continue
            label = f"{domain}, {name}, {decoding} decoding"
            for metric, kind in (("domain_overall_f1", "overall"), ("domain_new_f1", "new-type")):
                gap = mean([r[metric] - e[metric] for r, e, _ in pairs])
                targets.append(target(f"{label}: consolidated - extended, domain {kind} F1", gap, -1.0, ">="))
            ratio = mean([r["domain_bio_invalid_spans"] for r, _, _ in pairs]) / max(
                1.0, mean([e["domain_bio_invalid_spans"] for _, e, _ in pairs]))
            targets.append(target(f"{label}: BIO-invalid spans, consolidated / extended", ratio, 2.0, "<="))
    loaded = (f"The extended models are benchmarks/fewshot_extension.py's all-sentence runs kept in "
              f"`{options.extensions_from}` (subtype_init={options.subtype_init}), reloaded from their best checkpoints "
              "(each reload reproduces the domain F1 its run recorded); their seconds are those runs'.\n\n"
              if options.extensions_from else "")
    text = ("Extended model: adapter + rehearsal (1000 CoNLL sentences, label_parents), all of the domain's labelled "
            "training sentences, the library's extension defaults. Each consolidation distils it into a plain model of "
            "the source's class (path_weight 0.5) on the domain's training sentences and the rehearsal text; the budgets "
            "are described in the benchmark's docstring. Decoding: `argmax` tags token by token, as "
            "`pipeline(\"token-classification\")` does; `bio` is `predict_tags(decoding=\"bio\")`, the most probable "
            "tag sequence BIO allows (runs made before it existed have no `bio` row). Entity F1 %, mean over seeds.\n\n"
            + loaded + "\n".join(rows) + "\n")
    write_results("consolidation_domain", {"runs": runs, "settings": vars(options), "targets": targets}, text,
                  results_dir=Path(options.results_dir))


def main(argv: list[str] | None = None) -> dict:
    parser = arguments()
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    options = parser.parse_args(argv)
    state_file = Path(options.state) / "runs.json"
    state = json.loads(state_file.read_text()) if state_file.is_file() else {"runs": {}}
    settings = {k: options.__dict__[k] for k in ("dev_sentences", "source_epochs", "limit", "max_steps", "patience",
                                                 "subtype_init")}
    if state.get("settings") != settings:
        state = {"runs": {}, "settings": settings}
    bench = source_bench(options)

    def keep(key: str):
        save_runs(state, state_file, [key])
        summarise(state, options)

    for seed in options.seeds:
        for domain in options.domains:
            model, data, new_types, parents = extension(bench, options, domain, seed, state)
            keep(extension_key(domain, seed))
            for variant in options.variants:
                key = f"{domain}/seed{seed}/{variant}"
                folder = plain_folder(options, domain, seed, variant)
                if key in state["runs"] and "constrained" not in state["runs"][key] and folder.is_dir():
                    plain = AutoModelForTokenClassification.from_pretrained(folder).eval()  # scored before "bio"
                    state["runs"][key].update(plain_scores(plain, bench, data, new_types, parents))
                    keep(key)
                if key in state["runs"]:
                    continue
                print(f"== {key}", flush=True)
                plain, record = consolidated(model, bench, options, variant, data, seed)
                plain.save_pretrained(folder)
                state["runs"][key] = {**record, **plain_scores(plain, bench, data, new_types, parents)}
                keep(key)
    return state


if __name__ == "__main__":
    main()
