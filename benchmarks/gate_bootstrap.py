"""Benchmark the promotion gate's paired bootstrap: seconds per verdict at the test-split sizes we see.

A benchmark, not a test: it prints one JSON object (the last line). Run it from the project root:

    .venv/bin/python benchmarks/gate_bootstrap.py [--sizes 18 300 2000] [--repeat 3]

Predictions are synthetic (a candidate right on 80% of examples, a constant majority baseline and a
zero-shot run right on 40%); only their number matters for timing. The load average is part of the
output: on a shared machine the timings are only as good as the quiet they were taken in.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from evaluation.runs.metrics import N_BOOTSTRAP, paired_bootstrap_margin  # noqa: E402

LABELS = ["Entailment", "Contradiction", "NotMentioned"]


def _case(n: int) -> tuple[list[str], list[str], list[list[str]]]:
    gold = [LABELS[i % 3] for i in range(n)]
    candidate = [g if i % 5 else LABELS[(LABELS.index(g) + 1) % 3] for i, g in enumerate(gold)]
    zero_shot = [g if i % 5 < 2 else LABELS[0] for i, g in enumerate(gold)]
    return gold, candidate, [[LABELS[0]] * n, zero_shot]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[18, 300, 2000])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    figures = {}
    for n in args.sizes:
        gold, candidate, baselines = _case(n)
        timings = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            interval = paired_bootstrap_margin(gold, candidate, baselines, LABELS, random_state=0)
            timings.append(time.perf_counter() - started)
        figures[str(n)] = {"seconds_best": round(min(timings), 4), "interval": list(interval)}
        print(f"n={n:<6} best of {args.repeat}: {min(timings):.3f} s  margin 95% CI {interval}")
    print(json.dumps({"resamples": N_BOOTSTRAP, "sizes": figures, "load_before": round(load_before, 2),
                      "load_after": round(os.getloadavg()[0], 2)}))


if __name__ == "__main__":
    main()
