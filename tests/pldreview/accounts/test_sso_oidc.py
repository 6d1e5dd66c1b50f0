"""Single sign-on through OpenID Connect, against a real provider on loopback (tests/idp/, its own process).

The app fetches the provider's discovery document, exchanges the code (with PKCE) at its token endpoint and checks
the ID token against its keys, all over HTTP; the person's side at the provider is played by ``requests``.
"""
from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

import pytest
from allauth.socialaccount.models import SocialAccount
from django.contrib.auth.models import User
from django.test import Client

from evaluation.production.api_tokens import api_token_create
from pldreview.accounts import sso as sso_module
from pldreview.accounts.services import role_grant, second_person_refusal
from pldreview.models import LedgerEntry, Signature
from pldreview.roles import role_names
from rules.models import Rule
from tests.support.factories import teacher_rule
from tests.support.idp import PROVIDER_ID, client_callback, sso_sign_in

pytestmark = pytest.mark.django_db


def _facts(event: str) -> list[dict]:
    return [json.loads(e.payload)["facts"] for e in LedgerEntry.objects.filter(event=event)]


def test_a_mapped_person_signs_in_with_pkce_and_gets_the_mapped_role(sso) -> None:
    sso.user("olivia", groups=["pld-reviewers", "unrelated"], first_name="Olivia", last_name="Ode")
    client = Client()
    start = client.post(f"/accounts/oidc/{PROVIDER_ID}/login/?process=login", {"next": "/"})
    query = parse_qs(urlsplit(start["Location"]).query)
    assert query["code_challenge_method"] == ["S256"] and query["code_challenge"][0]
    assert query["response_type"] == ["code"]
    response = client_callback(client, sso.sign_in(start["Location"], "olivia"))
    assert response.status_code == 302, response.content[:400]
    user = User.objects.get(socialaccount__provider=PROVIDER_ID)
    assert user.get_username() == "olivia" and user.get_full_name() == "Olivia Ode"
    assert not user.has_usable_password()
    assert role_names(user) == ["Reviewer"]
    # A role from the mapping is a grant like any other: the account waits out the cooldown before it can be
    # the second person of a two-person control.
    assert "less than 24 hours ago" in second_person_refusal(user)
    assert client.get("/").status_code == 200
    assert int(client.session["_auth_user_id"]) == user.pk
    assert [f["idp_username"] for f in _facts("security.sso_account_created")] == ["olivia"]
    assert [f["role"] for f in _facts("security.role_granted")] == ["Reviewer"]


def test_a_person_without_an_account_is_refused_when_accounts_are_not_created_at_sign_in(sso, settings) -> None:
    settings.PLD_SSO_AUTO_CREATE = False
    sso.user("newton", groups=["pld-reviewers"])
    client = Client()
    response = sso_sign_in(client, sso, "newton")
    assert response.status_code == 403
    assert "accounts are not created at sign-in" in response.content.decode()
    assert not User.objects.filter(username="newton").exists()
    assert "_auth_user_id" not in client.session
    assert [f["idp_username"] for f in _facts("security.sso_refused")] == ["newton"]


def test_a_person_none_of_whose_groups_maps_to_a_role_is_refused(sso) -> None:
    sso.user("gus", groups=["canteen", "parking"])
    response = sso_sign_in(Client(), sso, "gus")
    assert response.status_code == 403
    assert "None of your groups at the identity provider gives a role here" in response.content.decode()
    assert not SocialAccount.objects.exists()
    assert _facts("security.sso_refused")[0]["groups"] == ["canteen", "parking"]


def test_an_unverified_email_never_links_the_identity_to_a_local_account(sso, reviewer) -> None:
    reviewer.email = "rita@example.org"
    reviewer.save()
    # Same username and address as the local reviewer, address unverified: someone claiming to be her.
    sso.user(reviewer.get_username(), groups=["pld-reviewers"], email="rita@example.org", email_verified=False)
    client = Client()
    assert sso_sign_in(client, sso, reviewer.get_username()).status_code == 302
    assert not SocialAccount.objects.filter(user=reviewer).exists()
    newcomer = User.objects.get(socialaccount__provider=PROVIDER_ID)
    assert newcomer.pk != reviewer.pk and newcomer.get_username() != reviewer.get_username()
    assert int(client.session["_auth_user_id"]) == newcomer.pk
    assert reviewer.has_usable_password()


def test_an_identity_provider_group_never_makes_an_admin_but_may_keep_or_end_one(sso, admin_user) -> None:
    sso.user("ada", groups=["pld-admins"])
    assert sso_sign_in(Client(), sso, "ada").status_code == 302
    ada = User.objects.get(socialaccount__provider=PROVIDER_ID)
    assert role_names(ada) == []
    assert _facts("security.sso_role_withheld")[0]["roles"] == ["Admin"]
    # Two Admins grant it here (the effect of a confirmed request): the next sign-in keeps it.
    role_grant(actor=admin_user, user=ada, role="Admin", reason="confirmed request")
    assert sso_sign_in(Client(), sso, "ada").status_code == 302
    assert role_names(ada) == ["Admin"]
    # The identity provider moves her to reviewing: Admin ends at the next sign-in, the new role begins.
    sso.user("ada", groups=["pld-reviewers"])
    assert sso_sign_in(Client(), sso, "ada").status_code == 302
    assert role_names(ada) == ["Reviewer"]
    assert [f["role"] for f in _facts("security.role_revoked")] == ["Admin"]


def test_roles_the_mapping_would_give_together_against_separation_of_duties_refuse_the_sign_in(sso) -> None:
    sso.user("tess", groups=["pld-reviewers", "pld-auditors"])
    response = sso_sign_in(Client(), sso, "tess")
    assert response.status_code == 403
    assert "may not be both Reviewer and Auditor" in response.content.decode()
    assert not User.objects.filter(username="tess").exists()


def test_a_leaver_is_refused_at_the_next_sign_in_and_offboarded_at_once(sso, admin_user) -> None:
    sso.user("leo", groups=["pld-reviewers"])
    desk = Client()
    assert sso_sign_in(desk, sso, "leo").status_code == 302
    assert desk.get("/").status_code == 200
    leo = User.objects.get(username="leo")
    token, _raw = api_token_create(user=leo, name="leo's script", created_by=admin_user)
    sso.user("leo", groups=[])  # the organisation removed him from the reviewers' group
    response = sso_sign_in(Client(), sso, "leo")
    assert response.status_code == 403
    refused = _facts("security.sso_refused")
    assert refused[0]["idp_username"] == "leo" and refused[0]["sessions_ended"] == 1
    assert refused[0]["api_tokens_revoked"] == 1
    assert desk.get("/").status_code == 302  # the session left open at his desk is gone
    token.refresh_from_db()
    leo.refresh_from_db()
    assert token.revoked_at is not None and not leo.is_active
    assert _facts("security.user_deactivated")[0]["source"] == "sso"


# --- signing by re-authentication at the identity provider ------------------------------------------


def _reauthenticate(client: Client, sso, username: str, *, next_path: str) -> tuple[str, object]:
    start = client.post("/accounts/sso/confirm-to-sign/", {"next": next_path})
    assert start.status_code == 302
    return start["Location"], client_callback(client, sso.sign_in(start["Location"], username))


def test_an_sso_reviewer_signs_an_approval_by_logging_in_again_at_the_identity_provider(sso, task, settings) -> None:
    # A role new from the mapping starts the cooldown like any other grant; this test is about the signing.
    settings.PLD_PRIVILEGE_COOLDOWN_HOURS = 0
    sso.user("sam", groups=["pld-reviewers"])
    client = Client()
    sso_sign_in(client, sso, "sam")
    rule = teacher_rule(task)
    page = client.get(f"/rules/{rule.pk}/").content.decode()
    assert "Confirm who you are at the identity provider" in page and 'type="password"' not in page
    refused = client.post(f"/rules/{rule.pk}/approve/", {"lock_version": rule.lock_version},
                          headers={"referer": f"http://testserver/rules/{rule.pk}/"})
    assert refused.status_code == 400 and "Confirm who you are at your identity provider" in refused.content.decode()
    assert f"/accounts/sso/confirm-to-sign/?next=/rules/{rule.pk}/" in refused.content.decode()
    authorize, back = _reauthenticate(client, sso, "sam", next_path=f"/rules/{rule.pk}/")
    query = parse_qs(urlsplit(authorize).query)
    assert query["prompt"] == ["login"] and query["max_age"] == ["0"]
    assert back.status_code == 302 and back["Location"] == f"/rules/{rule.pk}/"
    assert "identity confirmed by oidc" in client.get(f"/rules/{rule.pk}/").content.decode()
    response = client.post(f"/rules/{rule.pk}/approve/", {"lock_version": rule.lock_version})
    assert response.status_code in (200, 302), response.content[:400]
    assert Rule.objects.get(pk=rule.pk).status == Rule.Status.APPROVED
    signature = Signature.objects.get()
    assert signature.auth_method == "oidc" and signature.username == "sam"
    assert not signature.password_checked
    # The confirmation was good for that one signing.
    assert "Confirm who you are at the identity provider" in client.get(f"/rules/{rule.pk}/").content.decode()


def test_a_login_at_the_identity_provider_older_than_the_request_confirms_nothing(sso, task, monkeypatch) -> None:
    sso.user("sam", groups=["pld-reviewers"])
    client = Client()
    sso_sign_in(client, sso, "sam")
    # The test provider honours prompt=login, so its auth_time is always fresh; a provider that ignored it
    # would return its old login's time. Demanding an auth_time an hour ahead of the request stands in for that.
    monkeypatch.setattr(sso_module, "CLOCK_SKEW_SECONDS", -3600)
    rule = teacher_rule(task)
    _reauthenticate(client, sso, "sam", next_path=f"/rules/{rule.pk}/")
    failure = _facts("security.signature_failed")[0]
    assert failure["method"] == "oidc" and "auth_time before the request" in failure["problem"]
    response = client.post(f"/rules/{rule.pk}/approve/", {"lock_version": rule.lock_version})
    assert response.status_code == 400
    assert not Signature.objects.exists()


def test_someone_else_logging_in_at_the_identity_provider_confirms_nothing(sso, task) -> None:
    sso.user("sam", groups=["pld-reviewers"])
    sso.user("eve", groups=["pld-reviewers"])
    client = Client()
    sso_sign_in(client, sso, "sam")
    rule = teacher_rule(task)
    _reauthenticate(client, sso, "eve", next_path=f"/rules/{rule.pk}/")
    assert _facts("security.signature_failed")[0]["problem"] == "another person logged in at the identity provider"
    assert int(client.session["_auth_user_id"]) == User.objects.get(username="sam").pk
    client.post(f"/rules/{rule.pk}/approve/", {"lock_version": rule.lock_version})
    assert not Signature.objects.exists()


def test_a_local_account_has_no_identity_provider_to_confirm_at(sso, reviewer) -> None:
    client = Client()
    client.force_login(reviewer)
    assert client.get("/accounts/sso/confirm-to-sign/?next=/").status_code == 404
    assert client.post("/accounts/sso/confirm-to-sign/", {"next": "/"}).status_code == 404


def test_a_sign_in_the_identity_provider_answers_with_an_error_is_refused_and_counted(sso) -> None:
    client = Client()
    start = client.post(f"/accounts/oidc/{PROVIDER_ID}/login/?process=login", {"next": "/"})
    state = parse_qs(urlsplit(start["Location"]).query)["state"][0]
    # What a provider sends back when it refuses the person (RFC 6749 §4.1.2.1).
    response = client.get(f"/accounts/oidc/{PROVIDER_ID}/login/callback/?error=access_denied&state={state}")
    assert "_auth_user_id" not in client.session
    assert response.status_code == 302  # to allauth's "login cancelled / failed" page, not into the app
    assert LedgerEntry.objects.filter(event="security.sso_failed").count() == 1
