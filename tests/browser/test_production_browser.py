"""Feedback into evidence in a real browser: a Reviewer marks a logged decision wrong; refine lists it as an input."""
from __future__ import annotations

from django.utils import timezone

from evaluation.models import DecisionFeedback, EvaluationRun
from tests.support.browser import BROWSER_MARKS, log_in
from tests.support.factories import ClassifyCallFactory
from tests.support.prompt_versions import approve_all, compiled

pytestmark = BROWSER_MARKS

INPUTS = {"premise": "The Recipient may keep one archival copy.", "hypothesis": "The party must destroy all copies."}


def test_a_reviewer_turns_a_wrong_decision_into_a_feedback_example_that_refine_reads(
    browser, live_server, task, reviewer, second_reviewer, admin_user  # noqa: F811
) -> None:
    approve_all(task, second_reviewer)
    version = compiled(task, admin_user)
    call = ClassifyCallFactory(
        prompt_version=version, probabilities={"Entailment": 0.6, "Contradiction": 0.3, "NotMentioned": 0.1},
        top_probability=0.6, latency_ms=5, inputs=INPUTS,
    )
    run = EvaluationRun.objects.create(task=task, mode="pld", split="train", model_path="m.gguf",
                                       status=EvaluationRun.Status.FINISHED, finished_at=timezone.now())

    # rita finds the decision among the logged ones and marks it wrong, with the keyboard-reachable form.
    context, page = log_in(browser, live_server, "rita", f"/tasks/{task.name}/calls/")
    page.click(f"a[href='/calls/{call.pk}/']")
    page.select_option("#id_correct_label", "Contradiction")
    page.fill("#id_reason", "Keeping a copy contradicts destroying all copies.")
    page.click("text=Mark this decision wrong")
    page.wait_for_selector("text=Marked wrong by rita")
    feedback = DecisionFeedback.objects.get()
    example_id = feedback.example_id

    # The task page says one waits, and shows it under the feedback split.
    page.goto(f"{live_server.url}/tasks/{task.name}/")
    assert "1 feedback example from production waits for refine" in page.locator(".task-feedback").inner_text()
    page.click(".task-feedback a")
    page.wait_for_selector(f"a[aria-label='Example {example_id}']")
    row = page.locator(f"tr:has(a[aria-label='Example {example_id}'])").inner_text()
    assert "Feedback" in row and "Contradiction" in row
    context.close()

    # The refine page lists it among its inputs for the Admin who starts refine.
    context, page = log_in(browser, live_server, "adam", f"/evaluations/{run.pk}/refine/")
    inputs = page.locator("#refine-inputs").inner_text()
    assert f"#{example_id}" in inputs and "Keeping a copy contradicts" in inputs and "rita" in inputs
    assert page.locator("input[name=include_feedback]").is_checked()
    context.close()
