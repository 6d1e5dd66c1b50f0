"""Guessing stops: failed passwords and codes make the next attempt wait, longer after each failure.

Every failed attempt at a credential counts — a password at login or in a signing, a TOTP or recovery code at
login, in a signing or at reauthentication — under keys:

- the account (``PLD_LOGIN_ACCOUNT_MAX_FAILURES``, 50) and the account at the client's address
  (``PLD_LOGIN_MAX_FAILURES``, 10), for a client without a device cookie of that account;
- the device cookie (``PLD_LOGIN_MAX_FAILURES``) for a client that has one: a signed cookie set at a successful
  login (OWASP "device cookies"), so a person on a browser they logged in from before is not held back by
  failures elsewhere, and whoever steals the cookie still gets only its own limit;
- "unknown usernames" at the address (``PLD_LOGIN_MAX_FAILURES``) for names that are no account, so invented
  names make no new keys and the answer is the same as for a real account.

A key that reaches its limit waits ``PLD_LOGIN_DELAY_SECONDS`` × 2^k after its (limit + k)-th failure, at most
``PLD_LOGIN_DELAY_MAX_SECONDS``; during the wait every attempt — the right credentials too — is refused with
HTTP 429 and the time it may try again. A key is forgotten ``PLD_LOGIN_FAILURE_WINDOW_MINUTES`` after its last
failure and wait, at a successful login (the device and account-at-address keys), or by ``lockout_reset``.

django-axes carries it: its authentication backend asks ``DelayHandler.is_locked`` before any password is
checked, its ``user_login_failed`` handler counts, its middleware answers with ``lockout_response``.
"""
from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from axes.conf import settings as axes_settings
from axes.handlers.database import AxesDatabaseHandler
from axes.handlers.proxy import AxesProxyHandler
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core import signing
from django.core.management.base import CommandError
from django.db import transaction
from django.db.models import Max, Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone

from pldreview.accounts.models import FailureCounter
from pldreview.accounts.security_log import security_event_count
from pldreview.signatures import after_signing

Scope = FailureCounter.Scope
DEVICE_COOKIE = "pld_device"
_DEVICE_SALT = "pldreview.accounts.device-cookie"
_RESET_PERMITTED: ContextVar[bool] = ContextVar("pld_lockout_reset_permitted", default=False)


@dataclass(frozen=True)
class _Key:
    scope: str
    key: str
    username: str
    ip_address: str
    limit: int


def attempted_username(request: HttpRequest | None, credentials: dict[str, Any] | None) -> str | None:
    """Return the username an attempt names: allauth passes ``username`` to authenticate, its form posts ``login``."""
    if credentials and credentials.get("username"):
        return str(credentials["username"])[:150]
    login = request.POST.get("login") if request is not None and request.method == "POST" else None
    return login[:150] if login else None


def client_address(request: HttpRequest) -> str:
    """Return the client's address as django-axes reads it (``PLD_BEHIND_PROXY``: from X-Forwarded-For)."""
    AxesProxyHandler.update_request(request)
    return getattr(request, "axes_ip_address", None) or ""


def account_username(request: HttpRequest, attempted: str | None) -> str:
    """Return the account's own spelling of an attempted username, or "" when it names no account."""
    # Logins match usernames case-insensitively; the key uses the account's own spelling, or "" for no account.
    if not attempted:
        return ""
    known: dict[str, str] = request.__dict__.setdefault("_pld_account_usernames", {})
    if attempted not in known:
        match = (
            get_user_model().objects.filter(username__iexact=attempted)
            .order_by("pk").values_list("username", flat=True).first()
        )
        known[attempted] = match or ""
    return known[attempted]


# --- device cookies ------------------------------------------------------------------------------


def device_cookie_value(*, username: str, request: HttpRequest | None = None) -> str:
    """Return a signed device cookie for the account, keeping the device's id when it already has one for it."""
    nonce = _device_nonce(request, username) if request is not None else None
    return signing.dumps({"u": username, "n": nonce or secrets.token_urlsafe(16)}, salt=_DEVICE_SALT)


def device_cookie_set(response: HttpResponse, *, username: str, request: HttpRequest | None = None) -> None:
    """Set the device cookie of the account on the response (a successful login)."""
    response.set_cookie(
        DEVICE_COOKIE, device_cookie_value(username=username, request=request),
        max_age=settings.PLD_DEVICE_COOKIE_DAYS * 86400, secure=settings.SESSION_COOKIE_SECURE,
        httponly=True, samesite="Lax",
    )


def _device_nonce(request: HttpRequest, username: str) -> str | None:
    raw = request.COOKIES.get(DEVICE_COOKIE) if username else None
    if not raw:
        return None
    try:
        data = signing.loads(raw, salt=_DEVICE_SALT, max_age=timedelta(days=settings.PLD_DEVICE_COOKIE_DAYS))
    except signing.BadSignature:
        return None
    if not isinstance(data, dict) or data.get("u") != username or not isinstance(data.get("n"), str):
        return None
    return data["n"][:64] or None


# --- counting and waiting ------------------------------------------------------------------------


def _keys(request: HttpRequest, attempted: str | None) -> tuple[str, list[_Key]]:
    address = client_address(request)
    username = account_username(request, attempted)
    per_client = settings.PLD_LOGIN_MAX_FAILURES
    if not username:
        return "", [_Key(Scope.UNKNOWN_ADDRESS, f"unknown@{address}", "", address, per_client)]
    nonce = _device_nonce(request, username)
    if nonce:
        return username, [_Key(Scope.DEVICE, f"device:{nonce}:{username}", username, "", per_client)]
    return username, [
        _Key(Scope.ACCOUNT, f"account:{username}", username, "", settings.PLD_LOGIN_ACCOUNT_MAX_FAILURES),
        _Key(Scope.ACCOUNT_ADDRESS, f"account@{address}:{username}", username, address, per_client),
    ]


def _enabled() -> bool:
    return bool(axes_settings.AXES_ENABLED)


def delay_seconds(failures: int, limit: int) -> int:
    """Return how long a key with ``failures`` failures waits: nothing below its limit, then doubling, capped."""
    if failures < limit:
        return 0
    doublings = min(failures - limit, 40)
    return min(settings.PLD_LOGIN_DELAY_SECONDS * 2**doublings, settings.PLD_LOGIN_DELAY_MAX_SECONDS)


def delay_until(request: HttpRequest, attempted: str | None) -> datetime | None:
    """Return until when an attempt for this username from this client must wait, or None if it may try now."""
    if not _enabled():
        return None
    _username, keys = _keys(request, attempted)
    return FailureCounter.objects.filter(
        key__in=[k.key for k in keys], delayed_until__gt=timezone.now()
    ).aggregate(until=Max("delayed_until"))["until"]


def failure_counters_prune(*, now: datetime | None = None) -> int:
    """Delete the counters that are forgotten anyway (quiet for the window after any wait); return how many."""
    forget_before = (now or timezone.now()) - timedelta(minutes=settings.PLD_LOGIN_FAILURE_WINDOW_MINUTES)
    quiet = Q(delayed_until__isnull=True) | Q(delayed_until__lt=forget_before)
    deleted, _ = FailureCounter.objects.filter(quiet, last_failure_at__lt=forget_before).delete()
    return deleted


@transaction.atomic
def _count(keys: list[_Key]) -> datetime | None:
    now = timezone.now()
    forget_before = now - timedelta(minutes=settings.PLD_LOGIN_FAILURE_WINDOW_MINUTES)
    # Addresses are the client's to choose: keys that are forgotten anyway go, so the table stays small.
    failure_counters_prune(now=now)
    started = None
    for k in keys:
        counter, created = FailureCounter.objects.select_for_update().get_or_create(
            key=k.key,
            defaults={"scope": k.scope, "username": k.username, "ip_address": k.ip_address, "last_failure_at": now},
        )
        # Forgotten only after a quiet window that starts when the wait ends: waiting out the longest delay
        # must not buy a fresh set of free guesses.
        quiet_since = max(counter.last_failure_at, counter.delayed_until or counter.last_failure_at)
        if not created and quiet_since < forget_before:
            counter.failures, counter.delayed_until = 0, None
        counter.failures += 1
        counter.last_failure_at = now
        seconds = delay_seconds(counter.failures, k.limit)
        if seconds:
            counter.delayed_until = now + timedelta(seconds=seconds)
            started = max(started or counter.delayed_until, counter.delayed_until)
        counter.full_clean()
        counter.save()
    return started


def _authenticated(request: HttpRequest) -> bool:
    user = getattr(request, "user", None)
    return bool(user is not None and user.is_authenticated)


def failure_record(request: HttpRequest, attempted: str | None) -> None:
    """Count a failed attempt (a password or a code) for the username from this client.

    Written after a signing's transaction when inside one, so a refused signing's rollback keeps it. The failure
    itself is ledgered by the signal handlers (``accounts/handlers.py``); a wait it starts for an anonymous
    client is counted in that client's security-event window here.
    """
    if not _enabled():
        return
    username, keys = _keys(request, attempted)
    address, anonymous = client_address(request), not _authenticated(request)

    def write() -> None:
        if _count(keys) and anonymous:
            security_event_count(username=username, ip_address=address, kind="delayed")

    after_signing(write)


def refusal_note(request: HttpRequest, attempted: str | None) -> None:
    """Count an anonymous attempt refused during a delay in its security-event window (it counts as no failure)."""
    if not _authenticated(request):
        username = account_username(request, attempted)
        security_event_count(
            username=username, ip_address=client_address(request), kind="refused", attempted=attempted or ""
        )


def signing_delay(request: HttpRequest, user: Any) -> datetime | None:
    """Return until when the user's signings from this client wait, marking the request for the 429 answer."""
    until = delay_until(request, user.get_username())
    if until is not None:
        refuse(request, until)
    return until


def refuse(request: HttpRequest, until: datetime) -> None:
    """Mark the request as refused during a delay: django-axes' middleware answers it with ``lockout_response``."""
    request.axes_locked_out = True  # type: ignore[attr-defined]
    request.pld_delayed_until = until  # type: ignore[attr-defined]


def success_record(request: HttpRequest, user: Any) -> None:
    """Forget the failures of this device and of the account at this address: the person got in."""
    if not _enabled():
        return
    username = user.get_username()
    address = client_address(request)
    keys = [f"account@{address}:{username}"]
    nonce = _device_nonce(request, username)
    if nonce:
        keys.append(f"device:{nonce}:{username}")
    FailureCounter.objects.filter(key__in=keys).delete()


def wait_words(until: datetime, *, now: datetime | None = None) -> str:
    """Return when a wait ends and how long is left: "06:42 UTC (in 14 minutes)", or with the date if not today."""
    now = now or timezone.now()
    end = until.astimezone(UTC)
    stamp = f"{end:%H:%M} UTC" if end.date() == now.astimezone(UTC).date() else f"{end:%Y-%m-%d %H:%M} UTC"
    seconds = max(1, int((until - now).total_seconds()) + 1)
    if seconds < 120:
        left = f"{seconds} seconds"
    elif seconds < 2 * 3600:
        left = f"{(seconds + 59) // 60} minutes"
    else:
        left = f"{seconds // 3600} hours {(seconds % 3600 + 59) // 60} minutes"
    return f"{stamp} (in {left})"


def delay_message(until: datetime | None) -> str:
    """Return the words a refused attempt gets, with the end of the wait and how long is left.

    The same whether or not the account exists.
    """
    when = wait_words(until) if until else "a while"
    return (
        f"Too many failed attempts for this username from this browser or address: locked until {when}. "
        "Until then even the right password and code are refused. An Admin can lift the wait."
    )


def lock_reasons(*, now: datetime | None = None) -> dict[str, list[str]]:
    """Return, per username, why the account waits now: one sentence per key in a wait (one query).

    Shown on the Users list. A wait of the account at one address or on one device holds nobody else back, so
    the sentence says where it holds.
    """
    now = now or timezone.now()
    where = {
        Scope.ACCOUNT: "from any browser without its device cookie",
        Scope.ACCOUNT_ADDRESS: "at {address}",
        Scope.DEVICE: "on one browser it used before",
    }
    reasons: dict[str, list[str]] = {}
    counters = FailureCounter.objects.filter(delayed_until__gt=now).exclude(username="").order_by("username", "key")
    for c in counters:
        place = where.get(c.scope, str(c.scope)).format(address=c.ip_address)
        reasons.setdefault(c.username, []).append(
            f"locked until {wait_words(c.delayed_until, now=now)} {place}: {c.failures} failed attempts"
        )
    return reasons


def lockout_response(
    request: HttpRequest, response: HttpResponse | None = None, credentials: Any = None
) -> HttpResponse:
    """Answer an attempt refused during a delay with status 429, the time it may try again and Retry-After.

    A refused signing keeps its own page (the form with the typed text and the message); a login step gets the
    lockout page.
    """
    until = getattr(request, "pld_delayed_until", None)
    if response is not None and response.status_code == 400 and _authenticated(request):
        answer = response
        answer.status_code = 429
    else:
        answer = render(request, "accounts/locked_out.html", {"message": delay_message(until)}, status=429)
    if until is not None:
        answer["Retry-After"] = str(max(1, int((until - timezone.now()).total_seconds()) + 1))
    return answer


class DelayHandler(AxesDatabaseHandler):
    """django-axes' database handler with delays in place of its lockout (``AXES_HANDLER``)."""

    def is_locked(self, request: HttpRequest, credentials: dict[str, Any] | None = None) -> bool:
        """Say whether this attempt must wait; mark the request so the answer says until when."""
        until = delay_until(request, attempted_username(request, credentials))
        if until is None:
            return False
        refuse(request, until)
        return True

    def user_login_failed(
        self, sender: Any, credentials: dict, request: HttpRequest | None = None, **kwargs: Any
    ) -> None:
        """Count a failed password (or a signing's failed code, sent as the same signal); no AccessAttempt rows."""
        if request is None:
            return
        attempted = attempted_username(request, credentials)
        if getattr(request, "axes_locked_out", False):
            # Refused before any check: the wait is not lengthened, so the owner's wait ends when it said.
            request.axes_credentials = credentials  # type: ignore[attr-defined]
            refusal_note(request, attempted)
            return
        failure_record(request, attempted)

    def user_logged_in(self, sender: Any, request: HttpRequest, user: Any, **kwargs: Any) -> None:
        super().user_logged_in(sender, request, user, **kwargs)
        success_record(request, user)

    def reset_attempts(
        self, *, ip_address: str | None = None, username: str | None = None, ip_or_username: bool = False
    ) -> int:
        """Refuse a reset that bypasses ``lockout_reset`` (axes_reset*): unlocking goes on the ledger."""
        if not _RESET_PERMITTED.get():
            raise CommandError(
                "Unlocking is recorded in the ledger: use `manage.py unlock_account USERNAME --reason \"…\"` "
                "(or `--ip ADDRESS`), or an Admin's unlock on /users/. axes_reset* is turned off."
            )
        return super().reset_attempts(ip_address=ip_address, username=username, ip_or_username=ip_or_username)


@contextmanager
def _reset_permitted() -> Iterator[None]:
    token = _RESET_PERMITTED.set(True)
    try:
        yield
    finally:
        _RESET_PERMITTED.reset(token)


@transaction.atomic
def lockout_reset(*, username: str | None = None, ip_address: str | None = None) -> int:
    """Clear every counter and wait that limits the username and/or the address; return how many records went.

    Records nothing itself: its callers (the Admin's unlock, ``manage.py unlock_account``) write the ledger entry.
    """
    if not username and not ip_address:
        raise ValueError("Name a username or an address to unlock.")
    match = Q(pk__in=[])
    if username:
        match |= Q(username__iexact=username)
    if ip_address:
        match |= Q(ip_address=ip_address)
    cleared, _ = FailureCounter.objects.filter(match).delete()
    with _reset_permitted():
        if username:
            # django-axes keeps usernames as typed; the account's own spelling and the one given both go.
            spellings = {username, *get_user_model().objects.filter(username__iexact=username)
                         .values_list("username", flat=True)}
            for spelling in spellings:
                cleared += AxesProxyHandler.reset_attempts(username=spelling)
        if ip_address:
            cleared += AxesProxyHandler.reset_attempts(ip_address=ip_address)
    return cleared
