"""A constant student never makes a rule look perfect: the queue and the rule page say unmeasured, with a warning.

The demo's student (the bundled 270M model at chance) answers Entailment for every example. Before issue 23 the
queue showed every Entailment rule "right on its examples" 4 of 4. Here the same evidence is recorded plainly: the
demo's rules approved and compiled, and the version's evaluation in which the student answered Entailment for all.
"""
from __future__ import annotations

import re

from tests.support.browser import BROWSER_MARKS, log_in
from tests.support.prompt_versions import approve_all, compiled, gate_examples, scored_run

pytestmark = BROWSER_MARKS


def test_an_entailment_rule_of_a_constant_student_shows_no_perfect_score_on_the_queue_or_its_page(
    browser, live_server, task, reviewer, second_reviewer, admin_user  # noqa: ANN001
) -> None:
    entailment = approve_all(task, second_reviewer)[0]
    assert entailment.current_revision.label == "Entailment"
    version = compiled(task, admin_user)
    scored_run(task, gate_examples(task), version=version, constant="Entailment")

    context, page = log_in(browser, live_server, "rita", "/review/?status=approved")
    row = page.locator(f"tr:has(a[href^='/rules/{entailment.pk}/'])").first.inner_text()
    assert "not measured for this revision yet" in row and "near-constant or at chance" in row
    assert not re.search(r"\d+ of \d+", row)  # no "4 of 4": no score at all

    page.goto(f"{live_server.url}/rules/{entailment.pk}/")
    panel = page.locator(".rule-stats").inner_text()
    assert "Not measured for this revision yet." in panel
    assert "The student answered Entailment for every one of the 18 examples" in panel
    assert "Right on its examples" not in page.content()
    context.close()
