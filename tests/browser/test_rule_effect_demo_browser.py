"""With the demo's own student, a rule never looks perfect: the queue and the rule page of an Entailment rule
say its effect is unmeasured, and carry the warning that the evaluation behind them was near-constant or at chance.

The data is the demo's, made by its own story steps (``evaluation/demo/story.py``): the demo users and fixture
tasks, the reviewers' decisions, v1 compiled, and the student's evaluations of it with the bundled 270M model.
The teacher, second-factor, promotion, production and report chapters add nothing this page shows.
"""
from __future__ import annotations

import re
from io import StringIO

import pytest

from evaluation.demo.story import STEPS, step_name
from evaluation.demo.users import demo_password
from rules.models import Rule
from rules.review.services import ruleset_rules
from tests.support.browser import BROWSER_MARKS, close_when_idle
from tests.support.student import STUDENT_N_CTX

# Slow: the demo's student step evaluates v1 with the bundled model, as `manage.py seed_demo` does.
pytestmark = [*BROWSER_MARKS, pytest.mark.slow]

CHAPTERS = ("demo.users.", "demo.review.", "demo.prompts.seed_prompt_versions", "demo.student.")
WARNING = re.compile(r"The student answered \w+ for (every one|\d+%) of the \d+ examples|no better than chance")


def _seed_demo_chapters() -> None:
    for step in STEPS:
        if any(chapter in step_name(step) for chapter in CHAPTERS):
            step(StringIO())


def test_the_demos_entailment_rule_shows_no_perfect_score_on_the_queue_or_its_page(
    browser, live_server, settings  # noqa: ANN001
) -> None:
    settings.PLD_STUDENT_N_CTX = STUDENT_N_CTX
    _seed_demo_chapters()
    task_rules = ruleset_rules(Rule.objects.filter(task__name="nda-demo").first().task)
    entailment = next(rule for rule in task_rules if rule.current_revision.label == "Entailment")

    context = browser.new_context()
    context.set_default_timeout(15_000)
    page = context.new_page()
    page.goto(f"{live_server.url}/login/?next=/review/?status=approved")
    page.fill("#id_login", "rita")
    page.fill("#id_password", demo_password("rita"))
    page.click("main button[type=submit]")
    page.wait_for_url("**/review/?status=approved*")
    row = page.locator(f"tr:has(a[href^='/rules/{entailment.pk}/'])").first.inner_text()
    assert "not measured for this revision yet" in row and "near-constant or at chance" in row, row
    assert not re.search(r"\d+ of \d+", row)  # no "4 of 4": no score at all

    page.goto(f"{live_server.url}/rules/{entailment.pk}/")
    panel = page.locator(".rule-stats").inner_text()
    assert "Not measured for this revision yet." in panel
    assert WARNING.search(panel), panel
    assert "Right on its examples" not in page.content()
    close_when_idle(context, page)
