"""One door: Django admin is off unless asked for, its login is the app's, and no session skips the second factor."""
from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client

from tests.support.factors import django_admin_on, log_in_with_factor, totp_enrol  # noqa: F401

pytestmark = pytest.mark.django_db


@pytest.fixture
def superuser(admin_user: User) -> User:
    admin_user.is_staff = admin_user.is_superuser = True
    admin_user.save(update_fields=["is_staff", "is_superuser"])
    return admin_user


def test_django_admin_has_no_url_unless_turned_on(client) -> None:
    assert client.get("/admin/login/").status_code == 404
    assert client.post("/admin/login/", {"username": "adam", "password": "pw-adam"}).status_code == 404


@pytest.mark.usefixtures("django_admin_on")
def test_a_totp_accounts_password_posted_to_the_admin_login_opens_nothing(superuser) -> None:
    totp_enrol(superuser)
    client = Client()
    response = client.post("/admin/login/?next=/users/", {"username": "adam", "password": "pw-adam", "next": "/users/"})
    # Django admin's login form is gone: the answer is the way to the app's login, and nobody is logged in.
    assert response.status_code == 302 and response["Location"].startswith("/login/?next=")
    assert not response.wsgi_request.user.is_authenticated
    for path in ("/users/", "/ledger/", "/admin/", "/review/", "/api-tokens/", "/evaluations/", "/security-events/"):
        answer = client.get(path)
        assert answer.status_code == 302 and "/login/" in answer["Location"], path


def test_a_session_logged_in_by_another_door_without_its_factor_is_ended(superuser) -> None:
    totp_enrol(superuser)
    client = Client()
    # force_login is a login that verified no factor: what any door but the app's own login would make.
    client.force_login(superuser)
    response = client.get("/users/")
    assert response.status_code == 302 and response["Location"] == "/login/?next=/users/"
    assert not response.wsgi_request.user.is_authenticated
    for path in ("/users/", "/ledger/", "/review/", "/api-tokens/"):
        assert client.get(path).status_code == 302, path  # logged out, not only redirected once


@pytest.mark.usefixtures("django_admin_on")
def test_the_admin_login_leads_to_the_apps_login_and_with_the_second_factor_into_admin(superuser) -> None:
    secret = totp_enrol(superuser)
    client = Client()
    first = client.get("/admin/")
    assert first.status_code == 302 and first["Location"].startswith("/admin/login/")
    to_login = client.get(first["Location"])
    assert to_login.status_code == 302 and to_login["Location"] == "/login/?next=/admin/"
    response = log_in_with_factor(client, "adam", secret)
    assert response.status_code == 302
    assert client.get("/admin/").status_code == 200
    assert client.get("/users/").status_code == 200


@pytest.mark.usefixtures("django_admin_on")
def test_a_logged_in_user_who_is_not_staff_gets_403_from_admin_not_a_loop(reviewer) -> None:
    client = Client()
    client.force_login(reviewer)
    assert client.get("/admin/login/?next=/admin/").status_code == 403


def test_a_superuser_made_by_createsuperuser_must_enrol_a_factor_before_any_page(monkeypatch, settings) -> None:
    settings.PLD_MFA_REQUIRED = False
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "a-long-root-password")
    call_command("createsuperuser", interactive=False, username="root", email="root@example.org", verbosity=0)
    client = Client()
    assert client.post("/login/", {"login": "root", "password": "a-long-root-password"}).status_code == 302
    for path in ("/", "/users/", "/ledger/", "/security-events/"):
        response = client.get(path)
        assert response.status_code == 302 and response["Location"] == "/accounts/2fa/totp/activate/", path
    assert User.objects.get(username="root").is_superuser
