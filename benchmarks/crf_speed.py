"""Our CRF vs pytorch-crf 0.7.2: NLL forward+backward and Viterbi decoding, same inputs, results must agree.

Batch 32 × length 64 and 128 × 9 and 17 labels, right-padded sequences of random lengths, every position
labelled. Both implementations run in this process, alternating, after a warm-up; medians reported.

    python benchmarks/crf_speed.py        # installs pytorch-crf==0.7.2 for this benchmark if it is missing
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import target, write_results  # noqa: E402
from hf_adapter_ext.adapter.crf import CRF  # noqa: E402


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


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    reference = torchcrf()
    rows, results, targets = [], {}, []
    for length in (64, 128):
        for labels in (9, 17):
            torch.manual_seed(0)
            ours, theirs = CRF(labels), reference.CRF(labels, batch_first=True)
            with torch.no_grad():
                for name in ("transitions", "start_transitions", "end_transitions"):
                    getattr(ours, name).normal_()
                    getattr(theirs, name).copy_(getattr(ours, name))
            lengths = torch.randint(length // 2, length + 1, (32,))
            lengths[0] = length
            mask = torch.arange(length)[None, :] < lengths[:, None]
            emissions = torch.randn(32, length, labels, requires_grad=True)
            tags = torch.randint(0, labels, (32, length))

            def nll_ours():
                ours.neg_log_likelihood(emissions, tags, mask).backward()

            def nll_theirs():
                (-theirs(emissions, tags, mask, reduction="mean")).backward()

            def viterbi_ours():
                ours.decode(emissions.detach(), mask)

            def viterbi_theirs():
                theirs.decode(emissions.detach(), mask)

            ll_ours = ours.neg_log_likelihood(emissions, tags, mask).item()
            ll_theirs = -theirs(emissions, tags, mask, reduction="mean").item()
            path_ours = ours.decode(emissions.detach(), mask)
            path_theirs = theirs.decode(emissions.detach(), mask)
            same_paths = all(path_ours[i, : len(p)].tolist() == p for i, p in enumerate(path_theirs))
            for fn in (nll_ours, nll_theirs, viterbi_ours, viterbi_theirs):
                fn()  # warm-up
            samples = {k: [] for k in ("nll_ours", "nll_pytorch_crf", "viterbi_ours", "viterbi_pytorch_crf")}
            for _ in range(args.rounds):
                samples["nll_ours"] += timed(nll_ours, args.repeats)
                samples["nll_pytorch_crf"] += timed(nll_theirs, args.repeats)
                samples["viterbi_ours"] += timed(viterbi_ours, args.repeats)
                samples["viterbi_pytorch_crf"] += timed(viterbi_theirs, args.repeats)
            median = {k: statistics.median(v) * 1000 for k, v in samples.items()}
            nll_speedup = median["nll_pytorch_crf"] / median["nll_ours"]
            viterbi_speedup = median["viterbi_pytorch_crf"] / median["viterbi_ours"]
            key = f"32x{length}x{labels}"
            results[key] = {"median_ms": median, "nll_ours": ll_ours, "nll_pytorch_crf": ll_theirs,
                            "nll_abs_diff": abs(ll_ours - ll_theirs), "viterbi_identical": same_paths,
                            "nll_speedup": nll_speedup, "viterbi_speedup": viterbi_speedup}
            rows.append(f"| {key} | {median['nll_ours']:.2f} | {median['nll_pytorch_crf']:.2f} | {nll_speedup:.2f}x | "
                        f"{median['viterbi_ours']:.2f} | {median['viterbi_pytorch_crf']:.2f} | {viterbi_speedup:.2f}x | "
                        f"{abs(ll_ours - ll_theirs):.1e} | {same_paths} |")
            targets += [target(f"{key}: NLL fwd+bwd speed-up vs pytorch-crf", nll_speedup, 1.5, ">="),
                        target(f"{key}: Viterbi speed-up vs pytorch-crf", viterbi_speedup, 1.5, ">="),
                        target(f"{key}: |NLL difference| vs pytorch-crf", abs(ll_ours - ll_theirs), 1e-4, "<="),
                        target(f"{key}: Viterbi paths identical (1 = yes)", float(same_paths), 1, ">=")]
    table = ("Milliseconds per call (median), batch × length × labels; NLL = forward + backward.\n\n"
             "| shape | NLL ours | NLL pytorch-crf | speed-up | Viterbi ours | Viterbi pytorch-crf | speed-up "
             "| NLL abs diff | same Viterbi paths |\n|---|---|---|---|---|---|---|---|---|\n" + "\n".join(rows))
    write_results("crf_speed", {"settings": vars(args), "results": results, "targets": targets}, table)


if __name__ == "__main__":
    main()
