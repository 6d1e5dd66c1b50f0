"""What the evidence says about one rule: its measured effect (rule impact), and the older coverage figures.

The rule page and the review queue show the rule's *effect*: the latest finished rule impact run that left
out this rule's current revision (evaluation/runs/impact.py), or plainly "not measured for this revision yet" —
never figures from a run whose prompt lacked the rule. When the run behind a figure (or, unmeasured, the
latest evaluation of a version holding the revision) was near-constant or at chance, the figure says so.

Below, kept for the command line and refine: how often the student is right on the examples a rule covers,
with a Wilson lower bound. It is no longer shown as the rule's figure: with a student that answers one label
for everything, every rule of that label looked perfect (issue 23).

A rule "covers" the examples in its provenance (the examples behind its micro-rules) and, for a refine
proposal, the failures that motivated it. The figures come from ONE evaluation run: the latest finished
run of the rule's task that predicted any covered example, so they describe one prompt and one student
rather than a mix. The rule page shows them as a panel and the review queue as a column, both registered
here (``register``) because rules never imports evaluation.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Any

from django.urls import reverse

from evaluation.models import EvaluationRun, Prediction, RuleImpactRun
from evaluation.runs.impact import behaviour_warning, rule_impact_sentence
from rules.models import PromptVersionRule, Rule
from rules.panels import register_queue_figure, register_rule_panel
from rules.review.statistics import rule_support, wilson_lower_bound

# Below this many covered predictions the interval is too wide to say anything about a rule.
MIN_EVIDENCE = 10


def _failure_ids(rule: Rule) -> set[int]:
    return {int(pk) for pk in (rule.proposal or {}).get("failure_example_ids", []) if str(pk).isdigit()}


def covered_example_ids(rule: Rule) -> set[int]:
    """Return the ids of the examples a rule covers."""
    return set(rule.examples.values_list("id", flat=True)) | _failure_ids(rule)


def accuracy_hint(n: int, correct: int) -> str:
    """Say in plain words what ``correct`` right out of ``n`` covered predictions tells a reviewer."""
    if n == 0:
        return "Not evaluated yet."
    lower = wilson_lower_bound(correct, n) or 0.0
    if n < MIN_EVIDENCE:
        return f"{n} example{'s' if n != 1 else ''}: too few to tell."
    if lower >= 0.8:
        return f"Reliably right on these examples: at least {lower:.0%} with 95% confidence."
    if lower >= 0.5:
        return f"Right more often than not: at least {lower:.0%} with 95% confidence."
    return f"Could be right less than half the time: the 95% lower bound is {lower:.0%}."


def _figures(covered: set[int], rows: list[tuple[Any, ...]]) -> dict[str, Any]:
    """Return the figures of one rule from prediction rows (example, run, finished, mode, split, correct)."""
    runs = {(finished, run_id): (mode, split) for example_id, run_id, finished, mode, split, _ in rows
            if example_id in covered}
    figures: dict[str, Any] = {"n_covered": len(covered), "run": None, "n": 0, "correct": 0}
    if runs:
        finished, run_id = max(runs, key=lambda key: (key[0] is not None, key[0] or 0, key[1]))
        mode, split = runs[(finished, run_id)]
        outcomes = [ok for example_id, rid, *_, ok in rows if rid == run_id and example_id in covered]
        figures.update(
            run={"id": run_id, "mode": mode, "split": split, "finished_at": finished,
                 "url": reverse("pld-evaluation-detail", args=[run_id])},
            n=len(outcomes),
            correct=sum(outcomes),
        )
    n, correct = figures["n"], figures["correct"]
    return {
        **figures,
        "accuracy": correct / n if n else None,
        "wilson_lower": wilson_lower_bound(correct, n),
        "hint": accuracy_hint(n, correct),
    }


def rules_accuracy(rules: list[Rule], *, run: EvaluationRun | None = None) -> dict[int, dict[str, Any]]:
    """Return each rule's accuracy figures on its covered examples, in one query however many rules.

    Without ``run`` each rule's latest finished run (of its task, predicting any covered example) counts.
    """
    covered: dict[int, set[int]] = defaultdict(set)
    prefix = "example__predictions__"
    fields = ["run__task_id", "example_id", "run_id", "run__finished_at", "run__mode", "run__split", "correct",
              "run__status"]
    # One outer join from the rules' examples to their predictions; an example never predicted gives one row of Nones.
    links = Rule.examples.through.objects.filter(rule_id__in=[rule.pk for rule in rules]).values_list(
        "rule_id", "example_id", *(prefix + name for name in fields if name != "example_id")
    )
    predictions: list[tuple[Any, ...]] = []
    for rule_id, example_id, task_id, *row in links:
        covered[rule_id].add(example_id)
        predictions.append((task_id, example_id, *row))
    # Refine proposals link their failures as examples; only a proposal that does not needs a second query.
    unlinked = {pk for rule in rules for pk in _failure_ids(rule) if pk not in covered[rule.pk]}
    if unlinked:
        predictions += Prediction.objects.filter(example_id__in=unlinked).values_list(*fields)
    for rule in rules:
        covered[rule.pk] |= _failure_ids(rule)
    # A set: an example two rules share comes back once per rule, and counts once.
    by_task: dict[int, set[tuple[Any, ...]]] = defaultdict(set)
    for task_id, example_id, run_id, finished, mode, split, correct, status in predictions:
        if status == EvaluationRun.Status.FINISHED and (run is None or run_id == run.pk):
            by_task[task_id].add((example_id, run_id, finished, mode, split, correct))
    return {rule.pk: _figures(covered[rule.pk], list(by_task.get(rule.task_id, ()))) for rule in rules}


def rule_accuracy(rule: Rule, *, run: EvaluationRun | None = None) -> dict[str, Any]:
    """Return the run, n, correct, accuracy, Wilson lower bound and a plain hint on the rule's covered examples."""
    return rules_accuracy([rule], run=run)[rule.pk]


def rule_statistics(rule: Rule, *, run: EvaluationRun | None = None) -> dict[str, Any]:
    """Return support and, once evaluated, accuracy on covered examples for a candidate or approved rule."""
    return {**rule_support(rule), **rule_accuracy(rule, run=run)}


def statistics_panel(rule: Rule, user: Any) -> tuple[str, dict[str, Any]] | None:
    """Return the rule page's statistics panel: support and how the student did on the covered examples."""
    if not user.has_perm("evaluation.view_prediction"):
        return None
    return "evaluation/rule_stats_panel.html", {"rule": rule, **rule_accuracy(rule)}


def _counts_warning(labels: list[str], metrics: dict[str, Any]) -> str:
    """Return behaviour_warning's words for an evaluation run, from its confusion matrix (rows gold, columns predicted).
    """
    matrix = metrics.get("confusion") or []
    names = metrics.get("labels") or labels
    if not matrix:
        return ""
    predicted: list[str] = []
    gold: list[str] = []
    for i, row in enumerate(matrix):
        for j, count in enumerate(row):
            predicted += [names[j]] * int(count)
            gold += [names[i]] * int(count)
    return behaviour_warning(names, predicted, gold)


def rules_effect(rules: list[Rule]) -> dict[int, dict[str, Any]]:
    """Return each rule's effect figures for its current revision, in three queries however many rules."""
    revisions = {rule.pk: rule.current_revision_id for rule in rules}
    entries = PromptVersionRule.objects.filter(rule_id__in=list(revisions)).values_list(
        "rule_id", "revision_id", "prompt_version_id"
    )
    versions: dict[int, set[int]] = defaultdict(set)
    for rule_id, revision_id, version_id in entries:
        if revisions.get(rule_id) == revision_id:
            versions[rule_id].add(version_id)
    wanted = set().union(*versions.values()) if versions else set()
    impact_runs = list(
        RuleImpactRun.objects.filter(status=RuleImpactRun.Status.FINISHED, prompt_version_id__in=wanted)
        .order_by("-finished_at", "-id").values("id", "prompt_version_id", "split", "results", "finished_at")
    )
    evaluations = list(
        EvaluationRun.objects.filter(status=EvaluationRun.Status.FINISHED, prompt_version_id__in=wanted)
        .order_by("-finished_at", "-id").values("id", "prompt_version_id", "split", "metrics")
    )
    figures: dict[int, dict[str, Any]] = {}
    for rule in rules:
        mine = versions.get(rule.pk, set())
        found = None
        for run in impact_runs:
            if run["prompt_version_id"] not in mine:
                continue
            row = next((r for r in run["results"].get("rules", [])
                        if r["rule_id"] == rule.pk and r["revision_id"] == revisions[rule.pk]), None)
            if row is not None:
                found = (run, row)
                break
        if found is not None:
            run, row = found
            figures[rule.pk] = {
                "measured": True, "row": row, "sentence": rule_impact_sentence(row),
                "run": {"id": run["id"], "split": run["split"], "finished_at": run["finished_at"],
                        "url": reverse("pld-rule-impact-detail", args=[run["id"]])},
                "warning": run["results"].get("warning", ""),
            }
            continue
        evaluation = next((e for e in evaluations if e["prompt_version_id"] in mine), None)
        figures[rule.pk] = {
            "measured": False, "in_a_version": bool(mine),
            "warning": _counts_warning([], evaluation["metrics"]) if evaluation else "",
            "evaluation": {"id": evaluation["id"], "url": reverse("pld-evaluation-detail", args=[evaluation["id"]])}
            if evaluation else None,
        }
    return figures


def effect_panel(rule: Rule, user: Any) -> tuple[str, dict[str, Any]] | None:
    """Return the rule page's effect panel: what leaving this revision out changed, or that it is unmeasured."""
    if not user.has_perm("evaluation.view_prediction"):
        return None
    return "evaluation/rule_stats_panel.html", {"rule": rule, **rules_effect([rule])[rule.pk]}


def register() -> None:
    """Add the effect panel to the rule page and its figure to the review queue."""
    register_rule_panel(effect_panel)
    register_queue_figure("Effect when left out", rules_effect, template_name="evaluation/rule_stats_cell.html")
