"""Rule impact and "Why this label?" on the pages: who may ask, what is stored, what the report and export say."""
from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.db import DatabaseError, connection, transaction
from django.test import Client
from django.utils import timezone

from evaluation.models import ClassifyCall, DecisionExplanation, RuleImpactRun
from evaluation.release.reports import report_data, report_render_html
from evaluation.runs.impact import EXPLAIN_JOB_KIND, latest_explanation
from pldreview.models import Job
from rules.models import PromptVersion, Task
from tests.support.factories import ClassifyCallFactory
from tests.support.prompt_versions import approve_all, compiled


def _client(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def version(task: Task, reviewer: User, admin_user: User) -> PromptVersion:
    approve_all(task, reviewer)
    return compiled(task, admin_user)


def _explanation(call: ClassifyCall, *, deciding: bool, minutes_ago: int = 0) -> DecisionExplanation:
    entries = [{"number": k, "rule_id": e.rule_id, "revision_id": e.revision_id,
                "label": "Contradiction" if deciding and k == 1 else "Entailment",
                "probabilities": {"Entailment": 0.3 if deciding and k == 1 else 0.7, "Contradiction": 0.2,
                                  "NotMentioned": 0.1}, "changes": deciding and k == 1}
               for k, e in ((e.position, e) for e in call.prompt_version.entries.order_by("position"))]
    explanation = DecisionExplanation(
        call=call, prompt_version=call.prompt_version, prompt_sha256=call.prompt_version.sha256, model_sha256="m" * 64,
        label="Entailment", probabilities={"Entailment": 0.8, "Contradiction": 0.1, "NotMentioned": 0.1},
        rules=entries, deciding_numbers=[1] if deciding else [],
        created_at=timezone.now() - timedelta(minutes=minutes_ago),
    )
    explanation.full_clean()
    explanation.save()
    return explanation


def test_an_auditor_asks_why_and_gets_the_job_page(version: PromptVersion, auditor: User) -> None:
    call = ClassifyCallFactory(prompt_version=version)
    response = _client(auditor).post(f"/calls/{call.pk}/explain/")
    job = Job.objects.get(kind=EXPLAIN_JOB_KIND)
    assert response.status_code == 302 and response["Location"] == job.get_absolute_url()
    assert job.params == {"call_id": call.pk} and job.created_by == auditor


def test_a_reviewer_may_not_start_an_explanation_and_a_hash_only_call_cannot_be_explained(
    version: PromptVersion, reviewer: User, auditor: User
) -> None:
    call = ClassifyCallFactory(prompt_version=version)
    assert _client(reviewer).post(f"/calls/{call.pk}/explain/").status_code == 403
    hashed = ClassifyCallFactory(prompt_version=version, input_retention="hash", inputs={})
    response = _client(auditor).post(f"/calls/{hashed.pk}/explain/", follow=True)
    assert "kept only a hash of its input" in response.content.decode()
    assert not Job.objects.filter(kind=EXPLAIN_JOB_KIND).exists()


def test_the_call_page_and_export_carry_the_latest_explanation(version: PromptVersion, auditor: User) -> None:
    call = ClassifyCallFactory(prompt_version=version)
    _explanation(call, deciding=False, minutes_ago=5)
    newest = _explanation(call, deciding=True)
    assert latest_explanation(call) == newest
    body = _client(auditor).get(f"/calls/{call.pk}/").content.decode()
    assert "Rules whose removal changes this decision" in body and "Explain again" in body
    response = _client(auditor).get(f"/tasks/{version.task.name}/production/export.json")
    exported = json.loads(b"".join(response.streaming_content))  # the export streams (evaluation/production/exports.py)
    assert exported["calls"][0]["explanation"]["deciding_rules"] == [1]


def test_an_explanation_is_never_changed_even_by_a_database_writer(version: PromptVersion) -> None:
    explanation = _explanation(ClassifyCallFactory(prompt_version=version), deciding=False)
    with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE evaluation_decisionexplanation SET deciding_numbers = '[2]' WHERE id = {explanation.pk}"
        )
    explanation.refresh_from_db()
    assert explanation.deciding_numbers == []


def _finished(version: PromptVersion) -> RuleImpactRun:
    entries = list(version.entries.order_by("position"))
    rows = [{"number": e.position, "rule_id": e.rule_id, "revision_id": e.revision_id, "label": e.revision.label,
             "text": e.revision.text, "n": 10, "changed": changed, "right_to_wrong": changed, "wrong_to_right": 0,
             "wrong_to_wrong": 0, "f1_delta": delta, "f1_delta_ci95": [delta - 0.1, delta + 0.01], "per_label": {}}
            for e, changed, delta in zip(entries, (1, 4, 0), (-0.05, -0.3, 0.0), strict=True)]
    rows.sort(key=lambda r: -abs(r["f1_delta"]))
    run = RuleImpactRun(prompt_version=version, task=version.task, model_path="m.gguf", model_sha256="m" * 64,
                        status="finished", finished_at=timezone.now(), n_examples=10, n_rules=3,
                        results={"full": {"n": 10, "macro_f1": 0.6}, "rules": rows, "warning": "",
                                 "set": {"dead_weight": [3], "hurts": [], "helps": [2], "carries": [2, 1]}})
    run.full_clean()
    run.save()
    return run


def test_the_signed_report_says_not_measured_or_shows_the_table_ordered_by_effect(
    version: PromptVersion, admin_user: User
) -> None:
    def html() -> str:
        data = report_data(prompt_version=version, generated_by=admin_user, generated_at=timezone.now(),
                           report_id=None, identity=None)
        return report_render_html(data)

    assert "Not measured: no rule impact run of version 1 has finished." in html()
    _finished(version)
    body = html()
    assert body.index(">Rule 2</th>") < body.index(">Rule 1</th>") < body.index(">Rule 3</th>")
    assert "Change nothing for this student (dead weight here): Rule 3." in body


def test_the_impact_pages_show_the_table_and_only_admins_start_a_run(
    version: PromptVersion, reviewer: User, admin_user: User
) -> None:
    run = _finished(version)
    assert "Measure each rule's impact" not in _client(reviewer).get(f"/prompts/{version.pk}/impact/").content.decode()
    assert _client(reviewer).post(f"/prompts/{version.pk}/impact/start/", {"split": "dev"}).status_code == 403
    body = _client(reviewer).get(f"/impact/{run.pk}/").content.decode()
    assert "What each rule does" in body and "4 of 10" in body
    assert f"/prompts/{version.pk}/impact/" in _client(admin_user).get(f"/prompts/{version.pk}/").content.decode()
    response = _client(admin_user).post(f"/prompts/{version.pk}/impact/start/", {"split": "dev"}, follow=True)
    assert "has no examples in its dev split" in response.content.decode()


def test_an_admin_cancels_a_queued_impact_run_and_resumes_it(version: PromptVersion, admin_user: User) -> None:
    from evaluation.runs.impact import rule_impact_create
    from evaluation.runs.impact_runs import rule_impact_job_for_command
    from tests.support.factories import NDA_ROWS, add_examples

    add_examples(version.task, NDA_ROWS[:2], split="dev")
    run = rule_impact_create(prompt_version=version, split="dev", user=admin_user)
    first = rule_impact_job_for_command(run)
    client = _client(admin_user)
    client.post(f"/impact/{run.pk}/cancel/")
    run.refresh_from_db()
    first.refresh_from_db()
    assert run.status == "cancelled" and first.state == "cancelled" and first.cancel_requested
    assert "Resume" in client.get(f"/impact/{run.pk}/").content.decode()
    client.post(f"/impact/{run.pk}/resume/")
    run.refresh_from_db()
    assert run.status == "queued" and run.job_id != first.pk and run.job.state == "queued"
    assert (run.n_examples, run.n_rules) == (2, 3)
