"""django-allauth adapter: accounts are created by an Admin, never by signing up."""
from __future__ import annotations

import time
from typing import Any

from allauth.account.adapter import DefaultAccountAdapter
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.urls import reverse

from pldreview.accounts.handlers import AUTHENTICATED_AT
from pldreview.accounts.lockout import device_cookie_set


class AccountAdapter(DefaultAccountAdapter):
    def is_open_for_signup(self, request: HttpRequest) -> bool:
        """Refuse self-service signup: an Admin creates each account with its role."""
        return False

    def get_password_change_redirect_url(self, request: HttpRequest) -> str:
        """Go to the overview after a password change, where the confirmation shows, not back to the same form."""
        return reverse("pld-home")

    def is_reauthentication_required(self, *, app: str, **kwargs: Any) -> bool:
        """Ask for the password again before a sensitive change, unless the login itself was minutes ago.

        Without this, the enrolment forced right after login (PLD_MFA_REQUIRED) would ask for the password
        a second time within seconds; a session older than ACCOUNT_REAUTHENTICATION_TIMEOUT is asked again.
        """
        session = getattr(getattr(self, "request", None), "session", None)
        logged_in_at = session.get(AUTHENTICATED_AT) if session is not None else None
        if logged_in_at and time.time() - logged_in_at < settings.ACCOUNT_REAUTHENTICATION_TIMEOUT:
            return False
        return super().is_reauthentication_required(app=app, **kwargs)

    def post_login(self, request: HttpRequest, user: Any, **kwargs: Any) -> HttpResponse | None:
        """Answer a completed login (password, and the second factor when enrolled) and remember this browser.

        The device cookie lets this browser log in again while failures from elsewhere hold the account back
        (pldreview/accounts/lockout.py).
        """
        response = super().post_login(request, user, **kwargs)
        if response is not None:
            device_cookie_set(response, username=user.get_username(), request=request)
        return response
