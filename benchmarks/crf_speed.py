"""Our CRF vs pytorch-crf 0.7.2: speed, and exactness over a sweep of score scales.

Speed: NLL forward+backward, Viterbi decoding and the eval logits (Viterbi + marginals), batch 32 × length 64 and 128 × 9 and 17 labels,
right-padded sequences of random lengths, every position labelled, scores ~ N(0, 1). Both implementations
run in this process, alternating, after a warm-up; medians reported. Then the same timings at emission
sigma 50 (where our exact log-sum-exp fallback runs).

Exactness: NLL and its gradient against a float64 log-space reference (tests/crf_reference.py), for
emission sigma 1..50 and transition sigma 1..20, BIO-constrained labels, batch 8 × length 64 with padding,
ours in float32 and bfloat16/float16 inputs, pytorch-crf in float32 (given our masked transitions).

    python -m benchmarks.crf_speed        # installs pytorch-crf==0.7.2 for this benchmark if it is missing
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from benchmarks.common import target, write_results
from hf_adapter_ext.modeling.crf import CRF
from hf_adapter_ext.modeling.outputs import viterbi_logits
from tests.crf_reference import reference_nll

SWEEP_LABELS = ["O", "B-A", "I-A", "B-B", "I-B", "B-C", "I-C", "B-D", "I-D"]
EMISSION_SIGMAS = (1, 5, 10, 20, 30, 40, 50)
TRANSITION_SIGMAS = (1, 10, 20)


def torchcrf():
    try:
        return importlib.import_module("torchcrf")
    except ImportError:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "pytorch-crf==0.7.2"], check=True)
        return importlib.import_module("torchcrf")


def timed(fn, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def errors(ours: CRF, theirs, emissions, tags, mask, dtype=torch.float32) -> dict:
    """Relative NLL error (per sequence, relative to max(1, |NLL|)) and max gradient error vs float64."""
    trans, start, end = (x.detach().double() for x in ours._scores())
    truth = emissions.double().requires_grad_(True)
    expected = reference_nll(truth, tags, mask, trans, start, end)
    expected.sum().backward()
    out = {}
    ours_in = emissions.to(dtype, copy=True).requires_grad_(True)
    nll = ours.sequence_nll(ours_in, tags, mask)
    nll.sum().backward()
    out["ours"] = (((nll.double() - expected).abs() / expected.abs().clamp(min=1)).max().item(),
                   (ours_in.grad.double() - truth.grad).abs().max().item())
    if theirs is not None:
        theirs_in = emissions.detach().clone().requires_grad_(True)
        their_nll = -theirs(theirs_in, tags, mask.bool(), reduction="none")
        their_nll.sum().backward()
        out["pytorch_crf"] = (((their_nll.double() - expected).abs() / expected.abs().clamp(min=1)).max().item(),
                              (theirs_in.grad.double() - truth.grad).abs().max().item())
    return out


def scale_sweep(reference) -> tuple[list[dict], str]:
    rows = []
    for sigma_t in TRANSITION_SIGMAS:
        for sigma_e in EMISSION_SIGMAS:
            g = torch.Generator().manual_seed(sigma_e * 100 + sigma_t)
            ours = CRF.for_labels(SWEEP_LABELS)
            with torch.no_grad():
                for p in ours.parameters():
                    p.copy_(torch.randn(p.shape, generator=g) * sigma_t)
            theirs = reference.CRF(len(SWEEP_LABELS), batch_first=True)
            with torch.no_grad():
                for name, value in zip(("transitions", "start_transitions", "end_transitions"), ours._scores()):
                    getattr(theirs, name).copy_(value)
            lengths = torch.randint(32, 65, (8,), generator=g)
            lengths[0] = 64
            mask = torch.arange(64)[None] < lengths[:, None]
            emissions = torch.randn(8, 64, len(SWEEP_LABELS), generator=g) * sigma_e
            tags = ours.decode(torch.randn(8, 64, len(SWEEP_LABELS), generator=g) * 3, mask).clamp(min=0)
            row = {"sigma_e": sigma_e, "sigma_t": sigma_t, **errors(ours, theirs, emissions, tags, mask)}
            row["ours_bf16"] = errors(ours, None, emissions, tags, mask, torch.bfloat16)["ours"]
            rows.append(row)
    table = ("Error against a float64 log-space reference (BIO-constrained, batch 8 × length ≤ 64): relative NLL "
             "error `|Δ| / max(1, |NLL|)` and max absolute gradient error (d NLL / d emissions).\n\n"
             "| σ emissions | σ transitions | ours NLL | ours grad | pytorch-crf NLL | pytorch-crf grad "
             "| ours, bf16 inputs (incl. bf16's own rounding of inputs and result): NLL | grad |\n|---|---|---|---|---|---|---|---|\n")
    table += "\n".join(f"| {r['sigma_e']} | {r['sigma_t']} | {r['ours'][0]:.1e} | {r['ours'][1]:.1e} | "
                       f"{r['pytorch_crf'][0]:.1e} | {r['pytorch_crf'][1]:.1e} | {r['ours_bf16'][0]:.1e} | "
                       f"{r['ours_bf16'][1]:.1e} |" for r in rows)
    return rows, table


def plot_sweep(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for column, (ax, name) in enumerate(zip(axes, ("relative NLL error", "max gradient error"))):
        for sigma_t, style in zip(TRANSITION_SIGMAS, ("-", "--", ":")):
            part = [r for r in rows if r["sigma_t"] == sigma_t]
            x = [r["sigma_e"] for r in part]
            ax.plot(x, [max(r["ours"][column], 1e-12) for r in part], "C0" + style, marker="o",
                    label=f"ours, σ_t={sigma_t}")
            ax.plot(x, [max(r["pytorch_crf"][column], 1e-12) for r in part], "C1" + style, marker="s",
                    label=f"pytorch-crf, σ_t={sigma_t}")
        ax.axhline(1e-4, color="grey", lw=0.8)
        ax.set(yscale="log", xlabel="emission σ", ylabel=name, title=f"{name} vs float64 (float32 inputs)")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    reference = torchcrf()
    rows, results, targets = [], {}, []
    for scale, length, labels in [(1, 64, 9), (1, 64, 17), (1, 128, 9), (1, 128, 17), (50, 64, 9), (50, 128, 17)]:
        torch.manual_seed(0)
        ours, theirs = CRF(labels), reference.CRF(labels, batch_first=True)
        with torch.no_grad():
            for name in ("transitions", "start_transitions", "end_transitions"):
                getattr(ours, name).normal_()
                getattr(theirs, name).copy_(getattr(ours, name))
        lengths = torch.randint(length // 2, length + 1, (32,))
        lengths[0] = length
        mask = torch.arange(length)[None, :] < lengths[:, None]
        emissions = (torch.randn(32, length, labels) * scale).requires_grad_(True)
        tags = torch.randint(0, labels, (32, length))

        def nll_ours():
            ours.neg_log_likelihood(emissions, tags, mask).backward()

        def nll_theirs():
            (-theirs(emissions, tags, mask, reduction="mean")).backward()

        def viterbi_ours():
            ours.decode(emissions.detach(), mask)

        def viterbi_theirs():
            theirs.decode(emissions.detach(), mask)

        def eval_logits_ours():  # what evaluation and the pipelines compute: the path, scored by its marginals
            with torch.no_grad():
                viterbi_logits(ours, emissions.detach(), mask)

        ll_ours = ours.neg_log_likelihood(emissions, tags, mask).item()
        ll_theirs = -theirs(emissions, tags, mask, reduction="mean").item()
        path_ours = ours.decode(emissions.detach(), mask)
        path_theirs = theirs.decode(emissions.detach(), mask)
        same_paths = all(path_ours[i, : len(p)].tolist() == p for i, p in enumerate(path_theirs))
        for fn in (nll_ours, nll_theirs, viterbi_ours, viterbi_theirs, eval_logits_ours):
            fn()  # warm-up
        samples = {k: [] for k in ("nll_ours", "nll_pytorch_crf", "viterbi_ours", "viterbi_pytorch_crf",
                                   "eval_logits_ours")}
        for _ in range(args.rounds):
            samples["nll_ours"] += timed(nll_ours, args.repeats)
            samples["nll_pytorch_crf"] += timed(nll_theirs, args.repeats)
            samples["viterbi_ours"] += timed(viterbi_ours, args.repeats)
            samples["viterbi_pytorch_crf"] += timed(viterbi_theirs, args.repeats)
            samples["eval_logits_ours"] += timed(eval_logits_ours, args.repeats)
        median = {k: statistics.median(v) * 1000 for k, v in samples.items()}
        nll_speedup = median["nll_pytorch_crf"] / median["nll_ours"]
        viterbi_speedup = median["viterbi_pytorch_crf"] / median["viterbi_ours"]
        key = f"32x{length}x{labels}" + (f", sigma {scale}" if scale != 1 else "")
        results[key] = {"median_ms": median, "nll_ours": ll_ours, "nll_pytorch_crf": ll_theirs,
                        "nll_abs_diff": abs(ll_ours - ll_theirs), "viterbi_identical": same_paths,
                        "nll_speedup": nll_speedup, "viterbi_speedup": viterbi_speedup}
        rows.append(f"| {key} | {median['nll_ours']:.2f} | {median['nll_pytorch_crf']:.2f} | {nll_speedup:.2f}x | "
                    f"{median['viterbi_ours']:.2f} | {median['viterbi_pytorch_crf']:.2f} | {viterbi_speedup:.2f}x | "
                    f"{median['eval_logits_ours']:.2f} | {abs(ll_ours - ll_theirs):.1e} | {same_paths} |")
        if scale == 1:  # at sigma 50 pytorch-crf's float32 result is not the reference: speed only, reported
            targets += [target(f"{key}: NLL fwd+bwd speed-up vs pytorch-crf", nll_speedup, 1.5, ">="),
                        target(f"{key}: Viterbi speed-up vs pytorch-crf", viterbi_speedup, 1.5, ">="),
                        target(f"{key}: |NLL difference| vs pytorch-crf", abs(ll_ours - ll_theirs), 1e-4, "<="),
                        target(f"{key}: Viterbi paths identical (1 = yes)", float(same_paths), 1, ">=")]
    sweep, sweep_table = scale_sweep(reference)
    plot = Path(__file__).resolve().parent / "results" / "crf_scale_sweep.png"
    plot.parent.mkdir(parents=True, exist_ok=True)
    plot_sweep(sweep, plot)
    targets += [target("scale sweep: max relative NLL error vs float64, ours (float32)",
                       max(r["ours"][0] for r in sweep), 1e-4, "<="),
                target("scale sweep: max gradient error vs float64, ours (float32)",
                       max(r["ours"][1] for r in sweep), 1e-4, "<=")]
    table = ("Milliseconds per call (median), batch × length × labels; NLL = forward + backward. Eval logits: what "
             "evaluation and the pipelines compute for a CRF model, the Viterbi path scored by the CRF's marginals "
             "(one Viterbi and one forward-backward pass; pytorch-crf has no marginals).\n\n"
             "| shape | NLL ours | NLL pytorch-crf | speed-up | Viterbi ours | Viterbi pytorch-crf | speed-up "
             "| eval logits ours | NLL abs diff | same Viterbi paths |\n|---|---|---|---|---|---|---|---|---|---|\n"
             + "\n".join(rows))
    table += "\n\n" + sweep_table + f"\n\n![scale sweep]({plot.name})"
    write_results("crf_speed", {"settings": vars(args), "results": results, "scale_sweep": sweep, "targets": targets},
                  table)


if __name__ == "__main__":
    main()
