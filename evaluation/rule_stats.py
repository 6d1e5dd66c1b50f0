"""How often the student is right on the examples a rule covers, with a Wilson lower bound.

A rule "covers" the examples in its provenance (the examples behind its micro-rules) and, for a refine
proposal, the failures that motivated it. Accuracy is read from the finished evaluation runs that
predicted those examples; the latest prediction per example counts.
"""
from __future__ import annotations

from typing import Any

from evaluation.models import EvaluationRun, Prediction
from rules.models import Rule
from rules.statistics import rule_support, wilson_lower_bound


def covered_example_ids(rule: Rule) -> set[int]:
    """Return the ids of the examples a rule covers."""
    ids = set(rule.examples.values_list("id", flat=True))
    ids.update(int(pk) for pk in rule.proposal.get("failure_example_ids", []))
    return ids


def rule_accuracy(rule: Rule, *, run: EvaluationRun | None = None) -> dict[str, Any]:
    """Return n, correct, accuracy and its Wilson lower bound on the rule's covered examples."""
    predictions = Prediction.objects.filter(
        example_id__in=covered_example_ids(rule), run__status=EvaluationRun.Status.FINISHED, run__task=rule.task
    )
    if run is not None:
        predictions = predictions.filter(run=run)
    latest: dict[int, bool] = {}
    for example_id, correct in predictions.order_by("run__finished_at", "run_id").values_list("example_id", "correct"):
        latest[example_id] = correct
    n = len(latest)
    correct = sum(latest.values())
    return {
        "n": n,
        "correct": correct,
        "accuracy": correct / n if n else None,
        "wilson_lower": wilson_lower_bound(correct, n),
    }


def rule_statistics(rule: Rule, *, run: EvaluationRun | None = None) -> dict[str, Any]:
    """Return support and, once evaluated, accuracy on covered examples for a candidate or approved rule."""
    return {**rule_support(rule), **rule_accuracy(rule, run=run)}
