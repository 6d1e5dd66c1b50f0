"""The second factor: enrolment with a QR code, recovery codes shown once, and no way around it when required."""
from __future__ import annotations

import re

import pyotp
import pytest
from allauth.mfa.models import Authenticator
from django.test import Client, TestCase

from pldreview.accounts.models import AccountChangeKind as Kind
from pldreview.models import LedgerEntry
from tests.support.account_changes import account_change_made

pytestmark = pytest.mark.django_db


@pytest.fixture
def mfa_required(settings) -> None:
    settings.PLD_MFA_REQUIRED = True


def _secret(page: str) -> str:
    field = re.search(r'<input[^>]*id="authenticator_secret"[^>]*>', page).group(0)
    return re.search(r'value="([A-Z2-7]+)"', field).group(1)


def _enrol(client: Client) -> tuple[str, list[str]]:
    page = client.get("/accounts/2fa/totp/activate/").content.decode()
    assert 'src="data:image/svg+xml' in page  # the QR code, in the page itself
    secret = _secret(page)
    # allauth announces the new factor once its transaction commits; the test's transaction never does.
    with TestCase.captureOnCommitCallbacks(execute=True):
        response = client.post("/accounts/2fa/totp/activate/", {"code": pyotp.TOTP(secret).now()})
    assert response.status_code == 302 and response["Location"] == "/accounts/2fa/recovery-codes/"
    codes_page = client.get("/accounts/2fa/recovery-codes/").content.decode()
    codes = re.findall(r"\b[0-9a-f]{8}\b", codes_page)
    assert len(set(codes)) >= 10
    return secret, sorted(set(codes))


def test_a_user_without_a_second_factor_can_do_nothing_but_enrol(mfa_required, reviewer, task) -> None:
    client = Client()
    assert client.post("/login/", {"login": "rita", "password": "pw-rita"}).status_code == 302
    for path in ("/", "/review/", f"/tasks/{task.name}/", "/jobs/"):
        response = client.get(path)
        assert response.status_code == 302 and response["Location"] == "/accounts/2fa/totp/activate/", path
    assert client.get("/", headers={"HX-Request": "true"})["HX-Redirect"] == "/accounts/2fa/totp/activate/"
    _enrol(client)
    assert client.get("/").status_code == 200
    assert LedgerEntry.objects.filter(event="security.mfa_enrolled", actor=reviewer).exists()


def test_recovery_codes_are_shown_once(mfa_required, reviewer) -> None:
    client = Client()
    client.post("/login/", {"login": "rita", "password": "pw-rita"})
    _secret_value, codes = _enrol(client)
    again = client.get("/accounts/2fa/recovery-codes/").content.decode()
    assert not any(code in again for code in codes)


def test_login_asks_for_the_second_factor_and_accepts_a_recovery_code(mfa_required, reviewer, task) -> None:
    client = Client()
    client.post("/login/", {"login": "rita", "password": "pw-rita"})
    _secret_value, codes = _enrol(client)
    client.post("/logout/")

    client = Client()
    response = client.post("/login/", {"login": "rita", "password": "pw-rita"})
    assert response["Location"] == "/accounts/2fa/authenticate/"
    assert client.get("/").status_code == 302  # the password alone logs nobody in
    wrong = client.post("/accounts/2fa/authenticate/", {"code": "000000"})
    assert wrong.status_code == 200 and not wrong.wsgi_request.user.is_authenticated
    assert LedgerEntry.objects.filter(event="security.mfa_failed").exists()
    response = client.post("/accounts/2fa/authenticate/", {"code": codes[0]})
    assert response.status_code == 302
    assert client.get("/").status_code == 200


def test_two_admins_reset_a_lost_second_factor_and_the_user_enrols_again(
    mfa_required, reviewer, admin_user, second_admin
) -> None:
    client = Client()
    client.post("/login/", {"login": "rita", "password": "pw-rita"})
    _enrol(client)
    account_change_made(second_admin, admin_user, Kind.RESET_SECOND_FACTOR, target=reviewer,
                        reason="phone lost, identity checked")
    assert not Authenticator.objects.filter(user=reviewer).exists()
    assert LedgerEntry.objects.get(event="security.mfa_reset").actor == admin_user
    client = Client()
    client.post("/login/", {"login": "rita", "password": "pw-rita"})
    assert client.get("/")["Location"] == "/accounts/2fa/totp/activate/"
