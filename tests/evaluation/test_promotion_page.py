"""The promotion page: evidence side by side, flipping examples, the form, overrides and permissions."""
from __future__ import annotations

import pytest

from evaluation.models import Promotion
from evaluation.promotion import prompt_version_promote
from rules.models import Example, PromptVersion
from tests.support.prompt_versions import approve, approve_all, compiled, finished_run
from tests.support.signatures import sign_promotion


def _example(task, n: int, gold: str) -> Example:
    inputs = {"premise": f"Clause {n}", "hypothesis": f"H{n}"}
    return Example.objects.create(task=task, inputs=inputs, gold_label=gold, split="test",
                                  content_hash=Example.hash_content(inputs, gold))


@pytest.fixture
def versions(task, admin_user, second_reviewer) -> tuple[PromptVersion, PromptVersion]:
    approve_all(task, second_reviewer)
    v1 = compiled(task, admin_user)
    approve(task, second_reviewer, "If the clause names a court, then NotMentioned", "NotMentioned")
    return v1, compiled(task, admin_user)


def test_it_shows_both_versions_metrics_and_the_examples_that_flip(client, task, admin_user, versions) -> None:
    v1, v2 = versions
    fixed, broken = _example(task, 1, "Entailment"), _example(task, 2, "Contradiction")
    same = _example(task, 3, "NotMentioned")
    finished_run(v1, 0.70, predictions=[(fixed, "NotMentioned"), (broken, "Contradiction"), (same, "NotMentioned")])
    prompt_version_promote(prompt_version=v1, user=admin_user, reason="First", signature=sign_promotion(admin_user, v1))
    finished_run(v2, 0.66, predictions=[(fixed, "Entailment"), (broken, "Entailment"), (same, "NotMentioned")])
    client.force_login(admin_user)
    page = client.get(f"/prompts/{v2.pk}/promote/").content.decode()
    assert "blocks this promotion" in page
    assert "0.700" in page and "0.660" in page and "95% CI 0.610–0.710" in page
    assert "1 fixed, 1 broken" in page
    assert f'href="/examples/{fixed.pk}/"' in page and f'href="/examples/{broken.pk}/"' in page
    assert f'href="/examples/{same.pk}/"' not in page
    assert 'name="override_justification"' in page


def test_a_blocked_promotion_without_justification_shows_the_form_error(client, admin_user, versions) -> None:
    v1, _v2 = versions
    client.force_login(admin_user)
    response = client.post(f"/prompts/{v1.pk}/promote/", {"reason": "Ship it", "override_justification": ""})
    assert response.status_code == 400
    assert b"no finished evaluation on the test split" in response.content
    assert not Promotion.objects.exists()


def test_an_override_is_recorded_and_shown_on_the_version_page(client, admin_user, auditor, versions) -> None:
    v1, _v2 = versions
    client.force_login(admin_user)
    response = client.post(f"/prompts/{v1.pk}/promote/", {
        "reason": "Pilot", "override_justification": "The pilot customer needs it before the evaluation finishes",
        "password": "pw-adam",
    })
    assert response.status_code == 302 and response["Location"] == f"/prompts/{v1.pk}/"
    promotion = Promotion.objects.get()
    assert promotion.override_justification == "The pilot customer needs it before the evaluation finishes"
    client.force_login(auditor)
    page = client.get(f"/prompts/{v1.pk}/").content.decode()
    assert "Gate overridden" in page and "The pilot customer needs it" in page and "Pilot" in page


def test_a_passing_gate_promotes_from_the_page(client, admin_user, versions) -> None:
    v1, _v2 = versions
    finished_run(v1, 0.7)
    client.force_login(admin_user)
    page = client.get(f"/prompts/{v1.pk}/promote/").content.decode()
    assert "passes" in page and 'name="override_justification"' not in page
    client.post(f"/prompts/{v1.pk}/promote/", {"reason": "Evaluated and reviewed", "password": "pw-adam"})
    v1.refresh_from_db()
    assert v1.status == PromptVersion.Status.PRODUCTION


def test_only_admins_open_the_promotion_page(client, reviewer, auditor, versions) -> None:
    v1, _v2 = versions
    for user in (reviewer, auditor):
        client.force_login(user)
        assert client.get(f"/prompts/{v1.pk}/promote/").status_code == 403
        forged = {"reason": "x", "override_justification": "y"}
        assert client.post(f"/prompts/{v1.pk}/promote/", forged).status_code == 403
    client.logout()
    assert client.get(f"/prompts/{v1.pk}/promote/").status_code == 302
    assert not Promotion.objects.exists()


def test_it_warns_when_the_candidate_does_not_follow_its_rules(client, admin_user, versions) -> None:
    v1, v2 = versions
    warning = "Only 1 of 18 decisions moved with the swapped rules (chance is 33%)."
    finished_run(v1, 0.70, rule_adherence=0.06, adherence={"score": 0.06, "warning": warning})
    finished_run(v2, 0.72, rule_adherence=0.9, adherence={"score": 0.9, "warning": ""})
    client.force_login(admin_user)
    page = client.get(f"/prompts/{v1.pk}/promote/").content.decode()
    assert "does not follow these rules better than chance" in page and warning in page
    assert "0.06" in page
    assert "better than chance" not in client.get(f"/prompts/{v2.pk}/promote/").content.decode()
