"""The demo step of the student: evaluations on the fixture tasks, reused on a second run."""
from __future__ import annotations

from io import StringIO

import pytest

from evaluation.demo.student import seed_evaluations
from evaluation.demo.users import seed_users_and_tasks
from evaluation.models import EvaluationRun
from evaluation.student.in_process import Student


@pytest.mark.slow
def test_the_demo_evaluates_the_fixture_tasks_once(db: None, student_settings: Student) -> None:
    seed_users_and_tasks(StringIO())
    out = StringIO()
    seed_evaluations(out)
    text = out.getvalue()
    assert "nda-demo has no prompt version yet; skipping its pld evaluation." in text
    runs = list(EvaluationRun.objects.order_by("pk"))
    assert [(r.task.name, r.mode) for r in runs] == [
        ("nda-demo", "zero-shot"), ("escalation", "zero-shot"), ("escalation", "pld")
    ]
    assert all(r.status == EvaluationRun.Status.FINISHED for r in runs)
    assert runs[2].rule_adherence is not None and runs[2].created_by.username == "adam"

    again = StringIO()
    seed_evaluations(again)
    assert EvaluationRun.objects.count() == 3
    assert again.getvalue() == text  # the same runs, reported the same way


def test_the_demo_explains_a_missing_task(db: None) -> None:
    out = StringIO()
    seed_evaluations(out)
    assert "nda-demo is not imported" in out.getvalue()
    assert not EvaluationRun.objects.exists()


# The demo's version on train (rule statistics) and on its whole test split (the gate): read from the seeded demo
# in tests/browser/test_demo_evidence_browser.py, which seeds it once for those claims and the rule pages.
