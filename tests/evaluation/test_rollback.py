"""Rolling back to a version that was in production before is one signed Admin action; a version never in
production still needs the gate or two Admins."""
from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.test import Client

from evaluation.models import Promotion
from evaluation.release.promotion import is_rollback, promotion_gate, promotion_override_request, prompt_version_promote
from rules.models import PromptVersion
from tests.support.prompt_versions import approve, approve_all, compiled, gate_passing_run, promote_by_override
from tests.support.signatures import sign_override_request, sign_promotion


@pytest.fixture
def versions(task, admin_user, second_admin, second_reviewer) -> tuple[PromptVersion, PromptVersion]:
    """v1 went to production through a passing gate, then v2 by a two-Admin override; v1's gate fails today."""
    approve_all(task, second_reviewer)
    v1 = compiled(task, admin_user)
    gate_passing_run(v1, wrong=4)
    prompt_version_promote(prompt_version=v1, user=admin_user, reason="First version",
                           signature=sign_promotion(admin_user, v1))
    approve(task, second_reviewer, "If the clause names a court, then NotMentioned", "NotMentioned")
    v2 = compiled(task, admin_user)
    gate_passing_run(v2)
    prompt_version_promote(prompt_version=v2, user=admin_user, reason="Adds the court rule",
                           signature=sign_promotion(admin_user, v2))
    v1.refresh_from_db()
    return v1, v2


def test_rolling_back_is_one_signed_action_and_the_earlier_promotion_stands(versions, admin_user) -> None:
    v1, v2 = versions
    first = Promotion.objects.get(prompt_version=v1)
    first_gate = dict(first.gate)
    assert is_rollback(v1) and not promotion_gate(prompt_version=v1).passed
    rollback = prompt_version_promote(prompt_version=v1, user=admin_user, reason="v2 misroutes clauses",
                                      signature=sign_promotion(admin_user, v1))
    assert rollback.is_rollback and rollback.signature.meaning == "rolled_back" and rollback.override is None
    assert rollback.from_version == v2 and rollback.gate["rollback_of_promotion"] == first.pk
    first.refresh_from_db()
    assert first.gate == first_gate and Promotion.objects.count() == 3


def test_an_older_version_never_in_production_needs_the_gate_or_two_admins(
    task, admin_user, second_admin, second_reviewer
) -> None:
    approve_all(task, second_reviewer)
    v1 = compiled(task, admin_user)
    approve(task, second_reviewer, "If the clause names a court, then NotMentioned", "NotMentioned")
    v2 = compiled(task, admin_user)
    promote_by_override(v2, admin=admin_user, second_admin=second_admin)
    # v1 is older than production v2 but was never in production: no rollback, the gate decides.
    assert not is_rollback(v1)
    with pytest.raises(ValidationError, match="two Admins"):
        prompt_version_promote(prompt_version=v1, user=admin_user, reason="Older one",
                               signature=sign_promotion(admin_user, v1))
    assert Promotion.objects.filter(prompt_version=v1).count() == 0


def test_an_override_is_refused_for_a_rollback(versions, admin_user) -> None:
    v1, _v2 = versions
    with pytest.raises(ValidationError, match="roll back to it with one signature"):
        promotion_override_request(prompt_version=v1, user=admin_user, reason="Back", justification="Incident",
                                   signature=sign_override_request(admin_user, v1))


def test_the_rollback_page_shows_the_earlier_promotion_and_one_signed_form(versions, admin_user) -> None:
    v1, _v2 = versions
    client = Client()
    client.force_login(admin_user)
    page = client.get(f"/prompts/{v1.pk}/promote/").content.decode()
    first = Promotion.objects.get(prompt_version=v1)
    assert f"Roll back to {v1}" in page and f'id="earlier-promotion-{first.pk}"' in page
    assert "one signed Admin action" in page and first.signature.manifestation in page
    assert "Roll back to v1 — sign: rolled back" in page and 'name="override_justification"' not in page
    response = client.post(f"/prompts/{v1.pk}/promote/", {"reason": "v2 misroutes clauses", "password": "pw-adam"})
    assert response.status_code == 302
    v1.refresh_from_db()
    assert v1.status == PromptVersion.Status.PRODUCTION
