"""Write the security events that django.contrib.auth, allauth and axes announce into the ledger."""
from __future__ import annotations

from typing import Any

from allauth.account.signals import password_changed
from allauth.mfa.models import Authenticator
from allauth.mfa.signals import authentication_failed, authenticator_added, authenticator_removed, authenticator_reset
from axes.signals import user_locked_out
from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.dispatch import receiver
from django.http import HttpRequest
from django.utils import timezone

from pldreview.accounts.lockout import attempted_username
from pldreview.accounts.services import password_change_recorded, user_must_change_password
from pldreview.ledger import ledger_append

AUTHENTICATED_AT = "pld_authenticated_at"
LAST_SEEN = "pld_last_seen"
PASSWORD_OK = "pld_password_ok"
MFA_OK = "pld_mfa_ok"


def _address(request: HttpRequest | None) -> str:
    if request is None:
        return ""
    return getattr(request, "axes_ip_address", None) or request.META.get("REMOTE_ADDR", "")


def _known_user(username: str | None) -> Any:
    if not username:
        return None
    return get_user_model().objects.filter(username=username).first()


@receiver(user_logged_in)
def _logged_in(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    if request is not None and hasattr(request, "session"):
        now = timezone.now().timestamp()
        request.session[AUTHENTICATED_AT] = now
        request.session[LAST_SEEN] = now
        request.session[PASSWORD_OK] = not user_must_change_password(user)
        request.session[MFA_OK] = Authenticator.objects.filter(user=user, type=Authenticator.Type.TOTP).exists()
    ledger_append(event="security.login", actor=user, obj=user, facts={"ip_address": _address(request)})


@receiver(user_logged_out)
def _logged_out(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    if user is not None:
        ledger_append(event="security.logout", actor=user, obj=user, facts={"ip_address": _address(request)})


@receiver(user_login_failed)
def _login_failed(sender: Any, credentials: dict[str, Any], request: HttpRequest | None = None, **kwargs: Any) -> None:
    username = attempted_username(request, credentials) if request is not None else credentials.get("username")
    # The target is named for the Auditor's filter; the ledger is not shown to the person logging in.
    ledger_append(
        event="security.login_failed",
        actor=None,
        obj=_known_user(username),
        facts={"username": username or "", "ip_address": _address(request)},
    )


@receiver(user_locked_out)
def _locked_out(sender: Any, request: HttpRequest | None, username: str | None, ip_address: str, **kwargs: Any) -> None:
    ledger_append(
        event="security.lockout",
        actor=None,
        obj=_known_user(username),
        facts={"username": username or "", "ip_address": ip_address or ""},
    )


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
def _mfa_failed(sender: Any, request: HttpRequest, user: Any, authenticator: Any, **kwargs: Any) -> None:
    ledger_append(
        event="security.mfa_failed",
        actor=None,
        obj=user,
        facts={"type": authenticator.type, "ip_address": _address(request)},
    )
