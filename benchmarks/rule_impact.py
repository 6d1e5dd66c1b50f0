"""Benchmark rule impact (leave-one-out with a cached prefix) against the runner deciding the same examples.

A benchmark, not a test: it prints one JSON object (the last line). Run it from the project root:

    .venv/bin/python benchmarks/rule_impact.py [--rules 12] [--examples 40] [--threads 2]

It compiles a synthetic rule set with the compiler's own layout (``rules.prompts.compiler.prompt_parts``), then

- the runner: every example decided with the whole prompt as an evaluation run does (``Student.classify``,
  rules prefix cached) — ``runner_pld_p50_ms``;
- the impact job's loop (``evaluation.runs.impact``): variant-major, each variant's prefix prepared once (only
  the part after the rules it shares with the cached prefix is processed), then every example decided.

``full_recompute_tokens`` is what naive leave-one-out would process for the prefixes (every variant's
prefix from scratch); ``variant_prefix_tokens_processed`` is what the cached path processed.
``per_rule_example_ms`` is the loop's wall time per decision ((rules + 1) × examples decisions, the
whole-set variant included). ``max_abs_diff_vs_scratch`` compares cached leave-one-out decisions with
from-scratch decisions of the same prompts. Bars (issue 23): prefix tokens ≤ 0.6 × the naive figure,
``per_rule_example_ms`` ≤ 1.2 × ``runner_pld_p50_ms``. The load average is part of the output.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("PLD_STUDENT_STATE_DIR", tempfile.mkdtemp(prefix="pld-bench-states-"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pldreview.settings")
os.environ.setdefault("DJANGO_SECRET_KEY", "benchmark-only-never-serves-requests-" + "x" * 30)
import django  # noqa: E402

django.setup()

from evaluation.runs.impact import PreparedVariant, Variant, _as_rules  # noqa: E402
from evaluation.student.in_process import Student, check_model_file  # noqa: E402
from rules.prompts.compiler import prompt_parts  # noqa: E402
from rules.student_model import bundled_model_path  # noqa: E402

LABELS = ["Entailment", "Contradiction", "NotMentioned"]
TOPICS = ["Disclosure to employees", "Third parties", "Return of information", "Governing law"]
CONDITIONS = [
    "lets the recipient share confidential information with its employees who need to know it",
    "forbids any disclosure of confidential information to third parties",
    "requires the recipient to return or destroy all confidential information at termination",
    "names the law that governs the agreement without saying anything about the hypothesis",
    "allows the recipient to keep an archival copy after the agreement ends",
    "says the obligations survive for a fixed number of years after termination",
]


def _task() -> SimpleNamespace:
    labels = [{"name": "Entailment", "description": "The clause says the hypothesis holds."},
              {"name": "Contradiction", "description": "The clause says the opposite."},
              {"name": "NotMentioned", "description": "The clause says nothing about it."}]
    return SimpleNamespace(description="Decide whether an NDA clause entails, contradicts or does not mention "
                           "the hypothesis.", labels=labels, label_names=LABELS)


def _numbered(n_rules: int) -> list[tuple[SimpleNamespace, SimpleNamespace]]:
    numbered = []
    for i in range(n_rules):
        revision = SimpleNamespace(
            topic=TOPICS[(i // 3) % len(TOPICS)], label=LABELS[i % 3], precedence_note="",
            text=f"If the clause {CONDITIONS[i % len(CONDITIONS)]} (case {i + 1}), then {LABELS[i % 3]}",
        )
        numbered.append((SimpleNamespace(pk=i + 1), revision))
    return numbered


def _variants(n_rules: int) -> list[Variant]:
    task, numbered = _task(), _numbered(n_rules)
    variants = [Variant(0, None, None, _as_rules(prompt_parts(task=task, numbered=numbered)))]
    for k in range(1, n_rules + 1):
        without = numbered[: k - 1] + numbered[k:]
        variants.append(Variant(k, k, k, _as_rules(prompt_parts(task=task, numbered=without))))
    return variants


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rules", type=int, default=12)
    parser.add_argument("--examples", type=int, default=40)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    student = Student(check_model_file(bundled_model_path()), n_ctx=4096, n_threads=args.threads)
    rows = [json.loads(line) for line in (ROOT / "fixtures" / "nda_demo.jsonl").read_text().splitlines() if line]
    examples = [f"Premise: {r['premise']}\nHypothesis: {r['hypothesis']}" for r in rows[: args.examples]]
    variants = _variants(args.rules)
    full_text = variants[0].text

    # The runner as an evaluation run decides: the whole prompt, its rules prefix cached after the first example.
    student.classify(rules=full_text, example=examples[0], labels=LABELS)
    runner_ms = [student.classify(rules=full_text, example=e, labels=LABELS).latency_ms for e in examples]

    started = time.perf_counter()
    processed = naive = 0
    decisions: dict[tuple[int, int], dict[str, float]] = {}
    prepared_all = []
    for variant in variants:
        prepared = PreparedVariant(student, variant)
        processed += prepared.prepare(student)
        naive += len(prepared.prefix)
        prepared_all.append(prepared)
        for i, example in enumerate(examples):
            decision = student.classify_prefixed(prefix=prepared.prefix, cuts=prepared.cuts, example=example,
                                                 labels=LABELS)
            decisions[(variant.number, i)] = decision.probabilities
    seconds = time.perf_counter() - started
    n_decisions = len(variants) * len(examples)

    # Exactness spot check: a few variants' first example again, from scratch.
    worst = 0.0
    for prepared in prepared_all[1:: max(1, len(prepared_all) // 4)]:
        scratch = student.classify_prefixed(prefix=prepared.prefix, cuts=prepared.cuts, example=examples[0],
                                            labels=LABELS, reuse_prefix=False)
        cached = decisions[(prepared.variant.number, 0)]
        worst = max(worst, max(abs(scratch.probabilities[name] - cached[name]) for name in LABELS))
    changed = sum(1 for (k, i), p in decisions.items() if k and max(p, key=p.get) != max(
        decisions[(0, i)], key=decisions[(0, i)].get))
    runner_p50 = statistics.median(runner_ms)
    per_decision = seconds * 1000.0 / n_decisions
    result = {
        "rules": args.rules,
        "examples": len(examples),
        "prompt_tokens_full_prefix": len(prepared_all[0].prefix),
        "variant_prefix_tokens_processed": processed,
        "full_recompute_tokens": naive,
        "prefix_token_ratio": round(processed / naive, 3),
        "seconds": round(seconds, 2),
        "decisions": n_decisions,
        "per_rule_example_ms": round(per_decision, 1),
        "runner_pld_p50_ms": round(runner_p50, 1),
        "per_rule_example_over_runner_p50": round(per_decision / runner_p50, 3),
        "max_abs_diff_vs_scratch": worst,
        "decisions_changed_by_a_left_out_rule": changed,
        "bars": {
            "prefix_tokens_at_most_0.6_of_naive": processed <= 0.6 * naive,
            "per_rule_example_at_most_1.2_runner_p50": per_decision <= 1.2 * runner_p50,
        },
        "threads": args.threads,
        "load_average_before": round(load_before, 2),
        "load_average_after": round(os.getloadavg()[0], 2),
    }
    student.close()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
