"""Rule statistics on the review pages: support and how the student does on the examples a rule covers."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from evaluation.models import EvaluationRun, Prediction
from evaluation.rule_stats import accuracy_hint, rule_accuracy, rules_accuracy
from rules.models import Example, Rule, Task
from rules.services import rule_propose
from rules.statistics import wilson_lower_bound
from tests.support.factories import make_examples


def _client(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _rule(task: Task, examples: list[Example], text: str = "If x, then Contradiction", **extra: object) -> Rule:
    return rule_propose(task=task, text=text, label="Contradiction", origin=Rule.Origin.TEACHER,
                        proposed_by_model="fake-teacher", support=len(examples), examples=examples, **extra)


def _run(task: Task, outcomes: list[tuple[Example, bool]], *, minutes_ago: int = 0, mode: str = "zero-shot",
         status: str = EvaluationRun.Status.FINISHED) -> EvaluationRun:
    """Record a run plainly, as if the student had predicted these examples right or wrong."""
    run = EvaluationRun.objects.create(task=task, mode=mode, split="train", model_path="m.gguf", status=status,
                                       finished_at=timezone.now() - timedelta(minutes=minutes_ago))
    for example, correct in outcomes:
        Prediction.objects.create(run=run, example=example, label=example.gold_label, correct=correct, latency_ms=1)
    return run


def test_the_rule_page_says_not_evaluated_yet_before_any_run(task: Task, reviewer: User) -> None:
    rule = _rule(task, make_examples(task, 3))
    body = _client(reviewer).get(f"/rules/{rule.pk}/").content.decode()
    assert "How the student does on the examples this rule covers" in body
    assert "Not evaluated yet." in body
    assert "No finished evaluation run has predicted the 3 examples this rule covers." in body


def test_the_rule_page_shows_the_figures_of_the_latest_run_on_its_examples(task: Task, auditor: User) -> None:
    covered = make_examples(task, 3)
    other = make_examples(task, 1, start=3)[0]
    rule = _rule(task, covered)
    _run(task, [(ex, True) for ex in covered], minutes_ago=60)
    latest = _run(task, [(covered[0], True), (covered[1], True), (covered[2], False), (other, False)])
    _run(task, [(ex, False) for ex in covered], status=EvaluationRun.Status.FAILED)
    body = _client(auditor).get(f"/rules/{rule.pk}/").content.decode()
    assert f'<a href="/evaluations/{latest.pk}/">Evaluation {latest.pk}</a>' in body
    assert '<dd class="num">3 of 3</dd>' in body and '<dd class="num">2</dd>' in body
    assert '<dd class="num">0.67</dd>' in body
    assert f'<dd class="num">{wilson_lower_bound(2, 3):.2f}</dd>' in body
    assert "3 examples: too few to tell." in body
    assert "Not evaluated yet" not in body


def test_the_htmx_workspace_fragment_carries_the_panel_without_the_page_shell(task: Task, reviewer: User) -> None:
    covered = make_examples(task, 2)
    rule = _rule(task, covered)
    _run(task, [(ex, True) for ex in covered])
    body = _client(reviewer).get(f"/rules/{rule.pk}/", HTTP_HX_REQUEST="true").content.decode()
    assert "<html" not in body and "How the student does on the examples this rule covers" in body
    assert '<dd class="num">2 of 2</dd>' in body and "2 examples: too few to tell." in body


def test_a_refine_proposal_also_covers_the_failures_that_motivated_it(task: Task) -> None:
    provenance, failures = make_examples(task, 2), make_examples(task, 2, start=2)
    rule = rule_propose(
        task=task, text="If y, then Entailment", label="Entailment", origin=Rule.Origin.REFINE, examples=provenance,
        proposal={"failure_example_ids": [ex.pk for ex in failures]},
    )
    run = _run(task, [(ex, True) for ex in [*provenance, *failures]])
    figures = rule_accuracy(rule)
    assert figures["run"]["id"] == run.pk and (figures["n_covered"], figures["n"], figures["correct"]) == (4, 4, 4)


def test_a_run_of_another_task_does_not_count(task: Task) -> None:
    rule = _rule(task, make_examples(task, 2))
    other_task = Task.objects.create(name="other", labels=task.labels, input_fields=task.input_fields)
    EvaluationRun.objects.create(task=other_task, mode="zero-shot", split="train", model_path="m.gguf",
                                 status=EvaluationRun.Status.FINISHED, finished_at=timezone.now())
    assert rule_accuracy(rule)["n"] == 0


def test_rules_sharing_examples_each_count_them_once(task: Task) -> None:
    shared = make_examples(task, 3)
    first, second = _rule(task, shared, text="If a, then Contradiction"), _rule(task, shared[:2])
    _run(task, [(ex, True) for ex in shared])
    figures = rules_accuracy([first, second])
    assert (figures[first.pk]["n"], figures[second.pk]["n"]) == (3, 2)


@pytest.mark.parametrize(
    ("n", "correct", "words"),
    [(0, 0, "Not evaluated yet."), (1, 1, "1 example: too few to tell."), (9, 9, "9 examples: too few to tell."),
     (100, 95, "Reliably right"), (40, 28, "Right more often than not"), (40, 12, "less than half the time")],
)
def test_the_hint_puts_the_figures_in_plain_words(n: int, correct: int, words: str) -> None:
    assert words in accuracy_hint(n, correct)


def _queue_rules(task: Task, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        examples = make_examples(task, 3, start=3 * i)
        _rule(task, examples, text=f"If clause {i}, then Contradiction")
        _run(task, [(examples[0], True), (examples[1], True), (examples[2], False)])


def _queue_queries(client: Client) -> tuple[int, str]:
    with CaptureQueriesContext(connection) as ctx:
        response = client.get("/review/")
    assert response.status_code == 200
    return len(ctx.captured_queries), response.content.decode()


def test_the_queue_shows_right_on_covered_in_the_same_number_of_queries_for_2_and_20_rules(
    task: Task, reviewer: User
) -> None:
    client = _client(reviewer)
    _queue_rules(task, 2)
    client.get("/review/")  # warm the session and permission caches
    small, body = _queue_queries(client)
    assert "Right on its examples" in body and body.count("2 of 3 <span") == 2
    _queue_rules(task, 18, start=2)
    _rule(task, [], text="If never evaluated, then Contradiction")
    large, body = _queue_queries(client)
    assert small == large
    assert body.count("2 of 3 <span") == 20 and "not evaluated" in body
