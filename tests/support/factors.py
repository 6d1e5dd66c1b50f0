"""Second factors for tests: enrol a TOTP authenticator, log in through the app's own door, Django admin on."""
from __future__ import annotations

import importlib
from collections.abc import Iterator

import pyotp
import pytest
from allauth.mfa.recovery_codes.internal.auth import RecoveryCodes
from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret
from django.contrib.auth.models import User
from django.core.cache import cache
from django.test import Client, override_settings
from django.urls import clear_url_caches


def totp_enrol(user: User) -> str:
    """Give the user a TOTP authenticator and recovery codes as allauth stores them; return the TOTP secret."""
    secret = generate_totp_secret()
    TOTP.activate(user, secret)
    RecoveryCodes.activate(user)
    return secret


def log_in_with_factor(client: Client, username: str, secret: str, *, address: str = "127.0.0.1"):  # noqa: ANN201
    """Log in at /login/ with the persona's password ("pw-<username>") and the current code; return the answer."""
    # allauth refuses a TOTP code used before within its 30 s; a test that logs in twice must not be refused
    # for that (the cache holds nothing else the tests rely on).
    cache.clear()
    step = client.post("/login/", {"login": username, "password": f"pw-{username}"}, REMOTE_ADDR=address)
    assert step.status_code == 302 and step["Location"].startswith("/accounts/2fa/authenticate/"), step
    return client.post("/accounts/2fa/authenticate/", {"code": pyotp.TOTP(secret).now()}, REMOTE_ADDR=address)


def wrong_code(secret: str) -> str:
    """Return a six-digit code that is not the current one."""
    current = pyotp.TOTP(secret).now()
    return "000000" if current != "000000" else "111111"


def _reload_urls() -> None:
    import pldreview.urls

    importlib.reload(pldreview.urls)
    clear_url_caches()


@pytest.fixture
def django_admin_on() -> Iterator[None]:
    """Mount Django admin as ``PLD_DJANGO_ADMIN=1`` does (the URLs are read once, so they are read again)."""
    with override_settings(PLD_DJANGO_ADMIN=True):
        _reload_urls()
        yield
    _reload_urls()
