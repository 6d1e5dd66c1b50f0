"""API tokens: created by Admins, stored hashed, shown once, revocable; the page and the command."""
from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, Permission
from django.core.exceptions import PermissionDenied
from django.core.management import call_command

from evaluation.models import ApiToken
from evaluation.production.api_tokens import TokenError, api_token_authenticate, api_token_create, api_token_revoke
from tests.support.signatures import sign_revocation


def test_a_token_is_stored_only_as_its_hash(admin_user, reviewer) -> None:
    token, raw = api_token_create(user=reviewer, name="intake", created_by=admin_user)
    token.refresh_from_db()
    assert raw.startswith("pld_") and len(raw) > 40
    assert token.token_hash == ApiToken.hash_token(raw) and raw not in token.token_hash
    assert token.prefix == raw[:12] and (token.user, token.created_by) == (reviewer, admin_user)
    assert api_token_authenticate(f"Bearer {raw}") == token
    token.refresh_from_db()
    assert token.last_used_at is not None


@pytest.mark.parametrize("header, status", [
    ("", 401), ("Bearer", 401), ("Basic dXNlcjpwdw==", 401), ("Bearer pld_not-a-real-token", 401),
])
def test_missing_malformed_and_unknown_tokens_are_401(admin_user, header, status) -> None:
    api_token_create(user=admin_user, name="ok", created_by=admin_user)
    with pytest.raises(TokenError) as caught:
        api_token_authenticate(header)
    assert caught.value.status == status


def test_a_revoked_token_is_403(admin_user) -> None:
    token, raw = api_token_create(user=admin_user, name="old", created_by=admin_user)
    api_token_revoke(token=token, user=admin_user, signature=sign_revocation(admin_user, token))
    with pytest.raises(TokenError, match="revoked") as caught:
        api_token_authenticate(f"Bearer {raw}")
    assert caught.value.status == 403


def test_only_admins_create_and_revoke_tokens(admin_user, reviewer) -> None:
    with pytest.raises(PermissionDenied):
        api_token_create(user=reviewer, name="mine", created_by=reviewer)
    token, _raw = api_token_create(user=reviewer, name="mine", created_by=admin_user)
    with pytest.raises(PermissionDenied):
        api_token_revoke(token=token, user=reviewer, signature=sign_revocation(reviewer, token))


def test_the_page_shows_a_new_token_once_and_revokes_it(client, admin_user, reviewer) -> None:
    client.force_login(admin_user)
    response = client.post("/api-tokens/new/", {"user": reviewer.pk, "name": "contract intake"})
    token = ApiToken.objects.get()
    raw = response.context["raw_token"]
    assert ApiToken.hash_token(raw) == token.token_hash
    assert raw in response.content.decode() and response["Cache-Control"] == "no-store"
    listing = client.get("/api-tokens/").content.decode()
    assert raw not in listing and token.prefix in listing and "contract intake" in listing
    # Revoking asks first: the list links to a confirmation page, and a POST without its confirmation revokes nothing.
    assert f'href="/api-tokens/{token.pk}/revoke/"' in listing
    for unconfirmed in (client.get, client.post):
        assert "Revoke the token" in unconfirmed(f"/api-tokens/{token.pk}/revoke/").content.decode()
        token.refresh_from_db()
        assert token.revoked_at is None
    client.post(f"/api-tokens/{token.pk}/revoke/", {"confirm": "yes", "password": "pw-adam"})
    token.refresh_from_db()
    assert token.revoked_at is not None
    assert "revoked" in client.get("/api-tokens/").content.decode()


def test_the_token_page_is_for_admins_only(client, reviewer, auditor, admin_user) -> None:
    token, _raw = api_token_create(user=admin_user, name="x", created_by=admin_user)
    for user in (reviewer, auditor):
        client.force_login(user)
        assert client.get("/api-tokens/").status_code == 403
        assert client.post("/api-tokens/new/", {"user": user.pk, "name": "n"}).status_code == 403
        assert client.post(f"/api-tokens/{token.pk}/revoke/").status_code == 403
    token.refresh_from_db()
    assert token.revoked_at is None and ApiToken.objects.count() == 1


def test_the_token_list_queries_do_not_grow(client, admin_user, reviewer, django_assert_max_num_queries) -> None:
    for n in range(5):
        api_token_create(user=reviewer, name=f"t{n}", created_by=admin_user)
    client.force_login(admin_user)
    # The tokens' task scopes come in one prefetch; the form lists the tasks once; the signing fields ask once
    # whether the signer signs through an identity provider and whether they hold a passkey.
    with django_assert_max_num_queries(12):
        client.get("/api-tokens/")


def test_the_create_api_token_command_prints_the_raw_token(admin_user, reviewer, capsys) -> None:
    call_command("create_api_token", "--user", "rita", "--name", "batch", "--created-by", "adam")
    raw = capsys.readouterr().out.strip()
    assert ApiToken.objects.get(token_hash=ApiToken.hash_token(raw)).user == reviewer


@pytest.mark.parametrize("grant", ["group", "direct", "superuser", "none"])
def test_the_owners_right_is_djangos_however_it_is_held(admin_user, reviewer, grant) -> None:
    _token, raw = api_token_create(user=reviewer, name="owner", created_by=admin_user)
    reviewer.groups.clear()
    if grant == "group":
        reviewer.groups.add(Group.objects.create(name="readers"))
        Group.objects.get(name="readers").permissions.add(Permission.objects.get(codename="view_promptversion"))
    elif grant == "direct":
        reviewer.user_permissions.add(Permission.objects.get(codename="view_promptversion"))
    elif grant == "superuser":
        reviewer.is_superuser = True
        reviewer.save()
    if grant == "none":
        with pytest.raises(TokenError) as caught:
            api_token_authenticate(f"Bearer {raw}")
        assert caught.value.code == "token_owner_not_permitted"
    else:
        assert api_token_authenticate(f"Bearer {raw}").user == reviewer
