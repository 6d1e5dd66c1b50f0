"""Rule statistics on the review pages: a rule's measured effect for its current revision, or plainly none."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from evaluation.models import EvaluationRun, Prediction, RuleImpactRun
from evaluation.runs.rule_stats import accuracy_hint, rule_accuracy, rules_accuracy
from rules.models import Example, PromptVersion, Rule, Task
from rules.review.services import rule_edit, rule_propose
from tests.support.factories import make_examples
from tests.support.prompt_versions import approve, approve_all, compiled, gate_examples, scored_run
from tests.support.signatures import sign_edit


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


def _impact(version: PromptVersion, rows: dict[int, tuple[int, int, int]], *, warning: str = "",
            minutes_ago: int = 0) -> RuleImpactRun:
    """Record a finished impact run plainly: {rule number: (changed, right→wrong, wrong→right)} on 20 examples."""
    entries = {e.position: e for e in version.entries.all()}
    results = {"labels": version.task.label_names, "full": {"n": 20, "macro_f1": 0.5}, "warning": warning,
               "set": {"dead_weight": [], "hurts": [], "helps": [], "carries": []},
               "rules": [{"number": k, "rule_id": entries[k].rule_id, "revision_id": entries[k].revision_id,
                          "label": "", "text": "", "n": 20, "changed": c, "right_to_wrong": rw, "wrong_to_right": wr,
                          "wrong_to_wrong": c - rw - wr, "f1_delta": -0.021, "f1_delta_ci95": [-0.04, -0.003],
                          "per_label": {}} for k, (c, rw, wr) in rows.items()]}
    run = RuleImpactRun(prompt_version=version, task=version.task, split="dev", model_path="m.gguf",
                        model_sha256="m" * 64, status=RuleImpactRun.Status.FINISHED, results=results,
                        finished_at=timezone.now() - timedelta(minutes=minutes_ago), n_examples=20, n_rules=len(rows))
    run.full_clean()
    run.save()
    return run


def test_the_rule_page_says_not_measured_for_this_revision_before_any_impact_run(
    task: Task, reviewer: User, admin_user: User
) -> None:
    rule = approve_all(task, reviewer)[0]
    compiled(task, admin_user)
    body = _client(reviewer).get(f"/rules/{rule.pk}/").content.decode()
    assert "What this rule does to the student" in body
    assert "Not measured for this revision yet." in body and "Right on its examples" not in body


def test_the_rule_page_shows_what_leaving_its_current_revision_out_changed(
    task: Task, auditor: User, reviewer: User, admin_user: User
) -> None:
    rule = approve_all(task, reviewer)[0]
    version = compiled(task, admin_user)
    _impact(version, {1: (2, 2, 0)}, minutes_ago=60)
    latest = _impact(version, {1: (7, 5, 2), 2: (0, 0, 0), 3: (0, 0, 0)})
    body = _client(auditor).get(f"/rules/{rule.pk}/").content.decode()
    assert ("Leaving it out changes 7 of 20 decisions: 5 right→wrong, 2 wrong→right; "
            "macro-F1 -0.021 [-0.040, -0.003].") in body
    assert f'<a href="/impact/{latest.pk}/">rule impact {latest.pk}</a>' in body


def test_a_run_whose_prompt_lacked_the_current_revision_never_speaks_for_it(
    task: Task, reviewer: User, second_reviewer: User, admin_user: User
) -> None:
    rule = approve_all(task, reviewer)[0]
    version = compiled(task, admin_user)
    _impact(version, {1: (7, 5, 2)})
    text = "If the clause lets anyone share, then Entailment"
    rule_edit(rule=rule, user=second_reviewer, lock_version=rule.lock_version, reason="Broader", text=text,
              label="Entailment", topic="Sharing with employees",
              signature=sign_edit(second_reviewer, text=text, label="Entailment", topic="Sharing with employees"))
    rule.refresh_from_db()
    body = _client(reviewer).get(f"/rules/{rule.pk}/").content.decode()
    assert "Not measured for this revision yet." in body and "changes 7 of 20" not in body


def test_a_constant_students_evaluation_gives_no_perfect_score_and_says_why(
    task: Task, reviewer: User, admin_user: User
) -> None:
    rule = approve_all(task, reviewer)[0]  # an Entailment rule
    version = compiled(task, admin_user)
    scored_run(task, gate_examples(task), version=version, constant="Entailment")
    body = _client(reviewer).get(f"/rules/{rule.pk}/").content.decode()
    assert "Not measured for this revision yet." in body
    assert "The student answered Entailment for every one of the 18 examples" in body
    queue = _client(reviewer).get("/review/?status=approved").content.decode()
    assert "not measured for this revision yet" in queue and "near-constant or at chance" in queue


def test_the_htmx_workspace_fragment_carries_the_panel_without_the_page_shell(
    task: Task, reviewer: User, admin_user: User
) -> None:
    rule = approve_all(task, reviewer)[0]
    _impact(compiled(task, admin_user), {1: (0, 0, 0)})
    body = _client(reviewer).get(f"/rules/{rule.pk}/", HTTP_HX_REQUEST="true").content.decode()
    assert "<html" not in body and "Leaving it out changes none of 20 decisions." in body


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


def _queue_queries(client: Client) -> tuple[int, str]:
    with CaptureQueriesContext(connection) as ctx:
        response = client.get("/review/?status=approved")
    assert response.status_code == 200
    return len(ctx.captured_queries), response.content.decode()


def test_the_queue_shows_each_rules_effect_in_the_same_number_of_queries_for_3_and_20_rules(
    task: Task, reviewer: User, admin_user: User
) -> None:
    client = _client(reviewer)
    approve_all(task, reviewer)
    _impact(compiled(task, admin_user), {1: (7, 5, 2), 2: (0, 0, 0), 3: (1, 0, 1)})
    client.get("/review/?status=approved")  # warm the session and permission caches
    small, body = _queue_queries(client)
    assert "Effect when left out" in body and "7 of 20 changed" in body and "changes none of 20" in body
    for i in range(17):
        approve(task, reviewer, f"If clause {i} says so, then Contradiction", "Contradiction")
    large, body = _queue_queries(client)
    assert small == large
    assert body.count("not measured for this revision yet") == 17
