"""The promotion page: each gate condition with its figure, flipping examples, baselines, two-Admin overrides."""
from __future__ import annotations

import pytest

from evaluation.models import EvaluationRun, Promotion, PromotionOverride
from evaluation.release.promotion import prompt_version_promote
from pldreview.models import Job
from rules.models import PromptVersion
from tests.support.prompt_versions import (
    approve,
    approve_all,
    compiled,
    finished_run,
    gate_examples,
    gate_passing_run,
    scored_run,
)
from tests.support.signatures import sign_promotion


@pytest.fixture
def versions(task, admin_user, second_reviewer) -> tuple[PromptVersion, PromptVersion]:
    approve_all(task, second_reviewer)
    v1 = compiled(task, admin_user)
    approve(task, second_reviewer, "If the clause names a court, then NotMentioned", "NotMentioned")
    return v1, compiled(task, admin_user)


def test_it_lists_each_condition_with_its_figure_and_the_examples_that_flip(
    client, task, admin_user, versions
) -> None:
    v1, v2 = versions
    gate_passing_run(v1)
    prompt_version_promote(prompt_version=v1, user=admin_user, reason="First",
        signature=sign_promotion(admin_user, v1))
    run = gate_passing_run(v2, wrong=3)
    client.force_login(admin_user)
    page = client.get(f"/prompts/{v2.pk}/promote/").content.decode()
    assert 'The gate:\n    <span class="gate-blocked">fails</span>' in page
    for title in ("Evaluated on the whole test split", "Test split unchanged since it was frozen",
                  "Beats the majority-class and zero-shot baselines",
                  "Follows its rules better than chance", "Not worse than production"):
        assert title in page
    assert f"{run.macro_f1:.3f} vs 1.000 (margin 0.000)" in page
    assert "below the production version&#x27;s 1.000" in page
    assert "0.90 (18 of 20; 95% CI" in page
    assert "0 fixed, 3 broken" in page
    broken = gate_examples(task)[:3]
    assert all(f'href="/examples/{e.pk}/"' in page for e in broken)
    assert 'name="override_justification"' in page and "Request an override (a second Admin confirms)" in page


def test_a_blocked_promotion_without_justification_shows_the_form_error(client, admin_user, versions) -> None:
    v1, _v2 = versions
    client.force_login(admin_user)
    response = client.post(f"/prompts/{v1.pk}/promote/", {"reason": "Ship it", "override_justification": "",
                                                           "password": "pw-adam"})
    assert response.status_code == 400
    assert b"no finished evaluation on the test split" in response.content
    assert b"A failing gate is overridden by two Admins" in response.content
    assert not Promotion.objects.exists()


def test_a_missing_zero_shot_run_is_started_from_the_page(client, task, admin_user, versions) -> None:
    v1, _v2 = versions
    scored_run(task, gate_examples(task), version=v1)
    client.force_login(admin_user)
    page = client.get(f"/prompts/{v1.pk}/promote/").content.decode()
    assert "no finished zero-shot run" in page and f'action="/prompts/{v1.pk}/promote/baseline/"' in page
    response = client.post(f"/prompts/{v1.pk}/promote/baseline/")
    baseline = EvaluationRun.objects.get(mode=EvaluationRun.Mode.ZERO_SHOT)
    assert response.status_code == 302 and response["Location"] == f"/evaluations/{baseline.pk}/"
    assert baseline.status == EvaluationRun.Status.QUEUED and Job.objects.filter(pk=baseline.job_id).exists()
    assert set(baseline.options["example_ids"]) == {e.pk for e in gate_examples(task)}
    # A second click does not start a second run; the page links the one under way instead of passing.
    client.post(f"/prompts/{v1.pk}/promote/baseline/")
    assert EvaluationRun.objects.filter(mode=EvaluationRun.Mode.ZERO_SHOT).count() == 1
    page = client.get(f"/prompts/{v1.pk}/promote/").content.decode()
    assert f"Zero-shot run #{baseline.pk} is under way" in page and "gate-blocked" in page


def test_an_override_is_requested_by_one_admin_and_confirmed_by_another(
    client, admin_user, second_admin, auditor, versions
) -> None:
    v1, _v2 = versions
    client.force_login(admin_user)
    justification = "The pilot customer needs it before the evaluation finishes"
    response = client.post(f"/prompts/{v1.pk}/promote/", {
        "reason": "Pilot", "override_justification": justification, "password": "pw-adam",
    })
    assert response.status_code == 302 and response["Location"] == f"/prompts/{v1.pk}/promote/"
    override = PromotionOverride.objects.get()
    assert (override.requested_by, override.status) == (admin_user, PromotionOverride.Status.PENDING)
    assert override.request_signature.meaning == "gate_override_requested"
    v1.refresh_from_db()
    assert v1.status != PromptVersion.Status.PRODUCTION and not Promotion.objects.exists()
    page = client.get(f"/prompts/{v1.pk}/promote/").content.decode()
    assert "You asked for this override" in page and "Confirm the override" not in page
    # The side door: the requester posts the confirmation URL directly, even with their password.
    response = client.post(f"/prompts/{v1.pk}/promote/overrides/{override.pk}/confirm/", {"password": "pw-adam"})
    assert response.status_code == 400 and b"a different Admin must confirm it" in response.content
    assert not Promotion.objects.exists()

    client.force_login(second_admin)
    page = client.get(f"/prompts/{v1.pk}/promote/").content.decode()
    assert justification in page and "Confirm the override as second Admin and promote" in page
    # Confirming is a signing: without the password nothing happens.
    response = client.post(f"/prompts/{v1.pk}/promote/overrides/{override.pk}/confirm/")
    assert response.status_code == 400 and not Promotion.objects.exists()
    response = client.post(f"/prompts/{v1.pk}/promote/overrides/{override.pk}/confirm/", {"password": "pw-alex"})
    assert response.status_code == 302 and response["Location"] == f"/prompts/{v1.pk}/"
    promotion = Promotion.objects.get()
    assert (promotion.override_requested_by, promotion.promoted_by) == (admin_user, second_admin)
    client.force_login(auditor)
    page = client.get(f"/prompts/{v1.pk}/").content.decode()
    assert "Gate overridden" in page and justification in page
    assert "requested by adam, confirmed by alex (two Admins)" in page and "no finished evaluation" in page
    # Both steps were signings, and the version page shows both signatures.
    assert "Gate override requested by adam on " in page and "Gate override confirmed by alex on " in page
    assert (override.request_signature.user, promotion.signature.user) == (admin_user, second_admin)


def test_a_pending_override_can_be_withdrawn(client, admin_user, second_admin, versions) -> None:
    v1, _v2 = versions
    client.force_login(admin_user)
    client.post(f"/prompts/{v1.pk}/promote/", {"reason": "Pilot", "override_justification": "Needed",
                                                "password": "pw-adam"})
    override = PromotionOverride.objects.get()
    client.force_login(second_admin)
    client.post(f"/prompts/{v1.pk}/promote/overrides/{override.pk}/withdraw/")
    override.refresh_from_db()
    assert (override.status, override.withdrawn_by) == (PromotionOverride.Status.WITHDRAWN, second_admin)
    assert 'name="override_justification"' in client.get(f"/prompts/{v1.pk}/promote/").content.decode()


def test_a_passing_gate_promotes_from_the_page(client, admin_user, versions) -> None:
    v1, _v2 = versions
    gate_passing_run(v1)
    client.force_login(admin_user)
    page = client.get(f"/prompts/{v1.pk}/promote/").content.decode()
    assert '<span class="gate-passed">passes</span>' in page and 'name="override_justification"' not in page
    client.post(f"/prompts/{v1.pk}/promote/", {"reason": "Evaluated and reviewed", "password": "pw-adam"})
    v1.refresh_from_db()
    assert v1.status == PromptVersion.Status.PRODUCTION


def test_only_admins_open_the_promotion_page(client, reviewer, auditor, admin_user, versions) -> None:
    v1, _v2 = versions
    client.force_login(admin_user)
    client.post(f"/prompts/{v1.pk}/promote/", {"reason": "Pilot", "override_justification": "Needed",
                                                "password": "pw-adam"})
    override = PromotionOverride.objects.get()
    for user in (reviewer, auditor):
        client.force_login(user)
        assert client.get(f"/prompts/{v1.pk}/promote/").status_code == 403
        forged = {"reason": "x", "override_justification": "y"}
        assert client.post(f"/prompts/{v1.pk}/promote/", forged).status_code == 403
        assert client.post(f"/prompts/{v1.pk}/promote/overrides/{override.pk}/confirm/").status_code == 403
    client.logout()
    assert client.get(f"/prompts/{v1.pk}/promote/").status_code == 302
    assert not Promotion.objects.exists()


def test_it_warns_when_the_candidate_does_not_follow_its_rules(client, admin_user, versions) -> None:
    v1, v2 = versions
    # The words evaluation.runs.adherence writes: the page must not say them a second time as a heading.
    warning = ("The student does not follow its rules better than chance: with every rule label swapped, only 1 "
               "of 18 decisions moved with the rules (6%; chance is 33%).")
    finished_run(v1, 0.70, rule_adherence=0.06, adherence={"score": 0.06, "n": 18, "warning": warning})
    finished_run(v2, 0.72, rule_adherence=0.9, adherence={"score": 0.9, "warning": ""})
    client.force_login(admin_user)
    page = client.get(f"/prompts/{v1.pk}/promote/").content.decode()
    assert "Rule adherence warning." in page and warning in page
    assert page.count("better than chance:") == 1 and "does not follow these rules better than chance" not in page
    assert "0.06" in page
    other = client.get(f"/prompts/{v2.pk}/promote/").content.decode()
    assert "Rule adherence warning." not in other
