"""Promoting, rolling back, revoking a token and signing a report are signings: password or nothing happens."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from evaluation.models import ApiToken, Promotion, PromotionOverride, Report
from evaluation.production.api_tokens import api_token_create
from evaluation.release.promotion import promotion_override_confirm, promotion_override_request, prompt_version_promote
from evaluation.release.reports import report_generate, report_path
from pldreview.models import LedgerEntry, Signature
from pldreview.signatures import report_content_sha256
from rules.models import Decision, PromptVersion
from tests.support.prompt_versions import approve, approve_all, compiled, gate_passing_run
from tests.support.reports import build_report_story, pdf_text
from tests.support.signatures import sign_override_request, sign_promotion

REASON = "Evaluated on the test split and reviewed by two people"


@pytest.fixture
def named_admin(admin_user):
    admin_user.first_name, admin_user.last_name = "Adam", "Adler"
    admin_user.save()
    return admin_user


@pytest.fixture
def versions(task, named_admin, second_reviewer) -> tuple[PromptVersion, PromptVersion]:
    approve_all(task, second_reviewer)
    v1 = compiled(task, named_admin)
    approve(task, second_reviewer, "If the clause names a court, then NotMentioned", "NotMentioned")
    return v1, compiled(task, named_admin)


def _signatures(meaning: str):
    return Signature.objects.filter(meaning=meaning)


@pytest.mark.parametrize("password, message", [("", "Enter your password to sign"),
                                               ("pw-rita", "Wrong password: nothing was signed")])
def test_promoting_without_the_right_password_is_refused(client, named_admin, versions, password, message) -> None:
    v1, _v2 = versions
    gate_passing_run(v1)
    client.force_login(named_admin)
    response = client.post(f"/prompts/{v1.pk}/promote/", {"reason": REASON, "password": password})
    body = response.content.decode()
    assert response.status_code == 400 and message in body and REASON in body
    v1.refresh_from_db()
    assert v1.status != PromptVersion.Status.PRODUCTION
    assert not Promotion.objects.exists() and not _signatures("promoted").exists()


def test_promoting_and_rolling_back_are_signed_with_their_meaning(client, named_admin, versions) -> None:
    v1, v2 = versions
    gate_passing_run(v1)
    gate_passing_run(v2)
    client.force_login(named_admin)
    page = client.get(f"/prompts/{v1.pk}/promote/").content.decode()
    assert 'name="password"' in page and "Promoted to production" in page
    assert client.post(f"/prompts/{v1.pk}/promote/", {"reason": REASON, "password": "pw-adam"}).status_code == 302
    assert client.post(f"/prompts/{v2.pk}/promote/", {"reason": REASON, "password": "pw-adam"}).status_code == 302
    page = client.get(f"/prompts/{v1.pk}/promote/").content.decode()
    assert "Rolled back" in page
    rollback = {"reason": "v2 misbehaves", "password": "pw-adam"}
    assert client.post(f"/prompts/{v1.pk}/promote/", rollback).status_code == 302
    first, second, rollback = Promotion.objects.order_by("id").select_related("signature")
    assert [p.signature.meaning for p in (first, second, rollback)] == ["promoted", "promoted", "rolled_back"]
    assert first.signature.content_sha256 == v1.sha256 and second.signature.content_sha256 == v2.sha256
    assert rollback.is_rollback and rollback.signature.full_name == "Adam Adler"
    assert rollback.signature.reason == "v2 misbehaves"
    page = client.get(f"/prompts/{v1.pk}/").content.decode()
    assert "Rolled back by Adam Adler on " in page and "Promoted to production by Adam Adler on " in page


def test_the_service_refuses_a_promotion_signed_for_another_version(named_admin, versions) -> None:
    from django.core.exceptions import ValidationError

    v1, v2 = versions
    gate_passing_run(v1)
    with pytest.raises(ValidationError, match="other content"):
        prompt_version_promote(prompt_version=v1, user=named_admin, reason=REASON,
                               signature=sign_promotion(named_admin, v2))
    with pytest.raises(ValidationError, match="not “Promoted to production”"):
        prompt_version_promote(prompt_version=v1, user=named_admin, reason=REASON,
                               signature=sign_promotion(named_admin, v1, meaning="rolled_back"))
    assert not Promotion.objects.exists()


@pytest.mark.parametrize("password, message", [("", "Enter your password to sign"),
                                               ("pw-rita", "Wrong password: nothing was signed")])
def test_requesting_a_gate_override_without_the_right_password_is_refused(
    client, named_admin, versions, password, message
) -> None:
    v1, _v2 = versions  # no evaluation: the gate fails
    client.force_login(named_admin)
    response = client.post(f"/prompts/{v1.pk}/promote/", {
        "reason": REASON, "override_justification": "Pilot needs it", "password": password,
    })
    body = response.content.decode()
    assert response.status_code == 400 and message in body and "Pilot needs it" in body
    assert not PromotionOverride.objects.exists() and not _signatures("gate_override_requested").exists()


def test_both_steps_of_a_gate_override_are_signed_over_the_version(named_admin, second_admin, versions) -> None:
    from django.core.exceptions import ValidationError

    v1, v2 = versions
    with pytest.raises(ValidationError, match="enter your password"):
        promotion_override_request(prompt_version=v1, user=named_admin, reason=REASON, justification="Pilot")
    with pytest.raises(ValidationError, match="other content"):
        promotion_override_request(prompt_version=v1, user=named_admin, reason=REASON, justification="Pilot",
                                   signature=sign_override_request(named_admin, v2))
    override = promotion_override_request(prompt_version=v1, user=named_admin, reason=REASON, justification="Pilot",
                                          signature=sign_override_request(named_admin, v1))
    assert override.request_signature.content_sha256 == v1.sha256
    with pytest.raises(ValidationError, match="not “Gate override confirmed”"):
        promotion_override_confirm(override=override, user=second_admin,
                                   signature=sign_promotion(second_admin, v1, meaning="promoted"))
    assert not Promotion.objects.exists()


@pytest.mark.parametrize("password, message", [("", "Enter your password to sign"),
                                               ("wrong", "Wrong password: nothing was signed")])
def test_revoking_a_token_without_the_right_password_is_refused(client, named_admin, password, message) -> None:
    token, _raw = api_token_create(user=named_admin, name="intake", created_by=named_admin)
    client.force_login(named_admin)
    response = client.post(f"/api-tokens/{token.pk}/revoke/",
                           {"confirm": "yes", "password": password, "reason": "Leaked"})
    assert response.status_code == 400 and message in response.content.decode()
    token.refresh_from_db()
    assert token.revoked_at is None and not _signatures("token_revoked").exists()


def test_revoking_a_token_is_signed_and_shown(client, named_admin) -> None:
    token, _raw = api_token_create(user=named_admin, name="intake", created_by=named_admin)
    client.force_login(named_admin)
    response = client.post(f"/api-tokens/{token.pk}/revoke/",
                           {"confirm": "yes", "password": "pw-adam", "reason": "Leaked"})
    assert response.status_code == 302
    token = ApiToken.objects.select_related("revoked_signature").get(pk=token.pk)
    signature = token.revoked_signature
    assert token.revoked_at is not None and signature.meaning == "token_revoked" and signature.reason == "Leaked"
    assert "Token revoked by Adam Adler on " in client.get("/api-tokens/").content.decode()
    # A revoked token cannot be revoked (and signed) again.
    response = client.post(f"/api-tokens/{token.pk}/revoke/", {"confirm": "yes", "password": "pw-adam"})
    assert response.status_code == 400 and "already revoked" in response.content.decode()
    assert _signatures("token_revoked").count() == 1


# --- reports ---------------------------------------------------------------------------------------


@pytest.fixture
def report(pdf_signing: Path, task, reviewer, second_reviewer, named_admin) -> Report:
    reviewer.first_name, reviewer.last_name = "Rita", "Reyes"
    reviewer.save()
    second_reviewer.first_name, second_reviewer.last_name = "Ravi", "Rao"
    second_reviewer.save()
    story = build_report_story(task=task, reviewer=reviewer, second_reviewer=second_reviewer, admin=named_admin)
    report = report_generate(prompt_version=story.version, user=named_admin)
    assert report.status == Report.Status.READY, report.error
    return report


@pytest.mark.slow
def test_the_report_pdf_shows_the_signature_of_every_decision_it_lists(report) -> None:
    text = pdf_text(report_path(report).read_bytes())
    listed = Decision.objects.filter(rule__prompt_entries__prompt_version=report.prompt_version).distinct()
    assert listed.count() >= 3
    for decision in listed.select_related("signature"):
        assert decision.signature is not None
        assert decision.signature.manifestation in text, decision.signature.manifestation
    assert "Approved by Ravi Rao on " in text and "Edited by Rita Reyes on " in text


@pytest.mark.slow
@pytest.mark.parametrize("password, message", [("", "Enter your password to sign"),
                                               ("wrong", "Wrong password: nothing was signed")])
def test_signing_a_report_without_the_right_password_is_refused(client, report, named_admin, password, message):
    client.force_login(named_admin)
    response = client.post(f"/reports/{report.pk}/sign/", {"password": password, "reason": "Read in full"})
    body = response.content.decode()
    assert response.status_code == 400 and message in body and "Read in full" in body
    report.refresh_from_db()
    assert report.signature is None and not _signatures("report_signed").exists()


@pytest.mark.slow
def test_signing_a_report_covers_its_bytes_and_shows_on_its_page(client, report, named_admin) -> None:
    client.force_login(named_admin)
    assert 'name="password"' in client.get(f"/reports/{report.pk}/").content.decode()
    response = client.post(f"/reports/{report.pk}/sign/", {"password": "pw-adam", "reason": "Read in full"})
    assert response.status_code == 302
    report.refresh_from_db()
    signature = report.signature
    assert signature.meaning == "report_signed" and signature.full_name == "Adam Adler"
    assert signature.content_sha256 == report.sha256 == report_content_sha256(report_path(report).read_bytes())
    when = signature.signed_at.astimezone(dt.UTC)
    page = client.get(f"/reports/{report.pk}/").content.decode()
    assert f"Report signed by Adam Adler on {when:%Y-%m-%d %H:%M:%S} UTC — meaning: Report signed" in page
    assert LedgerEntry.objects.filter(event="report.signed", object_id=str(report.pk)).exists()
    assert client.post(f"/reports/{report.pk}/sign/", {"password": "pw-adam"}).status_code == 400


@pytest.mark.slow
def test_a_report_whose_file_changed_cannot_be_signed(client, report, named_admin) -> None:
    path = report_path(report)
    path.write_bytes(path.read_bytes() + b"%tampered\n")
    client.force_login(named_admin)
    response = client.post(f"/reports/{report.pk}/sign/", {"password": "pw-adam"})
    assert response.status_code == 400 and "no longer matches" in response.content.decode()
    assert not _signatures("report_signed").exists()
