"""The seeded demo's evidence, read as its people read it: no rule looks perfect with the demo's own student, and the
version's whole test split fails the gate honestly.

The data is the demo's, made by its own steps up to its evaluations (``evaluation/demo/story.py``, as
``manage.py seed_demo`` runs them): the demo users and fixture tasks, the reviewers' decisions, v1 compiled, and
the student's evaluations of it with the bundled 270M model, which answers Entailment for nearly everything. The
teacher, second-factor, promotion, production and report steps add nothing read here. Seeding costs about 30 s of
the student's time, so one test reads everything this seeded demo is asked for (issue 23's browser check, and the
evaluations step's promises that the test suite once seeded the demo twice for).
"""
from __future__ import annotations

import re
from io import StringIO

import pytest
from django.contrib.auth.models import User

from evaluation.demo.prompts import seed_prompt_versions
from evaluation.demo.review import seed_review_decisions
from evaluation.demo.student import seed_evaluations
from evaluation.demo.users import demo_password, seed_users_and_tasks
from evaluation.models import EvaluationRun
from evaluation.release.promotion import promotion_gate
from evaluation.runs.rule_stats import rule_accuracy
from pldreview.roles import ROLE_PERMISSIONS
from rules.models import FrozenTestSplit, PromptVersion, Rule
from rules.review.services import ruleset_rules
from tests.support.browser import BROWSER_MARKS, close_when_idle
from tests.support.personas import role_group
from tests.support.student import STUDENT_N_CTX

# Slow: the demo's student step evaluates v1 with the bundled model, as `manage.py seed_demo` does.
pytestmark = [*BROWSER_MARKS, pytest.mark.slow]

WARNING = re.compile(r"The student answered \w+ for (every one|\d+%) of the \d+ examples|no better than chance")


def _seed_the_demo_through_its_evaluations() -> str:
    """Run the demo's steps up to its evaluations, as ``seed_demo`` does; return what the evaluations step said."""
    for role in ROLE_PERMISSIONS:  # an earlier transactional test's flush may have taken the migration's roles
        role_group(role)
    seed_users_and_tasks(StringIO())
    seed_review_decisions(StringIO())
    seed_prompt_versions(StringIO())
    out = StringIO()
    seed_evaluations(out)
    return out.getvalue()


def test_the_demos_entailment_rule_shows_no_perfect_score_and_its_version_fails_the_gate_honestly(
    browser, live_server, settings  # noqa: ANN001
) -> None:
    settings.PLD_STUDENT_N_CTX = STUDENT_N_CTX  # the session student's context size: its loaded model is reused
    said = _seed_the_demo_through_its_evaluations()

    # The version runs on train, so rule pages have a run to speak of, and on the whole test split for the gate.
    train = EvaluationRun.objects.get(task__name="nda-demo", mode="pld", split="train")
    assert train.status == EvaluationRun.Status.FINISHED and train.prompt_version is not None
    covered = [rule for rule in Rule.objects.filter(task__name="nda-demo") if rule.examples.exists()]
    assert covered, "the demo's rules cite the training examples they came from"
    assert any(rule_accuracy(rule)["run"]["id"] == train.pk for rule in covered)
    assert f"run {train.pk}" in said
    version = PromptVersion.objects.get(task__name="nda-demo")
    test_run = EvaluationRun.objects.get(task__name="nda-demo", mode="pld", split="test")
    assert (test_run.limit, test_run.seed) == (None, 0)
    gate = promotion_gate(prompt_version=version, user=User.objects.get(username="adam"))
    # The demo's one run of the whole test split is the evidence; the 270M student does not clear the gate.
    assert gate.candidate_run == test_run and not gate.passed
    assert FrozenTestSplit.objects.get(task=version.task).sha256 == test_run.split_sha256
    assert [row.judged for row in gate.runs] == [True]

    # Issue 23: an Entailment rule of this near-constant student shows no score at all, and says why.
    entailment = next(rule for rule in ruleset_rules(version.task) if rule.current_revision.label == "Entailment")
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
