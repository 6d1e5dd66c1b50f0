"""Write the security events that django.contrib.auth, allauth and axes announce into the ledger."""
from __future__ import annotations

from typing import Any

from allauth.account.authentication import get_authentication_records
from allauth.account.signals import password_changed
from allauth.mfa.models import Authenticator
from allauth.mfa.signals import authentication_failed, authenticator_added, authenticator_removed, authenticator_reset
from django.conf import settings
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.dispatch import receiver
from django.http import HttpRequest
from django.utils import timezone

from pldreview.accounts.lockout import (
    account_username,
    attempted_username,
    client_address,
    failure_record,
    signing_delay,
)
from pldreview.accounts.security_log import security_event_count
from pldreview.accounts.services import password_change_recorded, user_must_change_password
from pldreview.ledger import ledger_append
from pldreview.signatures import signing_attempted, signing_credentials_checked

# The factors a login asks for after the password: an authenticator app's code or a passkey.
LOGIN_FACTORS = (Authenticator.Type.TOTP, Authenticator.Type.WEBAUTHN)
AUTHENTICATED_AT = "pld_authenticated_at"
LAST_SEEN = "pld_last_seen"
PASSWORD_OK = "pld_password_ok"
# The id of the user whose session passed the second-factor gate: a factor verified in this login, or none needed.
MFA_OK = "pld_mfa_ok"


def _address(request: HttpRequest | None) -> str:
    if request is None:
        return ""
    return getattr(request, "axes_ip_address", None) or request.META.get("REMOTE_ADDR", "")


def factor_required(user: Any) -> bool:
    """Say whether the user must have a second factor: always when required, and for staff and superusers.

    ``createsuperuser`` makes accounts outside the Admin's pages; with Django admin or the permission walk they
    could do everything on a password alone.
    """
    return bool(settings.PLD_MFA_REQUIRED or user.is_staff or user.is_superuser)


def factor_verified_in_this_login(request: HttpRequest, user: Any) -> bool:
    """Say whether this login verified a second factor: allauth's record of it, after the login's password step.

    allauth records each authentication step in the session (``record_authentication``); a login by another
    door (a password posted anywhere else) has no "mfa" record, so it is not verified whatever the account has.
    """
    records = get_authentication_records(request, user)
    passwords = [r.get("at", 0) for r in records if r.get("method") == "password"]
    since = max(passwords, default=0)
    return any(
        r.get("method") == "mfa" and not r.get("reauthenticated") and r.get("at", 0) >= since for r in records
    )


def signed_in_at_identity_provider(request: HttpRequest, user: Any) -> bool:
    """Say whether this login came from the identity provider (single sign-on), whose own factors then count.

    The identity provider decides how people prove who they are there (its second factor included); a login
    through it is never asked for a factor enrolled here (docs/security.md, "Single sign-on").
    """
    records = get_authentication_records(request, user)
    return bool(records) and records[-1].get("method") == "socialaccount"


@receiver(user_logged_in)
def _logged_in(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    if request is not None and hasattr(request, "session"):
        now = timezone.now().timestamp()
        request.session[AUTHENTICATED_AT] = now
        request.session[LAST_SEEN] = now
        request.session[PASSWORD_OK] = not user_must_change_password(user)
        has_factor = Authenticator.objects.filter(user=user, type__in=LOGIN_FACTORS).exists()
        verified = factor_verified_in_this_login(request, user)
        if verified or signed_in_at_identity_provider(request, user) or not (has_factor or factor_required(user)):
            request.session[MFA_OK] = user.pk
        else:
            # AccountGateMiddleware sends the session to enrolment, or out again when a factor exists unverified.
            request.session.pop(MFA_OK, None)
    ledger_append(event="security.login", actor=user, obj=user, facts={"ip_address": _address(request)})


@receiver(user_logged_out)
def _logged_out(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    if user is not None:
        ledger_append(event="security.logout", actor=user, obj=user, facts={"ip_address": _address(request)})


def _anonymous_failure(request: HttpRequest, attempted: str | None, kind: str) -> None:
    # Anyone can fail to log in: counted per account (or unknown account) and address in a window, so an
    # anonymous writer cannot grow the ledger without bound (accounts/security_log.py).
    security_event_count(
        username=account_username(request, attempted), ip_address=client_address(request), kind=kind,
        attempted=attempted or "",
    )


@receiver(user_login_failed)
def _login_failed(sender: Any, credentials: dict[str, Any], request: HttpRequest | None = None, **kwargs: Any) -> None:
    # Counting toward the delays is django-axes' handler's (pldreview.accounts.lockout.DelayHandler), and so is
    # noting an attempt refused during a wait. A signing records its own failure (security.signature_failed).
    if request is None or signing_credentials_checked() or getattr(request, "axes_locked_out", False):
        return
    attempted = attempted_username(request, credentials)
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        # A logged-in user's failed reauthentication: one entry each.
        ledger_append(
            event="security.login_failed",
            actor=user,
            obj=user,
            facts={"username": attempted or "", "ip_address": _address(request), "reauthentication": True},
        )
    else:
        _anonymous_failure(request, attempted, "password")


@receiver(password_changed)
def _password_changed(sender: Any, request: HttpRequest, user: Any, **kwargs: Any) -> None:
    password_change_recorded(user=user)


@receiver(authenticator_added)
def _mfa_added(sender: Any, request: HttpRequest, user: Any, authenticator: Any, **kwargs: Any) -> None:
    ledger_append(event="security.mfa_enrolled", actor=user, obj=user, facts={"type": authenticator.type})


@receiver(authenticator_removed)
def _mfa_removed(sender: Any, request: HttpRequest, user: Any, authenticator: Any, **kwargs: Any) -> None:
    ledger_append(event="security.mfa_removed", actor=user, obj=user, facts={"type": authenticator.type})


@receiver(authenticator_reset)
def _mfa_codes_renewed(sender: Any, request: HttpRequest, user: Any, authenticator: Any, **kwargs: Any) -> None:
    ledger_append(event="security.mfa_recovery_codes_renewed", actor=user, obj=user, facts={"type": authenticator.type})


@receiver(authentication_failed)
def _mfa_failed(
    sender: Any, request: HttpRequest, user: Any, authenticator: Any, reauthentication: bool = False, **kwargs: Any
) -> None:
    # A wrong code counts toward the same limits as a wrong password.
    failure_record(request, user.get_username())
    if not reauthentication:
        _anonymous_failure(request, user.get_username(), "code")
    else:
        ledger_append(
            event="security.mfa_failed",
            actor=user,
            obj=user,
            facts={"type": authenticator.type, "ip_address": _address(request), "reauthentication": True},
        )


@receiver(signing_attempted)
def _signing_attempted(sender: Any, request: HttpRequest, user: Any, **kwargs: Any) -> Any:
    # A signing waits like a login: during a wait its code is not checked either.
    return signing_delay(request, user)
