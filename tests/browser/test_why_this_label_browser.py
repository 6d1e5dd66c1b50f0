"""In a real browser: an Auditor opens a production call, asks "Why this label?", waits for the answer while a
worker computes it, and opens the call's dossier, which names the approving reviewers of each rule."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection

from evaluation.models import DecisionExplanation
from evaluation.runs.impact import EXPLAIN_JOB_KIND
from pldreview.jobs import job_execute
from pldreview.models import Job
from rules.models import Rule
from tests.support.browser import BROWSER_MARKS, close_when_idle, log_in
from tests.support.decisions import logged_call
from tests.support.prompt_versions import approve_all, compiled
from tests.support.student import STUDENT_N_CTX

# Slow: the bundled student decides the call once with every rule and once without each.
pytestmark = [*BROWSER_MARKS, pytest.mark.slow]


def _work(job_id: int) -> Job:
    """Do what a db_worker does with the queued job (run_job -> job_execute), in its own thread and connection."""
    try:
        return job_execute(job_id)
    finally:
        connection.close()


def test_an_auditor_asks_why_this_label_waits_for_the_answer_and_reads_who_approved_each_rule_in_the_dossier(
    browser, live_server, settings, task, second_reviewer, admin_user, auditor
) -> None:
    settings.PLD_STUDENT_N_CTX = STUDENT_N_CTX
    approve_all(task, second_reviewer)
    call = logged_call(compiled(task, admin_user))

    context, page = log_in(browser, live_server, "aude", f"/calls/{call.pk}/")
    assert page.locator("#explanation").count() == 0  # not explained yet
    page.click("section[aria-labelledby=why-heading] button:has-text('Why this label?')")
    page.wait_for_url("**/jobs/*/")
    job = Job.objects.get(kind=EXPLAIN_JOB_KIND)
    assert job.created_by == auditor and job.state == Job.State.QUEUED

    # The answer is computed by the worker while the open page polls the job's progress.
    with ThreadPoolExecutor(max_workers=1) as pool:
        worked = pool.submit(_work, job.pk)
        # Generous: on a loaded machine loading the model and four decisions take minutes (not a speed check).
        page.wait_for_selector("#job-progress .badge-succeeded, #job-progress .badge-failed", timeout=1_200_000)
        done = worked.result()
        assert done.state == Job.State.SUCCEEDED, done.error
    assert "Succeeded" in page.locator("#job-progress").inner_text()
    assert "4 of 4 done" in page.locator("#job-progress").inner_text()
    page.reload()
    page.click("text=See the result")
    page.wait_for_url(f"**/calls/{call.pk}/*")
    explanation = DecisionExplanation.objects.get(call=call)
    answer = page.locator("#explanation").inner_text()
    assert f"with v{call.prompt_version.number}" in answer and explanation.label in answer
    if explanation.deciding_numbers:
        assert "No single rule decides it" not in answer
    else:
        assert "No single rule decides it" in answer

    page.click("text=Dossier of this decision")
    page.wait_for_url(f"**/decisions/{call.request_id}/")
    assert explanation.label in page.locator("#explanation").inner_text()
    for rule in Rule.objects.filter(task=task):
        item = page.locator(f"#rule-{rule.pk}").inner_text()
        assert rule.text in item and "Approved by ravi" in item, item
    close_when_idle(context, page)
