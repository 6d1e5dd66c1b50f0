"""The demo's production step: a few real classify calls, logged, so the production page shows data."""
from __future__ import annotations

import io

import pytest

from evaluation.demo.production import seed_production_calls
from evaluation.models import ClassifyCall
from tests.support.prompt_versions import approve_all, compiled, finished_run, promote_by_override


def test_without_a_production_version_it_says_so_and_adds_nothing(task) -> None:
    out = io.StringIO()
    seed_production_calls(out)
    assert "no version in production" in out.getvalue() and not ClassifyCall.objects.exists()


@pytest.mark.slow
def test_it_logs_a_few_calls_once(task, nda_examples, admin_user, second_admin, second_reviewer, student_settings,
                                  client, auditor) -> None:
    approve_all(task, second_reviewer)
    version = compiled(task, admin_user)
    finished_run(version, 0.7)
    promote_by_override(version, admin=admin_user, second_admin=second_admin)
    seed_production_calls(io.StringIO())
    calls = list(ClassifyCall.objects.all())
    assert len(calls) == len(nda_examples) and {c.source for c in calls} == {"command"}
    assert {c.prompt_version_id for c in calls} == {version.pk}
    seed_production_calls(io.StringIO())
    assert ClassifyCall.objects.count() == len(calls)
    client.force_login(auditor)
    assert f"Calls per day ({len(calls)} in all)" in client.get("/tasks/nda-demo/production/").content.decode()
