"""Leavers: deactivating a user, or the identity provider refusing them, ends every session and revokes every
API token at once, recorded on the ledger (``accounts.services.user_offboard``)."""
from __future__ import annotations

import json

import pytest
from django.test import Client

from evaluation.models import ApiToken
from evaluation.production.api_tokens import api_token_create
from pldreview.accounts.services import user_offboard
from pldreview.models import LedgerEntry

pytestmark = pytest.mark.django_db


def _logged_in(username: str) -> Client:
    client = Client()
    assert client.post("/login/", {"login": username, "password": f"pw-{username}"}).status_code == 302
    return client


def _classify(raw: str, task_name: str) -> int:
    response = Client().post(f"/api/v1/tasks/{task_name}/classify", {}, content_type="application/json",
                             HTTP_AUTHORIZATION=f"Bearer {raw}")
    return response.status_code


def test_deactivating_a_user_ends_all_their_sessions_and_revokes_their_tokens_at_once(
    client, reviewer, admin_user, task
) -> None:
    desk, laptop = _logged_in("rita"), _logged_in("rita")
    assert desk.get("/").status_code == 200 and laptop.get("/").status_code == 200
    token, raw = api_token_create(user=reviewer, name="rita's script", created_by=admin_user)
    assert _classify(raw, task.name) != 401
    client.force_login(admin_user)
    answer = client.post(f"/users/{reviewer.pk}/change/", {"action": "deactivate", "reason": "left the company"},
                         follow=True)
    assert "2 sessions ended, 1 API tokens revoked" in answer.content.decode()
    for browser in (desk, laptop):
        assert browser.get("/").status_code == 302
    token.refresh_from_db()
    assert token.revoked_at is not None and _classify(raw, task.name) == 401
    entry = LedgerEntry.objects.get(event="security.user_deactivated")
    facts = json.loads(entry.payload)["facts"]
    assert entry.actor == admin_user and facts["sessions_ended"] == 2 and facts["api_tokens_revoked"] == 1
    assert LedgerEntry.objects.filter(event="api_token.revoked", actor=admin_user).count() == 1


def test_a_refusal_by_the_identity_provider_offboards_the_same_way_without_an_admin(reviewer, admin_user) -> None:
    browser = _logged_in("rita")
    api_token_create(user=reviewer, name="nightly", created_by=admin_user)
    counts = user_offboard(user=reviewer, reason="refused by the identity provider at sign-in", by=None,
                           source="sso")
    assert counts == {"sessions_ended": 1, "api_tokens_revoked": 1}
    reviewer.refresh_from_db()
    assert not reviewer.is_active and browser.get("/").status_code == 302
    assert not ApiToken.objects.filter(user=reviewer, revoked_at__isnull=True).exists()
    entry = LedgerEntry.objects.get(event="security.user_deactivated")
    assert entry.actor is None and json.loads(entry.payload)["facts"]["source"] == "sso"
    # Called again (the next refused sign-in) it finds nothing left and still says so.
    assert user_offboard(user=reviewer, reason="refused again", by=None, source="sso") == {
        "sessions_ended": 0, "api_tokens_revoked": 0}


def test_a_session_made_without_allauths_record_ends_too(reviewer, admin_user) -> None:
    from allauth.usersessions.models import UserSession

    browser = Client()
    browser.force_login(reviewer)
    UserSession.objects.filter(user=reviewer).delete()  # as for a session from before allauth recorded them
    assert browser.get("/").status_code == 200
    user_offboard(user=reviewer, reason="left", by=admin_user)
    assert browser.get("/").status_code == 302
