"""django-allauth adapters: local accounts are created by an Admin, never by signing up; SSO by its mapping."""
from __future__ import annotations

import time
from typing import Any

from allauth.account.adapter import DefaultAccountAdapter
from allauth.socialaccount.adapter import DefaultSocialAccountAdapter
from allauth.socialaccount.models import SocialLogin
from allauth.socialaccount.providers.base import AuthProcess
from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.urls import reverse

from pldreview.accounts import sso
from pldreview.accounts.handlers import AUTHENTICATED_AT
from pldreview.accounts.lockout import client_address, device_cookie_set
from pldreview.accounts.security_log import security_event_count


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


class SocialAccountAdapter(DefaultSocialAccountAdapter):
    """Single sign-on by the rules of ``pldreview.accounts.sso``: the mapping decides who enters and with what."""

    def pre_social_login(self, request: HttpRequest, sociallogin: SocialLogin) -> None:
        """Check a sign-in (or a signing's re-authentication) before allauth logs anyone in or creates anything."""
        if sociallogin.state.get("process") == AuthProcess.REDIRECT:
            sso.signing_reauth_complete(request=request, sociallogin=sociallogin)
        elif sociallogin.state.get("process") == AuthProcess.LOGIN:
            sso.sso_sign_in_check(request=request, sociallogin=sociallogin)
        else:
            # "connect" would attach an identity-provider account to whoever is logged in: never offered.
            raise PermissionDenied("Accounts are not connected to an identity provider by hand.")

    def is_open_for_signup(self, request: HttpRequest, sociallogin: SocialLogin) -> bool:
        """Create an account at first sign-in only when PLD_SSO_AUTO_CREATE says so (the check ran before)."""
        return bool(settings.PLD_SSO_AUTO_CREATE)

    def save_user(self, request: HttpRequest, sociallogin: SocialLogin, form: Any = None) -> Any:
        """Create the account (no usable password: it signs in and signs at the identity provider) with its roles."""
        with transaction.atomic():
            user = super().save_user(request, sociallogin, form)
            sso.sso_account_created(request=request, sociallogin=sociallogin)
        return user

    def on_authentication_error(self, request: HttpRequest, provider: Any, error: Any = None,
                                exception: Any = None, extra_context: Any = None) -> None:
        """Count a sign-in the identity provider refused or that failed on the way back, like a failed login."""
        security_event_count(username="", ip_address=client_address(request), kind="sso")
