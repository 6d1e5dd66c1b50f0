"""The rules app's pages show evaluation's links, buttons, runs and promotions through registered panels."""
from __future__ import annotations

from evaluation.models import EvaluationRun
from tests.support.prompt_versions import approve_all, compiled, in_production


def test_the_version_page_lists_its_runs_and_promotion_and_offers_evaluation_to_admins(
    client, task, admin_user, reviewer, auditor
) -> None:
    version = in_production(task, admin=admin_user, reviewer=reviewer, reason="Rules checked by legal")
    run = EvaluationRun.objects.get(prompt_version=version)
    client.force_login(admin_user)
    page = client.get(f"/prompts/{version.pk}/").content.decode()
    assert f'href="{run.get_absolute_url()}"' in page
    assert "Rules checked by legal" in page and "Not evaluated yet" not in page
    assert "Evaluate this version" in page
    assert "Review evidence and promote" not in page  # already in production
    client.force_login(auditor)
    page = client.get(f"/prompts/{version.pk}/").content.decode()
    assert f'href="{run.get_absolute_url()}"' in page and "Rules checked by legal" in page
    assert "Evaluate this version" not in page


def test_a_version_not_in_production_offers_promotion_to_admins_only(client, task, admin_user, reviewer) -> None:
    approve_all(task, reviewer)
    version = compiled(task, admin_user)
    client.force_login(admin_user)
    assert f'href="/prompts/{version.pk}/promote/"' in client.get(f"/prompts/{version.pk}/").content.decode()
    client.force_login(reviewer)
    assert "/promote/" not in client.get(f"/prompts/{version.pk}/").content.decode()


def test_the_task_page_links_to_production_for_those_who_watch_it(client, task, admin_user, reviewer) -> None:
    client.force_login(admin_user)
    page = client.get(f"/tasks/{task.name}/").content.decode()
    assert f'href="/tasks/{task.name}/production/">Production<' in page
    assert f'href="/tasks/{task.name}/calls/">Logged decisions<' in page
    client.force_login(reviewer)
    page = client.get(f"/tasks/{task.name}/").content.decode()
    assert f'href="/tasks/{task.name}/production/"' not in page  # reviewers do not watch production
    assert f'href="/tasks/{task.name}/calls/">Logged decisions<' in page
