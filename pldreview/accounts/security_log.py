"""Security events of unauthenticated requests, aggregated so that failing to log in cannot flood the ledger.

Whoever can reach the login page can fail: one ledger entry per failure would let an anonymous writer grow the
ledger without bound (100 posts made 38 entries in 1.6 s). So these events are counted per window and key —
the account tried (or "unknown account" for usernames that do not exist, so invented names make no new keys)
and the address — in ``SecurityEventWindow``:

- the first event of a window is written to the ledger at once, so an Auditor sees an attack begin;
- the others only count;
- when the window has closed (``PLD_SECURITY_EVENT_WINDOW_MINUTES`` after it opened) one closing entry,
  ``security.failure_window``, carries the counts. It is written lazily at the next event of the same key, by
  ``manage.py flush_security_events`` (run it from cron, e.g. every 15 minutes) and when the security events
  page is opened.

So a key writes at most two entries per window. Events of a logged-in user (a failed signing, a failed
reauthentication) are not aggregated: each is its own entry, written by its caller.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from pldreview.accounts.models import SecurityEventWindow
from pldreview.ledger import ledger_append

# The event each kind opens a window with; the closing entry counts every kind.
OPENING_EVENTS = {
    "password": "security.login_failed",
    "code": "security.mfa_failed",
    "delayed": "security.login_delayed",
    "refused": "security.login_refused",
    # A single sign-on the identity provider refused, or whose answer failed its checks on the way back.
    "sso": "security.sso_failed",
}
CLOSING_EVENT = "security.failure_window"
_UNKNOWN_NAMES_KEPT = 5


def _user(username: str):  # noqa: ANN202 (a User or None)
    return get_user_model().objects.filter(username=username).first() if username else None


def _close(window: SecurityEventWindow, *, now: datetime) -> bool:
    """Write the closing entry of a window whose events were more than its opening one; say whether one was written."""
    total = sum(window.counts.values())
    if total <= 1:
        return False
    ledger_append(
        event=CLOSING_EVENT,
        actor=None,
        obj=_user(window.username),
        facts={
            "username": window.username,
            "known_account": bool(window.username),
            "unknown_usernames": window.unknown_usernames,
            "ip_address": window.ip_address,
            "opened_at": window.opened_at.isoformat(),
            "closed_at": min(now, window.closes_at).isoformat(),
            "counts": window.counts,
            "total": total,
        },
    )
    return True


@transaction.atomic
def security_event_count(*, username: str, ip_address: str, kind: str, attempted: str = "") -> None:
    """Count an unauthenticated security event of ``kind`` for the account (blank: unknown) and address.

    ``attempted`` is the username as typed when it names no account; a few are kept for the Auditor.
    """
    now = timezone.now()
    closes_at = now + timedelta(minutes=settings.PLD_SECURITY_EVENT_WINDOW_MINUTES)
    window, created = SecurityEventWindow.objects.select_for_update().get_or_create(
        username=username, ip_address=ip_address,
        defaults={"opened_at": now, "closes_at": closes_at, "counts": {}},
    )
    if not created and window.closes_at <= now:
        _close(window, now=now)
        window.opened_at, window.closes_at, window.counts, window.unknown_usernames = now, closes_at, {}, []
        created = True
    window.counts[kind] = window.counts.get(kind, 0) + 1
    attempted = attempted[:150]
    if not username and attempted and attempted not in window.unknown_usernames:
        if len(window.unknown_usernames) < _UNKNOWN_NAMES_KEPT:
            window.unknown_usernames.append(attempted)
    window.full_clean()
    window.save()
    if created:
        # The target is named for the Auditor's filter; the ledger is not shown to the person logging in.
        ledger_append(
            event=OPENING_EVENTS[kind],
            actor=None,
            obj=_user(username),
            facts={
                "username": username or attempted,
                "known_account": bool(username),
                "ip_address": ip_address,
                "window_opened": now.isoformat(),
                "count": 1,
            },
        )


def security_windows_flush(*, now: datetime | None = None) -> int:
    """Write the closing entries of every window that has closed and forget those windows; return entries written."""
    now = now or timezone.now()
    written = 0
    for pk in SecurityEventWindow.objects.filter(closes_at__lte=now).values_list("pk", flat=True):
        with transaction.atomic():
            window = SecurityEventWindow.objects.select_for_update().filter(pk=pk, closes_at__lte=now).first()
            if window is None:  # a concurrent event closed and reopened it
                continue
            written += _close(window, now=now)
            window.delete()
    return written
